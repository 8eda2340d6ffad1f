//! Diffusion and flow matching (issue #17): a U-Net trained to undo a noising process, in pixel
//! space on data scaled to [−1, 1].
//!
//! - [`schedule`]: the two objectives (DDPM ε-prediction on the cosine schedule; flow matching
//!   with velocity prediction) and their samplers (DDPM ancestral, DDIM, Euler, Heun).
//! - [`unet`]: the denoiser.
//! - [`likelihood`]: the DDPM model's −ELBO in nats, its density score for outliers.
//! - [`model`]: the [`GenerativeModel`](super::GenerativeModel): training steps, and `decode`,
//!   which runs the configured sampler from the initial noise z (`[B, C·H·W]`).
//!
//! The model's "noise" is the sampler's starting point, so its size is the image's (C·H·W);
//! `net.latent_dim` is not used.
//!
//! **Class-conditional** when `net.classes` > 0 (Ho & Salimans 2022, classifier-free guidance):
//! the label's learned embedding is added to the time embedding, with one more row for "no
//! class"; training replaces each label by "no class" with probability
//! [`DiffusionConfig::label_dropout`], so one network learns both the conditional and the
//! unconditional prediction. Sampling mixes them with the guidance scale w
//! ([`DiffusionConfig::guidance`]): ε̂ = ε̂_uncond + w (ε̂_cond − ε̂_uncond) (the flow's velocity
//! likewise), both halves from one network call on the 2B stacked rows. w = 0 samples the
//! unconditional model, w = 1 the conditional one, w > 1 pushes samples towards what sets the
//! class apart. The likelihood ([`likelihood`]) is the unconditional model's: "no class". `net.hidden` are the channels after each stride-2
//! down-sampling, as in the other conv nets; [`DiffusionConfig::base_channels`] the channels at
//! full resolution.

pub mod guidance;
pub mod likelihood;
mod model;
pub mod schedule;
pub mod unet;
pub mod views;

use serde::{Deserialize, Serialize};

pub use model::Diffusion;
use schedule::MAX_SAMPLE_STEPS;
pub use schedule::{Objective, Sampler};
use unet::UNetShape;

use super::spec::{self, Part, PartRole};
use super::{
    Activation, AdamConfig, AnomalyScore, Arch, Capabilities, Family, FamilyConfig, GenerativeModel,
    LiveHyper, LossKey, ModelConfig, NetConfig, Preset, ReconLoss, StepMacs,
};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

/// A diffusion or flow-matching model with a pixel-space U-Net denoiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffusionConfig {
    /// `arch` must be Conv; `hidden`: channels after each down-sampling; `latent_dim` unused.
    #[serde(flatten)]
    pub net: NetConfig,
    pub objective: Objective,
    /// The U-Net's channels at full resolution.
    pub base_channels: usize,
    /// Width of the time embedding.
    pub time_dim: usize,
    /// How `decode` (and so every sample) is drawn; it must belong to the objective.
    pub sampler: Sampler,
    /// Network evaluations per sample (Heun: two per step).
    pub sample_steps: usize,
    /// DDIM's η: 0 deterministic, 1 as noisy as DDPM's ancestral sampler.
    pub eta: f64,
    /// A conditional model's chance, per training image, that its label is replaced by
    /// "no class" (what the unconditional half of guidance learns from). Unused without classes.
    pub label_dropout: f64,
    /// A conditional model's classifier-free guidance scale w at sampling (0: unconditional,
    /// 1: conditional, above 1: guided). Unused without classes.
    pub guidance: f64,
    /// The fewest channels per group-norm group. The time (and class) embedding is added to
    /// each channel just before a group norm, which removes a constant shared by a group: with
    /// one channel per group it removes the embedding entirely, with two it keeps only their
    /// difference. Configurations saved before this field had 1 (up to 8 groups).
    #[serde(default = "legacy_group_channels")]
    pub group_channels: usize,
    /// The decay of an exponential moving average of the weights, which every sample, view
    /// and density score uses (the training loss uses the weights themselves); 0: none, as in
    /// configurations saved before this field. Warmed up as min(decay, (1 + n)/(10 + n)) after
    /// n optimiser steps, so a short run averages over its last ~n/10 steps, a long one over
    /// the last 1/(1 − decay).
    #[serde(default)]
    pub ema_decay: f64,
}

