//! The GAN family's configuration, presets, capabilities and counts.

use serde::{Deserialize, Serialize};

use super::super::optim::AdamConfig;
use super::super::shapes::{conv_macs, expand_params, linear, mlp_macs, trunk_params};
use super::super::spec::{self, Part, PartRole};
use super::super::{
    Activation, AnomalyScore, Arch, Capabilities, Family, FamilyConfig, GenerativeModel, LiveHyper, LossKey,
    ModelConfig, NetConfig, Preset, ReconLoss, StepMacs, MAX_WIDTH,
};
use super::augment::AugmentPolicy;
use super::conditional::{generator_net, projection_params};
use super::{Gan, GanLoss};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

/// What the generator's output layer ends in, and so the range the discriminator sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanOutput {
    /// Pixels in (0, 1) straight from a sigmoid; D sees the data as it is. genlab's GANs before
    /// issue #15, kept for their checkpoints: on the digits the sigmoid's saturated background
    /// lets D win within a few epochs and G collapses to one image (PyTorch does the same).
    Sigmoid,
    /// tanh on data scaled to [−1, 1] (DCGAN's choice, the default): D sees 2x − 1, G's
    /// output is tanh and its pixels are (tanh + 1) / 2.
    Tanh,
}

impl GanOutput {
    /// What a GAN saved without this field had.
    pub(super) fn legacy() -> Self {
        GanOutput::Sigmoid
    }
}

/// A GAN. MLP: `net.hidden` are the generator's widths from the noise outwards and
/// `disc_hidden` the discriminator's from the image inwards. Conv: `net.hidden` are the
/// discriminator's channels per stride-2 layer and the generator mirrors them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GanConfig {
    #[serde(flatten)]
    pub net: NetConfig,
    /// The MLP discriminator's widths (a conv discriminator uses `net.hidden`).
    pub disc_hidden: Vec<usize>,
    pub gan_loss: GanLoss,
    /// Batch norm in conv GANs (DCGAN).
    pub batch_norm: bool,
    /// Configurations saved before this field existed had a sigmoid output.
    #[serde(default = "GanOutput::legacy")]
    pub output: GanOutput,
    /// Discriminator (critic) steps per generator step, each on its own batch (WGAN-GP's
    /// n_critic, 5 in the paper); 1 alternates.
    pub d_steps: usize,
    /// λ, the weight of WGAN-GP's gradient penalty (10 in the paper); other objectives ignore it.
    pub gp_weight: f64,
    /// The gradient penalty on every k-th D step only, weighted kλ (lazy regularisation,
    /// Karras et al. 2020); 1, the paper's and the default of older configurations, is every
    /// step.
    pub gp_every: usize,
    /// The discriminator's Adam; `None` shares the run's (the generator's).
    pub disc_optim: Option<AdamConfig>,
    /// The cross-entropy's target for real images: below 1 is one-sided label smoothing
    /// (Salimans et al. 2016 use 0.9); the hinge and Wasserstein objectives ignore it.
    pub real_label: f64,
    /// Batch norm in a conv discriminator when `batch_norm` is on; `false` keeps it in the
    /// generator only (a WGAN-GP critic never has it).
    #[serde(default = "yes")]
    pub disc_batch_norm: bool,
    /// DiffAugment (Zhao et al. 2020): random translation and cutout of real and generated
    /// images before D, in both players' steps (see [`super::augment`]); off in configurations
    /// saved without it.
    pub diff_augment: bool,
    /// Minibatch standard deviation (Karras et al. 2018): D's head also reads the spread of
    /// its features within a group of 4 images (see [`super::mbstd`]); off in configurations
    /// saved without it.
    pub minibatch_std: bool,
    /// Which transforms DiffAugment applies; configurations saved without it had translation
    /// and cutout.
    pub augment_policy: AugmentPolicy,
    /// The generator's hidden activation; `None` (configurations saved without it) uses
    /// `net.activation`, D's. DCGAN has ReLU in G and LeakyReLU(0.2) in D.
    pub g_activation: Option<Activation>,
}

fn yes() -> bool {
    true
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            disc_hidden: vec![512, 256],
            gan_loss: GanLoss::NonSaturating,
            batch_norm: false,
            output: GanOutput::Tanh,
            d_steps: 1,
            gp_weight: 10.0,
            gp_every: 1,
            disc_optim: None,
            real_label: 1.0,
            disc_batch_norm: true,
            diff_augment: false,
            minibatch_std: false,
            augment_policy: AugmentPolicy::TranslationCutout,
            g_activation: None,
        }
    }
}

