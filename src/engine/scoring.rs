//! Density estimates and outlier scores: how well a trained model explains each image.
//!
//! Per image, by family:
//! - **Autoencoder**: the reconstruction error, exactly the training loss's per-image value
//!   (BCE summed over pixels, or ‖x − x̂‖²). Not a density.
//! - **VAE / β-VAE**: −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z)) with β = 1 whatever β the
//!   model was trained with (only β = 1 makes it a bound on −log p(x)), and the
//!   importance-weighted estimate (IWAE) of −log p(x) from K draws z_k ~ q(z|x):
//!   log p̂(x) = logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K.
//!   Its expectation is a lower bound on log p(x) that tightens as K grows (Burda et al. 2016).
//!   Reported in nats and in bits per dimension (nats / (D · ln 2)).
//! - **GAN**: the discriminator's logit (higher = judged more "real"). Nothing more is claimed:
//!   a discriminator is not a density and is often a poor outlier detector.
//!
//! The likelihood p(x|z) matches the training loss ([`Likelihood`]). Anomaly scores are
//! oriented so that higher = more anomalous ([`SampleScore::anomaly`]); [`auroc`] and
//! [`roc_curve`] compare two sets of them, and [`hold_out_classes`] runs the classic
//! "train on some classes, flag the others" experiment end to end.

use std::f64::consts::{LN_2, PI};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::data::{convert_image, Dataset, ImageShape, SplitKind};
use super::error::{EngineError, Result};
use super::fsio::write_atomic;
use super::models::{Family, GenerativeModel, ReconLoss};
use super::session::TrainingSession;

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
    /// KL(q(z|x) ‖ N(0, I)) in nats (VAE).
    pub kl: Option<f64>,
    /// −ELBO = recon + KL in nats (β = 1) (VAE).
    pub neg_elbo: Option<f64>,
    /// The IWAE estimate of −log p(x) in nats (VAE).
    pub neg_log_px: Option<f64>,
    /// `neg_log_px` / (D ln 2).
    pub bits_per_dim: Option<f64>,
    /// The discriminator's logit (GAN).
    pub disc_logit: Option<f64>,
}

impl SampleScore {
    fn new(index: usize, label: Option<u32>) -> Self {
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

    /// Higher = more anomalous: −log p̂(x) (VAE), the reconstruction error (AE), or minus the
    /// discriminator's logit (GAN).
    pub fn anomaly(&self) -> f64 {
        self.neg_log_px.or(self.recon).or(self.disc_logit.map(|l| -l)).unwrap_or(f64::NAN)
    }
}

/// Which per-image score ranks images as anomalous (higher = more anomalous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyScore {
    /// The IWAE estimate of −log p(x) in nats (VAE).
    NegLogPx,
    /// −ELBO in nats (VAE): a bound, looser than the IWAE estimate.
    NegElbo,
    /// The IWAE estimate of −log p(x) in bits per dimension (VAE).
    BitsPerDim,
    /// The reconstruction error (AE), or E_q[−log p(x|z)] (VAE).
    Recon,
    /// Minus the discriminator's logit (GAN).
    NegDiscLogit,
}

