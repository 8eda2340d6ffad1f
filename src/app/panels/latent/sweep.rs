//! The Disentanglement section's β sweep: one model per β and seed trained on the worker with
//! this run's settings (the run waits meanwhile), each scored; MIG, reconstruction loss and
//! active units plotted against β (every run, and the mean per β), and the table as CSV.

use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::*;
use crate::engine::protocol::DisentangleOptions;
use crate::engine::sweep::{self, SweepRow};

/// Most seeds per β the panel offers (each is a full training run).
const MAX_SEEDS: u64 = 10;

pub(super) struct SweepView {
    /// The run the inputs were set up for (the epochs default to its own).
    run: Option<u64>,
    pub(super) betas: String,
    pub(super) seeds: u64,
    pub(super) epochs: u64,
    /// The last sweep sent.
    asked: Option<u64>,
    export: ExportTarget,
}

impl Default for SweepView {
    fn default() -> Self {
        Self {
            run: None,
            betas: "1, 2, 4, 8".into(),
            seeds: 1,
            epochs: 1,
            asked: None,
            export: ExportTarget::new(
                "Sweep CSV path",
                "/path/to/sweep.csv",
                SaveDialog::File {
                    title: "Save the β sweep's table (CSV)",
                    file_name: String::new(),
                    extensions: &["csv"],
                },
            ),
        }
    }
}

/// The β values typed, separated by commas or spaces; each a finite number ≥ 0.
pub(super) fn parse_betas(text: &str) -> Result<Vec<f64>, String> {
    let betas = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<f64>() {
            Ok(b) if b.is_finite() && b >= 0.0 => Ok(b),
            _ => Err(format!("\"{s}\" is not a β: type numbers ≥ 0 separated by commas")),
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if betas.is_empty() {
        return Err("type at least one β".into());
    }
    Ok(betas)
}

impl LatentTab {
    pub(super) fn sweep_ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let view = &mut self.dis.sweep;
        if view.run != Some(run.id) {
            view.run = Some(run.id);
            view.epochs = (run.config.train.epochs as u64).max(1);
        }
        let request_base = &mut self.dis;
        egui::CollapsingHeader::new("β sweep").id_salt("beta_sweep").default_open(false).show(ui, |ui| {
            ui.add(
                egui::Label::new(
                    RichText::new(
                        "Trains one model per β and seed with this run's settings, one after another \
                         (this run waits), and scores each: the trade-off between disentanglement, \
                         reconstruction and the dimensions in use. Same as genlab sweep.",
                    )
                    .weak()
                    .small(),
                )
                .wrap(),
            );
            let view = &mut request_base.sweep;
            let parsed = parse_betas(&view.betas);
            ui.horizontal_wrapped(|ui| {
                let label = ui.label("β values");
                ui.add(egui::TextEdit::singleline(&mut view.betas).desired_width(110.0))
                    .labelled_by(label.id);
                let label = ui.label("Seeds per β");
                ui.add(egui::DragValue::new(&mut view.seeds).range(1..=MAX_SEEDS)).labelled_by(label.id);
                let label = ui.label("Epochs per model");
                ui.add(egui::DragValue::new(&mut view.epochs).range(1..=1000)).labelled_by(label.id);
            });
            let runs = parsed.as_ref().map_or(0, Vec::len) as u64 * view.seeds;
            let progress = run.explore.score_progress;
            let mine = progress.filter(|(r, _, _)| Some(*r) == view.asked);
            ui.horizontal_wrapped(|ui| {
                let free = progress.is_none() && run.has_model() && parsed.is_ok();
                if ui.add_enabled(free, egui::Button::new("Run sweep")).clicked() {
                    if let Ok(betas) = &parsed {
                        let request = request_base.next_request();
                        let view = &mut request_base.sweep;
                        view.asked = Some(request);
                        cx.actions.push(Action::Worker(Command::Sweep {
                            request,
                            betas: betas.clone(),
                            seeds: (0..view.seeds).collect(),
                            max_steps: Some(view.epochs * run.steps_per_epoch.max(1)),
                            options: DisentangleOptions::default(),
                        }));
                    }
                }
                let view = &mut request_base.sweep;
                match (&parsed, mine) {
                    (Err(e), _) => {
                        ui.label(RichText::new(e).color(theme::error_text(ui)));
                    }
                    (Ok(_), Some((_, done, total))) => {
                        let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
                        let finished = run.explore.sweep.as_ref().map_or(0, |s| s.rows.len());
                        ui.add(egui::ProgressBar::new(frac).desired_width(200.0).text(format!(
                            "model {} of {runs} · step {done}/{total}",
                            (finished + 1).min(runs as usize)
                        )));
                        if ui.button("Cancel sweep").clicked() {
                            cx.actions.push(Action::Worker(Command::CancelScore));
                        }
                    }
                    (Ok(_), None) => {
                        ui.label(
                            RichText::new(format!(
                                "{runs} models × {} epochs ({} steps each)",
                                view.epochs,
                                view.epochs * run.steps_per_epoch
                            ))
                            .weak()
                            .small(),
                        );
                    }
                }
            });
            let Some(s) = &run.explore.sweep else { return };
            let state = if s.cancelled {
                "cancelled"
            } else if s.done {
                "done"
            } else {
                "running"
            };
            ui.label(
                RichText::new(format!("{} of {} models trained ({state})", s.rows.len(), s.total))
                    .weak()
                    .small(),
            );
            if s.rows.is_empty() {
                return;
            }
            sweep_plots(ui, &s.rows);
            summary_grid(ui, &s.rows);
            let view = &mut request_base.sweep;
            view.export.path_ui(ui, "sweep.csv", "Overwrite an existing file");
            let busy = view.export.is_busy();
            if ui.add_enabled(!busy, egui::Button::new("Export CSV")).clicked() {
                if let Some(path) = view.export.target() {
                    match export::check_target(&path, view.export.overwrite) {
                        Err(e) => view.export.message = Some(Err(e.to_string())),
                        Ok(()) => {
                            let rows = s.rows.clone();
                            view.export.start(ui.ctx(), path, move |path| {
                                sweep::write_csv(path, &rows).map_err(|e| e.to_string())?;
                                Ok(format!("Saved {} ({} runs)", path.display(), rows.len()))
                            });
                        }
                    }
                }
            }
            view.export.message_ui(ui);
        });
    }
}

