//! Sample quality: how good a model's samples are and how much of the data they cover, with
//! the scale that makes each number mean something. Every metric is reported three times:
//! for the model's samples, for the held-out real images (the **floor**: what a perfect
//! generator would score against the same reference) and for uniform noise (the **ceiling**).
//!
//! The reference set is `n` training images; the floor's set `n` test images (fewer when the
//! split has fewer); samples and noise are `n` images too, quantised to 8 bits exactly like
//! the real images before their features are taken ([`features`]).

mod conditioning;
pub mod features;
pub mod memorisation;
pub mod metrics;

pub use conditioning::Conditioning;

use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::engine::data::{convert_image, DataSource, Dataset, ImageShape, Split};
use crate::engine::error::{EngineError, Result};
use crate::engine::models::GenerativeModel;
use crate::engine::session;
use features::{argmax, feature_input, Embedding, FeatureKind, FeatureNet, FEATURE_DIM};
use metrics::{Features, MetricOptions, Metrics};

/// Samples per evaluation by default (and real images per side).
pub const DEFAULT_SAMPLES: usize = 2000;
/// A sample is classified confidently when its most probable class has at least this.
pub const CONFIDENT: f32 = 0.9;
/// A class is covered when at least this share of the samples is confidently assigned to it.
pub const COVERED_SHARE: f64 = 0.01;
/// Epochs of a classifier trained for the feature space.
pub const CLASSIFIER_EPOCHS: usize = 10;

/// What the classifier says about a set of images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassStats {
    /// Most probable class per image, counted.
    pub histogram: Vec<usize>,
    /// Share of images whose most probable class has ≥ [`CONFIDENT`].
    pub confident: f64,
    /// Classes with ≥ [`COVERED_SHARE`] of the images confidently assigned to them.
    pub covered: usize,
}

/// The metrics of one set of images against the reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub metrics: Metrics,
    pub classes: Option<ClassStats>,
}

/// One evaluation: the samples' scores beside the floor and the ceiling.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityReport {
    /// Images per set.
    pub n: usize,
    /// What the features are (one line for the user).
    pub features: String,
    pub samples: Scored,
    pub floor: Scored,
    pub ceiling: Scored,
    /// Wall time of the samples' part (drawing, features, metrics).
    pub seconds: f64,
}

/// The real side of the measurement, prepared once per dataset: the feature network, the
/// reference features, and the floor's and ceiling's scores.
pub struct QualityContext {
    pub net: FeatureNet,
    /// The data's image shape (samples come in it).
    pub shape: ImageShape,
    pub n: usize,
    reference: Embedding,
    pub floor: Scored,
    pub ceiling: Scored,
    opts: MetricOptions,
}

impl QualityContext {
    /// Prepares the reference (`n` training images), the floor (`n` test images, or training
    /// images not in the reference when the test split is too small) and the ceiling.
    pub fn new(data: &Dataset, split: &Split, net: FeatureNet, n: usize, seed: u64) -> Result<Self> {
        let opts = MetricOptions { seed, ..MetricOptions::default() };
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9a11);
        let mut train = split.train.clone();
        train.shuffle(&mut rng);
        let n = n.min(train.len());
        if n <= opts.k_pr.max(opts.k_dc) {
            return Err(EngineError::Config(format!(
                "{} has too few training images to measure sample quality",
                data.name
            )));
        }
        let (reference_idx, rest) = train.split_at(n);
        let mut held_out = split.test.clone();
        held_out.shuffle(&mut rng);
        let held_out: Vec<usize> = if held_out.len() >= n.min(500) { held_out } else { rest.to_vec() };
        let held_out = &held_out[..n.min(held_out.len())];
        let mut ctx = Self {
            reference: Embedding { features: Vec::new(), probs: None, n: 0 },
            shape: data.shape,
            n,
            floor: Scored { metrics: Metrics::default(), classes: None },
            ceiling: Scored { metrics: Metrics::default(), classes: None },
            net,
            opts,
        };
        ctx.reference = ctx.embed(&data.gather(reference_idx))?;
        ctx.floor = ctx.score_pixels(&data.gather(held_out))?;
        let noise: Vec<f32> =
            (0..n * data.shape.len()).map(|_| rng.random_range(0..=255u8) as f32 / 255.0).collect();
        ctx.ceiling = ctx.score_pixels(&noise)?;
        Ok(ctx)
    }

    /// Features of images of the data's shape (converted to the network's input first).
    fn embed(&self, pixels: &[f32]) -> Result<Embedding> {
        let input = self.net.input;
        if input == self.shape {
            return self.net.embed(pixels);
        }
        let d = self.shape.len();
        let converted: Vec<f32> =
            pixels.chunks(d).flat_map(|img| convert_image(img, self.shape, input)).collect();
        self.net.embed(&converted)
    }

    /// Scores images of the data's shape, values in [0, 1], quantised to 8 bits first.
    pub fn score_pixels(&self, pixels: &[f32]) -> Result<Scored> {
        let quantised: Vec<f32> =
            pixels.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() / 255.0).collect();
        let e = self.embed(&quantised)?;
        let real = Features::new(&self.reference.features, FEATURE_DIM)?;
        let fake = Features::new(&e.features, FEATURE_DIM)?;
        let metrics = metrics::metrics(real, fake, &self.opts)?;
        let classes = e.probs.as_ref().map(|p| class_stats(p, self.net.classes()));
        Ok(Scored { metrics, classes })
    }

    /// Draws `n` samples from `model`'s prior (seed `seed`) and scores them.
    pub fn score_model(&self, model: &dyn GenerativeModel, seed: u64) -> Result<QualityReport> {
        let t0 = Instant::now();
        let images = session::sample(model, self.n, 1.0, seed)?;
        let pixels: Vec<f32> = images.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        let samples = self.score_pixels(&pixels)?;
        Ok(QualityReport {
            n: self.n,
            features: self.net.describe(),
            samples,
            floor: self.floor.clone(),
            ceiling: self.ceiling.clone(),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Features of images (data shape), for views that compare samples with training images.
    pub fn features_of(&self, pixels: &[f32]) -> Result<Vec<f32>> {
        Ok(self.embed(pixels)?.features)
    }
}

fn class_stats(probs: &[f32], classes: usize) -> ClassStats {
    let mut histogram = vec![0usize; classes];
    let mut confident_per_class = vec![0usize; classes];
    let mut confident = 0;
    let rows = probs.chunks(classes.max(1));
    let n = rows.len();
    for p in rows {
        let c = argmax(p);
        histogram[c] += 1;
        if p[c] >= CONFIDENT {
            confident += 1;
            confident_per_class[c] += 1;
        }
    }
    let covered =
        confident_per_class.iter().filter(|&&k| k as f64 >= COVERED_SHARE * n as f64 && k > 0).count();
    ClassStats { histogram, confident: confident as f64 / n.max(1) as f64, covered }
}

/// The classifier shipped for the built-in digits (`genlab classifier --data builtin`).
const BUILTIN_CLASSIFIER: &[u8] = include_bytes!("../../../assets/features/mnist10k-classifier.safetensors");

/// Where trained classifiers are cached: `$GENLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/genlab`,
/// else `~/.cache/genlab`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("GENLAB_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("genlab")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("genlab")))
}

/// A 64-bit FNV-1a fingerprint of a dataset's shape, labels and pixels (as 8-bit values).
pub fn fingerprint(data: &Dataset) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for v in [data.shape.channels, data.shape.height, data.shape.width, data.len()] {
        (v as u64).to_le_bytes().into_iter().for_each(&mut eat);
    }
    for &l in data.labels.iter().flatten() {
        l.to_le_bytes().into_iter().for_each(&mut eat);
    }
    for &p in &data.images {
        eat((p.clamp(0.0, 1.0) * 255.0).round() as u8);
    }
    h
}

