//! The Samples tab: test images with their reconstructions, fresh draws from the prior, and
//! the history of the fixed-noise grid (scrubbed by step, exported as PNG or GIF).

use std::path::PathBuf;

use egui::{RichText, Vec2};

use super::classes::{class_picker, ClassViews};
use super::latent_prior::LatentPriorSection;
use super::sampler::SamplerViews;
use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::export_target::ExportTarget;
use crate::app::loader::SaveDialog;
use crate::app::run_view::RunRecord;
use crate::app::widgets::image_grid::{clickable_grid, single_image};
use crate::engine::data::Dataset;
use crate::engine::export;
use crate::engine::images::ImageBatch;
use crate::engine::protocol::Command;

/// Test images reconstructed at a time.
const RECON_COUNT: usize = 10;
/// Prior samples per click.
const SAMPLE_COUNT: usize = 64;
/// Most prior samples written as PNGs at once (the worker draws at most this many).
const MAX_PNGS: usize = 1024;
/// File names of the sample PNGs: `sample-0000.png` ….
const PNG_PREFIX: &str = "sample";

/// Which grid an image to zoom into comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Reconstructions,
    Samples,
    History,
    Compared,
}

pub struct SamplesTab {
    temperature: f32,
    /// The current run's samples take the temperature (its latent has meaningful axes; a
    /// sampler's noise is drawn at σ = 1 and the slider is hidden).
    temperature_applies: bool,
    seed: u64,
    /// The history step shown; `None` follows the newest grid.
    history_step: Option<u64>,
    /// A second history step shown beside the first, for comparing two moments of the run.
    compare_step: Option<u64>,
    /// (run, fixed-noise step) of the last automatic reconstruction request.
    recon_for: Option<(u64, u64)>,
    auto_refresh: bool,
    /// The run samples were first asked for automatically.
    sampled_for: Option<u64>,
    /// Test indices of the run whose reconstructions are asked for.
    test_indices: Option<(u64, Vec<usize>)>,
    zoom: Option<(Source, usize)>,
    /// The grid PNG and the history GIF.
    export: ExportTarget,
    /// Individual prior samples as PNGs.
    pngs: ExportTarget,
    png_count: usize,
    /// Samples asked for to write as PNGs: (version of the samples shown before, count, folder).
    pending_pngs: Option<(u64, usize, PathBuf)>,
    /// The class prior samples are drawn of (a conditional model; `None`: every class in turn).
    class: Option<u32>,
    class_views: ClassViews,
    /// Sampler settings, trajectory and forward process (a model with a sampler).
    sampler: SamplerViews,
    latent_prior: LatentPriorSection,
    /// Whether prior samples come from the run's learned latent prior (set each frame).
    from_learned_prior: bool,
}

impl Default for SamplesTab {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            temperature_applies: true,
            seed: 1,
            history_step: None,
            compare_step: None,
            recon_for: None,
            auto_refresh: true,
            sampled_for: None,
            test_indices: None,
            zoom: None,
            export: ExportTarget::new(
                "Export path",
                "/path/to/file.png or .gif",
                SaveDialog::File {
                    title: "Save the grid (PNG) or the history (GIF)",
                    file_name: String::new(),
                    extensions: &["png", "gif"],
                },
            ),
            pngs: ExportTarget::new(
                "Samples folder",
                "a folder for sample-0000.png …",
                SaveDialog::Folder { title: "Folder for the sample PNGs" },
            ),
            png_count: SAMPLE_COUNT,
            pending_pngs: None,
            class: None,
            class_views: ClassViews::default(),
            sampler: SamplerViews::default(),
            latent_prior: LatentPriorSection::default(),
            from_learned_prior: false,
        }
    }
}

