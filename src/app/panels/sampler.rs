//! The views of a model with a sampler (diffusion, flow matching), in the Samples tab: the
//! sampler's settings, the denoising trajectory of the fixed noise (strip and GIF), and the
//! forward process of a test image; and the loss per timestep bucket for the Training tab.
//! The worker computes each (see `Command::Trajectory`, `Command::Noised`); this draws them.

use egui::{RichText, Vec2};

use super::TabCtx;
use crate::app::actions::Action;
use crate::app::export_target::ExportTarget;
use crate::app::loader::SaveDialog;
use crate::app::run_view::RunRecord;
use crate::app::widgets::bars::value_bars;
use crate::app::widgets::image_grid::image_grid;
use crate::engine::export;
use crate::engine::images::ImageBatch;
use crate::engine::models::diffusion::schedule::{MAX_SAMPLE_STEPS, TRAIN_STEPS};
use crate::engine::models::diffusion::views::TIMESTEP_BUCKETS;
use crate::engine::models::diffusion::{Objective, Sampler, SamplerSettings, MAX_GUIDANCE};
use crate::engine::models::ModelConfig;
use crate::engine::protocol::Command;

/// Frame time of the trajectory GIF: slow enough to follow one denoising step.
const GIF_FRAME_MS: u32 = 250;
/// The trajectory's noise rows and recorded steps at most (the worker's limit too).
const MAX_ROWS: usize = 8;
const MAX_COLUMNS: usize = 20;

pub struct SamplerViews {
    rows: usize,
    columns: usize,
    /// Redraw the trajectory with each new fixed-noise grid.
    follow: bool,
    /// (run, fixed-noise step, rows, columns) of the last trajectory asked for.
    asked: Option<(u64, u64, usize, usize)>,
    gif: ExportTarget,
    /// Position in the run's test split of the image the forward process noises.
    test_pick: usize,
    t: f64,
    noise_seed: u64,
    /// (run, dataset index, t, seed) of the last forward process asked for.
    noised_for: Option<(u64, usize, f64, u64)>,
    /// The settings being edited, and the run they were taken from.
    settings: Option<(u64, SamplerSettings)>,
    next_request: u64,
}

impl Default for SamplerViews {
    fn default() -> Self {
        Self {
            rows: 4,
            columns: 10,
            follow: true,
            asked: None,
            gif: ExportTarget::new(
                "Trajectory GIF path",
                "/path/to/trajectory.gif",
                SaveDialog::File {
                    title: "Save the trajectory (GIF)",
                    file_name: String::new(),
                    extensions: &["gif"],
                },
            ),
            test_pick: 0,
            t: 0.5,
            noise_seed: 1,
            noised_for: None,
            settings: None,
            next_request: 1,
        }
    }
}