/// The feature network for `data`: the shipped classifier for the built-in digits, a cached
/// or freshly trained one (then cached) for other labelled data, random features otherwise.
/// `progress` hears what is happening (training a classifier takes seconds to minutes).
pub fn feature_net(data: &Dataset, split: &Split, progress: &mut dyn FnMut(&str)) -> Result<FeatureNet> {
    let input = feature_input(data.shape);
    if data.labels.is_none() {
        return FeatureNet::random(data.shape, 0);
    }
    if data.source == DataSource::Builtin && input == data.shape {
        match FeatureNet::load_bytes(BUILTIN_CLASSIFIER, std::path::Path::new("(built-in classifier)")) {
            Ok(net) if net.input == input => return Ok(net),
            _ => progress("the shipped classifier does not fit: training one"),
        }
    }
    let cached =
        cache_dir().map(|d| d.join("classifiers").join(format!("{:016x}.safetensors", fingerprint(data))));
    if let Some(path) = &cached {
        if let Ok(bytes) = std::fs::read(path) {
            match FeatureNet::load_bytes(&bytes, path) {
                Ok(net) if net.input == input => return Ok(net),
                _ => progress(&format!("ignoring an unreadable cached classifier at {}", path.display())),
            }
        }
    }
    progress(&format!("training a classifier on {}'s labels for the feature space…", data.name));
    let converted = data.converted_to(input);
    let net = FeatureNet::train_classifier(&converted, &split.train, &split.test, CLASSIFIER_EPOCHS, 0)?;
    if let Some(path) = &cached {
        let saved =
            path.parent().map(std::fs::create_dir_all).transpose().ok().and_then(|_| net.save(path).ok());
        if saved.is_none() {
            progress(&format!("could not cache the classifier at {}", path.display()));
        }
    }
    if let FeatureKind::Classifier { test_accuracy, .. } = net.kind {
        progress(&format!("classifier ready: {:.1}% test accuracy", 100.0 * test_accuracy));
    }
    Ok(net)
}

/// What the numbers say about mode collapse or missing classes, in words (the app and the CLI
/// print the same).
pub fn warnings(r: &QualityReport) -> Vec<String> {
    let mut out = Vec::new();
    let (s, f) = (&r.samples.metrics, &r.floor.metrics);
    if s.recall < 0.25 * f.recall && s.coverage < 0.25 * f.coverage {
        out.push(format!(
            "the samples cover little of the data (recall {:.2}, coverage {:.2}; real test images: {:.2}, {:.2}): the generator has probably collapsed to a few modes",
            s.recall, s.coverage, f.recall, f.coverage
        ));
    }
    if let (Some(c), Some(fc)) = (&r.samples.classes, &r.floor.classes) {
        if c.covered < fc.covered {
            out.push(format!(
                "only {} of the {} classes the real images show appear among the samples",
                c.covered, fc.covered
            ));
        }
    }
    out
}
