//! The Latent space tab's Disentanglement section: the current model's scores against its
//! data's known factors (MIG with the gap of each factor, FactorVAE, DCI, active units),
//! computed on the worker on request, and the latent × factor mutual-information matrix as a
//! heat map. The β sweep below it lives in [`super::sweep`].

use egui::{Align2, FontId, Rect, RichText, Sense, Vec2};

use super::*;
use crate::engine::data::DataSource;
use crate::engine::disentangle::{DisentanglementReport, ACTIVE_VARIANCE};
use crate::engine::protocol::DisentangleOptions;

/// Request numbers of this section start here, far from the Outliers tab's (which count from
/// 1), so that the shared score progress is attributed to the right tab.
pub(super) const REQUEST_BASE: u64 = 1 << 40;
/// One heat-map cell, points.
const CELL: Vec2 = Vec2::new(54.0, 17.0);
/// The heat map's row-label column, points.
const ROW_LABEL_W: f32 = 34.0;

/// What the section keeps between frames.
pub(super) struct DisentangleView {
    request: u64,
    /// The last scores request sent (its progress is shown while under way).
    pub(super) asked: Option<u64>,
    pub(super) sweep: super::sweep::SweepView,
}

impl Default for DisentangleView {
    fn default() -> Self {
        Self { request: REQUEST_BASE, asked: None, sweep: super::sweep::SweepView::default() }
    }
}

impl DisentangleView {
    pub(super) fn next_request(&mut self) -> u64 {
        self.request += 1;
        self.request
    }
}

/// Whether the run's data has ground-truth factors: the generated shapes sets always do; a
/// loaded dataset does when it is the run's and carries them.
pub(super) fn has_factors(run: &RunRecord, data: Option<&Dataset>) -> bool {
    matches!(run.dataset.source, DataSource::Synthetic(_))
        || run.explore.disentangled.is_some()
        || data.is_some_and(|d| d.name == run.dataset.name && d.factors.is_some())
}

impl LatentTab {
    /// The section: a note when the data has no factors, else the button, the progress, the
    /// scores, the matrix and the β sweep.
    pub(super) fn disentanglement(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        egui::CollapsingHeader::new(RichText::new("Disentanglement").strong())
            .id_salt("disentanglement")
            .default_open(true)
            .show(ui, |ui| {
                if !has_factors(run, cx.dataset) {
                    ui.add(
                        egui::Label::new(
                            RichText::new(
                                "This data has no ground-truth factors, so there is nothing to score \
                                 disentanglement against. Load the Shapes data (the Shapes button in \
                                 the Dataset panel, or --data builtin:shapes / builtin:shapes2) and \
                                 train a VAE or β-VAE on it.",
                            )
                            .weak(),
                        )
                        .wrap(),
                    );
                    return;
                }
                self.score_controls(ui, cx, run);
                if let Some(d) = &run.explore.disentangled {
                    let (step, report) = &d.value;
                    scores(ui, report, *step, run.step);
                    ui.add_space(4.0);
                    ui.label(
                        RichText::new(
                            "Mutual information of each dimension (rows, by variance of μ) with each \
                             factor, over the factor's entropy: one bright cell per column and per row \
                             is a disentangled code.",
                        )
                        .weak()
                        .small(),
                    );
                    mi_heatmap(ui, report);
                }
                ui.add_space(4.0);
                self.sweep_ui(ui, cx, run);
            });
    }

    fn score_controls(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let progress = run.explore.score_progress;
        let mine = progress.filter(|(r, _, _)| Some(*r) == self.dis.asked);
        ui.horizontal_wrapped(|ui| {
            let label =
                if run.explore.disentangled.is_some() { "Recompute scores" } else { "Compute scores" };
            let free = progress.is_none() && run.has_model();
            let button = ui
                .add_enabled(free, egui::Button::new(label))
                .on_hover_text("Encode every image and score the code against the data's factors");
            if button.clicked() {
                let request = self.dis.next_request();
                self.dis.asked = Some(request);
                cx.actions.push(Action::Worker(Command::Disentangle {
                    request,
                    options: DisentangleOptions::default(),
                }));
            }
            match mine {
                Some((_, done, total)) => {
                    ui.spinner();
                    let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
                    ui.add(
                        egui::ProgressBar::new(frac)
                            .desired_width(160.0)
                            .text("encoding and scoring (10,000 points)…"),
                    );
                }
                None if progress.is_some() => {
                    ui.label(RichText::new("Another request is under way.").weak().small());
                }
                None => {
                    ui.label(
                        RichText::new("MIG, FactorVAE and DCI as disentanglement_lib computes them.")
                            .weak()
                            .small(),
                    );
                }
            }
        });
    }
}

