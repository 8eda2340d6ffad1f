//! `genlab bench ui`: the real app ([`App`]) driven by egui_kittest with a live run, measured
//! frame by frame.
//!
//! # The scene
//! The app's default configuration (what Train starts) on the built-in digits, resumed from a
//! checkpoint at step `history` so that the run view holds a `history`-step loss history (fed
//! through its normal fold, [`RunView::apply`](crate::app::run_view::RunView::apply), as
//! metrics and epoch events) before the worker adds live steps to it. The Training tab shows the
//! loss plot and the 64-image fixed-noise grid, redrawn (a new texture) every `sample_every`
//! steps. The run is resumed with the Resume button, as a user would.
//!
//! # What is measured
//! Frames are paced at 60 per second, as a display would. For each frame:
//! - **Frame CPU time**: the UI thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) for one
//!   [`Harness::step`] (the app's drain of the worker's events, layout and painting of every
//!   panel, egui's end of pass, and the AccessKit tree kittest always builds, which eframe does
//!   only for a screen reader) plus tessellating the frame's shapes into meshes. The GPU upload
//!   is not included. `update_cpu_ms` is [`App::show`] alone.
//! - **Latency**: the worker calls a hook right after a step's metrics are queued; a step's
//!   latency runs from there to the end of the first frame whose run view holds it (its metrics
//!   drained, folded and drawn). It includes the worker's metrics batching (16 ms at most), the
//!   channel and the wait for the next frame.
//! - **Cores**: the process's CPU time minus the UI thread's over the measured frames, per
//!   second of wall time, is what the trainer (worker, maths pool, candle's element-wise pool)
//!   took; with one training thread it should stay near one core.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use serde::Serialize;

use super::utc_now;
use crate::app::run_view::Status;
use crate::app::state::Persisted;
use crate::app::App;
use crate::engine::checkpoint;
use crate::engine::data::{builtin, DataSource};
use crate::engine::error::{EngineError, Result};
use crate::engine::models::{LossKey, Losses};
use crate::engine::protocol::{Command, DataSpec, Event, StepMetrics};
use crate::engine::session::{EpochSummary, TrainingSession, FIXED_GRID};
use crate::engine::worker::{StepHook, Worker};

/// Targets of issue #6.
pub const TARGET_FRAME_P95_MS: f64 = 8.0;
pub const TARGET_LATENCY_MS: f64 = 50.0;
/// The display's frame interval.
const FRAME: Duration = Duration::from_nanos(16_666_667);
/// Frames run (not measured) after Resume, before measuring.
const WARMUP_FRAMES: usize = 60;

#[derive(Clone, Debug, PartialEq)]
pub struct UiOptions {
    /// Frames to measure.
    pub frames: usize,
    /// Steps of history before the live ones.
    pub history: u64,
}

/// The measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UiResult {
    pub kind: &'static str,
    pub framework: &'static str,
    pub frames: usize,
    pub history_points: u64,
    pub gallery_images: usize,
    /// Live steps folded into the run view while measuring.
    pub live_steps: u64,
    pub frame_cpu_ms_p50: f64,
    pub frame_cpu_ms_p95: f64,
    pub frame_cpu_ms_p99: f64,
    pub frame_cpu_ms_max: f64,
    pub frame_wall_ms_p50: f64,
    pub frame_wall_ms_p95: f64,
    pub frame_wall_ms_p99: f64,
    pub update_cpu_ms_p50: f64,
    pub update_cpu_ms_p95: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub latency_samples: usize,
    /// The run's `threads` (the maths pool).
    pub train_threads: usize,
    /// `CANDLE_NUM_THREADS` (candle's element-wise pool), as the process saw it.
    pub candle_num_threads: Option<String>,
    /// CPU cores used by everything but the UI thread while measuring.
    pub trainer_cores: f64,
    /// CPU cores used by the UI thread while measuring.
    pub ui_cores: f64,
    pub target_frame_p95_ms: f64,
    pub target_latency_ms: f64,
    pub meets_frame: bool,
    pub meets_latency: bool,
    pub date: String,
}

impl UiResult {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let ok = |b: bool| if b { "met" } else { "missed" };
        format!(
            "{} frames, {}-step history, {}-image grid, {} live steps\n\
             frame CPU ms p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} (target p95 ≤ {:.0}: {})\n\
             frame wall ms p50 {:.2} / p95 {:.2} / p99 {:.2}; App::show alone p50 {:.2} / p95 {:.2}\n\
             metrics → run view ms p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} over {} steps (target ≤ {:.0}: {})\n\
             training threads {}, CANDLE_NUM_THREADS {}: trainer {:.2} cores, UI thread {:.2} cores",
            self.frames,
            self.history_points,
            self.gallery_images,
            self.live_steps,
            self.frame_cpu_ms_p50,
            self.frame_cpu_ms_p95,
            self.frame_cpu_ms_p99,
            self.frame_cpu_ms_max,
            self.target_frame_p95_ms,
            ok(self.meets_frame),
            self.frame_wall_ms_p50,
            self.frame_wall_ms_p95,
            self.frame_wall_ms_p99,
            self.update_cpu_ms_p50,
            self.update_cpu_ms_p95,
            self.latency_ms_p50,
            self.latency_ms_p95,
            self.latency_ms_p99,
            self.latency_ms_max,
            self.latency_samples,
            self.target_latency_ms,
            ok(self.meets_latency),
            self.train_threads,
            self.candle_num_threads.as_deref().unwrap_or("unset"),
            self.trainer_cores,
            self.ui_cores,
        )
    }
}

