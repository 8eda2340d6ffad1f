//! `genlab bench`: training throughput of the presets, the machine's sgemm peak and dataset
//! load times, measured through the real engine ([`TrainingSession`]).
//!
//! # What is measured
//! - **Training**: for each preset, a fresh session on the built-in digits (batch 128; for a
//!   preset laid out for other images, 2,500 of them converted to its shape: 3×64×64 for
//!   `dcgan64` and `conv_vae64`, which are not in the default list) takes
//!   `warmup` untimed steps, then `steps` timed ones ([`schedule`]); this repeats `repeats`
//!   times and the median images/s is reported. A step that ends an epoch (a partial batch plus the test-split
//!   evaluation) is not timed; another step is taken in its place.
//! - **FLOPs** come from the layer shapes ([`ModelConfig::forward_macs`]), one multiply-add = 2
//!   FLOPs; a layer's backward pass is its weight gradient (one forward's worth) and its input
//!   gradient (another), and the input gradient of a layer fed by data (the images, the
//!   generator's noise, detached fakes) is not needed, so it is not counted (the family's
//!   [`ModelConfig::step_macs`]:
//!   `E₁` the encoder's / discriminator's first layer, `G₁` the generator's):
//!   - AE / VAE: `2 · (3 · forward_macs − E₁)` per image.
//!   - GAN, with `G` and `D` the forward MACs of generator and discriminator per image
//!     : G forward (G); D on real and on detached fake,
//!     forward and backward (2·(3·D − D₁)); D again on the fake for G's loss, forward (D) and
//!     backward through D for its input gradient only (D: its weight gradients are not needed
//!     there, and genlab's fused layers skip them) and through G (2·G − G₁). In all
//!     `2 · (3·G − G₁ + 8·D − 2·D₁)`.
//!
//!   Element-wise work (activations, losses, batch norm, Adam) is not counted. The PyTorch
//!   reference (`bench/reference/torch_bench.py`) counts the same way.
//! - **Memory**: `peak_rss_mb` is the process's VmHWM while the preset trained (the high-water
//!   mark is reset before each preset where the kernel allows it); it is process-wide, so it
//!   includes the dataset and what earlier presets left in the allocator. `rss_increase_mb` is
//!   that peak minus the resident size just before the preset started.
//! - **sgemm**: an `n × n × n` f32 matmul through candle at 1 and at N threads (the best of a few
//!   runs is the peak; the median is reported too), so that a model's GFLOP/s can be read as a
//!   share of what the matmul alone reaches.
//! - **Dataset loads**: a generated 60,000-image IDX file (raw and gzip, the built-in digits
//!   repeated) and a 10,000-PNG class folder, each loaded through [`data::load`].
//!
//! `genlab bench memory` ([`memory`]) and `genlab bench ui` ([`ui`], with the app) measure
//! resident memory over a long run and the app's frame times with a live run.

pub mod memory;
pub mod quality;
#[cfg(feature = "app")]
pub mod ui;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::engine::config::{data_for_preset, preset, presets};
use crate::engine::data::{self, builtin, idx, DataSource, Dataset, LoadOptions};
use crate::engine::device::DeviceChoice;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::{pool, KernelPath};
use crate::engine::models::ModelConfig;
use crate::engine::session::{tune_allocator, TrainingSession};

/// The presets `genlab bench` measures by default.
pub const MODELS: [&str; 4] = ["mnist_vae", "mnist_mlp_gan", "conv_vae", "mnist_dcgan"];

/// Batch size of every measured step.
pub const BATCH: usize = 128;

/// Built-in digits a preset laid out for other images (dcgan64, conv_vae64) trains on,
/// converted to its shape: 2,500 at 3×64×64 hold 120 MB, where all 10,000 would take 490 MB.
const CONVERTED_IMAGES: usize = 2500;

/// What to measure and how long.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Threads of the rayon pool the maths runs in.
    pub threads: usize,
    pub models: Vec<String>,
    /// Untimed steps before each repeat (`None`: the model's default, see [`schedule`]).
    pub warmup: Option<usize>,
    /// Timed steps per repeat (`None`: the model's default, see [`schedule`]).
    pub steps: Option<usize>,
    pub repeats: usize,
    /// A smoke run: short schedules.
    pub quick: bool,
    /// Side of the square sgemm (0 = skip it).
    pub sgemm_n: usize,
    /// Measure dataset load times.
    pub data_loads: bool,
    /// Where the models train.
    pub device: DeviceChoice,
    pub kernels: KernelPath,
}

