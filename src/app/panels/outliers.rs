//! The Outliers tab: score the test set under the current model (a histogram of the anomaly
//! score and the most and least likely images), and the hold-out-classes experiment (train on
//! some labels only, then see how well the score flags the others: AUROC and ROC curve).

use std::collections::BTreeSet;

use egui::{RichText, Vec2};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::run_view::RunRecord;
use crate::app::theme;
use crate::app::widgets::image_grid::image_grid;
use crate::engine::data::{Dataset, SplitKind};
use crate::engine::images::ImageBatch;
use crate::engine::models::{Family, ReconLoss};
use crate::engine::protocol::{Command, ScoreTarget};
use crate::engine::scoring::{ScoreOptions, ScoredSet};

/// Histogram bins of the anomaly score.
const BINS: usize = 40;
/// Images in each end of the ranked gallery.
const GALLERY: usize = 8;

/// The gallery built from one scored set.
struct Ranked {
    version: u64,
    /// Most likely (lowest anomaly) first, then least likely; with their scores.
    likely: Option<(ImageBatch, Vec<f64>)>,
    unlikely: Option<(ImageBatch, Vec<f64>)>,
    histogram: Vec<(f64, f64)>,
    bin_width: f64,
}

pub struct OutliersTab {
    k: usize,
    request: u64,
    steps: u64,
    /// Labels the hold-out model trains on.
    inliers: BTreeSet<u32>,
    ranked: Option<Ranked>,
}

impl Default for OutliersTab {
    fn default() -> Self {
        Self { k: 64, request: 0, steps: 300, inliers: (0..5).collect(), ranked: None }
    }
}

impl Tab for OutliersTab {
    fn title(&self) -> &'static str {
        "Outliers"
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let Some(run) = cx.run_view.current() else {
            ui.label(RichText::new("No run yet. Train a model, then score the test set here.").weak());
            return;
        };
        if !run.has_model() {
            super::latent::ended_note(ui);
        }
        egui::ScrollArea::vertical().id_salt("outliers_scroll").show(ui, |ui| {
            self.likelihood_note(ui, run);
            self.score_controls(ui, cx, run);
            self.scored(ui, cx, run);
            ui.separator();
            self.hold_out(ui, cx, run);
        });
    }
}

impl OutliersTab {
    fn options(&self) -> ScoreOptions {
        ScoreOptions { k: self.k, ..ScoreOptions::default() }
    }

    fn likelihood_note(&self, ui: &mut egui::Ui, run: &RunRecord) {
        let m = &run.config.model;
        let text = match m.family {
            Family::Gan => {
                "A GAN has no likelihood: the score is minus the discriminator's logit.".to_string()
            }
            Family::Autoencoder => {
                "An autoencoder has no likelihood: the score is its reconstruction error.".into()
            }
            Family::Vae | Family::BetaVae => {
                let lik = if m.recon_loss == ReconLoss::Bce {
                    "This model uses BCE, so its likelihood is a Bernoulli on grey levels: p(x|z) treats \
                     each pixel's brightness as a probability, which is not a density on [0, 1]; compare \
                     scores between images, not with other model types."
                } else {
                    "This model uses MSE: a Gaussian likelihood on pixel values."
                };
                format!("Score: −log p(x) by importance sampling (IWAE, K draws), in nats. {lik}")
            }
        };
        ui.add(egui::Label::new(RichText::new(text).weak()).wrap());
    }

    fn score_controls(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let progress = run.explore.score_progress;
        ui.horizontal(|ui| {
            if ui.add_enabled(progress.is_none(), egui::Button::new("Score test set")).clicked() {
                self.request += 1;
                cx.actions.push(Action::Worker(Command::Score {
                    request: self.request,
                    target: ScoreTarget::Split(SplitKind::Test),
                    options: self.options(),
                }));
            }
            let label = ui.label("K");
            ui.add(egui::Slider::new(&mut self.k, 1..=256).logarithmic(true))
                .on_hover_text("Importance samples per image (VAE): more = tighter estimate, slower")
                .labelled_by(label.id);
            if let Some((_, done, total)) = progress {
                let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
                ui.add(egui::ProgressBar::new(frac).desired_width(200.0).text(format!("{done}/{total}")));
                if ui.button("Cancel").clicked() {
                    cx.actions.push(Action::Worker(Command::CancelScore));
                }
            }
        });
    }

    fn scored(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let Some(s) = &run.explore.scored else { return };
        if self.ranked.as_ref().is_none_or(|r| r.version != s.version) {
            self.ranked = Some(rank(s.version, &s.value, cx.dataset));
        }
        let Some(r) = &self.ranked else { return };
        let set = &s.value;
        let stat = crate::engine::scoring::Stat::of(&set.anomaly_scores());
        ui.label(format!(
            "{} test images scored{}; score = {}{}",
            set.samples.len(),
            if set.k > 0 { format!(" (K = {})", set.k) } else { String::new() },
            set.anomaly_name(),
            stat.map_or(String::new(), |st| format!(", mean {:.2} ± {:.2}", st.mean, st.stderr)),
        ));
        ui.strong("Anomaly score histogram (higher = less likely)");
        let bars: Vec<Bar> = r.histogram.iter().map(|&(x, c)| Bar::new(x, c).width(r.bin_width)).collect();
        let color = theme::bar_color(ui);
        Plot::new("anomaly_histogram")
            .height(180.0)
            .allow_scroll(false)
            .show(ui, |p| p.bar_chart(BarChart::new("images", bars).color(color)));
        let w = ui.available_width().min(700.0);
        for (title, key, part) in [
            ("Most likely test images (lowest score)", "outliers_likely", &r.likely),
            ("Least likely test images (highest score)", "outliers_unlikely", &r.unlikely),
        ] {
            let Some((batch, scores)) = part else { continue };
            ui.strong(title);
            image_grid(ui, cx.textures, key, r.version, batch, GALLERY, Vec2::new(w, w / GALLERY as f32));
            let txt: Vec<String> = scores.iter().map(|v| format!("{v:.1}")).collect();
            ui.label(RichText::new(format!("scores: {}", txt.join(" · "))).weak().small());
        }
    }

