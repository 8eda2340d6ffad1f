//! The worker's disentanglement requests: the current model's scores on its data's factors,
//! and the β sweep on the run's data and configuration (the run itself waits meanwhile).

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::engine::disentangle::{self, ScoreOptions};
use crate::engine::sweep::{self, SweepPlan, SweepProgress};

impl WorkerLoop {
    pub(super) fn disentangle(&mut self, request: u64, options: ScoreOptions) {
        let Some(run) = self.run.take() else {
            self.error("no run: train or load a model first".into());
            return;
        };
        let (id, step) = (run.id, run.session.step_count());
        // Encoding the data is most of the cost and reports no progress of its own: the
        // request is announced as started, then answered.
        let mut last = Instant::now() - Duration::from_secs(1);
        self.long_request_progress(id, request, 0, 1, &mut last);
        let result =
            run.pool.install(|| disentangle::score_model(run.session.model(), run.session.data(), &options));
        self.run = Some(run);
        match result {
            Ok(report) => {
                self.emit(Event::ScoreProgress { run: id, request, done: 1, total: 1 });
                self.emit(Event::Disentangled { run: id, request, step, report: Box::new(report) });
            }
            Err(e) => self.error(format!("the disentanglement scores failed: {e}")),
        }
    }

    pub(super) fn sweep(
        &mut self,
        request: u64,
        betas: Vec<f64>,
        seeds: Vec<u64>,
        max_steps: Option<u64>,
        options: ScoreOptions,
    ) {
        let Some(run) = self.run.take() else {
            self.error("no run: the sweep trains the current run's configuration on its data".into());
            return;
        };
        let id = run.id;
        let data = run.session.data().clone();
        let plan = SweepPlan { base: run.session.config().clone(), betas, seeds, max_steps, score: options };
        let runs = plan.runs().len() as u64;
        let per_run = max_steps.map_or(run.session.total_steps(), |m| m.min(run.session.total_steps()));
        let total = (runs * per_run).max(1) as usize;
        let cancel = AtomicBool::new(false);
        let mut last = Instant::now();
        let result = run.pool.install(|| {
            sweep::run_sweep(&plan, data, &cancel, &mut |p| match p {
                SweepProgress::Step { index, step, .. } => {
                    let done = (index as u64 * per_run + step) as usize;
                    if !self.long_request_progress(id, request, done.min(total), total, &mut last) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                SweepProgress::RunFinished { index, row } => {
                    self.emit(Event::SweepRow { run: id, request, index, total: runs as usize, row });
                    self.outbox.send(&self.events, &self.waker);
                }
                SweepProgress::RunStarted { .. } | SweepProgress::Scoring { .. } => {}
            })
        });
        self.run = Some(run);
        match result {
            Ok(r) => self.emit(Event::SweepDone { run: id, request, cancelled: r.cancelled }),
            Err(e) => {
                self.emit(Event::SweepDone { run: id, request, cancelled: true });
                self.error(format!("the β sweep failed: {e}"));
            }
        }
    }
}
