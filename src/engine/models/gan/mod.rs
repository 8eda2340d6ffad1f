//! GAN: a generator G(z) and a discriminator (critic) D(x), each with its own parameters and
//! Adam. The objective ([`GanLoss`]) is minimax or non-saturating cross-entropy (from logits),
//! hinge, or Wasserstein with gradient penalty; D takes `d_steps` steps per G step. With
//! `classes` > 0 it is conditional ([`conditional`]: the one-hot into G, projection in D).

pub mod augment;
pub mod conditional;
mod config;
mod loss;
pub mod mbstd;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use augment::AugmentPolicy;
pub use config::{GanConfig, GanOutput, MAX_D_STEPS, MAX_GP_EVERY, PRESETS};
pub use loss::{gradient_penalty, GanLoss};

use super::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use super::likelihood::{SampleScore, ScoreOptions, ScoreSetup};
use super::optim::{grads_finite, Adam, AdamConfig};
use super::{
    collect_bn, collect_state, restore_bn, restore_state, scalar, Batch, Family, GenerativeModel,
    HealthMonitor, LiveHyper, LossKey, Losses, ModelConfig, NetConfig, StepOutcome,
};
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

pub struct Gan {
    cfg: ModelConfig,
    gan: GanConfig,
    g_params: ParamSet,
    d_params: ParamSet,
    g_adam: Adam,
    d_adam: Adam,
    generator: Expand,
    d_trunk: Trunk,
    d_head: Linear,
    /// The critic again, on the same parameters, with ops whose gradients can be differentiated
    /// again: the gradient penalty's view (WGAN-GP only). `d_trunk` and `d_head` stay on the
    /// run's kernels for D(x) and D(G(z)), whose backward pass is first-order.
    d_penalty: Option<(Trunk, Linear)>,
    /// The penalty of the latest step that computed it (every `gp_every`-th D step), for the
    /// reported D loss in between.
    last_gp: f64,
    /// The class embedding of a conditional GAN's projection discriminator.
    projection: Option<conditional::Projection>,
    /// The discriminator follows the run's learning rate (no `disc_optim` of its own).
    d_shares_lr: bool,
}

