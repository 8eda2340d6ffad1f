//! Does the model copy its training images? Each generated sample beside its nearest training
//! image in feature space, and how close the samples sit to the training set compared with
//! real images it never saw: a generator that copies puts far more samples closer to a
//! training image than almost any held-out image is.

use serde::Serialize;

use super::features::FEATURE_DIM;
use super::metrics::{sq_distances, Features};
use super::QualityContext;
use crate::engine::data::{Dataset, Split};
use crate::engine::error::Result;

/// A generated sample and its nearest training image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NearestPair {
    /// Index into the samples.
    pub sample: usize,
    /// Dataset index of the training image.
    pub train: usize,
    /// Euclidean distance in feature space.
    pub distance: f32,
}

/// The nearest training image of every sample, closest first, and the held-out images'
/// distances as the scale.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Memorisation {
    pub pairs: Vec<NearestPair>,
    /// The 5th percentile and the median of the held-out images' distances to their nearest
    /// training image.
    pub test_p5: f32,
    pub test_median: f32,
    /// The share of samples closer to a training image than 95% of held-out images are
    /// (about 5% for a generator that does not copy).
    pub share_closer: f64,
}

/// Nearest training images (the whole training split) of `samples` (the data's shape, in
/// [0, 1], quantised like the metrics' inputs), with up to `held_out` test images as the scale.
pub fn memorisation(
    ctx: &QualityContext,
    data: &Dataset,
    split: &Split,
    samples: &[f32],
    held_out: usize,
) -> Result<Memorisation> {
    let quantise =
        |v: &[f32]| -> Vec<f32> { v.iter().map(|p| (p.clamp(0.0, 1.0) * 255.0).round() / 255.0).collect() };
    let train = ctx.features_of(&data.gather(&split.train))?;
    let fake = ctx.features_of(&quantise(samples))?;
    let test_idx = &split.test[..held_out.min(split.test.len())];
    let test = ctx.features_of(&data.gather(test_idx))?;
    let nearest = |f: &[f32]| -> Result<Vec<(usize, f32)>> {
        let (tf, ff) = (Features::new(&train, FEATURE_DIM)?, Features::new(f, FEATURE_DIM)?);
        let d = sq_distances(ff, tf)?; // [n, n_train]
        let nt = tf.n();
        Ok((0..ff.n())
            .map(|i| {
                let row = &d[i * nt..(i + 1) * nt];
                let (j, v) =
                    row.iter()
                        .enumerate()
                        .fold((0, f32::INFINITY), |b, (j, &v)| if v < b.1 { (j, v) } else { b });
                (j, v.sqrt())
            })
            .collect())
    };
    let mut pairs: Vec<NearestPair> = nearest(&fake)?
        .into_iter()
        .enumerate()
        .map(|(sample, (j, distance))| NearestPair { sample, train: split.train[j], distance })
        .collect();
    pairs.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let mut test_d: Vec<f32> =
        if test.is_empty() { Vec::new() } else { nearest(&test)?.into_iter().map(|(_, d)| d).collect() };
    test_d.sort_by(f32::total_cmp);
    let at = |q: f64| {
        test_d.get(((test_d.len() as f64 - 1.0) * q).round().max(0.0) as usize).copied().unwrap_or(0.0)
    };
    let (test_p5, test_median) = (at(0.05), at(0.5));
    let closer = pairs.iter().filter(|p| p.distance < test_p5).count();
    Ok(Memorisation { share_closer: closer as f64 / pairs.len().max(1) as f64, pairs, test_p5, test_median })
}