/// The presets of this family (all with DCGAN's Adam: 2e-4, β₁ = 0.5).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mnist_mlp_gan",
        make: || (ModelConfig::Gan(GanConfig { net: mlp_gan_net(), ..GanConfig::default() }), dcgan_adam()),
        epochs: MLP_GAN_EPOCHS,
    },
    Preset {
        name: "mnist_dcgan",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                hidden: vec![64, 128],
                latent_dim: 100,
                activation: Activation::LeakyRelu,
                ..NetConfig::default()
            };
            (ModelConfig::Gan(GanConfig { net, batch_norm: true, ..GanConfig::default() }), dcgan_adam())
        },
        epochs: DCGAN_EPOCHS,
    },
    // The lesson pair (issue #16): `mnist_dcgan`'s layout with the minimax objective and with
    // WGAN-GP, trained for the same number of epochs; compare their quality curves in the run
    // overlay.
    Preset {
        name: "mnist_dcgan_minimax",
        make: || {
            let cfg = GanConfig {
                net: dcgan_net(),
                batch_norm: true,
                gan_loss: GanLoss::Minimax,
                ..GanConfig::default()
            };
            (ModelConfig::Gan(cfg), dcgan_adam())
        },
        epochs: LESSON_EPOCHS,
    },
    // WGAN-GP after Gulrajani et al. 2017 (Algorithm 1): λ = 10, Adam 1e-4, β = (0, 0.9); the
    // critic has no batch norm (the generator keeps it). Two departures, for a run of a few
    // minutes: the penalty is lazy (every 4th critic step, weighted 4λ; 2.3× cheaper per step
    // here), and n_critic is 2, not 5. With 5 the generator takes ~100 steps in the default run
    // and draws blobs (FD 1,182, 4/10 classes); with 2 it takes 252 and draws digits of every
    // class (FD 285, recall 0.49; the minimax twin collapses, FD 1,452, recall 0.001).
    Preset {
        name: "mnist_dcgan_wgan_gp",
        make: || {
            let cfg = GanConfig {
                net: dcgan_net(),
                batch_norm: true,
                gan_loss: GanLoss::WganGp,
                d_steps: 2,
                gp_weight: 10.0,
                gp_every: 4,
                ..GanConfig::default()
            };
            (ModelConfig::Gan(cfg), AdamConfig { lr: 1e-4, beta1: 0.0, beta2: 0.9, ..AdamConfig::default() })
        },
        epochs: LESSON_EPOCHS,
    },
    // The DCGAN paper's 64×64 layout (Radford et al. 2016, Fig. 1); expects 3×64×64 images
    // (`--resize 64 --channels 3` for a folder of another size). D: convs 3 → 64 → 128 → 256 →
    // 512 (4×4, stride 2; batch norm on all but the first) → linear → 1. G: z (100) → linear →
    // 512×4×4 (batch norm) → transposed convs 256, 128, 64 (batch norm) → 3. One departure: G
    // uses D's LeakyReLU(0.2) (`g_activation` unset) where the paper has ReLU (`g_activation:
    // Some(Relu)`, unmeasured here). G ends in tanh on data scaled to [−1, 1], as in the
    // paper. The paper's batch size is 128, genlab's default.
    Preset {
        name: "dcgan64",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                input: ImageShape::new(3, 64, 64),
                hidden: vec![64, 128, 256, 512],
                latent_dim: 100,
                activation: Activation::LeakyRelu,
                classes: 0,
            };
            (ModelConfig::Gan(GanConfig { net, batch_norm: true, ..GanConfig::default() }), dcgan_adam())
        },
        epochs: 10,
    },
];

/// Default runs (measured in the README): the MLP GAN needs many more epochs than the
/// DCGAN, at a fraction of the cost per step; both take about a minute on 2 idle cores. The
/// DCGAN measured worse at 20 epochs than at 10 (D pulls ahead again).
const MLP_GAN_EPOCHS: usize = 150;
const DCGAN_EPOCHS: usize = 10;

/// The most discriminator steps per generator step.
pub const MAX_D_STEPS: usize = 20;

/// The longest interval of the lazy gradient penalty, in D steps.
pub const MAX_GP_EVERY: usize = 16;

/// The lesson pair's epochs: about 3.7 minutes each on 2 idle cores (README, extrapolated
/// from `genlab bench`).
const LESSON_EPOCHS: usize = 8;

