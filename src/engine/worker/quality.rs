//! Sample quality during training: the reference (feature network, real images' features,
//! floor and ceiling) is prepared once per dataset on a helper thread so training does not
//! wait for it; evaluations run on the worker between steps (they need the model), at the
//! schedule the UI chose, and keep a rewind point at the step they measured.

use crossbeam_channel::TryRecvError;

use super::*;
use crate::engine::data::Split;
use crate::engine::images::ImageBatch;
use crate::engine::metrics::QualityRow;
use crate::engine::protocol::{
    NearestView, QualityCost, QualitySchedule, LIVE_QUALITY_SAMPLES, QUALITY_BUDGET,
};
use crate::engine::quality::{self, QualityContext};

/// A reference ready for a dataset and split.
struct Prepared {
    data: Arc<Dataset>,
    split: Split,
    ctx: QualityContext,
    seconds: f64,
}

/// A reference being prepared on the helper thread.
struct Preparing {
    data: Arc<Dataset>,
    split: Split,
    result: Receiver<std::result::Result<(QualityContext, f64), String>>,
}

/// The worker's quality state: the schedule and the reference, kept across runs on the same data.
pub(super) struct QualityState {
    pub(super) schedule: QualitySchedule,
    prepared: Option<Prepared>,
    preparing: Option<Preparing>,
    /// The data whose reference could not be prepared (not retried every step).
    failed: Option<Arc<Dataset>>,
}

impl Default for QualityState {
    fn default() -> Self {
        Self { schedule: QualitySchedule::Off, prepared: None, preparing: None, failed: None }
    }
}

/// A run's quality bookkeeping.
#[derive(Default)]
pub(super) struct RunQuality {
    /// Wall time of the run's training steps.
    pub(super) train_seconds: f64,
    /// Training steps taken (and timed) in this run, and the epoch of the last.
    pub(super) steps: u64,
    pub(super) epoch: usize,
    eval_seconds: f64,
    /// The last evaluation's wall time.
    last_seconds: Option<f64>,
    /// Steps between evaluations, once known.
    every: u64,
    last_step: Option<u64>,
    /// Before the first evaluation: its cost estimated from drawing a few samples (a
    /// diffusion model's samples cost a hundred network passes each, a VAE's one).
    first_estimate: Option<f64>,
}

/// Samples drawn to estimate the first evaluation's cost.
const PROBE_SAMPLES: usize = 8;

impl RunQuality {
    pub(super) fn reset_schedule(&mut self) {
        self.every = 0;
    }
}

impl QualityState {
    fn matches(data: &Arc<Dataset>, split: &Split, d: &Arc<Dataset>, s: &Split) -> bool {
        Arc::ptr_eq(data, d) && split == s
    }

    fn ready(&self, data: &Arc<Dataset>, split: &Split) -> bool {
        self.prepared.as_ref().is_some_and(|p| Self::matches(data, split, &p.data, &p.split))
    }

    /// Starts preparing the reference for `data` unless it is ready, under way or failed.
    pub(super) fn prepare(&mut self, data: &Arc<Dataset>, split: &Split) {
        let under_way =
            self.preparing.as_ref().is_some_and(|p| Self::matches(data, split, &p.data, &p.split));
        let failed = self.failed.as_ref().is_some_and(|d| Arc::ptr_eq(d, data));
        if self.ready(data, split) || under_way || failed {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (d, s) = (data.clone(), split.clone());
        let spawned = std::thread::Builder::new().name("genlab-quality".into()).spawn(move || {
            let t0 = Instant::now();
            let built = quality::feature_net(&d, &s, &mut |_| {})
                .and_then(|net| QualityContext::new(&d, &s, net, LIVE_QUALITY_SAMPLES, 0))
                .map(|ctx| (ctx, t0.elapsed().as_secs_f64()))
                .map_err(|e| e.to_string());
            let _ = tx.send(built);
        });
        if spawned.is_ok() {
            self.preparing = Some(Preparing { data: data.clone(), split: split.clone(), result: rx });
        }
    }

    /// Takes a finished preparation in (waiting for it if `wait`); an error comes back once.
    fn poll(&mut self, wait: bool) -> Option<String> {
        let p = self.preparing.as_ref()?;
        let got =
            if wait { p.result.recv().map_err(|_| TryRecvError::Disconnected) } else { p.result.try_recv() };
        let result = match got {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err("the quality thread ended early".into()),
        };
        let p = self.preparing.take()?;
        match result {
            Ok((ctx, seconds)) => {
                self.prepared = Some(Prepared { data: p.data, split: p.split, ctx, seconds });
                None
            }
            Err(e) => {
                self.failed = Some(p.data);
                Some(format!("sample quality cannot be measured on this data: {e}"))
            }
        }
    }
}

/// The smallest of 1, 2, 5 × 10ᵏ at least `x`, so the curve's points fall on round steps.
fn round_up_nice(x: f64) -> u64 {
    let x = x.max(1.0);
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            if (base * m) as f64 >= x {
                return base * m;
            }
        }
        base = base.saturating_mul(10);
    }
}

