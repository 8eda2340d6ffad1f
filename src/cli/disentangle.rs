//! `genlab disentangle`: a checkpoint's disentanglement scores on its dataset's known factors
//! (MIG, FactorVAE, DCI), the latent × factor mutual-information matrix and the factor each
//! dimension captures.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::*;
use crate::engine::disentangle::{self, DisentanglementReport, ScoreOptions};

#[derive(Args, Debug)]
pub struct DisentangleArgs {
    /// The model whose encoder (posterior means) is scored.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Points for MIG, DCI and the active units (disentanglement_lib: 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub(super) fn disentangle(a: DisentangleArgs) -> anyhow::Result<()> {
    if a.n < 100 || a.n > 1_000_000 {
        bail!("--n must be between 100 and 1000000");
    }
    let loaded = a.compute.load(&a.checkpoint)?;
    let data = load_checkpoint_data(&loaded.meta)?;
    if data.factors.is_none() {
        bail!(
            "{} ({}) has no ground-truth factors: disentanglement scores need a dataset with known factors, e.g. `genlab train --data builtin:shapes`",
            data.name,
            loaded.meta.data_source
        );
    }
    let opts = ScoreOptions { points: a.n, seed: a.seed, ..ScoreOptions::default() };
    let t0 = std::time::Instant::now();
    let report = disentangle::score_model(loaded.model.as_ref(), &data, &opts)?;
    let seconds = t0.elapsed().as_secs_f64();
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("step".into(), loaded.meta.step.into());
            o.insert("preset".into(), loaded.meta.config.preset.clone().into());
            o.insert("seconds".into(), seconds.into());
        }
        println!("{v}");
    } else {
        println!(
            "{} ({}, step {}) on {}: {} points, {:.1} s",
            a.checkpoint.display(),
            loaded.meta.config.preset,
            loaded.meta.step,
            data.name,
            report.points,
            seconds
        );
        print!("{}", scores_table(&report));
    }
    Ok(())
}

/// The scores, then one row per latent dimension: its variance, its mutual information with
/// each factor (as a share of the factor's entropy) and the factor it captures.
pub fn scores_table(r: &DisentanglementReport) -> String {
    let mut out = format!(
        "MIG {:.3}   FactorVAE {:.3} (train {:.3}, {} dims kept)   DCI disentanglement {:.3}, completeness {:.3}   active units {}/{}\n",
        r.mig,
        r.factor_vae.eval_accuracy,
        r.factor_vae.train_accuracy,
        r.factor_vae.active_dims,
        r.dci.disentanglement,
        r.dci.completeness,
        r.active_units,
        r.latent_dim
    );
    let gaps: Vec<String> =
        r.factor_names.iter().zip(&r.mig_per_factor).map(|(n, g)| format!("{n} {g:.3}")).collect();
    out += &format!("MIG per factor: {}\n", gaps.join(", "));
    out += "mutual information / factor entropy:\n";
    out += &format!("{:<5} {:>9}", "dim", "var(μ)");
    for name in &r.factor_names {
        out += &format!(" {name:>9}");
    }
    out += "  captures\n";
    for (i, row) in r.mi.iter().enumerate() {
        out += &format!("{:<5} {:>9.3}", format!("z{i}"), r.variances[i]);
        for (m, h) in row.iter().zip(&r.factor_entropy) {
            out += &format!(" {:>9.3}", if *h > 0.0 { m / h } else { 0.0 });
        }
        out += &format!("  {}\n", r.captured_name(i));
    }
    out
}
