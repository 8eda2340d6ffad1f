//! What the Samples and Latent space tabs show of a conditional model (only when the run's
//! capabilities say `conditional`): a class picker, the class × noise grid that follows the
//! newest weights and is scrubbed with the fixed-noise history, interpolation between two
//! classes at fixed noise, and "same style, other class".

use egui::{RichText, Vec2};

use super::TabCtx;
use crate::app::actions::Action;
use crate::app::run_view::RunRecord;
use crate::app::widgets::image_grid::clickable_grid;
use crate::engine::data::Dataset;
use crate::engine::images::ImageBatch;
use crate::engine::protocol::Command;

/// Noise rows of a class interpolation.
const INTERP_ROWS: usize = 4;
/// Test images shown in "same style, other class".
const STYLE_COUNT: usize = 4;

/// The name of class `c`: the dataset's, or the number.
fn class_name(data: Option<&Dataset>, c: u32) -> String {
    match data {
        Some(d) if d.class_names.is_some() => d.class_name(c),
        _ => c.to_string(),
    }
}

/// A combo box choosing one of `classes` classes, or every class in turn (`None`) when
/// `every` names that choice; true when the choice changed.
pub fn class_picker(
    ui: &mut egui::Ui,
    id: &str,
    data: Option<&Dataset>,
    classes: usize,
    every: Option<&str>,
    class: &mut Option<u32>,
) -> bool {
    let before = *class;
    let label = ui.label("Class");
    let text = match *class {
        Some(c) => class_name(data, c),
        None => every.unwrap_or("every class").to_string(),
    };
    egui::ComboBox::from_id_salt(id)
        .selected_text(text)
        .show_ui(ui, |ui| {
            if let Some(every) = every {
                ui.selectable_value(class, None, every);
            }
            for c in 0..classes as u32 {
                ui.selectable_value(class, Some(c), class_name(data, c));
            }
        })
        .response
        .on_hover_text("The class the model is asked to draw")
        .labelled_by(label.id);
    *class != before
}

/// One of two classes, for the interpolation's ends.
fn end_picker(ui: &mut egui::Ui, id: &str, name: &str, data: Option<&Dataset>, classes: usize, c: &mut u32) {
    let label = ui.label(name);
    egui::ComboBox::from_id_salt(id)
        .selected_text(class_name(data, *c))
        .show_ui(ui, |ui| {
            for k in 0..classes as u32 {
                ui.selectable_value(c, k, class_name(data, k));
            }
        })
        .response
        .labelled_by(label.id);
}

/// The Samples tab's conditional views.
pub struct ClassViews {
    a: u32,
    b: u32,
    steps: usize,
    /// (run, fixed-noise step) the interpolation and style views were last asked for; they
    /// follow the newest weights while training once asked.
    asked_for: Option<(u64, u64)>,
    interpolating: bool,
    styling: bool,
}

impl Default for ClassViews {
    fn default() -> Self {
        Self { a: 1, b: 7, steps: 8, asked_for: None, interpolating: false, styling: false }
    }
}

impl ClassViews {
    /// The class × noise grid at history step `step` (the step the fixed-noise scrubber shows).
    pub fn class_grid(ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, step: u64, width: f32) {
        let k = run.explore.grid_classes.max(1);
        ui.strong("Class × noise");
        let Some((shown, grid)) = run.explore.class_history.at_step(step) else {
            ui.label(RichText::new("waiting for the first class grid…").weak());
            return;
        };
        let max = Vec2::new(width, width);
        clickable_grid(ui, cx.textures, "class_grid", (run.id << 40) ^ shown, grid, k, max, "Class grid");
        ui.label(
            RichText::new(format!(
                "after step {shown}: one column per class, one row per fixed noise vector"
            ))
            .weak()
            .small(),
        );
    }

