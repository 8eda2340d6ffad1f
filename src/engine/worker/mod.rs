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
    quality: quality::RunQuality,
    views: views::ViewBudget,
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
    quality: quality::QualityState,
    /// The latent prior trained for (or loaded with) run `.0`.
    prior: Option<(u64, crate::engine::prior::LatentPrior)>,
}

mod commands;
mod conditional;
mod disentangle;
mod outbox;
mod prior;
mod quality;
mod run_loop;
mod sampler;
mod views;

use run_loop::start_run;
