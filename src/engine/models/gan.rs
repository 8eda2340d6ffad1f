//! GAN: a generator G(z) and a discriminator D(x), each with its own parameters and Adam.
//! D maximises log D(x) + log(1 − D(G(z))); G minimises log(1 − D(G(z))) (minimax) or
//! −log D(G(z)) (non-saturating, the default). All cross-entropies are computed from logits.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use super::losses::softplus;
use super::optim::{grads_finite, Adam, AdamConfig};
use super::{
    collect_bn, collect_state, restore_bn, restore_state, scalar, GanLoss, GenerativeModel, Losses,
    ModelConfig, StepOutcome,
};
use crate::engine::error::Result;

pub struct Gan {
    cfg: ModelConfig,
    g_params: ParamSet,
    d_params: ParamSet,
    g_adam: Adam,
    d_adam: Adam,
    generator: Expand,
    d_trunk: Trunk,
    d_head: Linear,
}

impl Gan {
    pub fn new(cfg: ModelConfig, optim: AdamConfig, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gp = ParamSet::default();
        let mut dp = ParamSet::default();
        let bn = cfg.batch_norm && cfg.arch == super::Arch::Conv;
        let g_widths: Vec<usize> = match cfg.arch {
            super::Arch::Mlp => cfg.hidden.clone(),
            super::Arch::Conv => cfg.hidden.iter().rev().copied().collect(),
        };
        let d_widths = match cfg.arch {
            super::Arch::Mlp => cfg.disc_hidden.clone(),
            super::Arch::Conv => cfg.hidden.clone(),
        };
        let generator = Expand::new(&mut gp, "generator", &cfg, cfg.latent_dim, &g_widths, bn, &mut rng)?;
        let d_trunk = Trunk::new(&mut dp, "discriminator", &cfg, &d_widths, bn, &mut rng)?;
        let feat = Trunk::out_dim(cfg.arch, cfg.input, &d_widths);
        let d_head = Linear::new(&mut dp, "discriminator.out", feat, 1, &mut rng)?;
        let g_adam = Adam::new(optim, &gp);
        let d_adam = Adam::new(optim, &dp);
        Ok(Self { cfg, g_params: gp, d_params: dp, g_adam, d_adam, generator, d_trunk, d_head })
    }

    /// `[B, D] → [B]` logits.
    fn d_logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.d_head.forward(&self.d_trunk.forward(x, train)?)?.squeeze(1)?)
    }

    fn g_loss(&self, fake_logits: &Tensor) -> Result<Tensor> {
        Ok(match self.cfg.gan_loss {
            GanLoss::NonSaturating => softplus(&fake_logits.neg()?)?.mean(0)?, // −log σ(l)
            GanLoss::Minimax => softplus(fake_logits)?.neg()?.mean(0)?,        // log(1 − σ(l))
        })
    }

    /// D loss = −log σ(l_real) − log(1 − σ(l_fake)), mean over the batch.
    fn d_loss(real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        Ok((softplus(&real.neg()?)?.mean(0)? + softplus(fake)?.mean(0)?)?)
    }

    fn bns(&self) -> (Vec<&super::layers::BatchNorm>, Vec<&super::layers::BatchNorm>) {
        (self.generator.batch_norms(), self.d_trunk.batch_norms())
    }
}

fn mean_sigmoid(l: &Tensor) -> Result<f64> {
    scalar(&candle_nn::ops::sigmoid(l)?.mean(0)?)
}

impl GenerativeModel for Gan {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.g_params.count() + self.d_params.count()
    }

    fn train_step(&mut self, x: &Tensor, rng: &mut StdRng) -> Result<StepOutcome> {
        let (b, _) = x.dims2()?;
        let z = normal_tensor(b, self.cfg.latent_dim, 1.0, rng)?;
        let fake = self.generator.forward_pixels(&z, true)?; // [B, D]

        // Discriminator step on real and (detached) fake images.
        let real_l = self.d_logits(x, true)?;
        let fake_l = self.d_logits(&fake.detach(), true)?;
        let d_loss = Self::d_loss(&real_l, &fake_l)?;
        let mut losses = Losses {
            d_loss: Some(scalar(&d_loss)?),
            d_real: Some(mean_sigmoid(&real_l)?),
            d_fake: Some(mean_sigmoid(&fake_l)?),
            ..Default::default()
        };
        losses.loss = losses.d_loss.unwrap_or(f64::NAN);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        let d_grads = self.d_params.backward(&d_loss)?;
        if !grads_finite(&self.d_params, &d_grads) {
            return Ok(StepOutcome::NonFinite(losses));
        }

        // Generator step against the updated discriminator (as in the DCGAN reference). A
        // non-finite generator loss or gradient leaves the generator untouched; the
        // discriminator's finite update stands.
        self.d_adam.step(&self.d_params, &d_grads)?;
        let g_logits = self.d_logits(&fake, true)?;
        let g_loss = self.g_loss(&g_logits)?;
        losses.g_loss = Some(scalar(&g_loss)?);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        // D's parameter gradients are not wanted here: its fused layers skip them.
        self.d_params.side.set_frozen(true);
        let g_grads = self.g_params.backward(&g_loss);
        self.d_params.side.set_frozen(false);
        let g_grads = g_grads?;
        self.d_params.side.clear(); // what unfused layers (conv) still handed over
        if !grads_finite(&self.g_params, &g_grads) {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.g_adam.step(&self.g_params, &g_grads)?;
        Ok(StepOutcome::Applied(losses))
    }

    fn evaluate(&self, x: &Tensor, rng: &mut StdRng) -> Result<Losses> {
        let (b, _) = x.dims2()?;
        let z = normal_tensor(b, self.cfg.latent_dim, 1.0, rng)?;
        let fake = self.decode(&z)?;
        let real_l = self.d_logits(&x.detach(), false)?;
        let fake_l = self.d_logits(&fake, false)?;
        let d_loss = scalar(&Self::d_loss(&real_l, &fake_l)?)?;
        Ok(Losses {
            loss: d_loss,
            d_loss: Some(d_loss),
            g_loss: Some(scalar(&self.g_loss(&fake_l)?)?),
            d_real: Some(mean_sigmoid(&real_l)?),
            d_fake: Some(mean_sigmoid(&fake_l)?),
            ..Default::default()
        })
    }

    fn encode(&self, _x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.generator.forward(z, false)?.detach())
    }

    fn discriminate(&self, x: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.d_logits(x, false)?.detach()))
    }

    fn learning_rate(&self) -> f64 {
        self.g_adam.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.g_adam.config.lr = lr;
        self.d_adam.config.lr = lr;
    }

    fn set_beta(&mut self, _beta: f64) {}

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.g_params, &self.g_adam, &mut out)?;
        collect_state(&self.d_params, &self.d_adam, &mut out)?;
        let (g, d) = self.bns();
        collect_bn("generator", &g, &mut out);
        collect_bn("discriminator", &d, &mut out);
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        restore_state(&self.g_params, &mut self.g_adam, state)?;
        restore_state(&self.d_params, &mut self.d_adam, state)?;
        let (g, d) = self.bns();
        restore_bn("generator", &g, state)?;
        restore_bn("discriminator", &d, state)
    }

    fn optimizer_steps(&self) -> Vec<u64> {
        vec![self.g_adam.step, self.d_adam.step]
    }

    fn set_optimizer_steps(&mut self, steps: &[u64]) {
        if let [g, d] = steps {
            self.g_adam.step = *g;
            self.d_adam.step = *d;
        }
    }
}
