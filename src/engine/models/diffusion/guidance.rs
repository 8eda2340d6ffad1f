//! Classifier-free guidance (Ho & Salimans 2022) for the class-conditional U-Net: what the
//! denoiser is told of the class, label dropout in training, and the guided prediction at
//! sampling, cond and uncond evaluated as one network call on the stacked rows.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

use super::unet::UNet;
use crate::engine::error::{EngineError, Result};

/// What a sample is conditioned on, row by row.
#[derive(Clone, Debug)]
pub enum Cond {
    /// Nothing: an unconditional net, or a conditional one's "no class" (its unconditional
    /// prediction).
    None,
    /// Class labels `[B]` (u32), each below the net's classes.
    Labels(Tensor),
    /// A blend of the classes `[B, K]` (f32, rows summing to 1), for walks between classes.
    Blend(Tensor),
}

impl Cond {
    /// Rows `start..start + len` of the condition.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Cond> {
        Ok(match self {
            Cond::None => Cond::None,
            Cond::Labels(y) => Cond::Labels(y.narrow(0, start, len)?),
            Cond::Blend(w) => Cond::Blend(w.narrow(0, start, len)?),
        })
    }
}

/// Labels for one training step: each replaced by "no class" (the value `classes`) with
/// probability `p`, one draw per label from `rng`.
pub fn drop_labels(labels: &[u32], classes: usize, p: f64, rng: &mut StdRng) -> Vec<u32> {
    labels.iter().map(|&l| if rng.random_bool(p.clamp(0.0, 1.0)) { classes as u32 } else { l }).collect()
}

/// The labels `y: [B]` as u32 on the host, each checked against `classes`.
pub fn checked_labels(y: &Tensor, classes: usize) -> Result<Vec<u32>> {
    let labels: Vec<u32> = y.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(EngineError::Config(format!(
            "class {l} is out of range: the model is conditioned on {classes} classes (0 to {})",
            classes - 1
        )));
    }
    Ok(labels)
}

/// The guided prediction at time `t` for every row of `x: [B, D]`: ε̂_u + w (ε̂_c − ε̂_u),
/// computed as (1 − w) ε̂_u + w ε̂_c so w = 0 gives ε̂_u and w = 1 gives ε̂_c exactly. For
/// w ∉ {0, 1} both come from ONE call on the `[2B, D]` rows (x twice; the condition, then
/// "no class"), which is faster than two calls of B rows. `[B, D]`, detached.
pub fn guided(unet: &UNet, x: &Tensor, t: f64, cond: &Cond, w: f64) -> Result<Tensor> {
    let b = x.dim(0)?;
    let k = unet.classes();
    if k == 0 || matches!(cond, Cond::None) || w == 0.0 {
        return Ok(unet.forward(x, &vec![t; b], None)?.detach());
    }
    if w == 1.0 {
        return Ok(conditional(unet, x, &vec![t; b], cond)?.detach());
    }
    let x2 = Tensor::cat(&[x, x], 0)?; // [2B, D]
    let t2 = vec![t; 2 * b];
    let out = match cond {
        Cond::Labels(y) => {
            let none = Tensor::full(k as u32, b, y.device())?;
            let y2 = Tensor::cat(&[&y.to_dtype(DType::U32)?, &none], 0)?; // [2B]
            unet.forward(&x2, &t2, Some(&y2))?
        }
        Cond::Blend(wts) => {
            let rows = Tensor::cat(&[&with_none_column(wts, 0.0)?, &none_rows(b, k, wts.device())?], 0)?;
            blend(unet, &x2, &t2, &rows)? // [2B, K + 1] weights
        }
        Cond::None => unet.forward(&x2, &t2, None)?,
    }
    .detach();
    let (c, u) = (out.narrow(0, 0, b)?, out.narrow(0, b, b)?);
    Ok(((u * (1.0 - w))? + (c * w)?)?)
}

/// The conditional prediction alone: `[B, D]`.
fn conditional(unet: &UNet, x: &Tensor, t: &[f64], cond: &Cond) -> Result<Tensor> {
    match cond {
        Cond::None => unet.forward(x, t, None),
        Cond::Labels(y) => unet.forward(x, t, Some(y)),
        Cond::Blend(wts) => blend(unet, x, t, &with_none_column(wts, 0.0)?),
    }
}

fn blend(unet: &UNet, x: &Tensor, t: &[f64], weights: &Tensor) -> Result<Tensor> {
    unet.forward_blend(x, t, weights)?
        .ok_or_else(|| EngineError::Other("an unconditional U-Net takes no blend of classes".into()))
}

/// `[B, K] → [B, K + 1]`: the blend with a "no class" column of `v`.
fn with_none_column(wts: &Tensor, v: f32) -> Result<Tensor> {
    let b = wts.dim(0)?;
    let col = Tensor::full(v, (b, 1), wts.device())?;
    Ok(Tensor::cat(&[&wts.to_dtype(DType::F32)?, &col], 1)?)
}

/// `[B, K + 1]` rows that pick "no class".
fn none_rows(b: usize, k: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; b * (k + 1)];
    for r in 0..b {
        v[r * (k + 1) + k] = 1.0;
    }
    Ok(Tensor::from_vec(v, (b, k + 1), device)?)
}