/// MIG, reconstruction loss and active units against β, side by side: one point per run and
/// a line through the mean of each β.
fn sweep_plots(ui: &mut egui::Ui, rows: &[SweepRow]) {
    let summary = sweep::summarise(rows);
    let mut sorted = summary.clone();
    sorted.sort_by(|a, b| a.beta.total_cmp(&b.beta));
    type Pick = fn(&SweepRow) -> f64;
    type PickMean = fn(&sweep::BetaSummary) -> f64;
    let panels: [(&str, &str, Pick, PickMean); 3] = [
        ("sweep_mig", "MIG", |r| r.mig, |s| s.mig.mean),
        ("sweep_recon", "reconstruction (nats)", |r| r.recon, |s| s.recon.mean),
        ("sweep_au", "active units", |r| r.active_units as f64, |s| s.active_units.mean),
    ];
    let width = ((ui.available_width() - 16.0) / 3.0).max(120.0);
    let (points_c, mean_c) = (theme::sweep_points(ui), theme::sweep_mean(ui));
    ui.horizontal(|ui| {
        for (id, name, pick, mean) in panels {
            ui.vertical(|ui| {
                ui.label(RichText::new(format!("{name} vs β")).small());
                Plot::new(id)
                    .width(width)
                    .height(130.0)
                    .allow_scroll(false)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .x_axis_label("β")
                    .legend(Legend::default())
                    .show(ui, |p| {
                        let each: Vec<[f64; 2]> = rows.iter().map(|r| [r.beta, pick(r)]).collect();
                        p.points(Points::new("runs", PlotPoints::new(each)).radius(3.0).color(points_c));
                        let means: Vec<[f64; 2]> = sorted.iter().map(|s| [s.beta, mean(s)]).collect();
                        p.line(Line::new("mean", PlotPoints::new(means)).color(mean_c).width(2.0));
                    });
            });
        }
    });
}

/// Mean ± sd per β of the figures plotted.
fn summary_grid(ui: &mut egui::Ui, rows: &[SweepRow]) {
    egui::Grid::new("sweep_summary").num_columns(5).spacing([12.0, 1.0]).striped(true).show(ui, |ui| {
        for h in ["β", "runs", "MIG", "recon (nats)", "active units"] {
            ui.label(RichText::new(h).small().strong());
        }
        ui.end_row();
        for s in sweep::summarise(rows) {
            ui.label(RichText::new(format!("{}", s.beta)).small());
            ui.label(RichText::new(s.runs.to_string()).small());
            ui.label(RichText::new(format!("{:.3} ± {:.3}", s.mig.mean, s.mig.sd)).small());
            ui.label(RichText::new(format!("{:.1} ± {:.1}", s.recon.mean, s.recon.sd)).small());
            ui.label(RichText::new(format!("{:.1} ± {:.1}", s.active_units.mean, s.active_units.sd)).small());
            ui.end_row();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::parse_betas;

    #[test]
    fn beta_lists_parse_with_commas_or_spaces_and_refuse_bad_values() {
        assert_eq!(parse_betas("1, 2,4  8"), Ok(vec![1.0, 2.0, 4.0, 8.0]));
        assert_eq!(parse_betas("0.5"), Ok(vec![0.5]));
        assert!(parse_betas("").is_err());
        assert!(parse_betas("1, x").unwrap_err().contains("\"x\""));
        assert!(parse_betas("-1").is_err());
        assert!(parse_betas("inf").is_err());
    }
}
