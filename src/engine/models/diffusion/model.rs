//! The diffusion family's model: one U-Net, one Adam. Training draws a time and a noise per
//! image and regresses the network onto ε (DDPM) or v = ε − x₀ (flow); decoding runs the
//! configured sampler from the given initial noise. A conditional model (see the module's
//! notes) trains on its batches' labels with label dropout and samples with guidance.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::guidance::{self, Cond};
use super::likelihood;
use super::schedule::{self, CosineSchedule, Objective, Sampler, TRAIN_STEPS};
use super::unet::UNet;
use super::views::{self, BucketLosses, Recorder, Trajectory};
use super::{DiffusionConfig, SamplerSettings};
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;
use crate::engine::models::layers::{normal_tensor, ParamSet};
use crate::engine::models::likelihood::{SampleScore, ScoreOptions, ScoreSetup};
use crate::engine::models::optim::{grads_finite, Adam, AdamConfig};
use crate::engine::models::{
    collect_state, default_labels, restore_state, scalar, Batch, Family, GenerativeModel, HealthMonitor,
    LiveHyper, LossKey, Losses, ModelConfig, NoHealthRule, StepOutcome,
};

/// Rows per network call when decoding, which bounds the memory of a large sample.
const DECODE_CHUNK: usize = 256;
/// Images scored at once (each of the K draws is one network call on them).
const SCORE_BATCH: usize = 64;
/// The DDPM ancestral sampler's own noise when decoding, so one z always gives one image.
const DECODE_SEED: u64 = 0x5eed_d1ff;

pub struct Diffusion {
    cfg: ModelConfig,
    diff: DiffusionConfig,
    params: ParamSet,
    adam: Adam,
    unet: UNet,
    /// The moving average of the weights and the U-Net over them (see
    /// [`DiffusionConfig::ema_decay`]); `None` without one.
    ema: Option<(ParamSet, UNet)>,
    schedule: CosineSchedule,
    /// The training loss per timestep bucket (see [`GenerativeModel::timestep_losses`]).
    buckets: BucketLosses,
}

