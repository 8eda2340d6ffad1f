//! The Outliers tab: score the train and test sets under the current model, load another
//! dataset and score it too (its histogram overlaid on the same plot, AUROC of test vs it with
//! the ROC curve), the most and least likely images of any scored set, and the
//! hold-out-classes experiment (train on some labels only, then see how well the score flags
//! the others). One chosen score drives the histogram, the gallery and every AUROC; clicking a
//! gallery image opens it with its reconstruction and all its scores.
//!
//! This file: the tab, its scoring requests and controls, the hold-out experiment;
//! [`charts`]: histogram, comparison and ROC; [`gallery`]: ranked images and the zoom window.

use std::collections::BTreeSet;
use std::sync::Arc;

use egui::{RichText, Vec2};
use egui_plot::{Bar, BarChart, Corner, Legend, Line, Plot, PlotPoints};

use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::loader::DialogKind;
use crate::app::other_data::OtherData;
use crate::app::run_view::{RunRecord, Scored, Versioned, SCORED_KEEP};
use crate::app::theme;
use crate::app::widgets::image_grid::{clickable_grid, single_image};
use crate::engine::data::{convert_image, DataSource, Dataset, ImageShape, SplitKind};
use crate::engine::images::ImageBatch;
use crate::engine::models::ReconLoss;
use crate::engine::protocol::{Command, ScoreTarget};
use crate::engine::scoring::{
    auroc, hold_out_auroc, roc_curve, AnomalyScore, HoldOutAuroc, Likelihood, RocPoint, SampleScore,
    ScoreOptions, ScoredSet, Stat,
};

/// Histogram bins of the anomaly score.
const BINS: usize = 40;
/// Images in each end of the ranked gallery.
const GALLERY: usize = 8;

/// The sets this tab scores, in the order they are listed and overlaid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetKind {
    Train,
    Test,
    /// The dataset loaded for comparison.
    Other,
}

const SET_KINDS: [SetKind; 3] = [SetKind::Train, SetKind::Test, SetKind::Other];

/// A score request this tab sent.
struct Sent {
    request: u64,
    kind: SetKind,
    /// The loaded set it scored (its images show in the gallery even after another is loaded).
    data: Option<Arc<Dataset>>,
}

/// The gallery built from one scored set.
struct Ranked {
    version: u64,
    score: AnomalyScore,
    /// The shape of the set's own images.
    shape: ImageShape,
    /// The most likely (lowest score first), then the least likely (highest first).
    likely: Option<GalleryRow>,
    unlikely: Option<GalleryRow>,
}

/// One end of the ranked gallery.
struct GalleryRow {
    batch: ImageBatch,
    items: Vec<RankedImage>,
}

#[derive(Clone)]
struct RankedImage {
    /// The chosen score.
    value: f64,
    sample: SampleScore,
    /// The image as stored in its set (`Ranked::shape`).
    pixels: Vec<f32>,
}

/// A gallery image opened in the zoom window.
struct Zoom {
    /// Names the image ("test image 812 (label 3)").
    title: String,
    /// Where it ranks, e.g. "2nd least likely of 2000 by −ELBO (nats)".
    rank: String,
    sample: SampleScore,
    /// The image as the model saw it (converted to its shape).
    image: ImageBatch,
    /// Set when the image was converted: from what.
    converted_from: Option<ImageShape>,
    /// The reconstruction request sent for it (none for a GAN).
    request: Option<u64>,
    /// Changes with every image opened (texture cache key).
    version: u64,
}

/// The histograms of every scored set on shared bins.
struct Overlay {
    /// Versions of the sets it was built from.
    key: Vec<u64>,
    score: AnomalyScore,
    bin_width: f64,
    sets: Vec<SetHistogram>,
}

/// One set's histogram in an [`Overlay`].
struct SetHistogram {
    kind: SetKind,
    /// As shown in the legend.
    name: String,
    /// (bin centre, share of the set's images) per bin.
    bins: Vec<(f64, f64)>,
}

/// Test (inliers) against the loaded set (outliers).
struct Comparison {
    key: (u64, u64, AnomalyScore),
    auroc: Option<f64>,
    roc: Vec<RocPoint>,
}