/// The scores, one per line, with what each means.
fn scores(ui: &mut egui::Ui, r: &DisentanglementReport, step: u64, now: u64) {
    egui::Grid::new("disentangle_scores").num_columns(3).spacing([10.0, 2.0]).show(ui, |ui| {
        ui.label("MIG");
        ui.strong(format!("{:.3}", r.mig));
        let gaps: Vec<String> =
            r.factor_names.iter().zip(&r.mig_per_factor).map(|(n, g)| format!("{n} {g:.2}")).collect();
        ui.label(RichText::new(format!("gap per factor: {}", gaps.join(" · "))).weak());
        ui.end_row();

        ui.label("FactorVAE");
        ui.strong(format!("{:.3}", r.factor_vae.eval_accuracy));
        ui.label(
            RichText::new(format!(
                "majority-vote accuracy (train {:.3}; chance 1/{}; {} dimensions kept)",
                r.factor_vae.train_accuracy,
                r.factor_names.len(),
                r.factor_vae.active_dims
            ))
            .weak(),
        );
        ui.end_row();

        ui.label("DCI");
        ui.strong(format!("{:.3}", r.dci.disentanglement));
        ui.label(
            RichText::new(format!(
                "disentanglement; completeness {:.3} (lasso importances)",
                r.dci.completeness
            ))
            .weak(),
        );
        ui.end_row();

        ui.label("Active units");
        ui.strong(format!("{} of {}", r.active_units, r.latent_dim));
        ui.label(RichText::new(format!("dimensions whose μ varies (variance > {ACTIVE_VARIANCE})")).weak());
        ui.end_row();
    });
    let when = if step == now {
        format!("Measured at step {step} on {} points.", r.points)
    } else {
        format!("Measured at step {step} on {} points; the model has trained since (step {now}).", r.points)
    };
    ui.label(RichText::new(when).weak().small());
}

/// The `[d][k]` mutual-information matrix over each factor's entropy, one row per dimension
/// by decreasing variance of μ, as coloured cells with their values; hovering a cell tells
/// the nats.
fn mi_heatmap(ui: &mut egui::Ui, r: &DisentanglementReport) {
    let k = r.factor_names.len();
    let d = r.mi.len();
    if k == 0 || d == 0 {
        return;
    }
    let mut rows: Vec<usize> = (0..d).collect();
    rows.sort_by(|&a, &b| {
        let (va, vb) =
            (r.variances.get(a).copied().unwrap_or(0.0), r.variances.get(b).copied().unwrap_or(0.0));
        vb.total_cmp(&va)
    });
    let size = Vec2::new(ROW_LABEL_W + CELL.x * k as f32, CELL.y * (d + 1) as f32);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            "Mutual information between dimensions and factors",
        )
    });
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let font = FontId::proportional(11.0);
    let cell = |row: usize, col: usize| {
        Rect::from_min_size(
            rect.min + Vec2::new(ROW_LABEL_W + col as f32 * CELL.x, (row + 1) as f32 * CELL.y),
            CELL,
        )
    };
    for (j, name) in r.factor_names.iter().enumerate() {
        let top = cell(0, j).translate(Vec2::new(0.0, -CELL.y));
        painter.text(top.center(), Align2::CENTER_CENTER, name, font.clone(), text);
    }
    let share = |i: usize, j: usize| {
        let mi = r.mi.get(i).and_then(|m| m.get(j)).copied().unwrap_or(0.0);
        let h = r.factor_entropy.get(j).copied().unwrap_or(0.0);
        (mi, h, if h > 1e-12 { (mi / h).clamp(0.0, 1.0) } else { 0.0 })
    };
    let mut hovered = None;
    for (row, &i) in rows.iter().enumerate() {
        let left = cell(row, 0);
        let label_pos = egui::pos2(rect.left() + ROW_LABEL_W - 4.0, left.center().y);
        let active = r.captures.get(i).copied().flatten().is_some();
        painter.text(
            label_pos,
            Align2::RIGHT_CENTER,
            format!("z{i}"),
            font.clone(),
            if active { text } else { weak },
        );
        for j in 0..k {
            let c = cell(row, j);
            let (_, _, t) = share(i, j);
            painter.rect_filled(c.shrink(0.5), 1.0, theme::heat_color(ui, t as f32));
            painter.text(
                c.center(),
                Align2::CENTER_CENTER,
                format!("{t:.2}"),
                font.clone(),
                theme::heat_text(ui, t as f32),
            );
            if response.hover_pos().is_some_and(|p| c.contains(p)) {
                hovered = Some((i, j));
            }
        }
    }
    if let Some((i, j)) = hovered {
        let (mi, h, t) = share(i, j);
        let name = r.factor_names.get(j).map_or("?", String::as_str);
        response.on_hover_text(format!(
            "z{i} · {name}: {mi:.3} nats of mutual information, {:.0}% of {name}'s entropy ({h:.3} nats)",
            t * 100.0
        ));
    }
}

/// Width of the traversal's row labels, points.
pub(super) const TRAVERSAL_LABEL_W: f32 = 96.0;

/// Labels left of the traversal grid drawn in `grid`, one per row: the dimension, and once
/// the scores exist the factor it shares most information with ("inactive" when its μ does
/// not vary).
pub(super) fn row_labels(
    ui: &mut egui::Ui,
    grid: Rect,
    dims: &[usize],
    report: Option<&DisentanglementReport>,
) {
    if dims.is_empty() {
        return;
    }
    let row_h = grid.height() / dims.len() as f32;
    for (row, &i) in dims.iter().enumerate() {
        let text = match report {
            Some(r) if r.captures.get(i).copied().flatten().is_some() => {
                format!("z{i} · {}", r.captured_name(i))
            }
            Some(_) => format!("z{i} · inactive"),
            None => format!("z{i}"),
        };
        let y = grid.top() + row as f32 * row_h;
        let rect = Rect::from_min_max(
            egui::pos2(grid.left() - TRAVERSAL_LABEL_W - 4.0, y),
            egui::pos2(grid.left() - 4.0, y + row_h),
        );
        ui.put(rect, egui::Label::new(RichText::new(text).small()).halign(egui::Align::RIGHT).truncate());
    }
}
