//! `genlab bench memory`: resident memory over a long `mnist_vae` run on the built-in digits,
//! trained through the worker the app uses (metrics batching, the event channel, the fixed-noise
//! grid every `sample_every` steps, rewind points, the metrics log) with every event folded by
//! the caller (the app's run view when the app is built in), so that whatever grows with the
//! run's length shows up.
//!
//! RSS (`VmRSS` of `/proc/self/status`) is sampled about 50 times over the run; reported are the
//! peak (`VmHWM`, the whole process's high-water mark since it started), the RSS at 10% of the
//! steps and at the end, and the least-squares slope of RSS against steps from 10% on, in MB per
//! 10⁴ steps. glibc's heap figures (`mallinfo2`) ride along to tell live allocations from free
//! memory the allocator holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{rss_mb, utc_now};
use crate::engine::config::preset;
use crate::engine::data::builtin;
use crate::engine::error::{EngineError, Result};
use crate::engine::protocol::{Command, DataSpec, Event};
use crate::engine::worker::Worker;

/// Targets of issue #6: peak RSS and growth after the first 10% of the steps.
pub const TARGET_PEAK_MB: f64 = 300.0;
/// "Flat": under this many MB per 10⁴ steps (10 MB over 10⁵ steps).
pub const TARGET_SLOPE_MB_PER_10K: f64 = 1.0;

/// How long the run is.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryOptions {
    pub steps: u64,
    pub batch: usize,
    /// RSS samples over the run (about).
    pub samples: u64,
    /// What folds the events (`run_view` or `none`), for the report.
    pub consumer: &'static str,
}

impl MemoryOptions {
    pub fn new(steps: u64) -> Self {
        Self { steps, batch: 32, samples: 50, consumer: "none" }
    }
}

/// One RSS sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemorySample {
    pub kind: &'static str,
    pub step: u64,
    pub seconds: f64,
    pub rss_mb: f64,
    /// Bytes in live heap allocations (all arenas).
    pub heap_used_mb: Option<f64>,
    /// Free bytes the heap holds on to.
    pub heap_free_mb: Option<f64>,
    /// Bytes in separately mmapped blocks.
    pub heap_mmap_mb: Option<f64>,
}

/// The run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryResult {
    pub kind: &'static str,
    pub framework: &'static str,
    pub model: &'static str,
    pub path: String,
    pub steps: u64,
    pub batch: usize,
    pub threads: usize,
    pub seconds: f64,
    pub steps_per_sec: f64,
    pub peak_rss_mb: f64,
    pub rss_start_mb: f64,
    pub rss_at_10pct_mb: f64,
    pub rss_end_mb: f64,
    /// Least-squares slope of RSS over the steps from 10% on.
    pub slope_mb_per_10k_steps: f64,
    pub target_peak_mb: f64,
    pub target_slope_mb_per_10k_steps: f64,
    pub meets_peak: bool,
    pub flat: bool,
    pub date: String,
}

/// glibc's heap totals over all arenas (MB): in use, free, mmapped.
pub fn heap_mb() -> (Option<f64>, Option<f64>, Option<f64>) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        let mb = |b: usize| Some(b as f64 / (1024.0 * 1024.0));
        (mb(m.uordblks), mb(m.fordblks), mb(m.hblkhd))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        (None, None, None)
    }
}

fn sample(step: u64, t0: Instant) -> MemorySample {
    let (heap_used_mb, heap_free_mb, heap_mmap_mb) = heap_mb();
    MemorySample {
        kind: "memory_sample",
        step,
        seconds: t0.elapsed().as_secs_f64(),
        rss_mb: rss_mb("VmRSS:").unwrap_or(0.0),
        heap_used_mb,
        heap_free_mb,
        heap_mmap_mb,
    }
}

