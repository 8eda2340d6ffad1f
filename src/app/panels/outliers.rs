//! The Outliers tab: score the train and test sets under the current model, load another
//! dataset and score it too (its histogram overlaid on the same plot, AUROC of test vs it with
//! the ROC curve), the most and least likely images of any scored set, and the
//! hold-out-classes experiment (train on some labels only, then see how well the score flags
//! the others). One chosen score drives the histogram, the gallery and every AUROC; clicking a
//! gallery image opens it with its reconstruction and all its scores.

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

    /// The anomaly score of every scored set, overlaid on shared bins.
    fn histogram(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        let sets: Vec<(SetKind, &Versioned<Scored>)> =
            SET_KINDS.iter().filter_map(|&k| self.scored(run, k).map(|s| (k, s))).collect();
        if sets.is_empty() {
            return;
        }
        let score = self.chosen(run);
        let key: Vec<u64> = sets.iter().map(|(_, s)| s.version).collect();
        if self.overlay.as_ref().is_none_or(|o| o.key != key || o.score != score) {
            self.overlay = Some(overlay(key, &sets, score));
        }
        for (_, s) in &sets {
            summary_line(ui, &s.value, score);
        }
        let Some(o) = &self.overlay else { return };
        ui.strong(format!("Histogram of {} (higher = less likely)", score.label()));
        let colors: Vec<_> = SET_KINDS.iter().map(|&k| theme::scored_set_color(ui, color_key(k))).collect();
        Plot::new("anomaly_histogram")
            .height(200.0)
            .allow_scroll(false)
            .legend(Legend::default())
            .x_axis_label(score.label())
            .y_axis_label("share of the set")
            .show(ui, |p| {
                for h in &o.sets {
                    let bars: Vec<Bar> =
                        h.bins.iter().map(|&(x, c)| Bar::new(x, c).width(o.bin_width)).collect();
                    let color = colors[SET_KINDS.iter().position(|k| *k == h.kind).unwrap_or(0)];
                    p.bar_chart(BarChart::new(h.name.clone(), bars).color(color));
                }
            });
    }

    /// AUROC and ROC of the test set (inliers) against the loaded set (outliers).
    fn comparison(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        let (Some(test), Some(other)) = (self.scored(run, SetKind::Test), self.scored(run, SetKind::Other))
        else {
            return;
        };
        let score = self.chosen(run);
        let key = (test.version, other.version, score);
        if self.comparison.as_ref().is_none_or(|c| c.key != key) {
            let (inl, out) = (test.value.set.scores(score), other.value.set.scores(score));
            self.comparison = Some(Comparison { key, auroc: auroc(&inl, &out), roc: roc_curve(&inl, &out) });
        }
        let Some(c) = &self.comparison else { return };
        let (t, o) = (&test.value, &other.value);
        ui.add_space(4.0);
        match c.auroc {
            Some(a) => ui.label(
                RichText::new(format!(
                    "AUROC {a:.3}: test (inliers) vs {} (outliers), by {}",
                    o.name,
                    score.label()
                ))
                .heading(),
            ),
            None => ui.label("AUROC: one of the sets is empty"),
        };
        ui.label(
            RichText::new(
                "The chance that an image of the loaded set scores as more anomalous than a test image \
                 (1 = always, 0.5 = no better than chance).",
            )
            .weak(),
        );
        if t.step != o.step || t.set.k != o.set.k || t.set.likelihood != o.set.likelihood {
            ui.label(
                RichText::new(format!(
                    "Scored differently (test: step {}, K = {}; {}: step {}, K = {}): click Score it again \
                     to score both under the same model.",
                    t.step, t.set.k, o.name, o.step, o.set.k
                ))
                .color(theme::error_text(ui)),
            );
        }
        roc_plot(ui, "roc_test_vs_other", &c.roc);
    }

    /// The most and least likely images of the chosen scored set.
    fn galleries(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let present: Vec<(SetKind, &Versioned<Scored>)> =
            SET_KINDS.iter().filter_map(|&k| self.scored(run, k).map(|s| (k, s))).collect();
        let Some(&(newest, _)) = present.iter().max_by_key(|(_, s)| s.version) else { return };
        let mut chosen = self.gallery.filter(|g| present.iter().any(|(k, _)| k == g)).unwrap_or(newest);
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let name = |k: SetKind| {
                present
                    .iter()
                    .find(|(p, _)| *p == k)
                    .map_or(String::new(), |(_, s)| display_name(k, &s.value.name))
            };
            egui::ComboBox::from_label("Gallery set").selected_text(name(chosen)).show_ui(ui, |ui| {
                for (k, _) in &present {
                    if ui.selectable_value(&mut chosen, *k, name(*k)).clicked() {
                        self.gallery = Some(*k);
                    }
                }
            });
            ui.label(RichText::new("click an image to see its reconstruction and scores").weak());
        });
        let Some((_, s)) = present.iter().find(|(k, _)| *k == chosen) else { return };
        let score = self.chosen(run);
        if self.ranked.as_ref().is_none_or(|r| r.version != s.version || r.score != score) {
            let loaded = match chosen {
                SetKind::Other => self.answered(run, chosen).and_then(|(i, _)| self.sent[i].data.clone()),
                _ => None,
            };
            let data = if chosen == SetKind::Other { loaded.as_deref() } else { cx.dataset };
            self.ranked = Some(rank(s.version, &s.value.set, data, score));
        }
        let Some(r) = &self.ranked else { return };
        let w = ui.available_width().min(700.0);
        let name = display_name(chosen, &s.value.name);
        let total = s.value.set.samples.len();
        let mut clicked = None;
        for (likely, part) in [(true, &r.likely), (false, &r.unlikely)] {
            let Some(row) = part else { continue };
            let (title, key, end) = if likely {
                (format!("Most likely {name} images (lowest score)"), "outliers_likely", "most likely")
            } else {
                (format!("Least likely {name} images (highest score)"), "outliers_unlikely", "least likely")
            };
            ui.strong(title);
            let size = Vec2::new(w, w / GALLERY as f32);
            let label = format!("Gallery: {end} {name} images");
            if let Some(i) =
                clickable_grid(ui, cx.textures, key, r.version, &row.batch, GALLERY, size, &label)
            {
                if let Some(item) = row.items.get(i) {
                    let rank = format!("{} {end} of {total} by {}", ordinal(i + 1), score.label());
                    clicked = Some((item.clone(), r.shape, rank));
                }
            }
            let txt: Vec<String> = row.items.iter().map(|it| format!("{:.1}", it.value)).collect();
            ui.label(RichText::new(format!("{end} scores: {}", txt.join(" · "))).weak().small());
        }
        if let Some((item, shape, rank)) = clicked {
            let title = match item.sample.label {
                Some(l) => format!("{name} image {} (label {l})", item.sample.index),
                None => format!("{name} image {}", item.sample.index),
            };
            let zoom = self.open_zoom(cx, run, &item, shape, title, rank);
            self.zoom = Some(zoom);
        }
    }

    /// A zoom window for `item`, asking the worker for its reconstruction (AE / VAE).
    fn open_zoom(
        &mut self,
        cx: &mut TabCtx<'_>,
        run: &RunRecord,
        item: &RankedImage,
        shape: ImageShape,
        title: String,
        rank: String,
    ) -> Zoom {
        let input = run.config.model.input();
        // Converted exactly as scoring converted it, so the model sees the image it scored.
        let pixels =
            if shape == input { item.pixels.clone() } else { convert_image(&item.pixels, shape, input) };
        let request = (run.capabilities.encoder && run.has_model()).then(|| {
            self.request += 1;
            cx.actions.push(Action::Worker(Command::ReconstructImages {
                request: self.request,
                images: pixels.clone(),
            }));
            self.request
        });
        self.zooms += 1;
        Zoom {
            title,
            rank,
            sample: item.sample.clone(),
            image: ImageBatch::from_f32(&pixels, input),
            converted_from: (shape != input).then_some(shape),
            request,
            version: self.zooms,
        }
    }

    /// The image clicked in the gallery, its reconstruction and all its scores.
    fn zoom_window(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let Some(z) = &self.zoom else { return };
        let (family, encoder) = (run.config.model.family(), run.capabilities.encoder);
        let chosen = self.chosen(run);
        let answer = run.explore.images_reconstructed.as_ref().filter(|a| Some(a.value.request) == z.request);
        let mut open = true;
        // At the right, so the chooser and the gallery stay in view.
        let corner = ui.ctx().content_rect().right_top() + Vec2::new(-24.0, 80.0);
        egui::Window::new("Outlier zoom")
            .open(&mut open)
            .pivot(egui::Align2::RIGHT_TOP)
            .default_pos(corner)
            .resizable(false)
            .collapsible(false)
            .show(ui.ctx(), |ui| {
                ui.strong(&z.title);
                ui.label(RichText::new(&z.rank).weak());
                let size = 200.0;
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        single_image(ui, cx.textures, "outliers_zoom_image", z.version, &z.image, 0, size);
                        ui.label("image");
                    });
                    ui.vertical(|ui| match (encoder, z.request, answer) {
                        (false, _, _) => {
                            ui.label(
                                RichText::new(format!(
                                    "A {family} has no encoder: there is no reconstruction. Its score is {}.",
                                    chosen.label()
                                ))
                                .weak(),
                            );
                        }
                        (_, None, _) => {
                            ui.label(RichText::new("The model is gone: no reconstruction.").weak());
                        }
                        (_, Some(_), Some(a)) => {
                            let b = &a.value.reconstructions;
                            single_image(ui, cx.textures, "outliers_zoom_recon", a.version, b, 0, size);
                            ui.label("reconstruction");
                        }
                        (_, Some(_), None) => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label("Reconstructing…");
                            });
                        }
                    });
                });
                if let Some(from) = z.converted_from {
                    ui.label(
                        RichText::new(format!(
                            "converted from {from} to the model's {}, as it was scored",
                            z.image.shape
                        ))
                        .weak()
                        .small(),
                    );
                }
                egui::Grid::new("outliers_zoom_scores").num_columns(2).striped(true).show(ui, |ui| {
                    for &c in &run.capabilities.anomaly_scores {
                        let v = c.of(&z.sample);
                        if v.is_finite() {
                            let name = if c == chosen {
                                format!("{} (chosen)", c.label())
                            } else {
                                c.label().into()
                            };
                            ui.label(name);
                            ui.label(format!("{v:.3}"));
                            ui.end_row();
                        }
                    }
                    if let Some(kl) = z.sample.kl {
                        ui.label("KL to the prior (nats)");
                        ui.label(format!("{kl:.3}"));
                        ui.end_row();
                    }
                    if let Some(l) = z.sample.disc_logit {
                        ui.label("discriminator logit");
                        ui.label(format!("{l:.3}"));
                        ui.end_row();
                    }
                });
            });
        if !open {
            self.zoom = None;
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

/// One line per scored set: its size, the score's mean and what it was scored with.
fn summary_line(ui: &mut egui::Ui, s: &Scored, score: AnomalyScore) {
    let set = &s.set;
    let stat = Stat::of(&set.scores(score));
    let lik = set.likelihood.map_or(String::new(), |l| format!(", {}", l.label()));
    let k = if set.k > 0 { format!(", K = {}", set.k) } else { String::new() };
    ui.label(format!(
        "{}: {} images scored at step {}{k}{lik}; {}{}",
        s.name,
        set.samples.len(),
        s.step,
        score.label(),
        stat.map_or(String::new(), |st| format!(" mean {:.2} ± {:.2}", st.mean, st.stderr)),
    ));
    if let Some(n) = &set.notice {
        ui.label(RichText::new(format!("{}: {n}", s.name)).weak().small());
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

/// A ROC curve with the chance diagonal.
fn roc_plot(ui: &mut egui::Ui, id: &str, roc: &[RocPoint]) {
    let color = theme::series_color(ui, crate::engine::models::LossKey::Loss);
    let pts: Vec<[f64; 2]> = roc.iter().map(|p| [p.fpr, p.tpr]).collect();
    Plot::new(id)
        .height(260.0)
        .width(300.0)
        .data_aspect(1.0)
        .legend(Legend::default().position(Corner::RightBottom))
        .x_axis_label("false positive rate")
        .y_axis_label("true positive rate")
        .show(ui, |p| {
            p.line(Line::new("ROC", PlotPoints::new(pts)).color(color));
            p.line(Line::new("chance", PlotPoints::new(vec![[0.0, 0.0], [1.0, 1.0]])));
        });
}

/// Histograms of `sets`' anomaly scores on shared bins, each normalised to its set's size.
fn overlay(key: Vec<u64>, sets: &[(SetKind, &Versioned<Scored>)], score: AnomalyScore) -> Overlay {
    let finite = |s: &Scored| s.set.scores(score).into_iter().filter(|v| v.is_finite()).collect::<Vec<_>>();
    let values: Vec<(SetKind, String, Vec<f64>)> =
        sets.iter().map(|(k, s)| (*k, display_name(*k, &s.value.name), finite(&s.value))).collect();
    let all = values.iter().flat_map(|(_, _, v)| v.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let bin_width = ((hi - lo) / BINS as f64).max(1e-9);
    let sets = values
        .into_iter()
        .map(|(kind, name, v)| {
            let mut counts = vec![0usize; BINS];
            for x in &v {
                counts[(((x - lo) / bin_width) as usize).min(BINS - 1)] += 1;
            }
            let n = v.len().max(1) as f64;
            let bins = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (lo + (i as f64 + 0.5) * bin_width, c as f64 / n))
                .collect();
            SetHistogram { kind, name, bins }
        })
        .collect();
    Overlay { key, score, bin_width, sets }
}

/// The ranked ends of a scored set by `score`, with the images of `data` (the set it scored).
fn rank(version: u64, set: &ScoredSet, data: Option<&Dataset>, score: AnomalyScore) -> Ranked {
    let mut order: Vec<(f64, &SampleScore)> =
        set.samples.iter().map(|s| (score.of(s), s)).filter(|(v, _)| v.is_finite()).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let row = |items: Vec<(f64, &SampleScore)>| -> Option<GalleryRow> {
        let d = data?;
        let items: Vec<RankedImage> = items
            .into_iter()
            .filter(|(_, s)| s.index < d.len())
            .map(|(value, s)| RankedImage { value, sample: s.clone(), pixels: d.image(s.index).to_vec() })
            .collect();
        if items.is_empty() {
            return None;
        }
        let values: Vec<f32> = items.iter().flat_map(|it| it.pixels.iter().copied()).collect();
        Some(GalleryRow { batch: ImageBatch::from_f32(&values, d.shape), items })
    };
    let likely = row(order.iter().take(GALLERY).copied().collect());
    let unlikely = row(order.iter().rev().take(GALLERY).copied().collect());
    let shape = data.map_or(ImageShape::new(1, 1, 1), |d| d.shape);
    Ranked { version, score, shape, likely, unlikely }
}

/// "1st", "2nd", "3rd", "4th", …
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scoring::SampleScore;

    fn scored(version: u64, name: &str, values: &[f64]) -> Versioned<Scored> {
        let samples = values
            .iter()
            .enumerate()
            .map(|(index, &v)| SampleScore {
                index,
                label: None,
                recon: Some(v),
                kl: None,
                neg_elbo: None,
                neg_log_px: None,
                bits_per_dim: None,
                disc_logit: None,
            })
            .collect();
        let set = ScoredSet {
            family: crate::engine::models::Family::Autoencoder,
            anomaly_scores: Vec::new(),
            likelihood: None,
            k: 0,
            dims: 4,
            notice: None,
            samples,
        };
        Versioned { version, value: Scored { name: name.into(), step: 1, set } }
    }

    #[test]
    fn overlay_shares_bins_and_normalises_each_set() {
        let (a, b) = (scored(1, "test", &[0.0, 1.0, 1.0, 2.0]), scored(2, "test", &[10.0, f64::NAN]));
        let o = overlay(vec![1, 2], &[(SetKind::Test, &a), (SetKind::Other, &b)], AnomalyScore::Recon);
        assert_eq!(o.sets.len(), 2);
        assert_eq!(o.sets[1].name, "test (loaded)", "a loaded set named like a split is told apart");
        assert!((o.bin_width - 10.0 / BINS as f64).abs() < 1e-12, "bins span both sets");
        for h in &o.sets {
            assert_eq!(h.bins.len(), BINS);
            assert!((h.bins.iter().map(|b| b.1).sum::<f64>() - 1.0).abs() < 1e-12, "shares sum to 1");
            assert_eq!(h.bins[0].0, o.sets[0].bins[0].0, "the same bin centres");
        }
        assert_eq!(o.sets[1].bins[BINS - 1].1, 1.0, "the maximum falls in the last bin, NaN is left out");
    }
}
