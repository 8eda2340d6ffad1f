//! Training throughput of the conv presets on the built-in digits.
//!
//! `cargo run --release --example conv_throughput [-- preset...]` (default: `conv_vae mnist_dcgan`).
//! Pin the thread count with `RAYON_NUM_THREADS` (gemm and the conv ops) and `CANDLE_NUM_THREADS`
//! (candle's element-wise ops). Besides wall-clock throughput it prints images per CPU-second,
//! which a busy machine disturbs less (with one thread the two agree on an idle machine), and the
//! throughput of the median and of the fastest step.

use std::sync::Arc;
use std::time::Instant;

use genlab::engine::config::preset;
use genlab::engine::data::builtin;
use genlab::engine::session::TrainingSession;

const WARMUP: usize = 3;
const STEPS: usize = 20;

/// CPU time used by the whole process, in seconds.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() -> anyhow::Result<()> {
    let data = Arc::new(builtin::load()?);
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names = vec!["conv_vae".into(), "mnist_dcgan".into()];
    }
    for name in &names {
        let cfg = preset(name, data.shape).ok_or_else(|| anyhow::anyhow!("no preset `{name}`"))?;
        let mut session = TrainingSession::new(cfg, data.clone())?;
        for _ in 0..WARMUP {
            session.step()?;
        }
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut images = 0;
        let mut per_step = Vec::with_capacity(STEPS);
        for _ in 0..STEPS {
            let t = Instant::now();
            let batch = session.step()?.batch;
            per_step.push(batch as f64 / t.elapsed().as_secs_f64());
            images += batch;
        }
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        per_step.sort_by(f64::total_cmp);
        println!(
            "{name:>12}: {:6.0} images/s wall, {:6.0} per CPU-second; steps: median {:6.0}, best {:6.0} images/s",
            images as f64 / wall,
            images as f64 / cpu,
            per_step[STEPS / 2],
            per_step[STEPS - 1],
        );
    }
    Ok(())
}
