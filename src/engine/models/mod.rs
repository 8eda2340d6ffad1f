//! Models: a serde [`ModelConfig`] (with named presets) → a [`GenerativeModel`].
//!
//! Families: autoencoder, VAE, β-VAE ([`vae`]) and GAN ([`gan`]), each as an MLP or a
//! DCGAN-style convolutional net. Every model works on flattened images `[B, C·H·W]` in [0, 1]
//! and reports its losses per image in nats.
//!
//! A family is one file: its configuration type, presets, capabilities, parameter and FLOP
//! counts and its model live there. This file holds what they share and the one exhaustive
//! match per question ([`ModelConfig`]'s methods) that sends it to the family.

mod capabilities;
pub mod cvae;
pub mod diffusion;
pub mod gan;
pub mod layers;
pub mod legacy;
pub mod likelihood;
mod loss_key;
pub mod losses;
mod net;
pub mod optim;
mod shapes;
pub mod spec;
mod state;
pub mod vae;

use std::collections::HashMap;
use std::fmt;

use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use capabilities::{AnomalyScore, Capabilities, LiveHyper};
pub use diffusion::DiffusionConfig;
pub use gan::{GanConfig, GanLoss, GanOutput};
use likelihood::{SampleScore, ScoreOptions, ScoreSetup};
pub use loss_key::{Axis, LossKey, Losses};
pub use net::{Activation, Arch, NetConfig, ReconLoss, MAX_CLASSES, MAX_WIDTH};
pub use optim::AdamConfig;
pub(crate) use state::{collect_bn, collect_state, restore_bn, restore_state, scalar};
pub use vae::{AeConfig, BetaVaeConfig, VaeConfig};

use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

/// The kind of generative model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Deterministic encoder and decoder; loss = reconstruction.
    Autoencoder,
    /// Loss = reconstruction + KL(q(z|x) ‖ N(0, I)).
    Vae,
    /// A VAE whose KL term is weighted by β.
    BetaVae,
    /// Generator against discriminator.
    Gan,
    /// A denoiser trained to undo a noising process (DDPM or flow matching).
    Diffusion,
}

impl Family {
    pub const ALL: [Family; 5] =
        [Family::Autoencoder, Family::Vae, Family::BetaVae, Family::Gan, Family::Diffusion];

    pub fn label(&self) -> &'static str {
        match self {
            Family::Autoencoder => "Autoencoder",
            Family::Vae => "VAE",
            Family::BetaVae => "β-VAE",
            Family::Gan => "GAN",
            Family::Diffusion => "Diffusion",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What every family's configuration type answers: all that the rest of genlab asks of a
/// family. A family implements it in its own file; [`ModelConfig::family_config`] is the one
/// match that finds it.
pub trait FamilyConfig {
    fn family(&self) -> Family;
    fn net(&self) -> &NetConfig;
    fn net_mut(&mut self) -> &mut NetConfig;
    /// Size of the latent (or noise) vector a model of this configuration decodes.
    fn latent_dim(&self) -> usize {
        self.net().latent_dim
    }
    /// What a model of this configuration offers.
    fn capabilities(&self) -> Capabilities;
    /// The family's own checks (the shared ones are [`NetConfig::validate`]).
    fn validate(&self) -> Result<()>;
    /// Trainable parameters from the layer shapes (saturating; no model is built).
    fn param_count(&self) -> u64;
    /// Multiply-adds per image of a forward pass and of a training step.
    fn step_macs(&self) -> StepMacs;
    /// Its parts and layers, for the diagram.
    fn network(&self) -> Vec<spec::Part>;
    /// Its model, weights drawn from `seed` (the configuration is already valid).
    fn build(&self, optim: &AdamConfig, seed: u64, exec: &Exec) -> Result<Box<dyn GenerativeModel>>;
    /// The reconstruction loss of a family that reconstructs.
    fn recon_loss(&self) -> Option<ReconLoss>;
    fn recon_loss_mut(&mut self) -> Option<&mut ReconLoss>;
    /// The KL weight in force, for a family with a KL term.
    fn kl_weight(&self) -> Option<f64>;
    /// β, for a family whose KL weight is a setting.
    fn beta_mut(&mut self) -> Option<&mut f64>;

    /// Takes another family's network when the family is switched ([`ModelConfig::with_family`]);
    /// a family whose network must have a particular shape keeps what it needs.
    fn take_net(&mut self, net: &NetConfig) {
        *self.net_mut() = net.clone();
    }
}

/// Everything that decides a model's structure and loss: one configuration type per family.
/// Serialised with a `"family"` tag beside the family's fields, which is also how checkpoints
/// written before this type was an enum stored it (their other families' fields are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum ModelConfig {
    Autoencoder(vae::AeConfig),
    Vae(vae::VaeConfig),
    BetaVae(vae::BetaVaeConfig),
    Gan(gan::GanConfig),
    Diffusion(diffusion::DiffusionConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::Vae(vae::VaeConfig::default())
    }
}

impl Family {
    /// A configuration of this family with its defaults.
    pub fn default_config(self) -> ModelConfig {
        match self {
            Family::Autoencoder => ModelConfig::Autoencoder(Default::default()),
            Family::Vae => ModelConfig::Vae(Default::default()),
            Family::BetaVae => ModelConfig::BetaVae(Default::default()),
            Family::Gan => ModelConfig::Gan(Default::default()),
            Family::Diffusion => ModelConfig::Diffusion(Default::default()),
        }
    }
}

impl ModelConfig {
    /// The family's configuration, through the trait every family implements.
    pub fn family_config(&self) -> &dyn FamilyConfig {
        match self {
            ModelConfig::Autoencoder(c) => c,
            ModelConfig::Vae(c) => c,
            ModelConfig::BetaVae(c) => c,
            ModelConfig::Gan(c) => c,
            ModelConfig::Diffusion(c) => c,
        }
    }

