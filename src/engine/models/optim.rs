//! Adam, with the whole update for one parameter fused into a single in-place pass
//! (candle's stock optimiser runs about thirteen tensor ops per parameter per step).

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Storage, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::layers::ParamSet;
use crate::engine::kernels::fastmath;

/// Values per task when the update of one parameter spreads over the rayon pool. The update is
/// element-wise, so the result does not depend on how it is cut.
const ADAM_CHUNK: usize = 1 << 15;

/// Adam's hyper-parameters (weight decay is always 0: this is Adam, not AdamW).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Adam state for one parameter set: first and second moments per parameter and the step count.
pub struct Adam {
    pub config: AdamConfig,
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// Whether every gradient of `params` is present and finite; used to refuse a poisoned update.
pub fn grads_finite(params: &ParamSet, grads: &GradStore) -> bool {
    params.vars().all(|var| match grads.get(var.as_tensor()) {
        None => true,
        // A gradient may be a strided view (candle stores the first gradient as it is).
        Some(g) => {
            let g = if g.is_contiguous() { Some(g.clone()) } else { g.contiguous().ok() };
            g.and_then(|g| with_f32(&g, all_finite_maybe_par)).unwrap_or(false)
        }
    })
}

/// [`fastmath::all_finite`], over the pool in [`ADAM_CHUNK`]s when there are enough values (a
/// pass over every gradient each step, memory-bound like the update).
fn all_finite_maybe_par(v: &[f32]) -> bool {
    let finite = |c: &[f32]| fastmath::with_simd(|| fastmath::all_finite(c));
    if v.len() >= 2 * ADAM_CHUNK && rayon::current_num_threads() > 1 {
        v.par_chunks(ADAM_CHUNK).all(finite)
    } else {
        finite(v)
    }
}

/// Runs `f` on the contiguous f32 values of a CPU tensor.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Some(f(&v[start..end])),
        _ => None,
    }
}

impl Adam {
    pub fn new(config: AdamConfig, params: &ParamSet) -> Self {
        let m = params.vars().map(|v| vec![0.0; v.elem_count()]).collect();
        let v = params.vars().map(|v| vec![0.0; v.elem_count()]).collect();
        Self { config, step: 0, m, v }
    }

    /// Applies one Adam step to every parameter that has a gradient.
    pub fn step(&mut self, params: &ParamSet, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for (i, var) in params.vars().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = if g.is_contiguous() { g.clone() } else { g.contiguous()? };
            let op = AdamUpdate {
                m: RefCell::new(&mut self.m[i]),
                v: RefCell::new(&mut self.v[i]),
                step_size: (c.lr / bc1) as f32,
                inv_bc2_sqrt: (1.0 / bc2_sqrt) as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
            };
            var.as_tensor().inplace_op2(&g, &op)?;
        }
        Ok(())
    }
}

/// `m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
struct AdamUpdate<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    step_size: f32,
    inv_bc2_sqrt: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

impl InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g_s: &CpuStorage,
        g_l: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (dst, g_s) else {
            candle_core::bail!("adam: only f32 parameters are supported")
        };
        let (Some((p0, p1)), Some((g0, g1))) = (dst_l.contiguous_offsets(), g_l.contiguous_offsets()) else {
            candle_core::bail!("adam: parameters and gradients must be contiguous")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if m.len() != p.len() || g.len() != p.len() {
            candle_core::bail!("adam: state of {} values for a parameter of {}", m.len(), p.len())
        }
        let (b1, b2, step_size, inv_bc2_sqrt, eps) =
            (self.beta1, self.beta2, self.step_size, self.inv_bc2_sqrt, self.eps);
        let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            fastmath::with_simd(|| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= step_size * *m / (v.sqrt() * inv_bc2_sqrt + eps);
                }
            })
        };
        // Memory-bound (seven f32 streams): at 2 threads the second core's bandwidth helps, and
        // the update no longer runs while the other thread idles.
        if p.len() >= 2 * ADAM_CHUNK && rayon::current_num_threads() > 1 {
            p.par_chunks_mut(ADAM_CHUNK)
                .zip(g.par_chunks(ADAM_CHUNK))
                .zip(m.par_chunks_mut(ADAM_CHUNK))
                .zip(v.par_chunks_mut(ADAM_CHUNK))
                .for_each(|(((p, g), m), v)| update(p, g, m, v));
        } else {
            update(p, g, &mut m[..], &mut v[..]);
        }
        Ok(())
    }
}

/// Reference implementation of one Adam step on plain slices (tests compare against it).
pub fn adam_reference(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamConfig, t: i32) {
    for i in 0..p.len() {
        m[i] = c.beta1 as f32 * m[i] + (1.0 - c.beta1 as f32) * g[i];
        v[i] = c.beta2 as f32 * v[i] + (1.0 - c.beta2 as f32) * g[i] * g[i];
        let mh = m[i] as f64 / (1.0 - c.beta1.powi(t));
        let vh = v[i] as f64 / (1.0 - c.beta2.powi(t));
        p[i] -= (c.lr * mh / (vh.sqrt() + c.eps)) as f32;
    }
}
