//! The two objectives' noising processes and their samplers, as plain tensor maths on
//! flattened images `[B, D]` (the denoiser is a closure, so tests can pass an exact one).
//!
//! - **DDPM** (Ho et al. 2020) with the cosine schedule of Nichol & Dhariwal (2021):
//!   ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2), s = 0.008, T = 1,000, with
//!   β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped to 0.999. x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε; the network predicts ε.
//! - **Flow matching / rectified flow** (Lipman et al. 2023; Liu et al. 2023), in the convention
//!   of Esser et al. 2024 (SD3): x_t = (1 − t) x₀ + t ε for t ∈ [0, 1], data at t = 0, noise at
//!   t = 1; the network predicts the velocity v = ε − x₀, and sampling integrates
//!   dx/dt = v from t = 1 to t = 0.
//!
//! Samplers: DDIM (Song et al. 2021) with its η, of which DDPM's ancestral sampler is η = 1 on
//! the same (possibly respaced) timesteps; Euler and Heun for the flow's ODE.

use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};
use crate::engine::models::layers::normal_tensor;

/// Training timesteps of the DDPM objective.
pub const TRAIN_STEPS: usize = 1000;

/// The most sampling steps a sampler takes.
pub const MAX_SAMPLE_STEPS: usize = 1000;

/// What the network learns to predict, and so the noising process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// DDPM: ε-prediction on the cosine schedule, 1,000 timesteps.
    Ddpm,
    /// Flow matching (rectified flow): velocity prediction on the straight path.
    Flow,
}

/// How samples are drawn from a trained denoiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampler {
    /// DDPM's ancestral sampler (stochastic; DDIM with η = 1).
    Ddpm,
    /// DDIM with the configuration's η (η = 0: deterministic).
    Ddim,
    /// Euler steps of the flow's ODE.
    Euler,
    /// Heun's second-order steps of the flow's ODE (two network calls per step).
    Heun,
}

impl Sampler {
    /// The objective this sampler belongs to.
    pub fn objective(self) -> Objective {
        match self {
            Sampler::Ddpm | Sampler::Ddim => Objective::Ddpm,
            Sampler::Euler | Sampler::Heun => Objective::Flow,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sampler::Ddpm => "DDPM ancestral",
            Sampler::Ddim => "DDIM",
            Sampler::Euler => "Euler",
            Sampler::Heun => "Heun",
        }
    }
}

/// ᾱ_t for t = 0…T of the cosine schedule (ᾱ_0 = 1).
#[derive(Clone, Debug)]
pub struct CosineSchedule {
    alpha_bar: Vec<f64>,
}

/// The cosine schedule's offset s (Nichol & Dhariwal 2021, §3.2).
const COSINE_S: f64 = 0.008;
/// Its largest β, which keeps the last steps from being singular.
const MAX_BETA: f64 = 0.999;

impl CosineSchedule {
    pub fn new(steps: usize) -> Self {
        let f = |t: f64| {
            (((t / steps as f64) + COSINE_S) / (1.0 + COSINE_S) * std::f64::consts::FRAC_PI_2).cos().powi(2)
        };
        let mut alpha_bar = vec![1.0];
        for t in 1..=steps {
            let beta = (1.0 - f(t as f64) / f((t - 1) as f64)).min(MAX_BETA);
            alpha_bar.push(alpha_bar[t - 1] * (1.0 - beta));
        }
        Self { alpha_bar }
    }

    /// T, the number of training timesteps.
    pub fn steps(&self) -> usize {
        self.alpha_bar.len() - 1
    }

    /// ᾱ_t, t ∈ 0…T.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bar[t.min(self.steps())]
    }

    /// The timesteps a sampler of `n` steps visits, from T down (distinct, ending ≥ 1; the
    /// step after the last one lands on t = 0).
    pub fn respaced(&self, n: usize) -> Vec<usize> {
        let t = self.steps();
        let n = n.clamp(1, t);
        (1..=n).rev().map(|i| (i * t).div_ceil(n)).collect()
    }
}

/// `[B]` per-row values as a `[B, 1]` column on `like`'s device, to broadcast over pixels.
fn column(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(v, (values.len(), 1), like.device())?)
}

/// DDPM's forward process: `x_t = √ᾱ x₀ + √(1 − ᾱ) ε`, one ᾱ per row. `x0, eps: [B, D]`.
pub fn ddpm_noised(x0: &Tensor, eps: &Tensor, alpha_bar: &[f64]) -> Result<Tensor> {
    let a: Vec<f64> = alpha_bar.iter().map(|a| a.sqrt()).collect();
    let s: Vec<f64> = alpha_bar.iter().map(|a| (1.0 - a).sqrt()).collect();
    Ok((x0.broadcast_mul(&column(&a, x0)?)? + eps.broadcast_mul(&column(&s, x0)?)?)?)
}

