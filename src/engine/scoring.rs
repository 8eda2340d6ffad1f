//! Density estimates and outlier scores: how well a trained model explains each image.
//!
//! Per image, by family:
//! - **Autoencoder**: the reconstruction error, exactly the training loss's per-image value
//!   (BCE summed over pixels, or ‖x − x̂‖²). Not a density.
//! - **VAE / β-VAE**: −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z)) with β = 1 whatever β the
//!   model was trained with (only β = 1 makes it a bound on −log p(x)), and the
//!   importance-weighted estimate (IWAE) of −log p(x) from K draws z_k ~ q(z|x):
//!   log p̂(x) = logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K.
//!   Its expectation is a lower bound on log p(x) that tightens as K grows (Burda et al. 2016).
//!   Reported in nats and in bits per dimension (nats / (D · ln 2)).
//! - **GAN**: the discriminator's logit (higher = judged more "real"). Nothing more is claimed:
//!   a discriminator is not a density and is often a poor outlier detector.
//!
//! The likelihood p(x|z) matches the training loss ([`Likelihood`]). Anomaly scores are
//! oriented so that higher = more anomalous ([`SampleScore::anomaly`]); [`auroc`] and
//! [`roc_curve`] compare two sets of them, and [`hold_out_classes`] runs the classic
//! "train on some classes, flag the others" experiment end to end.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::data::{convert_image, Dataset, ImageShape, SplitKind};
use super::error::{EngineError, Result};
use super::fsio::write_atomic;
pub use super::models::likelihood::{
    cb_log_norm, importance_weighted, kl_row, log_sum_exp, recon_error, Likelihood, SampleScore, ScoreOptions,
};
pub use super::models::AnomalyScore;
use super::models::{Family, GenerativeModel};
use super::session::TrainingSession;

/// Mean and standard error of the mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation / √n (0 for a single value).
    pub stderr: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let stderr = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Some(Stat { mean, stderr })
    }
}

/// The scores of a set of images under one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredSet {
    pub family: Family,
    /// The anomaly scores the model offers, its default first.
    #[serde(default)]
    pub anomaly_scores: Vec<AnomalyScore>,
    /// The likelihood used (AE and VAE).
    pub likelihood: Option<Likelihood>,
    /// Importance samples per image (VAE), else 0.
    pub k: usize,
    /// Values per image (D).
    pub dims: usize,
    /// Set when the images were converted to the model's shape: says from what.
    pub notice: Option<String>,
    pub samples: Vec<SampleScore>,
}

impl ScoredSet {
    /// Mean and standard error of every score, by report name.
    pub fn summary(&self) -> Vec<(&'static str, Stat)> {
        let Some(first) = self.samples.first() else { return Vec::new() };
        first
            .columns()
            .into_iter()
            .filter_map(|(name, _)| {
                let v: Vec<f64> = self
                    .samples
                    .iter()
                    .filter_map(|s| s.columns().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v))
                    .collect();
                Stat::of(&v).map(|s| (name, s))
            })
            .collect()
    }

    /// One anomaly score per image (higher = more anomalous); see [`SampleScore::anomaly`].
    pub fn anomaly_scores(&self) -> Vec<f64> {
        self.samples.iter().map(SampleScore::anomaly).collect()
    }

    /// The score [`ScoredSet::anomaly_scores`] gives: the model's default (sets saved before
    /// that was recorded: the one their scores show, as [`SampleScore::anomaly`] picks it).
    pub fn default_anomaly(&self) -> AnomalyScore {
        self.anomaly_scores.first().copied().unwrap_or_else(|| match self.samples.first() {
            Some(s) if s.neg_log_px.is_some() => AnomalyScore::NegLogPx,
            Some(s) if s.disc_logit.is_some() => AnomalyScore::NegDiscLogit,
            _ => AnomalyScore::Recon,
        })
    }

    /// What [`ScoredSet::anomaly_scores`] measures for this family.
    pub fn anomaly_name(&self) -> &'static str {
        self.default_anomaly().column()
    }

    /// One value of `score` per image (NaN where it was not computed).
    pub fn scores(&self, score: AnomalyScore) -> Vec<f64> {
        self.samples.iter().map(|s| score.of(s)).collect()
    }
}

