//! Per-image likelihoods and scores that models compute for [`crate::engine::scoring`]: the
//! observation model p(x|z), the importance-weighted estimate of log p(x) and the record of
//! every score of one image.

use std::f64::consts::{LN_2, PI};

use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::ReconLoss;
use crate::engine::error::{EngineError, Result};

/// The observation model p(x|z) given the decoder's logits `l` (x̂ = σ(l)), per pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Likelihood {
    /// log p(x|z) = Σ x log x̂ + (1 − x) log(1 − x̂) = −BCE: the BCE training loss. A proper
    /// distribution only for binary pixels; on grey levels it is **not** a normalised density
    /// over [0, 1]^D, so its "log-likelihoods" are comparable between models trained with the
    /// same loss but are not true densities (they are too low by the missing normaliser).
    Bernoulli,
    /// The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the Bernoulli term plus
    /// log C(λ) per pixel, C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ), λ = x̂, which makes it a proper
    /// density on [0, 1]^D. Same decoder as [`Likelihood::Bernoulli`]; only the score changes.
    ContinuousBernoulli,
    /// A Gaussian with fixed variance ½: −log N(x; x̂, ½ I) = ‖x − x̂‖² + (D/2) ln π, the MSE
    /// training loss plus a constant. (Variance ½ is the one for which ‖x − x̂‖² is exactly the
    /// negative log-density up to that constant.)
    Gaussian,
}

impl Likelihood {
    /// The likelihood a model's training loss implies: BCE → Bernoulli (or the continuous
    /// Bernoulli when asked), MSE → Gaussian with variance ½ (`continuous_bernoulli` is then
    /// ignored).
    pub fn for_loss(loss: ReconLoss, continuous_bernoulli: bool) -> Self {
        match (loss, continuous_bernoulli) {
            (ReconLoss::Bce, false) => Likelihood::Bernoulli,
            (ReconLoss::Bce, true) => Likelihood::ContinuousBernoulli,
            (ReconLoss::Mse, _) => Likelihood::Gaussian,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Likelihood::Bernoulli => "bernoulli",
            Likelihood::ContinuousBernoulli => "continuous-bernoulli",
            Likelihood::Gaussian => "gaussian(var=1/2)",
        }
    }

    /// log p(x|z) in nats for one image `x` (values in [0, 1]) and its decoder logits.
    pub fn log_prob(&self, x: &[f32], logits: &[f32]) -> f64 {
        let pairs = x.iter().zip(logits).map(|(&x, &l)| (x as f64, l as f64));
        match self {
            Likelihood::Bernoulli => -pairs.map(|(x, l)| softplus(l) - x * l).sum::<f64>(),
            Likelihood::ContinuousBernoulli => {
                pairs.map(|(x, l)| x * l - softplus(l) + cb_log_norm(l)).sum::<f64>()
            }
            Likelihood::Gaussian => {
                let sq: f64 = pairs.map(|(x, l)| (x - sigmoid(l)).powi(2)).sum();
                -sq - 0.5 * x.len() as f64 * PI.ln()
            }
        }
    }
}

/// `log(1 + e^l)` without overflow.
fn softplus(l: f64) -> f64 {
    l.max(0.0) + (-l.abs()).exp().ln_1p()
}

fn sigmoid(l: f64) -> f64 {
    1.0 / (1.0 + (-l).exp())
}

/// The training loss's per-image reconstruction term from logits: BCE summed over pixels, or
/// the squared error ‖x − σ(l)‖² (what [`crate::engine::models::losses`] computes per row).
pub fn recon_error(loss: ReconLoss, x: &[f32], logits: &[f32]) -> f64 {
    let pairs = x.iter().zip(logits).map(|(&x, &l)| (x as f64, l as f64));
    match loss {
        ReconLoss::Bce => pairs.map(|(x, l)| softplus(l) - x * l).sum(),
        ReconLoss::Mse => pairs.map(|(x, l)| (x - sigmoid(l)).powi(2)).sum(),
    }
}

