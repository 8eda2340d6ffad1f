//! Autoencoder, VAE and β-VAE: one encoder/decoder pair; the family decides whether the code
//! is a point (AE) or a Gaussian sampled with the reparameterisation z = μ + σ ⊙ ε (VAE).
//! The three families' configurations, presets, capabilities and counts live here too.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use std::f64::consts::LN_2;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cvae::{beside, decoder_in, decoder_net, encoder_net, head_extra, one_hot};
use super::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use super::likelihood::{
    importance_weighted, kl_row, recon_error, Likelihood, SampleScore, ScoreOptions, ScoreSetup,
};
use super::losses::kl_rows;
use super::optim::{grads_finite, Adam, AdamConfig};
use super::shapes::{conv_macs, expand_params, linear, mlp_macs, trunk_params};
use super::spec::{self, Part, PartRole};
use super::{
    collect_state, not_live, restore_state, scalar, AnomalyScore, Arch, Batch, Capabilities, Family,
    FamilyConfig, GenerativeModel, HealthMonitor, LiveHyper, LossKey, Losses, ModelConfig, NetConfig,
    NoHealthRule, Preset, ReconLoss, StepMacs, StepOutcome,
};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::{Exec, RowLoss};

/// An autoencoder: `hidden` are the encoder's widths (MLP) or channels (conv); the decoder
/// mirrors them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AeConfig {
    #[serde(flatten)]
    pub net: NetConfig,
    pub recon_loss: ReconLoss,
}

/// A VAE: the autoencoder's network with a Gaussian code, KL weight 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    #[serde(flatten)]
    pub net: NetConfig,
    pub recon_loss: ReconLoss,
}

/// A β-VAE: a VAE whose KL term is weighted by β (which can change while training).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BetaVaeConfig {
    #[serde(flatten)]
    pub net: NetConfig,
    pub recon_loss: ReconLoss,
    pub beta: f64,
}

impl Default for AeConfig {
    fn default() -> Self {
        Self { net: NetConfig::default(), recon_loss: ReconLoss::Bce }
    }
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self { net: NetConfig::default(), recon_loss: ReconLoss::Bce }
    }
}

impl Default for BetaVaeConfig {
    fn default() -> Self {
        Self { net: NetConfig::default(), recon_loss: ReconLoss::Bce, beta: 4.0 }
    }
}

/// What the three families' models differ in.
#[derive(Clone, Copy, Debug)]
struct Code {
    variational: bool,
    /// The KL weight (0 without a KL term).
    beta: f64,
}

fn capabilities(family: Family, net: &NetConfig, variational: bool, live_beta: bool) -> Capabilities {
    let mut live = vec![LiveHyper::LearningRate];
    if live_beta {
        live.push(LiveHyper::Beta);
    }
    let (loss_keys, anomaly_scores) = if variational {
        (
            vec![LossKey::Loss, LossKey::Recon, LossKey::Kl],
            vec![
                AnomalyScore::NegLogPx,
                AnomalyScore::NegElbo,
                AnomalyScore::BitsPerDim,
                AnomalyScore::Recon,
            ],
        )
    } else {
        (vec![LossKey::Loss, LossKey::Recon], vec![AnomalyScore::Recon])
    };
    Capabilities {
        family,
        encoder: true,
        discriminator: false,
        conditional: net.classes > 0,
        latent_dim: net.latent_dim,
        latent_name: "latent",
        live,
        loss_keys,
        headline: LossKey::Loss,
        anomaly_scores,
        likelihood: variational,
        variational,
        sampler: false,
    }
}

