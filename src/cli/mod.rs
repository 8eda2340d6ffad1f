//! The command line: `genlab` opens the app; `train`, `sample` and `eval` run headless on the
//! same engine.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};

use crate::engine::checkpoint;
use crate::engine::config::{preset, presets, RunConfig};
use crate::engine::data::{self, DataSource, Dataset, LoadOptions, SplitKind};
use crate::engine::device::DeviceChoice;
use crate::engine::images::ImageBatch;
use crate::engine::kernels::{self, KernelPath};
use crate::engine::metrics::MetricsLog;
use crate::engine::models::{Arch, Family, GanLoss, LossKey, Losses, ReconLoss};
use crate::engine::protocol::StepMetrics;
use crate::engine::session::{self, TrainingSession};

/// Exit code of a run whose loss diverged.
pub const EXIT_DIVERGED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "genlab",
    version,
    about = "A workbench for deep generative models: autoencoders, VAEs, β-VAEs and GANs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Open the app with a dataset loaded (`builtin`, `builtin:shapes`, `builtin:shapes2` or a
    /// path).
    Open(OpenArgs),
    /// Train a model and write a checkpoint folder.
    Train(TrainArgs),
    /// Decode samples from a checkpoint's prior into a PNG grid.
    Sample(SampleArgs),
    /// Evaluate a checkpoint's losses on a dataset split (JSON on stdout).
    Eval(EvalArgs),
    /// Score images under a checkpoint: −ELBO and importance-weighted −log p(x) (VAE),
    /// reconstruction error (AE) or discriminator logit (GAN); AUROC against --outliers.
    Score(ScoreArgs),
    /// Latent traversal of a checkpoint as an animated GIF (or a PNG grid).
    Traverse(TraverseArgs),
    /// Encode a dataset split to CSV (index, label, μ…, log σ²…).
    Encode(EncodeArgs),
    /// Decode the line between two test images' encodings into a PNG strip.
    Interpolate(InterpolateArgs),
    /// Measure training throughput (images/s, GFLOP/s, peak RSS) of the presets, the sgemm
    /// peak and dataset load times.
    Bench(BenchArgs),
    /// Train presets from one seed on the CPU's reference kernels and on another device or
    /// kernel path, and compare their losses step by step.
    Parity(ParityArgs),
    /// Sample quality of a checkpoint: Fréchet distance, KID, precision/recall,
    /// density/coverage (and, with labels, the classes of the samples), each beside the real
    /// data's floor and noise's ceiling.
    Quality(QualityArgs),
    /// Train the classifier whose features the quality metrics use (the built-in digits ship
    /// one: assets/features/).
    Classifier(ClassifierArgs),
    /// Disentanglement scores of a checkpoint on its dataset's known factors (`builtin:shapes`):
    /// MIG, FactorVAE, DCI, the latent × factor mutual information and what each dimension
    /// captures.
    Disentangle(DisentangleArgs),
    /// A β sweep: trains a VAE preset once per β and seed, scores each model's
    /// disentanglement (MIG, FactorVAE, DCI), reconstruction, KL and active units, and writes
    /// sweep.csv and sweep.svg.
    Sweep(SweepArgs),
    /// A diffusion checkpoint's denoising trajectory from fixed noise: x_t and the predicted
    /// x̂₀ at chosen steps, as a PNG strip and optionally a GIF.
    Trajectory(diffusion::TrajectoryArgs),
    /// Train a latent prior (a small flow-matching or DDPM model over the latents) for a VAE or
    /// autoencoder checkpoint and save it beside it; `sample --prior` and `quality --prior`
    /// draw from it instead of N(0, I).
    Prior(prior::PriorArgs),
}

/// Where a command computes: `--device` and `--kernels`, shared by every command that runs a
/// model.
#[derive(Args, Debug, Clone, Default)]
pub struct ComputeArgs {
    /// `cpu`, `cuda`, `cuda:N` or `metal` (the GPUs need a build with `--features cuda` or
    /// `metal`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// `fused` (the hand-written CPU kernels) or `reference` (candle's stock ops, what a GPU
    /// runs). Default: the run's own (training: fused).
    #[arg(long, value_enum)]
    pub kernels: Option<KernelPath>,
}

impl ComputeArgs {
    pub fn device(&self) -> anyhow::Result<candle_core::Device> {
        Ok(self.device.open()?)
    }

