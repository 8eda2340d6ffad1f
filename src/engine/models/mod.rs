//! Models: a serde [`ModelConfig`] (with named presets) → a [`GenerativeModel`].
//!
//! Families: autoencoder, VAE, β-VAE ([`vae`]) and GAN ([`gan`]), each as an MLP or a
//! DCGAN-style convolutional net. Every model works on flattened images `[B, C·H·W]` in [0, 1]
//! and reports its losses per image in nats.

pub mod gan;
pub mod layers;
pub mod losses;
pub mod optim;
pub mod vae;

use std::collections::HashMap;
use std::fmt;

use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use optim::AdamConfig;

use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};

/// The kind of generative model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Deterministic encoder and decoder; loss = reconstruction.
    Autoencoder,
    /// Loss = reconstruction + KL(q(z|x) ‖ N(0, I)).
    Vae,
    /// A VAE whose KL term is weighted by β.
    BetaVae,
    /// Generator against discriminator.
    Gan,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Autoencoder, Family::Vae, Family::BetaVae, Family::Gan];

    pub fn label(&self) -> &'static str {
        match self {
            Family::Autoencoder => "Autoencoder",
            Family::Vae => "VAE",
            Family::BetaVae => "β-VAE",
            Family::Gan => "GAN",
        }
    }

    pub fn is_variational(&self) -> bool {
        matches!(self, Family::Vae | Family::BetaVae)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Network shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Mlp,
    Conv,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Mlp => "MLP",
            Arch::Conv => "Conv",
        })
    }
}

/// Hidden-layer non-linearity (LeakyReLU has slope 0.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Relu,
    LeakyRelu,
    Tanh,
    Gelu,
    Silu,
}

impl Activation {
    pub const ALL: [Activation; 5] =
        [Activation::Relu, Activation::LeakyRelu, Activation::Tanh, Activation::Gelu, Activation::Silu];

    pub fn label(&self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::LeakyRelu => "LeakyReLU(0.2)",
            Activation::Tanh => "Tanh",
            Activation::Gelu => "GELU",
            Activation::Silu => "SiLU",
        }
    }
}

/// Reconstruction loss: Bernoulli cross-entropy on grey levels, or squared error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconLoss {
    Bce,
    Mse,
}

/// The generator's loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// −log D(G(z)): strong gradients early on (the default).
    NonSaturating,
    /// log(1 − D(G(z))): the original minimax objective.
    Minimax,
}

/// Everything that decides a model's structure and loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub family: Family,
    pub arch: Arch,
    /// The image shape the model reads and writes.
    pub input: ImageShape,
    /// MLP: encoder widths (the decoder mirrors them) or generator widths (from the noise
    /// outwards). Conv: encoder / discriminator channels per stride-2 layer.
    pub hidden: Vec<usize>,
    /// GAN discriminator: MLP widths from the image inwards (conv uses `hidden`).
    pub disc_hidden: Vec<usize>,
    /// Latent size (VAE / AE) or noise size (GAN).
    pub latent_dim: usize,
    pub activation: Activation,
    pub recon_loss: ReconLoss,
    /// Weight of the KL term (β-VAE; a plain VAE always uses 1).
    pub beta: f64,
    pub gan_loss: GanLoss,
    /// Batch norm in conv GANs (DCGAN).
    pub batch_norm: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            family: Family::Vae,
            arch: Arch::Mlp,
            input: ImageShape::new(1, 28, 28),
            hidden: vec![400],
            disc_hidden: vec![512, 256],
            latent_dim: 20,
            activation: Activation::Relu,
            recon_loss: ReconLoss::Bce,
            beta: 1.0,
            gan_loss: GanLoss::NonSaturating,
            batch_norm: false,
        }
    }
}

impl ModelConfig {
    /// The KL weight in force: β for a β-VAE, 1 for a VAE, 0 otherwise.
    pub fn effective_beta(&self) -> f64 {
        match self.family {
            Family::Vae => 1.0,
            Family::BetaVae => self.beta,
            _ => 0.0,
        }
    }