impl SamplerViews {
    /// The section; returns true when new sampler settings were applied (the caller draws
    /// fresh prior samples with them).
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) -> bool {
        let col_w = ((width - 40.0) / 3.0).max(160.0);
        let mut applied = false;
        // No vertical separator: in a horizontal row it grows to the whole height left and
        // would push the tab's other sections out of view.
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(col_w);
                applied = self.settings_ui(ui, cx, run);
                ui.add_space(12.0);
                self.forward_ui(ui, cx, run, col_w);
            });
            ui.add_space(24.0);
            ui.vertical(|ui| {
                ui.set_width(col_w * 2.0);
                self.trajectory_ui(ui, cx, run, col_w * 2.0);
            });
        });
        applied
    }

    fn request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) -> bool {
        ui.strong("Sampler");
        let ModelConfig::Diffusion(d) = &run.config.model else { return false };
        let current = d.sampler_settings();
        if self.settings.is_none_or(|(id, _)| id != run.id) {
            self.settings = Some((run.id, current));
        }
        let Some((_, s)) = self.settings.as_mut() else { return false };
        let choices: &[Sampler] = match d.objective {
            Objective::Ddpm => &[Sampler::Ddim, Sampler::Ddpm],
            Objective::Flow => &[Sampler::Euler, Sampler::Heun],
        };
        ui.horizontal(|ui| {
            let label = ui.label("Sampler");
            egui::ComboBox::from_id_salt("sampler_choice")
                .selected_text(s.sampler.label())
                .show_ui(ui, |ui| {
                    for &c in choices {
                        ui.selectable_value(&mut s.sampler, c, c.label());
                    }
                })
                .response
                .labelled_by(label.id);
        });
        ui.horizontal(|ui| {
            let label = ui.label("Steps");
            ui.add(egui::Slider::new(&mut s.steps, 1..=MAX_SAMPLE_STEPS).logarithmic(true))
                .on_hover_text(
                    "Network evaluations per sample (Heun: two per step): more is slower and usually cleaner",
                )
                .labelled_by(label.id);
        });
        if s.sampler == Sampler::Ddim {
            ui.horizontal(|ui| {
                let label = ui.label("η");
                ui.add(egui::Slider::new(&mut s.eta, 0.0..=1.0).fixed_decimals(2))
                    .on_hover_text("DDIM's noise: 0 deterministic, 1 as noisy as DDPM's ancestral sampler")
                    .labelled_by(label.id);
            });
        }
        if run.capabilities.conditional {
            ui.horizontal(|ui| {
                let label = ui.label("Guidance");
                ui.add(egui::Slider::new(&mut s.guidance, 0.0..=MAX_GUIDANCE).fixed_decimals(1))
                    .on_hover_text(
                        "Classifier-free guidance w: 0 ignores the class, 1 follows it as trained, above 1 \
                         pushes samples towards what sets the class apart (less variety). Above 0 and \
                         below 1 blends the two; every value but 0 and 1 costs twice the network calls",
                    )
                    .labelled_by(label.id);
            });
        }
        let edited = *s;
        let changed = edited != current;
        let apply =
            ui.add_enabled(changed && run.has_model(), egui::Button::new("Apply sampler")).on_hover_text(
                "Samples, the fixed-noise grid, quality measurements and the trajectory use it from now on",
            );
        if apply.clicked() {
            cx.actions.push(Action::Worker(Command::SetSampler(edited)));
        }
        let eta =
            if current.sampler == Sampler::Ddim { format!(", η {:.2}", current.eta) } else { String::new() };
        let guidance = if run.capabilities.conditional {
            format!(", guidance {:.1}", current.guidance)
        } else {
            String::new()
        };
        ui.label(
            RichText::new(format!(
                "in use: {}, {} steps{eta}{guidance}",
                current.sampler.label(),
                current.steps
            ))
            .weak()
            .small(),
        );
        apply.clicked()
    }

    fn trajectory_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        ui.strong("Denoising trajectory");
        let mut draw = false;
        ui.horizontal(|ui| {
            let label = ui.label("Noise rows");
            ui.add(egui::DragValue::new(&mut self.rows).range(1..=MAX_ROWS)).labelled_by(label.id);
            let label = ui.label("Columns");
            ui.add(egui::DragValue::new(&mut self.columns).range(2..=MAX_COLUMNS))
                .on_hover_text("Steps of the sampler shown, evenly spread, the last one always")
                .labelled_by(label.id);
            draw = ui.add_enabled(run.has_model(), egui::Button::new("Draw trajectory")).clicked();
            ui.checkbox(&mut self.follow, "Follow training").on_hover_text(
                "Redraw with each new fixed-noise grid (costs about a tenth of drawing the grid)",
            );
        });
        let grid_step = run.fixed_noise.as_ref().map_or(0, |(s, _)| *s);
        let key = (run.id, grid_step, self.rows, self.columns);
        let first = self.asked.is_none_or(|(id, ..)| id != run.id);
        if run.has_model() && (draw || ((self.follow || first) && self.asked != Some(key))) {
            self.asked = Some(key);
            let request = self.request();
            cx.actions.push(Action::Worker(Command::Trajectory {
                request,
                rows: self.rows,
                columns: self.columns,
            }));
        }
        let Some(tv) = &run.explore.sampler.trajectory else {
            ui.label(
                RichText::new("x_t and the predicted x̂₀ of the fixed noise at steps of the sampler…").weak(),
            );
            return;
        };
        let traj = &tv.value.trajectory;
        let cols = traj.times.len().max(1);
        if let Some(strip) = traj.strip() {
            let rows = (strip.len() / cols).max(1) as f32;
            let cell = (width / cols as f32).min(56.0);
            image_grid(
                ui,
                cx.textures,
                "trajectory",
                tv.version,
                &strip,
                cols,
                Vec2::new(width, cell * rows),
            )
            .on_hover_text(
                "Rows in pairs per noise vector: x_t, then the predicted x̂₀; columns: steps, noise to data",
            );
        }
        let ts: Vec<String> = traj.times.iter().map(|t| format!("{t:.2}")).collect();
        ui.label(
            RichText::new(format!(
                "weights of step {} · rows: x_t / x̂₀ per noise vector · t per column: {}",
                tv.value.step,
                ts.join(", ")
            ))
            .weak()
            .small(),
        );
        self.gif.path_ui(ui, "trajectory.gif", "Overwrite an existing file");
        let busy = self.gif.is_busy();
        let save = ui
            .add_enabled(!busy, egui::Button::new("Save trajectory GIF"))
            .on_hover_text("One frame per column: x_t of every noise vector above its x̂₀");
        if save.clicked() {
            let frames = traj.frames();
            let n = traj.xt.first().map_or(1, ImageBatch::len);
            if let Some(path) = self.gif.target() {
                match export::check_target(&path, self.gif.overwrite) {
                    Err(e) => self.gif.message = Some(Err(e.to_string())),
                    Ok(()) => self.gif.start(ui.ctx(), path, move |path| {
                        export::save_gif(path, &frames, n, GIF_FRAME_MS).map_err(|e| e.to_string())?;
                        Ok(format!("Saved {} ({} frames)", path.display(), frames.len()))
                    }),
                }
            }
        }
        self.gif.message_ui(ui);
    }

    fn forward_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32) {
        ui.strong("Forward process");
        let Some(data) = cx.dataset else {
            ui.label(RichText::new("The run's dataset is not loaded here.").weak());
            return;
        };
        let split = data.split(run.config.train.test_fraction, run.config.train.seed);
        let pool = if split.test.is_empty() { &split.train } else { &split.test };
        if pool.is_empty() {
            return;
        }
        self.test_pick = self.test_pick.min(pool.len() - 1);
        let ddpm = matches!(&run.config.model, ModelConfig::Diffusion(d) if d.objective == Objective::Ddpm);
        ui.horizontal(|ui| {
            let label = ui.label("Test image");
            ui.add(egui::DragValue::new(&mut self.test_pick).range(0..=pool.len() - 1)).labelled_by(label.id);
            let label = ui.label("t");
            let slider = egui::Slider::new(&mut self.t, 0.0..=1.0).fixed_decimals(3);
            let slider = if ddpm {
                slider.custom_formatter(|t, _| format!("{t:.3} (step {})", (t * TRAIN_STEPS as f64).round()))
            } else {
                slider
            };
            ui.add(slider).on_hover_text("0: the image; 1: pure noise").labelled_by(label.id);
            if ui.button("New noise").clicked() {
                self.noise_seed = self.noise_seed.wrapping_add(1);
            }
        });
        let index = pool[self.test_pick];
        let key = (run.id, index, self.t, self.noise_seed);
        if run.has_model() && self.noised_for != Some(key) {
            self.noised_for = Some(key);
            let request = self.request();
            cx.actions.push(Action::Worker(Command::Noised {
                request,
                index,
                t: self.t,
                seed: self.noise_seed,
            }));
        }
        let Some(nv) = &run.explore.sampler.noised else { return };
        if let Some(pair) = ImageBatch::concat(&[&nv.value.original, &nv.value.noised]) {
            image_grid(ui, cx.textures, "forward", nv.version, &pair, 2, Vec2::new(width.min(240.0), 120.0))
                .on_hover_text("Left: the image x₀. Right: x_t");
        }
        ui.label(
            RichText::new(format!("dataset image {}: x₀ and x_t at t = {:.3}", nv.value.index, nv.value.t))
                .weak()
                .small(),
        );
    }
}

/// The loss per timestep bucket (Training tab): which noise levels the denoiser finds hard.
pub fn timestep_losses(ui: &mut egui::Ui, run: &RunRecord) {
    if !run.capabilities.sampler {
        return;
    }
    ui.strong("Loss per timestep");
    let Some((step, losses)) = &run.explore.sampler.timestep_losses else {
        ui.label(RichText::new("waiting for the first steps…").weak());
        return;
    };
    let names: Vec<String> =
        (0..TIMESTEP_BUCKETS).map(|b| format!("{:.1}", b as f64 / TIMESTEP_BUCKETS as f64)).collect();
    let w = 1.0 / TIMESTEP_BUCKETS as f64;
    value_bars(ui, losses, &names, 70.0, "Loss per timestep bucket", |i| {
        let v = losses.get(i).copied().unwrap_or(f64::NAN);
        format!("t in [{:.1}, {:.1}): mean squared error {v:.4}", i as f64 * w, (i + 1) as f64 * w)
    });
    ui.label(
        RichText::new(format!(
            "t from data (left) to noise (right); moving average of recent steps, after step {step}"
        ))
        .weak()
        .small(),
    );
}
