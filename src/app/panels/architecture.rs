//! The architecture editor: family, MLP or conv, presets, the layer list, losses, optimiser and
//! schedule, a diagram of the network with its live parameter count, and what is wrong with
//! the settings. While a run trains, only the learning rates, β and a GAN's D:G step ratio can change (live).

use egui::{DragValue, RichText};

use crate::app::actions::Action;
use crate::app::theme;
use crate::app::widgets::network_diagram::network_diagram;
use crate::engine::config::{preset, presets, RunConfig};
use crate::engine::data::ImageShape;
use crate::engine::models::gan::{AugmentPolicy, MAX_D_STEPS, MAX_GP_EVERY};
use crate::engine::models::{
    Activation, AdamConfig, AeConfig, Arch, BetaVaeConfig, Family, GanConfig, GanLoss, LiveHyper,
    ModelConfig, ReconLoss, VaeConfig, MAX_WIDTH,
};

pub struct ArchitectureCtx<'a> {
    /// A run is active: structural settings are locked.
    pub locked: bool,
    /// The loaded images' shape (presets adapt to it).
    pub shape: ImageShape,
    /// What keeps Train disabled, if anything.
    pub problem: Option<String>,
    pub actions: &'a mut Vec<Action>,
}

/// Did the user finish changing a dragged or typed value (not every frame of a drag)?
fn committed(r: &egui::Response) -> bool {
    (r.changed() && !r.dragged()) || r.drag_stopped()
}

