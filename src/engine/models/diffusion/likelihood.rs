//! The DDPM model's negative ELBO per image (Ho et al. 2020, eq. 5), in nats: a bound on
//! −log p_θ(x₀) of 8-bit data, and so its density score.
//!
//! −ELBO = L_T + Σ_{t=2}^{T} L_{t−1} + L_0 with
//! - **L_T** = KL(q(x_T | x₀) ‖ N(0, I)), in closed form (no draw);
//! - **L_{t−1}** = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)), a KL of two Gaussians. The
//!   reverse step has the fixed variance σ_t² = β_t (Ho et al.'s first choice; the other,
//!   the posterior's β̃_t, left a bound 0.83 bits/dim above the exact −log P of the test's
//!   8-bit Gaussian data against 0.18 for β_t), so with x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
//!   L_{t−1} = β_t / (2 α_t (1 − ᾱ_t)) ‖ε − ε̂_θ(x_t, t)‖² + (D/2)(r − 1 − ln r),
//!   r = β̃_t/β_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t). The variance part Σ_t c_t D is summed exactly.
//!   The error part Σ_t w_t ‖ε − ε̂‖² is Monte-Carlo, importance-sampled: t is drawn from
//!   P(t) = ½ / (T − 1) + ½ w_t / W (W = Σ w_t) and each draw contributes w_t ‖ε − ε̂‖² / P(t),
//!   unbiased for the sum. On the cosine schedule w_t falls by about 100× from t = 2 to T/2:
//!   drawing t uniformly (the first version) left a barely trained net's estimate to whether a
//!   draw hit a small t; drawing ∝ w_t alone did worse where the error is a rare large event
//!   at small t (the exact denoiser of 8-bit data, whose bound test below measures both). The
//!   half-and-half mixture keeps each draw's weight w_t / P(t) under 2W, so its variance is
//!   within 2× of the better of the two. `draws` per image, stratified in that distribution
//!   (the k-th draw in the k-th of `draws` equal slices of its CDF), each with its own ε.
//! - **L_0** = −log p_θ(x₀ | x₁), the discretised Gaussian decoder: each pixel's probability is
//!   the mass of N(μ_θ(x₁, 1), β₁) over its 8-bit bin [x − 1/255, x + 1/255] in [−1, 1] units,
//!   the end bins stretched to ±∞. One draw of x₁ per image.
//!
//! The network's ε̂ is used unclipped (clipping x̂₀ is a sampling device, not part of p_θ).
//! Pixels in [0, 1] are rounded to the nearest of 256 levels first: the bound is on that
//! 8-bit image's probability, so it is in the units of the usual bits/dim tables.

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::Rng;

use super::schedule::{ddpm_noised, CosineSchedule};
use crate::engine::error::{EngineError, Result};
use crate::engine::models::layers::normal_tensor;

/// Intervals between the 256 levels of 8-bit data.
const LEVELS: f64 = 255.0;

/// The three parts of one image's −ELBO, in nats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NegElbo {
    /// L_T: KL(q(x_T | x₀) ‖ N(0, I)).
    pub prior: f64,
    /// Σ_{t=2}^{T} L_{t−1}, Monte-Carlo.
    pub diffusion: f64,
    /// L_0: −log p_θ(x₀ | x₁).
    pub decoder: f64,
}

impl NegElbo {
    pub fn total(&self) -> f64 {
        self.prior + self.diffusion + self.decoder
    }
}

/// Pixels in [0, 1] → the nearest 8-bit level, in [−1, 1].
pub fn quantise(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&p| ((p.clamp(0.0, 1.0) as f64 * LEVELS).round() / LEVELS * 2.0 - 1.0) as f32).collect()
}

/// The ε-prediction network at one time per row: `(x_t [B, D], t/T per row) → ε̂ [B, D]`.
pub type EpsNet<'a> = &'a mut dyn FnMut(&Tensor, &[f64]) -> Result<Tensor>;

