//! A synchronous training session: `step()` → [`StepReport`]. The worker, the CLI, the
//! benchmarks and the tests all train through it.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::conditional::CLASS_GRID_ROWS;
use super::config::RunConfig;
use super::data::{Dataset, Split, SplitKind};
use super::error::{EngineError, Result};
use super::images::ImageBatch;
use super::kernels::Exec;
use super::models::layers::normal_tensor;
use super::models::{build_model, class_labels, Batch, GenerativeModel, Losses, StepOutcome};

/// Number of images in the fixed-noise grid.
pub const FIXED_GRID: usize = 64;

/// Steps between snapshots of the last known good weights (restored after a divergence).
pub const SNAPSHOT_EVERY: u64 = 50;

/// Weights and optimiser state at a step whose loss was finite.
struct Snapshot {
    step: u64,
    state: std::collections::HashMap<String, Tensor>,
    optimizer_steps: Vec<u64>,
}

/// The result of one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// 1-based count of steps taken in this run.
    pub step: u64,
    /// 0-based epoch the step belongs to.
    pub epoch: usize,
    pub losses: Losses,
    /// Images in this batch.
    pub batch: usize,
    /// Throughput of this step (images per second of wall time).
    pub images_per_sec: f64,
    /// `true` when a loss or gradient was NaN/inf and the update was refused.
    pub diverged: bool,
    /// After a divergence: the step whose weights (the last known good ones) were restored.
    pub restored_to: Option<u64>,
    /// After a divergence: whether the batch itself held NaN or infinite pixels (bad data,
    /// not a too-high learning rate).
    pub nonfinite_input: bool,
    /// Set on the last step of an epoch.
    pub epoch_end: Option<EpochSummary>,
}

impl StepReport {
    /// What to do about a divergence: fix the data when the batch held non-finite pixels,
    /// otherwise lower the learning rate.
    pub fn divergence_advice(&self) -> &'static str {
        if self.nonfinite_input {
            "The batch held NaN or infinite pixels: the data is bad, not the learning rate; fix or remove those images."
        } else {
            "Lower the learning rate and resume."
        }
    }
}

/// Mean training loss over an epoch and the loss on the test split after it.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train: Losses,
    pub test: Option<Losses>,
}

/// A latent encoding of a split: μ and log σ² per image, with labels when known.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    pub split: SplitKind,
    pub dim: usize,
    /// Dataset indices of the rows.
    pub indices: Vec<usize>,
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    pub labels: Vec<u32>,
}

pub struct TrainingSession {
    config: RunConfig,
    model: Box<dyn GenerativeModel>,
    data: Arc<Dataset>,
    split: Split,
    rng: StdRng,
    order: Vec<usize>,
    cursor: usize,
    epoch: usize,
    step: u64,
    fixed_noise: Tensor,
    epoch_losses: Losses,
    epoch_images: usize,
    last_good: Option<Snapshot>,
    feed: Feed,
}

/// The most image bytes copied whole to a GPU's memory for training; a larger dataset is sent
/// batch by batch.
pub const RESIDENT_MAX_BYTES: usize = 4 << 30;

/// How training batches reach the model: gathered on the host each step (on the CPU that is
/// the data itself), or picked by an index select from a copy of the whole dataset made once
/// on the model's device.
enum Feed {
    Host,
    Resident { x: Tensor, y: Option<Tensor> },
}

impl Feed {
    fn new(data: &Dataset, device: &Device) -> Result<Self> {
        if device.is_cpu() || data.images.len() * 4 > RESIDENT_MAX_BYTES {
            return Ok(Feed::Host);
        }
        let n = data.len();
        let x = Tensor::from_slice(&data.images, (n, data.shape.len()), &Device::Cpu)?.to_device(device)?;
        let y = match &data.labels {
            Some(l) => Some(Tensor::from_slice(l, n, &Device::Cpu)?.to_device(device)?),
            None => None,
        };
        Ok(Feed::Resident { x, y })
    }

