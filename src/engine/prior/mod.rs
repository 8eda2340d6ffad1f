//! The latent prior: a small diffusion or flow-matching model over the latents of a trained,
//! frozen VAE or autoencoder. It replaces N(0, I) as the distribution decoded into samples.
//!
//! A VAE's aggregate posterior (the μ of all training images) is not N(0, I): it has holes and
//! denser regions, so decoding N(0, I) draws lands some samples between digits. A plain
//! autoencoder's codes follow no fixed distribution at all. Fitting a denoiser to the encoded
//! training set (μ for a VAE, the code for an AE), standardised per dimension, gives a sampler
//! that draws codes where the data's codes are: noise → the denoiser's sampler → un-standardise
//! → the model's `decode`.
//!
//! It reuses the diffusion family's objectives and samplers ([`schedule`]): DDPM (ε-prediction,
//! cosine schedule, DDIM η = 0 to sample) or flow matching (velocity, Euler). Saved beside the
//! checkpoint as `prior.safetensors` and `prior.json`; a checkpoint without them loads as before.

mod net;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};
use crate::engine::fsio::write_atomic;
use crate::engine::images::ImageBatch;
use crate::engine::kernels::Exec;
use crate::engine::models::diffusion::schedule::{self, CosineSchedule, Objective, TRAIN_STEPS};
use crate::engine::models::layers::{normal_tensor, ParamSet};
use crate::engine::models::optim::{grads_finite, Adam, AdamConfig};
use crate::engine::models::GenerativeModel;
use net::PriorNet;

/// The prior's weights, beside the checkpoint's own.
pub const PRIOR_WEIGHTS: &str = "prior.safetensors";
/// The prior's settings, standardisation and training record.
pub const PRIOR_META: &str = "prior.json";
const FORMAT_VERSION: u32 = 1;
/// Images encoded per call when the training set is encoded.
const ENCODE_CHUNK: usize = 512;
/// A dimension whose codes barely vary (a VAE's inactive unit) is scaled by at least this.
const MIN_STD: f32 = 1e-4;
/// DDIM's x̂₀ is clamped to this many standard deviations of the training latents.
const X0_CLAMP: f32 = 5.0;

/// How the prior is built and trained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorConfig {
    pub objective: Objective,
    /// Width of the MLP's hidden layers.
    pub width: usize,
    /// Residual blocks (two linear layers each).
    pub blocks: usize,
    /// Passes over the encoded training set.
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Sampler steps (DDIM η = 0 for DDPM, Euler for the flow).
    pub sample_steps: usize,
    pub seed: u64,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            objective: Objective::Flow,
            width: 256,
            blocks: 3,
            epochs: 30,
            batch: 256,
            lr: 1e-3,
            sample_steps: 50,
            seed: 0,
        }
    }
}

impl PriorConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Config(format!("latent prior: {m}")));
        if !(1..=4096).contains(&self.width) {
            return bad(format!("width {} must be between 1 and 4096", self.width));
        }
        if self.blocks > 32 {
            return bad(format!("{} blocks: at most 32", self.blocks));
        }
        if self.epochs == 0 || self.batch == 0 {
            return bad("epochs and batch must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if self.sample_steps == 0 || self.sample_steps > schedule::MAX_SAMPLE_STEPS {
            return bad(format!(
                "{} sampling steps: between 1 and {}",
                self.sample_steps,
                schedule::MAX_SAMPLE_STEPS
            ));
        }
        Ok(())
    }
}

/// What `prior.json` holds: the configuration, the per-dimension standardisation and how the
/// training went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorMeta {
    pub format_version: u32,
    pub config: PriorConfig,
    /// D, the model's latent size.
    pub latent_dim: usize,
    /// Per dimension of the encoded training set: mean and standard deviation (`[D]` each).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Training latents the prior was fitted to.
    pub train_latents: usize,
    pub steps: u64,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// Wall time of the training, not counting the encoding.
    pub seconds: f64,
}

/// Where the training has got to; the callback answers whether to go on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorProgress {
    pub epoch: usize,
    pub epochs: usize,
    pub step: u64,
    pub steps: u64,
    /// Mean loss of the epoch so far.
    pub loss: f64,
}

/// A trained latent prior (see the module documentation).
pub struct LatentPrior {
    meta: PriorMeta,
    params: ParamSet,
    net: PriorNet,
    schedule: CosineSchedule,
}