    pub fn family_config_mut(&mut self) -> &mut dyn FamilyConfig {
        match self {
            ModelConfig::Autoencoder(c) => c,
            ModelConfig::Vae(c) => c,
            ModelConfig::BetaVae(c) => c,
            ModelConfig::Gan(c) => c,
            ModelConfig::Diffusion(c) => c,
        }
    }

    pub fn family(&self) -> Family {
        self.family_config().family()
    }

    pub fn net(&self) -> &NetConfig {
        self.family_config().net()
    }

    pub fn net_mut(&mut self) -> &mut NetConfig {
        self.family_config_mut().net_mut()
    }

    /// The reconstruction loss, for the families that reconstruct.
    pub fn recon_loss(&self) -> Option<ReconLoss> {
        self.family_config().recon_loss()
    }

    pub fn recon_loss_mut(&mut self) -> Option<&mut ReconLoss> {
        self.family_config_mut().recon_loss_mut()
    }

    /// β, for the family that weights its KL term by a setting (a plain VAE's is always 1).
    pub fn beta_mut(&mut self) -> Option<&mut f64> {
        self.family_config_mut().beta_mut()
    }

    /// The KL weight in force: β for a β-VAE, 1 for a VAE; `None` without a KL term.
    pub fn kl_weight(&self) -> Option<f64> {
        self.family_config().kl_weight()
    }

    /// The GAN's own settings.
    pub fn gan_mut(&mut self) -> Option<&mut gan::GanConfig> {
        match self {
            ModelConfig::Gan(c) => Some(c),
            ModelConfig::Autoencoder(_)
            | ModelConfig::Vae(_)
            | ModelConfig::BetaVae(_)
            | ModelConfig::Diffusion(_) => None,
        }
    }

    /// The image shape the model reads and writes.
    pub fn input(&self) -> ImageShape {
        self.net().input
    }

    pub fn latent_dim(&self) -> usize {
        self.family_config().latent_dim()
    }

    /// Classes the model is conditioned on (0 = unconditional).
    pub fn classes(&self) -> usize {
        self.net().classes
    }

    /// What a model of this configuration offers.
    pub fn capabilities(&self) -> Capabilities {
        self.family_config().capabilities()
    }

    /// The same network as a model of `family`: its shared settings (network, reconstruction
    /// loss, β) carried over where the new family has them, the rest at its defaults.
    pub fn with_family(&self, family: Family) -> ModelConfig {
        if family == self.family() {
            return self.clone();
        }
        let mut out = family.default_config();
        out.family_config_mut().take_net(self.net());
        // A family that cannot be conditioned yet gets the network without the labels.
        if !out.capabilities().conditional {
            out.net_mut().classes = 0;
        }
        if let (Some(from), Some(to)) = (self.recon_loss(), out.recon_loss_mut()) {
            *to = from;
        }
        if let (Some(from), Some(to)) = (self.kl_weight(), out.beta_mut()) {
            *to = from;
        }
        out
    }