    fn batch(&self, data: &Dataset, idx: &[usize]) -> Result<Batch> {
        match self {
            Feed::Host => batch_of(data, idx),
            Feed::Resident { x, y } => {
                let rows: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
                let rows = Tensor::from_vec(rows, idx.len(), &Device::Cpu)?.to_device(x.device())?;
                let y = match y {
                    Some(y) => Some(y.index_select(&rows, 0)?),
                    None => None,
                };
                Ok(Batch { x: x.index_select(&rows, 0)?, y })
            }
        }
    }
}

impl TrainingSession {
    /// Builds the model for `data` on the configuration's device and checks that the
    /// configuration fits it.
    pub fn new(config: RunConfig, data: Arc<Dataset>) -> Result<Self> {
        let device = config.train.device.open()?;
        Self::on(config, data, device)
    }

    /// [`TrainingSession::new`] with the model on `device`.
    pub fn on(config: RunConfig, data: Arc<Dataset>, device: Device) -> Result<Self> {
        tune_allocator();
        config.validate()?;
        if config.train.fault_at_step == Some(0) {
            panic!("fault injected while starting the run");
        }
        if config.model.input() != data.shape {
            return Err(EngineError::Config(format!(
                "the model reads {} images but the dataset has {}",
                config.model.input(),
                data.shape
            )));
        }
        crate::engine::config::check_labels(&config, &data)?;
        let split = data.split(config.train.test_fraction, config.train.seed);
        if split.train.is_empty() {
            return Err(EngineError::Config("the dataset has no training images".into()));
        }
        if config.train.batch_size > split.train.len() {
            return Err(EngineError::Config(format!(
                "batch size {} is larger than the {} training images",
                config.train.batch_size,
                split.train.len()
            )));
        }
        let seed = config.train.seed;
        let exec = Exec::new(device, config.train.kernels);
        let model = build_model(&config.model, &config.optim, seed, &exec)?;
        let feed = Feed::new(&data, exec.device())?;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let fixed_noise = {
            let mut noise_rng = StdRng::seed_from_u64(seed.wrapping_add(0xf1e5));
            normal_tensor(FIXED_GRID, config.model.latent_dim(), 1.0, &mut noise_rng)?
        };
        let mut order = split.train.clone();
        order.shuffle(&mut rng);
        Self {
            config,
            model,
            data,
            split,
            rng,
            order,
            cursor: 0,
            epoch: 0,
            step: 0,
            fixed_noise,
            epoch_losses: Losses::default(),
            epoch_images: 0,
            last_good: None,
            feed,
        }
        .with_snapshot()
    }

    /// Remembers the initial weights as the first known good ones.
    fn with_snapshot(mut self) -> Result<Self> {
        self.last_good = Some(Snapshot {
            step: self.step,
            state: self.model.state()?,
            optimizer_steps: self.model.optimizer_steps(),
        });
        Ok(self)
    }

    /// Puts back the last known good weights; returns their step.
    fn restore_snapshot(&mut self) -> Result<Option<u64>> {
        let Some(s) = &self.last_good else { return Ok(None) };
        self.model.load_state(&s.state)?;
        self.model.set_optimizer_steps(&s.optimizer_steps);
        Ok(Some(s.step))
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    pub fn model(&self) -> &dyn GenerativeModel {
        self.model.as_ref()
    }

    pub fn model_mut(&mut self) -> &mut dyn GenerativeModel {
        self.model.as_mut()
    }

    pub fn data(&self) -> &Arc<Dataset> {
        &self.data
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Current (0-based) epoch.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.split.train.len().div_ceil(self.config.train.batch_size) as u64
    }

    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * self.config.train.epochs as u64
    }

    /// All epochs done.
    pub fn is_finished(&self) -> bool {
        self.epoch >= self.config.train.epochs
    }

    /// Sets the step and epoch counters (after loading a checkpoint).
    pub fn set_progress(&mut self, step: u64) {
        self.step = step;
        let spe = self.steps_per_epoch().max(1);
        self.epoch = (step / spe) as usize;
        self.cursor = ((step % spe) as usize * self.config.train.batch_size).min(self.order.len());
    }