impl AnomalyScore {
    /// The scores `family` produces, its default ([`SampleScore::anomaly`]) first.
    pub fn for_family(family: Family) -> &'static [AnomalyScore] {
        use AnomalyScore::*;
        match family {
            Family::Vae | Family::BetaVae => &[NegLogPx, NegElbo, BitsPerDim, Recon],
            Family::Autoencoder => &[Recon],
            Family::Gan => &[NegDiscLogit],
        }
    }

    /// What [`SampleScore::anomaly`] measures for `family`.
    pub fn default_for(family: Family) -> Self {
        Self::for_family(family)[0]
    }

    /// This score of one image; NaN when it was not computed.
    pub fn of(self, s: &SampleScore) -> f64 {
        let v = match self {
            AnomalyScore::NegLogPx => s.neg_log_px,
            AnomalyScore::NegElbo => s.neg_elbo,
            AnomalyScore::BitsPerDim => s.bits_per_dim,
            AnomalyScore::Recon => s.recon,
            AnomalyScore::NegDiscLogit => s.disc_logit.map(|l| -l),
        };
        v.unwrap_or(f64::NAN)
    }

    /// Its name for people, with its unit.
    pub fn label(self) -> &'static str {
        match self {
            AnomalyScore::NegLogPx => "−log p(x) (IWAE, nats)",
            AnomalyScore::NegElbo => "−ELBO (nats)",
            AnomalyScore::BitsPerDim => "bits/dim (IWAE)",
            AnomalyScore::Recon => "reconstruction error",
            AnomalyScore::NegDiscLogit => "−discriminator logit",
        }
    }

    /// Its report column name (the names of [`SampleScore::columns`]; the GAN's is negated).
    pub fn column(self) -> &'static str {
        match self {
            AnomalyScore::NegLogPx => "iwae_nats",
            AnomalyScore::NegElbo => "elbo_nats",
            AnomalyScore::BitsPerDim => "bits_per_dim",
            AnomalyScore::Recon => "recon",
            AnomalyScore::NegDiscLogit => "-disc_logit",
        }
    }
}

/// Mean and standard error of the mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation / √n (0 for a single value).
    pub stderr: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let stderr = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Some(Stat { mean, stderr })
    }
}

/// The scores of a set of images under one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredSet {
    pub family: Family,
    /// The likelihood used (AE and VAE).
    pub likelihood: Option<Likelihood>,
    /// Importance samples per image (VAE), else 0.
    pub k: usize,
    /// Values per image (D).
    pub dims: usize,
    /// Set when the images were converted to the model's shape: says from what.
    pub notice: Option<String>,
    pub samples: Vec<SampleScore>,
}

impl ScoredSet {
    /// Mean and standard error of every score, by report name.
    pub fn summary(&self) -> Vec<(&'static str, Stat)> {
        let Some(first) = self.samples.first() else { return Vec::new() };
        first
            .columns()
            .into_iter()
            .filter_map(|(name, _)| {
                let v: Vec<f64> = self
                    .samples
                    .iter()
                    .filter_map(|s| s.columns().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v))
                    .collect();
                Stat::of(&v).map(|s| (name, s))
            })
            .collect()
    }

    /// One anomaly score per image (higher = more anomalous); see [`SampleScore::anomaly`].
    pub fn anomaly_scores(&self) -> Vec<f64> {
        self.samples.iter().map(SampleScore::anomaly).collect()
    }

    /// What [`ScoredSet::anomaly_scores`] measures for this family.
    pub fn anomaly_name(&self) -> &'static str {
        AnomalyScore::default_for(self.family).column()
    }

    /// One value of `score` per image (NaN where it was not computed).
    pub fn scores(&self, score: AnomalyScore) -> Vec<f64> {
        self.samples.iter().map(|s| score.of(s)).collect()
    }
}

