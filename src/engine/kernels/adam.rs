//! The fused Adam update (one in-place pass per parameter) and the gradients' finiteness check.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::fastmath;

/// Values per task when the update of one parameter spreads over the rayon pool. The update is
/// element-wise, so the result does not depend on how it is cut.
const ADAM_CHUNK: usize = 1 << 15;

/// One step's coefficients of [`adam_update`], from the configuration and the step count.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    pub inv_bc2_sqrt: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// One Adam step on `param` in place, given its gradient and its moments `m`, `v` (updated in
/// place; as many values as `param`).
pub fn adam_update(
    param: &Tensor,
    grad: &Tensor,
    m: &mut Vec<f32>,
    v: &mut Vec<f32>,
    step: AdamStep,
) -> Result<()> {
    let g = if grad.is_contiguous() { grad.clone() } else { grad.contiguous()? };
    let op = AdamUpdate {
        m: RefCell::new(m),
        v: RefCell::new(v),
        step_size: step.step_size,
        inv_bc2_sqrt: step.inv_bc2_sqrt,
        beta1: step.beta1,
        beta2: step.beta2,
        eps: step.eps,
    };
    param.inplace_op2(&g, &op)
}

/// Whether every value of a gradient is finite (`false` for one that is not f32 on the CPU).
pub fn all_finite(grad: &Tensor) -> bool {
    // A gradient may be a strided view (candle stores the first gradient as it is).
    let g = if grad.is_contiguous() { Some(grad.clone()) } else { grad.contiguous().ok() };
    g.and_then(|g| with_f32(&g, all_finite_maybe_par)).unwrap_or(false)
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
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Some(f(&v[start..end])),
        _ => None,
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

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, g_s: &CpuStorage, g_l: &Layout) -> Result<()> {
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
