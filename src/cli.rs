//! The command line: `genlab` opens the app; `train`, `sample` and `eval` run headless on the
//! same engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::checkpoint;
use crate::engine::config::{preset, presets, RunConfig};
use crate::engine::data::{self, DataSource, Dataset, LoadOptions, SplitKind};
use crate::engine::images::ImageBatch;
use crate::engine::kernels;
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
    /// Open the app with a dataset loaded (`builtin` or a path).
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
}

#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    /// `builtin` or a path to an IDX file, CSV file or image folder.
    pub data: String,
    /// Preset to select.
    #[arg(long)]
    pub preset: Option<String>,
    /// Start training right away.
    #[arg(long)]
    pub train: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum FamilyArg {
    Ae,
    Vae,
    BetaVae,
    Gan,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ArchArg {
    Mlp,
    Conv,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LossArg {
    Bce,
    Mse,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum GanLossArg {
    NonSaturating,
    Minimax,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// `builtin` or a path to an IDX file, CSV file or image folder.
    #[arg(long, default_value = "builtin")]
    pub data: String,
    /// One of: mnist_vae, mnist_ae, mnist_beta_vae, mnist_mlp_gan, mnist_dcgan, conv_vae.
    #[arg(long, default_value = "mnist_vae")]
    pub preset: String,
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Hidden widths (MLP) or channels (conv), comma-separated, e.g. 400,200.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    #[arg(long)]
    pub latent: Option<usize>,
    #[arg(long)]
    pub beta: Option<f64>,
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    #[arg(long, value_enum)]
    pub gan_loss: Option<GanLossArg>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads for the tensor maths (default: 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop after this many steps (for quick runs).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Also save the checkpoint (and metrics.csv) every this many steps, not only at the end.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Output folder for the checkpoint, metrics.csv, samples.png and reconstructions.png.
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scale of the prior's σ.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset to evaluate on (default: the one the checkpoint was trained on).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Print one JSON object (the default output is a line of text).
    #[arg(long)]
    pub json: bool,
}

/// Runs a headless subcommand; prints errors as one line on stderr.
pub fn run(cmd: Cmd) -> ExitCode {
    let result = match cmd {
        Cmd::Train(a) => train(a),
        Cmd::Sample(a) => sample(a).map(|_| ExitCode::SUCCESS),
        Cmd::Eval(a) => eval(a).map(|_| ExitCode::SUCCESS),
        Cmd::Score(a) => score(a).map(|_| ExitCode::SUCCESS),
        Cmd::Traverse(a) => traverse(a).map(|_| ExitCode::SUCCESS),
        Cmd::Encode(a) => encode(a).map(|_| ExitCode::SUCCESS),
        Cmd::Interpolate(a) => interpolate(a).map(|_| ExitCode::SUCCESS),
        Cmd::Bench(a) => bench(a).map(|_| ExitCode::SUCCESS),
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

fn load_data(spec: &str) -> anyhow::Result<Arc<Dataset>> {
    let src = DataSource::parse(spec);
    Ok(Arc::new(data::load(&src, &LoadOptions::default())?))
}

/// The run configuration a `train` invocation describes.
pub fn train_config(a: &TrainArgs, data: &Dataset) -> anyhow::Result<RunConfig> {
    let mut cfg = preset(&a.preset, data.shape)
        .ok_or_else(|| anyhow!("unknown preset `{}`; presets: {}", a.preset, presets().join(", ")))?;
    if let Some(f) = a.family {
        let family = match f {
            FamilyArg::Ae => Family::Autoencoder,
            FamilyArg::Vae => Family::Vae,
            FamilyArg::BetaVae => Family::BetaVae,
            FamilyArg::Gan => Family::Gan,
        };
        cfg.model = cfg.model.with_family(family);
    }
    if a.beta.is_some_and(|b| b != 1.0) && cfg.model.family() == Family::Vae {
        cfg.model = cfg.model.with_family(Family::BetaVae);
    }
    let m = &mut cfg.model;
    let family = m.family();
    if let Some(x) = a.arch {
        m.net_mut().arch = match x {
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Conv => Arch::Conv,
        };
    }
    if let Some(h) = &a.hidden {
        m.net_mut().hidden = h.clone();
    }
    if let Some(l) = a.latent {
        m.net_mut().latent_dim = l;
    }
    if let Some(b) = a.beta {
        match m.beta_mut() {
            Some(beta) => *beta = b,
            None if b == 1.0 => {}
            None => bail!("--beta applies to a VAE or β-VAE, not to a {family}"),
        }
    }
    if let Some(l) = a.loss {
        let loss = match l {
            LossArg::Bce => ReconLoss::Bce,
            LossArg::Mse => ReconLoss::Mse,
        };
        match m.recon_loss_mut() {
            Some(r) => *r = loss,
            None => bail!("--loss (the reconstruction loss) does not apply to a {family}"),
        }
    }
    if let Some(g) = a.gan_loss {
        let loss = match g {
            GanLossArg::NonSaturating => GanLoss::NonSaturating,
            GanLossArg::Minimax => GanLoss::Minimax,
        };
        match m.gan_mut() {
            Some(gan) => gan.gan_loss = loss,
            None => bail!("--gan-loss applies to a GAN, not to a {family}"),
        }
    }
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
    }
    if let Some(b) = a.batch {
        cfg.train.batch_size = b;
    }
    if let Some(lr) = a.lr {
        cfg.optim.lr = lr;
    }
    if let Some(s) = a.seed {
        cfg.train.seed = s;
    }
    if let Some(t) = a.threads {
        cfg.train.threads = t;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let data = load_data(&a.data)?;
    let cfg = train_config(&a, &data)?;
    // Fail now rather than after the training when the results cannot be written.
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output folder {}", a.out.display()))?;
    kernels::pool::install(cfg.train.threads, || train_in_pool(a, data, cfg))?
}

fn train_in_pool(a: TrainArgs, data: Arc<Dataset>, cfg: RunConfig) -> anyhow::Result<ExitCode> {
    let family = cfg.model.family();
    let caps = cfg.model.capabilities();
    let name = caps.headline.id();
    let mut s = TrainingSession::new(cfg.clone(), data.clone())?;
    let total = a.max_steps.map_or(s.total_steps(), |m| m.min(s.total_steps()));
    eprintln!(
        "training {} ({} {}, {} parameters) on {} ({} train / {} test images of {})",
        cfg.preset,
        cfg.model.net().arch,
        family,
        s.model().param_count(),
        data.name,
        s.split().train.len(),
        s.split().test.len(),
        data.shape
    );
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let mut log = MetricsLog::default();
    let t0 = Instant::now();
    let mut images = 0usize;
    while s.step_count() < total {
        let r = s.step()?;
        images += r.batch;
        let m = StepMetrics {
            step: r.step,
            epoch: r.epoch,
            losses: r.losses,
            learning_rate: s.model().learning_rate(),
            images_per_sec: r.images_per_sec,
        };
        log.push_step(&m);
        if r.diverged {
            bar.abandon();
            save_outputs(&a.out, &s, &log)?;
            let advice = if r.nonfinite_input { r.divergence_advice() } else { "Try a lower --lr." };
            eprintln!(
                "error: the loss diverged (NaN or infinite) at step {} with learning rate {}; the last good weights are saved in {}. {advice}",
                r.step,
                s.model().learning_rate(),
                a.out.display()
            );
            return Ok(ExitCode::from(EXIT_DIVERGED));
        }
        let rate = images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(r.step);
        let headline = |l: &Losses| l.get(caps.headline).unwrap_or(f64::NAN);
        bar.set_message(format!(
            "epoch {}  {name} {:.3}  {:.0} img/s",
            r.epoch + 1,
            headline(&r.losses),
            rate
        ));
        if let Some(e) = &r.epoch_end {
            log.push_epoch(r.step, e);
            let test = e.test.map(|t| format!("{:.3}", headline(&t))).unwrap_or_else(|| "-".into());
            say(
                &bar,
                format!(
                    "epoch {:>3}: train {name} {:.3}  test {name} {test}",
                    e.epoch + 1,
                    headline(&e.train)
                ),
            );
        }
        if a.checkpoint_every.is_some_and(|k| k > 0 && r.step % k == 0 && r.step < total) {
            checkpoint::save(&a.out, s.model(), s.config(), &s.data().source, r.step, Some(&log))?;
            say(&bar, format!("saved checkpoint at step {}", r.step));
        }
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    save_outputs(&a.out, &s, &log)?;
    eprintln!(
        "{} steps in {secs:.1} s ({:.0} images/s); wrote {}",
        s.step_count(),
        images as f64 / secs.max(1e-9),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A line of progress above the bar, or on stderr when there is no bar to draw it above.
fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Writes the checkpoint, metrics.csv, samples.png and (AE/VAE) reconstructions.png.
fn save_outputs(out: &Path, s: &TrainingSession, log: &MetricsLog) -> anyhow::Result<()> {
    checkpoint::save(out, s.model(), s.config(), &s.data().source, s.step_count(), Some(log))?;
    s.sample(64, 1.0, s.config().train.seed)?.save_grid_png(&out.join("samples.png"), 8)?;
    let test: Vec<usize> = s.split().test.iter().take(32).copied().collect();
    let idx = if test.is_empty() { s.split().train.iter().take(32).copied().collect() } else { test };
    if let Some((orig, rec)) = s.reconstruct(&idx)? {
        reconstruction_rows(&orig, &rec, 8).save_grid_png(&out.join("reconstructions.png"), 8)?;
    }
    Ok(())
}

/// Interleaves rows of `cols` originals with rows of their reconstructions.
pub fn reconstruction_rows(orig: &ImageBatch, rec: &ImageBatch, cols: usize) -> ImageBatch {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < orig.len() {
        let end = (i + cols).min(orig.len());
        parts.push(orig.slice(i, end));
        parts.push(rec.slice(i, end));
        i = end;
    }
    let refs: Vec<&ImageBatch> = parts.iter().collect();
    ImageBatch::concat(&refs).unwrap_or_else(|| orig.clone())
}

fn sample(a: SampleArgs) -> anyhow::Result<()> {
    if a.n == 0 || a.n > 4096 {
        bail!("--n must be between 1 and 4096");
    }
    let loaded = checkpoint::load(&a.checkpoint)?;
    let images = session::sample(loaded.model.as_ref(), a.n, a.temperature, a.seed)?;
    let cols = (a.n as f64).sqrt().ceil() as usize;
    images.save_grid_png(&a.out, cols)?;
    eprintln!("wrote {} samples to {}", a.n, a.out.display());
    Ok(())
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let loaded = checkpoint::load(&a.checkpoint)?;
    let cfg = &loaded.meta.config;
    let data = match &a.data {
        Some(spec) => load_data(spec)?,
        None => Arc::new(
            data::load(&loaded.meta.data_source, &LoadOptions::default())
                .with_context(|| format!("loading the checkpoint's dataset {}", loaded.meta.data_source))?,
        ),
    };
    let data = if data.shape != cfg.model.input() {
        eprintln!(
            "note: converting {} images of {} to the model's {}",
            data.len(),
            data.shape,
            cfg.model.input()
        );
        Arc::new(data.converted_to(cfg.model.input()))
    } else {
        data
    };
    let split_kind = match a.split {
        SplitArg::Train => SplitKind::Train,
        SplitArg::Test => SplitKind::Test,
    };
    let split = data.split(cfg.train.test_fraction, cfg.train.seed);
    let idx = split.get(split_kind);
    let losses = session::evaluate_indices(loaded.model.as_ref(), &data, idx, 256, cfg.train.seed)?
        .ok_or_else(|| anyhow!("the {split_kind} split of {} is empty", data.name))?;
    let mut obj = serde_json::Map::new();
    obj.insert("split".into(), split_kind.to_string().into());
    obj.insert("n".into(), idx.len().into());
    obj.insert("family".into(), serde_json::to_value(cfg.model.family())?);
    let headline = cfg.model.capabilities().headline;
    obj.insert("loss_nats".into(), losses.get(headline).unwrap_or(f64::NAN).into());
    for (k, v) in losses.components() {
        let key = match k {
            LossKey::Loss => continue,
            LossKey::Recon => "recon_nats",
            LossKey::Kl => "kl_nats",
            LossKey::DLoss | LossKey::GLoss | LossKey::DReal | LossKey::DFake => k.id(),
        };
        obj.insert(key.into(), v.into());
    }
    if a.json {
        println!("{}", serde_json::Value::Object(obj));
    } else {
        let parts: Vec<String> = losses.components().iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
        println!("{} split, {} images: {}", split_kind, idx.len(), parts.join(", "));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Inlier images: `builtin` or a path (default: the checkpoint's dataset).
    #[arg(long)]
    pub data: Option<String>,
    /// Which split of --data to score.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Outlier images (every image is scored); adds the AUROC of inliers against them.
    #[arg(long)]
    pub outliers: Option<String>,
    /// Importance samples per image (VAE).
    #[arg(long, default_value_t = 64)]
    pub k: usize,
    /// Score BCE models with the continuous Bernoulli, a proper density on [0, 1]^D.
    #[arg(long)]
    pub continuous_bernoulli: bool,
    /// Score at most this many images per set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the importance samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write every image's scores to this CSV file (index, label, set, scores, anomaly).
    #[arg(long)]
    pub per_sample: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `genlab score`: per-set means and standard errors, and the AUROC against --outliers.
fn score(a: ScoreArgs) -> anyhow::Result<()> {
    use crate::engine::scoring::{auroc, score_indices, ScoreOptions, ScoredSet};
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let loaded = checkpoint::load(&a.checkpoint)?;
    let model = loaded.model.as_ref();
    let cfg = &loaded.meta.config;
    let data = match &a.data {
        Some(spec) => load_data(spec)?,
        None => Arc::new(
            data::load(&loaded.meta.data_source, &LoadOptions::default())
                .with_context(|| format!("loading the checkpoint's dataset {}", loaded.meta.data_source))?,
        ),
    };
    let split_kind = match a.split {
        SplitArg::Train => SplitKind::Train,
        SplitArg::Test => SplitKind::Test,
    };
    let split = data.split(cfg.train.test_fraction, cfg.train.seed);
    let limit = a.limit.unwrap_or(usize::MAX);
    let idx: Vec<usize> = split.get(split_kind).iter().copied().take(limit).collect();
    if idx.is_empty() {
        bail!("the {split_kind} split of {} is empty", data.name);
    }
    let outliers = a.outliers.as_deref().map(load_data).transpose()?;
    let opts = ScoreOptions {
        k: a.k,
        continuous_bernoulli: a.continuous_bernoulli,
        seed: a.seed,
        ..Default::default()
    };

    let run = |name: &str, data: &Dataset, idx: &[usize]| -> anyhow::Result<ScoredSet> {
        let bar = indicatif::ProgressBar::new(idx.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("scoring {name}"));
        let set = score_indices(model, data, idx, &opts, &mut |done, _| {
            bar.set_position(done as u64);
            true
        })?
        .ok_or_else(|| anyhow!("scoring was cancelled"))?;
        bar.finish_and_clear();
        if let Some(n) = &set.notice {
            eprintln!("note: {name}: {n}");
        }
        Ok(set)
    };
    let mut sets =
        vec![(split_kind.to_string(), data.name.clone(), run(&split_kind.to_string(), &data, &idx)?)];
    if let Some(o) = &outliers {
        let all: Vec<usize> = (0..o.len().min(limit)).collect();
        if all.is_empty() {
            bail!("the outlier set {} has no images", o.name);
        }
        sets.push(("outliers".into(), o.name.clone(), run("outliers", o, &all)?));
    }
    let first = &sets[0].2;
    let auc = sets.get(1).and_then(|(_, _, o)| auroc(&first.anomaly_scores(), &o.anomaly_scores()));

    if let Some(path) = &a.per_sample {
        let named: Vec<(&str, &ScoredSet)> = sets.iter().map(|(n, _, s)| (n.as_str(), s)).collect();
        crate::engine::scoring::write_per_sample_csv(path, &named)?;
        eprintln!("wrote per-image scores to {}", path.display());
    }
    if a.json {
        let mut out = serde_json::Map::new();
        out.insert("family".into(), serde_json::to_value(cfg.model.family())?);
        out.insert("likelihood".into(), first.likelihood.map(|l| l.label()).into());
        out.insert("anomaly_score".into(), first.anomaly_name().into());
        let mut list = Vec::new();
        for (name, source, set) in &sets {
            let mut obj = serde_json::Map::new();
            obj.insert("set".into(), name.as_str().into());
            obj.insert("data".into(), source.as_str().into());
            obj.insert("n".into(), set.samples.len().into());
            if set.k > 0 {
                obj.insert("k".into(), set.k.into());
            }
            for (key, stat) in set.summary() {
                obj.insert(key.into(), stat.mean.into());
                obj.insert(format!("{key}_se"), stat.stderr.into());
            }
            list.push(serde_json::Value::Object(obj));
        }
        out.insert("sets".into(), list.into());
        if let Some(v) = auc {
            out.insert("auroc".into(), v.into());
        }
        println!("{}", serde_json::Value::Object(out));
    } else {
        for (name, source, set) in &sets {
            let lik = set.likelihood.map(|l| format!(", {} likelihood", l.label())).unwrap_or_default();
            let k = if set.k > 0 { format!(", k {}", set.k) } else { String::new() };
            println!("{name} ({source}, {} images, {}{lik}{k}):", set.samples.len(), cfg.model.family());
            for (key, s) in set.summary() {
                println!("  {key:<13} {:>12.4} ± {:.4}", s.mean, s.stderr);
            }
        }
        if let Some(v) = auc {
            println!("auroc {v:.4} (anomaly score {}, higher = outlier)", first.anomaly_name());
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TraverseArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `.gif`: one frame per value, each showing every chosen dimension; `.png`: a grid with
    /// one row per dimension and one column per value.
    #[arg(long)]
    pub out: PathBuf,
    /// Latent dimensions (default: the 8 with the highest KL on the test split).
    #[arg(long, value_delimiter = ',')]
    pub dims: Option<Vec<usize>>,
    /// Traverse around this test image's μ (default: the prior's mean, z = 0).
    #[arg(long)]
    pub image: Option<usize>,
    /// Values from −range to +range.
    #[arg(long, default_value_t = 3.0)]
    pub range: f32,
    #[arg(long, default_value_t = 11)]
    pub steps: usize,
    /// Dataset for the KL ordering and --image (default: the checkpoint's).
    #[arg(long)]
    pub data: Option<String>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InterpolateArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Index of the first test image (for a GAN: the seed of the first noise vector).
    #[arg(long)]
    pub from: usize,
    /// Index of the second test image (GAN: the second seed).
    #[arg(long)]
    pub to: usize,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub force: bool,
}

/// A checkpoint with the dataset it is explored on (converted to the model's shape).
struct Explorer {
    loaded: checkpoint::Loaded,
    data: Arc<Dataset>,
}

impl Explorer {
    fn open(dir: &Path, data: Option<&str>) -> anyhow::Result<Explorer> {
        let loaded = checkpoint::load(dir)?;
        let input = loaded.meta.config.model.input();
        let data = match data {
            Some(spec) => load_data(spec)?,
            None => {
                Arc::new(data::load(&loaded.meta.data_source, &LoadOptions::default()).with_context(
                    || format!("loading the checkpoint's dataset {}", loaded.meta.data_source),
                )?)
            }
        };
        let data = if data.shape != input { Arc::new(data.converted_to(input)) } else { data };
        Ok(Explorer { loaded, data })
    }

    fn split(&self, kind: SplitKind) -> Vec<usize> {
        let t = &self.loaded.meta.config.train;
        self.data.split(t.test_fraction, t.seed).get(kind).to_vec()
    }

    fn encoding(&self, kind: SplitKind) -> anyhow::Result<crate::engine::session::Encoding> {
        let idx = self.split(kind);
        session::encode_indices(self.loaded.model.as_ref(), &self.data, &idx, kind)?
            .ok_or_else(|| anyhow!("a GAN has no encoder"))
    }

    /// μ of test image `i` (position within the test split).
    fn test_mu(&self, i: usize) -> anyhow::Result<Vec<f32>> {
        let test = self.split(SplitKind::Test);
        let &idx = test
            .get(i)
            .ok_or_else(|| anyhow!("test image {i} does not exist (the test split has {})", test.len()))?;
        let enc = session::encode_indices(self.loaded.model.as_ref(), &self.data, &[idx], SplitKind::Test)?
            .ok_or_else(|| anyhow!("a GAN has no encoder"))?;
        Ok(enc.mu)
    }
}

fn traverse(a: TraverseArgs) -> anyhow::Result<()> {
    use crate::engine::{explore, export};
    export::check_target(&a.out, a.force)?;
    if a.steps < 2 || a.steps > 101 {
        bail!("--steps must be between 2 and 101");
    }
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let model = x.loaded.model.as_ref();
    let dim = model.latent_dim();
    let is_gan = !model.capabilities().encoder;
    let dims = match &a.dims {
        Some(d) => d.clone(),
        None if is_gan => (0..dim.min(8)).collect(),
        None => explore::dims_by_kl(&explore::kl_per_dim(&x.encoding(SplitKind::Test)?))
            .into_iter()
            .take(8)
            .collect(),
    };
    let base = match a.image {
        Some(i) => x.test_mu(i)?,
        None => vec![0.0; dim],
    };
    let values = explore::linspace(-a.range, a.range, a.steps);
    let grid = explore::traversal(model, &base, &dims, &values)?;
    let is_gif = a.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif"));
    if is_gif {
        // Frame k shows every dimension at values[k].
        let frames = export::traversal_frames(&grid, dims.len(), values.len());
        export::save_gif(&a.out, &frames, dims.len(), 120)?;
    } else {
        grid.save_grid_png(&a.out, values.len())?;
    }
    eprintln!(
        "wrote a traversal of dimensions {dims:?} over [{}, {}] to {}",
        -a.range,
        a.range,
        a.out.display()
    );
    Ok(())
}

fn encode(a: EncodeArgs) -> anyhow::Result<()> {
    use crate::engine::export;
    export::check_target(&a.out, a.force)?;
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let kind = match a.split {
        SplitArg::Train => SplitKind::Train,
        SplitArg::Test => SplitKind::Test,
    };
    let enc = x.encoding(kind)?;
    export::save_encoding_csv(&a.out, &enc)?;
    eprintln!("wrote {} encodings ({} dimensions) to {}", enc.indices.len(), enc.dim, a.out.display());
    Ok(())
}

fn interpolate(a: InterpolateArgs) -> anyhow::Result<()> {
    use crate::engine::{explore, export};
    export::check_target(&a.out, a.force)?;
    if a.steps < 2 || a.steps > 256 {
        bail!("--steps must be between 2 and 256");
    }
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let model = x.loaded.model.as_ref();
    let (za, zb) = if !model.capabilities().encoder {
        let dim = model.latent_dim();
        (explore::noise_vector(a.from as u64, dim), explore::noise_vector(a.to as u64, dim))
    } else {
        (x.test_mu(a.from)?, x.test_mu(a.to)?)
    };
    let strip = explore::interpolate(model, &za, &zb, a.steps)?;
    strip.save_grid_png(&a.out, a.steps)?;
    eprintln!("wrote {} steps from {} to {} to {}", a.steps, a.from, a.to, a.out.display());
    Ok(())
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `ui` (the app's frame times) or `memory` (RSS over a long run); none: training speed.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// One JSON object per line (machine, sgemm, load and one per model).
    #[arg(long)]
    pub json: bool,
    /// A smoke run: fewer steps and repeats, a smaller sgemm.
    #[arg(long)]
    pub quick: bool,
    /// Threads for the tensor maths (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Presets to train, comma-separated (default: mnist_vae,mnist_mlp_gan,conv_vae,mnist_dcgan).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Timed steps per repeat (default: per model, 8 for mnist_dcgan to 600 for mnist_vae).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed steps before each repeat (default: per model).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Repeats per model (the median is reported).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Only the training measurements: no sgemm peak, no dataset loads.
    #[arg(long)]
    pub train_only: bool,
    /// No dataset loads: the sgemm peak and the training (what `bench/compare.sh` measures in
    /// every round, so that each round's share of the peak uses a peak of the same moment).
    #[arg(long, conflicts_with = "train_only")]
    pub no_loads: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// The app's per-frame CPU time with a live run, a 10⁵-point loss history and the 64-image
    /// sample grid, and how long a step's metrics take to reach the run view.
    Ui(BenchUiArgs),
    /// Resident memory while `mnist_vae` trains through the app's worker for many steps.
    Memory(BenchMemoryArgs),
}

#[derive(Args, Debug)]
pub struct BenchUiArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Frames to measure (at 60 frames/s).
    #[arg(long, default_value_t = 600)]
    pub frames: usize,
    /// Steps of loss history in the run view before the live steps.
    #[arg(long, default_value_t = 100_000)]
    pub history: u64,
}

#[derive(Args, Debug)]
pub struct BenchMemoryArgs {
    /// One JSON object per line (each RSS sample, then the summary).
    #[arg(long)]
    pub json: bool,
    /// Training steps (default 100,000).
    #[arg(long)]
    pub steps: Option<u64>,
    /// A shorter run (5,000 steps) unless --steps is given.
    #[arg(long)]
    pub quick: bool,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// `genlab bench`: prints each measurement as soon as it is taken.
fn bench(a: BenchArgs) -> anyhow::Result<()> {
    use crate::bench::{self, BenchOptions};
    match a.what {
        Some(BenchWhat::Ui(u)) => return bench_ui(u),
        Some(BenchWhat::Memory(m)) => return bench_memory(m),
        None => {}
    }
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut opts = BenchOptions::new(threads, a.quick);
    if let Some(m) = a.models {
        opts.models = m;
    }
    opts.steps = a.steps.or(opts.steps);
    opts.warmup = a.warmup.or(opts.warmup);
    opts.repeats = a.repeats.unwrap_or(opts.repeats);
    if a.train_only {
        opts.sgemm_n = 0;
    }
    if a.train_only || a.no_loads {
        opts.data_loads = false;
    }
    bench::run(&opts, &mut |r| {
        println!("{}", if a.json { r.to_json() } else { r.to_text() });
    })?;
    Ok(())
}

#[cfg(feature = "app")]
fn bench_ui(a: BenchUiArgs) -> anyhow::Result<()> {
    let opts = crate::bench::ui::UiOptions { frames: a.frames.max(1), history: a.history };
    let r = crate::bench::ui::run(&opts)?;
    println!("{}", if a.json { r.to_json() } else { r.to_text() });
    Ok(())
}

#[cfg(not(feature = "app"))]
fn bench_ui(_a: BenchUiArgs) -> anyhow::Result<()> {
    Err(anyhow!("`bench ui` needs the app: this genlab was built without the feature `app`"))
}

/// `genlab bench memory`: with the app built in, every event is folded into the app's run view.
fn bench_memory(a: BenchMemoryArgs) -> anyhow::Result<()> {
    use crate::bench::memory::{self, MemoryOptions};
    use crate::engine::protocol::Event;
    let steps = a.steps.unwrap_or(if a.quick { 5_000 } else { 100_000 });
    let mut opts = MemoryOptions::new(steps);
    opts.batch = a.batch;
    #[cfg(feature = "app")]
    let mut view = crate::app::run_view::RunView::default();
    #[cfg(feature = "app")]
    let mut fold = |e: Event| view.apply(e, std::time::Instant::now());
    #[cfg(not(feature = "app"))]
    let mut fold = |_e: Event| {};
    if cfg!(feature = "app") {
        opts.consumer = "run_view";
    }
    let json = a.json;
    let r = memory::run(&opts, &mut fold, &mut |s| {
        if json {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        } else {
            eprintln!("step {:>7}: RSS {:.1} MB", s.step, s.rss_mb);
        }
    })?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "mnist_vae, batch {}, {} steps in {:.0} s: peak RSS {:.1} MB (target ≤ {:.0}), {:.1} MB at 10%, {:.1} MB at the end, slope {:+.2} MB per 10⁴ steps ({})",
            r.batch,
            r.steps,
            r.seconds,
            r.peak_rss_mb,
            r.target_peak_mb,
            r.rss_at_10pct_mb,
            r.rss_end_mb,
            r.slope_mb_per_10k_steps,
            if r.flat { "flat" } else { "growing" }
        );
    }
    Ok(())
}