/// Scores the images of `data` at `indices`. Images of another shape than the model's are
/// converted as [`Dataset::converted_to`] would (the result's `notice` says so).
/// `progress(done, total)` is called after each batch; returning `false` cancels, and the
/// function then returns `Ok(None)`.
pub fn score_indices(
    model: &dyn GenerativeModel,
    data: &Dataset,
    indices: &[usize],
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<ScoredSet>> {
    super::session::tune_allocator();
    let cfg = model.config();
    let shape = cfg.input;
    let d = shape.len();
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(EngineError::Other(format!("image {bad} is out of range ({} images)", data.len())));
    }
    let notice = (data.shape != shape)
        .then(|| format!("converting {} images of {} to the model's {}", indices.len(), data.shape, shape));
    let variational = cfg.family.is_variational();
    let k = if variational { opts.k } else { 0 };
    if variational && k == 0 {
        return Err(EngineError::Config("K (importance samples) must be at least 1".into()));
    }
    let likelihood = match cfg.family {
        Family::Gan => None,
        Family::Autoencoder => Some(Likelihood::for_loss(cfg.recon_loss, false)),
        _ => Some(Likelihood::for_loss(cfg.recon_loss, opts.continuous_bernoulli)),
    };
    let batch = if variational { (opts.max_rows / k).clamp(1, 256) } else { 256 };
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(0x5c0e));
    let mut samples = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch) {
        let x = gather_as(data, chunk, shape);
        let xt = Tensor::from_slice(&x, (chunk.len(), d), &Device::Cpu)?;
        let mut out: Vec<SampleScore> = chunk
            .iter()
            .map(|&i| SampleScore::new(i, data.labels.as_ref().and_then(|l| l.get(i).copied())))
            .collect();
        match cfg.family {
            Family::Gan => {
                let logits = model
                    .discriminate(&xt)?
                    .ok_or_else(|| EngineError::Other("the GAN has no discriminator".into()))?;
                for (s, l) in out.iter_mut().zip(logits.flatten_all()?.to_vec1::<f32>()?) {
                    s.disc_logit = Some(l as f64);
                }
            }
            Family::Autoencoder => {
                let (mu, _) = encode(model, &xt)?;
                let logits = model.decode_logits(&mu)?.flatten_all()?.to_vec1::<f32>()?;
                for (i, s) in out.iter_mut().enumerate() {
                    let row = i * d..(i + 1) * d;
                    s.recon = Some(recon_error(cfg.recon_loss, &x[row.clone()], &logits[row]));
                }
            }
            Family::Vae | Family::BetaVae => {
                let lik = likelihood.unwrap_or(Likelihood::Bernoulli);
                let (mu, logvar) = encode(model, &xt)?;
                let latent = model.latent_dim();
                let mu = mu.flatten_all()?.to_vec1::<f32>()?;
                let logvar = logvar.flatten_all()?.to_vec1::<f32>()?;
                let iw =
                    importance_weighted(&mu, &logvar, latent, k, opts.max_rows, &mut rng, |items, z| {
                        let zt = Tensor::from_slice(z, (items.len(), latent), &Device::Cpu)?;
                        let logits = model.decode_logits(&zt)?.flatten_all()?.to_vec1::<f32>()?; // [rows·D]
                        Ok(items
                            .par_iter()
                            .zip(logits.par_chunks(d))
                            .map(|(&i, l)| lik.log_prob(&x[i * d..(i + 1) * d], l))
                            .collect())
                    })?;
                for (i, (s, e)) in out.iter_mut().zip(iw).enumerate() {
                    let kl = kl_row(&mu[i * latent..(i + 1) * latent], &logvar[i * latent..(i + 1) * latent]);
                    s.recon = Some(-e.mean_log_lik);
                    s.kl = Some(kl);
                    s.neg_elbo = Some(-e.mean_log_lik + kl);
                    s.neg_log_px = Some(-e.log_px);
                    s.bits_per_dim = Some(-e.log_px / (d as f64 * LN_2));
                }
            }
        }
        samples.extend(out);
        if !progress(samples.len(), indices.len()) {
            return Ok(None);
        }
    }
    Ok(Some(ScoredSet { family: cfg.family, likelihood, k, dims: d, notice, samples }))
}