impl BenchOptions {
    /// The full measurement (`quick`: a smoke run, fewer steps and repeats).
    pub fn new(threads: usize, quick: bool) -> Self {
        Self {
            threads,
            models: MODELS.iter().map(|m| m.to_string()).collect(),
            warmup: None,
            steps: None,
            repeats: if quick { 1 } else { 3 },
            quick,
            sgemm_n: if quick { 512 } else { 1024 },
            data_loads: true,
            device: DeviceChoice::Cpu,
            kernels: KernelPath::Fused,
        }
    }

    /// (warm-up, timed) steps for `model`: the options' when set, else [`schedule`].
    pub fn schedule(&self, model: &str) -> (usize, usize) {
        let (w, s) = schedule(model, self.quick);
        (self.warmup.unwrap_or(w), self.steps.unwrap_or(s))
    }
}

/// Default (warm-up, timed) steps per model, sized so that each repeat takes about a second of
/// genlab's training here (PyTorch's take 2–6× longer): a DCGAN step costs about 60 VAE steps.
/// The earlier table (30 timed VAE steps) timed 60 ms windows once training got fast, and
/// their first repeat ran up to 25% below the rest. `bench/reference/torch_bench.py` uses the
/// same table.
pub fn schedule(model: &str, quick: bool) -> (usize, usize) {
    if quick {
        return (1, 3);
    }
    match model {
        "mnist_vae" => (40, 600),
        "mnist_mlp_gan" => (20, 200),
        "conv_vae" => (4, 40),
        "mnist_dcgan" => (2, 8),
        // At batch 128 a conv_vae64 step takes 0.2–0.4 s here, a dcgan64 step 1.3–2.5 s: one
        // timed step is already over the second.
        "conv_vae64" => (1, 4),
        "dcgan64" => (1, 1),
        _ => (2, 10),
    }
}

/// One preset's training throughput.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelResult {
    pub kind: &'static str,
    pub framework: &'static str,
    pub model: String,
    /// Device and kernels, e.g. `cpu/fused`, `cuda:0/reference`.
    pub device: String,
    pub threads: usize,
    pub batch: usize,
    /// Median over the repeats.
    pub images_per_sec: f64,
    /// Each repeat's images/s.
    pub runs: Vec<f64>,
    /// Achieved GFLOP/s at the median throughput (see the module docs for the count).
    pub gflops: f64,
    /// FLOPs of one training step per image.
    pub flop_per_image: u64,
    /// `gflops` as a percentage of the sgemm peak at the same thread count (when measured).
    pub pct_of_sgemm_peak: Option<f64>,
    pub peak_rss_mb: f64,
    pub rss_increase_mb: f64,
    pub steps: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub date: String,
}

/// The matmul peak at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SgemmResult {
    pub kind: &'static str,
    pub framework: &'static str,
    pub threads: usize,
    pub n: usize,
    /// Best of the runs.
    pub gflops: f64,
    pub gflops_median: f64,
    pub date: String,
}

/// The time to load one generated dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadResult {
    pub kind: &'static str,
    pub framework: &'static str,
    /// `idx-raw`, `idx-gz` or `png-folder`.
    pub format: &'static str,
    pub images: usize,
    /// Size on disk.
    pub bytes: u64,
    /// Median over the repeats.
    pub seconds: f64,
    pub images_per_sec: f64,
    pub date: String,
}

/// Where the machine and the run are described.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineInfo {
    pub kind: &'static str,
    pub framework: &'static str,
    pub version: &'static str,
    pub cpu: String,
    pub nproc: usize,
    pub threads: usize,
    pub date: String,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Machine(MachineInfo),
    Sgemm(SgemmResult),
    Load(LoadResult),
    Model(ModelResult),
    Quality(quality::QualityResult),
}

