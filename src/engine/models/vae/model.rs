//! The model of the three families: the encoder, the code's heads and the decoder, trained
//! on the ELBO (or the reconstruction alone), and scored by the importance-weighted bound.

use std::collections::HashMap;
use std::f64::consts::LN_2;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use super::{layout, Code};
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::{Exec, RowLoss};
use crate::engine::models::cvae::{beside, decoder_in, encoder_net, head_extra, one_hot};
use crate::engine::models::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use crate::engine::models::likelihood::{
    importance_weighted, kl_row, recon_error, Likelihood, SampleScore, ScoreOptions, ScoreSetup,
};
use crate::engine::models::losses::kl_rows;
use crate::engine::models::optim::{grads_finite, Adam, AdamConfig};
use crate::engine::models::{
    collect_state, not_live, restore_state, scalar, Arch, Batch, GenerativeModel, HealthMonitor, LiveHyper,
    LossKey, Losses, ModelConfig, NoHealthRule, ReconLoss, StepOutcome,
};

pub struct Vae {
    cfg: ModelConfig,
    recon_loss: ReconLoss,
    params: ParamSet,
    adam: Adam,
    trunk: Trunk,
    /// μ head (the code itself for an autoencoder).
    mu: Linear,
    /// log σ² head (VAE only).
    logvar: Option<Linear>,
    decoder: Expand,
    beta: f64,
    /// Classes it is conditioned on (0 = unconditional; see [`super::cvae`]).
    classes: usize,
}

/// Intermediate results of one forward pass.
struct Forward {
    losses: Losses,
    loss: Tensor,
}

impl Vae {
    /// `cfg` is an autoencoder's, a VAE's or a β-VAE's configuration.
    pub(super) fn new(
        cfg: ModelConfig,
        recon_loss: ReconLoss,
        code: Code,
        optim: AdamConfig,
        seed: u64,
        exec: &Exec,
    ) -> Result<Self> {
        let Code { variational, beta } = code;
        let net = cfg.net();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ps = ParamSet::new(exec.clone());
        let lay = layout(net, variational);
        let enc_net = encoder_net(net);
        let trunk = Trunk::new(&mut ps, "encoder", &enc_net, &lay.encoder, false, &mut rng)?;
        let feat = Trunk::out_dim(net.arch, enc_net.input, &lay.encoder) + head_extra(net);
        let mu = Linear::new(&mut ps, "encoder.mu", feat, net.latent_dim, &mut rng)?;
        let logvar = if variational {
            Some(Linear::new(&mut ps, "encoder.logvar", feat, net.latent_dim, &mut rng)?)
        } else {
            None
        };
        let decoder = Expand::new(&mut ps, "decoder", net, decoder_in(net), &lay.decoder, false, &mut rng)?;
        let adam = Adam::new(optim, &ps)?;
        let classes = net.classes;
        Ok(Self { cfg, recon_loss, params: ps, adam, trunk, mu, logvar, decoder, beta, classes })
    }

    /// The one-hot `[B, K]` of labels `y: [B]` for a conditional model (the default labels
    /// when `y` is `None`); `None` for an unconditional one.
    fn hot(&self, y: Option<&Tensor>, rows: usize) -> Result<Option<Tensor>> {
        if self.classes == 0 {
            return Ok(None);
        }
        Ok(Some(one_hot(y, rows, self.classes, self.params.exec.device())?))
    }

    /// `[B, D] → (μ, log σ²)`, with the one-hot `[B, K]` of a conditional model.
    fn encode_t(&self, x: &Tensor, hot: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let h = match (hot, self.cfg.net().arch) {
            (None, _) => self.trunk.forward(x, false)?,
            (Some(y), Arch::Mlp) => self.trunk.forward(&beside(x, y)?, false)?, // [B, D + K] in
            (Some(y), Arch::Conv) => beside(&self.trunk.forward(x, false)?, y)?, // [B, F + K]
        };
        let mu = self.mu.forward(&h)?;
        let logvar = match &self.logvar {
            Some(l) => l.forward(&h)?,
            None => mu.zeros_like()?,
        };
        Ok((mu, logvar))
    }