/// The flow's path: `x_t = (1 − t) x₀ + t ε`, one t per row, and its velocity target
/// `ε − x₀`. `x0, eps: [B, D]` → (`x_t`, `v`), each `[B, D]`.
pub fn flow_noised(x0: &Tensor, eps: &Tensor, t: &[f64]) -> Result<(Tensor, Tensor)> {
    let one_minus: Vec<f64> = t.iter().map(|t| 1.0 - t).collect();
    let xt = (x0.broadcast_mul(&column(&one_minus, x0)?)? + eps.broadcast_mul(&column(t, x0)?)?)?;
    Ok((xt, (eps - x0)?))
}

/// One DDIM update from ᾱ_t to ᾱ_prev given the predicted noise (Song et al. 2021, eq. 12):
/// x̂₀ = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t (clamped to [−1, 1] when `clip`),
/// σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev),
/// x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z. η = 1 is DDPM's posterior q(x_prev | x_t, x̂₀).
/// Returns (x_prev, x̂₀).
#[allow(clippy::too_many_arguments)]
fn ddim_update(
    xt: &Tensor,
    eps_hat: &Tensor,
    ab_t: f64,
    ab_prev: f64,
    eta: f64,
    clip: bool,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor)> {
    let mut x0 = ((xt - (eps_hat * (1.0 - ab_t).sqrt())?)? / ab_t.sqrt())?;
    if clip {
        x0 = x0.clamp(-1f32, 1f32)?;
        // ε consistent with the clamped x̂₀, so the deterministic path stays on it.
    }
    let eps = if clip { ((xt - (&x0 * ab_t.sqrt())?)? / (1.0 - ab_t).sqrt())? } else { eps_hat.clone() };
    let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab_t)).sqrt() * (1.0 - ab_t / ab_prev).max(0.0).sqrt();
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    let mut x = ((&x0 * ab_prev.sqrt())? + (eps * dir)?)?;
    if sigma > 0.0 {
        let (b, d) = xt.dims2()?;
        let z = normal_tensor(b, d, 1.0, rng)?.to_device(xt.device())?;
        x = (x + (z * sigma)?)?;
    }
    Ok((x, x0))
}

/// What a sampler reports after each step: the step's index (0 first), the time it reached
/// (t/T for DDPM, t for the flow), x there and the predicted x̂₀ (for trajectory views).
pub type StepView<'a> = &'a mut dyn FnMut(usize, f64, &Tensor, &Tensor);

/// DDIM from x_T (`[B, D]`, standard normal) in `steps` respaced steps; `eps_of(x_t, t/T)`
/// is the denoiser. `eta = 1` is DDPM's ancestral sampler. Returns x₀ `[B, D]`.
#[allow(clippy::too_many_arguments)]
pub fn sample_ddim(
    sched: &CosineSchedule,
    x_t: &Tensor,
    steps: usize,
    eta: f64,
    clip: bool,
    eps_of: &mut dyn FnMut(&Tensor, f64) -> Result<Tensor>,
    rng: &mut StdRng,
    mut view: Option<StepView>,
) -> Result<Tensor> {
    check_steps(steps)?;
    let ts = sched.respaced(steps);
    let big_t = sched.steps() as f64;
    let mut x = x_t.clone();
    for (i, &t) in ts.iter().enumerate() {
        let prev = ts.get(i + 1).copied().unwrap_or(0);
        let eps = eps_of(&x, t as f64 / big_t)?;
        let (next, x0) = ddim_update(&x, &eps, sched.alpha_bar(t), sched.alpha_bar(prev), eta, clip, rng)?;
        x = next;
        if let Some(v) = view.as_mut() {
            v(i, prev as f64 / big_t, &x, &x0);
        }
    }
    Ok(x)
}

/// The flow's ODE from x₁ (`[B, D]`, standard normal) to t = 0 in `steps` uniform steps;
/// `v_of(x_t, t)` is the velocity. Heun averages the velocity at both ends of each step
/// (two calls per step). Returns x₀ `[B, D]`.
pub fn sample_flow(
    x1: &Tensor,
    steps: usize,
    heun: bool,
    v_of: &mut dyn FnMut(&Tensor, f64) -> Result<Tensor>,
    mut view: Option<StepView>,
) -> Result<Tensor> {
    check_steps(steps)?;
    let h = 1.0 / steps as f64;
    let mut x = x1.clone();
    for i in 0..steps {
        let t = 1.0 - i as f64 * h;
        let t_next = 1.0 - (i + 1) as f64 * h;
        let v = v_of(&x, t)?;
        let euler = (&x - (&v * h)?)?;
        let (next, v_used) = if heun {
            let v2 = v_of(&euler, t_next)?;
            let avg = ((v + v2)? * 0.5)?;
            ((&x - (&avg * h)?)?, avg)
        } else {
            (euler, v)
        };
        x = next;
        if let Some(view) = view.as_mut() {
            // On the straight path x₀ = x_t − t v.
            let x0 = (&x - (&v_used * t_next)?)?;
            view(i, t_next, &x, &x0);
        }
    }
    Ok(x)
}

fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 || steps > MAX_SAMPLE_STEPS {
        return Err(EngineError::Config(format!("{steps} sampling steps: between 1 and {MAX_SAMPLE_STEPS}")));
    }
    Ok(())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
