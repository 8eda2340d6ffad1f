//! Autoencoder, VAE and β-VAE: one encoder/decoder pair; the family decides whether the code
//! is a point (AE) or a Gaussian sampled with the reparameterisation z = μ + σ ⊙ ε (VAE).
//! The three families' configurations, presets, capabilities and counts live here; the model
//! itself in [`model`].

use serde::{Deserialize, Serialize};

use super::cvae::{decoder_net, encoder_net, head_extra};
use super::optim::AdamConfig;
use super::shapes::{conv_macs, expand_params, linear, mlp_macs, trunk_params};
use super::spec::{self, Part, PartRole};
use super::{
    AnomalyScore, Arch, Capabilities, Family, FamilyConfig, GenerativeModel, LiveHyper, LossKey, ModelConfig,
    NetConfig, Preset, ReconLoss, StepMacs,
};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

mod model;
pub use model::Vae;

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