/// −ELBO of each row of `x0: [B, D]` (8-bit levels in [−1, 1], see [`quantise`]) under the
/// DDPM model whose denoiser is `eps_of`, with `draws` Monte-Carlo timesteps per image.
pub fn neg_elbo(
    sched: &CosineSchedule,
    x0: &Tensor,
    draws: usize,
    eps_of: EpsNet,
    rng: &mut StdRng,
) -> Result<Vec<NegElbo>> {
    let big_t = sched.steps();
    if draws == 0 || big_t < 2 {
        return Err(EngineError::Config(format!(
            "the ELBO needs at least one timestep draw and two timesteps (got {draws} and {big_t})"
        )));
    }
    let (b, d) = x0.dims2()?;
    let x0_host: Vec<f32> = x0.flatten_all()?.to_vec1()?;
    let mut out = vec![NegElbo::default(); b];

    // L_T per pixel: ½ (ᾱ_T x² + (1 − ᾱ_T) − 1 − ln(1 − ᾱ_T)).
    let ab_t = sched.alpha_bar(big_t);
    for (o, row) in out.iter_mut().zip(x0_host.chunks(d)) {
        let sq: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
        o.prior = 0.5 * (ab_t * sq - d as f64 * (ab_t + (-ab_t).ln_1p()));
    }

    // Σ L_{t−1}, t ∈ 2…T: the variance part exactly, the error part importance-sampled.
    let proposal = TimeProposal::new(sched);
    let variance_part = proposal.variance_sum * d as f64;
    for o in out.iter_mut() {
        o.diffusion = variance_part;
    }
    for k in 0..draws {
        let ts: Vec<usize> = (0..b)
            .map(|_| {
                let u: f64 = rng.random_range(0.0..1.0);
                proposal.draw((k as f64 + u) / draws as f64)
            })
            .collect();
        let ab: Vec<f64> = ts.iter().map(|&t| sched.alpha_bar(t)).collect();
        let eps = normal_tensor(b, d, 1.0, rng)?.to_device(x0.device())?;
        let xt = ddpm_noised(x0, &eps, &ab)?;
        let frac: Vec<f64> = ts.iter().map(|&t| t as f64 / big_t as f64).collect();
        let eps_hat = eps_of(&xt, &frac)?;
        let sse: Vec<f32> = (eps - eps_hat)?.sqr()?.sum(1)?.to_vec1()?;
        for ((o, &t), &e) in out.iter_mut().zip(&ts).zip(&sse) {
            o.diffusion += proposal.weight(t) * e as f64 / draws as f64;
        }
    }

    // L_0: the discretised decoder at x₁.
    let ab1 = sched.alpha_bar(1);
    let beta1 = 1.0 - ab1;
    let eps = normal_tensor(b, d, 1.0, rng)?.to_device(x0.device())?;
    let x1 = ddpm_noised(x0, &eps, &vec![ab1; b])?;
    let eps_hat = eps_of(&x1, &vec![1.0 / big_t as f64; b])?;
    // μ_θ(x₁, 1) = (x₁ − β₁/√(1 − ᾱ₁) ε̂)/√α₁, with α₁ = ᾱ₁.
    let mu = ((x1 - (eps_hat * (beta1 / (1.0 - ab1).sqrt()))?)? / ab1.sqrt())?;
    let mu: Vec<f32> = mu.flatten_all()?.to_vec1()?;
    let sigma = beta1.sqrt();
    for (i, o) in out.iter_mut().enumerate() {
        let row = i * d..(i + 1) * d;
        o.decoder = -x0_host[row.clone()]
            .iter()
            .zip(&mu[row])
            .map(|(&x, &m)| log_bin_mass(x as f64, m as f64, sigma))
            .sum::<f64>();
    }
    Ok(out)
}

/// The distribution t ∈ 2…T is drawn from: P(t) = ½ / (T − 1) + ½ w_t / W, with w_t of
/// [`kl_terms`].
struct TimeProposal {
    /// w_t for t = 2…T.
    w: Vec<f64>,
    /// The mixture's CDF: cdf[i] = P(t ≤ i + 2).
    cdf: Vec<f64>,
    /// W = Σ_{t=2}^{T} w_t.
    total_weight: f64,
    /// Σ_{t=2}^{T} c_t, per pixel.
    variance_sum: f64,
}

impl TimeProposal {
    fn new(sched: &CosineSchedule) -> Self {
        let (w, c): (Vec<f64>, Vec<f64>) = (2..=sched.steps()).map(|t| kl_terms(sched, t)).unzip();
        let total_weight: f64 = w.iter().sum();
        let n = w.len() as f64;
        let mut acc = 0.0;
        let cdf = w
            .iter()
            .map(|&wt| {
                acc += 0.5 / n + 0.5 * wt / total_weight;
                acc
            })
            .collect();
        Self { w, cdf, total_weight, variance_sum: c.iter().sum() }
    }

