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

/// Quality every N steps arrives at those steps and at the end, with its cost; each measured
/// step becomes a rewind point; auto reuses the reference prepared for the same data.
#[test]
fn quality_events_arrive_at_the_interval_with_their_cost() {
    use genlab::engine::protocol::{QualityCost, QualitySchedule};
    let w = Worker::spawn(Arc::new(|| {}));
    let data = Arc::new(builtin::load().unwrap());
    let mut cfg = preset("mnist_mlp_gan", data.shape).unwrap();
    cfg.train.epochs = 3;
    cfg.train.batch_size = 500; // 16 steps an epoch
    let start = |cfg: &genlab::engine::config::RunConfig| Command::Start {
        config: Box::new(cfg.clone()),
        data: DataSpec::Loaded(data.clone()),
        checkpoint: None,
        paused: false,
    };
    let run_until_finished = |w: &Worker| {
        let (mut quality, mut points) = (Vec::<(u64, QualityCost)>::new(), Vec::new());
        let t0 = Instant::now();
        loop {
            assert!(t0.elapsed() < Duration::from_secs(120), "the run did not finish");
            match w.recv_timeout(Duration::from_millis(50)) {
                Some(Event::Quality { step, report, cost, .. }) => {
                    assert!(
                        report.samples.metrics.fd.is_finite()
                            && report.floor.metrics.fd < report.ceiling.metrics.fd
                    );
                    quality.push((step, cost));
                }
                Some(Event::RewindPoints { steps, .. }) => points = steps,
                Some(Event::Finished { .. }) => return (quality, points),
                Some(Event::Failed { message, .. }) => panic!("{message}"),
                _ => {}
            }
        }
    };
    w.send(Command::SetQuality(QualitySchedule::Every(20)));
    w.send(start(&cfg));
    let (quality, points) = run_until_finished(&w);
    let steps: Vec<u64> = quality.iter().map(|q| q.0).collect();
    assert_eq!(steps, [20, 40, 48], "every 20 steps and at the end");
    for (_, c) in &quality {
        assert!(c.seconds > 0.0 && c.share > 0.0 && c.prepare_seconds > 0.0, "{c:?}");
        assert_eq!(c.every, 20);
    }
    assert!(steps.iter().all(|s| points.contains(s)), "rewind points {points:?} at every measured step");
    let prepared = quality[0].1.prepare_seconds;

    w.send(Command::SetQuality(QualitySchedule::Auto));
    cfg.train.epochs = 1;
    w.send(start(&cfg));
    let (quality, _) = run_until_finished(&w);
    let [(16, c)] = quality[..] else { panic!("auto measures the completed run once: {quality:?}") };
    assert!(c.every > 0, "auto says its interval: {c:?}");
    assert_eq!(c.prepare_seconds, prepared, "the reference is reused for the same data");
}

/// Memorisation on the worker: the current model's samples beside their nearest training
/// images, closest first, with the held-out scale.
#[test]
fn nearest_training_images_come_back_sorted() {
    let w = Worker::spawn(Arc::new(|| {}));
    let data = Arc::new(builtin::load().unwrap());
    let mut cfg = preset("mnist_vae", data.shape).unwrap();
    cfg.train.epochs = 1;
    w.send(Command::Start {
        config: Box::new(cfg),
        data: DataSpec::Loaded(data.clone()),
        checkpoint: None,
        paused: true,
    });
    w.send(Command::Step(5));
    w.send(Command::Nearest);
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "no answer to Nearest");
        match w.recv_timeout(Duration::from_millis(50)) {
            Some(Event::Nearest { view, .. }) => {
                assert_eq!(view.distances.len(), 24);
                assert_eq!((view.samples.len(), view.train.len()), (24, 24));
                assert!(view.distances.windows(2).all(|d| d[0] <= d[1]), "closest first");
                assert!((0.0..=1.0).contains(&view.share_closer) && view.test_p5 < view.test_median);
                assert_eq!(view.measured, genlab::engine::protocol::LIVE_QUALITY_SAMPLES);
                let labels = data.labels.as_ref().unwrap();
                assert!(view.train_indices.iter().all(|&i| i < labels.len()));
                return;
            }
            Some(Event::Failed { message, .. }) | Some(Event::Error { message, .. }) => panic!("{message}"),
            _ => {}
        }
    }
}

#[test]
fn sampler_settings_change_live_and_the_trajectory_follows_them() {
    use genlab::engine::models::diffusion::{Sampler, SamplerSettings};
    let w = Worker::spawn(Arc::new(|| {}));
    let data = Arc::new(builtin::load().unwrap());
    let mut cfg = preset("mnist_ddpm", data.shape).unwrap();
    cfg.train.batch_size = 8;
    w.send(Command::Start {
        config: Box::new(cfg),
        data: DataSpec::Loaded(data),
        checkpoint: None,
        paused: true,
    });
    w.send(Command::Step(2));
    let five = SamplerSettings { sampler: Sampler::Ddpm, steps: 5, eta: 1.0, guidance: 2.0 };
    w.send(Command::SetSampler(five));
    w.send(Command::Trajectory { request: 7, rows: 2, columns: 10 });
    // The flow's sampler does not sample a DDPM model: refused, the settings stay.
    w.send(Command::SetSampler(SamplerSettings {
        sampler: Sampler::Euler,
        steps: 5,
        eta: 0.0,
        guidance: 2.0,
    }));
    let (mut changed, mut traj, mut refused) = (None, None, None);
    let t0 = Instant::now();
    while refused.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no answers: {changed:?} {refused:?}");
        match w.recv_timeout(Duration::from_millis(50)) {
            Some(Event::SamplerChanged { settings, .. }) => changed = Some(settings),
            Some(Event::Trajectory { request, trajectory, .. }) => traj = Some((request, trajectory)),
            Some(Event::Error { message }) => refused = Some(message),
            Some(Event::Failed { message, .. }) => panic!("{message}"),
            _ => {}
        }
    }
    assert_eq!(changed, Some(five));
    let (request, t) = traj.expect("the trajectory came before the refusal");
    assert_eq!((request, t.times.len(), t.xt[0].len()), (7, 5, 2), "every one of the 5 steps, 2 rows");
    assert!(refused.unwrap().contains("Euler"));
}