/// The [`FamilyConfig`] methods the three families share; `$code` says what kind of code.
macro_rules! encoder_decoder_family {
    ($ty:ty, $family:expr, $variational:expr) => {
        impl FamilyConfig for $ty {
            fn family(&self) -> Family {
                $family
            }

            fn net(&self) -> &NetConfig {
                &self.net
            }

            fn net_mut(&mut self) -> &mut NetConfig {
                &mut self.net
            }

            fn capabilities(&self) -> Capabilities {
                capabilities($family, &self.net, $variational, self.beta_live())
            }

            fn validate(&self) -> Result<()> {
                self.validate_own()
            }

            fn param_count(&self) -> u64 {
                param_count(&self.net, $variational)
            }

            fn step_macs(&self) -> StepMacs {
                step_macs(&self.net, $variational)
            }

            fn network(&self) -> Vec<Part> {
                network(&self.net, $variational)
            }

            fn build(&self, optim: &AdamConfig, seed: u64, exec: &Exec) -> Result<Box<dyn GenerativeModel>> {
                let code = Code { variational: $variational, beta: self.kl_weight().unwrap_or(0.0) };
                Ok(Box::new(Vae::new(self.clone().into(), self.recon_loss, code, *optim, seed, exec)?))
            }

            fn recon_loss(&self) -> Option<ReconLoss> {
                Some(self.recon_loss)
            }

            fn recon_loss_mut(&mut self) -> Option<&mut ReconLoss> {
                Some(&mut self.recon_loss)
            }

            fn kl_weight(&self) -> Option<f64> {
                self.kl()
            }

            fn beta_mut(&mut self) -> Option<&mut f64> {
                self.beta_setting()
            }
        }
    };
}

encoder_decoder_family!(AeConfig, Family::Autoencoder, false);
encoder_decoder_family!(VaeConfig, Family::Vae, true);
encoder_decoder_family!(BetaVaeConfig, Family::BetaVae, true);

impl AeConfig {
    fn beta_live(&self) -> bool {
        false
    }
    fn validate_own(&self) -> Result<()> {
        Ok(())
    }
    fn kl(&self) -> Option<f64> {
        None
    }
    fn beta_setting(&mut self) -> Option<&mut f64> {
        None
    }
}

impl VaeConfig {
    fn beta_live(&self) -> bool {
        false
    }
    fn validate_own(&self) -> Result<()> {
        Ok(())
    }
    fn kl(&self) -> Option<f64> {
        Some(1.0)
    }
    fn beta_setting(&mut self) -> Option<&mut f64> {
        None
    }
}

impl BetaVaeConfig {
    fn beta_live(&self) -> bool {
        true
    }
    fn validate_own(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(EngineError::Config(format!("β must be a finite number ≥ 0 (got {})", self.beta)));
        }
        Ok(())
    }
    fn kl(&self) -> Option<f64> {
        Some(self.beta)
    }
    fn beta_setting(&mut self) -> Option<&mut f64> {
        Some(&mut self.beta)
    }
}

impl From<AeConfig> for ModelConfig {
    fn from(c: AeConfig) -> Self {
        ModelConfig::Autoencoder(c)
    }
}

impl From<VaeConfig> for ModelConfig {
    fn from(c: VaeConfig) -> Self {
        ModelConfig::Vae(c)
    }
}

impl From<BetaVaeConfig> for ModelConfig {
    fn from(c: BetaVaeConfig) -> Self {
        ModelConfig::BetaVae(c)
    }
}

