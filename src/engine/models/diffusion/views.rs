//! What the trajectory and forward-process views show, computed on the engine's side: the
//! sampler's x_t and predicted x̂₀ at chosen steps, and the forward process's x_t of an image.

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::schedule::{self, CosineSchedule, Objective};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::images::ImageBatch;
use crate::engine::models::layers::normal_tensor;

/// The sampler's path from the fixed noise: `columns` recorded steps, each with x_t and the
/// predicted x̂₀ of every noise vector, pixels in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// The time each column reached (t/T for DDPM, t for the flow), from noise to data.
    pub times: Vec<f64>,
    /// Per column, x_t of the n noise vectors.
    pub xt: Vec<ImageBatch>,
    /// Per column, x̂₀ of the n noise vectors.
    pub x0: Vec<ImageBatch>,
}

impl Trajectory {
    /// The strip: for each noise vector a row of x_t then a row of x̂₀, one column per step
    /// (tile it `self.times.len()` wide).
    pub fn strip(&self) -> Option<ImageBatch> {
        let n = self.xt.first()?.len();
        let mut parts = Vec::new();
        for i in 0..n {
            for rows in [&self.xt, &self.x0] {
                parts.extend(rows.iter().map(|b| b.slice(i, i + 1)));
            }
        }
        ImageBatch::concat(&parts.iter().collect::<Vec<_>>())
    }

    /// GIF frames: one per step, x_t of every noise vector above its x̂₀ (tile `n` wide).
    pub fn frames(&self) -> Vec<ImageBatch> {
        self.xt.iter().zip(&self.x0).filter_map(|(a, b)| ImageBatch::concat(&[a, b])).collect()
    }
}

/// The step indices (0-based, of `steps`) to record for `columns` columns: evenly spread,
/// always ending on the last step.
pub fn recorded_steps(steps: usize, columns: usize) -> Vec<usize> {
    let c = columns.clamp(1, steps.max(1));
    let mut v: Vec<usize> = (1..=c).map(|k| (k * steps).div_ceil(c).max(1) - 1).collect();
    v.dedup();
    v
}

/// Collects a sampler's step reports at `at` into a [`Trajectory`] (values in [−1, 1]).
pub struct Recorder {
    at: Vec<usize>,
    shape: ImageShape,
    pub out: Trajectory,
}

impl Recorder {
    pub fn new(at: Vec<usize>, shape: ImageShape) -> Self {
        Self { at, shape, out: Trajectory { times: Vec::new(), xt: Vec::new(), x0: Vec::new() } }
    }

    /// A sampler's view callback: records the steps asked for. Tensor errors here cannot
    /// stop the sampler, so a failed conversion leaves the column out.
    pub fn record(&mut self, i: usize, t: f64, x: &Tensor, x0: &Tensor) {
        if !self.at.contains(&i) {
            return;
        }
        let img = |v: &Tensor| {
            v.clamp(-1f32, 1f32)
                .and_then(|v| v.affine(0.5, 0.5))
                .map_err(EngineError::from)
                .and_then(|v| ImageBatch::from_tensor(&v, self.shape))
        };
        if let (Ok(a), Ok(b)) = (img(x), img(x0)) {
            self.out.times.push(t);
            self.out.xt.push(a);
            self.out.x0.push(b);
        }
    }
}

/// The forward process of `x0: [B, D]` (pixels in [0, 1]) at time `t` ∈ [0, 1] (t·T for DDPM),
/// with noise from `seed`: `[B, D]` in [0, 1] (clamped for display).
pub fn forward_noised(
    objective: Objective,
    sched: &CosineSchedule,
    x0: &Tensor,
    t: f64,
    seed: u64,
) -> Result<Tensor> {
    let x = x0.affine(2.0, -1.0)?;
    let (b, d) = x.dims2()?;
    let eps = normal_tensor(b, d, 1.0, &mut StdRng::seed_from_u64(seed))?.to_device(x.device())?;
    let t = t.clamp(0.0, 1.0);
    let xt = match objective {
        Objective::Ddpm => {
            let step = (t * sched.steps() as f64).round() as usize;
            schedule::ddpm_noised(&x, &eps, &vec![sched.alpha_bar(step); b])?
        }
        Objective::Flow => schedule::flow_noised(&x, &eps, &vec![t; b])?.0,
    };
    Ok(xt.clamp(-1f32, 1f32)?.affine(0.5, 0.5)?)
}

/// Equal ranges of t (from data, t ≈ 0, to noise, t = 1) the training loss is reported in.
pub const TIMESTEP_BUCKETS: usize = 10;
/// Weight of the past in each bucket's moving average, per step that lands images in it: a
/// bucket gets about B/10 images a step, so this averages over roughly the last 50 steps,
/// long enough to smooth a batch's noise, short enough to follow the run.
const BUCKET_DECAY: f64 = 0.98;

/// The training loss per timestep bucket: which noise levels the denoiser finds hard.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketLosses {
    /// Moving averages; NaN until a bucket has had an image.
    mean: [f64; TIMESTEP_BUCKETS],
}

impl Default for BucketLosses {
    fn default() -> Self {
        Self { mean: [f64::NAN; TIMESTEP_BUCKETS] }
    }
}

impl BucketLosses {
    /// The bucket of time `t` ∈ [0, 1].
    pub fn bucket(t: f64) -> usize {
        ((t * TIMESTEP_BUCKETS as f64) as usize).min(TIMESTEP_BUCKETS - 1)
    }

    /// Adds one step's per-image losses at their times (non-finite losses are skipped, so a
    /// refused step leaves the averages alone).
    pub fn observe(&mut self, times: &[f64], losses: &[f32]) {
        let mut sum = [0f64; TIMESTEP_BUCKETS];
        let mut n = [0usize; TIMESTEP_BUCKETS];
        for (&t, &l) in times.iter().zip(losses) {
            if l.is_finite() {
                let b = Self::bucket(t);
                sum[b] += f64::from(l);
                n[b] += 1;
            }
        }
        for b in 0..TIMESTEP_BUCKETS {
            if n[b] > 0 {
                let m = sum[b] / n[b] as f64;
                let old = self.mean[b];
                self.mean[b] = if old.is_nan() { m } else { BUCKET_DECAY * old + (1.0 - BUCKET_DECAY) * m };
            }
        }
    }

    pub fn values(&self) -> Vec<f64> {
        self.mean.to_vec()
    }
}