    /// Checks the configuration; the message names the setting and says why.
    pub fn validate(&self) -> Result<()> {
        self.net().validate()?;
        self.family_config().validate()?;
        let classes = self.net().classes;
        if classes > 0 && !self.capabilities().conditional {
            return Err(EngineError::Config(format!(
                "a {} cannot be conditioned on classes (classes = {classes}; set it to 0)",
                self.family()
            )));
        }
        let params = self.param_count_from_shapes();
        if params > MAX_PARAMS {
            return Err(EngineError::Config(format!(
                "the model would have {params} parameters, over the limit of {MAX_PARAMS} (fewer or narrower layers, or smaller images)"
            )));
        }
        Ok(())
    }

    /// Number of trainable parameters, computed from the layer shapes without building the
    /// model (saturating, so any configuration gives an answer).
    pub fn param_count_from_shapes(&self) -> u64 {
        self.family_config().param_count()
    }

    /// The network's parts and layers, for the diagram.
    pub fn network(&self) -> Vec<spec::Part> {
        self.family_config().network()
    }

    /// Multiply-adds of one forward pass (every network once) for one image, counted from the
    /// layer shapes (×2 for FLOPs).
    pub fn forward_macs(&self) -> u64 {
        self.step_macs().forward
    }

    /// Multiply-adds per image of one training step, by the family's own schedule.
    pub fn step_macs(&self) -> StepMacs {
        self.family_config().step_macs()
    }
}

/// Multiply-adds per image of a training step, for FLOP counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepMacs {
    /// One forward pass of every network.
    pub forward: u64,
    /// Forward and backward passes of one step. A layer fed by data needs no input gradient,
    /// so its backward pass costs one product instead of two.
    pub train_step: u64,
}

/// The named presets of every family, in the order the app lists them.
pub fn preset_names() -> Vec<&'static str> {
    all_presets().map(|p| p.name).collect()
}

/// Preset `name` (model and optimiser), adapted to images of `input` shape (the MLP presets
/// take any shape; the conv presets keep their layers and need sizes divisible by 4).
pub fn preset(name: &str, input: ImageShape) -> Option<(ModelConfig, AdamConfig)> {
    let (mut model, optim) = (find_preset(name)?.make)();
    model.net_mut().input = input;
    Some((model, optim))
}

/// The image shape preset `name` is laid out for (1×28×28 for the MNIST presets, 3×64×64 for
/// the 64×64 ones): where its layers fit without adapting.
pub fn preset_input(name: &str) -> Option<ImageShape> {
    Some((find_preset(name)?.make)().0.input())
}

/// Epochs of preset `name`'s default run.
pub fn preset_epochs(name: &str) -> Option<usize> {
    Some(find_preset(name)?.epochs)
}

fn find_preset(name: &str) -> Option<&'static Preset> {
    all_presets().find(|p| p.name == name)
}

/// Every family's presets, in the order the app lists them.
fn all_presets() -> impl Iterator<Item = &'static Preset> {
    vae::PRESETS
        .iter()
        .chain(cvae::PRESETS)
        .chain(gan::PRESETS)
        .chain(gan::conditional::PRESETS)
        .chain(diffusion::PRESETS)
}

/// A named starting point of one family.
pub struct Preset {
    pub name: &'static str,
    pub make: fn() -> (ModelConfig, AdamConfig),
    /// Epochs of its default run.
    pub epochs: usize,
}

/// A batch of training images `x: [B, C·H·W]` in [0, 1] and, when the data has them, their
/// class labels `y: [B]` (u32).
#[derive(Clone, Debug)]
pub struct Batch {
    pub x: Tensor,
    pub y: Option<Tensor>,
}

impl Batch {
    /// A batch without labels.
    pub fn unlabelled(x: Tensor) -> Self {
        Batch { x, y: None }
    }
}

/// What a training step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The update was applied; the losses are those before it.
    Applied(Losses),
    /// A loss or gradient was NaN or infinite; nothing was changed.
    NonFinite(Losses),
}

/// A family's own rule for spotting a run that has gone wrong while its losses stay finite
/// (a GAN whose discriminator has won, say). The worker feeds it every step.
pub trait HealthMonitor: Send + Sync {
    /// Folds in one step's losses; `Some(message)` on the step the rule fires.
    fn observe(&mut self, losses: &Losses) -> Option<String>;
}

/// The monitor of a family with no health rule beyond finite losses.
pub struct NoHealthRule;