impl LatentPrior {
    /// An untrained prior over `D = mean.len()` dimensions.
    fn new(config: PriorConfig, mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        config.validate()?;
        let dim = mean.len();
        let mut params = ParamSet::new(Exec::cpu());
        let mut rng = StdRng::seed_from_u64(config.seed);
        let net = PriorNet::new(&mut params, dim, config.width, config.blocks, &mut rng)?;
        let meta = PriorMeta {
            format_version: FORMAT_VERSION,
            config,
            latent_dim: dim,
            mean,
            std,
            train_latents: 0,
            steps: 0,
            final_loss: f64::NAN,
            seconds: 0.0,
        };
        Ok(Self { meta, params, net, schedule: CosineSchedule::new(TRAIN_STEPS) })
    }

    pub fn meta(&self) -> &PriorMeta {
        &self.meta
    }

    pub fn param_count(&self) -> usize {
        self.params.count()
    }

    /// Fits a prior to `latents` (`[N, dim]`, row-major, in the model's own units).
    /// `progress` is called after every step; returning `false` cancels (`Ok(None)`).
    pub fn fit(
        config: &PriorConfig,
        latents: &[f32],
        dim: usize,
        progress: &mut dyn FnMut(&PriorProgress) -> bool,
    ) -> Result<Option<Self>> {
        if dim == 0 || latents.is_empty() || !latents.len().is_multiple_of(dim) {
            return Err(EngineError::Other(format!(
                "latent prior: {} values are not whole latents of {dim} dimensions",
                latents.len()
            )));
        }
        let n = latents.len() / dim;
        let (mean, std) = standardisation(latents, dim);
        let mut prior = Self::new(*config, mean, std)?;
        let z: Vec<f32> = latents
            .chunks(dim)
            .flat_map(|row| row.iter().enumerate().map(|(j, v)| (v - prior.meta.mean[j]) / prior.meta.std[j]))
            .collect();
        let t0 = Instant::now();
        let mut adam = Adam::new(AdamConfig { lr: config.lr, ..AdamConfig::default() }, &prior.params)?;
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1));
        let per_epoch = n.div_ceil(config.batch) as u64;
        let steps = per_epoch * config.epochs as u64;
        let mut order: Vec<usize> = (0..n).collect();
        let mut step = 0;
        for epoch in 0..config.epochs {
            order.shuffle(&mut rng);
            let (mut sum, mut count) = (0.0, 0usize);
            for rows in order.chunks(config.batch) {
                let x0: Vec<f32> = rows.iter().flat_map(|&i| &z[i * dim..(i + 1) * dim]).copied().collect();
                let x0 = Tensor::from_vec(x0, (rows.len(), dim), &Device::Cpu)?; // [B, D]
                let loss = prior.loss(&x0, &mut rng)?;
                let value = loss.to_scalar::<f32>()? as f64;
                let grads = prior.params.backward(&loss)?;
                if value.is_finite() && grads_finite(&prior.params, &grads)? {
                    adam.step(&prior.params, &grads)?;
                    sum += value;
                    count += 1;
                }
                step += 1;
                let report = PriorProgress {
                    epoch,
                    epochs: config.epochs,
                    step,
                    steps,
                    loss: sum / count.max(1) as f64,
                };
                if !progress(&report) {
                    return Ok(None);
                }
            }
            prior.meta.final_loss = if count > 0 { sum / count as f64 } else { f64::NAN };
        }
        prior.meta.train_latents = n;
        prior.meta.steps = step;
        prior.meta.seconds = t0.elapsed().as_secs_f64();
        if !prior.meta.final_loss.is_finite() {
            return Err(EngineError::Other(
                "latent prior: the loss diverged (try a lower learning rate)".into(),
            ));
        }
        Ok(Some(prior))
    }

    /// Encodes `images` (`[N, C·H·W]` in [0, 1]) with the frozen `model` and fits a prior to
    /// the codes. An error for a model without an encoder or a conditional one.
    pub fn fit_model(
        config: &PriorConfig,
        model: &dyn GenerativeModel,
        images: &[f32],
        progress: &mut dyn FnMut(&PriorProgress) -> bool,
    ) -> Result<Option<Self>> {
        let latents = encode_latents(model, images)?;
        Self::fit(config, &latents, model.latent_dim(), progress)
    }

    /// The regression loss on standardised latents `x0: [B, D]`: one time and noise per row.
    fn loss(&self, x0: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
        let (b, d) = x0.dims2()?;
        let eps = normal_tensor(b, d, 1.0, rng)?;
        let (xt, target, t) = match self.meta.config.objective {
            Objective::Ddpm => {
                let steps: Vec<usize> = (0..b).map(|_| rng.random_range(1..=TRAIN_STEPS)).collect();
                let ab: Vec<f64> = steps.iter().map(|&t| self.schedule.alpha_bar(t)).collect();
                let t = steps.iter().map(|&t| t as f64 / TRAIN_STEPS as f64).collect();
                (schedule::ddpm_noised(x0, &eps, &ab)?, eps, t)
            }
            Objective::Flow => {
                let t: Vec<f64> = (0..b).map(|_| rng.random_range(0.0..1.0)).collect();
                let (xt, v) = schedule::flow_noised(x0, &eps, &t)?;
                (xt, v, t)
            }
        };
        Ok((self.net.forward(&xt, &t)? - target)?.sqr()?.mean_all()?)
    }

    /// `n` latents drawn from the prior with noise from `seed`, in the model's units: `[n, D]`.
    pub fn sample_latents(&self, n: usize, seed: u64) -> Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = self.meta.latent_dim;
        let noise = normal_tensor(n, d, 1.0, &mut rng)?;
        let cfg = &self.meta.config;
        let mut denoise = |x: &Tensor, t: f64| self.net.forward(x, &vec![t; n]);
        let z = match cfg.objective {
            Objective::Ddpm => ddim_clamped(&self.schedule, &noise, cfg.sample_steps, &mut denoise)?,
            Objective::Flow => schedule::sample_flow(&noise, cfg.sample_steps, false, &mut denoise, None)?,
        };
        let mean = Tensor::from_slice(&self.meta.mean, (1, d), &Device::Cpu)?;
        let std = Tensor::from_slice(&self.meta.std, (1, d), &Device::Cpu)?;
        Ok(z.broadcast_mul(&std)?.broadcast_add(&mean)?)
    }

    /// `n` samples of `model` decoded from prior latents (noise from `seed`).
    pub fn sample_images(&self, model: &dyn GenerativeModel, n: usize, seed: u64) -> Result<ImageBatch> {
        self.check_model(model)?;
        let z = self.sample_latents(n, seed)?;
        ImageBatch::from_tensor(&model.decode(&z)?, model.config().input())
    }

    /// An error unless this prior was fitted to a model of `model`'s latent size.
    pub fn check_model(&self, model: &dyn GenerativeModel) -> Result<()> {
        if model.latent_dim() != self.meta.latent_dim {
            return Err(EngineError::Other(format!(
                "the latent prior is over {} dimensions but the model's latent has {}",
                self.meta.latent_dim,
                model.latent_dim()
            )));
        }
        Ok(())
    }

    /// Writes `prior.safetensors` and `prior.json` into the checkpoint folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let tensors: Vec<(&str, Tensor)> =
            self.params.params.iter().map(|(n, v)| (n.as_str(), v.as_tensor().clone())).collect();
        let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let bytes = safetensors::serialize(views, None).map_err(|e| EngineError::Other(e.to_string()))?;
        let weights = dir.join(PRIOR_WEIGHTS);
        write_atomic(&weights, &bytes).map_err(|e| EngineError::io(&weights, e))?;
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|e| EngineError::Other(e.to_string()))?;
        let meta = dir.join(PRIOR_META);
        write_atomic(&meta, &json).map_err(|e| EngineError::io(&meta, e))?;
        Ok(())
    }

    /// Whether the checkpoint folder `dir` has a prior.
    pub fn exists(dir: &Path) -> bool {
        dir.join(PRIOR_META).is_file()
    }

    /// The prior saved in the checkpoint folder `dir`; `Ok(None)` when it has none. Errors
    /// name the file and what is wrong with it.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let meta_path = dir.join(PRIOR_META);
        if !meta_path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&meta_path).map_err(|e| EngineError::io(&meta_path, e))?;
        let meta: PriorMeta = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::checkpoint(&meta_path, format!("not a latent prior's settings: {e}"))
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(EngineError::checkpoint(
                &meta_path,
                format!("format version {} (this genlab reads {FORMAT_VERSION})", meta.format_version),
            ));
        }
        if meta.latent_dim == 0 || meta.mean.len() != meta.latent_dim || meta.std.len() != meta.latent_dim {
            return Err(EngineError::checkpoint(
                &meta_path,
                format!(
                    "latent_dim {} with {} means and {} standard deviations",
                    meta.latent_dim,
                    meta.mean.len(),
                    meta.std.len()
                ),
            ));
        }
        if meta.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || meta.mean.iter().any(|m| !m.is_finite()) {
            return Err(EngineError::checkpoint(
                &meta_path,
                "a mean or standard deviation is not a positive finite number",
            ));
        }
        let mut prior = Self::new(meta.config, meta.mean.clone(), meta.std.clone())
            .map_err(|e| EngineError::checkpoint(&meta_path, e.to_string()))?;
        prior.meta = meta;
        let weights_path = dir.join(PRIOR_WEIGHTS);
        let bytes = std::fs::read(&weights_path).map_err(|e| EngineError::io(&weights_path, e))?;
        let state: HashMap<String, Tensor> = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| {
                EngineError::checkpoint(&weights_path, format!("not a valid safetensors file: {e}"))
            })?;
        for (name, var) in &prior.params.params {
            let Some(t) = state.get(name) else {
                return Err(EngineError::checkpoint(&weights_path, format!("no tensor `{name}`")));
            };
            if t.dims() != var.dims() {
                return Err(EngineError::checkpoint(
                    &weights_path,
                    format!(
                        "`{name}` has shape {:?} but prior.json's settings give {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(Some(prior))
    }
}

/// μ of every image (the code of an autoencoder) under the frozen `model`: `images` `[N, C·H·W]`
/// in [0, 1] → `[N, latent]` row-major. An error for a model without an encoder or a
/// conditional one (whose latents mean something only beside a label).
pub fn encode_latents(model: &dyn GenerativeModel, images: &[f32]) -> Result<Vec<f32>> {
    let caps = model.capabilities();
    if !caps.encoder {
        return Err(EngineError::Other(format!(
            "a latent prior needs a model with an encoder; a {} has none",
            model.config().family()
        )));
    }
    if model.classes() > 0 {
        return Err(EngineError::Other("a latent prior for a conditional model is not supported".into()));
    }
    let d = model.config().input().len();
    if d == 0 || images.is_empty() || !images.len().is_multiple_of(d) {
        return Err(EngineError::Other(format!(
            "{} values are not whole images of {d} values",
            images.len()
        )));
    }
    let mut out = Vec::with_capacity(images.len() / d * model.latent_dim());
    for chunk in images.chunks(ENCODE_CHUNK * d) {
        let x = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
        let Some((mu, _)) = model.encode(&x)? else {
            return Err(EngineError::Other("the model returned no encoding".into()));
        };
        out.extend(mu.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Deterministic DDIM (η = 0) from `x_t: [B, D]` with x̂₀ clamped to ±[`X0_CLAMP`] standard
/// deviations. [`schedule::sample_ddim`] clamps to the pixels' [−1, 1] or not at all, and
/// unclamped the first step divides by √ᾱ_T ≈ 10⁻⁴: the denoiser's error at pure noise,
/// amplified ~300× into x_prev, threw the samples of a four-mode test far off every mode.
fn ddim_clamped(
    sched: &CosineSchedule,
    x_t: &Tensor,
    steps: usize,
    eps_of: &mut dyn FnMut(&Tensor, f64) -> Result<Tensor>,
) -> Result<Tensor> {
    let ts = sched.respaced(steps);
    let big_t = sched.steps() as f64;
    let mut x = x_t.clone();
    for (i, &t) in ts.iter().enumerate() {
        let (ab_t, ab_prev) = (sched.alpha_bar(t), sched.alpha_bar(ts.get(i + 1).copied().unwrap_or(0)));
        let eps_hat = eps_of(&x, t as f64 / big_t)?;
        let x0 = ((&x - (eps_hat * (1.0 - ab_t).sqrt())?)? / ab_t.sqrt())?.clamp(-X0_CLAMP, X0_CLAMP)?;
        // The noise consistent with the clamped x̂₀, so the path stays on it.
        let eps = ((&x - (&x0 * ab_t.sqrt())?)? / (1.0 - ab_t).sqrt())?;
        x = ((x0 * ab_prev.sqrt())? + (eps * (1.0 - ab_prev).sqrt())?)?;
    }
    Ok(x)
}

/// Per-dimension mean and standard deviation of `[N, dim]` rows (the deviation at least
/// [`MIN_STD`]).
fn standardisation(latents: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (latents.len() / dim) as f64;
    let mut mean = vec![0f64; dim];
    for row in latents.chunks(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64 / n;
        }
    }
    let mut var = vec![0f64; dim];
    for row in latents.chunks(dim) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (*v as f64 - m).powi(2) / n;
        }
    }
    (mean.iter().map(|&m| m as f32).collect(), var.iter().map(|&v| (v.sqrt() as f32).max(MIN_STD)).collect())
}