impl WorkerLoop {
    /// Begins preparing the current run's reference if quality is on.
    pub(super) fn quality_prepare(&mut self) {
        let Some(run) = self.run.as_ref() else { return };
        if self.quality.schedule != QualitySchedule::Off {
            let (data, split) = (run.session.data().clone(), run.session.split().clone());
            self.quality.prepare(&data, &split);
        }
    }

    /// After a step: measures quality if due (`last`: the run has just completed).
    pub(super) fn quality_tick(&mut self, last: bool) {
        if self.quality.schedule == QualitySchedule::Off {
            return;
        }
        // Every N steps means at those steps: the first waits for the reference if need be;
        // auto never makes training wait for it.
        let step_now = self.run.as_ref().map_or(0, |r| r.session.step_count());
        let asked =
            matches!(self.quality.schedule, QualitySchedule::Every(n) if n > 0 && step_now.is_multiple_of(n));
        if let Some(message) = self.quality.poll(last || asked) {
            self.error(message);
        }
        let Some(run) = self.run.as_mut() else { return };
        let Some(p) = self.quality.prepared.as_ref() else { return };
        if !QualityState::matches(run.session.data(), run.session.split(), &p.data, &p.split) {
            return;
        }
        let step = run.session.step_count();
        if self.quality.schedule == QualitySchedule::Auto && run.quality.first_estimate.is_none() {
            let t0 = Instant::now();
            let probe =
                run.pool.install(|| run.session.sample(PROBE_SAMPLES, 1.0, quality_seed(&run.session)));
            let per_sample = t0.elapsed().as_secs_f64() / PROBE_SAMPLES as f64;
            // A failed probe says nothing about the cost; the evaluation will report the error.
            let sampling = if probe.is_ok() { per_sample * p.ctx.n as f64 } else { 0.0 };
            run.quality.first_estimate = Some(p.seconds / 2.0 + sampling);
        }
        let q = &mut run.quality;
        let first = q.first_estimate.unwrap_or(p.seconds / 2.0);
        if q.every == 0 {
            q.every = schedule_every(self.quality.schedule, q, first);
        }
        let due = match self.quality.schedule {
            QualitySchedule::Off => false,
            QualitySchedule::Every(n) => n > 0 && step.is_multiple_of(n),
            QualitySchedule::Auto => {
                let estimate = q.last_seconds.unwrap_or(first);
                step.is_multiple_of(q.every.max(1))
                    && q.eval_seconds + estimate <= QUALITY_BUDGET * q.train_seconds
            }
        };
        if (due || last) && q.last_step != Some(step) {
            self.evaluate_quality();
        }
    }

    /// Whether the current run's reference is ready, waiting for it if it is still being
    /// prepared; says why not when there is no run or it cannot be prepared.
    fn reference_ready(&mut self) -> bool {
        let Some(run) = self.run.as_ref() else {
            self.error("no run: train or load a model first".into());
            return false;
        };
        let (data, split) = (run.session.data().clone(), run.session.split().clone());
        self.quality.prepare(&data, &split);
        if let Some(message) = self.quality.poll(true) {
            self.error(message);
        }
        self.quality.ready(&data, &split)
    }

    /// Measures quality now (the reference is waited for if it is still being prepared).
    pub(super) fn evaluate_quality(&mut self) {
        if !self.reference_ready() {
            return;
        }
        let (Some(run), Some(p)) = (self.run.as_mut(), self.quality.prepared.as_ref()) else { return };
        let (id, step) = (run.id, run.session.step_count());
        let seed = quality_seed(&run.session);
        let t0 = Instant::now();
        let report = match run.pool.install(|| p.ctx.score_model(run.session.model(), seed)) {
            Ok(r) => r,
            Err(e) => {
                self.error(format!("measuring sample quality failed: {e}"));
                return;
            }
        };
        run.metrics.push_quality(QualityRow::new(run.quality.epoch, step, &report));
        // A rewind point where quality was measured makes "rewind to the best" possible.
        let mut rewind_error = None;
        let points_before = run.rewind.steps().to_vec();
        if run.rewind.enabled() && !run.rewind.steps().contains(&step) && step > 0 {
            if let Err(e) = run.rewind.keep(&run.session, &run.metrics) {
                rewind_error = Some(format!("keeping a rewind point at step {step} failed: {e}"));
            }
        }
        run.rewind.note_fd(step, report.samples.metrics.fd);
        let points = run.rewind.steps().to_vec();
        let seconds = t0.elapsed().as_secs_f64();
        let q = &mut run.quality;
        q.eval_seconds += seconds;
        q.last_seconds = Some(seconds);
        q.last_step = Some(step);
        q.every = schedule_every(self.quality.schedule, q, p.seconds);
        let cost = QualityCost {
            seconds,
            every: q.every,
            share: q.eval_seconds / q.train_seconds.max(1e-9),
            prepare_seconds: p.seconds,
        };
        if let Some(message) = rewind_error {
            self.error(message);
        }
        if points != points_before {
            self.emit(Event::RewindPoints { run: id, steps: points });
        }
        self.emit(Event::Quality { run: id, step, report: Box::new(report), cost });
    }
}

