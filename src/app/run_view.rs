//! [`RunView`]: a pure fold of the worker's [`Event`]s into what the UI draws (status, loss
//! history, markers, the latest sample grid) and the list of this session's runs. No drawing
//! and no threads here, so it is tested with plain events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::config::RunConfig;
use crate::engine::explore::GridHistory;
use crate::engine::images::ImageBatch;
use crate::engine::models::{Capabilities, LiveHyper, LossKey, Losses};
use crate::engine::protocol::{DatasetInfo, Event, FinishReason, StepMetrics};
use crate::engine::scoring::{HoldOutReport, ScoredSet};
use crate::engine::session::{Encoding, EpochSummary};

/// Memory the fixed-noise history of one run may take at most.
pub const HISTORY_BUDGET: usize = 64 * 1024 * 1024;
/// Grids the fixed-noise history keeps (thinning halves the older ones past it). Without this
/// cap a run of 28×28 digits (50 kB a grid) kept growing for 1,300 grids, 65,000 steps at the
/// default `sample_every`, before the byte budget stopped it; with it the history levels off
/// at 12.8 MB after 12,800 steps. Larger images still stop at [`HISTORY_BUDGET`].
pub const HISTORY_GRIDS: usize = 256;

/// The history's byte budget for grids of `grid_bytes` bytes each.
pub fn history_budget(grid_bytes: usize) -> usize {
    HISTORY_BUDGET.min(HISTORY_GRIDS.saturating_mul(grid_bytes.max(1)))
}

/// A value with the sequence number of the event that brought it (changes whenever it does;
/// texture caches key on it).
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

/// Test images and their reconstructions.
#[derive(Clone, Debug)]
pub struct Reconstructions {
    pub indices: Vec<usize>,
    pub originals: ImageBatch,
    pub reconstructions: ImageBatch,
}

/// The answer to one [`crate::engine::protocol::Command::ReconstructImages`].
#[derive(Clone, Debug)]
pub struct ImagesReconstructed {
    /// The request it answers.
    pub request: u64,
    pub originals: ImageBatch,
    pub reconstructions: ImageBatch,
}

/// Scored sets kept per run: the newest, by request number.
pub const SCORED_KEEP: usize = 8;

/// One answered [`Event::Scored`].
#[derive(Clone, Debug)]
pub struct Scored {
    /// Which set: a split ("test", "train") or another dataset's name.
    pub name: String,
    /// The run's step when the scores arrived (sets are comparable only at the same step).
    pub step: u64,
    pub set: ScoredSet,
}

/// What the exploring tabs (samples, latent space, outliers) receive for a run.
#[derive(Clone, Debug)]
pub struct Explore {
    /// Every fixed-noise grid, thinned to [`history_budget`].
    pub history: GridHistory,
    pub samples: Option<Versioned<ImageBatch>>,
    pub reconstructions: Option<Versioned<Reconstructions>>,
    /// The newest images reconstructed from their pixels (the Outliers tab's zoom window).
    pub images_reconstructed: Option<Versioned<ImagesReconstructed>>,
    /// The newest decoded batch per channel, with its request number.
    pub decoded: BTreeMap<u32, Versioned<(u64, ImageBatch)>>,
    pub encoded: Option<Versioned<Encoding>>,
    /// A score or hold-out request under way: (request, done, total).
    pub score_progress: Option<(u64, usize, usize)>,
    /// Answered score requests by request number (at most [`SCORED_KEEP`], the newest).
    pub scored: BTreeMap<u64, Versioned<Scored>>,
    pub hold_out: Option<Versioned<HoldOutReport>>,
}

impl Default for Explore {
    fn default() -> Self {
        Self {
            history: GridHistory::new(HISTORY_BUDGET),
            samples: None,
            reconstructions: None,
            images_reconstructed: None,
            decoded: BTreeMap::new(),
            encoded: None,
            score_progress: None,
            scored: BTreeMap::new(),
            hold_out: None,
        }
    }
}

