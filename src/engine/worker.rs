//! The training worker: a named thread that owns everything candle touches. It drains
//! [`Command`]s between steps and reports [`Event`]s through a bounded channel without ever
//! blocking on a slow consumer: per-step metrics are batched, stale image events coalesced.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::checkpoint;
use super::config::RunConfig;
use super::data::{self, Dataset};
use super::error::{EngineError, Result};
use super::kernels;
use super::metrics::MetricsLog;
use super::models::{HealthMonitor, LiveHyper};
use super::protocol::{Command, DataSpec, DatasetInfo, Event, FinishReason, StepMetrics};
use super::rewind::RewindStore;
use super::session::TrainingSession;

/// Called after events are sent (the app passes `ctx.request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Called on the worker thread with (run, step) right after a step's metrics are queued for
/// sending (`genlab bench ui` times the way from there to the run view).
pub type StepHook = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Capacity of the event channel; beyond it events wait in the worker's outbox.
const EVENT_CAPACITY: usize = 256;
/// Capacity of the command channel (and of the commands put aside during a long request).
/// Commands come from user actions, a few per frame at most (dragging a latent slider sends a
/// decode per frame and view), and the worker takes them all between steps, so the channel
/// fills only while one long command runs (encoding a split, scoring, saving): 1024 is ~6 s
/// of three decode views at 60 Hz, and ~10 MB of their latents at most.
pub const COMMAND_CAPACITY: usize = 1024;
/// Metrics are sent at most this often (and whenever another event goes out): about a frame
/// at 60 Hz, so batching adds at most a frame to the way from a step to the plot (30 ms made
/// it most of the 50 ms budget of `genlab bench ui`).
const METRICS_INTERVAL: Duration = Duration::from_millis(16);

/// Why [`Worker::try_send`] did not queue a command; the command comes back inside (boxed:
/// the failure is rare and a command is large).
#[derive(Debug)]
pub enum SendError {
    /// [`COMMAND_CAPACITY`] commands are waiting: the worker is busy with a long request.
    Full(Box<Command>),
    /// The worker thread has ended.
    Gone(Box<Command>),
}

/// Handle to the worker thread: send commands, receive events. Dropping it shuts the worker
/// down and joins it.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Spawns the worker thread (named `genlab-worker`).
    pub fn spawn(waker: Waker) -> Self {
        Self::spawn_with_hook(waker, None)
    }

    /// [`Worker::spawn`], calling `step_hook` after every training step.
    pub fn spawn_with_hook(waker: Waker, step_hook: Option<StepHook>) -> Self {
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(COMMAND_CAPACITY);
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(EVENT_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("genlab-worker".into())
            .spawn(move || {
                let mut w = WorkerLoop::new(cmd_rx, ev_tx, waker);
                w.step_hook = step_hook;
                w.run()
            })
            .ok();
        Self { commands: cmd_tx, events: ev_rx, handle }
    }

    /// Queues a command, waiting while [`COMMAND_CAPACITY`] commands are queued; returns
    /// `false` if the worker is gone. The worker empties the channel between steps and never
    /// waits on a sender, so the wait ends within one step or one long command: fine for the
    /// CLI, benchmarks and tests. The UI thread uses [`Worker::try_send`].
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// Queues a command without waiting; a full channel or a finished worker hands it back.
    pub fn try_send(&self, cmd: Command) -> std::result::Result<(), SendError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) => SendError::Full(Box::new(c)),
            TrySendError::Disconnected(c) => SendError::Gone(Box::new(c)),
        })
    }

    /// The events that have arrived, without waiting.
    pub fn try_events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Whether the worker thread is running.
    pub fn is_alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A full channel makes this wait as long as the join below would anyway (see `send`).
        let _ = self.commands.send(Command::Shutdown);
        // Unblock a worker waiting to send by draining what it has queued.
        while self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            let _ = self.events.recv_timeout(Duration::from_millis(10));
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Events waiting to be sent, with metrics batched and images coalesced.
struct Outbox {
    queue: VecDeque<Event>,
    metrics: Vec<StepMetrics>,
    metrics_run: u64,
    last_metrics: Instant,
}