/// The presets of these families.
pub const PRESETS: &[Preset] = &[
    // Exactly PyTorch's VAE example: 784-400-20, ReLU, sigmoid output, BCE, Adam 1e-3, batch 128.
    Preset {
        name: "mnist_vae",
        make: || (ModelConfig::Vae(VaeConfig::default()), AdamConfig::default()),
        epochs: 10,
    },
    Preset {
        name: "mnist_ae",
        make: || {
            let net = NetConfig { hidden: vec![512, 256], latent_dim: 32, ..NetConfig::default() };
            (ModelConfig::Autoencoder(AeConfig { net, recon_loss: ReconLoss::Mse }), AdamConfig::default())
        },
        epochs: 10,
    },
    Preset {
        name: "mnist_beta_vae",
        make: || {
            let net = NetConfig { hidden: vec![512, 256], latent_dim: 10, ..NetConfig::default() };
            (
                ModelConfig::BetaVae(BetaVaeConfig { net, beta: 4.0, ..BetaVaeConfig::default() }),
                AdamConfig::default(),
            )
        },
        epochs: 10,
    },
    Preset {
        name: "conv_vae",
        make: || {
            let net =
                NetConfig { arch: Arch::Conv, hidden: vec![32, 64], latent_dim: 16, ..NetConfig::default() };
            (ModelConfig::Vae(VaeConfig { net, ..VaeConfig::default() }), AdamConfig::default())
        },
        epochs: 10,
    },
    // A conv VAE for 64×64 colour images (faces, objects); expects 3×64×64 images
    // (`--resize 64 --channels 3` for a folder of another size). Encoder convs 3 → 32 → 64 →
    // 128 → 256 (4×4, stride 2) down to 256×4×4, a 128-d Gaussian code, the decoder mirrored.
    // Widths and latent size follow the common CelebA-64 reference (AntixK/PyTorch-VAE's
    // VanillaVAE: channels 32…512, latent 128), stopping one layer earlier at genlab's 4×4
    // kernels. BCE on pixel intensities and Adam 1e-3, like conv_vae.
    Preset {
        name: "conv_vae64",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                input: ImageShape::new(3, 64, 64),
                hidden: vec![32, 64, 128, 256],
                latent_dim: 128,
                ..NetConfig::default()
            };
            (ModelConfig::Vae(VaeConfig { net, ..VaeConfig::default() }), AdamConfig::default())
        },
        epochs: 10,
    },
    // For `builtin:shapes` (1×32×32, five known factors): the MLP of Higgins et al.'s dSprites
    // β-VAE scaled to the smaller image (1024-512-256, a 10-d code, BCE, Adam 1e-3). The pair
    // differ only in β, so `genlab disentangle` shows what β buys.
    Preset {
        name: "shapes_vae",
        make: || {
            (ModelConfig::Vae(VaeConfig { net: shapes_net(), ..VaeConfig::default() }), AdamConfig::default())
        },
        epochs: 30,
    },
    Preset {
        name: "shapes_beta_vae",
        make: || {
            let cfg = BetaVaeConfig { net: shapes_net(), beta: 4.0, ..BetaVaeConfig::default() };
            (ModelConfig::BetaVae(cfg), AdamConfig::default())
        },
        epochs: 30,
    },
];

/// The network of the shapes presets.
fn shapes_net() -> NetConfig {
    NetConfig {
        input: ImageShape::new(1, 32, 32),
        hidden: vec![512, 256],
        latent_dim: 10,
        ..NetConfig::default()
    }
}

/// Encoder → code → mirrored decoder.
/// The network of the three families, decided once: the encoder's widths, how many code
/// heads (μ, and log σ² for a VAE), and the decoder's widths (the encoder's, mirrored).
/// Building ([`Vae::new`]), the parameter and FLOP counts and the diagram all read it.
struct Layout {
    encoder: Vec<usize>,
    heads: u64,
    decoder: Vec<usize>,
}

fn layout(net: &NetConfig, variational: bool) -> Layout {
    Layout {
        encoder: net.hidden.clone(),
        heads: if variational { 2 } else { 1 },
        decoder: net.hidden.iter().rev().copied().collect(),
    }
}

/// Encoder → code → mirrored decoder.
fn network(net: &NetConfig, variational: bool) -> Vec<Part> {
    let lay = layout(net, variational);
    let z = if lay.heads == 2 { "z (μ, log σ²)" } else { "z" };
    vec![
        Part { title: "Encoder", role: PartRole::Input, layers: spec::trunk(net, &lay.encoder, "fc") },
        Part {
            title: "Latent",
            role: PartRole::Latent,
            layers: if net.classes > 0 {
                vec![
                    spec::boxed(z, net.latent_dim.to_string()),
                    spec::boxed("class one-hot", net.classes.to_string()),
                ]
            } else {
                vec![spec::boxed(z, net.latent_dim.to_string())]
            },
        },
        Part { title: "Decoder", role: PartRole::Output, layers: spec::expand(net, &lay.decoder) },
    ]
}

/// Parameters of the encoder, its code heads and the decoder.
fn param_count(net: &NetConfig, variational: bool) -> u64 {
    let lay = layout(net, variational);
    let (enc, feat) = trunk_params(&encoder_net(net), &lay.encoder, false);
    let heads = linear(feat.saturating_add(head_extra(net)), net.latent_dim).saturating_mul(lay.heads);
    enc.saturating_add(heads).saturating_add(expand_params(&decoder_net(net), &lay.decoder, false))
}

