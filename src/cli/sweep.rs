//! `genlab sweep`: trains a preset once per β value and seed, scores each model's
//! disentanglement, prints mean ± sd per β and writes sweep.csv and sweep.svg.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};
use clap::Args;

use super::*;
use crate::engine::disentangle::ScoreOptions;
use crate::engine::sweep::{self, SweepPlan, SweepProgress};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The base model, e.g. shapes_beta_vae (a VAE or β-VAE preset).
    #[arg(long)]
    pub preset: String,
    /// A dataset with known factors: `builtin:shapes` or `builtin:shapes2`.
    #[arg(long, default_value = "builtin:shapes")]
    pub data: String,
    /// β values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub beta: Vec<f64>,
    /// Seeds per β: 0, 1, …, N−1.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop each run after this many steps.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Threads for the tensor maths (default: 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Points for MIG, DCI and the active units (disentanglement_lib: 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Folder for sweep.csv and sweep.svg.
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub(super) fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds must be between 1 and 1000");
    }
    if a.n < 100 || a.n > 1_000_000 {
        bail!("--n must be between 100 and 1000000");
    }
    let data = load_data(&a.data, &LoadArgs::default())?;
    let mut base = preset(&a.preset, data.shape)
        .ok_or_else(|| anyhow!("unknown preset `{}`; presets: {}", a.preset, presets().join(", ")))?;
    if let Some(e) = a.epochs {
        base.train.epochs = e;
    }
    if let Some(t) = a.threads {
        base.train.threads = t;
    }
    if let Some(k) = a.compute.kernels {
        base.train.kernels = k;
    }
    base.train.device = a.compute.device;
    let plan = SweepPlan {
        base,
        betas: a.beta.clone(),
        seeds: (0..a.seeds).collect(),
        max_steps: a.max_steps,
        score: ScoreOptions { points: a.n, ..ScoreOptions::default() },
    };
    plan.validate()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output folder {}", a.out.display()))?;
    let runs = plan.runs().len();
    eprintln!(
        "sweeping {} on {}: β ∈ {:?} × {} seeds = {runs} runs",
        plan.base.preset, data.name, plan.betas, a.seeds
    );
    let threads = plan.base.train.threads;
    let result = kernels::pool::install(threads, || run_with_bar(&plan, data, a.quiet))??;
    let csv = a.out.join("sweep.csv");
    sweep::write_csv(&csv, &result.rows)?;
    let svg = a.out.join("sweep.svg");
    let title = format!("{} on {}: {} seeds per β", plan.base.preset, a.data, a.seeds);
    std::fs::write(&svg, sweep::plot::svg(&result.rows, &title))
        .with_context(|| format!("cannot write {}", svg.display()))?;
    print!("{}", sweep::summary_table(&sweep::summarise(&result.rows)));
    let secs: f64 = result.rows.iter().map(|r| r.seconds).sum();
    eprintln!("{runs} runs in {secs:.0} s; wrote {} and {}", csv.display(), svg.display());
    Ok(())
}

fn run_with_bar(plan: &SweepPlan, data: Arc<Dataset>, quiet: bool) -> anyhow::Result<sweep::SweepResult> {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let never = AtomicBool::new(false);
    let mut current = String::new();
    let result = sweep::run_sweep(plan, data, &never, &mut |p| match p {
        SweepProgress::RunStarted { index, total, beta, seed } => {
            current = format!("run {}/{total}: β = {beta}, seed {seed}", index + 1);
            bar.set_position(0);
            bar.set_message(current.clone());
        }
        SweepProgress::Step { step, total_steps, .. } => {
            bar.set_length(total_steps);
            bar.set_position(step);
        }
        SweepProgress::Scoring { .. } => bar.set_message(format!("{current}: scoring")),
        SweepProgress::RunFinished { row, .. } => {
            let line = format!(
                "β = {:<5} seed {}: MIG {:.3}  FactorVAE {:.3}  DCI {:.3}  recon {:.1}  KL {:.1}  active {}/{}  {:.0} s{}",
                row.beta,
                row.seed,
                row.mig,
                row.factor_vae,
                row.dci_disentanglement,
                row.recon,
                row.kl,
                row.active_units,
                row.latent_dim,
                row.seconds,
                if row.diverged { "  (diverged: stopped early)" } else { "" }
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    });
    bar.finish_and_clear();
    Ok(result?)
}