impl Record {
    /// The record as one JSON object.
    pub fn to_json(&self) -> String {
        let v = match self {
            Record::Machine(r) => serde_json::to_string(r),
            Record::Sgemm(r) => serde_json::to_string(r),
            Record::Load(r) => serde_json::to_string(r),
            Record::Model(r) => serde_json::to_string(r),
            Record::Quality(r) => serde_json::to_string(r),
        };
        v.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The record as one line of text.
    pub fn to_text(&self) -> String {
        match self {
            Record::Machine(m) => format!(
                "genlab {} on {} ({} cores), {} thread(s), {}",
                m.version, m.cpu, m.nproc, m.threads, m.date
            ),
            Record::Sgemm(s) => format!(
                "sgemm {n}×{n}×{n}, {} thread(s): {:.1} GFLOP/s peak ({:.1} median)",
                s.threads,
                s.gflops,
                s.gflops_median,
                n = s.n
            ),
            Record::Load(l) => format!(
                "load {:<10} {:>6} images, {:>6.1} MB: {:>7.3} s ({:.0} images/s)",
                l.format,
                l.images,
                l.bytes as f64 / 1e6,
                l.seconds,
                l.images_per_sec
            ),
            Record::Model(m) => format!(
                "{:<14} {} {} thread(s): {:>8.0} images/s  {:>6.1} GFLOP/s{}  peak RSS {:.0} MB (+{:.0} MB)",
                m.model,
                m.device,
                m.threads,
                m.images_per_sec,
                m.gflops,
                m.pct_of_sgemm_peak.map(|p| format!(" ({p:.0}% of sgemm)")).unwrap_or_default(),
                m.peak_rss_mb,
                m.rss_increase_mb
            ),
            Record::Quality(q) => format!(
                "quality of {} samples ({}): {:.0} ms each, {:.0} ms per 1,000 samples (reference prepared once in {:.1} s)",
                q.samples,
                q.preset,
                1e3 * q.seconds,
                q.ms_per_1000_samples,
                q.prepare_seconds
            ),
        }
    }
}

/// Runs the whole benchmark in a pool of `opts.threads` threads, handing each record to `emit`
/// as soon as it is measured.
pub fn run(opts: &BenchOptions, emit: &mut (dyn FnMut(&Record) + Send)) -> Result<()> {
    if opts.threads == 0 || opts.steps == Some(0) || opts.repeats == 0 {
        return Err(EngineError::Config("threads, steps and repeats must be at least 1".into()));
    }
    for m in &opts.models {
        if preset(m, builtin_shape()).is_none() {
            return Err(EngineError::Config(format!(
                "unknown model `{m}`; models: {}",
                presets().join(", ")
            )));
        }
    }
    tune_allocator();
    emit(&Record::Machine(MachineInfo {
        kind: "machine",
        framework: "genlab",
        version: env!("CARGO_PKG_VERSION"),
        cpu: cpu_model(),
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: opts.threads,
        date: utc_now(),
    }));

    let mut peak_at_n = None;
    if opts.sgemm_n > 0 {
        let mut counts = vec![1];
        if opts.threads != 1 {
            counts.push(opts.threads);
        }
        for t in counts {
            let r = pool::install(t, || sgemm(opts.sgemm_n, t))??;
            if t == opts.threads {
                peak_at_n = Some(r.gflops);
            }
            emit(&Record::Sgemm(r));
        }
    }

    pool::install(opts.threads, || -> Result<()> {
        if opts.data_loads {
            for r in load_times(if opts.repeats > 1 { 3 } else { 1 })? {
                emit(&Record::Load(r));
            }
        }
        let data = Arc::new(builtin::load()?);
        // With the loads: what `--train-only` and `--no-loads` leave out.
        if opts.data_loads {
            emit(&Record::Quality(quality::measure(&data, "mnist_vae", 1000, opts.repeats)?));
        }
        for m in &opts.models {
            let mut r = train_model(m, &data, opts)?;
            r.pct_of_sgemm_peak = peak_at_n.map(|p| 100.0 * r.gflops / p);
            emit(&Record::Model(r));
        }
        Ok(())
    })?
}

/// FLOPs of one training step per image (see the module docs; the family counts its own
/// schedule, [`ModelConfig::step_macs`]).
pub fn step_flop_per_image(cfg: &ModelConfig) -> u64 {
    2 * cfg.step_macs().train_step
}

/// Trains preset `name` on `data` and measures it (call inside the pool).
pub fn train_model(name: &str, data: &Arc<Dataset>, opts: &BenchOptions) -> Result<ModelResult> {
    let data = &data_for_preset(name, data, CONVERTED_IMAGES);
    let mut cfg =
        preset(name, data.shape).ok_or_else(|| EngineError::Config(format!("unknown model `{name}`")))?;
    cfg.train.batch_size = BATCH;
    cfg.train.threads = opts.threads;
    cfg.train.kernels = opts.kernels;
    cfg.train.epochs = usize::MAX / 2;
    let device = opts.device.open()?;
    // The epoch-end evaluation is not timed; keep it short.
    cfg.train.eval_limit = BATCH;
    let flop_per_image = step_flop_per_image(&cfg.model);
    let (warmup, steps) = opts.schedule(name);

    reset_peak_rss();
    let rss_before = rss_mb("VmRSS:").unwrap_or(0.0);
    let mut runs = Vec::with_capacity(opts.repeats);
    for _ in 0..opts.repeats {
        let mut s = TrainingSession::on(cfg.clone(), data.clone(), device.clone())?;
        for _ in 0..warmup {
            s.step()?;
        }
        let (mut timed, mut images, mut secs) = (0, 0usize, 0.0f64);
        while timed < steps {
            let t0 = Instant::now();
            let r = s.step()?;
            let dt = t0.elapsed().as_secs_f64();
            if r.diverged {
                return Err(EngineError::Other(format!("{name} diverged at step {}", r.step)));
            }
            if r.epoch_end.is_some() {
                continue;
            }
            timed += 1;
            images += r.batch;
            secs += dt;
        }
        runs.push(images as f64 / secs.max(1e-9));
    }
    let peak = rss_mb("VmHWM:").unwrap_or(0.0);
    let ips = median(&runs);
    Ok(ModelResult {
        kind: "train",
        framework: "genlab",
        model: name.to_string(),
        device: crate::engine::parity::Side::new(device, opts.kernels).label(),
        threads: opts.threads,
        batch: BATCH,
        images_per_sec: ips,
        runs,
        gflops: ips * flop_per_image as f64 / 1e9,
        flop_per_image,
        pct_of_sgemm_peak: None,
        peak_rss_mb: peak,
        rss_increase_mb: (peak - rss_before).max(0.0),
        steps,
        warmup,
        repeats: opts.repeats,
        date: utc_now(),
    })
}

/// GFLOP/s of an `n × n × n` f32 matmul through candle (call inside a pool of `threads`).
pub fn sgemm(n: usize, threads: usize) -> Result<SgemmResult> {
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let flop = 2.0 * (n as f64).powi(3);
    for _ in 0..2 {
        a.matmul(&b)?;
    }
    // At least 7 runs and about half a second.
    let mut rates = Vec::new();
    let start = Instant::now();
    while rates.len() < 7 || (start.elapsed() < Duration::from_millis(500) && rates.len() < 200) {
        let t0 = Instant::now();
        let c = a.matmul(&b)?;
        let dt = t0.elapsed().as_secs_f64();
        drop(c);
        rates.push(flop / dt.max(1e-9) / 1e9);
    }
    Ok(SgemmResult {
        kind: "sgemm",
        framework: "genlab",
        threads,
        n,
        gflops: rates.iter().copied().fold(0.0, f64::max),
        gflops_median: median(&rates),
        date: utc_now(),
    })
}

/// Load times of a generated 60,000-image IDX file (raw and gzip) and a 10,000-PNG folder,
/// written to a temporary folder from the built-in digits; the median of `repeats` loads.
pub fn load_times(repeats: usize) -> Result<Vec<LoadResult>> {
    let dir = std::env::temp_dir().join(format!("genlab-bench-{}", std::process::id()));
    let result = write_and_load(&dir, repeats.max(1));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn write_and_load(dir: &Path, repeats: usize) -> Result<Vec<LoadResult>> {
    const IDX_IMAGES: usize = 60_000;
    const PNG_IMAGES: usize = 10_000;
    let io = |p: &Path, e: std::io::Error| EngineError::Other(format!("{}: {e}", p.display()));
    let digits = builtin::load()?;
    let side = digits.shape.height;
    let pixels = digits.shape.len();
    let n = digits.len();
    let bytes: Vec<u8> = digits.images.iter().map(|v| (v * 255.0).round() as u8).collect();
    let labels: Vec<u8> = digits.labels.clone().unwrap_or_default().iter().map(|&l| l as u8).collect();
    let label_of = |i: usize| labels.get(i % n).copied().unwrap_or(0);

    let mut out = Vec::new();
    let idx_images: Vec<u8> =
        (0..IDX_IMAGES).flat_map(|i| bytes[(i % n) * pixels..][..pixels].iter().copied()).collect();
    let idx_labels: Vec<u8> = (0..IDX_IMAGES).map(label_of).collect();
    for (format, sub, ext) in [("idx-raw", "raw", ""), ("idx-gz", "gz", ".gz")] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        let images = d.join(format!("train-images-idx3-ubyte{ext}"));
        let labels = d.join(format!("train-labels-idx1-ubyte{ext}"));
        idx::write_idx(&images, &[IDX_IMAGES, side, side], &idx_images).map_err(|e| io(&images, e))?;
        idx::write_idx(&labels, &[IDX_IMAGES], &idx_labels).map_err(|e| io(&labels, e))?;
        let size = file_size(&images) + file_size(&labels);
        out.push(time_load(format, &images, IDX_IMAGES, size, repeats)?);
    }

    let folder = dir.join("png");
    let mut size = 0;
    for i in 0..PNG_IMAGES {
        let class = folder.join(label_of(i).to_string());
        std::fs::create_dir_all(&class).map_err(|e| io(&class, e))?;
        let path = class.join(format!("{i:05}.png"));
        let img = image::GrayImage::from_raw(
            side as u32,
            side as u32,
            bytes[(i % n) * pixels..][..pixels].to_vec(),
        )
        .ok_or_else(|| EngineError::Other("a digit does not fill its image".into()))?;
        img.save(&path).map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))?;
        size += file_size(&path);
    }
    out.push(time_load("png-folder", &folder, PNG_IMAGES, size, repeats)?);
    Ok(out)
}