/// Samples per class of a conditioning measurement in the app (1,000 in all for ten classes).
pub const LIVE_CONDITIONING_PER_CLASS: usize = 100;

impl WorkerLoop {
    /// Measures the per-class agreement of a conditional model now (the reference, whose
    /// feature network is the classifier, is waited for if it is still being prepared).
    pub(super) fn evaluate_conditioning(&mut self) {
        if !self.reference_ready() {
            return;
        }
        let (Some(run), Some(p)) = (self.run.as_ref(), self.quality.prepared.as_ref()) else { return };
        let (id, step) = (run.id, run.session.step_count());
        let model = run.session.model();
        let k = model.classes().max(1);
        let per_class = LIVE_CONDITIONING_PER_CLASS.max(1000 / k);
        let seed = quality_seed(&run.session);
        match run.pool.install(|| p.ctx.conditioning(model, per_class, seed)) {
            Ok(report) => self.emit(Event::Conditioning { run: id, step, report: Box::new(report) }),
            Err(e) => self.error(format!("measuring the conditioning failed: {e}")),
        }
    }
}

/// The seed of a run's quality samples: the same draw at every measurement.
fn quality_seed(session: &crate::engine::session::TrainingSession) -> u64 {
    session.config().train.seed ^ 0x0a11_7e57
}

/// Pairs shown in the memorisation view.
pub const NEAREST_SHOWN: usize = 24;

impl WorkerLoop {
    /// The memorisation view: the current model's samples beside their nearest training
    /// images (the reference is waited for if it is still being prepared).
    pub(super) fn nearest(&mut self) {
        if !self.reference_ready() {
            return;
        }
        let (Some(run), Some(p)) = (self.run.as_ref(), self.quality.prepared.as_ref()) else { return };
        let (data, split) = (run.session.data(), run.session.split());
        let (id, step) = (run.id, run.session.step_count());
        let seed = quality_seed(&run.session);
        let measured = run.pool.install(|| -> crate::engine::Result<_> {
            let samples = run.session.sample(p.ctx.n, 1.0, seed)?;
            let pixels: Vec<f32> = samples.pixels.iter().map(|&v| v as f32 / 255.0).collect();
            let memo = quality::memorisation::memorisation(&p.ctx, data, split, &pixels, p.ctx.n)?;
            Ok((samples, memo))
        });
        let (samples, memo) = match measured {
            Ok(m) => m,
            Err(e) => {
                self.error(format!("finding the nearest training images failed: {e}"));
                return;
            }
        };
        let shown: Vec<_> = memo.pairs.iter().take(NEAREST_SHOWN).collect();
        let parts: Vec<ImageBatch> = shown.iter().map(|q| samples.slice(q.sample, q.sample + 1)).collect();
        let refs: Vec<&ImageBatch> = parts.iter().collect();
        let train_idx: Vec<usize> = shown.iter().map(|q| q.train).collect();
        let view = NearestView {
            samples: ImageBatch::concat(&refs).unwrap_or_else(|| samples.slice(0, 0)),
            train: ImageBatch::from_f32(&data.gather(&train_idx), data.shape),
            distances: shown.iter().map(|q| q.distance).collect(),
            train_indices: train_idx,
            measured: memo.pairs.len(),
            share_closer: memo.share_closer,
            test_p5: memo.test_p5,
            test_median: memo.test_median,
            sample_median: memo.pairs.get(memo.pairs.len() / 2).map_or(0.0, |q| q.distance),
        };
        self.emit(Event::Nearest { run: id, step, view: Box::new(view) });
    }
}

/// Steps between evaluations: the user's N, or for auto the fewest that keep an evaluation's
/// cost (measured, or `first_estimate` before the first) within the budget.
fn schedule_every(schedule: QualitySchedule, q: &RunQuality, first_estimate: f64) -> u64 {
    match schedule {
        QualitySchedule::Off => 0,
        QualitySchedule::Every(n) => n,
        QualitySchedule::Auto => {
            let step_seconds = q.train_seconds / q.steps.max(1) as f64;
            let estimate = q.last_seconds.unwrap_or(first_estimate);
            if step_seconds <= 0.0 {
                return 0;
            }
            round_up_nice(estimate / (QUALITY_BUDGET * step_seconds))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_up_nice;

    #[test]
    fn intervals_are_round() {
        let got: Vec<u64> = [0.3, 1.0, 1.5, 2.0, 3.0, 7.0, 11.0, 180.0, 501.0].map(round_up_nice).to_vec();
        assert_eq!(got, [1, 1, 2, 2, 5, 10, 20, 200, 1000]);
    }
}