    fn probability(&self, t: usize) -> f64 {
        0.5 / self.w.len() as f64 + 0.5 * self.w[t - 2] / self.total_weight
    }

    /// w_t / P(t): what one draw of t multiplies its ‖ε − ε̂‖² by.
    fn weight(&self, t: usize) -> f64 {
        self.w[t - 2] / self.probability(t)
    }

    /// The t whose CDF slice holds `q` ∈ [0, 1).
    fn draw(&self, q: f64) -> usize {
        2 + self.cdf.partition_point(|&c| c <= q).min(self.cdf.len() - 1)
    }
}

/// L_{t−1} = w ‖ε − ε̂‖² + c D for t ≥ 2; returns (w, c). With σ_t² = β_t and
/// β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) the posterior's variance, r = β̃_t/β_t:
/// the means differ by β_t/(√α_t √(1 − ᾱ_t)) (ε − ε̂), so w = β_t / (2 α_t (1 − ᾱ_t)), and the
/// variances' mismatch costs c = ½ (r − 1 − ln r) per pixel.
fn kl_terms(sched: &CosineSchedule, t: usize) -> (f64, f64) {
    let (ab, ab_prev) = (sched.alpha_bar(t), sched.alpha_bar(t - 1));
    let alpha = ab / ab_prev;
    let beta = 1.0 - alpha;
    let r = (1.0 - ab_prev) / (1.0 - ab);
    (beta / (2.0 * alpha * (1.0 - ab)), 0.5 * (r - 1.0 - r.ln()))
}

/// log of N(m, σ²)'s mass over the 8-bit bin of `x` ∈ [−1, 1] (end bins open to ±∞).
pub fn log_bin_mass(x: f64, m: f64, sigma: f64) -> f64 {
    let half = 1.0 / LEVELS;
    let lo = if x <= -1.0 + half { f64::NEG_INFINITY } else { (x - half - m) / sigma };
    let hi = if x >= 1.0 - half { f64::INFINITY } else { (x + half - m) / sigma };
    log_normal_interval(lo, hi)
}

/// log (Φ(b) − Φ(a)) for a < b, without cancellation: in a tail the difference is taken as
/// Φ(b)(1 − Φ(a)/Φ(b)) in logs; a bin much narrower than the density's scale falls back on
/// the density at its middle times its width.
pub fn log_normal_interval(a: f64, b: f64) -> f64 {
    if b - a < 1e-3 {
        let mid = 0.5 * (a + b);
        return -0.5 * mid * mid - 0.5 * (2.0 * std::f64::consts::PI).ln() + (b - a).ln();
    }
    if b <= 0.0 {
        let (la, lb) = (log_phi(a), log_phi(b));
        lb + (-(la - lb).exp()).ln_1p()
    } else if a >= 0.0 {
        log_normal_interval(-b, -a)
    } else {
        // Straddles 0: both tails are at most ½, so 1 − Φ(a) − Φ(−b) ≥ 0 has no cancellation
        // worse than the bin's own mass.
        (1.0 - log_phi(a).exp() - log_phi(-b).exp()).max(f64::MIN_POSITIVE).ln()
    }
}

/// log Φ(z), the standard normal's log CDF, for every z (−∞ included).
pub fn log_phi(z: f64) -> f64 {
    if z == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if z > 5.0 {
        return (-(log_erfc(z / std::f64::consts::SQRT_2)).exp() * 0.5).ln_1p();
    }
    // Φ(z) = ½ erfc(−z/√2).
    log_erfc(-z / std::f64::consts::SQRT_2) - std::f64::consts::LN_2
}

/// log erfc(x) by the Chebyshev fit of Numerical Recipes (`erfcc`, fractional error below
/// 1.2e-7 everywhere), kept in logs so the far tail does not underflow.
fn log_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let log_pos = t.ln() + poly;
    if x >= 0.0 {
        log_pos
    } else {
        // erfc(−z) = 2 − erfc(z).
        (2.0 - log_pos.exp()).ln()
    }
}

#[cfg(test)]
#[path = "likelihood_tests.rs"]
mod tests;