/// A step runs encoder and decoder forward and backward once; the encoder's first layer, fed
/// by data, needs no input gradient.
fn step_macs(net: &NetConfig, variational: bool) -> StepMacs {
    let lay = layout(net, variational);
    // A conditional net's one-hot widens the first encoder layer (MLP) or the heads (conv)
    // and the decoder's input.
    let (d, l, k) = (net.input.len(), net.latent_dim, net.classes);
    let (forward, first) = match net.arch {
        Arch::Mlp => {
            let enc: Vec<usize> = std::iter::once(d + k).chain(lay.encoder.iter().copied()).collect();
            let last = *enc.last().unwrap_or(&d);
            let dec: Vec<usize> =
                std::iter::once(l + k).chain(lay.decoder.iter().copied()).chain([d]).collect();
            let first = ((d + k) * lay.encoder.first().copied().unwrap_or(1)) as u64;
            (mlp_macs(&enc) + lay.heads * (last * l) as u64 + mlp_macs(&dec), first)
        }
        Arch::Conv => {
            let (convs, feat) = conv_macs(net, &lay.encoder);
            let c0 = lay.encoder.first().copied().unwrap_or(net.input.channels);
            let first =
                ((net.input.height / 2) * (net.input.width / 2) * c0 * net.input.channels * 16) as u64;
            // The decoder's transposed convs cost what the encoder's convs do.
            let feat_k = feat + k as u64;
            (convs + lay.heads * feat_k * l as u64 + convs + feat * (l + k) as u64, first)
        }
    };
    StepMacs { forward, train_step: 3 * forward - first }
}

pub struct Vae {
    cfg: ModelConfig,
    recon_loss: ReconLoss,
    params: ParamSet,
    adam: Adam,
    trunk: Trunk,
    /// μ head (the code itself for an autoencoder).
    mu: Linear,
    /// log σ² head (VAE only).
    logvar: Option<Linear>,
    decoder: Expand,
    beta: f64,
    /// Classes it is conditioned on (0 = unconditional; see [`super::cvae`]).
    classes: usize,
}

/// Intermediate results of one forward pass.
struct Forward {
    losses: Losses,
    loss: Tensor,
}

impl Vae {
    /// `cfg` is an autoencoder's, a VAE's or a β-VAE's configuration.
    fn new(
        cfg: ModelConfig,
        recon_loss: ReconLoss,
        code: Code,
        optim: AdamConfig,
        seed: u64,
        exec: &Exec,
    ) -> Result<Self> {
        let Code { variational, beta } = code;
        let net = cfg.net();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ps = ParamSet::new(exec.clone());
        let lay = layout(net, variational);
        let enc_net = encoder_net(net);
        let trunk = Trunk::new(&mut ps, "encoder", &enc_net, &lay.encoder, false, &mut rng)?;
        let feat = Trunk::out_dim(net.arch, enc_net.input, &lay.encoder) + head_extra(net);
        let mu = Linear::new(&mut ps, "encoder.mu", feat, net.latent_dim, &mut rng)?;
        let logvar = if variational {
            Some(Linear::new(&mut ps, "encoder.logvar", feat, net.latent_dim, &mut rng)?)
        } else {
            None
        };
        let decoder = Expand::new(&mut ps, "decoder", net, decoder_in(net), &lay.decoder, false, &mut rng)?;
        let adam = Adam::new(optim, &ps)?;
        let classes = net.classes;
        Ok(Self { cfg, recon_loss, params: ps, adam, trunk, mu, logvar, decoder, beta, classes })
    }

    /// The one-hot `[B, K]` of labels `y: [B]` for a conditional model (the default labels
    /// when `y` is `None`); `None` for an unconditional one.
    fn hot(&self, y: Option<&Tensor>, rows: usize) -> Result<Option<Tensor>> {
        if self.classes == 0 {
            return Ok(None);
        }
        Ok(Some(one_hot(y, rows, self.classes, self.params.exec.device())?))
    }

    /// `[B, D] → (μ, log σ²)`, with the one-hot `[B, K]` of a conditional model.
    fn encode_t(&self, x: &Tensor, hot: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let h = match (hot, self.cfg.net().arch) {
            (None, _) => self.trunk.forward(x, false)?,
            (Some(y), Arch::Mlp) => self.trunk.forward(&beside(x, y)?, false)?, // [B, D + K] in
            (Some(y), Arch::Conv) => beside(&self.trunk.forward(x, false)?, y)?, // [B, F + K]
        };
        let mu = self.mu.forward(&h)?;
        let logvar = match &self.logvar {
            Some(l) => l.forward(&h)?,
            None => mu.zeros_like()?,
        };
        Ok((mu, logvar))
    }