fn time_load(
    format: &'static str,
    path: &Path,
    images: usize,
    bytes: u64,
    repeats: usize,
) -> Result<LoadResult> {
    let mut secs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        let d = data::load(&DataSource::Path(PathBuf::from(path)), &LoadOptions::default())?;
        secs.push(t0.elapsed().as_secs_f64());
        if d.len() != images {
            return Err(EngineError::Other(format!(
                "{}: loaded {} images, wrote {images}",
                path.display(),
                d.len()
            )));
        }
    }
    let seconds = median(&secs);
    Ok(LoadResult {
        kind: "load",
        framework: "genlab",
        format,
        images,
        bytes,
        seconds,
        images_per_sec: images as f64 / seconds.max(1e-9),
        date: utc_now(),
    })
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn builtin_shape() -> data::ImageShape {
    data::ImageShape::new(1, 28, 28)
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// A `/proc/self/status` size field (`VmRSS:`, `VmHWM:`) in MB.
pub fn rss_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the process's peak RSS (VmHWM) to the current RSS; Linux ≥ 4.0, ignored elsewhere.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (the proleptic Gregorian calendar).
pub fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts_from_layer_shapes() {
        let vae = preset("mnist_vae", builtin_shape()).unwrap().model;
        // 784·400 + 2·400·20 + 20·400 + 400·784 multiply-adds forward.
        let fwd = 784 * 400 + 2 * 400 * 20 + 20 * 400 + 400 * 784;
        assert_eq!(vae.forward_macs(), fwd);
        // No input gradient for the first layer, which reads the images.
        assert_eq!(step_flop_per_image(&vae), 2 * (3 * fwd - 784 * 400));
        let gan = preset("mnist_mlp_gan", builtin_shape()).unwrap().model;
        let g = 100 * 256 + 256 * 512 + 512 * 784;
        let d = 784 * 512 + 512 * 256 + 256;
        assert_eq!(gan.forward_macs(), g + d);
        // Neither the generator's first layer (noise) nor D's first layer on data needs an
        // input gradient; D's first layer does on the G step.
        assert_eq!(step_flop_per_image(&gan), 2 * (3 * g - 100 * 256 + 8 * d - 2 * 784 * 512));
        let conv = preset("conv_vae", builtin_shape()).unwrap().model;
        assert_eq!(step_flop_per_image(&conv), 2 * (3 * conv.forward_macs() - 14 * 14 * 32 * 16));
        let dcgan = preset("mnist_dcgan", builtin_shape()).unwrap().model;
        let convs = 14 * 14 * 64 * 16 + 7 * 7 * 128 * 64 * 16;
        let (g, d) = (7 * 7 * 128 * 100 + convs, convs + 7 * 7 * 128);
        assert_eq!(dcgan.forward_macs(), g + d);
        assert_eq!(
            step_flop_per_image(&dcgan),
            2 * (3 * g - 7 * 7 * 128 * 100 + 8 * d - 2 * 14 * 14 * 64 * 16)
        );
    }

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(utc_string(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