impl Tab for SamplesTab {
    fn title(&self) -> &'static str {
        "Samples"
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let Some(run) = cx.run_view.current() else {
            ui.label(RichText::new("No run yet. Train a model: its samples appear here.").weak());
            return;
        };
        if !run.has_model() {
            super::latent::ended_note(ui);
        }
        self.from_learned_prior = LatentPriorSection::applies(run) && self.latent_prior.use_prior(run);
        self.temperature_applies = run.capabilities.latent_axes();
        if run.has_model() && run.explore.samples.is_none() && self.sampled_for != Some(run.id) {
            // First visit: show some samples without asking.
            self.sampled_for = Some(run.id);
            cx.actions.push(Action::Worker(self.sample_command(SAMPLE_COUNT)));
        }
        let avail = ui.available_size();
        // Two separators with their spacing, and the scroll bar, share the row with the columns.
        let col_w = ((avail.x - 60.0) / 3.0).max(160.0);
        egui::ScrollArea::vertical().id_salt("samples_scroll").show(ui, |ui| {
            // A sampler's views first: its model has no reconstructions to show.
            if run.capabilities.sampler {
                if self.sampler.ui(ui, cx, run, (avail.x - 20.0).max(480.0)) {
                    cx.actions.push(Action::Worker(self.sample_command(SAMPLE_COUNT)));
                }
                ui.separator();
            }
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(col_w);
                    self.reconstructions(ui, cx, run, col_w);
                });
                ui.separator();
                ui.vertical(|ui| {
                    ui.set_width(col_w);
                    self.prior_samples(ui, cx, run, col_w);
                });
                ui.separator();
                ui.vertical(|ui| {
                    ui.set_width(col_w);
                    self.history(ui, cx, run, col_w);
                });
            });
            if run.capabilities.conditional {
                ui.separator();
                self.class_views.ui(ui, cx, run, (avail.x - 20.0).max(320.0));
            }
        });
        self.zoom_window(ui, cx, run);
    }
}

impl SamplesTab {
    fn reconstructions(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        ui.strong("Reconstructions");
        if !run.capabilities.encoder {
            let family = run.config.model.family();
            ui.label(
                RichText::new(format!("A {family} has no encoder, so it cannot reconstruct images.")).weak(),
            );
            return;
        }
        let mut refresh = false;
        ui.horizontal(|ui| {
            refresh = ui.button("Refresh reconstructions").clicked();
            ui.checkbox(&mut self.auto_refresh, "Refresh as it trains");
        });
        if let Some((step, _)) = &run.fixed_noise {
            let key = (run.id, *step);
            if self.auto_refresh && self.recon_for != Some(key) {
                self.recon_for = Some(key);
                refresh = true;
            }
        }
        if refresh {
            if let Some(indices) = self.test_indices(run, cx.dataset) {
                cx.actions.push(Action::Worker(Command::Reconstruct { indices }));
            }
        }
        match &run.explore.reconstructions {
            Some(r) => {
                let v = &r.value;
                let cols = v.originals.len().max(1);
                if let Some(both) = ImageBatch::concat(&[&v.originals, &v.reconstructions]) {
                    let max = Vec2::new(width, width);
                    if let Some(i) = clickable_grid(
                        ui,
                        cx.textures,
                        "reconstructions",
                        r.version,
                        &both,
                        cols,
                        max,
                        "Reconstructions grid",
                    ) {
                        self.zoom = Some((Source::Reconstructions, i));
                    }
                }
                ui.label(RichText::new("Top: test images. Bottom: their reconstructions.").weak().small());
            }
            None => {
                ui.label(RichText::new("waiting for the first reconstructions…").weak());
            }
        }
    }

    /// The first [`RECON_COUNT`] test images of the run's split (computed once per run).
    fn test_indices(&mut self, run: &RunRecord, data: Option<&Dataset>) -> Option<Vec<usize>> {
        if self.test_indices.as_ref().is_none_or(|(id, _)| *id != run.id) {
            let data = data?;
            let split = data.split(run.config.train.test_fraction, run.config.train.seed);
            let mut idx: Vec<usize> = split.test.iter().copied().take(RECON_COUNT).collect();
            if idx.is_empty() {
                idx = split.train.iter().copied().take(RECON_COUNT).collect();
            }
            self.test_indices = Some((run.id, idx));
        }
        self.test_indices.as_ref().map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    }