fn legacy_group_channels() -> usize {
    1
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            net: NetConfig {
                arch: Arch::Conv,
                hidden: vec![32, 64],
                activation: Activation::Silu,
                ..NetConfig::default()
            },
            objective: Objective::Ddpm,
            base_channels: 16,
            time_dim: 128,
            sampler: Sampler::Ddim,
            sample_steps: 50,
            eta: 0.0,
            label_dropout: DEFAULT_LABEL_DROPOUT,
            guidance: DEFAULT_GUIDANCE,
            group_channels: 4,
            ema_decay: 0.999,
        }
    }
}

/// Label dropout of the conditional models: Ho & Salimans (2022) found 0.1 and 0.2 equally
/// good, and the unconditional half needs only enough images to be a fair baseline.
pub const DEFAULT_LABEL_DROPOUT: f64 = 0.1;
/// Guidance of the conditional presets: a middle ground between variety (w = 1) and samples
/// that show their class clearly (Ho & Salimans's w = 0.3–4 in their 1 + w convention).
pub const DEFAULT_GUIDANCE: f64 = 2.0;
/// The largest guidance scale a configuration may ask for (beyond it samples saturate).
pub const MAX_GUIDANCE: f64 = 20.0;

/// Sized for 2 CPU cores at 28×28 (see the README): 16 channels at 28×28, 32 at 14×14 and 64
/// at 7×7. The cost of a 3×3 conv grows with the pixels times the channels squared, so the
/// full-resolution levels are kept narrow and the parameters sit at 7×7, where they are cheap:
/// about 0.4 M parameters and 37 M multiply-adds per image.
///
/// The DDPM presets sample with DDPM's ancestral sampler in 100 steps: on `mnist_ddpm` after 20
/// epochs its samples had precision 0.70 against DDIM's 0.59 in 50 steps (README).
fn mnist(objective: Objective, sampler: Sampler) -> (ModelConfig, AdamConfig) {
    let sample_steps = if sampler == Sampler::Ddpm { 100 } else { 50 };
    let cfg = DiffusionConfig { objective, sampler, sample_steps, ..DiffusionConfig::default() };
    (ModelConfig::Diffusion(cfg), AdamConfig { lr: 5e-4, ..AdamConfig::default() })
}

/// [`mnist`] conditioned on the digit: the same U-Net with a `[11, time_dim]` class embedding
/// (1,408 more parameters), label dropout 0.1, guidance 2.
fn mnist_conditional(objective: Objective, sampler: Sampler) -> (ModelConfig, AdamConfig) {
    let (mut cfg, optim) = mnist(objective, sampler);
    cfg.net_mut().classes = DIGITS;
    (cfg, optim)
}

/// Classes of the conditional MNIST presets.
const DIGITS: usize = 10;

/// Epochs of the presets' default runs: 20 epochs of the built-in 8,000 training digits
/// (160,000 images, 1,260 steps of 128). `genlab train --preset mnist_ddpm --threads 2` trained
/// at 355 images/s on 2 idle cores (12 epochs in 270 s), so about 7.5 minutes; with the direct
/// 3×3 kernels the bench measures 535 images/s, about 5 minutes. At 4 epochs
/// the samples were strokes on speckle (FD 281, precision 0.49); at 20 they beat `mnist_vae`'s
/// FD and precision (README, "Diffusion and flow matching").
const MNIST_EPOCHS: usize = 20;