impl Diffusion {
    pub fn new(diff: DiffusionConfig, optim: AdamConfig, seed: u64, exec: &Exec) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = ParamSet::new(exec.clone());
        let unet = UNet::new(&mut params, &diff.unet(), &mut rng)?;
        let adam = Adam::new(optim, &params)?;
        let ema = if diff.ema_decay > 0.0 {
            // The same layers over their own variables (the values are copied next; this
            // draw of theirs is discarded).
            let mut ema_params = ParamSet::new(exec.clone());
            let ema_unet = UNet::new(&mut ema_params, &diff.unet(), &mut StdRng::seed_from_u64(seed))?;
            for ((_, e), (_, v)) in ema_params.params.iter().zip(&params.params) {
                e.set(&v.as_tensor().copy()?)?;
            }
            Some((ema_params, ema_unet))
        } else {
            None
        };
        let cfg = ModelConfig::Diffusion(diff.clone());
        let schedule = CosineSchedule::new(TRAIN_STEPS);
        Ok(Self { cfg, diff, params, adam, unet, ema, schedule, buckets: BucketLosses::default() })
    }

    /// The U-Net that samples, draws the views and scores: the moving average if there is one.
    fn sampling_unet(&self) -> &UNet {
        self.ema.as_ref().map_or(&self.unet, |(_, u)| u)
    }

    /// One step of the moving average after the optimiser's `n`-th step.
    fn update_ema(&self, n: u64) -> Result<()> {
        let Some((ema_params, _)) = &self.ema else { return Ok(()) };
        let decay = self.diff.ema_decay.min((1.0 + n as f64) / (10.0 + n as f64));
        for ((_, e), (_, v)) in ema_params.params.iter().zip(&self.params.params) {
            let next = ((e.as_tensor() * decay)? + (v.as_tensor().detach() * (1.0 - decay))?)?;
            e.set(&next)?;
        }
        Ok(())
    }

    fn exec(&self) -> &Exec {
        &self.params.exec
    }

    /// The labels a conditional model trains or is evaluated on: the batch's `[B]` (u32), each
    /// replaced by "no class" with the label-dropout probability when `dropout` (one draw per
    /// image from `rng`). `None` for an unconditional model; an error for a conditional one
    /// given unlabelled images.
    pub(super) fn batch_labels(
        &self,
        batch: &Batch,
        dropout: bool,
        rng: &mut StdRng,
    ) -> Result<Option<Tensor>> {
        let k = self.diff.net.classes;
        if k == 0 {
            return Ok(None);
        }
        let Some(y) = &batch.y else {
            return Err(EngineError::Config(format!(
                "this diffusion model is conditioned on {k} classes and needs labelled images; the batch has no labels"
            )));
        };
        let mut labels = guidance::checked_labels(y, k)?;
        if dropout {
            labels = guidance::drop_labels(&labels, k, self.diff.label_dropout, rng);
        }
        let n = labels.len();
        Ok(Some(self.exec().put(&Tensor::from_vec(labels, n, &Device::Cpu)?)?))
    }

    /// The regression loss on a batch: mean over images and pixels of (prediction − target)²
    /// for one random time and noise per image. `x: [B, D]` pixels in [0, 1]; `labels: [B]`
    /// (u32, "no class" = `classes`) for a conditional model. Also each image's own loss
    /// (`[B]`, detached) and its time in [0, 1].
    pub(super) fn loss(
        &self,
        batch: &Batch,
        labels: Option<&Tensor>,
        rng: &mut StdRng,
    ) -> Result<(Tensor, Tensor, Vec<f64>)> {
        let x0 = self.exec().put(&batch.x)?.affine(2.0, -1.0)?; // [B, D] in [−1, 1]
        let (b, d) = x0.dims2()?;
        let eps = self.exec().put(&normal_tensor(b, d, 1.0, rng)?)?;
        let (xt, target, t) = match self.diff.objective {
            Objective::Ddpm => {
                let steps: Vec<usize> = (0..b).map(|_| rng.random_range(1..=TRAIN_STEPS)).collect();
                let ab: Vec<f64> = steps.iter().map(|&t| self.schedule.alpha_bar(t)).collect();
                let xt = schedule::ddpm_noised(&x0, &eps, &ab)?;
                (xt, eps, steps.iter().map(|&t| t as f64 / TRAIN_STEPS as f64).collect::<Vec<_>>())
            }
            Objective::Flow => {
                let t: Vec<f64> = (0..b).map(|_| rng.random_range(0.0..1.0)).collect();
                let (xt, v) = schedule::flow_noised(&x0, &eps, &t)?;
                (xt, v, t)
            }
        };
        let pred = self.unet.forward(&xt, &t, labels)?;
        let per_image = (pred - target)?.sqr()?.mean(1)?; // [B]
        Ok((per_image.mean_all()?, per_image.detach(), t))
    }

    /// The network at one time for every row, guided towards `cond` with the configured
    /// scale: `[B, D] → [B, D]`, detached.
    pub(super) fn predict(&self, x: &Tensor, t: f64, cond: &Cond) -> Result<Tensor> {
        guidance::guided(self.sampling_unet(), x, t, cond, self.diff.guidance)
    }

    /// What `rows` samples are conditioned on: labels `y: [rows]` (u32), or the
    /// [`default_labels`] (every class in turn) for a conditional model given none.
    fn cond(&self, y: Option<&Tensor>, rows: usize) -> Result<Cond> {
        let k = self.diff.net.classes;
        if k == 0 {
            return Ok(Cond::None);
        }
        let y = match y {
            Some(y) => y.clone(),
            None => default_labels(rows, k)?,
        };
        let labels = guidance::checked_labels(&y, k)?;
        if labels.len() != rows {
            return Err(EngineError::Other(format!("{} labels for {rows} noise vectors", labels.len())));
        }
        Ok(Cond::Labels(self.exec().put(&Tensor::from_vec(labels, rows, &Device::Cpu)?)?))
    }

    /// The configured sampler from initial noise `z: [B, D]` → `[B, D]` in [−1, 1].
    fn sample(&self, z: &Tensor, cond: &Cond) -> Result<Tensor> {
        self.sample_viewed(z, cond, None)
    }

    /// [`Self::sample`], reporting each step to `view`.
    fn sample_viewed(&self, z: &Tensor, cond: &Cond, mut view: Option<schedule::StepView>) -> Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(DECODE_SEED);
        let mut net = |x: &Tensor, t: f64| self.predict(x, t, cond);
        let steps = self.diff.sample_steps;
        let x = match self.diff.sampler {
            Sampler::Ddim => schedule::sample_ddim(
                &self.schedule,
                z,
                steps,
                self.diff.eta,
                true,
                &mut net,
                &mut rng,
                view.take(),
            )?,
            Sampler::Ddpm => {
                schedule::sample_ddim(&self.schedule, z, steps, 1.0, true, &mut net, &mut rng, view.take())?
            }
            Sampler::Euler => schedule::sample_flow(z, steps, false, &mut net, view.take())?,
            Sampler::Heun => schedule::sample_flow(z, steps, true, &mut net, view.take())?,
        };
        Ok(x.clamp(-1f32, 1f32)?)
    }

    /// `z: [B, D]` initial noise under `cond` → `[B, D]` pixels in [0, 1], in chunks.
    fn decode_cond(&self, z: &Tensor, cond: &Cond) -> Result<Tensor> {
        let z = self.exec().put(z)?;
        let b = z.dim(0)?;
        let mut parts = Vec::new();
        for start in (0..b).step_by(DECODE_CHUNK) {
            let rows = DECODE_CHUNK.min(b - start);
            let c = cond.narrow(start, rows)?;
            parts.push(self.sample(&z.narrow(0, start, rows)?, &c)?.affine(0.5, 0.5)?);
        }
        if parts.is_empty() {
            return Ok(z.affine(0.5, 0.5)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

/// The logits whose sigmoid are the pixels `p: [B, D]` (clamped away from 0 and 1).
fn logits_of(p: Tensor) -> Result<Tensor> {
    let p = p.clamp(1e-6f32, 1.0 - 1e-6f32)?;
    Ok((p.log()? - p.affine(-1.0, 1.0)?.log()?)?)
}

impl GenerativeModel for Diffusion {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.params.count()
    }

    fn latent_dim(&self) -> usize {
        self.diff.net.input.len()
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome> {
        let labels = self.batch_labels(batch, true, rng)?;
        let (loss, per_image, times) = self.loss(batch, labels.as_ref(), rng)?;
        let losses = Losses::of(&[(LossKey::Loss, scalar(&loss)?)]);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.buckets.observe(&times, &per_image.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?);
        let grads = self.params.backward(&loss)?;
        if !grads_finite(&self.params, &grads)? {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.adam.step(&self.params, &grads)?;
        self.update_ema(self.adam.step)?;
        Ok(StepOutcome::Applied(losses))
    }

    /// A conditional model is evaluated on the batch's own labels, without label dropout:
    /// the conditional model's loss.
    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses> {
        let labels = self.batch_labels(batch, false, rng)?;
        let loss = self.loss(batch, labels.as_ref(), rng)?.0.detach();
        Ok(Losses::of(&[(LossKey::Loss, scalar(&loss)?)]))
    }

    fn encode(&self, _x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    /// `z: [B, C·H·W]` initial noise → `[B, C·H·W]` pixels in [0, 1]: the configured sampler,
    /// deterministic in z (DDPM's ancestral noise comes from a fixed seed). A conditional
    /// model draws every class in turn ([`default_labels`]).
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_class(z, None)
    }

    /// The logits whose sigmoid are [`Self::decode`]'s pixels (clamped away from 0 and 1).
    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        logits_of(self.decode(z)?)
    }

    /// [`Self::decode`] under labels `y: [B]` (u32), guided by the configured scale.
    fn decode_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let cond = self.cond(y, z.dim(0)?)?;
        self.decode_cond(z, &cond)
    }

    fn decode_logits_class(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        logits_of(self.decode_class(z, y)?)
    }

    /// Under a blend of the class embeddings `weights: [B, K]`, guided against "no class".
    fn decode_mixed(&self, z: &Tensor, weights: &Tensor) -> Result<Option<Tensor>> {
        if self.diff.net.classes == 0 {
            return Ok(None);
        }
        let w = self.exec().put(&weights.to_dtype(candle_core::DType::F32)?)?;
        Ok(Some(self.decode_cond(z, &Cond::Blend(w))?))
    }

    /// A conditional model's rows are every class in turn ([`default_labels`]).
    fn trajectory(&self, z: &Tensor, columns: usize) -> Result<Option<Trajectory>> {
        let z = self.exec().put(z)?;
        let cond = self.cond(None, z.dim(0)?)?;
        let at = views::recorded_steps(self.diff.sample_steps, columns);
        let mut rec = Recorder::new(at, self.diff.net.input);
        self.sample_viewed(&z, &cond, Some(&mut |i, t, x, x0| rec.record(i, t, x, x0)))?;
        Ok(Some(rec.out))
    }

    fn noised(&self, x: &Tensor, t: f64, seed: u64) -> Result<Option<Tensor>> {
        let x = self.exec().put(x)?;
        Ok(Some(views::forward_noised(self.diff.objective, &self.schedule, &x, t, seed)?))
    }

    fn sampler_settings(&self) -> Option<SamplerSettings> {
        Some(self.diff.sampler_settings())
    }

    fn set_sampler(&mut self, settings: SamplerSettings) -> Result<()> {
        self.diff = self.diff.with_sampler(settings)?;
        self.cfg = ModelConfig::Diffusion(self.diff.clone());
        Ok(())
    }

    fn timestep_losses(&self) -> Option<Vec<f64>> {
        Some(self.buckets.values())
    }

    fn discriminate(&self, _x: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// DDPM: `opts.k` Monte-Carlo timesteps per image (see [`likelihood`]). The flow refuses.
    fn score_setup(&self, opts: &ScoreOptions) -> Result<ScoreSetup> {
        if self.diff.objective == Objective::Flow {
            return Err(no_flow_score());
        }
        if opts.k == 0 {
            return Err(EngineError::Config("K (timestep draws per image) must be at least 1".into()));
        }
        let batch = opts.max_rows.clamp(1, SCORE_BATCH);
        Ok(ScoreSetup { likelihood: None, k: opts.k, batch, max_rows: opts.max_rows })
    }

    /// −ELBO of each 8-bit image: `kl` holds L_T + Σ L_{t−1}, `recon` the decoder's
    /// −log p(x₀ | x₁), `neg_elbo` their sum, `bits_per_dim` the sum / (D ln 2). A conditional
    /// model scores with its unconditional ("no class") prediction, so the bound is on p(x),
    /// comparable across images whatever their labels (and defined for unlabelled ones).
    fn score_batch(
        &self,
        x: &[f32],
        setup: &ScoreSetup,
        rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()> {
        if self.diff.objective == Objective::Flow {
            return Err(no_flow_score());
        }
        let d = self.diff.net.input.len();
        let x0 =
            self.exec().put(&Tensor::from_vec(likelihood::quantise(x), (out.len(), d), &Device::Cpu)?)?;
        let mut net = |x: &Tensor, t: &[f64]| -> Result<Tensor> {
            Ok(self.sampling_unet().forward(x, t, None)?.detach())
        };
        let terms = likelihood::neg_elbo(&self.schedule, &x0, setup.k.max(1), &mut net, rng)?;
        for (s, e) in out.iter_mut().zip(terms) {
            s.recon = Some(e.decoder);
            s.kl = Some(e.prior + e.diffusion);
            s.neg_elbo = Some(e.total());
            s.bits_per_dim = Some(e.total() / (d as f64 * std::f64::consts::LN_2));
        }
        Ok(())
    }

    fn health_monitor(&self) -> Box<dyn HealthMonitor> {
        Box::new(NoHealthRule)
    }

    fn learning_rate(&self) -> f64 {
        self.adam.config.lr
    }

    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()> {
        match hyper {
            LiveHyper::LearningRate => {
                self.adam.config.lr = value;
                Ok(())
            }
            LiveHyper::Beta | LiveHyper::DiscLearningRate | LiveHyper::DiscSteps => {
                Err(crate::engine::models::not_live(Family::Diffusion, hyper))
            }
        }
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.params, &self.adam, &mut out)?;
        if let Some((ema_params, _)) = &self.ema {
            for (name, var) in &ema_params.params {
                out.insert(format!("ema.{name}"), var.as_tensor().copy()?.to_device(&Device::Cpu)?);
            }
        }
        Ok(out)
    }

    /// A state without the moving average (saved without one) starts it at the weights.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        restore_state(&self.params, &mut self.adam, state)?;
        if let Some((ema_params, _)) = &self.ema {
            for ((name, e), (_, v)) in ema_params.params.iter().zip(&self.params.params) {
                let value = match state.get(&format!("ema.{name}")) {
                    Some(t) if t.shape() == e.shape() => t.to_dtype(candle_core::DType::F32)?,
                    Some(t) => {
                        return Err(EngineError::Other(format!(
                            "tensor `ema.{name}` has shape {:?}, the model expects {:?}",
                            t.dims(),
                            e.dims()
                        )))
                    }
                    None => v.as_tensor().copy()?,
                };
                e.set(&ema_params.exec.put(&value)?)?;
            }
        }
        Ok(())
    }

    fn optimizer_steps(&self) -> Vec<u64> {
        vec![self.adam.step]
    }

    fn set_optimizer_steps(&mut self, steps: &[u64]) {
        if let [s] = steps {
            self.adam.step = *s;
        }
    }
}

/// The flow's likelihood needs the probability-flow ODE's divergence integrated along each
/// image's path (a Hutchinson trace per step), and its straight-path training loss is not a
/// bound on −log p, so genlab does not claim one.
fn no_flow_score() -> EngineError {
    EngineError::Config(
        "a flow-matching model does not score images: its density needs the ODE's divergence along each path, \
         which genlab does not compute (DDPM models score by their ELBO)"
            .into(),
    )
}

#[cfg(test)]
impl Diffusion {
    /// The bare network at time `t` under labels `y` (`None`: "no class"), for the guidance tests.
    pub(super) fn unet_forward(&self, x: &Tensor, t: f64, y: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.sampling_unet().forward(x, &vec![t; x.dim(0)?], y)?.detach())
    }
}
