//! `genlab trajectory` and the sampler settings `genlab sample` takes for a diffusion
//! checkpoint (`--sampler`, `--steps`, `--eta`, `--guidance`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::ComputeArgs;
use crate::engine::checkpoint::Loaded;
use crate::engine::export::save_gif;
use crate::engine::kernels::Exec;
use crate::engine::models::diffusion::Sampler;
use crate::engine::models::layers::normal_tensor;
use crate::engine::models::{build_model, GenerativeModel, ModelConfig};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum SamplerArg {
    /// DDPM's ancestral sampler (a DDPM model).
    Ddpm,
    /// DDIM with --eta (a DDPM model).
    Ddim,
    /// Euler steps of the ODE (a flow model).
    Euler,
    /// Heun's steps of the ODE (a flow model).
    Heun,
}

impl From<SamplerArg> for Sampler {
    fn from(s: SamplerArg) -> Self {
        match s {
            SamplerArg::Ddpm => Sampler::Ddpm,
            SamplerArg::Ddim => Sampler::Ddim,
            SamplerArg::Euler => Sampler::Euler,
            SamplerArg::Heun => Sampler::Heun,
        }
    }
}

/// How a diffusion checkpoint samples, instead of the settings it was saved with.
#[derive(Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// Sampler (diffusion checkpoints): ddpm or ddim for DDPM, euler or heun for flow matching.
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// Sampling steps, 1–1000 (diffusion checkpoints).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η in [0, 1]: 0 deterministic, 1 as noisy as DDPM (diffusion checkpoints).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Classifier-free guidance scale w, 0–20 (conditional diffusion checkpoints): 0 ignores
    /// the class, 1 follows it as trained, above 1 pushes towards what sets it apart.
    #[arg(long)]
    pub guidance: Option<f64>,
}

impl SamplingArgs {
    fn any(&self) -> bool {
        self.sampler.is_some() || self.steps.is_some() || self.eta.is_some() || self.guidance.is_some()
    }

    /// The loaded model, rebuilt with these sampler settings when any is given.
    pub fn apply(&self, loaded: Loaded, compute: &ComputeArgs) -> anyhow::Result<Box<dyn GenerativeModel>> {
        if !self.any() {
            return Ok(loaded.model);
        }
        let ModelConfig::Diffusion(mut cfg) = loaded.meta.config.model.clone() else {
            bail!(
                "--sampler, --steps, --eta and --guidance are for diffusion checkpoints; this one is a {}",
                loaded.meta.config.model.family()
            );
        };
        if let Some(s) = self.sampler {
            cfg.sampler = s.into();
        }
        if let Some(n) = self.steps {
            cfg.sample_steps = n;
        }
        if let Some(e) = self.eta {
            cfg.eta = e;
        }
        if let Some(w) = self.guidance {
            if cfg.net.classes == 0 {
                bail!("--guidance is for a conditional diffusion checkpoint (mnist_cddpm, mnist_cflow); this one has no classes");
            }
            cfg.guidance = w;
        }
        let model_cfg = ModelConfig::Diffusion(cfg);
        model_cfg.validate()?;
        let exec = Exec::new(compute.device()?, compute.kernels.unwrap_or(loaded.meta.config.train.kernels));
        let mut model =
            build_model(&model_cfg, &loaded.meta.config.optim, loaded.meta.config.train.seed, &exec)?;
        model.load_state(&loaded.model.state()?)?;
        Ok(model)
    }
}

#[derive(Args, Debug)]
pub struct TrajectoryArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The strip (PNG): per noise vector a row of x_t and a row of the predicted x̂₀, one
    /// column per recorded step.
    #[arg(long)]
    pub out: PathBuf,
    /// Also an animated GIF, one frame per recorded step.
    #[arg(long)]
    pub gif: Option<PathBuf>,
    /// Noise vectors (rows of the strip pairs), 1–16; a conditional model's rows are classes
    /// 0, 1, 2, … in turn.
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Recorded steps (columns), 1–100 (at most the sampler's steps).
    #[arg(long, default_value_t = 10)]
    pub columns: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Milliseconds per GIF frame.
    #[arg(long, default_value_t = 200)]
    pub delay_ms: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub(super) fn trajectory(a: TrajectoryArgs) -> anyhow::Result<()> {
    if !(1..=16).contains(&a.n) || !(1..=100).contains(&a.columns) {
        bail!("--n must be 1–16 and --columns 1–100");
    }
    let loaded = a.compute.load(&a.checkpoint)?;
    let model = a.sampling.apply(loaded, &a.compute)?;
    let d = model.config().input().len();
    let z = normal_tensor(a.n, d, 1.0, &mut StdRng::seed_from_u64(a.seed))?;
    let Some(traj) = model.trajectory(&z, a.columns)? else {
        bail!(
            "{} is a {}: only a diffusion model has a denoising trajectory",
            a.checkpoint.display(),
            model.config().family()
        );
    };
    let strip = traj.strip().context("the sampler recorded no steps")?;
    strip.save_grid_png(&a.out, traj.times.len())?;
    let times: Vec<String> = traj.times.iter().map(|t| format!("{t:.3}")).collect();
    eprintln!(
        "wrote {} steps (t = {}) × {} noise vectors (x_t and x̂₀) to {}",
        traj.times.len(),
        times.join(", "),
        a.n,
        a.out.display()
    );
    if let Some(gif) = &a.gif {
        save_gif(gif, &traj.frames(), a.n, a.delay_ms)?;
        eprintln!("wrote {} frames to {}", traj.times.len(), gif.display());
    }
    Ok(())
}
