//! The β sweep: trains one model per (β, seed) pair, one after another, through
//! [`TrainingSession`] (as `genlab train` does) and scores each with [`disentangle`] — the
//! trade-off the β-VAE paper is about (disentanglement against reconstruction and the number
//! of dimensions in use), measured. The CLI (`genlab sweep`) and the app's worker both call
//! [`run_sweep`]; [`summarise`], [`write_csv`] and [`plot::svg`] turn its rows into the table,
//! the CSV and the figure.

pub mod plot;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::data::{Dataset, SplitKind};
use super::disentangle::{self, ScoreOptions};
use super::error::{EngineError, Result};
use super::models::{Family, LossKey};
use super::session::TrainingSession;

/// What to train: the base configuration (a preset with its overrides), the β values and the
/// seeds; every β is trained with every seed.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    pub base: RunConfig,
    pub betas: Vec<f64>,
    pub seeds: Vec<u64>,
    /// Stop each run after this many steps (`None`: the configuration's epochs).
    pub max_steps: Option<u64>,
    pub score: ScoreOptions,
}

impl SweepPlan {
    /// The (β, seed) pairs in the order they are trained: β-major, so that a cancelled sweep
    /// has every seed of the first β values rather than one seed of each.
    pub fn runs(&self) -> Vec<(f64, u64)> {
        self.betas.iter().flat_map(|&b| self.seeds.iter().map(move |&s| (b, s))).collect()
    }

    /// The configuration of one run: the base with this β and seed. A VAE with β ≠ 1 becomes a
    /// β-VAE (as `genlab train --beta` does); a family without β is refused.
    pub fn config_for(&self, beta: f64, seed: u64) -> Result<RunConfig> {
        let mut cfg = self.base.clone();
        if beta != 1.0 && cfg.model.family() == Family::Vae {
            cfg.model = cfg.model.with_family(Family::BetaVae);
        }
        let family = cfg.model.family();
        match cfg.model.beta_mut() {
            Some(b) => *b = beta,
            // A plain VAE is the β = 1 case and has no β to set.
            None if family == Family::Vae => {}
            None => {
                return Err(EngineError::Config(format!(
                    "a β sweep needs a VAE or β-VAE; the base model ({}) is a {family}",
                    self.base.preset
                )))
            }
        }
        cfg.train.seed = seed;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the plan before anything is trained.
    pub fn validate(&self) -> Result<()> {
        if self.betas.is_empty() || self.seeds.is_empty() {
            return Err(EngineError::Config("a sweep needs at least one β and one seed".into()));
        }
        if let Some(b) = self.betas.iter().find(|b| !b.is_finite() || **b < 0.0) {
            return Err(EngineError::Config(format!("β = {b}: every β must be a finite number ≥ 0")));
        }
        for &(b, s) in &self.runs() {
            self.config_for(b, s)?;
        }
        Ok(())
    }
}

/// One trained model's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub beta: f64,
    pub seed: u64,
    pub steps: u64,
    pub mig: f64,
    pub factor_vae: f64,
    pub dci_disentanglement: f64,
    pub dci_completeness: f64,
    /// Reconstruction term on the test split, nats per image.
    pub recon: f64,
    /// KL(q(z|x) ‖ N(0, I)) on the test split, nats per image.
    pub kl: f64,
    pub active_units: usize,
    pub latent_dim: usize,
    /// Training and scoring, seconds of wall time.
    pub seconds: f64,
    /// The loss diverged and training stopped early (the figures are those of the last good
    /// weights).
    pub diverged: bool,
}

/// Where a sweep is.
#[derive(Clone, Debug, PartialEq)]
pub enum SweepProgress {
    /// Run `index` (0-based) of `total` starts.
    RunStarted { index: usize, total: usize, beta: f64, seed: u64 },
    /// A training step of the current run.
    Step { index: usize, step: u64, total_steps: u64 },
    /// The current run is trained and being scored.
    Scoring { index: usize },
    /// The current run's figures.
    RunFinished { index: usize, row: SweepRow },
}

/// The rows of the runs that finished; `cancelled` when the flag stopped the sweep (the run in
/// progress then is dropped).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepResult {
    pub rows: Vec<SweepRow>,
    pub cancelled: bool,
}

/// Trains and scores every run of `plan` on `data` (which must have factors), sequentially on
/// the calling thread. `cancel` is read before every step; `progress` hears about every step.
pub fn run_sweep(
    plan: &SweepPlan,
    data: Arc<Dataset>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(SweepProgress),
) -> Result<SweepResult> {
    plan.validate()?;
    if data.factors.is_none() {
        return Err(EngineError::Other(format!(
            "{} has no ground-truth factors: a β sweep scores disentanglement, which needs a dataset with known factors (builtin:shapes, builtin:shapes2)",
            data.name
        )));
    }
    let runs = plan.runs();
    let mut rows = Vec::with_capacity(runs.len());
    for (index, &(beta, seed)) in runs.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(SweepResult { rows, cancelled: true });
        }
        progress(SweepProgress::RunStarted { index, total: runs.len(), beta, seed });
        let t0 = Instant::now();
        let mut s = TrainingSession::new(plan.config_for(beta, seed)?, data.clone())?;
        let total_steps = plan.max_steps.map_or(s.total_steps(), |m| m.min(s.total_steps()));
        let mut diverged = false;
        while s.step_count() < total_steps {
            if cancel.load(Ordering::Relaxed) {
                return Ok(SweepResult { rows, cancelled: true });
            }
            let r = s.step()?;
            progress(SweepProgress::Step { index, step: r.step, total_steps });
            if r.diverged {
                diverged = true;
                break;
            }
        }
        progress(SweepProgress::Scoring { index });
        let row = score_run(&s, plan, beta, seed, diverged, t0)?;
        progress(SweepProgress::RunFinished { index, row: row.clone() });
        rows.push(row);
    }
    Ok(SweepResult { rows, cancelled: false })
}

