//! The network as boxes, one per layer with its output shape: encoder → z → decoder for
//! autoencoders and VAEs, G and D for GANs. [`diagram`] is pure; [`network_diagram`] draws it.

use egui::{Frame, Margin, RichText};

use crate::app::theme;
use crate::engine::data::ImageShape;
use crate::engine::models::{Arch, Family, ModelConfig};

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
    /// 0 = encoder / generator, 1 = latent, 2 = decoder / discriminator (colours).
    pub kind: usize,
    pub layers: Vec<LayerBox>,
}

fn boxed(name: impl Into<String>, shape: impl Into<String>) -> LayerBox {
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
fn trunk(cfg: &ModelConfig, widths: &[usize], prefix: &str) -> Vec<LayerBox> {
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
fn expand(cfg: &ModelConfig, widths: &[usize]) -> Vec<LayerBox> {
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

/// The parts of the network `cfg` describes.
pub fn diagram(cfg: &ModelConfig) -> Vec<Part> {
    let l = cfg.latent_dim;
    match cfg.family {
        Family::Gan => {
            let (g_widths, d_widths): (Vec<usize>, Vec<usize>) = match cfg.arch {
                Arch::Mlp => (cfg.hidden.clone(), cfg.disc_hidden.clone()),
                Arch::Conv => (cfg.hidden.iter().rev().copied().collect(), cfg.hidden.clone()),
            };
            let mut g = vec![boxed("noise z", l.to_string())];
            g.extend(expand(cfg, &g_widths));
            let mut d = trunk(cfg, &d_widths, "fc");
            d.push(boxed("D(x)", "1"));
            vec![
                Part { title: "Generator G", kind: 0, layers: g },
                Part { title: "Discriminator D", kind: 2, layers: d },
            ]
        }
        family => {
            let z = if family.is_variational() { "z (μ, log σ²)" } else { "z" };
            let dec_widths: Vec<usize> = cfg.hidden.iter().rev().copied().collect();
            vec![
                Part { title: "Encoder", kind: 0, layers: trunk(cfg, &cfg.hidden, "fc") },
                Part { title: "Latent", kind: 1, layers: vec![boxed(z, l.to_string())] },
                Part { title: "Decoder", kind: 2, layers: expand(cfg, &dec_widths) },
            ]
        }
    }
}

/// Draws the diagram as wrapped rows of boxes joined by arrows.
pub fn network_diagram(ui: &mut egui::Ui, cfg: &ModelConfig) {
    for part in diagram(cfg) {
        ui.label(RichText::new(part.title).small().weak());
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 3.0;
            let fill = theme::diagram_fill(ui, part.kind);
            for (i, layer) in part.layers.iter().enumerate() {
                if i > 0 {
                    // Arrows come from the monospace font: the proportional one has none.
                    ui.label(RichText::new("→").monospace().weak());
                }
                Frame::new().fill(fill).corner_radius(4.0).inner_margin(Margin::symmetric(5, 2)).show(
                    ui,
                    |ui| {
                        ui.vertical(|ui| {
                            ui.spacing_mut().item_spacing.y = 0.0;
                            ui.label(RichText::new(&layer.name).small());
                            ui.label(RichText::new(&layer.shape).strong().monospace());
                        });
                    },
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(p: &Part) -> Vec<&str> {
        p.layers.iter().map(|l| l.shape.as_str()).collect()
    }

    #[test]
    fn shapes_follow_the_layers() {
        let vae = ModelConfig::default();
        let d = diagram(&vae);
        assert_eq!(d.len(), 3);
        assert_eq!(shapes(&d[0]), ["1×28×28", "400"]);
        assert_eq!(shapes(&d[1]), ["20"]);
        assert_eq!(shapes(&d[2]), ["400", "1×28×28"]);

        let conv = ModelConfig { arch: Arch::Conv, hidden: vec![32, 64], latent_dim: 16, ..vae.clone() };
        let d = diagram(&conv);
        assert_eq!(shapes(&d[0]), ["1×28×28", "32×14×14", "64×7×7"]);
        assert_eq!(shapes(&d[2]), ["64×7×7", "32×14×14", "1×28×28"]);

        let dcgan = ModelConfig { family: Family::Gan, ..conv };
        let d = diagram(&dcgan);
        assert_eq!(shapes(&d[0]), ["16", "64×7×7", "32×14×14", "1×28×28"]);
        assert_eq!(shapes(&d[1]), ["1×28×28", "32×14×14", "64×7×7", "1"]);

        let gan = ModelConfig { family: Family::Gan, hidden: vec![256, 512], ..vae };
        let d = diagram(&gan);
        assert_eq!(shapes(&d[0]), ["20", "256", "512", "1×28×28"]);
        assert_eq!(shapes(&d[1]), ["1×28×28", "512", "256", "1"]);
    }
}