    /// Checks the configuration; the message names the setting and says why.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(EngineError::Config(m));
        if self.input.is_empty() {
            return err(format!("input shape {} has no pixels", self.input));
        }
        if self.latent_dim == 0 {
            return err("latent dim must be at least 1".into());
        }
        if self.latent_dim > 4096 {
            return err(format!("latent dim {} is over 4096", self.latent_dim));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return err(format!("layer {} has width 0; every layer needs at least 1 unit", i + 1));
        }
        if let Some(i) = self.disc_hidden.iter().position(|&w| w == 0) {
            return err(format!("discriminator layer {} has width 0", i + 1));
        }
        if let Some(&w) = self.hidden.iter().chain(&self.disc_hidden).find(|&&w| w > 16384) {
            return err(format!("a layer of width {w} is over the limit of 16384"));
        }
        if self.family == Family::BetaVae && !(self.beta.is_finite() && self.beta >= 0.0) {
            return err(format!("β must be a finite number ≥ 0 (got {})", self.beta));
        }
        if self.arch == Arch::Conv {
            let k = self.hidden.len();
            if k == 0 {
                return err("a conv net needs at least one conv layer".into());
            }
            if k > 6 {
                return err(format!("{k} conv layers: at most 6"));
            }
            let s = 1usize << k;
            if !self.input.height.is_multiple_of(s) || !self.input.width.is_multiple_of(s) {
                return err(format!(
                    "a conv net with {k} stride-2 layers needs height and width divisible by {s}; the images are {}×{}",
                    self.input.height, self.input.width
                ));
            }
        }
        if self.family == Family::Gan && self.arch == Arch::Mlp && self.disc_hidden.is_empty() {
            return err("the discriminator needs at least one hidden layer".into());
        }
        let params = self.param_count_from_shapes();
        if params > MAX_PARAMS {
            return err(format!(
                "the model would have {params} parameters, over the limit of {MAX_PARAMS} (fewer or narrower layers, or smaller images)"
            ));
        }
        Ok(())
    }

    /// Number of trainable parameters, computed from the layer shapes without building the
    /// model (saturating, so any configuration gives an answer).
    pub fn param_count_from_shapes(&self) -> u64 {
        let mul = |a: usize, b: usize| (a as u64).saturating_mul(b as u64);
        // A linear layer: weights and biases.
        let linear = |fan_in: usize, fan_out: usize| mul(fan_in, fan_out).saturating_add(fan_out as u64);
        // A 4×4 (transposed) convolution with biases, and batch norm's γ and β.
        let conv = |cin: usize, cout: usize| mul(cin, cout).saturating_mul(16).saturating_add(cout as u64);
        let bn = |c: usize| 2 * c as u64;
        let chain = |from: usize, widths: &[usize]| {
            let mut total = 0u64;
            let mut fan_in = from;
            for &w in widths {
                total = total.saturating_add(linear(fan_in, w));
                fan_in = w;
            }
            total
        };
        let (input, l) = (self.input, self.latent_dim);
        let d = input.len();
        let k = self.hidden.len().min(usize::BITS as usize - 1);
        let (h, w) = (input.height >> k, input.width >> k);
        // Image → features, and the feature count.
        let trunk = |widths: &[usize], batch_norm: bool| -> (u64, usize) {
            match self.arch {
                Arch::Mlp => (chain(d, widths), widths.last().copied().unwrap_or(d)),
                Arch::Conv => {
                    let mut total = 0u64;
                    let mut cin = input.channels;
                    for (i, &c) in widths.iter().enumerate() {
                        total = total.saturating_add(conv(cin, c));
                        if batch_norm && i > 0 {
                            total = total.saturating_add(bn(c));
                        }
                        cin = c;
                    }
                    let feat = widths.last().map_or(d, |&c| c.saturating_mul(h).saturating_mul(w));
                    (total, feat)
                }
            }
        };
        // Latent → image, through `widths` (from the latent side outwards).
        let expand = |widths: &[usize], batch_norm: bool| -> u64 {
            match self.arch {
                Arch::Mlp => {
                    let outs: Vec<usize> = widths.iter().copied().chain([d]).collect();
                    chain(l, &outs)
                }
                Arch::Conv => {
                    let c0 = widths.first().copied().unwrap_or(input.channels);
                    let start = c0.saturating_mul(h).saturating_mul(w);
                    let mut total = linear(l, start);
                    if batch_norm {
                        total = total.saturating_add(bn(c0));
                    }
                    let outs: Vec<usize> = widths.iter().skip(1).copied().chain([input.channels]).collect();
                    let mut cin = c0;
                    for (i, &c) in outs.iter().enumerate() {
                        total = total.saturating_add(conv(cin, c));
                        if batch_norm && i + 1 < outs.len() {
                            total = total.saturating_add(bn(c));
                        }
                        cin = c;
                    }
                    total
                }
            }
        };
        let reversed: Vec<usize> = self.hidden.iter().rev().copied().collect();
        match self.family {
            Family::Gan => {
                let batch_norm = self.batch_norm && self.arch == Arch::Conv;
                let (g_widths, d_widths) = match self.arch {
                    Arch::Mlp => (self.hidden.as_slice(), self.disc_hidden.as_slice()),
                    Arch::Conv => (reversed.as_slice(), self.hidden.as_slice()),
                };
                let (d_trunk, feat) = trunk(d_widths, batch_norm);
                expand(g_widths, batch_norm).saturating_add(d_trunk).saturating_add(linear(feat, 1))
            }
            family => {
                let (enc, feat) = trunk(&self.hidden, false);
                let heads = if family.is_variational() { 2 } else { 1 };
                enc.saturating_add(linear(feat, l).saturating_mul(heads))
                    .saturating_add(expand(&reversed, false))
            }
        }
    }

    /// Number of trainable parameters (counted by building the model once).
    pub fn param_count(&self) -> Result<usize> {
        let m = build_model(self, &AdamConfig::default(), 0)?;
        Ok(m.param_count())
    }

    /// Multiply-adds of one forward pass for one image, counted from the layer shapes
    /// (×2 for FLOPs; a training step is about three times a forward pass).
    pub fn forward_macs(&self) -> u64 {
        let mlp = |dims: &[usize]| dims.windows(2).map(|w| (w[0] * w[1]) as u64).sum::<u64>();
        let d = self.input.len();
        let l = self.latent_dim;
        match (self.family, self.arch) {
            (Family::Gan, Arch::Mlp) => {
                let g: Vec<usize> =
                    std::iter::once(l).chain(self.hidden.iter().copied()).chain([d]).collect();
                let dd: Vec<usize> =
                    std::iter::once(d).chain(self.disc_hidden.iter().copied()).chain([1]).collect();
                mlp(&g) + mlp(&dd)
            }
            (_, Arch::Mlp) => {
                let enc: Vec<usize> = std::iter::once(d).chain(self.hidden.iter().copied()).collect();
                let last = *enc.last().unwrap_or(&d);
                let heads = if self.family.is_variational() { 2 } else { 1 } * (last * l) as u64;
                let dec: Vec<usize> =
                    std::iter::once(l).chain(self.hidden.iter().rev().copied()).chain([d]).collect();
                mlp(&enc) + heads + mlp(&dec)
            }
            (family, Arch::Conv) => {
                let (mut h, mut w, mut c) = (self.input.height, self.input.width, self.input.channels);
                let mut macs = 0u64;
                for &co in &self.hidden {
                    h /= 2;
                    w /= 2;
                    macs += (h * w * co * c * 16) as u64;
                    c = co;
                }
                let feat = (h * w * c) as u64;
                let heads = match family {
                    Family::Gan => feat,
                    f if f.is_variational() => 2 * feat * l as u64,
                    _ => feat * l as u64,
                };
                // The decoder / generator mirrors the encoder.
                let dec = macs + feat * l as u64;
                macs + heads + dec
            }
        }
    }

    /// A GAN's [`forward_macs`](Self::forward_macs) split into (generator, discriminator), per
    /// image; `None` for the other families. A GAN step runs the two different numbers of
    /// times, so a FLOP count needs them apart.
    pub fn gan_forward_macs(&self) -> Option<(u64, u64)> {
        if self.family != Family::Gan {
            return None;
        }
        let mlp = |dims: &[usize]| dims.windows(2).map(|w| (w[0] * w[1]) as u64).sum::<u64>();
        let d = self.input.len();
        let l = self.latent_dim;
        Some(match self.arch {
            Arch::Mlp => {
                let g: Vec<usize> =
                    std::iter::once(l).chain(self.hidden.iter().copied()).chain([d]).collect();
                let dd: Vec<usize> =
                    std::iter::once(d).chain(self.disc_hidden.iter().copied()).chain([1]).collect();
                (mlp(&g), mlp(&dd))
            }
            Arch::Conv => {
                let (mut h, mut w, mut c) = (self.input.height, self.input.width, self.input.channels);
                let mut convs = 0u64;
                for &co in &self.hidden {
                    h /= 2;
                    w /= 2;
                    convs += (h * w * co * c * 16) as u64;
                    c = co;
                }
                let feat = (h * w * c) as u64;
                // G: latent → feature map, then transposed convs mirroring D's convs.
                (feat * l as u64 + convs, convs + feat)
            }
        })
    }
}

