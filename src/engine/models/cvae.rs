//! What conditioning on a class adds to the encoder/decoder families ([`super::vae`]): where
//! the label's one-hot enters the networks, what that adds to the counts, and the
//! conditional presets. A conditional model is a VAE (or AE, β-VAE) whose
//! [`NetConfig::classes`] is above 0; nothing else about the family changes.
//!
//! Where the one-hot `[B, K]` goes:
//! - MLP encoder: concatenated to the flattened image, `[x, y] : [B, D + K]` (Sohn et al.
//!   2015; Kingma et al. 2014's M2), so every hidden unit can use the class.
//! - Conv encoder: concatenated to the flattened conv features before the μ and log σ² heads,
//!   `[h, y] : [B, F + K]`. The convolutions only have to find the style; stacking K constant
//!   planes onto the image instead would multiply the first conv's input channels by 1 + K
//!   (11× on digits) for a signal that is the same at every pixel.
//! - Decoder (both): concatenated to the code, `[z, y] : [B, L + K]`, before its first layer.

use candle_core::{DType, Device, Tensor};

use super::net::{Arch, NetConfig};
use super::optim::AdamConfig;
use super::vae::VaeConfig;
use super::{default_labels, ModelConfig, Preset};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};

/// The network the encoder's trunk is built from: a conditional MLP reads the image and the
/// one-hot as one flat vector of D + K values (its layers only see that length).
pub(super) fn encoder_net(net: &NetConfig) -> NetConfig {
    let mut out = net.clone();
    if net.classes > 0 && net.arch == Arch::Mlp {
        out.input = ImageShape::new(1, 1, net.input.len() + net.classes);
    }
    out
}

/// Inputs the μ / log σ² heads take beyond the trunk's features (the conv net's one-hot).
pub(super) fn head_extra(net: &NetConfig) -> usize {
    match net.arch {
        Arch::Conv => net.classes,
        Arch::Mlp => 0,
    }
}

/// The decoder's input size: the code and the one-hot.
pub(super) fn decoder_in(net: &NetConfig) -> usize {
    net.latent_dim + net.classes
}

/// The network the decoder is counted from: its "latent" is the code and the one-hot.
pub(super) fn decoder_net(net: &NetConfig) -> NetConfig {
    NetConfig { latent_dim: decoder_in(net), ..net.clone() }
}

/// The one-hot `[rows, classes]` (f32, on `device`) of labels `y: [rows]` (u32), or of
/// [`default_labels`] when `y` is `None`. An error names a label out of range.
pub(super) fn one_hot(y: Option<&Tensor>, rows: usize, classes: usize, device: &Device) -> Result<Tensor> {
    let labels: Vec<u32> = match y {
        Some(y) => y.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?,
        None => default_labels(rows, classes)?.to_vec1()?,
    };
    if labels.len() != rows {
        return Err(EngineError::Other(format!("{} labels for {rows} images", labels.len())));
    }
    let mut hot = vec![0f32; rows * classes];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= classes {
            return Err(EngineError::Config(format!(
                "class {l} is out of range: the model is conditioned on {classes} classes (0 to {})",
                classes - 1
            )));
        }
        hot[i * classes + l as usize] = 1.0;
    }
    Ok(Tensor::from_vec(hot, (rows, classes), device)?)
}

/// `[a, b]` side by side: `[B, m] , [B, k] → [B, m + k]`.
pub(super) fn beside(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[a, b], 1)?)
}

/// Classes of the MNIST presets.
const DIGITS: usize = 10;

/// The conditional presets: the VAE presets with the digit's one-hot added.
pub const PRESETS: &[Preset] = &[
    // PyTorch's VAE example (784-400, BCE, Adam 1e-3) conditioned on the digit, with a 2-d
    // code: a code that can hold the digit's identity lets the decoder ignore the label
    // (measured on the built-in digits, 10 epochs: 33% of samples show the requested digit
    // with a 20-d code, 59% with 8-d, 96% with 2-d). 30 epochs: 99% (worst class 96%), 21 s.
    Preset {
        name: "mnist_cvae",
        make: || {
            let net = NetConfig { latent_dim: 2, classes: DIGITS, ..NetConfig::default() };
            (ModelConfig::Vae(VaeConfig { net, ..VaeConfig::default() }), AdamConfig::default())
        },
        epochs: 30,
    },
    // conv_vae's convs (32, 64) conditioned on the digit, with a 2-d code for the same reason
    // (10 epochs with a 16-d code: 39% of samples show the requested digit). 20 epochs: 97.5%
    // (worst class 92%).
    Preset {
        name: "mnist_conv_cvae",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                hidden: vec![32, 64],
                latent_dim: 2,
                classes: DIGITS,
                ..NetConfig::default()
            };
            (ModelConfig::Vae(VaeConfig { net, ..VaeConfig::default() }), AdamConfig::default())
        },
        epochs: 20,
    },
];
