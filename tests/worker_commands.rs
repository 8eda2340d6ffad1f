//! The command channel into the worker is bounded: while the worker is stuck in a step, the
//! UI's non-blocking `try_send` is refused once `COMMAND_CAPACITY` commands wait (and hands the
//! command back), the worker catches up once free, and a finished worker says it is gone.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genlab::engine::config::preset;
use genlab::engine::data::builtin;
use genlab::engine::protocol::{Command, DataSpec, Event};
use genlab::engine::worker::{SendError, StepHook, Worker, COMMAND_CAPACITY};

/// Waits up to 60 s for `done`, failing with `what`.
fn wait(what: &str, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_command_channel_refuses_without_blocking_and_drains_once_the_worker_is_free() {
    let entered = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let hook: StepHook = {
        let (entered, release) = (entered.clone(), release.clone());
        // The worker's first step holds it here, as a long request would.
        Arc::new(move |_run, _step| {
            entered.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let w = Worker::spawn_with_hook(Arc::new(|| {}), Some(hook));
    let data = Arc::new(builtin::load().unwrap());
    let mut cfg = preset("mnist_vae", data.shape).unwrap();
    cfg.train.epochs = 1;
    cfg.train.batch_size = 500;
    let start = Command::Start {
        config: Box::new(cfg),
        data: DataSpec::Loaded(data),
        checkpoint: None,
        paused: false,
    };
    w.try_send(start).unwrap();
    wait("the first step", || entered.load(Ordering::SeqCst));

    for _ in 0..COMMAND_CAPACITY {
        w.try_send(Command::SetLearningRate(1e-3)).unwrap();
    }
    let t0 = Instant::now();
    match w.try_send(Command::Sample { n: 3, temperature: 1.0, seed: 7 }) {
        Err(SendError::Full(cmd)) => assert!(matches!(*cmd, Command::Sample { n: 3, .. })),
        other => panic!("expected a full channel, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_millis(100), "try_send waited");

    release.store(true, Ordering::SeqCst);
    // A blocking send waits for room, then the worker answers in order.
    assert!(w.send(Command::Sample { n: 3, temperature: 1.0, seed: 7 }));
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no samples after the queue drained");
        if let Some(Event::Samples { .. }) = w.recv_timeout(Duration::from_millis(50)) {
            break;
        }
    }

    assert!(w.send(Command::Shutdown));
    wait("the worker to end", || !w.is_alive());
    assert!(matches!(w.try_send(Command::Stop), Err(SendError::Gone(_))));
}