    /// `[B, L] → [B, D]` logits, with the one-hot `[B, K]` of a conditional model.
    fn decode_t(&self, z: &Tensor, hot: Option<&Tensor>, train: bool) -> Result<Tensor> {
        match hot {
            Some(y) => Ok(self.decoder.forward(&beside(z, y)?, train)?), // [B, L + K] in
            None => Ok(self.decoder.forward(z, train)?),
        }
    }

    fn forward(&self, batch: &Batch, rng: &mut StdRng) -> Result<Forward> {
        let x = &self.params.exec.put(&batch.x.detach())?;
        let (b, _) = x.dims2()?;
        if self.classes > 0 && batch.y.is_none() {
            return Err(EngineError::Config(format!(
                "this model is conditioned on {} classes and needs labelled images; the batch has no labels",
                self.classes
            )));
        }
        let hot = self.hot(batch.y.as_ref(), b)?;
        let (mu, logvar) = self.encode_t(x, hot.as_ref())?;
        let variational = self.logvar.is_some();
        let z = if variational {
            let eps = self.params.exec.put(&normal_tensor(b, self.cfg.latent_dim(), 1.0, rng)?)?;
            (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)? // [B, L]
        } else {
            mu.clone()
        };
        let logits = self.decode_t(&z, hot.as_ref(), true)?; // [B, D]
        let kind = match self.recon_loss {
            ReconLoss::Bce => RowLoss::BceWithLogits,
            ReconLoss::Mse => RowLoss::SquaredError,
        };
        let recon_rows = self.params.exec.row_loss(&logits, x, kind)?;
        let recon = recon_rows.mean(0)?;
        let (loss, kl_v) = if variational {
            let kl = kl_rows(&mu, &logvar)?.mean(0)?;
            let kl_v = scalar(&kl)?;
            ((&recon + (kl * self.beta)?)?, Some(kl_v))
        } else {
            (recon.clone(), None)
        };
        let mut losses = Losses::of(&[(LossKey::Loss, scalar(&loss)?), (LossKey::Recon, scalar(&recon)?)]);
        if let Some(kl) = kl_v {
            losses.set(LossKey::Kl, kl);
        }
        Ok(Forward { losses, loss })
    }
}

