//! The two types that cross the thread boundary: [`Command`] (UI/CLI → worker) and [`Event`]
//! (worker → UI/CLI). Only plain data travels: configurations, numbers, 8-bit images.

use std::path::PathBuf;
use std::sync::Arc;

use super::config::RunConfig;
use super::data::{DataSource, Dataset, ImageShape, LoadOptions, SplitKind};
use super::disentangle::DisentanglementReport;
pub use super::disentangle::ScoreOptions as DisentangleOptions;
use super::images::ImageBatch;
use super::models::diffusion::views::Trajectory;
use super::models::diffusion::SamplerSettings;
use super::models::{Capabilities, LiveHyper, Losses};
use super::prior::{PriorConfig, PriorMeta};
use super::quality::{Conditioning, QualityReport};
use super::scoring::{HoldOutReport, ScoreOptions, ScoredSet};
use super::session::{Encoding, EpochSummary};
use super::sweep::SweepRow;

/// The data a run trains on: already loaded (the app loads it on its own thread), or a source
/// the worker loads itself (the CLI, tests).
#[derive(Clone, Debug)]
pub enum DataSpec {
    Loaded(Arc<Dataset>),
    Source(DataSource, LoadOptions),
}

/// What the UI or CLI asks of the worker. Commands that need a run are answered with an
/// [`Event::Error`] when there is none.
#[derive(Clone, Debug)]
pub enum Command {
    /// Start a new run, ending the current one. With `checkpoint`, weights, optimiser state and
    /// the step count are restored from that folder first (its configuration must match).
    Start {
        config: Box<RunConfig>,
        data: DataSpec,
        checkpoint: Option<PathBuf>,
        paused: bool,
    },
    /// Stop taking steps (within one step).
    Pause,
    Resume,
    /// Take `n` steps, then pause.
    Step(u32),
    /// End the run (within one step); it answers with [`Event::Finished`].
    Stop,
    /// Takes effect at the next step.
    SetLearningRate(f64),
    /// Takes effect at the next step (β-VAE only).
    SetBeta(f64),
    /// Any hyperparameter the model lists as live ([`Capabilities::live`]), e.g. a GAN's D
    /// learning rate or D:G step ratio; takes effect at the next step. Answered with
    /// [`Event::HyperChanged`] (or the learning rate's and β's own events).
    SetHyper {
        hyper: LiveHyper,
        value: f64,
    },
    /// Decode `n` draws from the prior with σ scaled by `temperature`.
    Sample {
        n: usize,
        temperature: f32,
        seed: u64,
    },
    /// Reconstruct these dataset images (answered with [`Event::Reconstructions`]).
    Reconstruct {
        indices: Vec<usize>,
    },
    /// Reconstruct images given by their pixels: whole images of the model's input shape,
    /// row-major, values in [0, 1] (an image of another set converted to that shape, say).
    /// Answered with [`Event::ImagesReconstructed`] carrying `request`; a length that is not a
    /// whole number of images, or a model without an encoder (GAN), gives an [`Event::Error`].
    ReconstructImages {
        request: u64,
        images: Vec<f32>,
    },
    /// Decode these latent vectors (`latents.len()` a multiple of the latent size). Only the
    /// newest pending request per `channel` is answered; older ones are dropped as stale.
    Decode {
        channel: u32,
        request: u64,
        latents: Vec<f32>,
    },
    /// Encode a whole split (μ and log σ²).
    Encode {
        split: SplitKind,
    },
    /// Write a checkpoint folder.
    SaveCheckpoint {
        dir: PathBuf,
    },
    /// Go back to the rewind point at `step` (see [`Event::RewindPoints`]) and continue from
    /// there, paused.
    Rewind {
        step: u64,
    },
    /// Score a set under the current weights (−ELBO / IWAE for a VAE, reconstruction error
    /// for an AE, the discriminator's logit for a GAN), answered with [`Event::Scored`] after
    /// [`Event::ScoreProgress`] events. Training waits meanwhile.
    Score {
        request: u64,
        target: ScoreTarget,
        options: ScoreOptions,
    },
    /// The hold-out-classes experiment on the run's data and configuration: a separate model
    /// trained `steps` steps on the chosen labels only, the test split scored, AUROC reported.
    HoldOut {
        request: u64,
        labels: Vec<u32>,
        steps: u64,
        options: ScoreOptions,
    },
    /// Cancel a running [`Command::Score`], [`Command::HoldOut`] or [`Command::Sweep`].
    CancelScore,
    /// The disentanglement scores of the current model on its dataset's known factors,
    /// answered with an [`Event::Disentangled`] (after an [`Event::ScoreProgress`]).
    Disentangle {
        request: u64,
        options: DisentangleOptions,
    },
    /// A β sweep on the run's data and configuration: one model per β and seed, trained one
    /// after another (the run itself waits), each answered with an [`Event::SweepRow`]; the
    /// progress is [`Event::ScoreProgress`] in training steps over the whole sweep, the end
    /// an [`Event::SweepDone`]. [`Command::CancelScore`] stops it.
    Sweep {
        request: u64,
        betas: Vec<f64>,
        seeds: Vec<u64>,
        /// Steps per model (`None`: the configuration's epochs).
        max_steps: Option<u64>,
        options: DisentangleOptions,
    },
    /// When to measure sample quality during training, for this run and the next ones
    /// (answered with [`Event::Quality`] events). The worker starts with it off.
    SetQuality(QualitySchedule),
    /// Measure sample quality now (answered with an [`Event::Quality`]).
    EvaluateQuality,
    /// Samples beside their nearest training images (answered with an [`Event::Nearest`]).
    Nearest,
    /// End the worker thread.
    Shutdown,
    /// [`Command::Sample`] of one class of a conditional model (every class in turn when
    /// `None`; the same noise for any class). Answered with [`Event::Samples`].
    SampleClass {
        n: usize,
        temperature: f32,
        seed: u64,
        class: Option<u32>,
    },
    /// [`Command::Decode`] under `class` (a conditional model; `None`: every class in turn).
    DecodeClass {
        channel: u32,
        request: u64,
        latents: Vec<f32>,
        class: Option<u32>,
    },
    /// The first `rows` fixed-noise vectors walked from class `a` to class `b` in `steps`
    /// (the blend of the two labels in place of the one-hot). Answered with
    /// [`Event::ClassInterpolated`].
    ClassInterpolate {
        a: u32,
        b: u32,
        steps: usize,
        rows: usize,
    },
    /// "Same style, other class": these dataset images encoded under their own labels and
    /// decoded under every label (a conditional model with an encoder). Answered with
    /// [`Event::SameStyle`].
    SameStyle {
        indices: Vec<usize>,
    },
    /// Measure how often the classifier agrees with the requested class, per class
    /// (answered with an [`Event::Conditioning`]).
    EvaluateConditioning,
    /// The denoising trajectory of the first `rows` fixed-noise vectors under the current
    /// weights and sampler, recorded at `columns` of its steps (a model with a sampler, see
    /// [`Capabilities::sampler`]). Answered with an [`Event::Trajectory`].
    Trajectory {
        request: u64,
        rows: usize,
        columns: usize,
    },
    /// The forward process: dataset image `index` noised to time `t` ∈ [0, 1] (t·T steps for
    /// DDPM) with the noise of `seed`. Answered with an [`Event::Noised`].
    Noised {
        request: u64,
        index: usize,
        t: f64,
        seed: u64,
    },
    /// How the model draws samples from now on: prior samples, the fixed-noise grid, quality
    /// evaluations and trajectories alike (a model with a sampler). Answered with an
    /// [`Event::SamplerChanged`].
    SetSampler(SamplerSettings),
    /// Train a latent prior over the current model's encoded training split (a model with an
    /// encoder; see [`crate::engine::prior`]); the run waits meanwhile. Progress in training
    /// steps comes as [`Event::ScoreProgress`] under `request`, [`Command::CancelScore`]
    /// cancels ([`Event::ScoreCancelled`]), the end is an [`Event::PriorTrained`].
    TrainPrior {
        request: u64,
        config: PriorConfig,
    },
    /// Decode `n` latents drawn from the run's latent prior (noise from `seed`), answered with
    /// [`Event::Samples`]; an [`Event::Error`] when the run has none.
    SamplePrior {
        n: usize,
        seed: u64,
    },
}