pub const PRESETS: &[Preset] = &[
    Preset { name: "mnist_ddpm", make: || mnist(Objective::Ddpm, Sampler::Ddpm), epochs: MNIST_EPOCHS },
    Preset { name: "mnist_flow", make: || mnist(Objective::Flow, Sampler::Euler), epochs: MNIST_EPOCHS },
    Preset {
        name: "mnist_cddpm",
        make: || mnist_conditional(Objective::Ddpm, Sampler::Ddpm),
        epochs: MNIST_EPOCHS,
    },
    Preset {
        name: "mnist_cflow",
        make: || mnist_conditional(Objective::Flow, Sampler::Euler),
        epochs: MNIST_EPOCHS,
    },
];

/// How a diffusion model draws its samples (see [`DiffusionConfig`]'s fields of the same
/// meaning); the app changes them live with `Command::SetSampler`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerSettings {
    pub sampler: Sampler,
    /// Network evaluations per sample (Heun: two per step).
    pub steps: usize,
    /// DDIM's η.
    pub eta: f64,
    /// Classifier-free guidance scale w (a conditional model; see [`DiffusionConfig::guidance`]).
    #[serde(default = "default_guidance")]
    pub guidance: f64,
}

fn default_guidance() -> f64 {
    DEFAULT_GUIDANCE
}

impl DiffusionConfig {
    pub fn sampler_settings(&self) -> SamplerSettings {
        SamplerSettings {
            sampler: self.sampler,
            steps: self.sample_steps,
            eta: self.eta,
            guidance: self.guidance,
        }
    }

    /// This configuration sampling with `s`, or the reason it cannot (a sampler of the other
    /// objective, steps, η or guidance out of range).
    pub fn with_sampler(&self, s: SamplerSettings) -> Result<Self> {
        let cfg = Self {
            sampler: s.sampler,
            sample_steps: s.steps,
            eta: s.eta,
            guidance: s.guidance,
            ..self.clone()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn unet(&self) -> UNetShape {
        UNetShape {
            input: self.net.input,
            base: self.base_channels,
            levels: self.net.hidden.clone(),
            time_dim: self.time_dim,
            classes: self.net.classes,
            group_channels: self.group_channels,
        }
    }
}

/// The widest U-Net level a configuration may ask for.
const MAX_CHANNELS: usize = 1024;

impl FamilyConfig for DiffusionConfig {
    fn family(&self) -> Family {
        Family::Diffusion
    }

    fn net(&self) -> &NetConfig {
        &self.net
    }

    fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    fn latent_dim(&self) -> usize {
        self.net.input.len()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: Family::Diffusion,
            encoder: false,
            discriminator: false,
            conditional: self.net.classes > 0,
            latent_dim: self.net.input.len(),
            latent_name: "noise",
            live: vec![LiveHyper::LearningRate],
            loss_keys: vec![LossKey::Loss],
            headline: LossKey::Loss,
            // DDPM scores images by its ELBO (a conditional model's unconditional, "no class"
            // prediction); the flow does not (see `model::no_flow_score`).
            anomaly_scores: match self.objective {
                Objective::Ddpm => vec![AnomalyScore::NegElbo, AnomalyScore::BitsPerDim, AnomalyScore::Recon],
                Objective::Flow => Vec::new(),
            },
            likelihood: self.objective == Objective::Ddpm,
            variational: false,
            sampler: true,
        }
    }

    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(EngineError::Config(m));
        if self.net.arch != Arch::Conv {
            return err("the diffusion denoiser is a U-Net: its network must be Conv".into());
        }
        if self.base_channels == 0 || self.base_channels > MAX_CHANNELS {
            return err(format!("base channels {}: between 1 and {MAX_CHANNELS}", self.base_channels));
        }
        if let Some(&c) = self.net.hidden.iter().find(|&&c| c > MAX_CHANNELS) {
            return err(format!("a U-Net level of {c} channels is over the limit of {MAX_CHANNELS}"));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return err(format!("EMA decay {}: at least 0 and below 1", self.ema_decay));
        }
        if self.group_channels == 0 || self.group_channels > MAX_CHANNELS {
            return err(format!(
                "{} channels per group-norm group: between 1 and {MAX_CHANNELS}",
                self.group_channels
            ));
        }
        if self.time_dim == 0 || self.time_dim > 4096 {
            return err(format!("time embedding width {}: between 1 and 4096", self.time_dim));
        }
        if self.sampler.objective() != self.objective {
            return err(format!(
                "the {} sampler does not sample a {:?} model (DDPM and DDIM sample DDPM; Euler and Heun the flow)",
                self.sampler.label(),
                self.objective
            ));
        }
        if self.sample_steps == 0 || self.sample_steps > MAX_SAMPLE_STEPS {
            return err(format!("{} sampling steps: between 1 and {MAX_SAMPLE_STEPS}", self.sample_steps));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return err(format!("η = {}: between 0 and 1", self.eta));
        }
        if !(0.0..=1.0).contains(&self.label_dropout) {
            return err(format!("label dropout {}: a probability between 0 and 1", self.label_dropout));
        }
        if !(0.0..=MAX_GUIDANCE).contains(&self.guidance) {
            return err(format!("guidance scale {}: between 0 and {MAX_GUIDANCE}", self.guidance));
        }
        Ok(())
    }