    /// A checkpoint loaded onto this device and kernel path.
    pub fn load(&self, dir: &std::path::Path) -> anyhow::Result<checkpoint::Loaded> {
        Ok(checkpoint::load_on(dir, &self.device()?, self.kernels)?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    /// `builtin` (the digits), `builtin:shapes`, `builtin:shapes2` (sprites with known factors)
    /// or a path to an IDX file, CSV file or image folder.
    pub data: String,
    /// Preset to select.
    #[arg(long)]
    pub preset: Option<String>,
    /// Start training right away.
    #[arg(long)]
    pub train: bool,
}

/// Runs a headless subcommand; prints errors as one line on stderr.
pub fn run(cmd: Cmd) -> ExitCode {
    // Every subcommand runs candle ops (sampling too: 64 images × 50 DDIM steps spent 2.4 s of
    // system time in page faults with glibc's default mmap threshold).
    crate::engine::session::tune_allocator();
    let result = match cmd {
        Cmd::Train(a) => train::train(a),
        Cmd::Sample(a) => inspect::sample(a).map(|_| ExitCode::SUCCESS),
        Cmd::Eval(a) => inspect::eval(a).map(|_| ExitCode::SUCCESS),
        Cmd::Score(a) => inspect::score(a).map(|_| ExitCode::SUCCESS),
        Cmd::Traverse(a) => explore::traverse(a).map(|_| ExitCode::SUCCESS),
        Cmd::Encode(a) => explore::encode(a).map(|_| ExitCode::SUCCESS),
        Cmd::Interpolate(a) => explore::interpolate(a).map(|_| ExitCode::SUCCESS),
        Cmd::Bench(a) => bench::bench(a).map(|_| ExitCode::SUCCESS),
        Cmd::Parity(a) => parity::parity(a),
        Cmd::Quality(a) => quality::quality(a).map(|_| ExitCode::SUCCESS),
        Cmd::Classifier(a) => quality::classifier(a).map(|_| ExitCode::SUCCESS),
        Cmd::Disentangle(a) => disentangle::disentangle(a).map(|_| ExitCode::SUCCESS),
        Cmd::Sweep(a) => sweep::sweep(a).map(|_| ExitCode::SUCCESS),
        Cmd::Trajectory(a) => diffusion::trajectory(a).map(|_| ExitCode::SUCCESS),
        Cmd::Prior(a) => prior::prior(a).map(|_| ExitCode::SUCCESS),
        Cmd::Open(_) => Err(anyhow!("`open` is handled by the app")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How a dataset's images are loaded: `--resize` and `--channels`, shared by every command that
/// reads one.
#[derive(Args, Debug, Clone, Default)]
pub struct LoadArgs {
    /// Resize every image to WxH, or N for N×N (e.g. `--resize 64` for dcgan64 and
    /// conv_vae64). Default: folders take their most common size, files their own.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub resize: Option<(usize, usize)>,
    /// 1 (grey) or 3 (RGB) channels. Default: grey when every image is grey.
    #[arg(long, value_parser = parse_channels)]
    pub channels: Option<usize>,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions { resize: self.resize, channels: self.channels, ..LoadOptions::default() }
    }
}

/// `WxH` or `N` (square) → (height, width).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let side = |v: &str| match v.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("`{v}` is not a size from 1 to 4096")),
    };
    match s.split_once(['x', 'X', '×']) {
        Some((w, h)) => Ok((side(h)?, side(w)?)),
        None => side(s).map(|n| (n, n)),
    }
}

fn parse_channels(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("`{s}`: images can have 1 (grey) or 3 (RGB) channels")),
    }
}

fn load_data(spec: &str, load: &LoadArgs) -> anyhow::Result<Arc<Dataset>> {
    let src = DataSource::parse(spec);
    Ok(Arc::new(data::load(&src, &load.options())?))
}

/// The dataset a checkpoint was trained on, decoded at the model's input shape (as
/// `train --resize --channels` loaded it).
fn load_checkpoint_data(meta: &checkpoint::CheckpointMeta) -> anyhow::Result<Arc<Dataset>> {
    use anyhow::Context;
    let input = meta.config.model.input();
    let opts = LoadOptions {
        resize: Some((input.height, input.width)),
        channels: matches!(input.channels, 1 | 3).then_some(input.channels),
        ..LoadOptions::default()
    };
    let data = data::load(&meta.data_source, &opts)
        .with_context(|| format!("loading the checkpoint's dataset {}", meta.data_source))?;
    Ok(Arc::new(data))
}

mod bench;
mod diffusion;
mod disentangle;
mod explore;
mod inspect;
mod parity;
mod prior;
mod quality;
mod sweep;
mod train;

pub use bench::*;
pub use disentangle::*;
pub use explore::*;
pub use inspect::*;
pub use parity::*;
pub use quality::*;
pub use sweep::*;
pub use train::*;