/// When the worker measures sample quality while training. The default is `Auto` (the app's);
/// the worker itself starts `Off`, so a run costs nothing extra unless asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QualitySchedule {
    /// Never (only on [`Command::EvaluateQuality`]).
    Off,
    /// As often as keeps its cost within [`QUALITY_BUDGET`] of the training time, and once
    /// when the run completes.
    #[default]
    Auto,
    /// Every this many steps, whatever it costs, and once when the run completes.
    Every(u64),
}

/// The share of training time [`QualitySchedule::Auto`] spends on quality at most.
pub const QUALITY_BUDGET: f64 = 0.1;
/// The share of training time the live grids (and trajectories following them) take at most:
/// a due grid waits while drawing it would go over (see `worker/views.rs`).
pub const VIEW_BUDGET: f64 = 0.1;
/// Samples (and real images per side) of a quality evaluation during training: half the
/// offline default, since the k-NN metrics grow with its square; FD and recall are still
/// stable to a few percent at this size on the digits.
pub const LIVE_QUALITY_SAMPLES: usize = 1000;

/// What sample quality costs a run, sent with each [`Event::Quality`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QualityCost {
    /// Wall time of this evaluation (drawing the samples, their features, the metrics).
    pub seconds: f64,
    /// Steps between evaluations now (0: none scheduled).
    pub every: u64,
    /// Time spent on evaluations so far over the time spent on training steps.
    pub share: f64,
    /// Wall time of preparing the reference once (the feature network, the real images'
    /// features, the floor and the ceiling); not part of `share`.
    pub prepare_seconds: f64,
}