    /// Interpolation between two classes at fixed noise, and "same style, other class".
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        let k = run.config.model.classes();
        if k == 0 {
            return;
        }
        self.a = self.a.min(k as u32 - 1);
        self.b = self.b.min(k as u32 - 1);
        let step = run.fixed_noise.as_ref().map_or(0, |(s, _)| *s);
        let follow = run.is_active() && self.asked_for.is_some_and(|(id, s)| id == run.id && s != step);
        let data = cx.dataset;
        ui.horizontal_top(|ui| {
            let half = (width / 2.0 - 12.0).max(160.0);
            ui.vertical(|ui| {
                ui.set_width(half);
                ui.strong("Between two classes");
                ui.horizontal(|ui| {
                    end_picker(ui, "class_from", "From", data, k, &mut self.a);
                    end_picker(ui, "class_to", "to", data, k, &mut self.b);
                    let label = ui.label("Steps");
                    ui.add(egui::DragValue::new(&mut self.steps).range(2..=16)).labelled_by(label.id);
                });
                let ask = ui
                    .add_enabled(run.has_model(), egui::Button::new("Interpolate classes"))
                    .on_hover_text("The same noise vectors, the label blended from one class to the other")
                    .clicked();
                if ask || (follow && self.interpolating) {
                    self.interpolating = true;
                    self.asked_for = Some((run.id, step));
                    cx.actions.push(Action::Worker(Command::ClassInterpolate {
                        a: self.a,
                        b: self.b,
                        steps: self.steps,
                        rows: INTERP_ROWS,
                    }));
                }
                match &run.explore.class_interpolated {
                    Some(v) => {
                        let i = &v.value;
                        let max = Vec2::new(half, half);
                        let key = "class_interpolation";
                        clickable_grid(
                            ui,
                            cx.textures,
                            key,
                            v.version,
                            &i.images,
                            i.steps,
                            max,
                            "Class interpolation",
                        );
                        let (a, b) = (class_name(data, i.a), class_name(data, i.b));
                        ui.label(
                            RichText::new(format!(
                                "step {}: from {a} to {b}, one row per noise vector",
                                i.step
                            ))
                            .weak()
                            .small(),
                        );
                    }
                    None => {
                        ui.label(
                            RichText::new("Fixed noise, the label walked from one class to another.").weak(),
                        );
                    }
                }
            });
            ui.separator();
            ui.vertical(|ui| {
                ui.set_width(half);
                self.same_style(ui, cx, run, half, follow);
            });
        });
    }

    /// "Same style, other class": test images encoded under their own labels, decoded under
    /// every label (a model with an encoder).
    fn same_style(
        &mut self,
        ui: &mut egui::Ui,
        cx: &mut TabCtx<'_>,
        run: &RunRecord,
        width: f32,
        follow: bool,
    ) {
        ui.strong("Same style, other class");
        if !run.capabilities.encoder {
            let family = run.config.model.family();
            ui.label(
                RichText::new(format!("A {family} has no encoder to take an image's style from.")).weak(),
            );
            return;
        }
        let ask = ui
            .add_enabled(run.has_model(), egui::Button::new("Restyle test images"))
            .on_hover_text("Encode test images under their own labels, decode each code under every label")
            .clicked();
        if ask || (follow && self.styling) {
            if let Some(indices) = test_indices(run, cx.dataset) {
                self.styling = true;
                let step = run.fixed_noise.as_ref().map_or(0, |(s, _)| *s);
                self.asked_for = Some((run.id, step));
                cx.actions.push(Action::Worker(Command::SameStyle { indices }));
            }
        }
        match &run.explore.same_style {
            Some(v) => {
                let s = &v.value;
                // Each row: the original, then the image as every class.
                let mut parts = Vec::new();
                for i in 0..s.originals.len() {
                    parts.push(s.originals.slice(i, i + 1));
                    parts.push(s.images.slice(i * s.classes, (i + 1) * s.classes));
                }
                let refs: Vec<&ImageBatch> = parts.iter().collect();
                if let Some(rows) = ImageBatch::concat(&refs) {
                    let max = Vec2::new(width, width);
                    clickable_grid(
                        ui,
                        cx.textures,
                        "same_style",
                        v.version,
                        &rows,
                        s.classes + 1,
                        max,
                        "Same style",
                    );
                }
                ui.label(
                    RichText::new(format!(
                        "step {}: left, the test image; then its code as every class",
                        s.step
                    ))
                    .weak()
                    .small(),
                );
            }
            None => {
                ui.label(RichText::new("One image's style (its code) drawn as every class.").weak());
            }
        }
    }
}

/// The first [`STYLE_COUNT`] test images of the run's split.
fn test_indices(run: &RunRecord, data: Option<&Dataset>) -> Option<Vec<usize>> {
    let data = data?;
    let split = data.split(run.config.train.test_fraction, run.config.train.seed);
    let idx: Vec<usize> = split.test.iter().chain(&split.train).copied().take(STYLE_COUNT).collect();
    (!idx.is_empty()).then_some(idx)
}
