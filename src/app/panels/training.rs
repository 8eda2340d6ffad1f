//! The Training tab: live loss plot with its options, the latest fixed-noise samples, and this
//! session's runs (any of which can be overlaid on the plot).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use egui::{RichText, Vec2};

use super::training_quality::{quality_section, QualityCtx};
use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::export_target::ExportTarget;
use crate::app::loader::{DialogJob, DialogResult, SaveDialog};
use crate::app::run_view::{RunEnd, RunRecord};
use crate::app::theme;
use crate::app::widgets::image_grid::image_grid;
use crate::app::widgets::loss_plot::{loss_plot, SmoothCache};
use crate::engine::export;
use crate::engine::protocol::{Command, FinishReason, QualitySchedule};

/// What the open folder dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FolderFor {
    Save,
    Load,
}

pub struct TrainingTab {
    /// Runs overlaid on the current plot.
    overlays: BTreeSet<u64>,
    smooth: SmoothCache,
    /// The newest run seen, to overlay the previous one when a new run starts.
    newest: Option<u64>,
    /// The rewind point chosen in the list.
    rewind_to: Option<u64>,
    /// Folder typed for "Save checkpoint".
    checkpoint_dir: String,
    /// Whether the user picked it (otherwise it follows the newest point).
    rewind_picked: bool,
    /// A folder dialog for saving or loading a checkpoint.
    folder_dialog: Option<(FolderFor, DialogJob)>,
    /// The last dialog problem, shown under the checkpoint buttons.
    checkpoint_note: Option<String>,
    /// The run's metrics as CSV.
    metrics: ExportTarget,
}

impl Default for TrainingTab {
    fn default() -> Self {
        Self {
            overlays: BTreeSet::new(),
            smooth: SmoothCache::default(),
            newest: None,
            rewind_to: None,
            checkpoint_dir: String::new(),
            rewind_picked: false,
            folder_dialog: None,
            checkpoint_note: None,
            metrics: ExportTarget::new(
                "Metrics CSV path",
                "/path/to/metrics.csv",
                SaveDialog::File {
                    title: "Save the metrics (CSV)",
                    file_name: String::new(),
                    extensions: &["csv"],
                },
            ),
        }
    }
}

impl Tab for TrainingTab {
    fn title(&self) -> &'static str {
        "Training"
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        self.plot_options(ui, cx);
        let runs = &cx.run_view.runs;
        let list_h = if runs.len() > 1 || runs.first().is_some_and(|r| !r.is_active()) {
            (36.0 + 22.0 * runs.len().min(6) as f32).min(ui.available_height() * 0.35)
        } else {
            0.0
        };
        let avail = ui.available_size();
        let side_w = (avail.x * 0.3).clamp(170.0, 300.0);
        let plot_h = (avail.y - list_h - 8.0).max(160.0);
        ui.horizontal_top(|ui| {
            ui.allocate_ui(Vec2::new((avail.x - side_w - 12.0).max(200.0), plot_h), |ui| {
                // The loss plot and the quality section under it.
                ui.vertical(|ui| self.plot(ui, cx, plot_h));
            });
            ui.vertical(|ui| {
                ui.set_width(side_w);
                egui::ScrollArea::vertical().id_salt("training_side").max_height(plot_h).show(ui, |ui| {
                    fixed_noise(ui, cx, side_w);
                    if let Some(run) = cx.run_view.current() {
                        super::sampler::timestep_losses(ui, run);
                    }
                    ui.add_space(8.0);
                    self.rewind(ui, cx);
                    self.checkpoint(ui, cx);
                    ui.add_space(8.0);
                    self.metrics_csv(ui, cx);
                });
            });
        });
        if list_h > 0.0 {
            ui.separator();
            egui::ScrollArea::vertical().id_salt("run_list").max_height(list_h).show(ui, |ui| {
                self.run_list(ui, cx);
            });
        }
    }
}