pub struct OutliersTab {
    k: usize,
    /// Score BCE models with the continuous Bernoulli's normaliser.
    continuous_bernoulli: bool,
    request: u64,
    steps: u64,
    /// Labels the hold-out model trains on.
    inliers: BTreeSet<u32>,
    /// The typed path of a dataset to compare with.
    path: String,
    /// The score requests sent, oldest first (the last [`SCORED_KEEP`]).
    sent: Vec<Sent>,
    /// The version of the loaded set last sent for scoring.
    other_sent: u64,
    /// The set the gallery shows, once picked (until then the newest scored one).
    gallery: Option<SetKind>,
    /// The score shown, once picked (until then, or when the family lacks it, the default).
    score: Option<AnomalyScore>,
    ranked: Option<Ranked>,
    overlay: Option<Overlay>,
    comparison: Option<Comparison>,
    /// The hold-out experiment's AUROC by the chosen score, with the version and score it is of.
    hold_out_view: Option<(u64, AnomalyScore, HoldOutAuroc)>,
    zoom: Option<Zoom>,
    /// Counts images opened in the zoom window.
    zooms: u64,
}

impl Default for OutliersTab {
    fn default() -> Self {
        Self {
            k: 64,
            continuous_bernoulli: false,
            request: 0,
            steps: 300,
            inliers: (0..5).collect(),
            path: String::new(),
            sent: Vec::new(),
            other_sent: 0,
            gallery: None,
            score: None,
            ranked: None,
            overlay: None,
            comparison: None,
            hold_out_view: None,
            zoom: None,
            zooms: 0,
        }
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
        self.score_new_other(cx, run);
        egui::ScrollArea::vertical().id_salt("outliers_scroll").show(ui, |ui| {
            self.score_controls(ui, cx, run);
            self.other_controls(ui, cx, run);
            ui.separator();
            self.score_chooser(ui, run);
            self.histogram(ui, run);
            self.comparison(ui, run);
            self.galleries(ui, cx, run);
            ui.separator();
            self.hold_out(ui, cx, run);
        });
        self.zoom_window(ui, cx, run);
    }
}

impl OutliersTab {
    /// The score the histogram, the gallery and the AUROCs use for this run's family.
    fn chosen(&self, run: &RunRecord) -> AnomalyScore {
        let caps = &run.capabilities;
        self.score.filter(|s| caps.anomaly_scores.contains(s)).unwrap_or(caps.default_anomaly())
    }

    fn score_chooser(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        let choices = &run.capabilities.anomaly_scores;
        let mut chosen = self.chosen(run);
        ui.horizontal(|ui| {
            if choices.len() > 1 {
                egui::ComboBox::from_label("Score").selected_text(chosen.label()).show_ui(ui, |ui| {
                    for &c in choices {
                        if ui.selectable_value(&mut chosen, c, c.label()).clicked() {
                            self.score = Some(c);
                        }
                    }
                });
            } else {
                ui.label(format!("Score: {}", chosen.label()));
            }
            ui.label(RichText::new("(the histogram, the gallery and the AUROCs use it)").weak());
        });
    }

    fn options(&self) -> ScoreOptions {
        ScoreOptions { k: self.k, continuous_bernoulli: self.continuous_bernoulli, ..ScoreOptions::default() }
    }

