//! Adam: its configuration and per-parameter state. On the CPU the update is one fused in-place
//! pass per parameter (candle's stock optimiser runs about thirteen tensor ops per parameter
//! per step); [`Exec::adam_update`] chooses.

use candle_core::backprop::GradStore;
use serde::{Deserialize, Serialize};

use super::layers::ParamSet;
use crate::engine::kernels::{AdamStep, Exec, Moments};

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
    /// One per parameter of the set, in its order.
    pub moments: Vec<Moments>,
    exec: Exec,
}

/// Whether every gradient of `params` that is present is finite; used to refuse a poisoned
/// update.
pub fn grads_finite(params: &ParamSet, grads: &GradStore) -> candle_core::Result<bool> {
    let present: Vec<_> = params.vars().filter_map(|var| grads.get(var.as_tensor())).collect();
    params.exec.all_finite(&present)
}

impl Adam {
    pub fn new(config: AdamConfig, params: &ParamSet) -> candle_core::Result<Self> {
        let exec = params.exec.clone();
        let moments =
            params.vars().map(|v| exec.moments(v.as_tensor())).collect::<candle_core::Result<_>>()?;
        Ok(Self { config, step: 0, moments, exec })
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
            let coeffs = AdamStep {
                step_size: (c.lr / bc1) as f32,
                inv_bc2_sqrt: (1.0 / bc2_sqrt) as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
            };
            self.exec.adam_update(var, g, &mut self.moments[i], coeffs)?;
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