impl HealthMonitor for NoHealthRule {
    fn observe(&mut self, _losses: &Losses) -> Option<String> {
        None
    }
}

/// One interface for every family: train, encode, decode, sample, reconstruct, save.
pub trait GenerativeModel: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// What this model offers (its family decides).
    fn capabilities(&self) -> Capabilities {
        self.config().capabilities()
    }

    fn param_count(&self) -> usize;

    /// One optimisation step on `batch` (images `[B, C·H·W]` in [0, 1], labels if the data
    /// has them). Noise (ε, z) comes from `rng`. A non-finite loss or gradient leaves weights
    /// and optimiser state untouched.
    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome>;

    /// Losses on `batch` without updating anything (one ε / z draw from `rng`).
    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses>;

    /// `[B, D] → (μ, log σ²)`, each `[B, latent]` (an AE gives log σ² = 0); `None` for a model
    /// without an encoder (see [`Capabilities::encoder`]).
    fn encode(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor)>>;

    /// `[B, latent] → [B, D]` pixel values in [0, 1] (the GAN's generator for a GAN).
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.decode_logits(z)?)?)
    }

    /// `[B, latent] → [B, D]` decoder logits (σ of them are the pixel values): what a
    /// likelihood p(x|z) is computed from.
    fn decode_logits(&self, z: &Tensor) -> Result<Tensor>;

    /// Size of the latent (or noise) vector.
    fn latent_dim(&self) -> usize {
        self.config().latent_dim()
    }

    /// Decodes of the encoder's mean: `[B, D] → [B, D]`; `None` without an encoder.
    fn reconstruct(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self.encode(x)? {
            Some((mu, _)) => Ok(Some(self.decode(&mu)?)),
            None => Ok(None),
        }
    }

    /// A diffusion model's sampler path from the noise `z: [n, D]`: x_t and the predicted x̂₀
    /// at `columns` of its steps. `None` for a family without a sampler.
    fn trajectory(&self, z: &Tensor, columns: usize) -> Result<Option<diffusion::views::Trajectory>> {
        let _ = (z, columns);
        Ok(None)
    }

    /// A diffusion model's forward process: images `x: [B, D]` in [0, 1] noised to time
    /// t ∈ [0, 1] with noise from `seed`, `[B, D]` in [0, 1]. `None` for other families.
    fn noised(&self, x: &Tensor, t: f64, seed: u64) -> Result<Option<Tensor>> {
        let _ = (x, t, seed);
        Ok(None)
    }

    /// How a model with a sampler draws samples (see [`Capabilities::sampler`]); `None` for
    /// other families.
    fn sampler_settings(&self) -> Option<diffusion::SamplerSettings> {
        None
    }

    /// Changes how samples are drawn from now on (a model with a sampler); an error says
    /// what is wrong with `settings`, or that this family has no sampler.
    fn set_sampler(&mut self, settings: diffusion::SamplerSettings) -> Result<()> {
        let _ = settings;
        Err(EngineError::Config(format!("a {} model has no sampler to set", self.config().family())))
    }

    /// The training loss per timestep bucket ([`diffusion::views::TIMESTEP_BUCKETS`] equal
    /// ranges of t, from data to noise), a moving average over recent steps (NaN where no
    /// image has fallen yet); `None` for a family without timesteps.
    fn timestep_losses(&self) -> Option<Vec<f64>> {
        None
    }

    /// Classes this model is conditioned on (0 = unconditional; see [`Capabilities::conditional`]).
    fn classes(&self) -> usize {
        self.config().classes()
    }

    /// [`GenerativeModel::encode`] given the images' class labels `y: [B]` (u32). An
    /// unconditional model ignores them; a conditional one given `None` takes the labels of
    /// [`default_labels`].
    fn encode_class(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        let _ = y;
        self.encode(x)
    }

    /// [`GenerativeModel::decode`] under class labels `y: [B]` (u32): `[B, latent] → [B, D]`
    /// pixel values in [0, 1]. `None`, and any `y` for an unconditional model, decodes as
    /// [`GenerativeModel::decode`] does.
    fn decode_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let _ = y;
        self.decode(z)
    }

    /// [`GenerativeModel::decode_class`] under a blend of classes: `weights: [B, K]` (f32, each
    /// row summing to 1) in place of the one-hot `[B, K]`, so the decoder can be walked from one
    /// class to another at fixed noise: `[B, latent] → [B, D]` in [0, 1]. `None` for a model
    /// that takes no blend (an unconditional one).
    fn decode_mixed(&self, z: &Tensor, weights: &Tensor) -> Result<Option<Tensor>> {
        let _ = (z, weights);
        Ok(None)
    }

    /// [`GenerativeModel::decode_logits`] under class labels `y: [B]` (u32).
    fn decode_logits_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let _ = y;
        self.decode_logits(z)
    }

    /// [`GenerativeModel::reconstruct`] under class labels `y: [B]`: encoded with the labels,
    /// decoded with them (the same images under other labels: "same style, other class").
    fn reconstruct_class(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Option<Tensor>> {
        match self.encode_class(x, y)? {
            Some((mu, _)) => Ok(Some(self.decode_class(&mu, y)?)),
            None => Ok(None),
        }
    }

    /// Discriminator logits `[B, D] → [B]`; `None` without a discriminator.
    fn discriminate(&self, x: &Tensor) -> Result<Option<Tensor>>;

    /// How this model scores images under `opts` (see [`crate::engine::scoring`]); an error
    /// names a setting it cannot work with.
    fn score_setup(&self, opts: &ScoreOptions) -> Result<ScoreSetup>;

    /// Fills in the scores of the images `x` (`[n, D]` values in [0, 1], row-major) in `out`
    /// (`n` records that already hold each image's index and label). Draws come from `rng`.
    fn score_batch(
        &self,
        x: &[f32],
        setup: &ScoreSetup,
        rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()>;

    /// The family's health rule, fresh for a new run.
    fn health_monitor(&self) -> Box<dyn HealthMonitor>;

    fn learning_rate(&self) -> f64;

    /// Sets a live hyperparameter; an error names one this family cannot change live
    /// (see [`Capabilities::live`]).
    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()>;

    /// Every tensor that defines the model and its optimiser, by name (for checkpoints).
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores what [`GenerativeModel::state`] returned; every name must be present.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
    /// Optimiser step counts (for checkpoints).
    fn optimizer_steps(&self) -> Vec<u64>;
    fn set_optimizer_steps(&mut self, steps: &[u64]);
}

/// The labels a conditional model uses when it is given none: row `i` gets class `i mod
/// classes`, so a grid drawn without a class shows every class in turn. `[n]` u32.
pub fn default_labels(n: usize, classes: usize) -> Result<Tensor> {
    let y: Vec<u32> = (0..n).map(|i| (i % classes.max(1)) as u32).collect();
    Ok(Tensor::from_vec(y, n, &candle_core::Device::Cpu)?)
}

/// `n` copies of class `class` as labels `[n]` (u32).
pub fn class_labels(n: usize, class: u32) -> Result<Tensor> {
    Ok(Tensor::from_vec(vec![class; n], n, &candle_core::Device::Cpu)?)
}

/// The error of a live change a family does not take.
pub(crate) fn not_live(family: Family, hyper: LiveHyper) -> EngineError {
    EngineError::Config(format!("a {family} cannot change its {} while training", hyper.label()))
}

/// The most trainable parameters a model may have (1 GiB of f32 weights; Adam holds twice
/// that again).
pub const MAX_PARAMS: u64 = 1 << 28;

/// Builds the model a configuration describes, with weights drawn from `seed` (the same on
/// every device), computing with `exec`.
pub fn build_model(
    cfg: &ModelConfig,
    optim: &AdamConfig,
    seed: u64,
    exec: &Exec,
) -> Result<Box<dyn GenerativeModel>> {
    cfg.validate()?;
    cfg.family_config().build(optim, seed, exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family is listed in `Family::ALL` (the app's family picker), its default
    /// configuration is of that family and valid, and every preset's family is listed.
    #[test]
    fn families_are_listed_and_their_defaults_build() {
        for f in Family::ALL {
            let cfg = f.default_config();
            assert_eq!(cfg.family(), f);
            assert_eq!(cfg.capabilities().family, f);
            let model =
                build_model(&cfg, &AdamConfig::default(), 0, &Exec::cpu()).expect("the default builds");
            assert_eq!(model.param_count() as u64, cfg.param_count_from_shapes(), "{f}");
        }
        for name in preset_names() {
            let (cfg, _) = preset(name, ImageShape::new(1, 28, 28)).expect("a preset");
            assert!(Family::ALL.contains(&cfg.family()), "{name}'s family is not in Family::ALL");
        }
    }
}