/// Weight of the past in the smoothed images-per-second figure.
const RATE_SMOOTHING: f64 = 0.9;

/// Per-step values of every loss component of a family, column by column, with each step's
/// epoch, learning rate and throughput.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The family's loss components, in plot order.
    pub keys: Vec<LossKey>,
    pub steps: Vec<f64>,
    /// One column per key, each as long as `steps` (NaN where a value was missing).
    pub values: Vec<Vec<f64>>,
    /// 0-based epoch of each step. This and the next two are kept narrow (the per-step series
    /// is what grows over a long run: 40 bytes a step for a VAE instead of 56).
    pub epochs: Vec<u32>,
    pub learning_rates: Vec<f32>,
    /// Images per second at each step (unsmoothed, as the worker measured it).
    pub images_per_sec: Vec<f32>,
    /// Bumped whenever steps are removed (a rewind), so that caches built on the series as it
    /// only grew know to start over.
    pub revision: u64,
}

impl Series {
    pub fn new(keys: &[LossKey]) -> Self {
        Self { keys: keys.to_vec(), values: vec![Vec::new(); keys.len()], ..Default::default() }
    }

    pub fn push(&mut self, m: &StepMetrics) {
        self.steps.push(m.step as f64);
        for (col, &key) in self.values.iter_mut().zip(&self.keys) {
            col.push(m.losses.get(key).unwrap_or(f64::NAN));
        }
        self.epochs.push(u32::try_from(m.epoch).unwrap_or(u32::MAX));
        self.learning_rates.push(m.learning_rate as f32);
        self.images_per_sec.push(m.images_per_sec as f32);
    }

    /// Keeps the first `n` steps.
    pub fn truncate(&mut self, n: usize) {
        if n < self.steps.len() {
            self.revision += 1;
        }
        self.steps.truncate(n);
        for col in &mut self.values {
            col.truncate(n);
        }
        self.epochs.truncate(n);
        self.learning_rates.truncate(n);
        self.images_per_sec.truncate(n);
    }

    /// CSV text: `step,epoch,<loss components>,lr,images_per_sec`, one row per step (empty
    /// cells where a value is missing).
    pub fn to_csv(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(|k| k.id()).collect();
        let mut s = format!("step,epoch,{},lr,images_per_sec\n", names.join(","));
        let cell = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
        for i in 0..self.steps.len() {
            let epoch = self.epochs.get(i).map_or(String::new(), |e| e.to_string());
            s.push_str(&format!("{},{epoch}", self.steps[i]));
            for col in &self.values {
                s.push(',');
                s.push_str(&cell(col.get(i).copied().unwrap_or(f64::NAN)));
            }
            for col in [&self.learning_rates, &self.images_per_sec] {
                // As f32, so that 1e-3 reads 0.001, not its f64 widening.
                let v = col.get(i).copied().unwrap_or(f32::NAN);
                s.push(',');
                s.push_str(&if v.is_finite() { v.to_string() } else { String::new() });
            }
            s.push('\n');
        }
        s
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn column(&self, key: LossKey) -> Option<&[f64]> {
        let i = self.keys.iter().position(|&k| k == key)?;
        Some(&self.values[i])
    }
}

/// Something that happened at a step, drawn as a vertical line.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkerKind {
    LearningRate(f64),
    Beta(f64),
    Diverged,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub step: u64,
    pub kind: MarkerKind,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    Finished(FinishReason),
    Failed(String),
}