    fn hold_out(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        ui.strong("Hold out classes");
        let Some(data) = cx.dataset else { return };
        let classes = data.num_classes();
        if classes < 2 {
            ui.label(RichText::new("This dataset has no labels to hold out.").weak());
            return;
        }
        ui.label(
            RichText::new(
                "Train a fresh model (same settings) on the checked labels only, then score the \
                 test set: do the other labels look anomalous?",
            )
            .weak(),
        );
        ui.horizontal_wrapped(|ui| {
            ui.label("Train on:");
            for l in 0..classes as u32 {
                let mut on = self.inliers.contains(&l);
                if ui.checkbox(&mut on, data.class_name(l)).changed() {
                    if on {
                        self.inliers.insert(l);
                    } else {
                        self.inliers.remove(&l);
                    }
                }
            }
        });
        let progress = run.explore.score_progress;
        let valid = !self.inliers.is_empty() && self.inliers.len() < classes;
        ui.horizontal(|ui| {
            let label = ui.label("Steps");
            ui.add(egui::Slider::new(&mut self.steps, 50..=5000).logarithmic(true)).labelled_by(label.id);
            if ui.add_enabled(valid && progress.is_none(), egui::Button::new("Run experiment")).clicked() {
                self.request += 1;
                cx.actions.push(Action::Worker(Command::HoldOut {
                    request: self.request,
                    labels: self.inliers.iter().copied().collect(),
                    steps: self.steps,
                    options: self.options(),
                }));
            }
            if !valid {
                ui.label(RichText::new("check some labels, not all").weak());
            }
        });
        let Some(h) = &run.explore.hold_out else { return };
        let rep = &h.value;
        ui.label(RichText::new(format!("AUROC {:.3}", rep.auroc)).heading());
        ui.label(format!(
            "trained {} steps on {} images (labels {:?}), final loss {:.2}",
            rep.steps, rep.train_images, rep.inlier_labels, rep.final_loss
        ));
        if !rep.per_class_auroc.is_empty() {
            let per: Vec<String> =
                rep.per_class_auroc.iter().map(|(l, a)| format!("{}: {a:.3}", data.class_name(*l))).collect();
            ui.label(RichText::new(format!("per held-out label: {}", per.join(", "))).weak());
        }
        let roc_color = theme::series_color(ui, "loss");
        let pts: Vec<[f64; 2]> = rep.roc.iter().map(|p| [p.fpr, p.tpr]).collect();
        Plot::new("roc_curve")
            .height(260.0)
            .width(300.0)
            .data_aspect(1.0)
            .legend(Legend::default())
            .x_axis_label("false positive rate")
            .y_axis_label("true positive rate")
            .show(ui, |p| {
                p.line(Line::new("ROC", PlotPoints::new(pts)).color(roc_color));
                p.line(Line::new("chance", PlotPoints::new(vec![[0.0, 0.0], [1.0, 1.0]])));
            });
    }
}

/// Histogram and the ranked ends of a scored set.
fn rank(version: u64, set: &ScoredSet, data: Option<&Dataset>) -> Ranked {
    let mut order: Vec<(f64, usize)> =
        set.samples.iter().map(|s| (s.anomaly(), s.index)).filter(|(v, _)| v.is_finite()).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let gallery = |items: Vec<(f64, usize)>| -> Option<(ImageBatch, Vec<f64>)> {
        let d = data?;
        let items: Vec<(f64, usize)> = items.into_iter().filter(|(_, i)| *i < d.len()).collect();
        if items.is_empty() {
            return None;
        }
        let mut values = Vec::with_capacity(items.len() * d.shape.len());
        for (_, i) in &items {
            values.extend_from_slice(d.image(*i));
        }
        Some((ImageBatch::from_f32(&values, d.shape), items.iter().map(|(v, _)| *v).collect()))
    };
    let likely = gallery(order.iter().take(GALLERY).copied().collect());
    let unlikely = gallery(order.iter().rev().take(GALLERY).copied().collect());
    let (lo, hi) = match (order.first(), order.last()) {
        (Some(a), Some(b)) => (a.0, b.0),
        _ => (0.0, 1.0),
    };
    let bin_width = ((hi - lo) / BINS as f64).max(1e-9);
    let mut counts = vec![0usize; BINS];
    for (v, _) in &order {
        let b = (((v - lo) / bin_width) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    let histogram =
        counts.iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * bin_width, c as f64)).collect();
    Ranked { version, likely, unlikely, histogram, bin_width }
}
