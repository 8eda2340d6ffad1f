//! Disentanglement scores of a latent code against a dataset's known factors of variation
//! ([`crate::engine::data::Factors`], e.g. `builtin:shapes`): MIG ([`mig`]), the FactorVAE
//! score ([`factor_vae`]), DCI disentanglement and completeness ([`dci`]), the latent × factor
//! mutual-information matrix, the factor each dimension captures most, and the active units.
//!
//! Every metric works on plain arrays — codes `[n, d]` row-major and factor value indices
//! `[n, k]` — so that it can be checked without a model; [`score_model`] encodes a dataset's
//! images (the encoder's means μ, as disentanglement_lib scores them) and calls [`score_codes`].

pub mod dci;
pub mod factor_vae;
pub mod mig;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::data::{Dataset, Factors, SplitKind};
use super::error::{EngineError, Result};
use super::models::GenerativeModel;
use super::session::encode_indices;

/// A dimension whose posterior mean varies less than this over the data is inactive (the
/// β-VAE literature's active-unit count, Burda et al. 2016's criterion).
pub const ACTIVE_VARIANCE: f64 = 0.01;

/// How many points and votes each score uses; the defaults are disentanglement_lib's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreOptions {
    /// Points (drawn with replacement) for MIG, DCI and the active units.
    pub points: usize,
    /// Histogram bins per code dimension for the mutual information.
    pub bins: usize,
    pub factor_vae: factor_vae::FactorVaeOptions,
    /// L1 weight of the DCI lasso (on standardised codes and factors); `None` =
    /// [`dci::default_alpha`] of the points.
    pub dci_alpha: Option<f64>,
    pub seed: u64,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            points: 10_000,
            bins: 20,
            factor_vae: factor_vae::FactorVaeOptions::default(),
            dci_alpha: None,
            seed: 0,
        }
    }
}

/// Every score of one code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisentanglementReport {
    /// Points the MIG, DCI and active units were measured on.
    pub points: usize,
    pub latent_dim: usize,
    pub factor_names: Vec<String>,
    /// Mutual information gap, in [0, 1].
    pub mig: f64,
    /// The gap of each factor (normalised by its entropy).
    pub mig_per_factor: Vec<f64>,
    pub factor_vae: factor_vae::FactorVaeScore,
    pub dci: dci::Dci,
    /// `[d][k]` mutual information (nats) between each discretised code dimension and factor.
    pub mi: Vec<Vec<f64>>,
    /// Entropy (nats) of each factor over the points.
    pub factor_entropy: Vec<f64>,
    /// Per dimension, the factor it shares the largest share of information with (MI over the
    /// factor's entropy); `None` for an inactive dimension.
    pub captures: Vec<Option<usize>>,
    /// Per dimension, the variance of its posterior mean over the points.
    pub variances: Vec<f64>,
    /// Dimensions with variance above [`ACTIVE_VARIANCE`].
    pub active_units: usize,
}

impl DisentanglementReport {
    /// The name of the factor dimension `i` captures, or "-" when inactive.
    pub fn captured_name(&self, i: usize) -> &str {
        match self.captures.get(i).copied().flatten() {
            Some(j) => self.factor_names.get(j).map_or("?", String::as_str),
            None => "-",
        }
    }
}

