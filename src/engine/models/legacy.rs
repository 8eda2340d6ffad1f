//! The model configuration as genlab saved it before each family had its own type: one flat
//! struct with every family's fields. Checkpoints' JSON still loads straight into
//! [`ModelConfig`] (its `"family"` tag is the same field); this type is for formats that
//! cannot read a tagged enum from the old layout, such as the app's saved RON state.
//! Frozen: a new family never touches it.

use serde::Deserialize;

use super::{
    Activation, AeConfig, Arch, BetaVaeConfig, DiffusionConfig, Family, GanConfig, GanLoss, GanOutput,
    ModelConfig, NetConfig, ReconLoss, VaeConfig,
};
use crate::engine::data::ImageShape;

/// The flat configuration of genlab up to the tagged [`ModelConfig`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct LegacyModelConfig {
    pub family: Family,
    pub arch: Arch,
    pub input: ImageShape,
    pub hidden: Vec<usize>,
    pub disc_hidden: Vec<usize>,
    pub latent_dim: usize,
    pub activation: Activation,
    pub recon_loss: ReconLoss,
    pub beta: f64,
    pub gan_loss: GanLoss,
    pub batch_norm: bool,
}

impl Default for LegacyModelConfig {
    fn default() -> Self {
        let net = NetConfig::default();
        Self {
            family: Family::Vae,
            arch: net.arch,
            input: net.input,
            hidden: net.hidden,
            disc_hidden: vec![512, 256],
            latent_dim: net.latent_dim,
            activation: net.activation,
            recon_loss: ReconLoss::Bce,
            beta: 1.0,
            gan_loss: GanLoss::NonSaturating,
            batch_norm: false,
        }
    }
}

impl From<LegacyModelConfig> for ModelConfig {
    fn from(c: LegacyModelConfig) -> Self {
        let net = NetConfig {
            arch: c.arch,
            input: c.input,
            hidden: c.hidden,
            latent_dim: c.latent_dim,
            activation: c.activation,
            classes: 0,
        };
        match c.family {
            Family::Autoencoder => ModelConfig::Autoencoder(AeConfig { net, recon_loss: c.recon_loss }),
            // A VAE's KL weight is always 1, whatever its old `beta` field held.
            Family::Vae => ModelConfig::Vae(VaeConfig { net, recon_loss: c.recon_loss }),
            Family::BetaVae => {
                ModelConfig::BetaVae(BetaVaeConfig { net, recon_loss: c.recon_loss, beta: c.beta })
            }
            Family::Gan => ModelConfig::Gan(GanConfig {
                net,
                disc_hidden: c.disc_hidden,
                gan_loss: c.gan_loss,
                batch_norm: c.batch_norm,
                output: GanOutput::Sigmoid,
                ..GanConfig::default()
            }),
            // Written before diffusion existed: a legacy configuration cannot name it.
            Family::Diffusion => ModelConfig::Diffusion(DiffusionConfig { net, ..Default::default() }),
        }
    }
}