    /// Trains on the next mini-batch. The last step of an epoch also evaluates the test split.
    pub fn step(&mut self) -> Result<StepReport> {
        if self.is_finished() {
            return Err(EngineError::Other("the run has finished all its epochs".into()));
        }
        if self.config.train.fault_at_step == Some(self.step + 1) {
            panic!("fault injected at step {}", self.step + 1);
        }
        let t0 = Instant::now();
        let bs = self.config.train.batch_size;
        let end = (self.cursor + bs).min(self.order.len());
        let idx = &self.order[self.cursor..end];
        let n = idx.len();
        let batch = self.feed.batch(&self.data, idx)?;
        // Candidate snapshot: the weights this step starts from, kept if its loss is finite.
        let candidate = if self.step.is_multiple_of(SNAPSHOT_EVERY) && self.step > 0 {
            Some(Snapshot {
                step: self.step,
                state: self.model.state()?,
                optimizer_steps: self.model.optimizer_steps(),
            })
        } else {
            None
        };
        let outcome = self.model.train_step(&batch, &mut self.rng)?;
        self.step += 1;
        self.cursor = end;
        let (losses, diverged) = match outcome {
            StepOutcome::Applied(l) => (l, false),
            StepOutcome::NonFinite(l) => (l, true),
        };
        // A step whose loss was finite vouches for the weights it started from. Weights can be
        // finite yet already ruined (a huge learning rate), so a divergence goes back to the
        // last vouched snapshot (at most SNAPSHOT_EVERY steps back), not just one step.
        // Only on a divergence: look at the batch again to tell bad data from a bad step size.
        let nonfinite_input = diverged && self.data.gather(idx).iter().any(|v| !v.is_finite());
        let restored_to = if diverged {
            self.restore_snapshot()?
        } else {
            if candidate.is_some() {
                self.last_good = candidate;
            }
            None
        };
        if !diverged {
            self.epoch_losses.accumulate(&losses, self.epoch_images, n);
            self.epoch_images += n;
        }
        let mut epoch_end = None;
        if self.cursor >= self.order.len() {
            let test = self.evaluate(SplitKind::Test, self.config.train.eval_limit)?;
            epoch_end = Some(EpochSummary { epoch: self.epoch, train: self.epoch_losses, test });
            self.epoch += 1;
            self.cursor = 0;
            self.epoch_losses = Losses::default();
            self.epoch_images = 0;
            self.order.shuffle(&mut self.rng);
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        Ok(StepReport {
            step: self.step,
            epoch: epoch_end.as_ref().map_or(self.epoch, |e| e.epoch),
            losses,
            batch: n,
            images_per_sec: n as f64 / secs,
            diverged,
            restored_to,
            nonfinite_input,
            epoch_end,
        })
    }

    /// Mean losses over a split (the first `limit` images; 0 = all), in batches, with a fixed
    /// evaluation seed so the result does not depend on how far training has gone.
    pub fn evaluate(&self, split: SplitKind, limit: usize) -> Result<Option<Losses>> {
        let idx = self.split.get(split);
        let idx = if limit > 0 { &idx[..limit.min(idx.len())] } else { idx };
        evaluate_indices(
            self.model.as_ref(),
            &self.data,
            idx,
            self.config.train.batch_size.max(1),
            self.config.train.seed,
        )
    }

    /// The fixed-noise grid: the same z all run long, decoded with the current weights.
    pub fn fixed_noise_grid(&self) -> Result<ImageBatch> {
        let x = self.model.decode(&self.fixed_noise)?;
        ImageBatch::from_tensor(&x, self.data.shape)
    }

    /// The class × noise grid of the fixed noise's first [`CLASS_GRID_ROWS`] vectors (one column
    /// per class); `None` for an unconditional model.
    pub fn fixed_class_grid(&self) -> Result<Option<ImageBatch>> {
        if self.model.classes() == 0 {
            return Ok(None);
        }
        let z = self.fixed_noise.narrow(0, 0, CLASS_GRID_ROWS.min(self.fixed_noise.dim(0)?))?;
        super::conditional::class_grid_of(self.model.as_ref(), &z).map(Some)
    }

    /// `n` samples from the prior, σ scaled by `temperature`.
    pub fn sample(&self, n: usize, temperature: f32, seed: u64) -> Result<ImageBatch> {
        sample(self.model.as_ref(), n, temperature, seed)
    }

    /// Originals and reconstructions of the images at `indices` (dataset indices).
    pub fn reconstruct(&self, indices: &[usize]) -> Result<Option<(ImageBatch, ImageBatch)>> {
        if self.model.classes() == 0 || self.data.labels.is_none() {
            return self.reconstruct_images(&self.data.gather(indices));
        }
        // A conditional model reconstructs each image under its own label.
        let b = batch_of(&self.data, indices)?;
        match self.model.reconstruct_class(&b.x, b.y.as_ref())? {
            Some(r) => Ok(Some((
                ImageBatch::from_f32(&self.data.gather(indices), self.data.shape),
                ImageBatch::from_tensor(&r, self.data.shape)?,
            ))),
            None => Ok(None),
        }
    }

    /// Originals and reconstructions of images given by their pixels (whole images of the
    /// model's input shape, row-major); `None` for a model without an encoder (GAN).
    pub fn reconstruct_images(&self, images: &[f32]) -> Result<Option<(ImageBatch, ImageBatch)>> {
        let shape = self.data.shape;
        let d = shape.len();
        if d == 0 || images.is_empty() || !images.len().is_multiple_of(d) {
            return Err(EngineError::Other(format!(
                "{} values are not whole images of {shape} ({d} values each)",
                images.len()
            )));
        }
        let x = Tensor::from_slice(images, (images.len() / d, d), &Device::Cpu)?; // [n, D]
        match self.model.reconstruct(&x)? {
            Some(r) => Ok(Some((ImageBatch::from_f32(images, shape), ImageBatch::from_tensor(&r, shape)?))),
            None => Ok(None),
        }
    }

    /// Decodes latent vectors (each of `latent_dim` values).
    pub fn decode(&self, latents: &[f32]) -> Result<ImageBatch> {
        let d = self.model.latent_dim();
        if d == 0 || !latents.len().is_multiple_of(d) {
            return Err(EngineError::Other(format!("{} values are not whole {d}-d latents", latents.len())));
        }
        let z = Tensor::from_slice(latents, (latents.len() / d, d), &Device::Cpu)?;
        ImageBatch::from_tensor(&self.model.decode(&z)?, self.data.shape)
    }

    /// Encodes a whole split (μ and log σ²); `None` for a GAN.
    pub fn encode(&self, split: SplitKind) -> Result<Option<Encoding>> {
        let idx = self.split.get(split);
        encode_indices(self.model.as_ref(), &self.data, idx, split)
    }

    /// Replaces the fixed noise (after loading a checkpoint from another seed, say).
    pub fn fixed_noise(&self) -> &Tensor {
        &self.fixed_noise
    }
}

/// Mean losses of `model` over the images at `idx`, in batches of `bs`.
pub fn evaluate_indices(
    model: &dyn GenerativeModel,
    data: &Dataset,
    idx: &[usize],
    bs: usize,
    seed: u64,
) -> Result<Option<Losses>> {
    if idx.is_empty() {
        return Ok(None);
    }
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0xe7a1));
    let mut acc = Losses::default();
    let mut seen = 0;
    for chunk in idx.chunks(bs.max(1)) {
        let l = model.evaluate(&batch_of(data, chunk)?, &mut rng)?;
        acc.accumulate(&l, seen, chunk.len());
        seen += chunk.len();
    }
    Ok(Some(acc))
}