/// `mnist_mlp_gan`'s network (also the conditional presets').
pub(super) fn mlp_gan_net() -> NetConfig {
    NetConfig {
        hidden: vec![256, 512],
        latent_dim: 100,
        activation: Activation::LeakyRelu,
        ..NetConfig::default()
    }
}

/// `mnist_dcgan`'s network.
pub(super) fn dcgan_net() -> NetConfig {
    NetConfig {
        arch: Arch::Conv,
        hidden: vec![64, 128],
        latent_dim: 100,
        activation: Activation::LeakyRelu,
        ..NetConfig::default()
    }
}

pub(super) fn dcgan_adam() -> AdamConfig {
    AdamConfig { lr: 2e-4, beta1: 0.5, ..AdamConfig::default() }
}

impl FamilyConfig for GanConfig {
    fn family(&self) -> Family {
        Family::Gan
    }

    fn net(&self) -> &NetConfig {
        &self.net
    }

    fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: Family::Gan,
            encoder: false,
            discriminator: true,
            conditional: self.net.classes > 0,
            latent_dim: self.net.latent_dim,
            latent_name: "noise",
            live: vec![LiveHyper::LearningRate, LiveHyper::DiscLearningRate, LiveHyper::DiscSteps],
            loss_keys: self.gan_loss.loss_keys(),
            headline: LossKey::DLoss,
            anomaly_scores: vec![AnomalyScore::NegDiscLogit],
            likelihood: false,
            variational: false,
            sampler: false,
        }
    }

    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(EngineError::Config(m));
        if let Some(i) = self.disc_hidden.iter().position(|&w| w == 0) {
            return err(format!("discriminator layer {} has width 0", i + 1));
        }
        if let Some(&w) = self.disc_hidden.iter().find(|&&w| w > MAX_WIDTH) {
            return err(format!("a layer of width {w} is over the limit of {MAX_WIDTH}"));
        }
        if self.net.arch == Arch::Mlp && self.disc_hidden.is_empty() {
            return err("the discriminator needs at least one hidden layer".into());
        }
        if !(1..=MAX_D_STEPS).contains(&self.d_steps) {
            return err(format!("D steps per G step must be 1 to {MAX_D_STEPS} (got {})", self.d_steps));
        }
        if !(1..=MAX_GP_EVERY).contains(&self.gp_every) {
            return err(format!(
                "the gradient penalty's interval must be 1 to {MAX_GP_EVERY} D steps (got {})",
                self.gp_every
            ));
        }
        if !(self.gp_weight.is_finite() && self.gp_weight >= 0.0) {
            return err(format!(
                "the gradient penalty's weight must be a number ≥ 0 (got {})",
                self.gp_weight
            ));
        }
        if !(self.real_label > 0.5 && self.real_label <= 1.0) {
            return err(format!("the real label must be in (0.5, 1] (got {})", self.real_label));
        }
        if let Some(o) = &self.disc_optim {
            if !(o.lr.is_finite() && o.lr > 0.0) {
                return err(format!("the discriminator's learning rate must be positive (got {})", o.lr));
            }
            if !((0.0..1.0).contains(&o.beta1) && (0.0..1.0).contains(&o.beta2)) {
                return err("the discriminator's Adam betas must be in [0, 1)".into());
            }
        }
        Ok(())
    }

    /// Generator (noise → image) and discriminator (image → D(x)).
    fn network(&self) -> Vec<Part> {
        let (g_widths, d_widths) = self.widths();
        let mut g = vec![spec::boxed("noise z", self.net.latent_dim.to_string())];
        if self.net.classes > 0 {
            g.push(spec::boxed("class one-hot", self.net.classes.to_string()));
        }
        g.extend(spec::expand(&self.net, &g_widths));
        let mut d = spec::trunk(&self.net, &d_widths, "fc");
        if self.minibatch_std {
            d.push(spec::boxed("+ minibatch std", "1"));
        }
        if self.net.classes > 0 {
            d.push(spec::boxed("D(x, y) = ψ(φ) + e_y · φ", "1"));
        } else {
            d.push(spec::boxed("D(x)", "1"));
        }
        vec![
            Part { title: "Generator G", role: PartRole::Input, layers: g },
            Part { title: "Discriminator D", role: PartRole::Output, layers: d },
        ]
    }

    fn param_count(&self) -> u64 {
        let (g, d) = self.widths();
        let (d_trunk, feat) = trunk_params(&self.net, &d, self.critic_batch_norm());
        expand_params(&generator_net(&self.net), &g, self.uses_batch_norm())
            .saturating_add(d_trunk)
            .saturating_add(linear(feat + self.head_extra(), 1))
            .saturating_add(projection_params(&self.net, feat))
    }

    fn build(&self, optim: &AdamConfig, seed: u64, exec: &Exec) -> Result<Box<dyn GenerativeModel>> {
        Ok(Box::new(Gan::new(self.clone(), *optim, seed, exec)?))
    }

    fn recon_loss(&self) -> Option<ReconLoss> {
        None
    }

    fn recon_loss_mut(&mut self) -> Option<&mut ReconLoss> {
        None
    }

    fn kl_weight(&self) -> Option<f64> {
        None
    }

    fn beta_mut(&mut self) -> Option<&mut f64> {
        None
    }

    /// A step runs G forward and backward once (through D), and D forward on real, on detached
    /// fake and again on fake for G's loss: D's backward twice with parameter gradients, once
    /// for the input gradient only (G's step). Layers fed by data skip their input gradient.
    fn step_macs(&self) -> StepMacs {
        let net = &self.net;
        let (g_widths, d_widths) = self.widths();
        // A conditional generator also reads the one-hot (the projection's cost is negligible).
        let (d, l) = (net.input.len(), (net.latent_dim + net.classes) as u64);
        let (g_macs, d_macs, e1, g1) = match net.arch {
            Arch::Mlp => {
                let g: Vec<usize> =
                    std::iter::once(l as usize).chain(g_widths.iter().copied()).chain([d]).collect();
                let dd: Vec<usize> = std::iter::once(d).chain(d_widths.iter().copied()).chain([1]).collect();
                let e1 = (d * d_widths.first().copied().unwrap_or(1)) as u64;
                let g1 = l * g_widths.first().copied().unwrap_or(d) as u64;
                (mlp_macs(&g), mlp_macs(&dd), e1, g1)
            }
            Arch::Conv => {
                // D's stride-2 convs; G's transposed convs mirror them at the same cost.
                let (convs, feat) = conv_macs(net, &d_widths);
                let c0 = d_widths.first().copied().unwrap_or(net.input.channels);
                let e1 =
                    ((net.input.height / 2) * (net.input.width / 2) * c0 * net.input.channels * 16) as u64;
                // G: noise → the smallest feature map, then transposed convs mirroring D's.
                (feat * l + convs, convs + feat, e1, feat * l)
            }
        };
        // D's part runs every step, G's (and D's input gradient for it) every `d_steps`-th. The
        // gradient penalty adds D forward and backward on the interpolates, kept as a graph, and
        // the backward through that graph: about three times D's forward and backward again,
        // on every `gp_every`-th D step.
        let n = self.d_steps.max(1) as u64;
        let gp = if self.gan_loss.second_order() { 9 * d_macs / self.gp_every.max(1) as u64 } else { 0 };
        let d_part = 6 * d_macs - 2 * e1 + gp;
        let g_part = 3 * g_macs - g1 + 2 * d_macs;
        StepMacs { forward: g_macs + d_macs, train_step: d_part + g_part / n }
    }
}

