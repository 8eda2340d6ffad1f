//! Parity of two ways to run one model: the same configuration, data and seed trained for the
//! same steps on two kernel paths or devices, loss by loss and step by step. The tests hold the
//! fused CPU kernels to the stock-op reference path with it, and `genlab parity` (and
//! `bench/gpu_check.sh`) a GPU to the CPU.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use super::config::RunConfig;
use super::data::Dataset;
use super::error::Result;
use super::kernels::KernelPath;
use super::models::{LossKey, Losses};
use super::session::TrainingSession;

/// One side of a comparison: a device and a kernel path.
#[derive(Clone, Debug)]
pub struct Side {
    pub device: Device,
    pub kernels: KernelPath,
}

impl Side {
    pub fn new(device: Device, kernels: KernelPath) -> Self {
        Self { device, kernels }
    }

    /// "cpu/fused", "cuda:0/reference"…
    pub fn label(&self) -> String {
        let device = match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        // Off the CPU every op is the reference one, whatever was asked.
        let kernels = if self.device.is_cpu() { self.kernels } else { KernelPath::Reference };
        format!("{device}/{kernels}")
    }
}

/// The losses of one side, step by step, and its speed.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub side: String,
    pub losses: Vec<Losses>,
    /// Training images per second over the whole run (model built, data copied: excluded).
    pub images_per_sec: f64,
}

/// The largest difference between two traces.
#[derive(Clone, Debug, Serialize)]
pub struct Parity {
    pub steps: usize,
    pub a: Trace,
    pub b: Trace,
    /// The largest `|a − b| / max(|a|, |b|, 1)` over every loss of every step: relative for
    /// losses above 1, absolute below.
    pub max_rel_diff: f64,
    /// Where it was: the 1-based step and the loss.
    pub worst_step: usize,
    pub worst_loss: Option<LossKey>,
    /// The same over the first step alone (before any update: the forward pass and losses).
    pub first_step_diff: f64,
    /// How many steps from the first agree within [`AGREE`] on every loss. Two exact
    /// implementations of the same maths part after a while: rounding differs in the last bit,
    /// and training amplifies it (Adam turns a gradient's rounding noise near zero into a
    /// full-size step), so the traces agree to ~1e-7 at first and then drift apart.
    pub agree_steps: usize,
    /// The relative difference of the headline loss's mean over the last quarter of the steps:
    /// what a drift does to the training itself.
    pub tail_mean_diff: f64,
    /// The largest difference up to step 1, 10, 30, 100, 300, 1000 (those within the run).
    pub growth: Vec<(usize, f64)>,
}

/// Two traces agree at a step when every loss differs by at most this (relative above 1).
pub const AGREE: f64 = 1e-3;

/// Trains `config` for `steps` steps on `data`, once per side, from the same seed.
pub fn compare(config: &RunConfig, data: Arc<Dataset>, a: &Side, b: &Side, steps: usize) -> Result<Parity> {
    let a = trace(config, data.clone(), a, steps)?;
    let b = trace(config, data, b, steps)?;
    let (mut max_rel_diff, mut worst_step, mut worst_loss, mut first_step_diff) = (0.0, 0, None, 0.0);
    let (mut agree_steps, mut growth) = (None, Vec::new());
    for (i, (la, lb)) in a.losses.iter().zip(&b.losses).enumerate() {
        let mut step_diff = 0.0f64;
        for (key, x) in la.components() {
            let y = lb.get(key).unwrap_or(f64::NAN);
            let d = rel_diff(x, y);
            step_diff = step_diff.max(d);
            if d > max_rel_diff || worst_loss.is_none() {
                (max_rel_diff, worst_step, worst_loss) = (d, i + 1, Some(key));
            }
        }
        if i == 0 {
            first_step_diff = step_diff;
        }
        if step_diff > AGREE && agree_steps.is_none() {
            agree_steps = Some(i);
        }
        if [1, 10, 30, 100, 300, 1000].contains(&(i + 1)) {
            growth.push((i + 1, max_rel_diff));
        }
    }
    let steps = a.losses.len().min(b.losses.len());
    let headline = config.model.capabilities().headline;
    let tail_mean_diff = tail_mean_diff(&a.losses[..steps], &b.losses[..steps], headline);
    Ok(Parity {
        steps,
        a,
        b,
        max_rel_diff,
        worst_step,
        worst_loss,
        first_step_diff,
        agree_steps: agree_steps.unwrap_or(steps),
        tail_mean_diff,
        growth,
    })
}

/// `|x − y| / max(|x|, |y|, 1)`; NaN on either side is the largest difference there is.
fn rel_diff(x: f64, y: f64) -> f64 {
    let d = (x - y).abs() / x.abs().max(y.abs()).max(1.0);
    if d.is_nan() {
        f64::INFINITY
    } else {
        d
    }
}

/// The relative difference of the means of `key` over the last quarter of the steps.
fn tail_mean_diff(a: &[Losses], b: &[Losses], key: LossKey) -> f64 {
    let from = a.len() - a.len().div_ceil(4);
    let mean = |t: &[Losses]| {
        let v: Vec<f64> = t[from..].iter().filter_map(|l| l.get(key)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    rel_diff(mean(a), mean(b))
}

fn trace(config: &RunConfig, data: Arc<Dataset>, side: &Side, steps: usize) -> Result<Trace> {
    let mut config = config.clone();
    config.train.kernels = side.kernels;
    // Enough epochs for the steps asked (an epoch has at least one step); the evaluation at
    // each epoch's end is part of both runs.
    config.train.epochs = config.train.epochs.max(steps);
    let mut session = TrainingSession::on(config, data, side.device.clone())?;
    let mut losses = Vec::with_capacity(steps);
    let (t0, mut images) = (Instant::now(), 0usize);
    while losses.len() < steps && !session.is_finished() {
        let r = session.step()?;
        images += r.batch;
        losses.push(r.losses);
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    Ok(Trace { side: side.label(), losses, images_per_sec: images as f64 / secs })
}