impl Gan {
    pub fn new(gan: GanConfig, optim: AdamConfig, seed: u64, exec: &Exec) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gp = ParamSet::new(exec.clone());
        let mut dp = ParamSet::new(exec.clone());
        let (g_widths, d_widths) = gan.widths();
        let net = &gan.net;
        let generator = Expand::new(
            &mut gp,
            "generator",
            &NetConfig { activation: gan.generator_activation(), ..net.clone() },
            net.latent_dim + net.classes,
            &g_widths,
            gan.uses_batch_norm(),
            &mut rng,
        )?;
        let d_trunk =
            Trunk::new(&mut dp, "discriminator", net, &d_widths, gan.critic_batch_norm(), &mut rng)?;
        let feat = Trunk::out_dim(net.arch, net.input, &d_widths);
        let d_head = Linear::new(&mut dp, "discriminator.out", feat + gan.head_extra(), 1, &mut rng)?;
        // The gradient penalty differentiates D's input gradient again; the kernel seam says
        // which ops can do that. Only the penalty pays for them: D's first-order terms, about
        // 6× cheaper fused, keep the run's kernels (both views' gradients add up in one store).
        let d_penalty = if gan.gan_loss.second_order() {
            let twice = exec.twice_differentiable();
            Some((d_trunk.on(&twice)?, d_head.on(&twice)))
        } else {
            None
        };
        let projection = conditional::Projection::new(&mut dp, net, feat, &mut rng)?;
        let g_adam = Adam::new(optim, &gp)?;
        let d_adam = Adam::new(gan.disc_optim.unwrap_or(optim), &dp)?;
        let cfg = ModelConfig::Gan(gan.clone());
        let d_shares_lr = gan.disc_optim.is_none();
        Ok(Self {
            cfg,
            gan,
            g_params: gp,
            d_params: dp,
            g_adam,
            d_adam,
            generator,
            d_trunk,
            d_head,
            d_penalty,
            last_gp: 0.0,
            projection,
            d_shares_lr,
        })
    }

    /// Pixels `[B, D]` in [0, 1] → what D and G's output work in: 2x − 1 for a tanh GAN.
    fn to_d_space(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.gan.output {
            GanOutput::Sigmoid => x.clone(),
            GanOutput::Tanh => x.affine(2.0, -1.0)?,
        })
    }

    /// What D sees of `x: [B, D]` (D's space): DiffAugment's random translation (and cutout,
    /// per `augment_policy`) when the config asks for it, a fresh draw per call, the uncovered pixels set to the
    /// background (pixel 0); `x` itself otherwise. Training only: sampling and scoring read
    /// G and D unaugmented.
    fn augmented(&self, x: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
        if !self.gan.diff_augment {
            return Ok(x.clone());
        }
        let background = match self.gan.output {
            GanOutput::Sigmoid => 0.0,
            GanOutput::Tanh => -1.0,
        };
        let (translation, cutout) = self.gan.augment_policy.strengths();
        augment::diff_augment(x, self.gan.net.input, background, translation, cutout, rng)
    }

    /// `[B, latent (+ K)] → [B, D]` the generator's output in D's space (see
    /// [`Self::to_d_space`]); a conditional generator's input has the one-hot beside the noise.
    fn generate(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match self.gan.output {
            GanOutput::Sigmoid => self.generator.forward_pixels(z, train)?,
            GanOutput::Tanh => self.generator.forward_tanh(z, train)?,
        })
    }

    /// `[B, D] → [B]` D's raw outputs (logits, or a critic's scores), under the one-hot
    /// `hot: [B, K]` of a conditional GAN.
    fn d_logits(&self, x: &Tensor, hot: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let phi = self.d_trunk.forward(x, train)?; // [B, F]
        self.project(self.d_head.forward(&self.head_input(&phi)?)?.squeeze(1)?, &phi, hot)
    }

    /// What D's head reads of the trunk's features `phi: [B, F]`: `[B, F + 1]` with the
    /// minibatch standard deviation appended, `phi` itself otherwise. The projection of a
    /// conditional GAN reads `phi` alone.
    fn head_input(&self, phi: &Tensor) -> Result<Tensor> {
        if self.gan.minibatch_std {
            mbstd::append(phi)
        } else {
            Ok(phi.clone())
        }
    }

    /// Pixels `[B, D]` in [0, 1] of the generator's input `[B, latent (+ K)]`: the sigmoid, or
    /// (tanh + 1) / 2, of its last layer.
    fn pixels(&self, z: &Tensor) -> Result<Tensor> {
        Ok(match self.gan.output {
            GanOutput::Sigmoid => candle_nn::ops::sigmoid(&self.generator.forward(z, false)?)?,
            GanOutput::Tanh => self.generator.forward_tanh(z, false)?.affine(0.5, 0.5)?,
        }
        .detach())
    }

    /// `[B, D] → [B]` the critic's scores through its twice-differentiable view (the gradient
    /// penalty's; D's own ops where it has none).
    fn d_logits_twice(&self, x: &Tensor, hot: Option<&Tensor>, train: bool) -> Result<Tensor> {
        match &self.d_penalty {
            Some((trunk, head)) => {
                let phi = trunk.forward(x, train)?; // [B, F]
                self.project(head.forward(&self.head_input(&phi)?)?.squeeze(1)?, &phi, hot)
            }
            None => self.d_logits(x, hot, train),
        }
    }

    /// `b` noise vectors on the model's device.
    fn noise(&self, b: usize, rng: &mut StdRng) -> Result<Tensor> {
        Ok(self.exec().put(&normal_tensor(b, self.gan.net.latent_dim, 1.0, rng)?)?)
    }

    fn exec(&self) -> &Exec {
        &self.g_params.exec
    }

    /// D's loss on real `x` and detached generated `fake` (both `[B, D]` in D's space), under
    /// the one-hot `hot` of a conditional GAN, with the step's report. For WGAN-GP, a
    /// `penalty.weight` > 0 adds the gradient penalty on interpolates x̂ = εx + (1 − ε)x̃,
    /// ε ~ U(0, 1) per image, with that weight (λ, or kλ on a lazy step); at 0 the report's D
    /// loss adds λ times `penalty.last`, the latest penalty measured.
    fn d_objective(
        &self,
        x: &Tensor,
        fake: &Tensor,
        hot: Option<&Tensor>,
        train: bool,
        penalty: PenaltyDue,
        rng: &mut StdRng,
    ) -> Result<(Tensor, Losses)> {
        let PenaltyDue { weight: penalty_weight, last: last_gp } = penalty;
        let loss_kind = self.gan.gan_loss;
        let real_l = self.d_logits(x, hot, train)?;
        let fake_l = self.d_logits(fake, hot, train)?;
        let mut d_loss = loss_kind.d_loss(&real_l, &fake_l, self.gan.real_label)?;
        let mut losses = Losses::default();
        if loss_kind.probabilistic() {
            losses.set(LossKey::DReal, mean_sigmoid(&real_l)?);
            losses.set(LossKey::DFake, mean_sigmoid(&fake_l)?);
        } else {
            losses.set(LossKey::WEstimate, scalar(&(real_l.mean(0)? - fake_l.mean(0)?)?)?);
        }
        let mut reported = scalar(&d_loss)?;
        if loss_kind.second_order() {
            let mut gp_value = last_gp;
            if penalty_weight > 0.0 {
                let b = x.dims2()?.0;
                let eps: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
                let eps = self.exec().put(&Tensor::from_vec(eps, (b, 1), &candle_core::Device::Cpu)?)?;
                // [B, D]
                let x_hat = (x.broadcast_mul(&eps)? + fake.broadcast_mul(&(eps.neg()? + 1.0)?)?)?;
                let gp = gradient_penalty(&x_hat, |t| self.d_logits_twice(t, hot, train))?;
                gp_value = scalar(&gp)?;
                losses.set(LossKey::GradPenalty, gp_value);
                d_loss = (d_loss + (gp * penalty_weight)?)?;
            }
            reported += self.gan.gp_weight * gp_value;
        }
        losses.set(LossKey::DLoss, reported);
        // G's loss against this D, for the steps that do not update G.
        losses.set(LossKey::GLoss, scalar(&loss_kind.g_loss(&fake_l)?)?);
        Ok((d_loss, losses))
    }

    fn bns(&self) -> (Vec<&super::layers::BatchNorm>, Vec<&super::layers::BatchNorm>) {
        (self.generator.batch_norms(), self.d_trunk.batch_norms())
    }
}

