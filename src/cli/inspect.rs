//! `genlab sample`, `eval` and `score`: what a checkpoint draws, its losses on a split, and
//! per-image scores against other data.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};

use super::*;

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
    /// Draw this class (a conditional model; without it, every class in turn).
    #[arg(long)]
    pub class: Option<u32>,
    /// A class × noise grid instead (a conditional model): one column per class, one row per
    /// noise vector, `--n` rows.
    #[arg(long, conflicts_with = "class")]
    pub grid_by_class: bool,
    /// Decode latents drawn from the checkpoint's latent prior (`genlab prior`) instead of
    /// N(0, I).
    #[arg(long, conflicts_with_all = ["class", "grid_by_class"])]
    pub prior: bool,
    #[command(flatten)]
    pub sampling: super::diffusion::SamplingArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
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
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
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

pub(super) fn sample(a: SampleArgs) -> anyhow::Result<()> {
    if a.n == 0 || a.n > 4096 {
        bail!("--n must be between 1 and 4096");
    }
    let loaded = a.compute.load(&a.checkpoint)?;
    let model = a.sampling.apply(loaded, &a.compute)?;
    let model = model.as_ref();
    if a.grid_by_class {
        let k = model.classes();
        if k == 0 {
            bail!("--grid-by-class needs a conditional model; {} is a {} without classes (train mnist_cvae, say)", a.checkpoint.display(), model.config().family());
        }
        let rows = a.n.min(64);
        let images = session::class_grid(model, rows, a.temperature, a.seed)?;
        images.save_grid_png(&a.out, k)?;
        eprintln!("wrote {rows} noise vectors × {k} classes to {}", a.out.display());
        return Ok(());
    }
    if a.prior {
        let prior = super::prior::load_prior(&a.checkpoint, model)?;
        let images = prior.sample_images(model, a.n, a.seed)?;
        images.save_grid_png(&a.out, (a.n as f64).sqrt().ceil() as usize)?;
        eprintln!("wrote {} samples from the latent prior to {}", a.n, a.out.display());
        return Ok(());
    }
    let images = session::sample_class(model, a.n, a.temperature, a.seed, a.class)?;
    let cols = (a.n as f64).sqrt().ceil() as usize;
    images.save_grid_png(&a.out, cols)?;
    match a.class {
        Some(c) => eprintln!("wrote {} samples of class {c} to {}", a.n, a.out.display()),
        None => eprintln!("wrote {} samples to {}", a.n, a.out.display()),
    }
    Ok(())
}

pub(super) fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let loaded = a.compute.load(&a.checkpoint)?;
    let cfg = &loaded.meta.config;
    let data = match &a.data {
        Some(spec) => load_data(spec, &a.load)?,
        None => load_checkpoint_data(&loaded.meta)?,
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
            LossKey::DLoss
            | LossKey::GLoss
            | LossKey::DReal
            | LossKey::DFake
            | LossKey::WEstimate
            | LossKey::GradPenalty => k.id(),
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
    /// How --data and --outliers are loaded.
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// `genlab score`: per-set means and standard errors, and the AUROC against --outliers.
pub(super) fn score(a: ScoreArgs) -> anyhow::Result<()> {
    use crate::engine::scoring::{auroc, score_indices, ScoreOptions, ScoredSet};
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let loaded = a.compute.load(&a.checkpoint)?;
    let model = loaded.model.as_ref();
    let cfg = &loaded.meta.config;
    let data = match &a.data {
        Some(spec) => load_data(spec, &a.load)?,
        None => load_checkpoint_data(&loaded.meta)?,
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
    let outliers = a.outliers.as_deref().map(|spec| load_data(spec, &a.load)).transpose()?;
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
