//! The architecture editor: family, MLP or conv, presets, the layer list, losses, optimiser and
//! schedule, a diagram of the network with its live parameter count, and what is wrong with
//! the settings. While a run trains, only the learning rate and β can change (live).

use egui::{DragValue, RichText};

use crate::app::actions::Action;
use crate::app::params::ParamCount;
use crate::app::theme;
use crate::app::widgets::network_diagram::network_diagram;
use crate::engine::config::{preset, RunConfig, presets};
use crate::engine::data::ImageShape;
use crate::engine::models::{Activation, Arch, Family, GanLoss, ReconLoss};

pub struct ArchitectureCtx<'a> {
    /// A run is active: structural settings are locked.
    pub locked: bool,
    /// The loaded images' shape (presets adapt to it).
    pub shape: ImageShape,
    pub params: ParamCount,
    /// What keeps Train disabled, if anything.
    pub problem: Option<String>,
    pub actions: &'a mut Vec<Action>,
}

/// Did the user finish changing a dragged or typed value (not every frame of a drag)?
fn committed(r: &egui::Response) -> bool {
    (r.changed() && !r.dragged()) || r.drag_stopped()
}

pub fn architecture_ui(ui: &mut egui::Ui, cfg: &mut RunConfig, cx: ArchitectureCtx<'_>) {
    let ArchitectureCtx { locked, shape, params, problem, actions } = cx;
    ui.heading("Model");
    if locked {
        ui.label(RichText::new("Training: only the learning rate and β can change now.").weak().small());
    }
    ui.add_enabled_ui(!locked, |ui| structure_ui(ui, cfg, shape, actions));
    ui.add_space(4.0);
    egui::Grid::new("optim_grid").num_columns(2).spacing([8.0, 4.0]).show(ui, |ui| {
        let label = ui.label("Learning rate");
        let lr = &mut cfg.optim.lr;
        let speed = (*lr * 0.02).max(1e-7);
        let r = ui.add(
            DragValue::new(lr).speed(speed).range(1e-7..=1.0).custom_formatter(|v, _| format!("{v:.1e}")),
        );
        let r = r.labelled_by(label.id).on_hover_text("Adam step size; can change while training");
        if locked && committed(&r) {
            actions.push(Action::SetLearningRate(cfg.optim.lr));
        }
        ui.end_row();
        if cfg.model.family() == Family::BetaVae {
            let label = ui.label("β");
            let r =
                ui.add(DragValue::new(&mut cfg.model.beta).speed(0.05).range(0.0..=1000.0).max_decimals(3));
            let r = r.labelled_by(label.id).on_hover_text("Weight of the KL term; can change while training");
            if locked && committed(&r) {
                actions.push(Action::SetBeta(cfg.model.beta));
            }
            ui.end_row();
        }
    });
    ui.add_enabled_ui(!locked, |ui| schedule_ui(ui, cfg));

    ui.separator();
    ui.horizontal(|ui| {
        ui.strong("Network");
        let text = match &params {
            ParamCount::Known(n) => format!("{} parameters", group_digits(*n)),
            ParamCount::Pending => "counting parameters…".into(),
            ParamCount::Invalid(_) => "cannot be built".into(),
        };
        ui.label(text);
    });
    network_diagram(ui, &cfg.model);
    if let Some(p) = problem {
        ui.add_space(4.0);
        egui::Frame::new().fill(theme::error_fill(ui)).corner_radius(4.0).inner_margin(6.0).show(ui, |ui| {
            ui.add(egui::Label::new(RichText::new(p).color(theme::error_text(ui))).wrap());
        });
    }
}