/// Scores the images of `data` at `indices`. Images of another shape than the model's are
/// converted as [`Dataset::converted_to`] would (the result's `notice` says so).
/// `progress(done, total)` is called after each batch; returning `false` cancels, and the
/// function then returns `Ok(None)`.
pub fn score_indices(
    model: &dyn GenerativeModel,
    data: &Dataset,
    indices: &[usize],
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<ScoredSet>> {
    super::session::tune_allocator();
    let cfg = model.config();
    let shape = cfg.input();
    let d = shape.len();
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(EngineError::Other(format!("image {bad} is out of range ({} images)", data.len())));
    }
    let notice = (data.shape != shape)
        .then(|| format!("converting {} images of {} to the model's {}", indices.len(), data.shape, shape));
    let setup = model.score_setup(opts)?;
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(0x5c0e));
    let mut samples = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(setup.batch.max(1)) {
        let x = gather_as(data, chunk, shape);
        let mut out: Vec<SampleScore> = chunk
            .iter()
            .map(|&i| SampleScore::new(i, data.labels.as_ref().and_then(|l| l.get(i).copied())))
            .collect();
        model.score_batch(&x, &setup, &mut rng, &mut out)?;
        samples.extend(out);
        if !progress(samples.len(), indices.len()) {
            return Ok(None);
        }
    }
    let anomaly_scores = model.capabilities().anomaly_scores;
    Ok(Some(ScoredSet {
        family: cfg.family(),
        anomaly_scores,
        likelihood: setup.likelihood,
        k: setup.k,
        dims: d,
        notice,
        samples,
    }))
}

/// Scores a whole dataset (every image), converting it to the model's shape if needed.
pub fn score_dataset(
    model: &dyn GenerativeModel,
    data: &Dataset,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<ScoredSet>> {
    let all: Vec<usize> = (0..data.len()).collect();
    score_indices(model, data, &all, opts, progress)
}

/// The images at `indices`, converted to `shape` when the dataset's differs.
fn gather_as(data: &Dataset, indices: &[usize], shape: ImageShape) -> Vec<f32> {
    if data.shape == shape {
        return data.gather(indices);
    }
    let mut out = Vec::with_capacity(indices.len() * shape.len());
    for &i in indices {
        out.extend(convert_image(data.image(i), data.shape, shape));
    }
    out
}

/// Area under the ROC curve for telling `outliers` from `inliers` by anomaly score (higher =
/// more anomalous): the Mann-Whitney probability that a random outlier scores above a random
/// inlier, ties counted as ½. `None` when either set is empty. NaN scores sort above +∞.
pub fn auroc(inliers: &[f64], outliers: &[f64]) -> Option<f64> {
    if inliers.is_empty() || outliers.is_empty() {
        return None;
    }
    let mut u = 0.0f64;
    let mut inliers_below = 0usize;
    for (a, b) in tie_groups(inliers, outliers, false) {
        u += b as f64 * (inliers_below as f64 + 0.5 * a as f64);
        inliers_below += a;
    }
    Some(u / (inliers.len() as f64 * outliers.len() as f64))
}

/// One point of a ROC curve: flagging every score ≥ `threshold` gives these rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Share of inliers flagged.
    pub fpr: f64,
    /// Share of outliers flagged.
    pub tpr: f64,
    pub threshold: f64,
}

/// The ROC curve from (0, 0) (threshold +∞) to (1, 1), one point per distinct score. Tied
/// scores move both rates at once, so the trapezoid area under the points equals [`auroc`].
pub fn roc_curve(inliers: &[f64], outliers: &[f64]) -> Vec<RocPoint> {
    if inliers.is_empty() || outliers.is_empty() {
        return Vec::new();
    }
    let (ni, no) = (inliers.len() as f64, outliers.len() as f64);
    let mut points = vec![RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::INFINITY }];
    let (mut fp, mut tp) = (0usize, 0usize);
    let mut values = inliers.iter().chain(outliers).copied().collect::<Vec<_>>();
    values.sort_by(|a, b| b.total_cmp(a));
    values.dedup_by(|a, b| a.total_cmp(b).is_eq());
    for ((a, b), threshold) in tie_groups(inliers, outliers, true).into_iter().zip(values) {
        fp += a;
        tp += b;
        points.push(RocPoint { fpr: fp as f64 / ni, tpr: tp as f64 / no, threshold });
    }
    points
}

/// Counts of (inliers, outliers) per distinct score, ascending (or descending).
fn tie_groups(inliers: &[f64], outliers: &[f64], descending: bool) -> Vec<(usize, usize)> {
    let mut all: Vec<(f64, bool)> =
        inliers.iter().map(|&v| (v, false)).chain(outliers.iter().map(|&v| (v, true))).collect();
    all.sort_by(|a, b| if descending { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) });
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut prev: Option<f64> = None;
    for (v, is_out) in all {
        if prev.is_none_or(|p| p.total_cmp(&v).is_ne()) {
            groups.push((0, 0));
            prev = Some(v);
        }
        if let Some(g) = groups.last_mut() {
            if is_out {
                g.1 += 1;
            } else {
                g.0 += 1;
            }
        }
    }
    groups
}