/// log C(λ), the continuous Bernoulli's log-normaliser, at λ = σ(l).
///
/// C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ) is 0/0 at λ = ½. In logits, 1 − 2σ(l) = −tanh(l/2), so
/// C = l / tanh(l/2) = 2·u coth u with u = l/2: no cancellation except as u → 0, where the
/// Taylor series log(u coth u) = u²/3 − 7u⁴/90 + 62u⁶/2835 − O(u⁸) takes over (error below
/// 1e-18 for |u| < 0.01). C → 2 at λ = ½ and grows like |l| as λ → 0 or 1.
pub fn cb_log_norm(l: f64) -> f64 {
    let u = 0.5 * l.abs();
    if u < 1e-2 {
        let u2 = u * u;
        LN_2 + u2 * (1.0 / 3.0 + u2 * (-7.0 / 90.0 + u2 * 62.0 / 2835.0))
    } else {
        LN_2 + (u / u.tanh()).ln()
    }
}

/// The importance-weighted estimate for one item, from K draws z_k ~ q(z|x).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IwEstimate {
    /// log p̂(x) = logsumexp_k log w_k − log K, with log w = log p(x|z) + log p(z) − log q(z|x).
    pub log_px: f64,
    /// The mean of log w_k: K single-sample ELBO estimates averaged. Never above `log_px`
    /// (mean of logs ≤ log of mean).
    pub mean_log_w: f64,
    /// The mean of log p(x|z_k) over the same draws.
    pub mean_log_lik: f64,
}

/// The IWAE core, generic over the model: items with diagonal Gaussian posteriors
/// q(z|x_i) = N(μ_i, diag exp(logvar_i)) (`mu`, `logvar`: row-major `[N, latent]`), a standard
/// normal prior, and `log_lik(items, z)` returning log p(x_item|z) for each row of `z`
/// (`z` row-major `[rows, latent]`, `items[r]` = which item row `r` belongs to).
///
/// Draws `k` samples per item from `rng` and calls `log_lik` on chunks of at most `max_rows`
/// rows (so memory stays bounded whatever N·K is). log q uses ε = (z − μ)/σ as drawn, which is
/// exact in f64 even when σ is tiny.
pub fn importance_weighted<F>(
    mu: &[f32],
    logvar: &[f32],
    latent: usize,
    k: usize,
    max_rows: usize,
    rng: &mut StdRng,
    mut log_lik: F,
) -> Result<Vec<IwEstimate>>
where
    F: FnMut(&[usize], &[f32]) -> Result<Vec<f64>>,
{
    if latent == 0 || k == 0 || mu.len() != logvar.len() || !mu.len().is_multiple_of(latent) {
        return Err(EngineError::Other(format!(
            "importance sampling needs K ≥ 1 and whole {latent}-d μ and log σ² rows (got K = {k}, {} and {} values)",
            mu.len(),
            logvar.len()
        )));
    }
    let n = mu.len() / latent;
    let total = n * k;
    let max_rows = max_rows.max(1);
    let mut log_w = vec![0.0f64; total];
    let mut log_l = vec![0.0f64; total];
    let mut start = 0;
    while start < total {
        let end = (start + max_rows).min(total);
        let rows = end - start;
        let items: Vec<usize> = (start..end).map(|r| r / k).collect();
        let mut z = Vec::with_capacity(rows * latent);
        for (r, &i) in items.iter().enumerate() {
            let (m, lv) = (&mu[i * latent..(i + 1) * latent], &logvar[i * latent..(i + 1) * latent]);
            let mut prior_minus_q = 0.0f64;
            for j in 0..latent {
                let eps: f64 = Distribution::<f64>::sample(&StandardNormal, rng);
                let zj = (m[j] as f64 + (0.5 * lv[j] as f64).exp() * eps) as f32;
                z.push(zj);
                let zj = zj as f64;
                // log N(z; 0, 1) − log N(z; μ, σ²); the ln 2π terms cancel.
                prior_minus_q += -0.5 * zj * zj + 0.5 * eps * eps + 0.5 * lv[j] as f64;
            }
            log_w[start + r] = prior_minus_q;
        }
        let ll = log_lik(&items, &z)?;
        if ll.len() != rows {
            return Err(EngineError::Other(format!(
                "the likelihood returned {} values for {rows} latent draws",
                ll.len()
            )));
        }
        for (r, v) in ll.into_iter().enumerate() {
            log_w[start + r] += v;
            log_l[start + r] = v;
        }
        start = end;
    }
    let ln_k = (k as f64).ln();
    Ok((0..n)
        .map(|i| {
            let w = &log_w[i * k..(i + 1) * k];
            IwEstimate {
                log_px: log_sum_exp(w) - ln_k,
                mean_log_w: w.iter().sum::<f64>() / k as f64,
                mean_log_lik: log_l[i * k..(i + 1) * k].iter().sum::<f64>() / k as f64,
            }
        })
        .collect())
}