/// Least-squares slope of `y` against `x` (0 for fewer than two distinct x).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// Trains `mnist_vae` for `opts.steps` steps through a [`Worker`], handing every event to
/// `fold` and each RSS sample to `on_sample` as it is taken.
pub fn run(
    opts: &MemoryOptions,
    fold: &mut dyn FnMut(Event),
    on_sample: &mut dyn FnMut(&MemorySample),
) -> Result<MemoryResult> {
    if opts.steps == 0 || opts.batch == 0 {
        return Err(EngineError::Config("steps and batch must be at least 1".into()));
    }
    let data = Arc::new(builtin::load()?);
    let mut config = preset("mnist_vae", data.shape)
        .ok_or_else(|| EngineError::Config("the preset `mnist_vae` is missing".into()))?;
    config.train.batch_size = opts.batch;
    // The app's setting: one thread for the maths, the other core for the UI.
    config.train.threads = 1;
    // At least one step per epoch: enough epochs for any step count; the run is stopped at N.
    config.train.epochs = usize::try_from(opts.steps).unwrap_or(usize::MAX / 2).saturating_add(1);
    let threads = config.train.threads;

    let worker = Worker::spawn(Arc::new(|| {}));
    let t0 = Instant::now();
    let rss_start = rss_mb("VmRSS:").unwrap_or(0.0);
    worker.send(Command::Start {
        config: Box::new(config),
        data: DataSpec::Loaded(data),
        checkpoint: None,
        paused: false,
    });
    let every = (opts.steps / opts.samples.max(1)).max(1);
    let mut samples = Vec::new();
    let mut take = |step: u64, samples: &mut Vec<MemorySample>| {
        let s = sample(step, t0);
        on_sample(&s);
        samples.push(s);
    };
    take(0, &mut samples);
    let (mut last, mut next, mut stop_sent) = (0u64, every, false);
    loop {
        let ev = worker.recv_timeout(Duration::from_secs(120)).ok_or_else(|| {
            EngineError::Other(format!("the worker sent nothing for 2 minutes (at step {last})"))
        })?;
        let finished = match &ev {
            Event::Metrics { steps, .. } => {
                last = steps.last().map_or(last, |m| m.step);
                false
            }
            Event::Failed { message, .. } => {
                return Err(EngineError::Other(format!("training failed at step {last}: {message}")))
            }
            Event::Diverged { step, message, .. } => {
                return Err(EngineError::Other(format!("training diverged at step {step}: {message}")))
            }
            Event::Finished { .. } => true,
            _ => false,
        };
        fold(ev);
        while last >= next && next <= opts.steps {
            take(next.min(last), &mut samples);
            next += every;
        }
        if last >= opts.steps && !stop_sent {
            worker.send(Command::Stop);
            stop_sent = true;
        }
        if finished {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    if samples.last().is_none_or(|s| s.step < last) {
        take(last, &mut samples);
    }
    drop(worker);
    // The kernel updates VmHWM lazily; a sample can read above it.
    let peak = samples.iter().map(|s| s.rss_mb).fold(rss_mb("VmHWM:").unwrap_or(0.0), f64::max);
    let tenth = opts.steps / 10;
    let at_10 = samples.iter().find(|s| s.step >= tenth).map_or(rss_start, |s| s.rss_mb);
    let end = samples.last().map_or(rss_start, |s| s.rss_mb);
    let tail: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.step >= tenth).map(|s| (s.step as f64, s.rss_mb)).collect();
    let slope_10k = slope(&tail) * 1e4;
    Ok(MemoryResult {
        kind: "memory",
        framework: "genlab",
        model: "mnist_vae",
        path: format!("worker+{}", opts.consumer),
        steps: last,
        batch: opts.batch,
        threads,
        seconds,
        steps_per_sec: last as f64 / seconds.max(1e-9),
        peak_rss_mb: peak,
        rss_start_mb: rss_start,
        rss_at_10pct_mb: at_10,
        rss_end_mb: end,
        slope_mb_per_10k_steps: slope_10k,
        target_peak_mb: TARGET_PEAK_MB,
        target_slope_mb_per_10k_steps: TARGET_SLOPE_MB_PER_10K,
        meets_peak: peak <= TARGET_PEAK_MB,
        flat: slope_10k.abs() <= TARGET_SLOPE_MB_PER_10K,
        date: utc_now(),
    })
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn least_squares_slope() {
        assert_eq!(slope(&[]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert!((s - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), 0.0);
    }
}