    /// The newest scores of `kind` that arrived for this run (older ones stay on show while
    /// a new request is under way), with its index in `sent`.
    fn answered<'r>(&self, run: &'r RunRecord, kind: SetKind) -> Option<(usize, &'r Versioned<Scored>)> {
        self.sent
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| s.kind == kind)
            .find_map(|(i, s)| run.explore.scored.get(&s.request).map(|v| (i, v)))
    }

    fn scored<'r>(&self, run: &'r RunRecord, kind: SetKind) -> Option<&'r Versioned<Scored>> {
        self.answered(run, kind).map(|(_, v)| v)
    }

    fn send_score(&mut self, cx: &mut TabCtx<'_>, kind: SetKind, target: ScoreTarget) {
        self.request += 1;
        let data = match &target {
            ScoreTarget::Dataset(d) => Some(d.clone()),
            ScoreTarget::Split(_) => None,
        };
        cx.actions.push(Action::Worker(Command::Score {
            request: self.request,
            target,
            options: self.options(),
        }));
        self.sent.push(Sent { request: self.request, kind, data });
        if self.sent.len() > SCORED_KEEP {
            self.sent.remove(0);
        }
        // Hold on to the images of the newest two loaded sets only (the one shown, the one
        // being scored).
        let mut others = 0;
        for s in self.sent.iter_mut().rev().filter(|s| s.kind == SetKind::Other) {
            others += 1;
            if others > 2 {
                s.data = None;
            }
        }
    }

    fn score_split(&mut self, cx: &mut TabCtx<'_>, split: SplitKind) {
        let kind = match split {
            SplitKind::Train => SetKind::Train,
            SplitKind::Test => SetKind::Test,
        };
        self.send_score(cx, kind, ScoreTarget::Split(split));
    }

    /// Whether `set` was scored with the current options.
    fn same_options(&self, run: &RunRecord, set: &ScoredSet) -> bool {
        let likelihood = run.capabilities.likelihood;
        let k = if likelihood { self.k } else { 0 };
        let cb =
            self.continuous_bernoulli && likelihood && run.config.model.recon_loss() == Some(ReconLoss::Bce);
        set.k == k && (set.likelihood == Some(Likelihood::ContinuousBernoulli)) == cb
    }

    /// Scores the loaded set, and the test set with it unless the test scores are from this
    /// step and these options (the AUROC compares like with like).
    fn score_other(&mut self, cx: &mut TabCtx<'_>, run: &RunRecord, data: Arc<Dataset>) {
        let test_current = self
            .scored(run, SetKind::Test)
            .is_some_and(|t| t.value.step == run.step && self.same_options(run, &t.value.set));
        if !test_current {
            self.score_split(cx, SplitKind::Test);
        }
        self.send_score(cx, SetKind::Other, ScoreTarget::Dataset(data));
    }

    /// A newly loaded set is scored at once (when there is a model to score it with).
    fn score_new_other(&mut self, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let Some(other) = &cx.other.loaded else { return };
        if other.version != self.other_sent && run.has_model() {
            self.other_sent = other.version;
            let data = other.value.clone();
            self.score_other(cx, run, data);
        }
    }

    fn likelihood_note(&self, ui: &mut egui::Ui, run: &RunRecord) {
        let m = &run.config.model;
        let family = m.family();
        let text = match run.capabilities.default_anomaly() {
            AnomalyScore::NegDiscLogit => {
                format!("A {family} has no likelihood: the score is minus the discriminator's logit.")
            }
            AnomalyScore::Recon => {
                format!(
                    "An {} has no likelihood: the score is its reconstruction error.",
                    family.label().to_lowercase()
                )
            }
            AnomalyScore::NegLogPx | AnomalyScore::NegElbo | AnomalyScore::BitsPerDim => {
                let lik = match (m.recon_loss().unwrap_or(ReconLoss::Bce), self.continuous_bernoulli) {
                    (ReconLoss::Bce, false) => {
                        "This model was trained with BCE, so its likelihood is a Bernoulli on grey levels: \
                         p(x|z) treats each pixel's brightness as a probability, and is not a normalised \
                         density for continuous pixels in [0, 1]. Compare scores between images, not with \
                         other model types; tick Continuous Bernoulli to add the normaliser and score with a proper density."
                    }
                    (ReconLoss::Bce, true) => {
                        "This model was trained with BCE; scored with the continuous Bernoulli \
                         (the Bernoulli term plus its normaliser log C(λ) per pixel), a proper density \
                         on [0, 1] pixels. Same decoder, different numbers: compare like with like."
                    }
                    (ReconLoss::Mse, _) => {
                        "This model uses MSE: a Gaussian likelihood (variance ½) on pixel values."
                    }
                };
                format!("Score: −log p(x) by importance sampling (IWAE, K draws), in nats. {lik}")
            }
        };
        ui.add(egui::Label::new(RichText::new(text).weak()).wrap());
    }

    fn score_controls(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let progress = run.explore.score_progress;
        let idle = progress.is_none() && run.has_model();
        let m = &run.config.model;
        let likelihood = run.capabilities.likelihood;
        ui.horizontal_wrapped(|ui| {
            if ui.add_enabled(idle, egui::Button::new("Score test set")).clicked() {
                self.score_split(cx, SplitKind::Test);
            }
            if ui.add_enabled(idle, egui::Button::new("Score train set")).clicked() {
                self.score_split(cx, SplitKind::Train);
            }
            if likelihood {
                let label = ui.label("K");
                ui.add(egui::Slider::new(&mut self.k, 1..=256).logarithmic(true))
                    .on_hover_text("Importance samples per image (VAE): more = tighter estimate, slower")
                    .labelled_by(label.id);
                if m.recon_loss() == Some(ReconLoss::Bce) {
                    ui.checkbox(&mut self.continuous_bernoulli, "Continuous Bernoulli").on_hover_text(
                        "Add the continuous Bernoulli's normaliser so −log p(x) is a proper density on \
                         [0, 1] pixels (applies to the next scoring)",
                    );
                }
            }
            if let Some((_, done, total)) = progress {
                let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
                ui.add(egui::ProgressBar::new(frac).desired_width(200.0).text(format!("{done}/{total}")));
                if ui.button("Cancel").clicked() {
                    cx.actions.push(Action::Worker(Command::CancelScore));
                }
            }
        });
        self.likelihood_note(ui, run);
    }

    /// Load another dataset (file, folder or typed path) to score against the model.
    fn other_controls(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let other: &OtherData = cx.other;
        ui.add_space(4.0);
        ui.strong("Compare with another dataset");
        ui.label(
            RichText::new(
                "Load images the model has not seen (IDX, CSV or a folder of images; converted to the \
                 model's size and channels if needed): they are scored at once, overlaid on the \
                 histogram, and the AUROC tells how well the score separates them from the test set.",
            )
            .weak(),
        );
        let idle = other.loading.is_none();
        ui.horizontal(|ui| {
            let free = idle && !other.dialog_open();
            if ui.add_enabled(free, egui::Button::new("Open file to compare…")).clicked() {
                cx.actions.push(Action::OpenOtherDialog(DialogKind::File));
            }
            if ui.add_enabled(free, egui::Button::new("Open folder to compare…")).clicked() {
                cx.actions.push(Action::OpenOtherDialog(DialogKind::Folder));
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Compare path");
            let field = egui::TextEdit::singleline(&mut self.path)
                .hint_text("an IDX or CSV file, or a folder of images")
                .desired_width(360.0);
            let response = ui.add_enabled(idle, field).labelled_by(label.id);
            let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let typed = !self.path.trim().is_empty();
            let load = ui.add_enabled(idle && typed, egui::Button::new("Load and score"));
            if load.clicked() || (enter && typed && idle) {
                cx.actions.push(Action::LoadOther(DataSource::parse(self.path.trim())));
            }
        });
        if let Some(job) = &other.loading {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Loading {}…", job.source));
                if let Some((done, total)) = job.progress {
                    ui.label(format!("{done}/{total}"));
                }
                if ui.add_enabled(!job.is_cancelling(), egui::Button::new("Cancel loading")).clicked() {
                    cx.actions.push(Action::CancelOtherLoad);
                }
            });
        }
        if let Some(d) = &other.loaded {
            let d = d.value.clone();
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("Loaded: {}, {} images of {}", d.name, d.len(), d.shape));
                if d.shape != run.config.model.input() {
                    ui.label(
                        RichText::new(format!("(converted to the model's {})", run.config.model.input()))
                            .weak(),
                    );
                }
                let free = run.explore.score_progress.is_none() && run.has_model();
                let again = ui.add_enabled(free, egui::Button::new("Score it again")).on_hover_text(
                    "Score it under the model as it is now (with the test set, unless that was just scored)",
                );
                if again.clicked() {
                    self.score_other(cx, run, d);
                }
            });
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
        let score = self.chosen(run);
        if self.hold_out_view.as_ref().is_none_or(|(v, s, _)| *v != h.version || *s != score) {
            let view = hold_out_auroc(&rep.scores, &rep.inlier_labels, score);
            self.hold_out_view = Some((h.version, score, view));
        }
        let Some((_, _, view)) = &self.hold_out_view else { return };
        ui.label(RichText::new(format!("AUROC {:.3} by {}", view.auroc, score.label())).heading());
        ui.label(format!(
            "trained {} steps on {} images (labels {:?}), final loss {:.2}",
            rep.steps, rep.train_images, rep.inlier_labels, rep.final_loss
        ));
        if !view.per_class_auroc.is_empty() {
            let per: Vec<String> = view
                .per_class_auroc
                .iter()
                .map(|(l, a)| format!("{}: {a:.3}", data.class_name(*l)))
                .collect();
            ui.label(RichText::new(format!("per held-out label: {}", per.join(", "))).weak());
        }
        roc_plot(ui, "roc_curve", &view.roc);
    }
}

/// How a set is named in the legend and the gallery selector: a loaded dataset named like a
/// split is told apart.
fn display_name(kind: SetKind, name: &str) -> String {
    match kind {
        SetKind::Other if matches!(name, "train" | "test") => format!("{name} (loaded)"),
        _ => name.to_string(),
    }
}

/// The theme's colour key of a set.
fn color_key(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Train => "train",
        SetKind::Test => "test",
        SetKind::Other => "other",
    }
}

mod charts;
use charts::roc_plot;
mod gallery;