/// The images at `idx` as a batch, with their labels when the data has them.
pub fn batch_of(data: &Dataset, idx: &[usize]) -> Result<Batch> {
    let x = Tensor::from_vec(data.gather(idx), (idx.len(), data.shape.len()), &Device::Cpu)?;
    let y = match &data.labels {
        Some(labels) => {
            let y: Vec<u32> = idx.iter().map(|&i| labels.get(i).copied().unwrap_or(0)).collect();
            Some(Tensor::from_vec(y, idx.len(), &Device::Cpu)?)
        }
        None => None,
    };
    Ok(Batch { x, y })
}

/// μ and log σ² of the images at `idx`; `None` for models without an encoder.
pub fn encode_indices(
    model: &dyn GenerativeModel,
    data: &Dataset,
    idx: &[usize],
    split: SplitKind,
) -> Result<Option<Encoding>> {
    let dim = model.latent_dim();
    let mut mu = Vec::with_capacity(idx.len() * dim);
    let mut logvar = Vec::with_capacity(idx.len() * dim);
    for chunk in idx.chunks(256) {
        let x = Tensor::from_vec(data.gather(chunk), (chunk.len(), data.shape.len()), &Device::Cpu)?;
        // A conditional model encodes each image under its own label.
        let y = match (&data.labels, model.classes()) {
            (Some(_), k) if k > 0 => Some(batch_of(data, chunk)?.y).flatten(),
            _ => None,
        };
        let Some((m, lv)) = model.encode_class(&x, y.as_ref())? else { return Ok(None) };
        mu.extend(m.flatten_all()?.to_vec1::<f32>()?);
        logvar.extend(lv.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(Some(Encoding { split, dim, indices: idx.to_vec(), mu, logvar, labels: data.gather_labels(idx) }))
}

/// `n` decodes of z ~ N(0, temperature² I). A conditional model draws every class in turn
/// (see [`crate::engine::models::default_labels`]).
pub fn sample(model: &dyn GenerativeModel, n: usize, temperature: f32, seed: u64) -> Result<ImageBatch> {
    sample_class(model, n, temperature, seed, None)
}

/// [`sample`] of class `class` for a conditional model (every class in turn when `None`); an
/// unconditional model ignores it. The noise is the same for any `class`.
pub fn sample_class(
    model: &dyn GenerativeModel,
    n: usize,
    temperature: f32,
    seed: u64,
    class: Option<u32>,
) -> Result<ImageBatch> {
    check_class(model, class)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let z = normal_tensor(n, model.latent_dim(), temperature, &mut rng)?;
    let y = class.map(|c| class_labels(n, c)).transpose()?;
    ImageBatch::from_tensor(&model.decode_class(&z, y.as_ref())?, model.config().input())
}

/// The class × noise grid of a conditional model: `rows` noise vectors (seed `seed`), each
/// decoded under every class; image `r · K + c` is noise `r` as class `c` (one column per
/// class, one row per noise vector). An error for an unconditional model.
pub fn class_grid(
    model: &dyn GenerativeModel,
    rows: usize,
    temperature: f32,
    seed: u64,
) -> Result<ImageBatch> {
    if model.classes() == 0 {
        return Err(EngineError::Config("a grid by class needs a conditional model".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let z = normal_tensor(rows, model.latent_dim(), temperature, &mut rng)?; // [rows, L]
    super::conditional::class_grid_of(model, &z)
}

/// An error naming a class a model cannot draw: out of range, or asked of an unconditional
/// model.
pub fn check_class(model: &dyn GenerativeModel, class: Option<u32>) -> Result<()> {
    let Some(c) = class else { return Ok(()) };
    match model.classes() {
        0 => Err(EngineError::Config(format!(
            "class {c} asked of an unconditional model (a {}); train a conditional preset such as mnist_cvae",
            model.config().family()
        ))),
        k if c as usize >= k => Err(EngineError::Config(format!(
            "class {c} is out of range: the model is conditioned on {k} classes (0 to {})",
            k - 1
        ))),
        _ => Ok(()),
    }
}

/// Raises glibc's mmap and trim thresholds once per process: candle allocates a fresh buffer
/// per op, and with the defaults every large one is an mmap, page faults and a munmap
/// (measured ~1.7× slower training here).
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator tuning parameters; it is called once, early.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}