/// One run of this session, live or ended.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub id: u64,
    pub config: RunConfig,
    /// What the run's model offers, as the worker reported it.
    pub capabilities: Capabilities,
    pub param_count: usize,
    pub dataset: DatasetInfo,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    /// Last step taken (1-based; 0 before the first).
    pub step: u64,
    /// 0-based epoch of the last step.
    pub epoch: usize,
    /// Smoothed throughput.
    pub images_per_sec: f64,
    pub learning_rate: f64,
    pub beta: f64,
    pub last: Option<StepMetrics>,
    pub series: Series,
    /// Per-epoch summaries with the step they ended at.
    pub epochs: Vec<(u64, EpochSummary)>,
    pub markers: Vec<Marker>,
    /// The latest fixed-noise grid and the step it was drawn after.
    pub fixed_noise: Option<(u64, ImageBatch)>,
    pub paused: bool,
    pub diverged: Option<(u64, String)>,
    pub collapse: Option<(u64, String)>,
    /// Steps the run can be rewound to.
    pub rewind_points: Vec<u64>,
    /// The last checkpoint written for this run (step, folder).
    pub saved_checkpoint: Option<(u64, std::path::PathBuf)>,
    pub explore: Explore,
    pub end: Option<RunEnd>,
    pub started_at: Instant,
    pub ended_at: Option<Instant>,
}

impl RunRecord {
    pub fn is_active(&self) -> bool {
        self.end.is_none()
    }

    /// Whether the worker still holds this run's model: a finished or stopped run keeps it
    /// for exploring (until the next run starts); a failed one does not.
    pub fn has_model(&self) -> bool {
        !matches!(self.end, Some(RunEnd::Failed(_)) | Some(RunEnd::Finished(FinishReason::Replaced)))
    }

    /// Wall time from start to end (or to `now` while it runs).
    pub fn duration(&self, now: Instant) -> Duration {
        self.ended_at.unwrap_or(now).saturating_duration_since(self.started_at)
    }

    /// Fraction of the run's steps done, in [0, 1].
    pub fn progress(&self) -> f32 {
        if self.total_steps == 0 {
            return 0.0;
        }
        (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0) as f32
    }

    /// Time left at the current throughput.
    pub fn eta(&self) -> Option<Duration> {
        if self.images_per_sec <= 0.0 || !self.is_active() {
            return None;
        }
        let left = self.total_steps.saturating_sub(self.step) as f64;
        let secs = left * self.config.train.batch_size as f64 / self.images_per_sec;
        secs.is_finite().then(|| Duration::from_secs_f64(secs.min(1e7)))
    }

    /// One line describing the model, e.g. "VAE MLP [400] z=20, lr 1e-3, batch 128".
    pub fn summary(&self) -> String {
        config_summary(&self.config)
    }

    /// Forgets everything after `step` (the run went back to it).
    pub fn rewind_to(&mut self, step: u64) {
        // A finished run that is rewound trains on.
        if matches!(self.end, Some(RunEnd::Finished(_))) {
            self.end = None;
            self.ended_at = None;
        }
        let keep = self.series.steps.partition_point(|&s| s <= step as f64);
        self.series.truncate(keep);
        self.explore.history.truncate_after(step);
        self.epochs.retain(|(s, _)| *s <= step);
        self.markers.retain(|m| m.step <= step);
        self.fixed_noise = self.fixed_noise.take().filter(|(s, _)| *s <= step);
        if self.diverged.as_ref().is_some_and(|(s, _)| *s > step) {
            self.diverged = None;
        }
        if self.collapse.as_ref().is_some_and(|(s, _)| *s > step) {
            self.collapse = None;
        }
        self.step = step;
        self.epoch = self.epochs.len();
        self.last = None;
    }

    /// The newest per-step losses.
    pub fn last_losses(&self) -> Option<Losses> {
        self.last.map(|m| m.losses)
    }
}

/// One line describing a configuration.
pub fn config_summary(c: &RunConfig) -> String {
    let m = &c.model;
    let net = m.net();
    let widths: Vec<String> = net.hidden.iter().map(|w| w.to_string()).collect();
    let beta = match m.capabilities().is_live(LiveHyper::Beta) {
        true => format!(" β={}", m.kl_weight().unwrap_or(1.0)),
        false => String::new(),
    };
    format!(
        "{} {} [{}] z={}{beta}, lr {:.0e}, batch {}",
        m.family(),
        net.arch,
        widths.join(", "),
        net.latent_dim,
        c.optim.lr,
        c.train.batch_size
    )
}