/// Loss components of one step or one evaluation, per image in nats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    /// The quantity minimised: recon + β·KL (VAE), recon (AE), D loss (GAN).
    pub loss: f64,
    pub recon: Option<f64>,
    pub kl: Option<f64>,
    pub d_loss: Option<f64>,
    pub g_loss: Option<f64>,
    /// Mean D(x) on real images.
    pub d_real: Option<f64>,
    /// Mean D(G(z)) on generated images.
    pub d_fake: Option<f64>,
}

impl Losses {
    /// The components that are present, by name, in a fixed order.
    pub fn components(&self) -> Vec<(&'static str, f64)> {
        let mut out = Vec::with_capacity(7);
        if self.d_loss.is_none() {
            out.push(("loss", self.loss));
        }
        for (name, v) in [
            ("recon", self.recon),
            ("kl", self.kl),
            ("d_loss", self.d_loss),
            ("g_loss", self.g_loss),
            ("d_real", self.d_real),
            ("d_fake", self.d_fake),
        ] {
            if let Some(v) = v {
                out.push((name, v));
            }
        }
        out
    }

    /// Names of the components a family reports.
    pub fn names_for(family: Family) -> &'static [&'static str] {
        match family {
            Family::Autoencoder => &["loss", "recon"],
            Family::Vae | Family::BetaVae => &["loss", "recon", "kl"],
            Family::Gan => &["d_loss", "g_loss", "d_real", "d_fake"],
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.components().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn is_finite(&self) -> bool {
        self.components().iter().all(|(_, v)| v.is_finite())
    }

    /// Weighted running mean: adds `other` counted `n` times to `self` counted `total` times.
    pub fn accumulate(&mut self, other: &Losses, total: usize, n: usize) {
        let (a, b) = (total as f64, n as f64);
        let mix = |x: f64, y: f64| (x * a + y * b) / (a + b);
        let mix_opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => Some(mix(x, y)),
            (None, y) => y,
            (x, None) => x,
        };
        self.loss = if total == 0 { other.loss } else { mix(self.loss, other.loss) };
        self.recon = mix_opt(self.recon, other.recon);
        self.kl = mix_opt(self.kl, other.kl);
        self.d_loss = mix_opt(self.d_loss, other.d_loss);
        self.g_loss = mix_opt(self.g_loss, other.g_loss);
        self.d_real = mix_opt(self.d_real, other.d_real);
        self.d_fake = mix_opt(self.d_fake, other.d_fake);
    }
}