impl TrainingTab {
    /// Saves the current weights, optimiser state and metrics to a folder the CLI and a later
    /// run can load (`genlab sample --checkpoint DIR`, …), and loads such a folder: its
    /// configuration replaces the model panel's and a paused run continues from it.
    fn checkpoint(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        self.poll_dialog(ui.ctx(), cx);
        let has_model = cx.run_view.current().is_some_and(|r| r.has_model());
        let dialog_open = self.folder_dialog.is_some();
        ui.strong("Checkpoint");
        ui.horizontal(|ui| {
            let label = ui.label("Checkpoint folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.checkpoint_dir)
                    .hint_text("a folder, e.g. runs/vae")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        });
        let dir = self.checkpoint_dir.trim().to_string();
        ui.horizontal_wrapped(|ui| {
            if has_model {
                if ui
                    .add_enabled(!dir.is_empty(), egui::Button::new("Save checkpoint"))
                    .on_hover_text("Weights, optimiser state, config.json and metrics.csv, written atomically")
                    .clicked()
                {
                    cx.actions.push(Action::Worker(Command::SaveCheckpoint { dir: dir.clone().into() }));
                }
                if ui
                    .add_enabled(!dialog_open, egui::Button::new("Save to…"))
                    .on_hover_text("Pick the folder to save the checkpoint in")
                    .clicked()
                {
                    self.open_dialog(ui.ctx(), FolderFor::Save);
                }
            }
            if ui
                .add_enabled(!dialog_open, egui::Button::new("Load checkpoint…"))
                .on_hover_text("Pick a checkpoint folder: its configuration goes into the model panel and a paused run continues from it on the loaded dataset")
                .clicked()
            {
                self.open_dialog(ui.ctx(), FolderFor::Load);
            }
            if ui
                .add_enabled(!dir.is_empty(), egui::Button::new("Load from folder"))
                .on_hover_text("Load the checkpoint in the folder typed above")
                .clicked()
            {
                self.checkpoint_note = None;
                cx.actions.push(Action::LoadCheckpoint(PathBuf::from(&dir)));
            }
        });
        if let Some(note) = &self.checkpoint_note {
            ui.add(egui::Label::new(RichText::new(note).color(theme::error_text(ui)).small()).wrap());
        }
        if let Some((step, dir)) = cx.run_view.current().and_then(|r| r.saved_checkpoint.as_ref()) {
            ui.label(RichText::new(format!("Saved step {step} to {}", dir.display())).weak().small());
        }
    }

    fn open_dialog(&mut self, ctx: &egui::Context, purpose: FolderFor) {
        let title = match purpose {
            FolderFor::Save => "Folder to save the checkpoint in",
            FolderFor::Load => "Checkpoint folder to load",
        };
        let typed = PathBuf::from(self.checkpoint_dir.trim());
        let start = if typed.is_dir() { typed.parent().map(|p| p.to_path_buf()) } else { None };
        let ctx = ctx.clone();
        match DialogJob::spawn_save(
            SaveDialog::Folder { title },
            start,
            Arc::new(move || ctx.request_repaint()),
        ) {
            Ok(d) => {
                self.folder_dialog = Some((purpose, d));
                self.checkpoint_note = None;
            }
            Err(e) => self.checkpoint_note = Some(format!("{e}. Type the folder above instead.")),
        }
    }

    fn poll_dialog(&mut self, ctx: &egui::Context, cx: &mut TabCtx<'_>) {
        let Some((purpose, job)) = self.folder_dialog.as_mut() else { return };
        let purpose = *purpose;
        let Some(result) = job.poll() else {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
            return;
        };
        self.folder_dialog = None;
        match result {
            DialogResult::Picked(dir) => {
                self.checkpoint_dir = dir.display().to_string();
                match purpose {
                    FolderFor::Save => cx.actions.push(Action::Worker(Command::SaveCheckpoint { dir })),
                    FolderFor::Load => cx.actions.push(Action::LoadCheckpoint(dir)),
                }
            }
            DialogResult::Cancelled => {}
            DialogResult::Unavailable => {
                let button = if purpose == FolderFor::Save { "Save checkpoint" } else { "Load from folder" };
                self.checkpoint_note = Some(format!(
                    "No folder dialog is available here (it needs a desktop portal or zenity): type the folder into Checkpoint folder and click {button}."
                ));
            }
        }
    }

    /// The current run's per-step metrics (step, epoch, every loss, learning rate, images/s)
    /// as a CSV file.
    fn metrics_csv(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let Some(run) = cx.run_view.current() else { return };
        ui.strong("Metrics");
        self.metrics.path_ui(ui, &format!("metrics-run-{}.csv", run.id), "Overwrite an existing file");
        ui.horizontal(|ui| {
            let save = ui
                .add_enabled(
                    !self.metrics.is_busy() && !run.series.is_empty(),
                    egui::Button::new("Save metrics CSV"),
                )
                .on_hover_text("step, epoch, every loss, learning rate and images/s, one row per step");
            if save.clicked() {
                if let Some(path) = self.metrics.target() {
                    match export::check_target(&path, self.metrics.overwrite) {
                        Ok(()) => {
                            let csv = run.series.to_csv();
                            let rows = run.series.len();
                            self.metrics.start(ui.ctx(), path, move |path| {
                                std::fs::write(path, csv).map_err(|e| e.to_string())?;
                                Ok(format!("Saved {} ({rows} steps)", path.display()))
                            });
                        }
                        Err(e) => self.metrics.message = Some(Err(e.to_string())),
                    }
                }
            }
        });
        self.metrics.message_ui(ui);
    }

    /// The steps the live run can go back to, and a button to go.
    fn rewind(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let Some(run) = cx.run_view.active() else { return };
        let points = &run.rewind_points;
        if points.is_empty() {
            let every = run.config.train.keep_every;
            ui.label(RichText::new(format!("Rewind points are kept every {every} steps.")).weak().small());
            return;
        }
        if !self.rewind_picked || self.rewind_to.is_none_or(|s| !points.contains(&s)) {
            self.rewind_to = points.last().copied();
            self.rewind_picked = false;
        }
        ui.strong("Rewind");
        ui.horizontal(|ui| {
            let label = ui.label("Rewind point");
            let shown = self.rewind_to.map_or("–".to_string(), |s| format!("step {s}"));
            egui::ComboBox::from_id_salt("rewind_point")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    for &s in points.iter().rev() {
                        if ui.selectable_value(&mut self.rewind_to, Some(s), format!("step {s}")).clicked() {
                            self.rewind_picked = true;
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            if let Some(step) = self.rewind_to {
                if ui
                    .button("Rewind")
                    .on_hover_text("Go back to this step and continue from there, paused")
                    .clicked()
                {
                    cx.actions.push(Action::Worker(Command::Rewind { step }));
                }
            }
        });
    }

    fn plot_options(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        ui.horizontal(|ui| {
            let label = ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut cx.plot.smoothing, 0.0..=0.99).fixed_decimals(2))
                .on_hover_text("Exponential moving average of the per-step losses (0 = raw)")
                .labelled_by(label.id);
            ui.checkbox(&mut cx.plot.log_y, "Log y");
            ui.checkbox(&mut cx.plot.show_epochs, "Epoch train/test");
            ui.label(
                RichText::new("Click legend entries to hide series; drag to pan, double-click to reset.")
                    .weak()
                    .small(),
            );
        });
    }

    fn plot(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, height: f32) {
        let Some(run) = cx.run_view.current() else {
            ui.add_space(height * 0.4);
            ui.vertical_centered(|ui| {
                ui.label(
                    RichText::new("No run yet. Click Train: the losses appear here as it learns.").weak(),
                );
            });
            return;
        };
        if let Some((step, msg)) = &run.collapse {
            egui::Frame::new().fill(theme::warning_fill(ui)).inner_margin(4.0).show(ui, |ui| {
                ui.add(egui::Label::new(format!("Possible collapse at step {step}: {msg}")).wrap());
            });
        }
        if self.newest != Some(run.id) {
            // A new run: compare it with the one before by default.
            if let Some(prev) = self.newest {
                self.overlays.insert(prev);
            }
            self.newest = Some(run.id);
        }
        self.overlays.retain(|id| *id != run.id && cx.run_view.run(*id).is_some());
        let overlays: Vec<&RunRecord> = self.overlays.iter().filter_map(|id| cx.run_view.run(*id)).collect();
        let mut keep: Vec<u64> = self.overlays.iter().copied().collect();
        keep.push(run.id);
        self.smooth.retain_runs(&keep);
        let h = ui.available_height().min(height).max(120.0);
        let with_quality = *cx.quality != QualitySchedule::Off
            || run.capabilities.conditional
            || !run.quality.is_empty()
            || overlays.iter().any(|r| !r.quality.is_empty());
        if !with_quality {
            loss_plot(ui, run, &overlays, cx.plot, &mut self.smooth, h);
            return;
        }
        // Losses above, quality below, on the same steps.
        // The conditioning table takes two more lines.
        let table = if run.capabilities.conditional { 60.0 } else { 0.0 };
        let loss_h = if run.quality.is_empty() { h - 90.0 - table } else { h * 0.45 };
        loss_plot(ui, run, &overlays, cx.plot, &mut self.smooth, loss_h.max(120.0));
        let qcx = QualityCtx { run, overlays: &overlays, schedule: cx.quality, actions: cx.actions };
        quality_section(ui, qcx, (h - loss_h - 8.0).max(80.0));
    }

    fn run_list(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let now = Instant::now();
        let current = cx.run_view.current().map(|r| r.id);
        egui::Grid::new("runs").striped(true).num_columns(7).show(ui, |ui| {
            ui.strong("Overlay");
            ui.strong("Run");
            ui.strong("Configuration");
            ui.strong("Final losses");
            ui.strong("Final quality");
            ui.strong("Steps");
            ui.strong("Time");
            ui.end_row();
            for r in cx.run_view.runs.iter().rev() {
                if Some(r.id) == current {
                    ui.label("current");
                } else {
                    let mut on = self.overlays.contains(&r.id);
                    if ui.checkbox(&mut on, "").accessible_name(format!("Overlay run {}", r.id)).changed() {
                        if on {
                            self.overlays.insert(r.id);
                        } else {
                            self.overlays.remove(&r.id);
                        }
                    }
                }
                ui.label(format!("#{} {}", r.id, end_text(r)));
                ui.label(r.summary());
                ui.label(losses_text(r));
                ui.label(quality_text(r));
                ui.label(format!("{}/{}", r.step, r.total_steps));
                ui.label(format_duration(r.duration(now).as_secs_f64()));
                ui.end_row();
            }
        });
    }
}

fn fixed_noise(ui: &mut egui::Ui, cx: &mut TabCtx<'_>, width: f32) {
    ui.strong("Samples from fixed noise");
    let Some(run) = cx.run_view.current() else {
        ui.label(RichText::new("The same 64 latent draws, decoded as training goes.").weak());
        return;
    };
    match &run.fixed_noise {
        Some((step, batch)) => {
            let version = (run.id << 40) ^ step;
            image_grid(ui, cx.textures, "fixed_noise", version, batch, 8, Vec2::splat(width));
            ui.label(RichText::new(format!("after step {step}")).weak().small());
        }
        None => {
            ui.label(RichText::new("waiting for the first grid…").weak());
        }
    }
}

fn end_text(r: &RunRecord) -> &'static str {
    match &r.end {
        None if r.paused => "paused",
        None => "running",
        Some(RunEnd::Finished(FinishReason::Completed)) => "done",
        Some(RunEnd::Finished(FinishReason::Stopped)) => "stopped",
        Some(RunEnd::Finished(FinishReason::Replaced)) => "replaced",
        Some(RunEnd::Failed(_)) => "failed",
    }
}

fn losses_text(r: &RunRecord) -> String {
    // The last epoch's test loss says most; fall back to the last step's losses.
    if let Some((_, e)) = r.epochs.last() {
        let src = e.test.unwrap_or(e.train);
        let which = if e.test.is_some() { "test" } else { "train" };
        let parts: Vec<String> = src.components().iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
        return format!("{which}: {}", parts.join(", "));
    }
    match r.last_losses() {
        Some(l) => {
            let parts: Vec<String> = l.components().iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
            format!("step: {}", parts.join(", "))
        }
        None => "–".into(),
    }
}

/// The latest quality measured (the final one once the run has ended).
fn quality_text(r: &RunRecord) -> String {
    match r.last_quality() {
        Some(q) => {
            let m = &q.report.samples.metrics;
            let flag = if q.warnings.is_empty() { "" } else { ", collapsed?" };
            format!(
                "FD {:.1}, recall {:.2}, coverage {:.2} (step {}){flag}",
                m.fd, m.recall, m.coverage, q.step
            )
        }
        None => "–".into(),
    }
}

/// "42 s", "3 m 05 s", "1 h 02 m".
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} m {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} m", s / 3600, (s % 3600) / 60),
    }
}