impl Outbox {
    fn push(&mut self, ev: Event) {
        self.flush_metrics();
        // Keep only the newest of each replaceable image event while the consumer lags.
        if self.queue.len() > EVENT_CAPACITY {
            let replaceable = |e: &Event| matches!(e, Event::FixedNoise { .. } | Event::Samples { .. });
            if replaceable(&ev) {
                if let Some(pos) =
                    self.queue.iter().position(|e| std::mem::discriminant(e) == std::mem::discriminant(&ev))
                {
                    self.queue.remove(pos);
                }
            }
        }
        if let Event::Decoded { channel, .. } = &ev {
            let ch = *channel;
            self.queue.retain(|e| !matches!(e, Event::Decoded { channel: c, .. } if *c == ch));
        }
        self.queue.push_back(ev);
    }

    fn push_metrics(&mut self, run: u64, m: StepMetrics) {
        if self.metrics_run != run {
            self.flush_metrics();
            self.metrics_run = run;
        }
        self.metrics.push(m);
    }

    fn flush_metrics(&mut self) {
        if !self.metrics.is_empty() {
            let steps = std::mem::take(&mut self.metrics);
            // Merge into a metrics batch still waiting at the back of the queue.
            if let Some(Event::Metrics { run, steps: prev }) = self.queue.back_mut() {
                if *run == self.metrics_run {
                    prev.extend(steps);
                    self.last_metrics = Instant::now();
                    return;
                }
            }
            self.queue.push_back(Event::Metrics { run: self.metrics_run, steps });
            self.last_metrics = Instant::now();
        }
    }

    /// Sends what fits; returns `false` if the consumer is gone.
    fn send(&mut self, tx: &Sender<Event>, waker: &Waker) -> bool {
        if self.last_metrics.elapsed() >= METRICS_INTERVAL {
            self.flush_metrics();
        }
        let mut sent = false;
        while let Some(ev) = self.queue.pop_front() {
            match tx.try_send(ev) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(ev)) => {
                    self.queue.push_front(ev);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        if sent {
            waker();
        }
        true
    }
}

/// The current run on the worker.
struct Run {
    id: u64,
    session: TrainingSession,
    paused: bool,
    steps_left: Option<u32>,
    metrics: MetricsLog,
    /// The family's health rule, fed every step.
    health: Box<dyn HealthMonitor>,
    rewind: RewindStore,
    /// The run has finished (or was stopped): it no longer trains, but its model still
    /// answers samples, decodes, encodings, scores, saves and rewinds until the next start.
    ended: bool,
    /// Holds the thread pool the run's maths uses.
    pool: rayon::ThreadPool,
}

struct WorkerLoop {
    commands: Receiver<Command>,
    events: Sender<Event>,
    waker: Waker,
    outbox: Outbox,
    run: Option<Run>,
    next_run: u64,
    /// Commands that arrived while a long request (scoring) ran, handled next.
    stash: VecDeque<Command>,
    step_hook: Option<StepHook>,
}

impl WorkerLoop {
    fn new(commands: Receiver<Command>, events: Sender<Event>, waker: Waker) -> Self {
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
        }
    }