/// What a training step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The update was applied; the losses are those before it.
    Applied(Losses),
    /// A loss or gradient was NaN or infinite; nothing was changed.
    NonFinite(Losses),
}

/// One interface for every family: train, encode, decode, sample, reconstruct, save.
pub trait GenerativeModel: Send + Sync {
    fn config(&self) -> &ModelConfig;

    fn param_count(&self) -> usize;

    /// One optimisation step on `x: [B, C·H·W]` in [0, 1]. Noise (ε, z) comes from `rng`.
    /// A non-finite loss or gradient leaves weights and optimiser state untouched.
    fn train_step(&mut self, x: &Tensor, rng: &mut StdRng) -> Result<StepOutcome>;

    /// Losses on `x` without updating anything (one ε / z draw from `rng`).
    fn evaluate(&self, x: &Tensor, rng: &mut StdRng) -> Result<Losses>;

    /// `[B, D] → (μ, log σ²)`, each `[B, latent]` (an AE gives log σ² = 0); `None` for a GAN.
    fn encode(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor)>>;

    /// `[B, latent] → [B, D]` pixel values in [0, 1] (the GAN's generator for a GAN).
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.decode_logits(z)?)?)
    }

    /// `[B, latent] → [B, D]` decoder logits (σ of them are the pixel values): what a
    /// likelihood p(x|z) is computed from.
    fn decode_logits(&self, z: &Tensor) -> Result<Tensor>;

    /// Size of the latent (or noise) vector.
    fn latent_dim(&self) -> usize {
        self.config().latent_dim
    }

    /// Decodes of the encoder's mean: `[B, D] → [B, D]`; `None` for a GAN.
    fn reconstruct(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self.encode(x)? {
            Some((mu, _)) => Ok(Some(self.decode(&mu)?)),
            None => Ok(None),
        }
    }

    /// Discriminator logits `[B, D] → [B]` (GAN only).
    fn discriminate(&self, _x: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, lr: f64);
    fn set_beta(&mut self, beta: f64);

    /// Every tensor that defines the model and its optimiser, by name (for checkpoints).
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores what [`GenerativeModel::state`] returned; every name must be present.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
    /// Optimiser step counts (for checkpoints).
    fn optimizer_steps(&self) -> Vec<u64>;
    fn set_optimizer_steps(&mut self, steps: &[u64]);
}