/// What a [`Command::Score`] scores.
#[derive(Clone, Debug)]
pub enum ScoreTarget {
    /// A split of the run's own data.
    Split(SplitKind),
    /// Every image of another dataset (converted to the model's shape if needed).
    Dataset(Arc<Dataset>),
}

/// Per-step figures, sent in batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: usize,
    pub losses: Losses,
    pub learning_rate: f64,
    pub images_per_sec: f64,
}

/// Facts about the dataset of a run, for display.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    pub name: String,
    pub source: DataSource,
    pub shape: ImageShape,
    pub train: usize,
    pub test: usize,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// All epochs done.
    Completed,
    /// A [`Command::Stop`].
    Stopped,
    /// A new [`Command::Start`] replaced it.
    Replaced,
}

/// What the worker reports. Every run starts with `Started` and ends with `Finished` or `Failed`.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        run: u64,
        config: Box<RunConfig>,
        param_count: usize,
        /// What the run's model offers (its family decides); the app and CLI ask this.
        capabilities: Box<Capabilities>,
        dataset: DatasetInfo,
        steps_per_epoch: u64,
        total_steps: u64,
        /// Step count restored from a checkpoint (0 for a fresh run).
        start_step: u64,
    },
    /// Steps taken since the last batch, oldest first.
    Metrics {
        run: u64,
        steps: Vec<StepMetrics>,
    },
    EpochEnded {
        run: u64,
        summary: EpochSummary,
    },
    /// The fixed-noise grid (the same z all run long) after `step`, drawn (with the class
    /// grid beside it) in `seconds`.
    FixedNoise {
        run: u64,
        step: u64,
        images: ImageBatch,
        seconds: f64,
    },
    Samples {
        run: u64,
        images: ImageBatch,
    },
    /// Memorisation: the samples closest to a training image, each beside it (see
    /// [`crate::engine::quality::memorisation`]).
    Nearest {
        run: u64,
        step: u64,
        view: Box<NearestView>,
    },
    Reconstructions {
        run: u64,
        indices: Vec<usize>,
        originals: ImageBatch,
        reconstructions: ImageBatch,
    },
    /// The answer to a [`Command::ReconstructImages`].
    ImagesReconstructed {
        run: u64,
        request: u64,
        originals: ImageBatch,
        reconstructions: ImageBatch,
    },
    Decoded {
        run: u64,
        channel: u32,
        request: u64,
        images: ImageBatch,
    },
    Encoded {
        run: u64,
        encoding: Encoding,
    },
    Paused {
        run: u64,
        step: u64,
    },
    Resumed {
        run: u64,
        step: u64,
    },
    LearningRateChanged {
        run: u64,
        step: u64,
        lr: f64,
    },
    /// A live hyperparameter other than the learning rate and β took `value`.
    HyperChanged {
        run: u64,
        step: u64,
        hyper: LiveHyper,
        value: f64,
    },
    BetaChanged {
        run: u64,
        step: u64,
        beta: f64,
    },
    /// A NaN or infinite loss or gradient at `step`: the update was refused, the last good
    /// weights are kept, and the run is paused.
    Diverged {
        run: u64,
        step: u64,
        message: String,
    },
    /// The family's health rule fired (a GAN: the discriminator's loss has stayed near zero,
    /// so the generator has probably collapsed); `message` says what and what to do.
    CollapseWarning {
        run: u64,
        step: u64,
        message: String,
    },
    CheckpointSaved {
        run: u64,
        step: u64,
        dir: PathBuf,
    },
    /// The steps the run can be rewound to (kept every `keep_every` steps, at most
    /// `keep_count`, on disk in a temporary folder).
    RewindPoints {
        run: u64,
        steps: Vec<u64>,
    },
    /// The run went back to `step`; metrics after it are void.
    Rewound {
        run: u64,
        step: u64,
    },
    /// Images scored so far for `request`.
    ScoreProgress {
        run: u64,
        request: u64,
        done: usize,
        total: usize,
    },
    /// The scores of a [`Command::Score`] (`name` says which set).
    Scored {
        run: u64,
        request: u64,
        name: String,
        set: Box<ScoredSet>,
    },
    HoldOutDone {
        run: u64,
        request: u64,
        report: Box<HoldOutReport>,
    },
    /// A score or hold-out request was cancelled.
    ScoreCancelled {
        run: u64,
        request: u64,
    },
    /// Sample quality after `step` (see [`Command::SetQuality`]); the worker keeps a rewind
    /// point at every evaluated step, and never thins away the one with the lowest FD.
    Quality {
        run: u64,
        step: u64,
        report: Box<QualityReport>,
        cost: QualityCost,
    },
    Finished {
        run: u64,
        step: u64,
        reason: FinishReason,
    },
    /// The class × noise grid after `step` (a conditional model): the first
    /// [`crate::engine::conditional::CLASS_GRID_ROWS`] fixed-noise vectors, one row each, under
    /// every class, one column each. Sent with every [`Event::FixedNoise`].
    ClassGrid {
        run: u64,
        step: u64,
        classes: usize,
        images: ImageBatch,
    },
    /// The answer to a [`Command::ClassInterpolate`]: image `r · steps + s` is noise row `r`
    /// at blend `s / (steps − 1)` from class `a` to class `b`.
    ClassInterpolated {
        run: u64,
        step: u64,
        a: u32,
        b: u32,
        steps: usize,
        images: ImageBatch,
    },
    /// The answer to a [`Command::SameStyle`]: image `i · classes + c` is image `i` as class `c`.
    SameStyle {
        run: u64,
        step: u64,
        indices: Vec<usize>,
        originals: ImageBatch,
        classes: usize,
        images: ImageBatch,
    },
    /// Per-class agreement after `step` (see [`Command::EvaluateConditioning`]).
    Conditioning {
        run: u64,
        step: u64,
        report: Box<Conditioning>,
    },
    /// The run could not start or broke; the worker stays up for the next one.
    Failed {
        run: Option<u64>,
        message: String,
    },
    /// A command could not be carried out; the run (if any) goes on.
    Error {
        message: String,
    },
    /// The answer to a [`Command::Disentangle`] (at training step `step`).
    Disentangled {
        run: u64,
        request: u64,
        step: u64,
        report: Box<DisentanglementReport>,
    },
    /// One finished model of a [`Command::Sweep`]: run `index` of `total`.
    SweepRow {
        run: u64,
        request: u64,
        index: usize,
        total: usize,
        row: SweepRow,
    },
    /// A [`Command::Sweep`] ended, all its models trained or `cancelled`.
    SweepDone {
        run: u64,
        request: u64,
        cancelled: bool,
    },
    /// The answer to a [`Command::Trajectory`], after `step`.
    Trajectory {
        run: u64,
        step: u64,
        request: u64,
        trajectory: Box<Trajectory>,
    },
    /// The answer to a [`Command::Noised`]: the image and its x_t (one image each).
    Noised {
        run: u64,
        step: u64,
        request: u64,
        index: usize,
        t: f64,
        original: ImageBatch,
        noised: ImageBatch,
    },
    /// The sampler settings now in use (after a [`Command::SetSampler`]).
    SamplerChanged {
        run: u64,
        step: u64,
        settings: SamplerSettings,
    },
    /// The training loss per timestep bucket after `step` (see
    /// [`crate::engine::models::GenerativeModel::timestep_losses`]); sent with each
    /// [`Event::FixedNoise`] of a model with timesteps.
    TimestepLosses {
        run: u64,
        step: u64,
        losses: Vec<f64>,
    },
    /// A latent prior was trained (a [`Command::TrainPrior`]) at training `step`, or loaded
    /// with the run's checkpoint (`request` 0).
    PriorTrained {
        run: u64,
        request: u64,
        step: u64,
        summary: Box<PriorSummary>,
    },
}