/// Scores a whole dataset (every image), converting it to the model's shape if needed.
pub fn score_dataset(
    model: &dyn GenerativeModel,
    data: &Dataset,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<ScoredSet>> {
    let all: Vec<usize> = (0..data.len()).collect();
    score_indices(model, data, &all, opts, progress)
}

fn encode(model: &dyn GenerativeModel, x: &Tensor) -> Result<(Tensor, Tensor)> {
    model.encode(x)?.ok_or_else(|| EngineError::Other("this model has no encoder".into()))
}

/// KL(N(μ, σ²) ‖ N(0, I)) in f64 for one row.
fn kl_row(mu: &[f32], logvar: &[f32]) -> f64 {
    mu.iter()
        .zip(logvar)
        .map(|(&m, &lv)| {
            let (m, lv) = (m as f64, lv as f64);
            0.5 * (lv.exp() + m * m - 1.0 - lv)
        })
        .sum()
}

/// The images at `indices`, converted to `shape` when the dataset's differs.
fn gather_as(data: &Dataset, indices: &[usize], shape: ImageShape) -> Vec<f32> {
    if data.shape == shape {
        return data.gather(indices);
    }
    let mut out = Vec::with_capacity(indices.len() * shape.len());
    for &i in indices {
        out.extend(convert_image(data.image(i), data.shape, shape));
    }
    out
}

/// Area under the ROC curve for telling `outliers` from `inliers` by anomaly score (higher =
/// more anomalous): the Mann-Whitney probability that a random outlier scores above a random
/// inlier, ties counted as ½. `None` when either set is empty. NaN scores sort above +∞.
pub fn auroc(inliers: &[f64], outliers: &[f64]) -> Option<f64> {
    if inliers.is_empty() || outliers.is_empty() {
        return None;
    }
    let mut u = 0.0f64;
    let mut inliers_below = 0usize;
    for (a, b) in tie_groups(inliers, outliers, false) {
        u += b as f64 * (inliers_below as f64 + 0.5 * a as f64);
        inliers_below += a;
    }
    Some(u / (inliers.len() as f64 * outliers.len() as f64))
}

/// One point of a ROC curve: flagging every score ≥ `threshold` gives these rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Share of inliers flagged.
    pub fpr: f64,
    /// Share of outliers flagged.
    pub tpr: f64,
    pub threshold: f64,
}

/// The ROC curve from (0, 0) (threshold +∞) to (1, 1), one point per distinct score. Tied
/// scores move both rates at once, so the trapezoid area under the points equals [`auroc`].
pub fn roc_curve(inliers: &[f64], outliers: &[f64]) -> Vec<RocPoint> {
    if inliers.is_empty() || outliers.is_empty() {
        return Vec::new();
    }
    let (ni, no) = (inliers.len() as f64, outliers.len() as f64);
    let mut points = vec![RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::INFINITY }];
    let (mut fp, mut tp) = (0usize, 0usize);
    let mut values = inliers.iter().chain(outliers).copied().collect::<Vec<_>>();
    values.sort_by(|a, b| b.total_cmp(a));
    values.dedup_by(|a, b| a.total_cmp(b).is_eq());
    for ((a, b), threshold) in tie_groups(inliers, outliers, true).into_iter().zip(values) {
        fp += a;
        tp += b;
        points.push(RocPoint { fpr: fp as f64 / ni, tpr: tp as f64 / no, threshold });
    }
    points
}

/// Counts of (inliers, outliers) per distinct score, ascending (or descending).
fn tie_groups(inliers: &[f64], outliers: &[f64], descending: bool) -> Vec<(usize, usize)> {
    let mut all: Vec<(f64, bool)> =
        inliers.iter().map(|&v| (v, false)).chain(outliers.iter().map(|&v| (v, true))).collect();
    all.sort_by(|a, b| if descending { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) });
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut prev: Option<f64> = None;
    for (v, is_out) in all {
        if prev.is_none_or(|p| p.total_cmp(&v).is_ne()) {
            groups.push((0, 0));
            prev = Some(v);
        }
        if let Some(g) = groups.last_mut() {
            if is_out {
                g.1 += 1;
            } else {
                g.0 += 1;
            }
        }
    }
    groups
}