/// The state of the newest run, for the status line.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Idle,
    /// Train was clicked; the worker has not answered yet.
    Starting,
    Training,
    Paused,
    Finished(FinishReason),
    Failed(String),
}

/// The fold of every event received so far.
#[derive(Debug, Default)]
pub struct RunView {
    /// This session's runs, oldest first; the last one is the current run.
    pub runs: Vec<RunRecord>,
    starting: bool,
    /// Messages for the user (errors, failed starts) not yet shown; the app takes them.
    messages: Vec<String>,
    /// Counts events, to version what they bring.
    seq: u64,
}

impl RunView {
    /// Notes that a start was requested, so the status reads "Starting" until the worker answers.
    pub fn start_requested(&mut self) {
        self.starting = true;
    }

    /// The newest run, live or ended.
    pub fn current(&self) -> Option<&RunRecord> {
        self.runs.last()
    }

    /// The newest run if it has not ended.
    pub fn active(&self) -> Option<&RunRecord> {
        self.runs.last().filter(|r| r.is_active())
    }

    pub fn run(&self, id: u64) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// Steps recorded for the current run.
    pub fn steps(&self) -> usize {
        self.current().map_or(0, |r| r.series.len())
    }

    pub fn status(&self) -> Status {
        if self.starting {
            return Status::Starting;
        }
        match self.current() {
            None => Status::Idle,
            Some(r) => match &r.end {
                Some(RunEnd::Finished(reason)) => Status::Finished(*reason),
                Some(RunEnd::Failed(m)) => Status::Failed(m.clone()),
                None if r.paused => Status::Paused,
                None => Status::Training,
            },
        }
    }

    /// Messages for the user since the last call (each handed out once).
    pub fn take_messages(&mut self) -> Vec<String> {
        std::mem::take(&mut self.messages)
    }

    fn record_mut(&mut self, id: u64) -> Option<&mut RunRecord> {
        self.runs.iter_mut().rev().find(|r| r.id == id)
    }