impl GanConfig {
    /// The network, decided once: generator and discriminator widths, each from its own input
    /// side. Building ([`Gan::new`]), the counts and the diagram all read it.
    pub(super) fn widths(&self) -> (Vec<usize>, Vec<usize>) {
        match self.net.arch {
            Arch::Mlp => (self.net.hidden.clone(), self.disc_hidden.clone()),
            Arch::Conv => (self.net.hidden.iter().rev().copied().collect(), self.net.hidden.clone()),
        }
    }

    /// The features D's head reads beyond the trunk's: the minibatch standard deviation.
    pub(super) fn head_extra(&self) -> usize {
        usize::from(self.minibatch_std)
    }

    /// The generator's hidden activation: `g_activation`, else D's (`net.activation`).
    pub fn generator_activation(&self) -> Activation {
        self.g_activation.unwrap_or(self.net.activation)
    }

    pub(super) fn uses_batch_norm(&self) -> bool {
        self.batch_norm && self.net.arch == Arch::Conv
    }

    /// Batch norm in the discriminator: never in a WGAN-GP critic, whose penalty is defined per
    /// image and which batch statistics would couple (the paper uses no batch norm there; its
    /// MNIST critic has no normalisation at all, as here).
    pub(super) fn critic_batch_norm(&self) -> bool {
        self.uses_batch_norm() && self.disc_batch_norm && !self.gan_loss.second_order()
    }
}