pub fn architecture_ui(ui: &mut egui::Ui, cfg: &mut RunConfig, cx: ArchitectureCtx<'_>) {
    let ArchitectureCtx { locked, shape, problem, actions } = cx;
    ui.heading("Model");
    if locked {
        ui.label(
            RichText::new("Training: only the learning rates, β and the D:G step ratio can change now.")
                .weak()
                .small(),
        );
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
        if let Some(beta) = cfg.model.beta_mut() {
            let label = ui.label("β");
            let r = ui.add(DragValue::new(beta).speed(0.05).range(0.0..=1000.0).max_decimals(3));
            let r = r.labelled_by(label.id).on_hover_text("Weight of the KL term; can change while training");
            if locked && committed(&r) {
                actions.push(Action::SetBeta(*beta));
            }
            ui.end_row();
        }
        if let Some(g) = cfg.model.gan_mut() {
            gan_live_ui(ui, g, locked, actions);
        }
    });
    ui.add_enabled_ui(!locked, |ui| schedule_ui(ui, cfg));

    ui.separator();
    ui.horizontal(|ui| {
        ui.strong("Network");
        // Counted from the layer shapes, every frame: no model is built.
        let text = match cfg.model.validate() {
            Ok(()) => format!("{} parameters", group_digits(cfg.model.param_count_from_shapes())),
            Err(_) => "cannot be built".into(),
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
        // Tall enough for every family's presets without a scroll bar (egui's default is 200 px).
        egui::ComboBox::from_id_salt("preset")
            .selected_text(shown)
            .height(640.0)
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
        let mut family = cfg.model.family();
        egui::ComboBox::from_id_salt("family")
            .selected_text(family.label())
            .show_ui(ui, |ui| {
                for f in Family::ALL {
                    ui.selectable_value(&mut family, f, f.label());
                }
            })
            .response
            .labelled_by(label.id);
        if family != cfg.model.family() {
            cfg.model = cfg.model.with_family(family);
        }
        ui.end_row();

        ui.label("Network");
        ui.horizontal(|ui| {
            let before = cfg.model.net().arch;
            ui.selectable_value(&mut cfg.model.net_mut().arch, Arch::Mlp, "MLP");
            ui.selectable_value(&mut cfg.model.net_mut().arch, Arch::Conv, "Conv");
            if cfg.model.net().arch != before {
                // Widths and channels live on different scales: start from sensible ones.
                let mlp_widths = match &cfg.model {
                    ModelConfig::Gan(_) => vec![256, 512],
                    ModelConfig::Diffusion(_) => vec![32, 64],
                    ModelConfig::Autoencoder(_) | ModelConfig::Vae(_) | ModelConfig::BetaVae(_) => vec![400],
                };
                cfg.model.net_mut().hidden = match cfg.model.net().arch {
                    Arch::Conv => vec![32, 64],
                    Arch::Mlp => mlp_widths,
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

        let caps = cfg.model.capabilities();
        if caps.latent_is_setting() {
            let label = ui.label(if caps.latent_name == "noise" { "Noise dim" } else { "Latent dim" });
            ui.add(DragValue::new(&mut cfg.model.net_mut().latent_dim).range(0..=4096)).labelled_by(label.id);
            ui.end_row();
        }

        // Each family's own settings.
        let arch = cfg.model.net().arch;
        match &mut cfg.model {
            ModelConfig::Autoencoder(AeConfig { recon_loss, .. })
            | ModelConfig::Vae(VaeConfig { recon_loss, .. })
            | ModelConfig::BetaVae(BetaVaeConfig { recon_loss, .. }) => recon_loss_ui(ui, recon_loss),
            ModelConfig::Gan(g) => gan_ui(ui, g, arch),
            // Its own settings come with the diffusion views (issue #17).
            ModelConfig::Diffusion(_) => {}
        }
    });

    let (title, unit, disc) = match &cfg.model {
        ModelConfig::Gan(_) if arch_of(cfg) == Arch::Mlp => {
            ("Generator layers (from the noise)", "width", true)
        }
        ModelConfig::Gan(_) => ("Conv layers, stride 2 (D; G mirrors)", "channels", false),
        ModelConfig::Diffusion(_) => ("U-Net levels, stride 2 (the way up mirrors)", "channels", false),
        ModelConfig::Autoencoder(_) | ModelConfig::Vae(_) | ModelConfig::BetaVae(_) => match arch_of(cfg) {
            Arch::Mlp => ("Encoder layers (decoder mirrors)", "width", false),
            Arch::Conv => ("Conv layers, stride 2 (decoder mirrors)", "channels", false),
        },
    };
    ui.add_space(4.0);
    ui.label(RichText::new(title).strong());
    let max = if arch_of(cfg) == Arch::Conv { 1024 } else { MAX_WIDTH };
    layer_list(ui, &mut cfg.model.net_mut().hidden, "Layer", unit, max);
    if let (true, Some(g)) = (disc, cfg.model.gan_mut()) {
        ui.label(RichText::new("Discriminator layers (from the image)").strong());
        layer_list(ui, &mut g.disc_hidden, "D layer", "width", MAX_WIDTH);
    }
}

fn arch_of(cfg: &RunConfig) -> Arch {
    cfg.model.net().arch
}

fn recon_loss_ui(ui: &mut egui::Ui, loss: &mut ReconLoss) {
    let label = ui.label("Recon loss");
    egui::ComboBox::from_id_salt("recon_loss")
        .selected_text(match loss {
            ReconLoss::Bce => "Bernoulli (BCE)",
            ReconLoss::Mse => "squared error",
        })
        .show_ui(ui, |ui| {
            ui.selectable_value(loss, ReconLoss::Bce, "Bernoulli (BCE)");
            ui.selectable_value(loss, ReconLoss::Mse, "squared error");
        })
        .response
        .labelled_by(label.id);
    ui.end_row();
}

/// The GAN settings that can change while training, beside the learning rate: the D:G step
/// ratio and D's own learning rate (when D has its own Adam).
fn gan_live_ui(ui: &mut egui::Ui, g: &mut GanConfig, locked: bool, actions: &mut Vec<Action>) {
    let label = ui.label("D steps per G step");
    let r = ui.add(DragValue::new(&mut g.d_steps).range(1..=MAX_D_STEPS));
    let r = r
        .labelled_by(label.id)
        .on_hover_text("discriminator (critic) steps per generator step; can change while training");
    if locked && committed(&r) {
        actions.push(Action::SetHyper(LiveHyper::DiscSteps, g.d_steps as f64));
    }
    ui.end_row();
    if let Some(o) = &mut g.disc_optim {
        let label = ui.label("D learning rate");
        let speed = (o.lr * 0.02).max(1e-7);
        let r = ui.add(
            DragValue::new(&mut o.lr)
                .speed(speed)
                .range(1e-7..=1.0)
                .custom_formatter(|v, _| format!("{v:.1e}")),
        );
        let r = r
            .labelled_by(label.id)
            .on_hover_text("the discriminator's Adam step size; can change while training");
        if locked && committed(&r) {
            actions.push(Action::SetHyper(LiveHyper::DiscLearningRate, o.lr));
        }
        ui.end_row();
    }
}

fn gan_ui(ui: &mut egui::Ui, g: &mut GanConfig, arch: Arch) {
    let label = ui.label("GAN loss");
    egui::ComboBox::from_id_salt("gan_loss")
        .selected_text(g.gan_loss.label())
        .show_ui(ui, |ui| {
            for l in GanLoss::ALL {
                ui.selectable_value(&mut g.gan_loss, l, l.label());
            }
        })
        .response
        .on_hover_text("WGAN-GP: a critic without sigmoid or batch norm; its gradient penalty differentiates D's input gradient again and runs on candle's stock ops")
        .labelled_by(label.id);
    ui.end_row();
    if g.gan_loss == GanLoss::WganGp {
        let label = ui.label("gradient penalty λ");
        ui.add(DragValue::new(&mut g.gp_weight).range(0.0..=100.0).speed(0.1)).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("penalty every k D steps");
        ui.add(DragValue::new(&mut g.gp_every).range(1..=MAX_GP_EVERY))
            .on_hover_text("lazy regularisation (StyleGAN2): the penalty on every k-th D step, weighted kλ")
            .labelled_by(label.id);
        ui.end_row();
    }
    if g.gan_loss.probabilistic() {
        let label = ui.label("real label");
        ui.add(DragValue::new(&mut g.real_label).range(0.55..=1.0).speed(0.01))
            .on_hover_text(
                "one-sided label smoothing: the cross-entropy's target for real images (0.9 is usual)",
            )
            .labelled_by(label.id);
        ui.end_row();
    }
    ui.label("");
    ui.checkbox(&mut g.diff_augment, "DiffAugment").on_hover_text(
        "random translation (up to 1/8 of the side) and cutout (half the side) of real and generated images before D, in both players' steps (Zhao et al. 2020): D cannot memorise a small training set",
    );
    ui.end_row();
    if g.diff_augment {
        let label = ui.label("augment");
        egui::ComboBox::from_id_salt("augment_policy")
            .selected_text(g.augment_policy.label())
            .show_ui(ui, |ui| {
                for p in [AugmentPolicy::TranslationCutout, AugmentPolicy::Translation] {
                    ui.selectable_value(&mut g.augment_policy, p, p.label());
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
    }
    let label = ui.label("G activation");
    let shown = g.g_activation.map_or("as D's", |a| a.label());
    egui::ComboBox::from_id_salt("g_activation")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut g.g_activation, None, "as D's");
            for a in Activation::ALL {
                ui.selectable_value(&mut g.g_activation, Some(a), a.label());
            }
        })
        .response
        .on_hover_text("the generator's hidden activation (DCGAN: ReLU in G, LeakyReLU in D)")
        .labelled_by(label.id);
    ui.end_row();
    ui.label("");
    ui.checkbox(&mut g.minibatch_std, "minibatch std in D").on_hover_text(
        "D's head also reads how much its features vary within groups of 4 images (Karras et al. 2018): a generator that draws too few kinds of image is caught",
    );
    ui.end_row();
    ui.label("");
    let mut own = g.disc_optim.is_some();
    if ui.checkbox(&mut own, "D has its own Adam").changed() {
        g.disc_optim = own.then(AdamConfig::default);
    }
    ui.end_row();
    if let Some(o) = &mut g.disc_optim {
        let label = ui.label("D Adam β₁, β₂");
        ui.horizontal(|ui| {
            ui.add(DragValue::new(&mut o.beta1).range(0.0..=0.999).speed(0.01)).accessible_name("D Adam β₁");
            ui.add(DragValue::new(&mut o.beta2).range(0.0..=0.9999).speed(0.001))
                .accessible_name("D Adam β₂");
        })
        .response
        .labelled_by(label.id);
        ui.end_row();
    }
    if arch == Arch::Conv {
        ui.label("");
        ui.checkbox(&mut g.batch_norm, "Batch norm");
        ui.end_row();
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
        compute_ui(ui, cfg);
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

/// The device picker (only in a build with a GPU backend) and the kernel path.
fn compute_ui(ui: &mut egui::Ui, cfg: &mut RunConfig) {
    use crate::engine::device::{DeviceChoice, GPU_BUILD};
    use crate::engine::kernels::KernelPath;
    if GPU_BUILD {
        // Probing the GPUs opens them: once per process.
        static AVAILABLE: std::sync::OnceLock<Vec<DeviceChoice>> = std::sync::OnceLock::new();
        let available = AVAILABLE.get_or_init(DeviceChoice::available);
        let label = ui.label("Device");
        egui::ComboBox::from_id_salt("device")
            .selected_text(cfg.train.device.to_string())
            .show_ui(ui, |ui| {
                for d in available {
                    ui.selectable_value(&mut cfg.train.device, *d, d.to_string());
                }
            })
            .response
            .labelled_by(label.id)
            .on_hover_text("Where the next run computes; off the CPU every op is candle's stock one");
        ui.end_row();
    }
    let label = ui.label("Kernels");
    egui::ComboBox::from_id_salt("kernels")
        .selected_text(cfg.train.kernels.id())
        .show_ui(ui, |ui| {
            for k in KernelPath::ALL {
                ui.selectable_value(&mut cfg.train.kernels, k, k.id());
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text(
            "fused: genlab's hand-written CPU kernels (fast); reference: candle's stock ops, what a GPU runs (the same maths, slower on the CPU)",
        );
    ui.end_row();
}

/// 1234567 → "1,234,567".
pub fn group_digits(n: impl std::fmt::Display) -> String {
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
