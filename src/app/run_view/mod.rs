//! [`RunView`]: a pure fold of the worker's [`Event`]s into what the UI draws (status, loss
//! history, markers, the latest sample grid) and the list of this session's runs. No drawing
//! and no threads here, so it is tested with plain events.

use std::time::{Duration, Instant};

use crate::engine::config::RunConfig;
use crate::engine::explore::GridHistory;
use crate::engine::images::ImageBatch;
use crate::engine::models::{Capabilities, LiveHyper, LossKey, Losses};
use crate::engine::protocol::{DatasetInfo, Event, FinishReason, NearestView, QualityCost, StepMetrics};
use crate::engine::quality::{self, Conditioning, QualityReport};
use crate::engine::scoring::{HoldOutReport, ScoredSet};
use crate::engine::session::{Encoding, EpochSummary};

mod explore;
mod sampler;
mod series;
pub use explore::*;
pub use sampler::*;
pub use series::*;

/// Weight of the past in the smoothed images-per-second figure.
const RATE_SMOOTHING: f64 = 0.9;

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
    /// How long the latest grid took to draw (see [`crate::engine::protocol::VIEW_BUDGET`]).
    pub grid_seconds: Option<f64>,
    pub paused: bool,
    pub diverged: Option<(u64, String)>,
    pub collapse: Option<(u64, String)>,
    /// Steps the run can be rewound to.
    pub rewind_points: Vec<u64>,
    /// Sample quality measured so far, in order of steps.
    pub quality: Vec<QualityPoint>,
    /// What the latest evaluation cost.
    pub quality_cost: Option<QualityCost>,
    /// The last checkpoint written for this run (step, folder).
    pub saved_checkpoint: Option<(u64, std::path::PathBuf)>,
    pub explore: Explore,
    pub end: Option<RunEnd>,
    pub started_at: Instant,
    pub ended_at: Option<Instant>,
}

/// One quality evaluation of a run.
#[derive(Clone, Debug)]
pub struct QualityPoint {
    pub step: u64,
    pub report: QualityReport,
    /// What the numbers say about collapse or missing classes ([`quality::warnings`]).
    pub warnings: Vec<String>,
}

impl RunRecord {
    /// The evaluation with the lowest Fréchet distance.
    pub fn best_quality(&self) -> Option<&QualityPoint> {
        self.quality.iter().min_by(|a, b| a.report.samples.metrics.fd.total_cmp(&b.report.samples.metrics.fd))
    }

    /// The rewind point with the lowest Fréchet distance (the worker keeps one at every
    /// evaluation and never thins the best away).
    pub fn best_rewind_point(&self) -> Option<&QualityPoint> {
        self.quality
            .iter()
            .filter(|q| self.rewind_points.contains(&q.step))
            .min_by(|a, b| a.report.samples.metrics.fd.total_cmp(&b.report.samples.metrics.fd))
    }

    /// The latest evaluation (the final quality once the run has ended).
    pub fn last_quality(&self) -> Option<&QualityPoint> {
        self.quality.last()
    }

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
        self.explore.class_history.truncate_after(step);
        self.epochs.retain(|(s, _)| *s <= step);
        self.markers.retain(|m| m.step <= step);
        self.quality.retain(|q| q.step <= step);
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
    /// Warnings for the user (sample quality that says the model collapsed) not yet shown.
    warnings: Vec<String>,
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

    /// Warnings for the user since the last call (each handed out once).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
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
                    grid_seconds: None,
                    paused: false,
                    diverged: None,
                    collapse: None,
                    rewind_points: Vec::new(),
                    quality: Vec::new(),
                    quality_cost: None,
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
            Event::FixedNoise { run, step, images, seconds } => {
                if let Some(r) = self.record_mut(run) {
                    r.grid_seconds = Some(seconds);
                    let history = &mut r.explore.history;
                    history.budget_bytes = history_budget(images.pixels.len());
                    history.push(step, images.clone());
                    r.fixed_noise = Some((step, images));
                }
            }
            Event::ClassGrid { run, step, classes, images } => {
                if let Some(r) = self.record_mut(run) {
                    let history = &mut r.explore.class_history;
                    history.budget_bytes = history_budget(images.pixels.len());
                    history.push(step, images);
                    r.explore.grid_classes = classes;
                }
            }
            Event::ClassInterpolated { run, step, a, b, steps, images } => {
                if let Some(r) = self.record_mut(run) {
                    let value = ClassInterpolated { step, a, b, steps, images };
                    r.explore.class_interpolated = Some(Versioned { version, value });
                }
            }
            Event::SameStyle { run, step, indices, originals, classes, images } => {
                if let Some(r) = self.record_mut(run) {
                    let value = SameStyle { step, indices, originals, classes, images };
                    r.explore.same_style = Some(Versioned { version, value });
                }
            }
            Event::Conditioning { run, step, report } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.conditioning = Some(Versioned { version, value: (step, *report) });
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
            Event::HyperChanged { run, step, hyper, value } => {
                if let Some(r) = self.record_mut(run) {
                    r.markers.push(Marker { step, kind: MarkerKind::Hyper(hyper, value) });
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
            Event::Nearest { run, step, view } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.nearest = Some(Versioned { version, value: (step, *view) });
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
            Event::Disentangled { run, step, report, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                    r.explore.disentangled = Some(Versioned { version, value: (step, *report) });
                }
            }
            Event::SweepRow { run, request, total, row, .. } => {
                if let Some(r) = self.record_mut(run) {
                    let sweep = r.explore.sweep.get_or_insert_with(Default::default);
                    if sweep.request != request {
                        *sweep = SweepState { request, ..Default::default() };
                    }
                    sweep.total = total;
                    sweep.rows.push(row);
                }
            }
            Event::SweepDone { run, request, cancelled } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                    let sweep = r.explore.sweep.get_or_insert_with(Default::default);
                    if sweep.request != request {
                        *sweep = SweepState { request, ..Default::default() };
                    }
                    sweep.done = true;
                    sweep.cancelled = cancelled;
                }
            }
            Event::Quality { run, step, report, cost } => {
                let Some(r) = self.record_mut(run) else { return };
                let warnings = quality::warnings(&report);
                // Say so when the samples start to look collapsed, not at every evaluation.
                let was_fine = r.quality.last().is_none_or(|q| q.warnings.is_empty());
                let tell: Vec<String> = match was_fine {
                    true => warnings.iter().map(|w| format!("Run {run}, step {step}: {w}")).collect(),
                    false => Vec::new(),
                };
                r.quality.retain(|q| q.step < step);
                r.quality.push(QualityPoint { step, report: *report, warnings });
                r.quality_cost = Some(cost);
                self.warnings.extend(tell);
            }
            Event::Trajectory { .. }
            | Event::Noised { .. }
            | Event::SamplerChanged { .. }
            | Event::TimestepLosses { .. } => self.apply_sampler(event, version),
            Event::PriorTrained { run, step, summary, .. } => {
                if let Some(r) = self.record_mut(run) {
                    r.explore.score_progress = None;
                    r.explore.prior =
                        Some(Versioned { version, value: PriorView { step, summary: *summary } });
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
mod tests;