fn mean_sigmoid(l: &Tensor) -> Result<f64> {
    scalar(&candle_nn::ops::sigmoid(l)?.mean(0)?)
}

/// The gradient penalty's part in one D objective: its weight on this step (0 on a lazy step
/// without it) and the latest measured value, which the report adds in between.
#[derive(Clone, Copy, Debug)]
struct PenaltyDue {
    weight: f64,
    last: f64,
}

impl GenerativeModel for Gan {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.g_params.count() + self.d_params.count()
    }

    /// One discriminator step on this batch; every `d_steps`-th step (counted by D's optimiser,
    /// so a resumed run keeps its phase) also one generator step, against the updated D.
    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome> {
        let x = &self.to_d_space(&self.exec().put(&batch.x)?)?;
        let (b, _) = x.dims2()?;
        let hot = self.batch_hot(batch, b)?; // fakes take the real images' labels
        let z = self.labelled(&self.noise(b, rng)?, hot.as_ref())?;
        let fake = self.generate(&z, true)?; // [B, D]

        // Lazy regularisation (Karras et al. 2020, StyleGAN2 §3.1): the penalty on every k-th
        // D step only, weighted k times, has the same expected gradient at a k-th of the cost.
        let k = self.gan.gp_every.max(1);
        let penalty_weight =
            if self.d_adam.step.is_multiple_of(k as u64) { self.gan.gp_weight * k as f64 } else { 0.0 };
        let (d_loss, mut losses) = self.d_objective(
            &self.augmented(x, rng)?,
            &self.augmented(&fake.detach(), rng)?,
            hot.as_ref(),
            true,
            PenaltyDue { weight: penalty_weight, last: self.last_gp },
            rng,
        )?;
        if let Some(gp) = losses.get(LossKey::GradPenalty) {
            self.last_gp = gp;
        }
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        let d_grads = self.d_params.backward(&d_loss)?;
        if !grads_finite(&self.d_params, &d_grads)? {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.d_adam.step(&self.d_params, &d_grads)?;
        if !self.d_adam.step.is_multiple_of(self.gan.d_steps.max(1) as u64) {
            return Ok(StepOutcome::Applied(losses));
        }

        // Generator step against the updated discriminator (as in the DCGAN reference). A
        // non-finite generator loss or gradient leaves the generator untouched; the
        // discriminator's finite update stands.
        let g_logits = self.d_logits(&self.augmented(&fake, rng)?, hot.as_ref(), true)?;
        let g_loss = self.gan.gan_loss.g_loss(&g_logits)?;
        losses.set(LossKey::GLoss, scalar(&g_loss)?);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        // D's parameter gradients are not wanted here: its fused layers skip them.
        self.d_params.side.set_frozen(true);
        let g_grads = self.g_params.backward(&g_loss);
        self.d_params.side.set_frozen(false);
        let g_grads = g_grads?;
        self.d_params.side.clear(); // what unfused layers (conv) still handed over
        if !grads_finite(&self.g_params, &g_grads)? {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.g_adam.step(&self.g_params, &g_grads)?;
        Ok(StepOutcome::Applied(losses))
    }

    /// The objective on held-out images, the gradient penalty measured on every batch.
    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses> {
        let x = &self.to_d_space(&self.exec().put(&batch.x)?)?;
        let (b, _) = x.dims2()?;
        let hot = self.batch_hot(batch, b)?;
        let z = self.labelled(&self.noise(b, rng)?, hot.as_ref())?;
        let fake = self.generate(&z, false)?.detach();
        Ok(self
            .d_objective(
                &x.detach(),
                &fake,
                hot.as_ref(),
                false,
                PenaltyDue { weight: self.gan.gp_weight, last: 0.0 },
                rng,
            )?
            .1)
    }

    fn encode(&self, _x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_class(z, None)
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_logits_class(z, None)
    }

    /// Pixels in [0, 1]: the sigmoid, or (tanh + 1) / 2, of the generator's last layer.
    fn decode_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let z = self.exec().put(z)?;
        let z = self.labelled(&z, self.hot(y, z.dim(0)?)?.as_ref())?;
        self.pixels(&z)
    }

    fn decode_mixed(&self, z: &Tensor, weights: &Tensor) -> Result<Option<Tensor>> {
        if self.gan.net.classes == 0 {
            return Ok(None);
        }
        let w = self.exec().put(weights)?; // the blend stands in for the one-hot
        Ok(Some(self.pixels(&self.labelled(&self.exec().put(z)?, Some(&w))?)?))
    }

    /// Logits whose sigmoid are [`Self::decode_class`]'s pixels: (tanh(a) + 1) / 2 = σ(2a).
    fn decode_logits_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let z = self.exec().put(z)?;
        let z = self.labelled(&z, self.hot(y, z.dim(0)?)?.as_ref())?;
        let a = self.generator.forward(&z, false)?.detach();
        Ok(match self.gan.output {
            GanOutput::Sigmoid => a,
            GanOutput::Tanh => (a * 2.0)?,
        })
    }

    /// D's output without a label: ψ(φ(x)) alone for a conditional GAN (see [`conditional`]).
    fn discriminate(&self, x: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.d_logits(&self.to_d_space(&self.exec().put(x)?)?, None, false)?.detach()))
    }

    fn learning_rate(&self) -> f64 {
        self.g_adam.config.lr
    }

    fn score_setup(&self, _opts: &ScoreOptions) -> Result<ScoreSetup> {
        Ok(ScoreSetup { likelihood: None, k: 0, batch: 256, max_rows: 0 })
    }

    /// The discriminator's logit of each image (not a density; see [`crate::engine::scoring`]),
    /// a conditional GAN's under the image's own label (ψ alone for an unlabelled image).
    fn score_batch(
        &self,
        x: &[f32],
        _setup: &ScoreSetup,
        _rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()> {
        let xt = Tensor::from_slice(x, (out.len(), self.gan.net.input.len()), self.exec().device())?;
        let labels: Vec<Option<u32>> = out.iter().map(|s| s.label).collect();
        let hot = self.hot_where_known(&labels)?;
        let logits = self
            .d_logits(&self.to_d_space(&xt)?, hot.as_ref(), false)?
            .detach()
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (s, l) in out.iter_mut().zip(logits) {
            s.disc_logit = Some(l as f64);
        }
        Ok(())
    }

    fn health_monitor(&self) -> Box<dyn HealthMonitor> {
        loss::health_monitor(self.gan.gan_loss)
    }

    /// The learning rate is G's, and D's too while D shares the run's Adam; D's own learning
    /// rate and the step ratio change alone.
    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()> {
        match hyper {
            LiveHyper::LearningRate => {
                self.g_adam.config.lr = value;
                if self.d_shares_lr {
                    self.d_adam.config.lr = value;
                }
            }
            LiveHyper::DiscLearningRate => {
                self.d_adam.config.lr = value;
                self.d_shares_lr = false;
            }
            LiveHyper::DiscSteps => {
                let n = value.round();
                if !(1.0..=MAX_D_STEPS as f64).contains(&n) {
                    let msg = format!("D steps per G step must be 1 to {MAX_D_STEPS} (got {value})");
                    return Err(EngineError::Config(msg));
                }
                self.gan.d_steps = n as usize;
            }
            LiveHyper::Beta => return Err(super::not_live(Family::Gan, hyper)),
        }
        Ok(())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.g_params, &self.g_adam, &mut out)?;
        collect_state(&self.d_params, &self.d_adam, &mut out)?;
        let (g, d) = self.bns();
        collect_bn("generator", &g, &mut out)?;
        collect_bn("discriminator", &d, &mut out)?;
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
