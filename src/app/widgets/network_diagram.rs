//! The network as boxes, one per layer with its output shape: encoder → z → decoder for
//! autoencoders and VAEs, G and D for GANs. [`diagram`] is pure; [`network_diagram`] draws it.

use egui::{Frame, Margin, RichText};

use crate::app::theme;
use crate::engine::models::spec::Part;
use crate::engine::models::ModelConfig;

/// The parts of the network `cfg` describes (its family lays them out).
pub fn diagram(cfg: &ModelConfig) -> Vec<Part> {
    cfg.network()
}

/// Draws the diagram as wrapped rows of boxes joined by arrows.
pub fn network_diagram(ui: &mut egui::Ui, cfg: &ModelConfig) {
    for part in diagram(cfg) {
        ui.label(RichText::new(part.title).small().weak());
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 3.0;
            let fill = theme::diagram_fill(ui, part.role);
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
    use crate::engine::models::{Arch, Family, NetConfig};

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

        let mut conv = vae.clone();
        *conv.net_mut() =
            NetConfig { arch: Arch::Conv, hidden: vec![32, 64], latent_dim: 16, ..NetConfig::default() };
        let d = diagram(&conv);
        assert_eq!(shapes(&d[0]), ["1×28×28", "32×14×14", "64×7×7"]);
        assert_eq!(shapes(&d[2]), ["64×7×7", "32×14×14", "1×28×28"]);

        let dcgan = conv.with_family(Family::Gan);
        let d = diagram(&dcgan);
        assert_eq!(shapes(&d[0]), ["16", "64×7×7", "32×14×14", "1×28×28"]);
        assert_eq!(shapes(&d[1]), ["1×28×28", "32×14×14", "64×7×7", "1"]);

        let mut gan = vae.with_family(Family::Gan);
        gan.net_mut().hidden = vec![256, 512];
        let d = diagram(&gan);
        assert_eq!(shapes(&d[0]), ["20", "256", "512", "1×28×28"]);
        assert_eq!(shapes(&d[1]), ["1×28×28", "512", "256", "1"]);
    }
}