    fn param_count(&self) -> u64 {
        self.unet().param_count()
    }

    /// A step is one forward and one backward pass of the U-Net (the backward costs about
    /// twice the forward).
    fn step_macs(&self) -> StepMacs {
        let f = self.unet().forward_macs();
        StepMacs { forward: f, train_step: 3 * f }
    }

    /// Time embedding; the U-Net's way down and its way up.
    fn network(&self) -> Vec<Part> {
        let input = self.net.input;
        let at = |c: usize, k: usize| ImageShape::new(c, input.height >> k, input.width >> k).to_string();
        let mut time = vec![
            spec::boxed("t", "1"),
            spec::boxed("sinusoids", "32"),
            spec::boxed("time MLP", self.time_dim.to_string()),
        ];
        if self.net.classes > 0 {
            // Added to the time embedding; the extra row is "no class".
            time.push(spec::boxed(
                format!("+ class embedding ({} + none)", self.net.classes),
                self.time_dim.to_string(),
            ));
        }
        let mut down =
            vec![spec::boxed("noisy x_t", input.to_string()), spec::boxed("res", at(self.base_channels, 0))];
        for (i, &c) in self.net.hidden.iter().enumerate() {
            down.push(spec::boxed(format!("down{}", i + 1), at(c, i + 1)));
        }
        let k = self.net.hidden.len();
        let mut up =
            vec![spec::boxed("mid", at(self.net.hidden.last().copied().unwrap_or(self.base_channels), k))];
        for i in (0..k).rev() {
            let below = if i == 0 { self.base_channels } else { self.net.hidden[i - 1] };
            up.push(spec::boxed(format!("up{} + skip", i + 1), at(below, i)));
        }
        let target = match self.objective {
            Objective::Ddpm => "predicted ε",
            Objective::Flow => "predicted v",
        };
        up.push(spec::boxed(target, input.to_string()));
        vec![
            Part { title: "Time embedding", role: PartRole::Latent, layers: time },
            Part { title: "U-Net down", role: PartRole::Input, layers: down },
            Part { title: "U-Net up", role: PartRole::Output, layers: up },
        ]
    }

    /// The U-Net is conv-only: an MLP network keeps this family's default levels, taking the
    /// image shape and the classes alone.
    fn take_net(&mut self, net: &NetConfig) {
        if net.arch == Arch::Conv {
            self.net = net.clone();
        } else {
            self.net.input = net.input;
            self.net.classes = net.classes;
        }
    }

    fn build(&self, optim: &AdamConfig, seed: u64, exec: &Exec) -> Result<Box<dyn GenerativeModel>> {
        Ok(Box::new(Diffusion::new(self.clone(), *optim, seed, exec)?))
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
}

#[cfg(test)]
mod guidance_tests;
#[cfg(test)]
mod tests;
