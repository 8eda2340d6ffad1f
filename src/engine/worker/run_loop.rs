//! The worker thread's loop: drain commands between steps, train one step, send events; and
//! how a run starts and ends.

use super::*;

impl WorkerLoop {
    pub(super) fn new(commands: Receiver<Command>, events: Sender<Event>, waker: Waker) -> Self {
        let outbox = Outbox {
            queue: VecDeque::new(),
            metrics: Vec::new(),
            metrics_run: 0,
            last_metrics: Instant::now(),
        };
        Self {
            commands,
            events,
            waker,
            outbox,
            run: None,
            next_run: 1,
            stash: VecDeque::new(),
            step_hook: None,
            quality: Default::default(),
            prior: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let busy = self.run.as_ref().is_some_and(|r| !r.paused) || !self.stash.is_empty();
            // Drain commands: without waiting while training, else wait a little.
            let first = if let Some(c) = self.stash.pop_front() {
                Some(c)
            } else if busy {
                match self.commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                let wait =
                    if self.outbox.queue.is_empty() && self.outbox.metrics.is_empty() { 50 } else { 5 };
                match self.commands.recv_timeout(Duration::from_millis(wait)) {
                    Ok(c) => Some(c),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            };
            if let Some(c) = first {
                let mut pending = vec![c];
                pending.extend(self.stash.drain(..));
                pending.extend(self.commands.try_iter());
                // Only the newest decode request per channel is worth answering.
                let mut newest = std::collections::HashMap::new();
                for (i, c) in pending.iter().enumerate() {
                    if let Command::Decode { channel, .. } = c {
                        newest.insert(*channel, i);
                    }
                }
                // A cancel that arrived with the request it cancels.
                let last_cancel = pending.iter().rposition(|c| matches!(c, Command::CancelScore));
                for (i, c) in pending.into_iter().enumerate() {
                    if let Command::Decode { channel, .. } = &c {
                        if newest.get(channel) != Some(&i) {
                            continue;
                        }
                    }
                    if let Command::Score { request, .. }
                    | Command::HoldOut { request, .. }
                    | Command::Sweep { request, .. } = &c
                    {
                        if last_cancel.is_some_and(|k| k > i) {
                            let run = self.run.as_ref().map_or(0, |r| r.id);
                            self.emit(Event::ScoreCancelled { run, request: *request });
                            continue;
                        }
                    }
                    if matches!(c, Command::Shutdown) {
                        self.finish(FinishReason::Stopped);
                        self.outbox.send(&self.events, &self.waker);
                        return;
                    }
                    // A panic in a command (a bug, or a decoder that panics on a bad file)
                    // ends the run it may have left half-changed, not the worker.
                    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(c))) {
                        let run = self.run.take().map(|r| r.id);
                        let message = format!("the worker panicked: {}", panic_message(panic.as_ref()));
                        self.emit(Event::Failed { run, message });
                    }
                }
            }
            if self.run.as_ref().is_some_and(|r| !r.paused) {
                self.train_one();
            }
            if !self.outbox.send(&self.events, &self.waker) {
                return; // the consumer is gone
            }
        }
    }

    pub(super) fn emit(&mut self, ev: Event) {
        self.outbox.push(ev);
    }

    pub(super) fn error(&mut self, message: String) {
        self.emit(Event::Error { message });
    }

    /// Ends the current run with `Finished`. A completed or stopped run's model stays for
    /// exploring; a replaced one is dropped.
    pub(super) fn finish(&mut self, reason: FinishReason) {
        let Some(run) = self.run.as_mut() else { return };
        if !run.ended {
            run.ended = true;
            run.paused = true;
            run.steps_left = None;
            let (id, step) = (run.id, run.session.step_count());
            self.emit(Event::Finished { run: id, step, reason });
        }
        if reason == FinishReason::Replaced {
            self.run = None;
        }
    }

    /// The fixed-noise grid, the class grid and the loss per timestep; `during_training`
    /// counts their time against the run's [`views::ViewBudget`].
    pub(super) fn emit_grid(&mut self, during_training: bool) {
        let Some(run) = self.run.as_ref() else { return };
        let (id, step) = (run.id, run.session.step_count());
        let t0 = Instant::now();
        let grid = run.pool.install(|| run.session.fixed_noise_grid());
        self.emit_class_grid();
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(run) = self.run.as_mut() {
            run.views.grid_drawn(seconds, during_training);
        }
        match grid {
            Ok(images) => self.emit(Event::FixedNoise { run: id, step, images, seconds }),
            Err(e) => self.error(format!("drawing the sample grid failed: {e}")),
        }
        self.emit_timestep_losses();
    }

    pub(super) fn train_one(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let id = run.id;
        let session = &mut run.session;
        let t0 = Instant::now();
        let result = run.pool.install(|| std::panic::catch_unwind(AssertUnwindSafe(|| session.step())));
        run.quality.train_seconds += t0.elapsed().as_secs_f64();
        run.quality.steps += 1;
        let report = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.run = None;
                self.emit(Event::Failed { run: Some(id), message: format!("training step failed: {e}") });
                return;
            }
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                self.run = None;
                self.emit(Event::Failed { run: Some(id), message: format!("training step panicked: {msg}") });
                return;
            }
        };
        let m = StepMetrics {
            step: report.step,
            epoch: report.epoch,
            losses: report.losses,
            learning_rate: run.session.model().learning_rate(),
            images_per_sec: report.images_per_sec,
        };
        run.metrics.push_step(&m);
        run.quality.epoch = m.epoch;
        if let Some(left) = run.steps_left.as_mut() {
            *left = left.saturating_sub(1);
        }
        let sample_every = run.session.config().train.sample_every.max(1);
        let health_warning = run.health.observe(&report.losses);
        let step_limit_hit = run.steps_left == Some(0);
        let finished = run.session.is_finished();
        if let Some(e) = &report.epoch_end {
            run.metrics.push_epoch(report.step, e);
        }
        let mut rewind_update = None;
        if !report.diverged && run.rewind.due(report.step) {
            rewind_update = Some(match run.rewind.keep(&run.session, &run.metrics) {
                Ok(()) => Ok(run.rewind.steps().to_vec()),
                Err(e) => Err(format!("keeping a rewind point at step {} failed: {e}", report.step)),
            });
        }
        self.outbox.push_metrics(id, m);
        if let Some(hook) = &self.step_hook {
            hook(id, m.step);
        }
        match rewind_update {
            Some(Ok(steps)) => self.emit(Event::RewindPoints { run: id, steps }),
            Some(Err(message)) => self.error(message),
            None => {}
        }
        if report.diverged {
            let lr = m.learning_rate;
            let restored = match report.restored_to {
                Some(k) => format!("the weights of step {k}, the last known good ones, were restored"),
                None => "the update was refused".to_string(),
            };
            let message = format!(
                "the loss became NaN or infinite at step {} (learning rate {lr}); {restored}. {}",
                report.step,
                report.divergence_advice()
            );
            if let Some(run) = self.run.as_mut() {
                run.paused = true;
                run.steps_left = None;
            }
            self.emit(Event::Diverged { run: id, step: report.step, message });
            self.emit(Event::Paused { run: id, step: report.step });
            return;
        }
        if let Some(message) = health_warning {
            self.emit(Event::CollapseWarning { run: id, step: report.step, message });
        }
        let grid_due = report.step % sample_every == 0 || report.epoch_end.is_some() || finished;
        let grid_fits =
            self.run.as_ref().is_some_and(|r| r.views.grid_fits(r.quality.train_seconds, finished));
        if grid_due && grid_fits {
            self.emit_grid(true);
        } else if report.step % super::sampler::TIMESTEP_LOSS_EVERY == 0 {
            self.emit_timestep_losses();
        }
        if let Some(summary) = report.epoch_end {
            self.emit(Event::EpochEnded { run: id, summary });
        }
        self.quality_tick(finished);
        if finished {
            self.finish(FinishReason::Completed);
        } else if step_limit_hit {
            if let Some(run) = self.run.as_mut() {
                run.paused = true;
                run.steps_left = None;
            }
            self.emit(Event::Paused { run: id, step: report.step });
        }
    }
}