/// Scores codes `[n, d]` (row-major) against `factors` (`n` rows).
pub fn score_codes(
    codes: &[f32],
    d: usize,
    factors: &Factors,
    opts: &ScoreOptions,
) -> Result<DisentanglementReport> {
    let n = factors.len();
    if d == 0 || codes.len() != n * d || n < 2 {
        return Err(EngineError::Other(format!(
            "{} code values do not make {n} codes of {d} dimensions (at least 2 needed)",
            codes.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let rows: Vec<usize> = (0..opts.points.max(2)).map(|_| rng.random_range(0..n)).collect();
    let sub_codes = gather_rows(codes, d, &rows);
    let sub_factors = factors.gather(&rows);
    let m = mig::mig(&sub_codes, d, &sub_factors, opts.bins);
    let variances: Vec<f64> = (0..d).map(|j| variance(&column(&sub_codes, d, j))).collect();
    let active: Vec<bool> = variances.iter().map(|v| *v > ACTIVE_VARIANCE).collect();
    let captures = (0..d)
        .map(|i| active[i].then(|| argmax((0..factors.k()).map(|j| m.mi[i][j] / m.entropy[j].max(1e-12)))))
        .collect();
    let fv = factor_vae::factor_vae(codes, d, factors, &opts.factor_vae, &mut rng);
    let alpha = opts.dci_alpha.unwrap_or_else(|| dci::default_alpha(rows.len()));
    let dci = dci::dci(&sub_codes, d, &sub_factors, alpha);
    Ok(DisentanglementReport {
        points: rows.len(),
        latent_dim: d,
        factor_names: factors.names.clone(),
        mig: m.score,
        mig_per_factor: m.per_factor,
        factor_vae: fv,
        dci,
        mi: m.mi,
        factor_entropy: m.entropy,
        captures,
        active_units: active.iter().filter(|a| **a).count(),
        variances,
    })
}

/// Encodes every image of `data` (its encoder's means μ, in batches) and scores the codes
/// against its factors. An error names a dataset without factors or a model without encoder.
pub fn score_model(
    model: &dyn GenerativeModel,
    data: &Dataset,
    opts: &ScoreOptions,
) -> Result<DisentanglementReport> {
    let Some(factors) = &data.factors else {
        return Err(EngineError::Other(format!(
            "{} has no ground-truth factors to score against: use a dataset with known factors (builtin:shapes, builtin:shapes2)",
            data.name
        )));
    };
    let all: Vec<usize> = (0..data.len()).collect();
    let Some(enc) = encode_indices(model, data, &all, SplitKind::Train)? else {
        return Err(EngineError::Other("this model has no encoder: disentanglement scores read one".into()));
    };
    score_codes(&enc.mu, enc.dim, factors, opts)
}

/// Rows `rows` of a `[n, d]` array.
pub(crate) fn gather_rows(values: &[f32], d: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend_from_slice(&values[r * d..(r + 1) * d]);
    }
    out
}

/// Column `j` of a `[n, d]` array.
pub(crate) fn column(values: &[f32], d: usize, j: usize) -> Vec<f64> {
    values.chunks_exact(d).map(|row| row[j] as f64).collect()
}

/// Sample variance (n − 1 in the denominator, as numpy's `ddof=1`).
pub(crate) fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (x.len() - 1) as f64
}

pub(crate) fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// disentanglement_lib's histogram discretisation: `bins` equal-width bins between the
/// column's minimum and maximum (a constant column falls in one bin).
pub fn discretize(x: &[f64], bins: usize) -> Vec<u32> {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = (hi - lo) / bins as f64;
    x.iter()
        .map(|v| if width > 0.0 { (((v - lo) / width).floor() as usize).min(bins - 1) as u32 } else { 0 })
        .collect()
}

/// Mutual information (nats) of two discrete sequences with values below `na` and `nb`.
pub fn mutual_info(a: &[u32], na: usize, b: &[u32], nb: usize) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let mut joint = vec![0usize; na * nb];
    let (mut pa, mut pb) = (vec![0usize; na], vec![0usize; nb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x as usize * nb + y as usize] += 1;
        pa[x as usize] += 1;
        pb[y as usize] += 1;
    }
    let nf = n as f64;
    let mut mi = 0.0;
    for x in 0..na {
        for y in 0..nb {
            let c = joint[x * nb + y];
            if c > 0 {
                let c = c as f64;
                mi += c / nf * (c * nf / (pa[x] as f64 * pb[y] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// Entropy (nats) of a discrete sequence with values below `na`.
pub fn entropy(a: &[u32], na: usize) -> f64 {
    mutual_info(a, na, a, na)
}

#[cfg(test)]
mod tests;