/// Writes one CSV row per image: `index,label,set,<scores…>,anomaly`, for each named set.
pub fn write_per_sample_csv(path: &std::path::Path, sets: &[(&str, &ScoredSet)]) -> Result<()> {
    let columns: Vec<&'static str> = sets
        .iter()
        .find_map(|(_, s)| s.samples.first())
        .map(|s| s.columns().into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    let mut out = String::from("index,label,set");
    for c in &columns {
        out.push(',');
        out.push_str(c);
    }
    out.push_str(",anomaly\n");
    for (name, set) in sets {
        let name = name.replace([',', '"', '\n', '\r'], "_");
        for s in &set.samples {
            let label = s.label.map(|l| l.to_string()).unwrap_or_default();
            out.push_str(&format!("{},{label},{name}", s.index));
            let vals = s.columns();
            for c in &columns {
                out.push(',');
                if let Some((_, v)) = vals.iter().find(|(n, _)| n == c) {
                    out.push_str(&v.to_string());
                }
            }
            out.push_str(&format!(",{}\n", s.anomaly()));
        }
    }
    write_atomic(path, out.as_bytes()).map_err(|e| EngineError::io(path, e))
}

/// The outcome of [`hold_out_classes`].
#[derive(Clone, Debug, PartialEq)]
pub struct HoldOutReport {
    /// The labels trained on; every other label is an anomaly.
    pub inlier_labels: Vec<u32>,
    /// Training images after filtering.
    pub train_images: usize,
    pub steps: u64,
    /// The mean training loss over the last epoch that finished (or the last step).
    pub final_loss: f64,
    /// Scores of the whole test split (labels included).
    pub scores: ScoredSet,
    /// Inliers (test images with a chosen label) against all the others.
    pub auroc: f64,
    pub roc: Vec<RocPoint>,
    /// Each held-out label against the inliers, ascending by label.
    pub per_class_auroc: Vec<(u32, f64)>,
}

/// The hold-out-classes experiment: trains `config` on the training-split images whose label
/// is in `inlier_labels`, scores the whole test split, and measures how well the anomaly score
/// flags the test images of the other labels (AUROC).
///
/// `steps` = 0 trains for the configuration's epochs. `progress(done, total)` counts training
/// steps then scored test images; returning `false` cancels (`Ok(None)`).
pub fn hold_out_classes(
    config: RunConfig,
    data: &Dataset,
    inlier_labels: &[u32],
    steps: u64,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<HoldOutReport>> {
    let labels = data
        .labels
        .as_ref()
        .ok_or_else(|| EngineError::Config(format!("{} has no labels to hold out", data.name)))?;
    if inlier_labels.is_empty() {
        return Err(EngineError::Config("choose at least one label to train on".into()));
    }
    let is_inlier = |i: usize| labels.get(i).is_some_and(|l| inlier_labels.contains(l));
    let split = data.split(config.train.test_fraction, config.train.seed);
    let train: Vec<usize> = split.train.iter().copied().filter(|&i| is_inlier(i)).collect();
    if train.is_empty() {
        return Err(EngineError::Config("no training image has a chosen label".into()));
    }
    let test = split.get(SplitKind::Test);
    let n_in = test.iter().filter(|&&i| is_inlier(i)).count();
    if n_in == 0 || n_in == test.len() {
        return Err(EngineError::Config(format!(
            "the test split needs images with and without the chosen labels ({n_in} of {} have them)",
            test.len()
        )));
    }

    // All the chosen training images form the training split; there is no test split to
    // evaluate per epoch (the scoring below is the evaluation).
    let mut subset = Dataset::new(
        format!("{} (labels {inlier_labels:?})", data.name),
        data.source.clone(),
        data.shape,
        data.gather(&train),
        Some(data.gather_labels(&train)),
    )
    .map_err(EngineError::Other)?;
    subset.class_names = data.class_names.clone();
    subset.fixed_split = Some(train.len());
    // The steps asked for are taken even past the run's epochs (the subset has fewer images
    // than the data the epochs were set for).
    let mut config = config;
    if steps > 0 {
        let per_epoch = (train.len().div_ceil(config.train.batch_size.max(1)) as u64).max(1);
        let epochs = usize::try_from(steps.div_ceil(per_epoch)).unwrap_or(usize::MAX);
        config.train.epochs = config.train.epochs.max(epochs);
    }
    let mut session = TrainingSession::new(config, Arc::new(subset))?;
    let steps = if steps == 0 { session.total_steps() } else { steps };
    let total = steps as usize + test.len();
    let mut final_loss = f64::NAN;
    let headline = session.model().capabilities().headline;
    while session.step_count() < steps && !session.is_finished() {
        let r = session.step()?;
        final_loss = r.epoch_end.as_ref().map_or(r.losses, |e| e.train).get(headline).unwrap_or(f64::NAN);
        if !progress(r.step as usize, total) {
            return Ok(None);
        }
    }
    let done = session.step_count() as usize;
    let Some(scores) =
        score_indices(session.model(), data, test, opts, &mut |d, _| progress(done + d, total))?
    else {
        return Ok(None);
    };
    let HoldOutAuroc { auroc, roc, per_class_auroc } =
        hold_out_auroc(&scores, inlier_labels, scores.default_anomaly());
    Ok(Some(HoldOutReport {
        inlier_labels: inlier_labels.to_vec(),
        train_images: train.len(),
        steps: session.step_count(),
        final_loss,
        scores,
        auroc,
        roc,
        per_class_auroc,
    }))
}

/// How well one score flags the held-out labels of a scored test set.
#[derive(Clone, Debug, PartialEq)]
pub struct HoldOutAuroc {
    /// Inliers (images with a chosen label) against all the others; NaN if either is empty.
    pub auroc: f64,
    pub roc: Vec<RocPoint>,
    /// Each held-out label against the inliers, ascending by label.
    pub per_class_auroc: Vec<(u32, f64)>,
}

/// The AUROC of the hold-out experiment from its scores, by `score`.
pub fn hold_out_auroc(scores: &ScoredSet, inlier_labels: &[u32], score: AnomalyScore) -> HoldOutAuroc {
    let (mut inl, mut out) = (Vec::new(), Vec::new());
    for s in &scores.samples {
        if s.label.is_some_and(|l| inlier_labels.contains(&l)) {
            inl.push(score.of(s));
        } else {
            out.push(score.of(s));
        }
    }
    let roc = roc_curve(&inl, &out);
    let mut held: Vec<u32> =
        scores.samples.iter().filter_map(|s| s.label).filter(|l| !inlier_labels.contains(l)).collect();
    held.sort_unstable();
    held.dedup();
    let per_class_auroc = held
        .into_iter()
        .filter_map(|c| {
            let o: Vec<f64> =
                scores.samples.iter().filter(|s| s.label == Some(c)).map(|s| score.of(s)).collect();
            auroc(&inl, &o).map(|a| (c, a))
        })
        .collect();
    HoldOutAuroc { auroc: auroc(&inl, &out).unwrap_or(f64::NAN), roc, per_class_auroc }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    use crate::engine::models::ModelConfig;

    #[test]
    fn each_familys_default_score_is_its_anomaly() {
        let mut s = SampleScore::new(0, None);
        s.disc_logit = Some(2.0);
        let default_of = |f: Family| ModelConfig::default().with_family(f).capabilities().default_anomaly();
        assert_eq!(default_of(Family::Gan).of(&s), s.anomaly());
        s.recon = Some(5.0);
        assert_eq!(default_of(Family::Autoencoder).of(&s), s.anomaly());
        (s.neg_log_px, s.neg_elbo, s.bits_per_dim) = (Some(7.0), Some(8.0), Some(0.1));
        assert_eq!(default_of(Family::Vae).of(&s), s.anomaly());
        assert_eq!(AnomalyScore::NegElbo.of(&s), 8.0);
        assert_eq!(AnomalyScore::NegDiscLogit.of(&s), -2.0);
        assert!(AnomalyScore::NegLogPx.of(&SampleScore::new(1, None)).is_nan());
        assert_eq!(
            ModelConfig::default().with_family(Family::BetaVae).capabilities().anomaly_scores.len(),
            4
        );
    }

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[-1000.0, -1000.0]) - (-1000.0 + LN_2)).abs() < 1e-12);
        assert!((log_sum_exp(&[800.0, 0.0]) - 800.0).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }

    #[test]
    fn stat_matches_hand_computation() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        // sample variance 5/3, se = sqrt(5/3 / 4)
        assert!((s.stderr - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[7.0]).unwrap().stderr, 0.0);
        assert!(Stat::of(&[]).is_none());
    }
}
