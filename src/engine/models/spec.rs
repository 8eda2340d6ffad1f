//! The network of a configuration as parts of layer boxes (name and output shape), for the
//! app's diagram: each family lays out its own parts from these two halves
//! ([`trunk`] image → features, [`expand`] latent → image), the same halves that
//! [`super::layers`] builds and [`super::shapes`] counts.

use super::{Arch, NetConfig};
use crate::engine::data::ImageShape;

/// One layer: a short name and its output shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBox {
    pub name: String,
    pub shape: String,
}

/// A named run of layers (encoder, latent, decoder, generator, discriminator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub title: &'static str,
    pub role: PartRole,
    pub layers: Vec<LayerBox>,
}

/// What a part does, which decides its colour in the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartRole {
    /// Reads images or noise: an encoder or a generator.
    Input,
    /// The code between encoder and decoder.
    Latent,
    /// Produces the output: a decoder or a discriminator.
    Output,
}

pub fn boxed(name: impl Into<String>, shape: impl Into<String>) -> LayerBox {
    LayerBox { name: name.into(), shape: shape.into() }
}

fn img(s: ImageShape) -> String {
    s.to_string()
}

/// Feature maps after `k` stride-2 layers.
fn down(s: ImageShape, c: usize, k: usize) -> ImageShape {
    ImageShape::new(c, s.height >> k, s.width >> k)
}

/// Image → features: MLP widths or stride-2 conv channels, named `prefix`1, 2, ….
pub fn trunk(cfg: &NetConfig, widths: &[usize], prefix: &str) -> Vec<LayerBox> {
    let mut out = vec![boxed("input", img(cfg.input))];
    for (i, &w) in widths.iter().enumerate() {
        match cfg.arch {
            Arch::Mlp => out.push(boxed(format!("{prefix}{}", i + 1), w.to_string())),
            Arch::Conv => out.push(boxed(format!("conv{}", i + 1), img(down(cfg.input, w, i + 1)))),
        }
    }
    out
}

/// Latent → image, `widths` from the latent side outwards.
pub fn expand(cfg: &NetConfig, widths: &[usize]) -> Vec<LayerBox> {
    let mut out = Vec::new();
    match cfg.arch {
        Arch::Mlp => {
            for (i, &w) in widths.iter().enumerate() {
                out.push(boxed(format!("fc{}", i + 1), w.to_string()));
            }
            out.push(boxed("output", img(cfg.input)));
        }
        Arch::Conv => {
            let k = widths.len();
            let c0 = widths.first().copied().unwrap_or(cfg.input.channels);
            out.push(boxed("fc", img(down(cfg.input, c0, k))));
            let outs: Vec<usize> = widths.iter().skip(1).copied().chain([cfg.input.channels]).collect();
            for (i, &c) in outs.iter().enumerate() {
                let name =
                    if i + 1 == outs.len() { "output".to_string() } else { format!("deconv{}", i + 1) };
                out.push(boxed(name, img(down(cfg.input, c, k - i - 1))));
            }
        }
    }
    out
}