/// The most trainable parameters a model may have (1 GiB of f32 weights; Adam holds twice
/// that again).
pub const MAX_PARAMS: u64 = 1 << 28;

/// Builds the model a configuration describes, with weights drawn from `seed`.
pub fn build_model(cfg: &ModelConfig, optim: &AdamConfig, seed: u64) -> Result<Box<dyn GenerativeModel>> {
    cfg.validate()?;
    Ok(match cfg.family {
        Family::Gan => Box::new(gan::Gan::new(cfg.clone(), *optim, seed)?),
        _ => Box::new(vae::Vae::new(cfg.clone(), *optim, seed)?),
    })
}

/// Scalar of a 0-d or 1-element tensor as f64.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0])
}

/// Collects parameters and Adam state under stable names: `name`, `name.adam_m`, `name.adam_v`.
pub(crate) fn collect_state(
    params: &layers::ParamSet,
    adam: &optim::Adam,
    out: &mut HashMap<String, Tensor>,
) -> Result<()> {
    for (i, (name, var)) in params.params.iter().enumerate() {
        let shape = var.shape().clone();
        out.insert(name.clone(), var.as_tensor().copy()?);
        out.insert(
            format!("{name}.adam_m"),
            Tensor::from_slice(&adam.m[i], &shape, &candle_core::Device::Cpu)?,
        );
        out.insert(
            format!("{name}.adam_v"),
            Tensor::from_slice(&adam.v[i], &shape, &candle_core::Device::Cpu)?,
        );
    }
    Ok(())
}

/// The inverse of [`collect_state`]: shapes must match exactly.
pub(crate) fn restore_state(
    params: &layers::ParamSet,
    adam: &mut optim::Adam,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    let get = |name: &str, shape: &candle_core::Shape| -> Result<Tensor> {
        let t = state.get(name).ok_or_else(|| EngineError::Other(format!("tensor `{name}` is missing")))?;
        if t.shape() != shape {
            return Err(EngineError::Other(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                t.dims(),
                shape.dims()
            )));
        }
        Ok(t.to_dtype(candle_core::DType::F32)?)
    };
    for (i, (name, var)) in params.params.iter().enumerate() {
        let shape = var.shape().clone();
        var.set(&get(name, &shape)?)?;
        adam.m[i] = get(&format!("{name}.adam_m"), &shape)?.flatten_all()?.to_vec1()?;
        adam.v[i] = get(&format!("{name}.adam_v"), &shape)?.flatten_all()?.to_vec1()?;
    }
    Ok(())
}

/// Saves and restores batch-norm running statistics under `prefix.bnK.running_{mean,var}`.
pub(crate) fn collect_bn(prefix: &str, bns: &[&layers::BatchNorm], out: &mut HashMap<String, Tensor>) {
    for (i, bn) in bns.iter().enumerate() {
        let (m, v) = bn.running_stats();
        out.insert(format!("{prefix}.bn{i}.running_mean"), m);
        out.insert(format!("{prefix}.bn{i}.running_var"), v);
    }
}

pub(crate) fn restore_bn(
    prefix: &str,
    bns: &[&layers::BatchNorm],
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    for (i, bn) in bns.iter().enumerate() {
        let (mean, _) = bn.running_stats();
        let get = |k: &str| -> Result<Tensor> {
            let name = format!("{prefix}.bn{i}.{k}");
            let t =
                state.get(&name).ok_or_else(|| EngineError::Other(format!("tensor `{name}` is missing")))?;
            if t.shape() != mean.shape() {
                return Err(EngineError::Other(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    mean.dims()
                )));
            }
            Ok(t.to_dtype(candle_core::DType::F32)?)
        };
        bn.set_running_stats(get("running_mean")?, get("running_var")?);
    }
    Ok(())
}