    fn run(mut self) {
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
                    if let Command::Score { request, .. } | Command::HoldOut { request, .. } = &c {
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

    fn emit(&mut self, ev: Event) {
        self.outbox.push(ev);
    }

    fn error(&mut self, message: String) {
        self.emit(Event::Error { message });
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start { config, data, checkpoint, paused } => {
                self.finish(FinishReason::Replaced);
                let id = self.next_run;
                self.next_run += 1;
                match start_run(id, *config, data, checkpoint.as_deref(), paused) {
                    Ok((run, started)) => {
                        self.run = Some(run);
                        self.emit(started);
                        self.emit_grid();
                        if paused {
                            let step = self.run.as_ref().map_or(0, |r| r.session.step_count());
                            self.emit(Event::Paused { run: id, step });
                        }
                    }
                    Err(e) => self.emit(Event::Failed { run: Some(id), message: e.to_string() }),
                }
            }
            Command::Shutdown | Command::CancelScore => {}
            Command::Score { request, target, options } => self.score(request, target, options),
            Command::HoldOut { request, labels, steps, options } => {
                self.hold_out(request, labels, steps, options)
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
                            Ok(dir) => self.emit(Event::CheckpointSaved { run: id, step, dir }),
                            Err(e) => self.error(format!("saving the checkpoint failed: {e}")),
                        }
                    }
                    Command::Rewind { step: to } => {
                        let r = run.pool.install(|| run.rewind.restore(to, &mut run.session));
                        match r {
                            Ok(()) => {
                                run.rewind.truncate_after(to);
                                run.metrics.rows.retain(|r| r.step <= to);
                                run.ended = false;
                                run.paused = true;
                                run.steps_left = None;
                                let steps = run.rewind.steps().to_vec();
                                self.emit(Event::Rewound { run: id, step: to });
                                self.emit(Event::RewindPoints { run: id, steps });
                                self.emit(Event::Paused { run: id, step: to });
                                self.emit_grid();
                            }
                            Err(e) => self.error(format!("rewinding to step {to} failed: {e}")),
                        }
                    }
                    Command::Start { .. }
                    | Command::Shutdown
                    | Command::Score { .. }
                    | Command::HoldOut { .. }
                    | Command::CancelScore => {}
                }
            }
        }
    }

    /// A progress callback for long requests: reports progress (at most every 100 ms), keeps
    /// events flowing, and stashes commands that arrive; returns `false` to cancel when a
    /// `CancelScore`, `Stop`, `Start` or `Shutdown` came in.
    fn long_request_progress(
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

    fn score(
        &mut self,
        request: u64,
        target: super::protocol::ScoreTarget,
        options: super::scoring::ScoreOptions,
    ) {
        use super::protocol::ScoreTarget;
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
            super::scoring::score_indices(
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

    fn hold_out(
        &mut self,
        request: u64,
        labels: Vec<u32>,
        steps: u64,
        options: super::scoring::ScoreOptions,
    ) {
        let Some(run) = self.run.take() else {
            self.error("no run: the experiment uses the current run's data and configuration".into());
            return;
        };
        let id = run.id;
        let (config, data) = (run.session.config().clone(), run.session.data().clone());
        let mut last = Instant::now();
        let result = run.pool.install(|| {
            super::scoring::hold_out_classes(config, &data, &labels, steps, &options, &mut |done, total| {
                self.long_request_progress(id, request, done, total, &mut last)
            })
        });
        self.run = Some(run);
        match result {
            Ok(Some(report)) => self.emit(Event::HoldOutDone { run: id, request, report: Box::new(report) }),
            Ok(None) => self.emit(Event::ScoreCancelled { run: id, request }),
            Err(e) => self.error(format!("the hold-out experiment failed: {e}")),
        }
    }

    /// Ends the current run, if any, with `Finished`.
    /// Ends the current run with `Finished`. A completed or stopped run's model stays for
    /// exploring; a replaced one is dropped.
    fn finish(&mut self, reason: FinishReason) {
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

    fn emit_grid(&mut self) {
        let Some(run) = self.run.as_ref() else { return };
        let (id, step) = (run.id, run.session.step_count());
        match run.pool.install(|| run.session.fixed_noise_grid()) {
            Ok(images) => self.emit(Event::FixedNoise { run: id, step, images }),
            Err(e) => self.error(format!("drawing the sample grid failed: {e}")),
        }
    }

    fn train_one(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let id = run.id;
        let session = &mut run.session;
        let result = run.pool.install(|| std::panic::catch_unwind(AssertUnwindSafe(|| session.step())));
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
        if report.step % sample_every == 0 || report.epoch_end.is_some() {
            self.emit_grid();
        }
        if let Some(summary) = report.epoch_end {
            self.emit(Event::EpochEnded { run: id, summary });
        }
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
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn load_data(spec: DataSpec) -> Result<Arc<Dataset>> {
    match spec {
        DataSpec::Loaded(d) => Ok(d),
        DataSpec::Source(src, opts) => Ok(Arc::new(data::load(&src, &opts)?)),
    }
}

fn start_run(
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
    };
    Ok((run, started))
}