fn structure_ui(ui: &mut egui::Ui, cfg: &mut RunConfig, shape: ImageShape, actions: &mut Vec<Action>) {
    egui::Grid::new("model_grid").num_columns(2).spacing([8.0, 4.0]).show(ui, |ui| {
        let label = ui.label("Preset");
        let edited = preset(&cfg.preset, shape).is_none_or(|p| p != *cfg);
        let shown = if cfg.preset.is_empty() {
            "custom".to_string()
        } else if edited {
            format!("{} (edited)", cfg.preset)
        } else {
            cfg.preset.clone()
        };
        egui::ComboBox::from_id_salt("preset")
            .selected_text(shown)
            .show_ui(ui, |ui| {
                for name in presets() {
                    if ui.selectable_label(cfg.preset == name && !edited, name).clicked() {
                        actions.push(Action::ApplyPreset(name.to_string()));
                    }
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();

        let label = ui.label("Family");
        egui::ComboBox::from_id_salt("family")
            .selected_text(cfg.model.family().label())
            .show_ui(ui, |ui| {
                for f in Family::ALL {
                    ui.selectable_value(&mut cfg.model.family(), f, f.label());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();

        ui.label("Network");
        ui.horizontal(|ui| {
            let before = cfg.model.net().arch;
            ui.selectable_value(&mut cfg.model.net_mut().arch, Arch::Mlp, "MLP");
            ui.selectable_value(&mut cfg.model.net_mut().arch, Arch::Conv, "Conv");
            if cfg.model.net().arch != before {
                // Widths and channels live on different scales: start from sensible ones.
                cfg.model.net_mut().hidden = match (cfg.model.net().arch, cfg.model.family()) {
                    (Arch::Conv, _) => vec![32, 64],
                    (Arch::Mlp, Family::Gan) => vec![256, 512],
                    (Arch::Mlp, _) => vec![400],
                };
            }
        });
        ui.end_row();

        let label = ui.label("Activation");
        egui::ComboBox::from_id_salt("activation")
            .selected_text(cfg.model.net().activation.label())
            .show_ui(ui, |ui| {
                for a in Activation::ALL {
                    ui.selectable_value(&mut cfg.model.net_mut().activation, a, a.label());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();

        let is_gan = cfg.model.family() == Family::Gan;
        let label = ui.label(if is_gan { "Noise dim" } else { "Latent dim" });
        ui.add(DragValue::new(&mut cfg.model.net_mut().latent_dim).range(0..=4096)).labelled_by(label.id);
        ui.end_row();

        if is_gan {
            let label = ui.label("G loss");
            egui::ComboBox::from_id_salt("gan_loss")
                .selected_text(match cfg.model.gan_loss {
                    GanLoss::NonSaturating => "non-saturating",
                    GanLoss::Minimax => "minimax",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut cfg.model.gan_loss, GanLoss::NonSaturating, "non-saturating");
                    ui.selectable_value(&mut cfg.model.gan_loss, GanLoss::Minimax, "minimax");
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            if cfg.model.net().arch == Arch::Conv {
                ui.label("");
                ui.checkbox(&mut cfg.model.batch_norm, "Batch norm");
                ui.end_row();
            }
        } else {
            let label = ui.label("Recon loss");
            egui::ComboBox::from_id_salt("recon_loss")
                .selected_text(match cfg.model.recon_loss {
                    ReconLoss::Bce => "Bernoulli (BCE)",
                    ReconLoss::Mse => "squared error",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut cfg.model.recon_loss, ReconLoss::Bce, "Bernoulli (BCE)");
                    ui.selectable_value(&mut cfg.model.recon_loss, ReconLoss::Mse, "squared error");
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
        }
    });

    let m = &mut cfg.model;
    let (title, unit) = match (m.family, m.arch) {
        (Family::Gan, Arch::Mlp) => ("Generator layers (from the noise)", "width"),
        (Family::Gan, Arch::Conv) => ("Conv layers, stride 2 (D; G mirrors)", "channels"),
        (_, Arch::Mlp) => ("Encoder layers (decoder mirrors)", "width"),
        (_, Arch::Conv) => ("Conv layers, stride 2 (decoder mirrors)", "channels"),
    };
    ui.add_space(4.0);
    ui.label(RichText::new(title).strong());
    layer_list(ui, &mut m.hidden, "Layer", unit, if m.arch == Arch::Conv { 1024 } else { 16384 });
    if m.family == Family::Gan && m.arch == Arch::Mlp {
        ui.label(RichText::new("Discriminator layers (from the image)").strong());
        layer_list(ui, &mut m.disc_hidden, "D layer", "width", 16384);
    }
}

/// Editable widths with add / remove / move up / move down.
fn layer_list(ui: &mut egui::Ui, widths: &mut Vec<usize>, name: &str, unit: &str, max: usize) {
    let mut op: Option<(usize, i32)> = None; // (index, -1 up / +1 down / 0 remove)
    let n = widths.len();
    for (i, w) in widths.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            ui.label(format!("{name} {}", i + 1));
            ui.add(
                DragValue::new(w)
                    .range(0..=max)
                    .speed(if max > 2000 { 4.0 } else { 1.0 })
                    .suffix(format!(" {unit}")),
            )
            .accessible_name(format!("{name} {} {unit}", i + 1));
            if ui
                .add_enabled(i > 0, egui::Button::new(RichText::new("▲").monospace()).small())
                .on_hover_text(format!("Move {name} {} up", i + 1))
                .clicked()
            {
                op = Some((i, -1));
            }
            if ui
                .add_enabled(i + 1 < n, egui::Button::new(RichText::new("▼").monospace()).small())
                .on_hover_text(format!("Move {name} {} down", i + 1))
                .clicked()
            {
                op = Some((i, 1));
            }
            if ui
                .add(egui::Button::new(RichText::new("×").monospace()).small())
                .on_hover_text(format!("Remove {name} {}", i + 1))
                .clicked()
            {
                op = Some((i, 0));
            }
        });
    }
    match op {
        Some((i, 0)) => {
            widths.remove(i);
        }
        Some((i, -1)) => widths.swap(i, i - 1),
        Some((i, _)) => widths.swap(i, i + 1),
        None => {}
    }
    if ui.button(if name == "Layer" { "Add layer".to_string() } else { format!("Add {name}") }).clicked() {
        let w = widths.last().copied().unwrap_or(if unit == "channels" { 32 } else { 256 });
        widths.push(w);
    }
}

fn schedule_ui(ui: &mut egui::Ui, cfg: &mut RunConfig) {
    egui::Grid::new("schedule_grid").num_columns(2).spacing([8.0, 4.0]).show(ui, |ui| {
        ui.label("Adam β₁, β₂");
        ui.horizontal(|ui| {
            ui.add(DragValue::new(&mut cfg.optim.beta1).speed(0.005).range(0.0..=0.999).max_decimals(3))
                .accessible_name("Adam beta1");
            ui.add(DragValue::new(&mut cfg.optim.beta2).speed(0.0005).range(0.0..=0.99999).max_decimals(5))
                .accessible_name("Adam beta2");
        });
        ui.end_row();
        let label = ui.label("Batch size");
        ui.add(DragValue::new(&mut cfg.train.batch_size).range(1..=65536)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Epochs");
        ui.add(DragValue::new(&mut cfg.train.epochs).range(1..=100_000)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("Seed");
        ui.add(DragValue::new(&mut cfg.train.seed)).labelled_by(label.id);
        ui.end_row();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let label = ui.label("Threads");
        ui.add(DragValue::new(&mut cfg.train.threads).range(1..=cores.max(1)))
            .labelled_by(label.id)
            .on_hover_text("Threads for the tensor maths; 1 leaves a core for the window");
        ui.end_row();
        let label = ui.label("Rewind every");
        ui.add(DragValue::new(&mut cfg.train.keep_every).range(0..=1_000_000).suffix(" steps"))
            .labelled_by(label.id)
            .on_hover_text("Steps between the rewind points the Training tab can go back to (0: none)");
        ui.end_row();
        let label = ui.label("Rewind points kept");
        ui.add_enabled(cfg.train.keep_every > 0, DragValue::new(&mut cfg.train.keep_count).range(2..=100))
            .labelled_by(label.id)
            .on_hover_text("At most this many, on disk; past it older ones are thinned (the first is kept)");
        ui.end_row();
    });
}

/// 1234567 → "1,234,567".
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_grouped() {
        assert_eq!(super::group_digits(652_824), "652,824");
        assert_eq!(super::group_digits(1_000), "1,000");
        assert_eq!(super::group_digits(999), "999");
    }
}