    fn prior_samples(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        if LatentPriorSection::applies(run) {
            if self.latent_prior.ui(ui, cx, run) && run.has_model() {
                self.from_learned_prior = self.latent_prior.use_prior(run);
                cx.actions.push(Action::Worker(self.sample_command(SAMPLE_COUNT)));
            }
            ui.add_space(6.0);
        }
        ui.strong(if self.from_learned_prior {
            "Samples from the learned prior"
        } else {
            "Samples from the prior"
        });
        if run.capabilities.conditional {
            let k = run.config.model.classes();
            self.class = self.class.filter(|&c| (c as usize) < k);
            let changed = ui.horizontal(|ui| {
                class_picker(ui, "sample_class", cx.dataset, k, Some("every class"), &mut self.class)
            });
            if changed.inner && run.has_model() {
                cx.actions.push(Action::Worker(self.sample_command(SAMPLE_COUNT)));
            }
        }
        ui.horizontal(|ui| {
            if ui.button("New samples").clicked() {
                self.seed = self.seed.wrapping_add(1);
                cx.actions.push(Action::Worker(self.sample_command(SAMPLE_COUNT)));
            }
            if run.capabilities.latent_axes() {
                let label = ui.label("Temperature");
                ui.add(egui::Slider::new(&mut self.temperature, 0.1..=2.0).fixed_decimals(2))
                    .on_hover_text("Scales the prior's σ: low = typical, high = varied")
                    .labelled_by(label.id);
            }
        });
        match &run.explore.samples {
            Some(s) => {
                let max = Vec2::new(width, width);
                if let Some(i) =
                    clickable_grid(ui, cx.textures, "samples", s.version, &s.value, 8, max, "Samples grid")
                {
                    self.zoom = Some((Source::Samples, i));
                }
            }
            None => {
                ui.label(RichText::new("Click New samples to decode fresh draws from the prior.").weak());
            }
        }
        ui.add_space(8.0);
        self.pngs_ui(ui, cx, run);
        ui.add_space(8.0);
        self.nearest_ui(ui, cx, run, width);
    }