/// Writes one CSV row per image: `index,label,set,<scores…>,anomaly`, for each named set.
pub fn write_per_sample_csv(path: &std::path::Path, sets: &[(&str, &ScoredSet)]) -> Result<()> {
    let columns: Vec<&'static str> = sets
        .iter()
        .find_map(|(_, s)| s.samples.first())
        .map(|s| s.columns().into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    let mut out = String::from("index,label,set");
    for c in &columns {
        out.push(',');
        out.push_str(c);
    }
    out.push_str(",anomaly\n");
    for (name, set) in sets {
        let name = name.replace([',', '"', '\n', '\r'], "_");
        for s in &set.samples {
            let label = s.label.map(|l| l.to_string()).unwrap_or_default();
            out.push_str(&format!("{},{label},{name}", s.index));
            let vals = s.columns();
            for c in &columns {
                out.push(',');
                if let Some((_, v)) = vals.iter().find(|(n, _)| n == c) {
                    out.push_str(&v.to_string());
                }
            }
            out.push_str(&format!(",{}\n", s.anomaly()));
        }
    }
    write_atomic(path, out.as_bytes()).map_err(|e| EngineError::io(path, e))
}

/// The outcome of [`hold_out_classes`].
#[derive(Clone, Debug, PartialEq)]
pub struct HoldOutReport {
    /// The labels trained on; every other label is an anomaly.
    pub inlier_labels: Vec<u32>,
    /// Training images after filtering.
    pub train_images: usize,
    pub steps: u64,
    /// The mean training loss over the last epoch that finished (or the last step).
    pub final_loss: f64,
    /// Scores of the whole test split (labels included).
    pub scores: ScoredSet,
    /// Inliers (test images with a chosen label) against all the others.
    pub auroc: f64,
    pub roc: Vec<RocPoint>,
    /// Each held-out label against the inliers, ascending by label.
    pub per_class_auroc: Vec<(u32, f64)>,
}

/// The hold-out-classes experiment: trains `config` on the training-split images whose label
/// is in `inlier_labels`, scores the whole test split, and measures how well the anomaly score
/// flags the test images of the other labels (AUROC).
///
/// `steps` = 0 trains for the configuration's epochs. `progress(done, total)` counts training
/// steps then scored test images; returning `false` cancels (`Ok(None)`).
pub fn hold_out_classes(
    config: RunConfig,
    data: &Dataset,
    inlier_labels: &[u32],
    steps: u64,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<HoldOutReport>> {
    let labels = data
        .labels
        .as_ref()
        .ok_or_else(|| EngineError::Config(format!("{} has no labels to hold out", data.name)))?;
    if inlier_labels.is_empty() {
        return Err(EngineError::Config("choose at least one label to train on".into()));
    }
    let is_inlier = |i: usize| labels.get(i).is_some_and(|l| inlier_labels.contains(l));
    let split = data.split(config.train.test_fraction, config.train.seed);
    let train: Vec<usize> = split.train.iter().copied().filter(|&i| is_inlier(i)).collect();
    if train.is_empty() {
        return Err(EngineError::Config("no training image has a chosen label".into()));
    }
    let test = split.get(SplitKind::Test);
    let n_in = test.iter().filter(|&&i| is_inlier(i)).count();
    if n_in == 0 || n_in == test.len() {
        return Err(EngineError::Config(format!(
            "the test split needs images with and without the chosen labels ({n_in} of {} have them)",
            test.len()
        )));
    }

    // All the chosen training images form the training split; there is no test split to
    // evaluate per epoch (the scoring below is the evaluation).
    let mut subset = Dataset::new(
        format!("{} (labels {inlier_labels:?})", data.name),
        data.source.clone(),
        data.shape,
        data.gather(&train),
        Some(data.gather_labels(&train)),
    )
    .map_err(EngineError::Other)?;
    subset.class_names = data.class_names.clone();
    subset.fixed_split = Some(train.len());
    let mut session = TrainingSession::new(config, Arc::new(subset))?;
    let steps = if steps == 0 { session.total_steps() } else { steps };
    let total = steps as usize + test.len();
    let mut final_loss = f64::NAN;
    while session.step_count() < steps && !session.is_finished() {
        let r = session.step()?;
        final_loss = r.epoch_end.as_ref().map_or(r.losses.loss, |e| e.train.loss);
        if !progress(r.step as usize, total) {
            return Ok(None);
        }
    }
    let done = session.step_count() as usize;
    let Some(scores) =
        score_indices(session.model(), data, test, opts, &mut |d, _| progress(done + d, total))?
    else {
        return Ok(None);
    };
    let HoldOutAuroc { auroc, roc, per_class_auroc } =
        hold_out_auroc(&scores, inlier_labels, AnomalyScore::default_for(scores.family));
    Ok(Some(HoldOutReport {
        inlier_labels: inlier_labels.to_vec(),
        train_images: train.len(),
        steps: session.step_count(),
        final_loss,
        scores,
        auroc,
        roc,
        per_class_auroc,
    }))
}

/// How well one score flags the held-out labels of a scored test set.
#[derive(Clone, Debug, PartialEq)]
pub struct HoldOutAuroc {
    /// Inliers (images with a chosen label) against all the others; NaN if either is empty.
    pub auroc: f64,
    pub roc: Vec<RocPoint>,
    /// Each held-out label against the inliers, ascending by label.
    pub per_class_auroc: Vec<(u32, f64)>,
}

/// The AUROC of the hold-out experiment from its scores, by `score`.
pub fn hold_out_auroc(scores: &ScoredSet, inlier_labels: &[u32], score: AnomalyScore) -> HoldOutAuroc {
    let (mut inl, mut out) = (Vec::new(), Vec::new());
    for s in &scores.samples {
        if s.label.is_some_and(|l| inlier_labels.contains(&l)) {
            inl.push(score.of(s));
        } else {
            out.push(score.of(s));
        }
    }
    let roc = roc_curve(&inl, &out);
    let mut held: Vec<u32> =
        scores.samples.iter().filter_map(|s| s.label).filter(|l| !inlier_labels.contains(l)).collect();
    held.sort_unstable();
    held.dedup();
    let per_class_auroc = held
        .into_iter()
        .filter_map(|c| {
            let o: Vec<f64> =
                scores.samples.iter().filter(|s| s.label == Some(c)).map(|s| score.of(s)).collect();
            auroc(&inl, &o).map(|a| (c, a))
        })
        .collect();
    HoldOutAuroc { auroc: auroc(&inl, &out).unwrap_or(f64::NAN), roc, per_class_auroc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_familys_default_score_is_its_anomaly() {
        let mut s = SampleScore::new(0, None);
        s.disc_logit = Some(2.0);
        assert_eq!(AnomalyScore::default_for(Family::Gan).of(&s), s.anomaly());
        s.recon = Some(5.0);
        assert_eq!(AnomalyScore::default_for(Family::Autoencoder).of(&s), s.anomaly());
        (s.neg_log_px, s.neg_elbo, s.bits_per_dim) = (Some(7.0), Some(8.0), Some(0.1));
        assert_eq!(AnomalyScore::default_for(Family::Vae).of(&s), s.anomaly());
        assert_eq!(AnomalyScore::NegElbo.of(&s), 8.0);
        assert_eq!(AnomalyScore::NegDiscLogit.of(&s), -2.0);
        assert!(AnomalyScore::NegLogPx.of(&SampleScore::new(1, None)).is_nan());
        assert_eq!(AnomalyScore::for_family(Family::BetaVae).len(), 4);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[-1000.0, -1000.0]) - (-1000.0 + LN_2)).abs() < 1e-12);
        assert!((log_sum_exp(&[800.0, 0.0]) - 800.0).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }

    #[test]
    fn stat_matches_hand_computation() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        // sample variance 5/3, se = sqrt(5/3 / 4)
        assert!((s.stderr - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[7.0]).unwrap().stderr, 0.0);
        assert!(Stat::of(&[]).is_none());
    }
}
