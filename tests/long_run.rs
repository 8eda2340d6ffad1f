//! A long run through the real worker, for memory growth: 10⁵ steps of a tiny VAE while this
//! thread drains the events, with the resident memory sampled every 10⁴ steps. A benchmark
//! rather than a test of speed, so it only runs when asked for:
//!
//!     cargo test --release --test long_run -- --ignored --nocapture
//!
//! Set `GENLAB_LONG_RUN_STEPS` for a longer or shorter run. Measured (2 cores): 10⁵ steps in
//! ~30 s; RSS 10.8 MB from step 4·10⁴ on, +0.5 byte/step from half-way (the metrics log is
//! bounded); it grew by 157 bytes/step before the log was thinned.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use genlab::engine::config::preset;
use genlab::engine::data::{DataSource, Dataset, ImageShape};
use genlab::engine::protocol::{Command, DataSpec, Event};
use genlab::engine::worker::Worker;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "a long benchmark: run with --ignored --nocapture"]
fn memory_stays_flat_over_a_long_run() {
    let total: u64 =
        std::env::var("GENLAB_LONG_RUN_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let every = (total / 10).max(1);
    let shape = ImageShape::new(1, 8, 8);
    let n = 256;
    let images: Vec<f32> = (0..n * shape.len()).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let data = Arc::new(Dataset::new("synthetic 8×8", DataSource::Builtin, shape, images, None).unwrap());
    let mut cfg = preset("mnist_vae", shape).unwrap();
    cfg.model.net_mut().hidden = vec![32];
    cfg.model.net_mut().latent_dim = 2;
    cfg.train.batch_size = 16;
    cfg.train.epochs = 1_000_000;

    let w = Worker::spawn(Arc::new(|| {}));
    w.send(Command::Start {
        config: Box::new(cfg),
        data: DataSpec::Loaded(data),
        checkpoint: None,
        paused: false,
    });
    let t0 = Instant::now();
    let mut samples: Vec<(u64, u64)> = vec![(0, rss_kib())];
    let mut step = 0;
    let mut events = 0u64;
    while step < total {
        let Some(ev) = w.recv_timeout(Duration::from_secs(10)) else {
            panic!("no event for 10 s at step {step}")
        };
        events += 1;
        match ev {
            Event::Metrics { steps, .. } => {
                for m in steps {
                    step = m.step;
                    if step % every == 0 {
                        samples.push((step, rss_kib()));
                        eprintln!(
                            "step {step:>9}: RSS {:>7} KiB  ({:.1} s)",
                            rss_kib(),
                            t0.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            Event::Failed { message, .. } => panic!("the run failed: {message}"),
            _ => {}
        }
    }
    w.send(Command::Stop);
    let secs = t0.elapsed().as_secs_f64();
    // From half-way (allocator pools, caches and the metrics log have reached their size).
    let (s1, r1) = samples[samples.len() / 2];
    let (s2, r2) = *samples.last().unwrap();
    let per_step = (r2 as f64 - r1 as f64) * 1024.0 / (s2 - s1).max(1) as f64;
    eprintln!(
        "{total} steps in {secs:.1} s ({:.0} steps/s, {events} events); RSS {r1} KiB at step {s1} → {r2} KiB at step {s2}: {per_step:+.1} bytes/step",
        total as f64 / secs
    );
    assert!(per_step < 16.0, "memory grows by {per_step:.1} bytes per step");
}
