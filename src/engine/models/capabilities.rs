//! What a model can do, as plain data computed by its family ([`super::ModelConfig::capabilities`])
//! and sent with the run's start: the app, the CLI, the worker and the benchmarks ask it instead
//! of the family's name, so a new family is described in its own file.

use serde::{Deserialize, Serialize};

use super::likelihood::SampleScore;
use super::{Axis, Family, LossKey};

/// A hyperparameter that can change while a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveHyper {
    /// Adam's learning rate (a GAN's generator's, and its discriminator's when they share one).
    LearningRate,
    /// The KL weight of a β-VAE.
    Beta,
    /// A GAN discriminator's (critic's) own learning rate.
    DiscLearningRate,
    /// A GAN's discriminator steps per generator step (a whole number ≥ 1).
    DiscSteps,
}

impl LiveHyper {
    pub fn label(self) -> &'static str {
        match self {
            LiveHyper::LearningRate => "learning rate",
            LiveHyper::Beta => "β",
            LiveHyper::DiscLearningRate => "D learning rate",
            LiveHyper::DiscSteps => "D steps per G step",
        }
    }
}

/// Which per-image score ranks images as anomalous (higher = more anomalous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyScore {
    /// The IWAE estimate of −log p(x) in nats (VAE).
    NegLogPx,
    /// −ELBO in nats (VAE): a bound, looser than the IWAE estimate.
    NegElbo,
    /// −log p(x) in bits per dimension: the IWAE estimate (VAE), the −ELBO (diffusion).
    BitsPerDim,
    /// The reconstruction error (AE), or E_q[−log p(x|z)] (VAE).
    Recon,
    /// Minus the discriminator's logit (GAN).
    NegDiscLogit,
}

impl AnomalyScore {
    /// This score of one image; NaN when it was not computed.
    pub fn of(self, s: &SampleScore) -> f64 {
        let v = match self {
            AnomalyScore::NegLogPx => s.neg_log_px,
            AnomalyScore::NegElbo => s.neg_elbo,
            AnomalyScore::BitsPerDim => s.bits_per_dim,
            AnomalyScore::Recon => s.recon,
            AnomalyScore::NegDiscLogit => s.disc_logit.map(|l| -l),
        };
        v.unwrap_or(f64::NAN)
    }

    /// Its name for people, with its unit.
    pub fn label(self) -> &'static str {
        match self {
            AnomalyScore::NegLogPx => "−log p(x) (IWAE, nats)",
            AnomalyScore::NegElbo => "−ELBO (nats)",
            AnomalyScore::BitsPerDim => "bits/dim",
            AnomalyScore::Recon => "reconstruction error",
            AnomalyScore::NegDiscLogit => "−discriminator logit",
        }
    }

    /// Its report column name (the GAN's is negated).
    pub fn column(self) -> &'static str {
        match self {
            AnomalyScore::NegLogPx => "iwae_nats",
            AnomalyScore::NegElbo => "elbo_nats",
            AnomalyScore::BitsPerDim => "bits_per_dim",
            AnomalyScore::Recon => "recon",
            AnomalyScore::NegDiscLogit => "-disc_logit",
        }
    }
}

/// What a model of one configuration offers.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    pub family: Family,
    /// Maps images to latents (`encode`, reconstructions, the encoded latent map).
    pub encoder: bool,
    /// Scores images with a discriminator or critic.
    pub discriminator: bool,
    /// Takes the class labels of its batches (conditional generation).
    pub conditional: bool,
    /// Draws prior samples from N(0, I) in a latent space of this size (the GAN's noise).
    pub latent_dim: usize,
    /// What the app calls the latent vector: "latent" or "noise".
    pub latent_name: &'static str,
    /// Hyperparameters that can change while training.
    pub live: Vec<LiveHyper>,
    /// The components every step reports, in plot order.
    pub loss_keys: Vec<LossKey>,
    /// The component a run is judged by in summaries (the minimised loss; D's for a GAN).
    pub headline: LossKey,
    /// Per-image anomaly scores, the default first.
    pub anomaly_scores: Vec<AnomalyScore>,
    /// Estimates log p(x) (importance-weighted, or a diffusion model's ELBO), so densities and
    /// bits/dim mean something.
    pub likelihood: bool,
    /// The encoder's posterior has a variance (a VAE): the latent map can show σ, and the
    /// samples' temperature scales it.
    pub variational: bool,
    /// Draws samples by running a sampler from noise (diffusion, flow matching): the app shows
    /// the denoising trajectory, the forward process, the sampler settings and the loss per
    /// timestep bucket.
    pub sampler: bool,
}

impl Capabilities {
    /// The default anomaly score.
    pub fn default_anomaly(&self) -> AnomalyScore {
        self.anomaly_scores.first().copied().unwrap_or(AnomalyScore::Recon)
    }

    /// Each latent coordinate is a direction worth a slider and a traversal, and scaling the
    /// prior's σ (the samples' temperature) is a knob worth offering. Not so for a sampler's
    /// noise: an image-sized field of independent values, one per pixel, none of which means
    /// anything alone, and a sampler trained from unit-variance noise only.
    pub fn latent_axes(&self) -> bool {
        !self.sampler
    }

    /// The latent (noise) size is the network's own setting (`net.latent_dim`); a sampler's
    /// noise has the size of what it generates.
    pub fn latent_is_setting(&self) -> bool {
        !self.sampler
    }

    pub fn is_live(&self, h: LiveHyper) -> bool {
        self.live.contains(&h)
    }

    /// The y-axis title of the loss plot.
    pub fn loss_axis(&self, log: bool) -> &'static str {
        let probabilities = self.loss_keys.iter().any(|k| k.axis() == Axis::Probability);
        if self.loss_keys.iter().any(|k| k.axis() == Axis::Score) {
            return if log { "loss · critic score (log scale)" } else { "loss · critic score (no unit)" };
        }
        match (probabilities, log) {
            (true, false) => "loss (nats) · D output",
            (true, true) => "loss · D output (log scale)",
            (false, false) => "loss (nats per image)",
            (false, true) => "loss (nats per image, log scale)",
        }
    }
}
