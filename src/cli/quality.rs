//! `genlab quality`: a checkpoint's sample quality with its floor and ceiling; `genlab
//! classifier`: trains the classifier whose features the metrics use (how the shipped one for
//! the built-in digits is made).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::*;
use crate::engine::quality::memorisation::{memorisation, Memorisation};
use crate::engine::quality::{self, features, QualityContext, QualityReport, Scored};

#[derive(Args, Debug)]
pub struct QualityArgs {
    /// The model whose prior samples are measured.
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    pub checkpoint: Option<PathBuf>,
    /// Instead: images made elsewhere (an IDX file, CSV or image folder; e.g. another
    /// framework's samples), measured against `--data`.
    #[arg(long, requires = "data")]
    pub images: Option<String>,
    /// The real data (`builtin` or a path) that `--images` are measured against.
    #[arg(long)]
    pub data: Option<String>,
    /// Samples drawn (and real images per side).
    #[arg(long, default_value_t = quality::DEFAULT_SAMPLES)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Measure samples decoded from the checkpoint's latent prior (`genlab prior`) instead of
    /// N(0, I).
    #[arg(long, requires = "checkpoint")]
    pub prior: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the 32 samples closest to a training image beside their nearest training
    /// images (feature space) to this PNG, pairs in rows of four, closest first.
    #[arg(long)]
    pub nearest: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Args, Debug)]
pub struct ClassifierArgs {
    /// `builtin` or a path to labelled data.
    #[arg(long, default_value = "builtin")]
    pub data: String,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = quality::CLASSIFIER_EPOCHS)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub(super) fn quality(a: QualityArgs) -> anyhow::Result<()> {
    if a.n < 10 || a.n > 20_000 {
        bail!("--n must be between 10 and 20000");
    }
    if let (Some(images), Some(data)) = (&a.images, &a.data) {
        return quality_of_images(&a, images, data);
    }
    let Some(dir) = &a.checkpoint else { bail!("give --checkpoint, or --images and --data") };
    let loaded = a.compute.load(dir)?;
    let cfg = &loaded.meta.config;
    let data = load_checkpoint_data(&loaded.meta)?;
    let split = data.split(cfg.train.test_fraction, cfg.train.seed);
    let net = quality::feature_net(&data, &split, &mut |m| eprintln!("{m}"))?;
    let ctx = QualityContext::new(&data, &split, net, a.n, a.seed)?;
    let prior = a.prior.then(|| super::prior::load_prior(dir, loaded.model.as_ref())).transpose()?;
    let (report, samples) = match &prior {
        None => {
            let report = ctx.score_model(loaded.model.as_ref(), a.seed)?;
            // The same samples the report measured (same seed), against the whole training split.
            (report, session::sample(loaded.model.as_ref(), ctx.n, 1.0, a.seed)?)
        }
        Some(prior) => {
            let t0 = std::time::Instant::now();
            let samples = prior.sample_images(loaded.model.as_ref(), ctx.n, a.seed)?;
            let pixels: Vec<f32> = samples.pixels.iter().map(|&p| p as f32 / 255.0).collect();
            let report = QualityReport {
                n: ctx.n,
                features: ctx.net.describe(),
                samples: ctx.score_pixels(&pixels)?,
                floor: ctx.floor.clone(),
                ceiling: ctx.ceiling.clone(),
                seconds: t0.elapsed().as_secs_f64(),
            };
            (report, samples)
        }
    };
    let pixels: Vec<f32> = samples.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let memo = memorisation(&ctx, &data, &split, &pixels, ctx.n)?;
    // A conditional model: how often the classifier sees the class it was asked for.
    let conditioning = match loaded.model.classes() {
        0 => None,
        k => Some(ctx.conditioning(loaded.model.as_ref(), (a.n / k).max(10), a.seed)?),
    };
    if let Some(path) = &a.nearest {
        nearest_png(&memo, &samples, &data, path)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("step".into(), loaded.meta.step.into());
            o.insert("prior".into(), prior.is_some().into());
            o.insert("warnings".into(), quality::warnings(&report).into());
            if let Some(c) = &conditioning {
                o.insert("conditioning".into(), serde_json::to_value(c)?);
            }
            o.insert(
                "memorisation".into(),
                serde_json::json!({
                    "share_closer": memo.share_closer,
                    "test_p5": memo.test_p5,
                    "test_median": memo.test_median,
                    "closest": memo.pairs.iter().take(32).collect::<Vec<_>>(),
                }),
            );
        }
        println!("{v}");
    } else {
        println!(
            "{} ({}, step {}{}): {} samples against {} training images of {}",
            dir.display(),
            cfg.preset,
            loaded.meta.step,
            if prior.is_some() { ", latent prior" } else { "" },
            report.n,
            report.n,
            data.name
        );
        print!("{}", table(&report));
        println!(
            "memorisation: {:.1}% of the samples are closer to a training image than 95% of held-out images are (about 5% without copying); nearest-training distance: samples median {:.2}, held-out median {:.2}",
            100.0 * memo.share_closer,
            memo.pairs.get(memo.pairs.len() / 2).map_or(0.0, |p| p.distance),
            memo.test_median
        );
        if let Some(c) = &conditioning {
            print!("{}", conditioning_table(c, &data));
        }
        if let Some(path) = &a.nearest {
            println!("wrote the closest pairs to {}", path.display());
        }
        for w in quality::warnings(&report) {
            println!("warning: {w}");
        }
    }
    Ok(())
}

