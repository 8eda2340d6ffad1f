//! `genlab bench` and its `ui` / `memory` subcommands.

use clap::{Args, Subcommand};

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
    /// Presets to train, comma-separated (default: mnist_vae,mnist_mlp_gan,conv_vae,mnist_dcgan;
    /// dcgan64 and conv_vae64 train on the built-in digits converted to 3×64×64).
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
    #[command(flatten)]
    pub compute: super::ComputeArgs,
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
pub(super) fn bench(a: BenchArgs) -> anyhow::Result<()> {
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
    opts.device = a.compute.device;
    opts.kernels = a.compute.kernels.unwrap_or_default();
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
    Err(anyhow::anyhow!("`bench ui` needs the app: this genlab was built without the feature `app`"))
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