/// log Σ exp(v), shifted by the maximum so nothing overflows.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Settings for [`score_indices`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreOptions {
    /// Importance samples per image (VAE).
    pub k: usize,
    /// Score BCE models with the continuous Bernoulli (a proper density on [0, 1]^D).
    pub continuous_bernoulli: bool,
    /// Upper bound on decoder rows per pass (images × K): bounds memory to about
    /// `max_rows · D` floats per tensor.
    pub max_rows: usize,
    /// Seeds the draws z_k.
    pub seed: u64,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { k: 64, continuous_bernoulli: false, max_rows: 4096, seed: 0 }
    }
}

/// Every score of one image. Fields a family does not produce are `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleScore {
    /// Index of the image in its dataset.
    pub index: usize,
    pub label: Option<u32>,
    /// AE: the training loss's value (BCE sum or ‖x − x̂‖², z = encoder output).
    /// VAE: E_q[−log p(x|z)] in nats over the K draws (MSE: includes the (D/2) ln π constant).
    pub recon: Option<f64>,
    /// KL(q(z|x) ‖ N(0, I)) in nats (VAE); diffusion: L_T + Σ_t L_{t−1}, its forward
    /// process's KL terms.
    pub kl: Option<f64>,
    /// −ELBO = recon + KL in nats (β = 1) (VAE; diffusion: recon is its decoder's
    /// −log p(x₀ | x₁)).
    pub neg_elbo: Option<f64>,
    /// The IWAE estimate of −log p(x) in nats (VAE).
    pub neg_log_px: Option<f64>,
    /// `neg_log_px` / (D ln 2) (VAE); `neg_elbo` / (D ln 2) (diffusion, on 8-bit levels).
    pub bits_per_dim: Option<f64>,
    /// The discriminator's logit (GAN).
    pub disc_logit: Option<f64>,
}

impl SampleScore {
    pub fn new(index: usize, label: Option<u32>) -> Self {
        Self {
            index,
            label,
            recon: None,
            kl: None,
            neg_elbo: None,
            neg_log_px: None,
            bits_per_dim: None,
            disc_logit: None,
        }
    }

    /// The scores present, by their report names, in a fixed order.
    pub fn columns(&self) -> Vec<(&'static str, f64)> {
        [
            ("recon", self.recon),
            ("kl_nats", self.kl),
            ("elbo_nats", self.neg_elbo),
            ("iwae_nats", self.neg_log_px),
            ("bits_per_dim", self.bits_per_dim),
            ("disc_logit", self.disc_logit),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect()
    }

    /// Higher = more anomalous: −log p̂(x) (VAE), −ELBO (diffusion), the reconstruction error
    /// (AE), or minus the discriminator's logit (GAN).
    pub fn anomaly(&self) -> f64 {
        self.neg_log_px.or(self.neg_elbo).or(self.recon).or(self.disc_logit.map(|l| -l)).unwrap_or(f64::NAN)
    }
}

/// KL(N(μ, σ²) ‖ N(0, I)) in f64 for one row.
pub fn kl_row(mu: &[f32], logvar: &[f32]) -> f64 {
    mu.iter()
        .zip(logvar)
        .map(|(&m, &lv)| {
            let (m, lv) = (m as f64, lv as f64);
            0.5 * (lv.exp() + m * m - 1.0 - lv)
        })
        .sum()
}

/// How a model scores images: the likelihood it uses (if any), its importance samples per image
/// (0 when it draws none) and how many images it scores at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreSetup {
    pub likelihood: Option<Likelihood>,
    pub k: usize,
    pub batch: usize,
    /// Rows decoded at once at most (see [`ScoreOptions::max_rows`]).
    pub max_rows: usize,
}