/// Per class: the share of its samples the classifier assigns to it, and the class it
/// mistakes them for most.
fn conditioning_table(c: &quality::Conditioning, data: &Dataset) -> String {
    let mut out = format!(
        "conditioning: share of {} samples per class that the classifier assigns to the requested class (mean {:.1}%, worst {:.1}%)\n",
        c.per_class_n,
        100.0 * c.mean(),
        100.0 * c.min()
    );
    out.push_str("  class  agreement  most often mistaken for\n");
    for (k, (share, row)) in c.agreement.iter().zip(&c.confusion).enumerate() {
        let other = row.iter().enumerate().filter(|&(j, _)| j != k).max_by_key(|&(_, n)| *n);
        let other = match other {
            Some((j, &n)) if n > 0 => format!("{} ({n})", data.class_name(j as u32)),
            _ => "-".into(),
        };
        out.push_str(&format!("  {:>5}  {:>8.1}%  {other}\n", data.class_name(k as u32), 100.0 * share));
    }
    out
}

/// The 32 closest (sample, nearest training image) pairs as a PNG, four pairs a row.
fn nearest_png(
    memo: &Memorisation,
    samples: &ImageBatch,
    data: &Dataset,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut parts = Vec::new();
    for p in memo.pairs.iter().take(32) {
        parts.push(samples.slice(p.sample, p.sample + 1));
        parts.push(ImageBatch::from_f32(data.image(p.train), data.shape));
    }
    let refs: Vec<&ImageBatch> = parts.iter().collect();
    let Some(grid) = ImageBatch::concat(&refs) else { bail!("no samples to show") };
    grid.save_grid_png(path, 8)?;
    Ok(())
}

/// `--images`: a set of images against real data (its default split, seed 0).
fn quality_of_images(a: &QualityArgs, images: &str, data: &str) -> anyhow::Result<()> {
    let data = load_data(data, &LoadArgs::default())?;
    let samples = load_data(images, &LoadArgs::default())?.converted_to(data.shape);
    let split = data.split(0.2, 0);
    let net = quality::feature_net(&data, &split, &mut |m| eprintln!("{m}"))?;
    let ctx = QualityContext::new(&data, &split, net, a.n, a.seed)?;
    let n = ctx.n.min(samples.len());
    let t0 = std::time::Instant::now();
    let scored = ctx.score_pixels(&samples.images[..n * data.shape.len()])?;
    let report = QualityReport {
        n,
        features: ctx.net.describe(),
        samples: scored,
        floor: ctx.floor.clone(),
        ceiling: ctx.ceiling.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("warnings".into(), quality::warnings(&report).into());
        }
        println!("{v}");
    } else {
        println!("{images}: {n} images against {} training images of {}", ctx.n, data.name);
        print!("{}", table(&report));
        for w in quality::warnings(&report) {
            println!("warning: {w}");
        }
    }
    Ok(())
}

/// The report as a text table: each metric for the samples, the floor and the ceiling.
pub fn table(r: &QualityReport) -> String {
    let mut out = format!("{}\n", r.features);
    out += &format!("{:<22} {:>14} {:>18} {:>16}\n", "", "samples", "floor (real test)", "ceiling (noise)");
    let row = |name: &str, f: &dyn Fn(&Scored) -> String| {
        format!("{:<22} {:>14} {:>18} {:>16}\n", name, f(&r.samples), f(&r.floor), f(&r.ceiling))
    };
    out += &row("Fréchet distance ↓", &|s| format!("{:.2}", s.metrics.fd));
    out += &row("KID ↓", &|s| format!("{:.3e}±{:.1e}", s.metrics.kid, s.metrics.kid_std));
    out += &row("precision (k=3) ↑", &|s| format!("{:.3}", s.metrics.precision));
    out += &row("recall (k=3) ↑", &|s| format!("{:.3}", s.metrics.recall));
    out += &row("density (k=5) ↑", &|s| format!("{:.3}", s.metrics.density));
    out += &row("coverage (k=5) ↑", &|s| format!("{:.3}", s.metrics.coverage));
    if r.samples.classes.is_some() {
        let confident =
            |s: &Scored| s.classes.as_ref().map_or("-".into(), |c| format!("{:.1}%", 100.0 * c.confident));
        let covered = |s: &Scored| {
            s.classes.as_ref().map_or("-".into(), |c| format!("{}/{}", c.covered, c.histogram.len()))
        };
        out += &row("confident (p ≥ 0.9) ↑", &confident);
        out += &row("classes covered ↑", &covered);
        if let Some(c) = &r.samples.classes {
            let h: Vec<String> = c.histogram.iter().enumerate().map(|(i, k)| format!("{i}: {k}")).collect();
            out += &format!("samples per class: {}\n", h.join(", "));
        }
    }
    out += &format!("({:.1} s for the samples' part)\n", r.seconds);
    out
}

pub(super) fn classifier(a: ClassifierArgs) -> anyhow::Result<()> {
    let data = load_data(&a.data, &a.load)?;
    let input = features::feature_input(data.shape);
    let data = data.converted_to(input);
    let split = data.split(0.2, a.seed);
    let t0 = std::time::Instant::now();
    let net = features::FeatureNet::train_classifier(&data, &split.train, &split.test, a.epochs, a.seed)?;
    net.save(&a.out)?;
    eprintln!("{} in {:.1} s; wrote {}", net.describe(), t0.elapsed().as_secs_f64(), a.out.display());
    Ok(())
}