    /// Memorisation: the samples closest to a training image, each beside it (feature space of
    /// the sample-quality metrics), with the scale of held-out real images.
    fn nearest_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        ui.strong("Nearest training images");
        ui.horizontal(|ui| {
            let button = ui.add_enabled(run.has_model(), egui::Button::new("Find nearest training images"));
            if button
                .on_hover_text("Draw 1,000 samples and find each one's nearest training image in the quality metrics' feature space: does the model copy?")
                .clicked()
            {
                cx.actions.push(Action::Worker(Command::Nearest));
            }
        });
        let Some(n) = &run.explore.nearest else {
            ui.label(RichText::new("Each sample beside its nearest training image, closest first.").weak());
            return;
        };
        let (step, v) = &n.value;
        ui.label(format!(
            "Step {step}: {:.1}% of {} samples are closer to a training image than 95% of held-out images are (about 5% if the model does not copy). Median distance: samples {:.2}, held-out images {:.2}.",
            100.0 * v.share_closer,
            v.measured,
            v.sample_median,
            v.test_median
        ));
        ui.label(RichText::new("Pairs: sample | nearest training image, closest first").weak());
        let mut parts = Vec::with_capacity(2 * v.distances.len());
        for i in 0..v.distances.len() {
            parts.push(v.samples.slice(i, i + 1));
            parts.push(v.train.slice(i, i + 1));
        }
        let refs: Vec<&ImageBatch> = parts.iter().collect();
        if let Some(pairs) = ImageBatch::concat(&refs) {
            let max = Vec2::new(width, width);
            clickable_grid(ui, cx.textures, "nearest", n.version, &pairs, 8, max, "Nearest training images");
        }
        let d: Vec<String> = v.distances.iter().take(8).map(|d| format!("{d:.2}")).collect();
        ui.label(
            RichText::new(format!(
                "closest distances: {} (held-out 5th percentile {:.2})",
                d.join(", "),
                v.test_p5
            ))
            .weak(),
        );
    }

    /// Writes N prior samples as `sample-0000.png` … into a folder: asks the worker for N
    /// draws at the current temperature and seed, and writes them when they arrive.
    fn pngs_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        ui.strong("Samples as PNG files");
        self.pngs.path_ui(ui, "", "Overwrite existing PNGs");
        let shown = run.explore.samples.as_ref().map_or(0, |s| s.version);
        if let Some((before, n, dir)) = self.pending_pngs.take() {
            match &run.explore.samples {
                Some(s) if s.version > before && s.value.len() == n => {
                    let images = s.value.clone();
                    self.pngs.start(ui.ctx(), dir, move |dir| {
                        let n = export::save_pngs(dir, PNG_PREFIX, &images).map_err(|e| e.to_string())?;
                        Ok(format!(
                            "Saved {n} PNGs ({}…) in {}",
                            export::png_name(PNG_PREFIX, 0),
                            dir.display()
                        ))
                    });
                }
                _ if !run.has_model() => {
                    self.pngs.message =
                        Some(Err("The run's model is gone: train again to draw samples.".into()))
                }
                _ => self.pending_pngs = Some((before, n, dir)),
            }
        }
        let busy = self.pngs.is_busy() || self.pending_pngs.is_some();
        ui.horizontal(|ui| {
            let label = ui.label("Count");
            ui.add(egui::DragValue::new(&mut self.png_count).range(1..=MAX_PNGS)).labelled_by(label.id);
            let save = ui
                .add_enabled(!busy && run.has_model(), egui::Button::new("Save sample PNGs"))
                .on_hover_text(
                "Draws this many samples from the prior (at the temperature above) and writes one PNG each",
            );
            if save.clicked() {
                self.save_pngs(cx, shown);
            }
            if self.pending_pngs.is_some() {
                ui.spinner();
            }
        });
        self.pngs.message_ui(ui);
    }

    fn save_pngs(&mut self, cx: &mut TabCtx<'_>, shown: u64) {
        let Some(dir) = self.pngs.target() else { return };
        let n = self.png_count.clamp(1, MAX_PNGS);
        if let Err(e) = export::check_pngs_target(&dir, PNG_PREFIX, n, self.pngs.overwrite) {
            self.pngs.message = Some(Err(e.to_string()));
            return;
        }
        self.pngs.message = None;
        self.pending_pngs = Some((shown, n, dir));
        cx.actions.push(Action::Worker(self.sample_command(n)));
    }

    /// `n` prior samples at the current temperature and seed, of the chosen class if any.
    fn sample_command(&self, n: usize) -> Command {
        let temperature = if self.temperature_applies { self.temperature } else { 1.0 };
        let seed = self.seed;
        if self.from_learned_prior {
            return Command::SamplePrior { n, seed };
        }
        match self.class {
            Some(c) => Command::SampleClass { n, temperature, seed, class: Some(c) },
            None => Command::Sample { n, temperature, seed },
        }
    }

    fn history(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        ui.strong("Fixed noise through training");
        if let Some(seconds) = run.grid_seconds {
            ui.label(RichText::new(grid_cost_note(seconds, run.config.train.sample_every)).weak());
        }
        let h = &run.explore.history;
        let (Some((first, _)), Some((last, _))) = (h.get(0), h.latest()) else {
            ui.label(RichText::new("waiting for the first grid…").weak());
            return;
        };
        let mut step = self.history_step.unwrap_or(last).clamp(first, last);
        ui.horizontal(|ui| {
            let label = ui.label("History step");
            let resp = ui.add(egui::Slider::new(&mut step, first..=last)).labelled_by(label.id);
            if resp.changed() {
                self.history_step = if step >= last { None } else { Some(step) };
            }
        });
        let mut comparing = self.compare_step.is_some();
        let mut other = self.compare_step.unwrap_or(first).clamp(first, last);
        ui.checkbox(&mut comparing, "Compare with step");
        if comparing {
            ui.horizontal(|ui| {
                let label = ui.label("Compare step");
                ui.add(egui::Slider::new(&mut other, first..=last)).labelled_by(label.id);
            });
        }
        self.compare_step = comparing.then_some(other);
        let Some((shown, grid)) = h.at_step(step) else { return };
        let compared = self.compare_step.and_then(|s| h.at_step(s));
        let follow = if self.history_step.is_none() { " (following the newest)" } else { "" };
        match compared {
            None => {
                if let Some(i) = clickable_grid(
                    ui,
                    cx.textures,
                    "history",
                    (run.id << 40) ^ shown,
                    grid,
                    8,
                    Vec2::new(width, width),
                    "History grid",
                ) {
                    self.zoom = Some((Source::History, i));
                }
                ui.label(
                    RichText::new(format!("after step {shown}{follow} · {} grids kept", h.len()))
                        .weak()
                        .small(),
                );
            }
            Some((other_shown, other_grid)) => {
                // The compared step on the left when it is the earlier one, so time runs left to right.
                let gap = ui.spacing().item_spacing.x;
                let half = ((ui.available_width().min(width) - gap) / 2.0 - 1.0).max(40.0);
                let mut pair = [
                    (other_shown, other_grid, "history_compare", "Compared grid", Source::Compared),
                    (shown, grid, "history", "History grid", Source::History),
                ];
                if other_shown > shown {
                    pair.swap(0, 1);
                }
                ui.horizontal_top(|ui| {
                    for (at, g, key, name, source) in pair {
                        ui.vertical(|ui| {
                            if let Some(i) = clickable_grid(
                                ui,
                                cx.textures,
                                key,
                                (run.id << 40) ^ at,
                                g,
                                8,
                                Vec2::splat(half),
                                name,
                            ) {
                                self.zoom = Some((source, i));
                            }
                            ui.label(RichText::new(format!("after step {at}")).weak().small());
                        });
                    }
                });
                ui.label(RichText::new(format!("{} grids kept{follow}", h.len())).weak().small());
            }
        }
        if run.capabilities.conditional {
            ui.add_space(8.0);
            ClassViews::class_grid(ui, cx, run, shown, width);
        }
        ui.add_space(8.0);
        self.export_ui(ui, run, grid, shown);
    }

    fn export_ui(&mut self, ui: &mut egui::Ui, run: &RunRecord, grid: &ImageBatch, shown: u64) {
        ui.strong("Export");
        self.export.path_ui(ui, &format!("grid-step-{shown}.png"), "Overwrite an existing file");
        let busy = self.export.is_busy();
        ui.horizontal(|ui| {
            if ui.add_enabled(!busy, egui::Button::new("Save grid PNG")).clicked() {
                let grid = grid.clone();
                self.start_export(ui.ctx(), move |path| {
                    grid.save_grid_png(path, 8).map_err(|e| e.to_string())?;
                    Ok(format!("Saved {}", path.display()))
                });
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Save history GIF"))
                .on_hover_text("Every kept grid, in step order, one frame each")
                .clicked()
            {
                let h = &run.explore.history;
                let frames: Vec<ImageBatch> =
                    (0..h.len()).filter_map(|i| h.get(i)).map(|(_, g)| g.clone()).collect();
                self.start_export(ui.ctx(), move |path| {
                    export::save_gif(path, &frames, 8, 200).map_err(|e| e.to_string())?;
                    Ok(format!("Saved {} ({} frames)", path.display(), frames.len()))
                });
            }
        });
        self.export.message_ui(ui);
    }

    /// Checks the target (never replacing a file unless asked), then writes on its own thread.
    fn start_export(
        &mut self,
        ctx: &egui::Context,
        write: impl FnOnce(&std::path::Path) -> Result<String, String> + Send + 'static,
    ) {
        let Some(path) = self.export.target() else { return };
        if let Err(e) = export::check_target(&path, self.export.overwrite) {
            self.export.message = Some(Err(e.to_string()));
            return;
        }
        self.export.start(ctx, path, write);
    }

    /// Whether an export is being written (for tests).
    pub fn is_exporting(&self) -> bool {
        self.export.is_busy() || self.pngs.is_busy() || self.pending_pngs.is_some()
    }

    fn zoom_window(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let Some((source, index)) = self.zoom else { return };
        let ex = &run.explore;
        let (batch, version) = match source {
            Source::Reconstructions => match &ex.reconstructions {
                Some(r) => match ImageBatch::concat(&[&r.value.originals, &r.value.reconstructions]) {
                    Some(b) => (b, r.version),
                    None => return,
                },
                None => return,
            },
            Source::Samples => match &ex.samples {
                Some(s) => (s.value.clone(), s.version),
                None => return,
            },
            Source::History | Source::Compared => {
                let step = if source == Source::Compared { self.compare_step } else { self.history_step };
                let step = step.or(ex.history.latest().map(|(s, _)| s)).unwrap_or(0);
                match ex.history.at_step(step) {
                    Some((s, g)) => (g.clone(), (run.id << 40) ^ s),
                    None => return,
                }
            }
        };
        let mut open = true;
        egui::Window::new("Zoom")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ui.ctx().content_rect().center())
            .resizable(false)
            .collapsible(false)
            .show(ui.ctx(), |ui| {
                single_image(
                    ui,
                    cx.textures,
                    "zoom",
                    version ^ ((index as u64) << 32) ^ source as u64,
                    &batch,
                    index,
                    320.0,
                );
                ui.label(RichText::new(format!("image {}", index + 1)).weak());
            });
        if !open {
            self.zoom = None;
        }
    }
}

/// What a grid costs and when the worker draws one (see `engine/worker/views.rs`).
fn grid_cost_note(seconds: f64, every: u64) -> String {
    let budget = crate::engine::protocol::VIEW_BUDGET * 100.0;
    let cost = match seconds {
        s if s < 0.001 => "under 1 ms".to_string(),
        s if s < 0.1 => format!("{:.0} ms", s * 1000.0),
        s => format!("{s:.2} s"),
    };
    format!(
        "A grid takes {cost} to draw. It is due every {every} steps and at each epoch's end, \
         and drawn when the grids so far have taken under {budget:.0}% of the training time."
    )
}
