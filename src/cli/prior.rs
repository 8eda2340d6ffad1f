//! `genlab prior`: trains a latent prior over a VAE or AE checkpoint's encoded training set and
//! saves it beside the checkpoint; `--prior` on `sample` and `quality` draws from it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Args;

use super::*;
use crate::engine::models::diffusion::schedule::Objective;
use crate::engine::models::GenerativeModel;
use crate::engine::prior::{LatentPrior, PriorConfig, PRIOR_META};

#[derive(Args, Debug)]
pub struct PriorArgs {
    /// A VAE or autoencoder checkpoint folder; the prior is written into it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Passes over the encoded training set.
    #[arg(long, default_value_t = PriorConfig::default().epochs)]
    pub epochs: usize,
    /// `flow` (flow matching, Euler sampler) or `ddpm` (ε-prediction, DDIM η = 0).
    #[arg(long, default_value = "flow", value_parser = parse_objective)]
    pub objective: Objective,
    /// Sampler steps used when drawing from the prior.
    #[arg(long, default_value_t = PriorConfig::default().sample_steps)]
    pub steps: usize,
    /// Width of the MLP's hidden layers.
    #[arg(long, default_value_t = PriorConfig::default().width)]
    pub width: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (prior.json's contents and the parameter count).
    #[arg(long)]
    pub json: bool,
}

fn parse_objective(s: &str) -> Result<Objective, String> {
    match s {
        "flow" => Ok(Objective::Flow),
        "ddpm" => Ok(Objective::Ddpm),
        _ => Err(format!("`{s}`: the objective is `flow` or `ddpm`")),
    }
}

pub(super) fn prior(a: PriorArgs) -> anyhow::Result<()> {
    let loaded = checkpoint::load(&a.checkpoint)?;
    let cfg = &loaded.meta.config;
    let data = load_checkpoint_data(&loaded.meta)?;
    let split = data.split(cfg.train.test_fraction, cfg.train.seed);
    let images = data.gather(&split.train);
    let config = PriorConfig {
        objective: a.objective,
        epochs: a.epochs,
        sample_steps: a.steps,
        width: a.width,
        seed: a.seed,
        ..PriorConfig::default()
    };
    let t0 = Instant::now();
    let prior = LatentPrior::fit_model(&config, loaded.model.as_ref(), &images, &mut |p| {
        if p.step.is_multiple_of((p.steps / p.epochs.max(1) as u64).max(1)) {
            eprintln!("epoch {}/{}  step {}/{}  loss {:.4}", p.epoch + 1, p.epochs, p.step, p.steps, p.loss);
        }
        true
    })?
    .ok_or_else(|| anyhow!("the prior's training was cancelled"))?;
    prior.save(&a.checkpoint)?;
    let m = prior.meta();
    eprintln!(
        "trained a latent prior ({} parameters) on {} latents of {} dimensions in {:.1} s ({:.1} s with the encoding); wrote {}",
        prior.param_count(),
        m.train_latents,
        m.latent_dim,
        m.seconds,
        t0.elapsed().as_secs_f64(),
        a.checkpoint.join(PRIOR_META).display()
    );
    if a.json {
        let mut v = serde_json::to_value(m)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("param_count".into(), prior.param_count().into());
        }
        println!("{v}");
    }
    Ok(())
}

/// The prior saved in checkpoint `dir`, checked against `model`; an error that says how to
/// make one when there is none.
pub(super) fn load_prior(dir: &Path, model: &dyn GenerativeModel) -> anyhow::Result<LatentPrior> {
    let prior = LatentPrior::load(dir)?.ok_or_else(|| {
        anyhow!(
            "{} has no latent prior ({PRIOR_META}); train one with `genlab prior --checkpoint {}`",
            dir.display(),
            dir.display()
        )
    })?;
    prior.check_model(model).with_context(|| format!("the latent prior in {}", dir.display()))?;
    Ok(prior)
}