    /// Folds one event in; `now` stamps starts and ends.
    pub fn apply(&mut self, event: Event, now: Instant) {
        self.seq += 1;
        let version = self.seq;
        match event {
            Event::Started {
                run,
                config,
                param_count,
                capabilities,
                dataset,
                steps_per_epoch,
                total_steps,
                start_step,
            } => {
                self.starting = false;
                let series = Series::new(&capabilities.loss_keys);
                let beta = config.model.kl_weight().unwrap_or(0.0);
                let learning_rate = config.optim.lr;
                self.runs.push(RunRecord {
                    id: run,
                    config: *config,
                    capabilities: *capabilities,
                    param_count,
                    dataset,
                    steps_per_epoch,
                    total_steps,
                    step: start_step,
                    epoch: 0,
                    images_per_sec: 0.0,
                    learning_rate,
                    beta,
                    last: None,
                    series,
                    epochs: Vec::new(),
                    markers: Vec::new(),
                    fixed_noise: None,
                    paused: false,
                    diverged: None,
                    collapse: None,
                    rewind_points: Vec::new(),
                    saved_checkpoint: None,
                    explore: Explore::default(),
                    end: None,
                    started_at: now,
                    ended_at: None,
                });
            }
            Event::Metrics { run, steps } => {
                let Some(r) = self.record_mut(run) else { return };
                for m in steps {
                    r.series.push(&m);
                    r.step = m.step;
                    r.epoch = m.epoch;
                    r.learning_rate = m.learning_rate;
                    if m.images_per_sec.is_finite() && m.images_per_sec > 0.0 {
                        r.images_per_sec = if r.images_per_sec > 0.0 {
                            RATE_SMOOTHING * r.images_per_sec + (1.0 - RATE_SMOOTHING) * m.images_per_sec
                        } else {
                            m.images_per_sec
                        };
                    }
                    r.last = Some(m);
                }
            }
            Event::EpochEnded { run, summary } => {
                if let Some(r) = self.record_mut(run) {
                    let step = r.step;
                    r.epochs.push((step, summary));
                }
            }
            Event::FixedNoise { run, step, images } => {
                if let Some(r) = self.record_mut(run) {
                    let history = &mut r.explore.history;
                    history.budget_bytes = history_budget(images.pixels.len());
                    history.push(step, images.clone());
                    r.fixed_noise = Some((step, images));
                }
            }
            Event::Paused { run, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.paused = true;
                }
            }
            Event::Resumed { run, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.paused = false;
                    r.diverged = None;
                }
            }
            Event::LearningRateChanged { run, step, lr } => {
                if let Some(r) = self.record_mut(run) {
                    r.learning_rate = lr;
                    r.markers.push(Marker { step, kind: MarkerKind::LearningRate(lr) });
                }
            }
            Event::BetaChanged { run, step, beta } => {
                if let Some(r) = self.record_mut(run) {
                    r.beta = beta;
                    r.markers.push(Marker { step, kind: MarkerKind::Beta(beta) });
                }
            }
            Event::Diverged { run, step, message } => {
                if let Some(r) = self.record_mut(run) {
                    r.markers.push(Marker { step, kind: MarkerKind::Diverged });
                    r.diverged = Some((step, message));
                }
            }
            Event::CollapseWarning { run, step, message } => {
                if let Some(r) = self.record_mut(run) {
                    r.collapse = Some((step, message));
                }
            }
            Event::RewindPoints { run, steps } => {
                if let Some(r) = self.record_mut(run) {
                    r.rewind_points = steps;
                }
            }
            Event::Rewound { run, step } => {
                if let Some(r) = self.record_mut(run) {
                    r.rewind_to(step);
                }
            }
            Event::Finished { run, step, reason } => {
                if let Some(r) = self.record_mut(run) {
                    r.step = r.step.max(step);
                    r.end = Some(RunEnd::Finished(reason));
                    r.ended_at = Some(now);
                    r.paused = false;
                }
            }
            Event::Failed { run, message } => {
                self.starting = false;
                match run.and_then(|id| self.record_mut(id)) {
                    Some(r) => {
                        r.end = Some(RunEnd::Failed(message.clone()));
                        r.ended_at = Some(now);
                        r.paused = false;
                        self.messages.push(format!("Training failed: {message}"));
                    }
                    None => self.messages.push(format!("Could not start training: {message}")),
                }
            }
            Event::Error { message } => {
                // A score request that fails answers with an error only: do not leave the
                // tab waiting for it (a request still running reports progress again).
                if let Some(r) = self.runs.last_mut() {
                    r.explore.score_progress = None;
                }
                self.messages.push(message)
            }
            Event::Samples { run, images } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.samples = Some(Versioned { version, value: images });
                }
            }
            Event::Reconstructions { run, indices, originals, reconstructions } => {
                if let Some(r) = self.record_mut(run) {
                    let value = Reconstructions { indices, originals, reconstructions };
                    r.explore.reconstructions = Some(Versioned { version, value });
                }
            }
            Event::ImagesReconstructed { run, request, originals, reconstructions } => {
                if let Some(r) = self.record_mut(run) {
                    let value = ImagesReconstructed { request, originals, reconstructions };
                    r.explore.images_reconstructed = Some(Versioned { version, value });
                }
            }
            Event::Decoded { run, channel, request, images } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.decoded.insert(channel, Versioned { version, value: (request, images) });
                }
            }
            Event::Encoded { run, encoding } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.encoded = Some(Versioned { version, value: encoding });
                }
            }
            Event::ScoreProgress { run, request, done, total } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = Some((request, done, total));
                }
            }
            Event::Scored { run, request, name, set } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                    let value = Scored { name, step: r.step, set: *set };
                    r.explore.scored.insert(request, Versioned { version, value });
                    while r.explore.scored.len() > SCORED_KEEP {
                        r.explore.scored.pop_first();
                    }
                }
            }
            Event::HoldOutDone { run, report, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                    r.explore.hold_out = Some(Versioned { version, value: *report });
                }
            }
            Event::ScoreCancelled { run, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                }
            }
            Event::CheckpointSaved { run, step, dir } => {
                if let Some(r) = self.record_mut(run) {
                    r.saved_checkpoint = Some((step, dir));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::{DataSource, ImageShape};
    use crate::engine::models::Family;

    fn started(run: u64, family: Family) -> Event {
        let mut config = RunConfig::default();
        config.model = config.model.with_family(family);
        Event::Started {
            run,
            capabilities: Box::new(config.model.capabilities()),
            config: Box::new(config),
            param_count: 1000,
            dataset: DatasetInfo {
                name: "d".into(),
                source: DataSource::Builtin,
                shape: ImageShape::new(1, 28, 28),
                train: 8000,
                test: 2000,
            },
            steps_per_epoch: 10,
            total_steps: 20,
            start_step: 0,
        }
    }

    fn metrics(run: u64, steps: std::ops::Range<u64>, lr: f64) -> Event {
        let steps = steps
            .map(|s| StepMetrics {
                step: s,
                epoch: (s as usize - 1) / 10,
                losses: Losses::of(&[
                    (LossKey::Loss, 100.0 / s as f64),
                    (LossKey::Recon, 90.0),
                    (LossKey::Kl, 10.0),
                ]),
                learning_rate: lr,
                images_per_sec: 1000.0,
            })
            .collect();
        Event::Metrics { run, steps }
    }

    #[test]
    fn fold_builds_history_markers_and_status() {
        let t = Instant::now();
        let mut v = RunView::default();
        assert_eq!(v.status(), Status::Idle);
        v.start_requested();
        assert_eq!(v.status(), Status::Starting);
        v.apply(started(1, Family::Vae), t);
        assert_eq!(v.status(), Status::Training);
        v.apply(metrics(1, 1..6, 1e-3), t);
        v.apply(Event::LearningRateChanged { run: 1, step: 5, lr: 1e-4 }, t);
        v.apply(metrics(1, 6..11, 1e-4), t);
        v.apply(
            Event::EpochEnded {
                run: 1,
                summary: EpochSummary { epoch: 0, train: Losses::of(&[(LossKey::Loss, 20.0)]), test: None },
            },
            t,
        );
        v.apply(Event::Paused { run: 1, step: 10 }, t);
        assert_eq!(v.status(), Status::Paused);

        let r = v.current().unwrap();
        assert_eq!(r.series.len(), 10);
        assert_eq!(r.series.keys, [LossKey::Loss, LossKey::Recon, LossKey::Kl]);
        assert_eq!(r.series.column(LossKey::Kl).unwrap()[3], 10.0);
        assert_eq!(r.step, 10);
        assert_eq!(r.learning_rate, 1e-4);
        assert_eq!(r.markers, vec![Marker { step: 5, kind: MarkerKind::LearningRate(1e-4) }]);
        assert_eq!(r.epochs[0].0, 10, "an epoch is placed at the last step seen");
        assert!((r.progress() - 0.5).abs() < 1e-6);
        assert!(r.eta().is_some());

        // Going back to step 7 forgets what came after it, and says so to the plot's caches.
        let revision = v.current().unwrap().series.revision;
        v.apply(Event::RewindPoints { run: 1, steps: vec![0, 7] }, t);
        v.apply(Event::Rewound { run: 1, step: 7 }, t);
        let r = v.current().unwrap();
        assert_eq!((r.series.len(), r.step, r.epochs.len()), (7, 7, 0));
        assert_eq!(r.series.revision, revision + 1);
        assert_eq!(r.series.learning_rates.len(), 7);
        assert_eq!(r.rewind_points, vec![0, 7]);
        assert_eq!(r.markers.len(), 1, "the lr change at step 5 stays");
        v.apply(metrics(1, 8..11, 1e-4), t);

        // Events of an unknown run are ignored; a stale run's events do not touch the new one.
        v.apply(metrics(9, 1..3, 1e-3), t);
        v.apply(Event::Finished { run: 1, step: 10, reason: FinishReason::Stopped }, t);
        assert_eq!(v.status(), Status::Finished(FinishReason::Stopped));
        v.apply(started(2, Family::Gan), t);
        v.apply(metrics(1, 11..13, 1e-4), t);
        assert_eq!(v.runs.len(), 2);
        assert_eq!(v.runs[0].series.len(), 12, "late metrics still land in their own run");
        assert_eq!(v.steps(), 0);
        assert_eq!(
            v.current().unwrap().series.keys,
            [LossKey::DLoss, LossKey::GLoss, LossKey::DReal, LossKey::DFake]
        );
    }

    #[test]
    fn failures_and_errors_become_messages_once() {
        let t = Instant::now();
        let mut v = RunView::default();
        v.start_requested();
        v.apply(Event::Failed { run: Some(1), message: "bad config".into() }, t);
        assert_eq!(v.status(), Status::Idle);
        v.apply(Event::Error { message: "no run".into() }, t);
        let m = v.take_messages();
        assert_eq!(m.len(), 2);
        assert!(m[0].contains("bad config"));
        assert!(v.take_messages().is_empty());

        v.apply(started(2, Family::Vae), t);
        v.apply(Event::Diverged { run: 2, step: 3, message: "NaN".into() }, t);
        v.apply(Event::Paused { run: 2, step: 3 }, t);
        assert_eq!(v.current().unwrap().diverged.as_ref().unwrap().0, 3);
        v.apply(Event::Resumed { run: 2, step: 3 }, t);
        assert!(v.current().unwrap().diverged.is_none());
        v.apply(Event::Failed { run: Some(2), message: "panic".into() }, t);
        assert!(matches!(v.status(), Status::Failed(_)));
        assert!(v.active().is_none());
    }

    #[test]
    fn exploring_events_are_folded_per_run() {
        use crate::engine::data::ImageShape;
        use crate::engine::scoring::ScoredSet;
        let t = Instant::now();
        let mut v = RunView::default();
        v.apply(started(1, Family::Vae), t);
        let grid = |x: u8| ImageBatch { shape: ImageShape::new(1, 2, 2), pixels: vec![x; 8] };
        v.apply(Event::FixedNoise { run: 1, step: 50, images: grid(1) }, t);
        v.apply(Event::FixedNoise { run: 1, step: 100, images: grid(2) }, t);
        v.apply(Event::Decoded { run: 1, channel: 0, request: 3, images: grid(3) }, t);
        let (originals, reconstructions) = (grid(5), grid(6));
        v.apply(Event::ImagesReconstructed { run: 1, request: 7, originals, reconstructions }, t);
        let rec = v.current().unwrap().explore.images_reconstructed.as_ref().expect("its own slot");
        assert_eq!((rec.value.request, rec.value.reconstructions.pixels[0]), (7, 6));
        assert!(v.current().unwrap().explore.reconstructions.is_none(), "not the Samples tab's grid");
        v.apply(Event::ScoreProgress { run: 1, request: 1, done: 10, total: 20 }, t);
        let ex = &v.current().unwrap().explore;
        assert_eq!(ex.history.steps(), vec![50, 100]);
        assert_eq!(ex.history.at_step(70).unwrap().1.pixels[0], 1);
        assert_eq!(ex.decoded[&0].value.0, 3);
        assert_eq!(ex.score_progress, Some((1, 10, 20)));
        let set = ScoredSet {
            family: Family::Vae,
            anomaly_scores: Vec::new(),
            likelihood: None,
            k: 1,
            dims: 4,
            notice: None,
            samples: Vec::new(),
        };
        v.apply(Event::Scored { run: 1, request: 1, name: "test".into(), set: Box::new(set) }, t);
        let ex = &v.current().unwrap().explore;
        assert!(ex.score_progress.is_none());
        assert_eq!(ex.scored[&1].value.name, "test");
        let set = ex.scored[&1].value.set.clone();
        for request in 2..20 {
            let set = set.clone();
            v.apply(Event::Scored { run: 1, request, name: "x".into(), set: Box::new(set) }, t);
        }
        let ex = &v.current().unwrap().explore;
        assert_eq!(ex.scored.len(), SCORED_KEEP, "only the newest score sets are kept");
        assert!(ex.scored.contains_key(&19) && !ex.scored.contains_key(&1));
        v.apply(Event::ScoreProgress { run: 1, request: 20, done: 1, total: 20 }, t);
        v.apply(Event::Error { message: "scoring x failed".into() }, t);
        assert!(v.current().unwrap().explore.score_progress.is_none(), "a failed score ends the wait");
        let first = v.current().unwrap().explore.decoded[&0].version;

        // A long run's history stops at HISTORY_GRIDS grids (small images) however many come.
        for k in 3..2_000u64 {
            v.apply(Event::FixedNoise { run: 1, step: 50 * k, images: grid(k as u8) }, t);
        }
        let h = &v.current().unwrap().explore.history;
        assert!(h.len() <= HISTORY_GRIDS && h.len() > HISTORY_GRIDS / 2, "{} grids", h.len());
        assert_eq!(h.steps().first(), Some(&50), "the first grid stays");
        assert_eq!(h.steps().last(), Some(&(50 * 1_999)), "the newest grid stays");
        assert_eq!(history_budget(50_176), HISTORY_GRIDS * 50_176);
        assert_eq!(history_budget(3 * 64 * 64 * 64), HISTORY_BUDGET, "large grids: the byte budget");
        v.apply(Event::Decoded { run: 1, channel: 0, request: 4, images: grid(4) }, t);
        assert!(v.current().unwrap().explore.decoded[&0].version > first, "new data, new version");
    }

    #[test]
    fn rewinding_drops_the_grids_logged_after_the_step() {
        use crate::engine::data::ImageShape;
        let t = Instant::now();
        let mut v = RunView::default();
        v.apply(started(1, Family::Vae), t);
        let grid = |x: u8| ImageBatch { shape: ImageShape::new(1, 2, 2), pixels: vec![x; 4] };
        for step in [0, 5, 10, 15] {
            v.apply(Event::FixedNoise { run: 1, step, images: grid(step as u8) }, t);
        }
        v.apply(Event::Rewound { run: 1, step: 7 }, t);
        let r = v.current().unwrap();
        assert_eq!(r.explore.history.steps(), vec![0, 5]);
        assert!(r.fixed_noise.is_none(), "the grid of step 15 came after the rewind point");
        v.apply(Event::FixedNoise { run: 1, step: 7, images: grid(77) }, t);
        assert_eq!(v.current().unwrap().explore.history.steps(), vec![0, 5, 7]);
    }

    #[test]
    fn metrics_csv_has_a_row_per_step_with_epoch_lr_and_rate() {
        let t = Instant::now();
        let mut v = RunView::default();
        v.apply(started(1, Family::Vae), t);
        v.apply(metrics(1, 1..13, 1e-3), t);
        let csv = v.current().unwrap().series.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "step,epoch,loss,recon,kl,lr,images_per_sec");
        assert_eq!(lines.len(), 13);
        assert_eq!(lines[1], "1,0,100,90,10,0.001,1000");
        assert!(lines[12].starts_with("12,1,"), "{}", lines[12]);
    }
}