    /// `[B, L] → [B, D]` logits, with the one-hot `[B, K]` of a conditional model.
    fn decode_t(&self, z: &Tensor, hot: Option<&Tensor>, train: bool) -> Result<Tensor> {
        match hot {
            Some(y) => Ok(self.decoder.forward(&beside(z, y)?, train)?), // [B, L + K] in
            None => Ok(self.decoder.forward(z, train)?),
        }
    }

    fn forward(&self, batch: &Batch, rng: &mut StdRng) -> Result<Forward> {
        let x = &self.params.exec.put(&batch.x.detach())?;
        let (b, _) = x.dims2()?;
        if self.classes > 0 && batch.y.is_none() {
            return Err(EngineError::Config(format!(
                "this model is conditioned on {} classes and needs labelled images; the batch has no labels",
                self.classes
            )));
        }
        let hot = self.hot(batch.y.as_ref(), b)?;
        let (mu, logvar) = self.encode_t(x, hot.as_ref())?;
        let variational = self.logvar.is_some();
        let z = if variational {
            let eps = self.params.exec.put(&normal_tensor(b, self.cfg.latent_dim(), 1.0, rng)?)?;
            (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)? // [B, L]
        } else {
            mu.clone()
        };
        let logits = self.decode_t(&z, hot.as_ref(), true)?; // [B, D]
        let kind = match self.recon_loss {
            ReconLoss::Bce => RowLoss::BceWithLogits,
            ReconLoss::Mse => RowLoss::SquaredError,
        };
        let recon_rows = self.params.exec.row_loss(&logits, x, kind)?;
        let recon = recon_rows.mean(0)?;
        let (loss, kl_v) = if variational {
            let kl = kl_rows(&mu, &logvar)?.mean(0)?;
            let kl_v = scalar(&kl)?;
            ((&recon + (kl * self.beta)?)?, Some(kl_v))
        } else {
            (recon.clone(), None)
        };
        let mut losses = Losses::of(&[(LossKey::Loss, scalar(&loss)?), (LossKey::Recon, scalar(&recon)?)]);
        if let Some(kl) = kl_v {
            losses.set(LossKey::Kl, kl);
        }
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

    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome> {
        let f = self.forward(batch, rng)?;
        if !f.losses.is_finite() {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        let grads = self.params.backward(&f.loss)?;
        if !grads_finite(&self.params, &grads)? {
            return Ok(StepOutcome::NonFinite(f.losses));
        }
        self.adam.step(&self.params, &grads)?;
        Ok(StepOutcome::Applied(f.losses))
    }

    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses> {
        Ok(self.forward(batch, rng)?.losses)
    }

    fn encode(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        self.encode_class(x, None)
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_logits_class(z, None)
    }

    fn encode_class(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        let x = self.params.exec.put(x)?;
        let hot = self.hot(y, x.dim(0)?)?;
        let (mu, lv) = self.encode_t(&x, hot.as_ref())?;
        Ok(Some((mu.detach(), lv.detach())))
    }

    fn decode_logits_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let z = self.params.exec.put(z)?;
        let hot = self.hot(y, z.dim(0)?)?;
        Ok(self.decode_t(&z, hot.as_ref(), false)?.detach())
    }

    fn decode_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.decode_logits_class(z, y)?)?)
    }

    fn decode_mixed(&self, z: &Tensor, weights: &Tensor) -> Result<Option<Tensor>> {
        if self.classes == 0 {
            return Ok(None);
        }
        let (z, w) = (self.params.exec.put(z)?, self.params.exec.put(weights)?);
        let logits = self.decode_t(&z, Some(&w), false)?.detach(); // the blend stands in for the one-hot
        Ok(Some(candle_nn::ops::sigmoid(&logits)?))
    }

    fn learning_rate(&self) -> f64 {
        self.adam.config.lr
    }

    fn discriminate(&self, _x: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn health_monitor(&self) -> Box<dyn HealthMonitor> {
        Box::new(NoHealthRule)
    }

    fn score_setup(&self, opts: &ScoreOptions) -> Result<ScoreSetup> {
        if self.logvar.is_none() {
            let likelihood = Some(Likelihood::for_loss(self.recon_loss, false));
            return Ok(ScoreSetup { likelihood, k: 0, batch: 256, max_rows: 0 });
        }
        if opts.k == 0 {
            return Err(EngineError::Config("K (importance samples) must be at least 1".into()));
        }
        Ok(ScoreSetup {
            likelihood: Some(Likelihood::for_loss(self.recon_loss, opts.continuous_bernoulli)),
            k: opts.k,
            batch: (opts.max_rows / opts.k).clamp(1, 256),
            max_rows: opts.max_rows,
        })
    }

    /// AE: the training loss's reconstruction error at z = the code. VAE: −ELBO (β = 1), its
    /// reconstruction and KL terms, and the IWAE estimate of −log p(x) from `setup.k` draws.
    fn score_batch(
        &self,
        x: &[f32],
        setup: &ScoreSetup,
        rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()> {
        let d = self.cfg.input().len();
        let xt = Tensor::from_slice(x, (out.len(), d), self.params.exec.device())?;
        // A conditional model scores p(x | y) under each image's own label.
        let labels: Option<Vec<u32>> = if self.classes > 0 {
            let l: Option<Vec<u32>> = out.iter().map(|s| s.label).collect();
            Some(l.ok_or_else(|| {
                EngineError::Config(
                    "a conditional model scores labelled images only; an image has no label".into(),
                )
            })?)
        } else {
            None
        };
        let label_tensor = |rows: &[usize]| -> Result<Option<Tensor>> {
            match &labels {
                Some(l) => {
                    let y: Vec<u32> = rows.iter().map(|&i| l[i]).collect();
                    Ok(Some(Tensor::from_vec(y, rows.len(), &candle_core::Device::Cpu)?))
                }
                None => Ok(None),
            }
        };
        let all: Vec<usize> = (0..out.len()).collect();
        let y_all = label_tensor(&all)?;
        let hot = self.hot(y_all.as_ref(), out.len())?;
        let (mu, logvar) = self.encode_t(&xt, hot.as_ref())?;
        let (mu, logvar) = (mu.detach(), logvar.detach());
        if self.logvar.is_none() {
            let logits = self.decode_logits_class(&mu, y_all.as_ref())?.flatten_all()?.to_vec1::<f32>()?;
            for (i, s) in out.iter_mut().enumerate() {
                let row = i * d..(i + 1) * d;
                s.recon = Some(recon_error(self.recon_loss, &x[row.clone()], &logits[row]));
            }
            return Ok(());
        }
        let lik = setup.likelihood.unwrap_or(Likelihood::Bernoulli);
        let latent = self.latent_dim();
        let mu = mu.flatten_all()?.to_vec1::<f32>()?;
        let logvar = logvar.flatten_all()?.to_vec1::<f32>()?;
        let iw = importance_weighted(&mu, &logvar, latent, setup.k, setup.max_rows, rng, |items, z| {
            let zt = Tensor::from_slice(z, (items.len(), latent), self.params.exec.device())?;
            let y = label_tensor(items)?;
            let logits = self.decode_logits_class(&zt, y.as_ref())?.flatten_all()?.to_vec1::<f32>()?; // [rows·D]
            Ok(items
                .par_iter()
                .zip(logits.par_chunks(d))
                .map(|(&i, l)| lik.log_prob(&x[i * d..(i + 1) * d], l))
                .collect())
        })?;
        for (i, (s, e)) in out.iter_mut().zip(iw).enumerate() {
            let kl = kl_row(&mu[i * latent..(i + 1) * latent], &logvar[i * latent..(i + 1) * latent]);
            s.recon = Some(-e.mean_log_lik);
            s.kl = Some(kl);
            s.neg_elbo = Some(-e.mean_log_lik + kl);
            s.neg_log_px = Some(-e.log_px);
            s.bits_per_dim = Some(-e.log_px / (d as f64 * LN_2));
        }
        Ok(())
    }

    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()> {
        match (hyper, &mut self.cfg) {
            (LiveHyper::LearningRate, _) => self.adam.config.lr = value,
            (LiveHyper::Beta, cfg) => match cfg.beta_mut() {
                Some(beta) => {
                    *beta = value;
                    self.beta = value;
                }
                None => return Err(not_live(cfg.family(), hyper)),
            },
            (LiveHyper::DiscLearningRate | LiveHyper::DiscSteps, cfg) => {
                return Err(not_live(cfg.family(), hyper))
            }
        }
        Ok(())
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