/// The message a panic was raised with.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

pub(super) fn load_data(spec: DataSpec) -> Result<Arc<Dataset>> {
    match spec {
        DataSpec::Loaded(d) => Ok(d),
        DataSpec::Source(src, opts) => Ok(Arc::new(data::load(&src, &opts)?)),
    }
}

pub(super) fn start_run(
    id: u64,
    config: RunConfig,
    data: DataSpec,
    checkpoint_dir: Option<&std::path::Path>,
    paused: bool,
) -> Result<(Run, Event)> {
    let data = load_data(data)?;
    let pool = kernels::pool::build(config.train.threads)?;
    let mut session = pool.install(|| TrainingSession::new(config.clone(), data.clone()))?;
    if let Some(dir) = checkpoint_dir {
        let loaded = checkpoint::load(dir)?;
        if loaded.meta.config.model != config.model {
            return Err(EngineError::checkpoint(dir, "its model configuration differs from this run's"));
        }
        let state = loaded.model.state()?;
        session.model_mut().load_state(&state)?;
        session.model_mut().set_optimizer_steps(&loaded.meta.optimizer_steps);
        session.model_mut().set_hyper(LiveHyper::LearningRate, config.optim.lr)?;
        session.set_progress(loaded.meta.step);
    }
    let split = session.split();
    let dataset = DatasetInfo {
        name: data.name.clone(),
        source: data.source.clone(),
        shape: data.shape,
        train: split.train.len(),
        test: split.test.len(),
    };
    let started = Event::Started {
        run: id,
        config: Box::new(config),
        param_count: session.model().param_count(),
        capabilities: Box::new(session.model().capabilities()),
        dataset,
        steps_per_epoch: session.steps_per_epoch(),
        total_steps: session.total_steps(),
        start_step: session.step_count(),
    };
    let t = &session.config().train;
    let rewind = RewindStore::new(id, t.keep_every, t.keep_count);
    let health = session.model().health_monitor();
    let run = Run {
        id,
        session,
        paused,
        steps_left: None,
        metrics: MetricsLog::default(),
        health,
        rewind,
        ended: false,
        pool,
        quality: Default::default(),
        views: Default::default(),
    };
    Ok((run, started))
}