/// CPU time of a clock (`CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`) in seconds.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(clock, &mut t) };
    if rc != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn thread_cpu() -> f64 {
    cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> f64 {
    cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The `q`-quantile (0..=1) by nearest rank; 0 for none.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A plausible VAE loss curve with noise, step by step (deterministic).
fn synthetic_losses(step: u64, state: &mut u64) -> Losses {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let noise = ((*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 8.0;
    let kl = 25.0 - 10.0 * (-(step as f64) / 2_000.0).exp();
    let recon = 80.0 + 400.0 * (-(step as f64) / 1_500.0).exp() + noise;
    Losses::of(&[(LossKey::Loss, recon + kl), (LossKey::Recon, recon), (LossKey::Kl, kl)])
}

/// Folds `history` steps of metrics and the epochs they span into run `run` of the app's run
/// view, as the worker would have sent them.
fn prefill(app: &mut App, run: u64, history: u64, steps_per_epoch: u64, lr: f64) {
    let now = Instant::now();
    let mut rng = 7u64;
    let spe = steps_per_epoch.max(1);
    let mut step = 0;
    while step < history {
        let end = (step + spe).min(history);
        let steps: Vec<StepMetrics> = (step + 1..=end)
            .map(|s| StepMetrics {
                step: s,
                epoch: ((s - 1) / spe) as usize,
                losses: synthetic_losses(s, &mut rng),
                learning_rate: lr,
                images_per_sec: 8_000.0,
            })
            .collect();
        let last = steps.last().map(|m| m.losses);
        app.run_view.apply(Event::Metrics { run, steps }, now);
        if end.is_multiple_of(spe) {
            let train = last.unwrap_or_default();
            let mut test = train;
            test.set(LossKey::Loss, train.get(LossKey::Loss).unwrap_or(0.0) + 2.0);
            let summary = EpochSummary { epoch: (end / spe - 1) as usize, train, test: Some(test) };
            app.run_view.apply(Event::EpochEnded { run, summary }, now);
        }
        step = end;
    }
}

/// Steps frames (sleeping a frame between them) until `done` holds.
fn wait_for(
    h: &mut Harness<'_, App>,
    what: &str,
    limit: Duration,
    done: impl Fn(&App) -> bool,
) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        h.step();
        if done(h.state()) {
            return Ok(());
        }
        std::thread::sleep(FRAME);
    }
    Err(EngineError::Other(format!("gave up after {} s waiting for {what}", limit.as_secs())))
}

/// Runs the scene (see the module docs) and measures `opts.frames` frames.
pub fn run(opts: &UiOptions) -> Result<UiResult> {
    let data = Arc::new(builtin::load()?);
    let mut config = Persisted::default().config;
    config.model.net_mut().input = data.shape;
    let dir = std::env::temp_dir().join(format!("genlab-bench-ui-{}", std::process::id()));
    let result = (|| {
        // A checkpoint at step `history` to resume from.
        let spe = {
            let session = TrainingSession::new(config.clone(), data.clone())?;
            let spe = session.steps_per_epoch().max(1);
            checkpoint::save(
                &dir,
                session.model(),
                session.config(),
                &DataSource::Builtin,
                opts.history,
                None,
            )?;
            spe
        };
        config.train.epochs = ((opts.history + 1_000_000) / spe) as usize;
        measure(opts, config, data, &dir, spe)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(
    opts: &UiOptions,
    config: crate::engine::config::RunConfig,
    data: Arc<crate::engine::data::Dataset>,
    dir: &std::path::Path,
    spe: u64,
) -> Result<UiResult> {
    let produced: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let log = produced.clone();
    let hook: StepHook = Arc::new(move |_run, step| {
        if let Ok(mut l) = log.lock() {
            l.push((step, Instant::now()));
        }
    });
    let worker = Worker::spawn_with_hook(Arc::new(|| {}), Some(hook));
    let train_threads = config.train.threads;
    let lr = config.optim.lr;
    worker.send(Command::Start {
        config: Box::new(config),
        data: DataSpec::Loaded(data),
        checkpoint: Some(dir.to_path_buf()),
        paused: true,
    });

    let show_cpu: Rc<RefCell<Vec<f64>>> = Rc::default();
    let sc = show_cpu.clone();
    let mut h = Harness::builder().with_size(egui::vec2(1440.0, 900.0)).build_ui_state(
        move |ui, app: &mut App| {
            let t = thread_cpu();
            app.show(ui);
            sc.borrow_mut().push(thread_cpu() - t);
        },
        App::with_worker(worker),
    );
    let limit = Duration::from_secs(120);
    wait_for(&mut h, "the built-in data and the resumed run", limit, |a| {
        a.dataset().is_some() && a.run_view.status() == Status::Paused
    })?;
    if let Some(msg) = h.state().errors().first() {
        return Err(EngineError::Other(format!("the app shows an error: {msg}")));
    }
    let run = h.state().run_view.current().map_or(0, |r| r.id);
    prefill(h.state_mut(), run, opts.history, spe, lr);
    h.step();
    h.get_by_label("Resume").click();
    wait_for(&mut h, "training to resume", limit, |a| a.run_view.status() == Status::Training)?;
    for _ in 0..WARMUP_FRAMES {
        h.step();
        std::thread::sleep(FRAME);
    }

    let shown = |h: &Harness<'_, App>| h.state().run_view.current().map_or(0, |r| r.step);
    let first_step = shown(&h);
    if let Ok(mut l) = produced.lock() {
        l.retain(|(s, _)| *s > first_step);
    }
    show_cpu.borrow_mut().clear();
    let (mut cpu, mut wall, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    let (p0, u0, w0) = (process_cpu(), thread_cpu(), Instant::now());
    let mut tick = Instant::now();
    for _ in 0..opts.frames {
        let (c0, t0) = (thread_cpu(), Instant::now());
        h.step();
        let out = h.output();
        let (shapes, ppp) = (out.shapes.clone(), out.pixels_per_point);
        let meshes = h.ctx.tessellate(shapes, ppp);
        std::hint::black_box(&meshes);
        cpu.push((thread_cpu() - c0) * 1e3);
        let now = Instant::now();
        wall.push((now - t0).as_secs_f64() * 1e3);
        let step = shown(&h);
        if let Ok(mut l) = produced.lock() {
            let (done, left): (Vec<_>, Vec<_>) = l.drain(..).partition(|(s, _)| *s <= step);
            latency.extend(done.iter().map(|(_, t)| now.saturating_duration_since(*t).as_secs_f64() * 1e3));
            *l = left;
        }
        tick += FRAME;
        match tick.checked_duration_since(Instant::now()) {
            Some(d) => std::thread::sleep(d),
            None => tick = Instant::now(),
        }
    }
    let secs = w0.elapsed().as_secs_f64().max(1e-9);
    let ui_cpu = thread_cpu() - u0;
    let other_cpu = (process_cpu() - p0 - ui_cpu).max(0.0);
    let live_steps = shown(&h).saturating_sub(first_step);
    let update = show_cpu.borrow().iter().map(|s| s * 1e3).collect::<Vec<_>>();
    if let Some(msg) = h.state().errors().first() {
        return Err(EngineError::Other(format!("the app shows an error: {msg}")));
    }
    drop(h);

    let frame_p95 = percentile(&cpu, 0.95);
    let latency_p95 = percentile(&latency, 0.95);
    Ok(UiResult {
        kind: "ui",
        framework: "genlab",
        frames: opts.frames,
        history_points: opts.history,
        gallery_images: FIXED_GRID,
        live_steps,
        frame_cpu_ms_p50: percentile(&cpu, 0.5),
        frame_cpu_ms_p95: frame_p95,
        frame_cpu_ms_p99: percentile(&cpu, 0.99),
        frame_cpu_ms_max: percentile(&cpu, 1.0),
        frame_wall_ms_p50: percentile(&wall, 0.5),
        frame_wall_ms_p95: percentile(&wall, 0.95),
        frame_wall_ms_p99: percentile(&wall, 0.99),
        update_cpu_ms_p50: percentile(&update, 0.5),
        update_cpu_ms_p95: percentile(&update, 0.95),
        latency_ms_p50: percentile(&latency, 0.5),
        latency_ms_p95: latency_p95,
        latency_ms_p99: percentile(&latency, 0.99),
        latency_ms_max: percentile(&latency, 1.0),
        latency_samples: latency.len(),
        train_threads,
        candle_num_threads: std::env::var("CANDLE_NUM_THREADS").ok(),
        trainer_cores: other_cpu / secs,
        ui_cores: ui_cpu / secs,
        target_frame_p95_ms: TARGET_FRAME_P95_MS,
        target_latency_ms: TARGET_LATENCY_MS,
        meets_frame: frame_p95 <= TARGET_FRAME_P95_MS,
        meets_latency: !latency.is_empty() && latency_p95 <= TARGET_LATENCY_MS,
        date: utc_now(),
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.95), 95.0);
        assert_eq!(percentile(&xs, 1.0), 100.0);
        assert_eq!(percentile(&xs, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
