//! Autoencoder, VAE and β-VAE: one encoder/decoder pair; the family decides whether the code
//! is a point (AE) or a Gaussian sampled with the reparameterisation z = μ + σ ⊙ ε (VAE).

use std::collections::HashMap;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use super::losses::kl_rows;
use super::optim::{grads_finite, Adam, AdamConfig};
use super::{
    collect_state, restore_state, scalar, GenerativeModel, Losses, ModelConfig, ReconLoss, StepOutcome,
};
use crate::engine::error::Result;
use crate::engine::kernels::{row_loss, RowLoss};

pub struct Vae {
    cfg: ModelConfig,
    params: ParamSet,
    adam: Adam,
    trunk: Trunk,
    /// μ head (the code itself for an autoencoder).
    mu: Linear,
    /// log σ² head (VAE only).
    logvar: Option<Linear>,
    decoder: Expand,
    beta: f64,
}

/// Intermediate results of one forward pass.
struct Forward {
    losses: Losses,
    loss: Tensor,
}

impl Vae {
    pub fn new(cfg: ModelConfig, optim: AdamConfig, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ps = ParamSet::default();
        let trunk = Trunk::new(&mut ps, "encoder", &cfg, &cfg.hidden, false, &mut rng)?;
        let feat = Trunk::out_dim(cfg.arch, cfg.input, &cfg.hidden);
        let mu = Linear::new(&mut ps, "encoder.mu", feat, cfg.latent_dim, &mut rng)?;
        let logvar = if cfg.family.is_variational() {
            Some(Linear::new(&mut ps, "encoder.logvar", feat, cfg.latent_dim, &mut rng)?)
        } else {
            None
        };
        let widths: Vec<usize> = cfg.hidden.iter().rev().copied().collect();
        let decoder = Expand::new(&mut ps, "decoder", &cfg, cfg.latent_dim, &widths, false, &mut rng)?;
        let adam = Adam::new(optim, &ps);
        let beta = cfg.effective_beta();
        Ok(Self { cfg, params: ps, adam, trunk, mu, logvar, decoder, beta })
    }

    /// `[B, D] → (μ, log σ²)`
    fn encode_t(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.trunk.forward(x, false)?;
        let mu = self.mu.forward(&h)?;
        let logvar = match &self.logvar {
            Some(l) => l.forward(&h)?,
            None => mu.zeros_like()?,
        };
        Ok((mu, logvar))
    }

    fn forward(&self, x: &Tensor, rng: &mut StdRng) -> Result<Forward> {
        let (b, _) = x.dims2()?;
        let (mu, logvar) = self.encode_t(x)?;
        let variational = self.logvar.is_some();
        let z = if variational {
            let eps = normal_tensor(b, self.cfg.latent_dim, 1.0, rng)?;
            (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)? // [B, L]
        } else {
            mu.clone()
        };
        let logits = self.decoder.forward(&z, true)?; // [B, D]
        let recon_rows = match self.cfg.recon_loss {
            ReconLoss::Bce => row_loss(&logits, x, RowLoss::BceWithLogits)?,
            ReconLoss::Mse => row_loss(&logits, x, RowLoss::SquaredError)?,
        };
        let recon = recon_rows.mean(0)?;
        let (loss, kl_v) = if variational {
            let kl = kl_rows(&mu, &logvar)?.mean(0)?;
            let kl_v = scalar(&kl)?;
            ((&recon + (kl * self.beta)?)?, Some(kl_v))
        } else {
            (recon.clone(), None)
        };
        let losses =
            Losses { loss: scalar(&loss)?, recon: Some(scalar(&recon)?), kl: kl_v, ..Default::default() };
        Ok(Forward { losses, loss })
    }
}

impl GenerativeModel for Vae {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.params.count()
    }

    fn train_step(&mut self, x: &Tensor, rng: &mut StdRng) -> Result<StepOutcome> {
        let f = self.forward(x, rng)?;
        if !f.losses.is_finite() {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        let grads = self.params.backward(&f.loss)?;
        if !grads_finite(&self.params, &grads) {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        self.adam.step(&self.params, &grads)?;
        Ok(StepOutcome::Applied(f.losses))
    }

    fn evaluate(&self, x: &Tensor, rng: &mut StdRng) -> Result<Losses> {
        Ok(self.forward(&x.detach(), rng)?.losses)
    }

    fn encode(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let (mu, lv) = self.encode_t(x)?;
        Ok(Some((mu.detach(), lv.detach())))
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.forward(z, false)?.detach())
    }

    fn learning_rate(&self) -> f64 {
        self.adam.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.adam.config.lr = lr;
    }

    fn set_beta(&mut self, beta: f64) {
        if self.cfg.family == super::Family::BetaVae {
            self.beta = beta;
            self.cfg.beta = beta;
        }
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.params, &self.adam, &mut out)?;
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        restore_state(&self.params, &mut self.adam, state)
    }

    fn optimizer_steps(&self) -> Vec<u64> {
        vec![self.adam.step]
    }

    fn set_optimizer_steps(&mut self, steps: &[u64]) {
        if let Some(&s) = steps.first() {
            self.adam.step = s;
        }
    }
}