/// What the app shows of a trained latent prior.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorSummary {
    pub meta: PriorMeta,
    pub param_count: usize,
    /// [`PRIOR_VIEW_SAMPLES`] latents drawn from the prior, `[n, latent]` row-major, for the
    /// latent map.
    pub latents: Vec<f32>,
}

/// Prior latents sent with [`Event::PriorTrained`] for the latent map.
pub const PRIOR_VIEW_SAMPLES: usize = 1000;

impl Event {
    /// The run an event belongs to, if any.
    pub fn run(&self) -> Option<u64> {
        match self {
            Event::Started { run, .. }
            | Event::Metrics { run, .. }
            | Event::EpochEnded { run, .. }
            | Event::FixedNoise { run, .. }
            | Event::Samples { run, .. }
            | Event::Nearest { run, .. }
            | Event::Reconstructions { run, .. }
            | Event::ImagesReconstructed { run, .. }
            | Event::Decoded { run, .. }
            | Event::Encoded { run, .. }
            | Event::Paused { run, .. }
            | Event::Resumed { run, .. }
            | Event::LearningRateChanged { run, .. }
            | Event::BetaChanged { run, .. }
            | Event::HyperChanged { run, .. }
            | Event::Diverged { run, .. }
            | Event::CollapseWarning { run, .. }
            | Event::CheckpointSaved { run, .. }
            | Event::RewindPoints { run, .. }
            | Event::Rewound { run, .. }
            | Event::ScoreProgress { run, .. }
            | Event::Scored { run, .. }
            | Event::HoldOutDone { run, .. }
            | Event::ScoreCancelled { run, .. }
            | Event::Quality { run, .. }
            | Event::ClassGrid { run, .. }
            | Event::ClassInterpolated { run, .. }
            | Event::SameStyle { run, .. }
            | Event::Conditioning { run, .. }
            | Event::Disentangled { run, .. }
            | Event::SweepRow { run, .. }
            | Event::SweepDone { run, .. }
            | Event::Trajectory { run, .. }
            | Event::Noised { run, .. }
            | Event::SamplerChanged { run, .. }
            | Event::TimestepLosses { run, .. }
            | Event::PriorTrained { run, .. }
            | Event::Finished { run, .. } => Some(*run),
            Event::Failed { run, .. } => *run,
            Event::Error { .. } => None,
        }
    }
}

/// The closest (sample, nearest training image) pairs of one measurement, closest first, and
/// the scale: how close held-out real images come to the training set.
#[derive(Clone, Debug, PartialEq)]
pub struct NearestView {
    /// Samples, in pair order.
    pub samples: ImageBatch,
    /// Their nearest training images, in the same order.
    pub train: ImageBatch,
    /// Feature-space distances, in the same order.
    pub distances: Vec<f32>,
    /// Dataset indices of the training images.
    pub train_indices: Vec<usize>,
    /// Samples measured (the pairs shown are the closest of them).
    pub measured: usize,
    /// The share of samples closer to a training image than 95% of held-out images are.
    pub share_closer: f64,
    pub test_p5: f32,
    pub test_median: f32,
    /// The median sample's distance to its nearest training image.
    pub sample_median: f32,
}
