//! What the worker does with each [`Command`]: one match, the long requests (scoring, the
//! hold-out experiment; the disentanglement scores and the β sweep in `disentangle.rs`) with
//! their progress and cancellation.

use super::*;

impl WorkerLoop {
    pub(super) fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start { config, data, checkpoint, paused } => {
                self.finish(FinishReason::Replaced);
                let id = self.next_run;
                self.next_run += 1;
                match start_run(id, *config, data, checkpoint.as_deref(), paused) {
                    Ok((run, started)) => {
                        self.run = Some(run);
                        self.quality_prepare();
                        self.emit(started);
                        self.emit_grid(false);
                        if let Some(dir) = checkpoint.as_deref() {
                            self.load_prior(dir);
                        }
                        if paused {
                            let step = self.run.as_ref().map_or(0, |r| r.session.step_count());
                            self.emit(Event::Paused { run: id, step });
                        }
                    }
                    Err(e) => self.emit(Event::Failed { run: Some(id), message: e.to_string() }),
                }
            }
            Command::Shutdown | Command::CancelScore => {}
            Command::SetQuality(schedule) => {
                self.quality.schedule = schedule;
                if let Some(run) = self.run.as_mut() {
                    // The interval follows the new schedule from the next step.
                    run.quality.reset_schedule();
                }
                self.quality_prepare();
            }
            Command::EvaluateQuality => self.evaluate_quality(),
            Command::EvaluateConditioning => self.evaluate_conditioning(),
            Command::SampleClass { .. }
            | Command::DecodeClass { .. }
            | Command::ClassInterpolate { .. }
            | Command::SameStyle { .. } => self.conditional(cmd),
            Command::Trajectory { .. } | Command::Noised { .. } | Command::SetSampler(_) => self.sampler(cmd),
            Command::TrainPrior { request, config } => self.train_prior(request, config),
            Command::SamplePrior { n, seed } => self.sample_prior(n, seed),
            Command::Nearest => self.nearest(),
            Command::Score { request, target, options } => self.score(request, target, options),
            Command::HoldOut { request, labels, steps, options } => {
                self.hold_out(request, labels, steps, options)
            }
            Command::Disentangle { request, options } => self.disentangle(request, options),
            Command::Sweep { request, betas, seeds, max_steps, options } => {
                self.sweep(request, betas, seeds, max_steps, options)
            }
            other => {
                let Some(run) = self.run.as_mut() else {
                    if !matches!(other, Command::Pause | Command::Resume | Command::Stop) {
                        self.error("no run: start training first".into());
                    }
                    return;
                };
                let (id, step) = (run.id, run.session.step_count());
                if run.ended && matches!(other, Command::Resume | Command::Step(_)) {
                    self.error("this run has ended: rewind it or start a new one".into());
                    return;
                }
                if run.ended && matches!(other, Command::Pause | Command::Stop) {
                    return;
                }
                match other {
                    Command::Pause => {
                        if !run.paused {
                            run.paused = true;
                            run.steps_left = None;
                            self.emit(Event::Paused { run: id, step });
                        }
                    }
                    Command::Resume => {
                        if run.paused {
                            run.paused = false;
                            run.steps_left = None;
                            self.emit(Event::Resumed { run: id, step });
                        }
                    }
                    Command::Step(n) => {
                        if n > 0 {
                            run.paused = false;
                            run.steps_left = Some(n);
                        }
                    }
                    Command::Stop => self.finish(FinishReason::Stopped),
                    Command::SetLearningRate(lr) => {
                        if lr.is_finite() && lr > 0.0 {
                            match run.session.model_mut().set_hyper(LiveHyper::LearningRate, lr) {
                                Ok(()) => self.emit(Event::LearningRateChanged { run: id, step, lr }),
                                Err(e) => self.error(e.to_string()),
                            }
                        } else {
                            self.error(format!("learning rate must be a positive number (got {lr})"));
                        }
                    }
                    Command::SetBeta(beta) => {
                        if beta.is_finite() && beta >= 0.0 {
                            match run.session.model_mut().set_hyper(LiveHyper::Beta, beta) {
                                Ok(()) => self.emit(Event::BetaChanged { run: id, step, beta }),
                                Err(e) => self.error(e.to_string()),
                            }
                        } else {
                            self.error(format!("β must be a number ≥ 0 (got {beta})"));
                        }
                    }
                    Command::SetHyper { hyper, value } => {
                        if !value.is_finite() {
                            self.error(format!("{} must be a number (got {value})", hyper.label()));
                        } else {
                            match run.session.model_mut().set_hyper(hyper, value) {
                                Ok(()) => self.emit(match hyper {
                                    LiveHyper::LearningRate => {
                                        Event::LearningRateChanged { run: id, step, lr: value }
                                    }
                                    LiveHyper::Beta => Event::BetaChanged { run: id, step, beta: value },
                                    _ => Event::HyperChanged { run: id, step, hyper, value },
                                }),
                                Err(e) => self.error(e.to_string()),
                            }
                        }
                    }
                    Command::Sample { n, temperature, seed } => {
                        let r = run.pool.install(|| run.session.sample(n.clamp(1, 1024), temperature, seed));
                        match r {
                            Ok(images) => self.emit(Event::Samples { run: id, images }),
                            Err(e) => self.error(format!("sampling failed: {e}")),
                        }
                    }
                    Command::Reconstruct { indices } => {
                        let n = run.session.data().len();
                        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
                            let msg = format!("image {bad} does not exist (the dataset has {n})");
                            self.error(msg);
                            return;
                        }
                        match run.pool.install(|| run.session.reconstruct(&indices)) {
                            Ok(Some((originals, reconstructions))) => self.emit(Event::Reconstructions {
                                run: id,
                                indices,
                                originals,
                                reconstructions,
                            }),
                            Ok(None) => self.error("a GAN has no encoder to reconstruct with".into()),
                            Err(e) => self.error(format!("reconstruction failed: {e}")),
                        }
                    }
                    Command::ReconstructImages { request, images } => {
                        match run.pool.install(|| run.session.reconstruct_images(&images)) {
                            Ok(Some((originals, reconstructions))) => self.emit(Event::ImagesReconstructed {
                                run: id,
                                request,
                                originals,
                                reconstructions,
                            }),
                            Ok(None) => self.error("a GAN has no encoder to reconstruct with".into()),
                            Err(e) => self.error(format!("reconstruction failed: {e}")),
                        }
                    }
                    Command::Decode { channel, request, latents } => {
                        match run.pool.install(|| run.session.decode(&latents)) {
                            Ok(images) => self.emit(Event::Decoded { run: id, channel, request, images }),
                            Err(e) => self.error(format!("decoding failed: {e}")),
                        }
                    }
                    Command::Encode { split } => match run.pool.install(|| run.session.encode(split)) {
                        Ok(Some(encoding)) => self.emit(Event::Encoded { run: id, encoding }),
                        Ok(None) => self.error("a GAN has no encoder".into()),
                        Err(e) => self.error(format!("encoding failed: {e}")),
                    },
                    Command::SaveCheckpoint { dir } => {
                        let s = &run.session;
                        let source = s.data().source.clone();
                        match checkpoint::save(&dir, s.model(), s.config(), &source, step, Some(&run.metrics))
                        {
                            Ok(dir) => {
                                self.save_prior(&dir);
                                self.emit(Event::CheckpointSaved { run: id, step, dir })
                            }
                            Err(e) => self.error(format!("saving the checkpoint failed: {e}")),
                        }
                    }
                    Command::Rewind { step: to } => {
                        let r = run.pool.install(|| run.rewind.restore(to, &mut run.session));
                        match r {
                            Ok(()) => {
                                run.rewind.truncate_after(to);
                                run.metrics.truncate_after(to);
                                run.ended = false;
                                run.paused = true;
                                run.steps_left = None;
                                let steps = run.rewind.steps().to_vec();
                                self.emit(Event::Rewound { run: id, step: to });
                                self.emit(Event::RewindPoints { run: id, steps });
                                self.emit(Event::Paused { run: id, step: to });
                                self.emit_grid(false);
                            }
                            Err(e) => self.error(format!("rewinding to step {to} failed: {e}")),
                        }
                    }
                    Command::Start { .. }
                    | Command::SetQuality(_)
                    | Command::EvaluateQuality
                    | Command::EvaluateConditioning
                    | Command::SampleClass { .. }
                    | Command::DecodeClass { .. }
                    | Command::ClassInterpolate { .. }
                    | Command::SameStyle { .. }
                    | Command::Trajectory { .. }
                    | Command::Noised { .. }
                    | Command::SetSampler(_)
                    | Command::TrainPrior { .. }
                    | Command::SamplePrior { .. }
                    | Command::Nearest
                    | Command::Shutdown
                    | Command::Score { .. }
                    | Command::HoldOut { .. }
                    | Command::Disentangle { .. }
                    | Command::Sweep { .. }
                    | Command::CancelScore => {}
                }
            }
        }
    }

    /// A progress callback for long requests: reports progress (at most every 100 ms), keeps
    /// events flowing, and stashes commands that arrive; returns `false` to cancel when a
    /// `CancelScore`, `Stop`, `Start` or `Shutdown` came in.
    pub(super) fn long_request_progress(
        &mut self,
        run: u64,
        request: u64,
        done: usize,
        total: usize,
        last: &mut Instant,
    ) -> bool {
        if last.elapsed() >= Duration::from_millis(100) || done == total {
            *last = Instant::now();
            self.outbox
                .queue
                .retain(|e| !matches!(e, Event::ScoreProgress { request: r, .. } if *r == request));
            self.emit(Event::ScoreProgress { run, request, done, total });
            self.outbox.send(&self.events, &self.waker);
        }
        let mut cancel = false;
        // The stash is bounded like the channel: once it is full, commands wait in the channel
        // (where the UI's `try_send` finds it full and says so).
        while self.stash.len() < COMMAND_CAPACITY {
            let Ok(c) = self.commands.try_recv() else { break };
            match c {
                Command::CancelScore => cancel = true,
                c @ (Command::Stop | Command::Start { .. } | Command::Shutdown) => {
                    cancel = true;
                    self.stash.push_back(c);
                }
                c => {
                    // Only the newest decode per view is answered anyway (see `run`).
                    if let &Command::Decode { channel: ch, .. } = &c {
                        self.stash
                            .retain(|s| !matches!(s, Command::Decode { channel, .. } if *channel == ch));
                    }
                    self.stash.push_back(c);
                }
            }
        }
        !cancel
    }

    pub(super) fn score(
        &mut self,
        request: u64,
        target: crate::engine::protocol::ScoreTarget,
        options: crate::engine::scoring::ScoreOptions,
    ) {
        use crate::engine::protocol::ScoreTarget;
        let Some(run) = self.run.take() else {
            self.error("no run: train or load a model first".into());
            return;
        };
        let id = run.id;
        let (data, indices, name) = match &target {
            ScoreTarget::Split(kind) => {
                (run.session.data().clone(), run.session.split().get(*kind).to_vec(), kind.to_string())
            }
            ScoreTarget::Dataset(d) => (d.clone(), (0..d.len()).collect(), d.name.clone()),
        };
        let mut last = Instant::now();
        let result = run.pool.install(|| {
            crate::engine::scoring::score_indices(
                run.session.model(),
                &data,
                &indices,
                &options,
                &mut |done, total| self.long_request_progress(id, request, done, total, &mut last),
            )
        });
        self.run = Some(run);
        match result {
            Ok(Some(set)) => self.emit(Event::Scored { run: id, request, name, set: Box::new(set) }),
            Ok(None) => self.emit(Event::ScoreCancelled { run: id, request }),
            Err(e) => self.error(format!("scoring {name} failed: {e}")),
        }
    }

    pub(super) fn hold_out(
        &mut self,
        request: u64,
        labels: Vec<u32>,
        steps: u64,
        options: crate::engine::scoring::ScoreOptions,
    ) {
        let Some(run) = self.run.take() else {
            self.error("no run: the experiment uses the current run's data and configuration".into());
            return;
        };
        let id = run.id;
        let (config, data) = (run.session.config().clone(), run.session.data().clone());
        let mut last = Instant::now();
        let result = run.pool.install(|| {
            crate::engine::scoring::hold_out_classes(
                config,
                &data,
                &labels,
                steps,
                &options,
                &mut |done, total| self.long_request_progress(id, request, done, total, &mut last),
            )
        });
        self.run = Some(run);
        match result {
            Ok(Some(report)) => self.emit(Event::HoldOutDone { run: id, request, report: Box::new(report) }),
            Ok(None) => self.emit(Event::ScoreCancelled { run: id, request }),
            Err(e) => self.error(format!("the hold-out experiment failed: {e}")),
        }
    }
}