impl GenerativeModel for Vae {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.params.count()
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome> {
        let f = self.forward(batch, rng)?;
        if !f.losses.is_finite() {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        let grads = self.params.backward(&f.loss)?;
        if !grads_finite(&self.params, &grads)? {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        self.adam.step(&self.params, &grads)?;
        Ok(StepOutcome::Applied(f.losses))
    }

    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses> {
        Ok(self.forward(batch, rng)?.losses)
    }

    fn encode(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        self.encode_class(x, None)
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_logits_class(z, None)
    }

    fn encode_class(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        let x = self.params.exec.put(x)?;
        let hot = self.hot(y, x.dim(0)?)?;
        let (mu, lv) = self.encode_t(&x, hot.as_ref())?;
        Ok(Some((mu.detach(), lv.detach())))
    }

    fn decode_logits_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let z = self.params.exec.put(z)?;
        let hot = self.hot(y, z.dim(0)?)?;
        Ok(self.decode_t(&z, hot.as_ref(), false)?.detach())
    }

    fn decode_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.decode_logits_class(z, y)?)?)
    }

    fn decode_mixed(&self, z: &Tensor, weights: &Tensor) -> Result<Option<Tensor>> {
        if self.classes == 0 {
            return Ok(None);
        }
        let (z, w) = (self.params.exec.put(z)?, self.params.exec.put(weights)?);
        let logits = self.decode_t(&z, Some(&w), false)?.detach(); // the blend stands in for the one-hot
        Ok(Some(candle_nn::ops::sigmoid(&logits)?))
    }

    fn learning_rate(&self) -> f64 {
        self.adam.config.lr
    }

    fn discriminate(&self, _x: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn health_monitor(&self) -> Box<dyn HealthMonitor> {
        Box::new(NoHealthRule)
    }

    fn score_setup(&self, opts: &ScoreOptions) -> Result<ScoreSetup> {
        if self.logvar.is_none() {
            let likelihood = Some(Likelihood::for_loss(self.recon_loss, false));
            return Ok(ScoreSetup { likelihood, k: 0, batch: 256, max_rows: 0 });
        }
        if opts.k == 0 {
            return Err(EngineError::Config("K (importance samples) must be at least 1".into()));
        }
        Ok(ScoreSetup {
            likelihood: Some(Likelihood::for_loss(self.recon_loss, opts.continuous_bernoulli)),
            k: opts.k,
            batch: (opts.max_rows / opts.k).clamp(1, 256),
            max_rows: opts.max_rows,
        })
    }

    /// AE: the training loss's reconstruction error at z = the code. VAE: −ELBO (β = 1), its
    /// reconstruction and KL terms, and the IWAE estimate of −log p(x) from `setup.k` draws.
    fn score_batch(
        &self,
        x: &[f32],
        setup: &ScoreSetup,
        rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()> {
        let d = self.cfg.input().len();
        let xt = Tensor::from_slice(x, (out.len(), d), self.params.exec.device())?;
        // A conditional model scores p(x | y) under each image's own label.
        let labels: Option<Vec<u32>> = if self.classes > 0 {
            let l: Option<Vec<u32>> = out.iter().map(|s| s.label).collect();
            Some(l.ok_or_else(|| {
                EngineError::Config(
                    "a conditional model scores labelled images only; an image has no label".into(),
                )
            })?)
        } else {
            None
        };
        let label_tensor = |rows: &[usize]| -> Result<Option<Tensor>> {
            match &labels {
                Some(l) => {
                    let y: Vec<u32> = rows.iter().map(|&i| l[i]).collect();
                    Ok(Some(Tensor::from_vec(y, rows.len(), &candle_core::Device::Cpu)?))
                }
                None => Ok(None),
            }
        };
        let all: Vec<usize> = (0..out.len()).collect();
        let y_all = label_tensor(&all)?;
        let hot = self.hot(y_all.as_ref(), out.len())?;
        let (mu, logvar) = self.encode_t(&xt, hot.as_ref())?;
        let (mu, logvar) = (mu.detach(), logvar.detach());
        if self.logvar.is_none() {
            let logits = self.decode_logits_class(&mu, y_all.as_ref())?.flatten_all()?.to_vec1::<f32>()?;
            for (i, s) in out.iter_mut().enumerate() {
                let row = i * d..(i + 1) * d;
                s.recon = Some(recon_error(self.recon_loss, &x[row.clone()], &logits[row]));
            }
            return Ok(());
        }
        let lik = setup.likelihood.unwrap_or(Likelihood::Bernoulli);
        let latent = self.latent_dim();
        let mu = mu.flatten_all()?.to_vec1::<f32>()?;
        let logvar = logvar.flatten_all()?.to_vec1::<f32>()?;
        let iw = importance_weighted(&mu, &logvar, latent, setup.k, setup.max_rows, rng, |items, z| {
            let zt = Tensor::from_slice(z, (items.len(), latent), self.params.exec.device())?;
            let y = label_tensor(items)?;
            let logits = self.decode_logits_class(&zt, y.as_ref())?.flatten_all()?.to_vec1::<f32>()?; // [rows·D]
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
        Ok(())
    }

    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()> {
        match (hyper, &mut self.cfg) {
            (LiveHyper::LearningRate, _) => self.adam.config.lr = value,
            (LiveHyper::Beta, cfg) => match cfg.beta_mut() {
                Some(beta) => {
                    *beta = value;
                    self.beta = value;
                }
                None => return Err(not_live(cfg.family(), hyper)),
            },
            (LiveHyper::DiscLearningRate | LiveHyper::DiscSteps, cfg) => {
                return Err(not_live(cfg.family(), hyper))
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.params, &self.adam, &mut out)?;
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        restore_state(&self.params, &mut self.adam, state)
    }

    fn optimizer_steps(&self) -> Vec<u64> {
        vec![self.adam.step]
    }

    fn set_optimizer_steps(&mut self, steps: &[u64]) {
        if let Some(&s) = steps.first() {
            self.adam.step = s;
        }
    }
}