fn score_run(
    s: &TrainingSession,
    plan: &SweepPlan,
    beta: f64,
    seed: u64,
    diverged: bool,
    t0: Instant,
) -> Result<SweepRow> {
    let report = disentangle::score_model(s.model(), s.data(), &plan.score)?;
    // The test split is empty on a dataset too small to hold one out; the training split
    // then stands in.
    let split = if s.split().test.is_empty() { SplitKind::Train } else { SplitKind::Test };
    let losses = s.evaluate(split, 0)?.unwrap_or_default();
    Ok(SweepRow {
        beta,
        seed,
        steps: s.step_count(),
        mig: report.mig,
        factor_vae: report.factor_vae.eval_accuracy,
        dci_disentanglement: report.dci.disentanglement,
        dci_completeness: report.dci.completeness,
        recon: losses.get(LossKey::Recon).unwrap_or(f64::NAN),
        kl: losses.get(LossKey::Kl).unwrap_or(f64::NAN),
        active_units: report.active_units,
        latent_dim: report.latent_dim,
        seconds: t0.elapsed().as_secs_f64(),
        diverged,
    })
}

/// Mean and sample standard deviation (0 for one value).
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self { mean: f64::NAN, sd: f64::NAN };
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Self { mean, sd: disentangle::variance(values).sqrt() }
    }
}

/// The runs of one β, summarised over their seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BetaSummary {
    pub beta: f64,
    pub runs: usize,
    pub mig: Spread,
    pub factor_vae: Spread,
    pub dci_disentanglement: Spread,
    pub recon: Spread,
    pub kl: Spread,
    pub active_units: Spread,
}

/// One summary per β, in the order the β values first appear.
pub fn summarise(rows: &[SweepRow]) -> Vec<BetaSummary> {
    let mut betas: Vec<f64> = Vec::new();
    for r in rows {
        if !betas.contains(&r.beta) {
            betas.push(r.beta);
        }
    }
    betas
        .into_iter()
        .map(|beta| {
            let of: Vec<&SweepRow> = rows.iter().filter(|r| r.beta == beta).collect();
            let spread = |f: fn(&SweepRow) -> f64| Spread::of(&of.iter().map(|r| f(r)).collect::<Vec<_>>());
            BetaSummary {
                beta,
                runs: of.len(),
                mig: spread(|r| r.mig),
                factor_vae: spread(|r| r.factor_vae),
                dci_disentanglement: spread(|r| r.dci_disentanglement),
                recon: spread(|r| r.recon),
                kl: spread(|r| r.kl),
                active_units: spread(|r| r.active_units as f64),
            }
        })
        .collect()
}

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: &str =
    "beta,seed,steps,mig,factor_vae,dci_disentanglement,dci_completeness,recon,kl,active_units,latent_dim,seconds,diverged";

/// One line per run, with [`CSV_HEADER`].
pub fn to_csv(rows: &[SweepRow]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        out += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{:.3},{}\n",
            r.beta,
            r.seed,
            r.steps,
            r.mig,
            r.factor_vae,
            r.dci_disentanglement,
            r.dci_completeness,
            r.recon,
            r.kl,
            r.active_units,
            r.latent_dim,
            r.seconds,
            r.diverged
        );
    }
    out
}

/// Writes [`to_csv`] to `path`.
pub fn write_csv(path: &Path, rows: &[SweepRow]) -> Result<()> {
    std::fs::write(path, to_csv(rows)).map_err(|e| EngineError::io(path, e))
}

/// The summary as a fixed-width text table (mean ± sd per β).
pub fn summary_table(summary: &[BetaSummary]) -> String {
    let mut out = format!(
        "{:>6} {:>4}  {:>15}  {:>15}  {:>15}  {:>15}  {:>13}  {:>13}\n",
        "β", "runs", "MIG", "FactorVAE", "DCI dis.", "recon (nats)", "KL (nats)", "active units"
    );
    let pm = |s: Spread, p: usize| format!("{:.*} ± {:.*}", p, s.mean, p, s.sd);
    for b in summary {
        out += &format!(
            "{:>6} {:>4}  {:>15}  {:>15}  {:>15}  {:>15}  {:>13}  {:>13}\n",
            b.beta,
            b.runs,
            pm(b.mig, 3),
            pm(b.factor_vae, 3),
            pm(b.dci_disentanglement, 3),
            pm(b.recon, 1),
            pm(b.kl, 1),
            pm(b.active_units, 1)
        );
    }
    out
}

#[cfg(test)]
mod tests;
