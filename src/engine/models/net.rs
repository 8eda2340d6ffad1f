//! The network settings every family shares ([`NetConfig`]) and their building blocks' choices.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};

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

/// The network every family is built from: image shape, layer widths, latent size and
/// non-linearity. What `hidden` means is the family's to say (see its config type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    pub arch: Arch,
    /// The image shape the model reads and writes.
    pub input: ImageShape,
    /// MLP: encoder widths (the decoder mirrors them) or generator widths (from the noise
    /// outwards). Conv: encoder / discriminator channels per stride-2 layer.
    pub hidden: Vec<usize>,
    /// Latent size (VAE / AE) or noise size (GAN).
    pub latent_dim: usize,
    pub activation: Activation,
    /// Classes the model is conditioned on: the label's one-hot goes into its networks
    /// (see the family for where). 0 = unconditional, which is what configurations saved
    /// before conditioning existed load as. It lives here, not in one family's settings,
    /// because every family conditions on the same thing (a VAE, a GAN, a diffusion model's
    /// guidance) and the app's network editor and `with_family` then carry it over alike.
    pub classes: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Mlp,
            input: ImageShape::new(1, 28, 28),
            hidden: vec![400],
            latent_dim: 20,
            activation: Activation::Relu,
            classes: 0,
        }
    }
}

impl NetConfig {
    /// The checks every family shares; messages name the setting and say why.
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
        if self.classes > MAX_CLASSES {
            return err(format!("{} classes is over the limit of {MAX_CLASSES}", self.classes));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return err(format!("layer {} has width 0; every layer needs at least 1 unit", i + 1));
        }
        if let Some(&w) = self.hidden.iter().find(|&&w| w > MAX_WIDTH) {
            return err(format!("a layer of width {w} is over the limit of {MAX_WIDTH}"));
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
        Ok(())
    }
}

/// The most classes a conditional model may have (its one-hot widens the first layers).
pub const MAX_CLASSES: usize = 1000;

/// The widest layer a configuration may ask for.
pub const MAX_WIDTH: usize = 16384;
