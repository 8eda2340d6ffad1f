//! DCI disentanglement and completeness (Eastwood & Williams 2018, "A Framework for the
//! Quantitative Evaluation of Disentangled Representations"), with a lasso as the importance
//! estimator.
//!
//! Why a lasso: it is the first of the paper's two regressors, linear and deterministic, with
//! one setting; its importance (|weight| on standardised codes) has a closed form to check
//! against, and it needs no tree ensemble to be written and tuned here. disentanglement_lib's
//! gradient-boosted trees also see non-linear relations; the lasso credits a dimension only for
//! the part of a factor it predicts linearly, so a dimension that follows a factor through a
//! non-monotonic curve (a cyclic rotation, a categorical shape) earns less importance here.
//!
//! Each factor's value index is standardised and regressed on the standardised codes,
//! minimising `(1/2n)·‖y − Xw‖² + α‖w‖₁` by coordinate descent. `R[i][j] = |w_ij|`.
//! Disentanglement: `Σ_i ρ_i (1 − H_k(P_i·))` with `P_ij = R_ij / Σ_j R_ij` and `ρ_i` dimension
//! i's share of all importance; completeness the same per factor over dimensions.

use serde::{Deserialize, Serialize};

use super::column;
use crate::engine::data::Factors;

/// The lasso's L1 weight for `n` points: on standardised data a weight survives only where the
/// dimension's partial correlation with the factor exceeds α, and α = 5/√n is five standard
/// errors of a correlation between independent variables (0.05 at 10,000 points). A smaller α
/// lets chance correlations of a code that carries nothing through, and since DCI normalises
/// importance, a few tiny chance weights would score as a sparse, "disentangled" code.
pub fn default_alpha(n: usize) -> f64 {
    5.0 / (n.max(1) as f64).sqrt()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dci {
    pub disentanglement: f64,
    pub completeness: f64,
    /// `[d][k]` importance of each dimension for each factor (|lasso weight|).
    pub importance: Vec<Vec<f64>>,
}

/// DCI of codes `[n, d]` (row-major) against `factors`, lasso weight `alpha`.
pub fn dci(codes: &[f32], d: usize, factors: &Factors, alpha: f64) -> Dci {
    let k = factors.k();
    let x: Vec<Vec<f64>> = (0..d).map(|i| standardise(column(codes, d, i))).collect();
    let mut importance = vec![vec![0.0; k]; d];
    for j in 0..k {
        let y = standardise(factors.values.chunks_exact(k).map(|row| row[j] as f64).collect());
        for (i, w) in lasso(&x, &y, alpha).into_iter().enumerate() {
            importance[i][j] = w.abs();
        }
    }
    let transposed: Vec<Vec<f64>> = (0..k).map(|j| importance.iter().map(|row| row[j]).collect()).collect();
    Dci {
        disentanglement: weighted_specificity(&importance, k),
        completeness: weighted_specificity(&transposed, d),
        importance,
    }
}

/// `Σ_i ρ_i (1 − H_base(P_i·))` over the rows of `m` (0 when nothing is important).
fn weighted_specificity(m: &[Vec<f64>], base: usize) -> f64 {
    let total: f64 = m.iter().flatten().sum();
    if total <= 0.0 {
        return 0.0;
    }
    m.iter()
        .map(|row| {
            let s: f64 = row.iter().sum();
            if s <= 0.0 {
                return 0.0;
            }
            let h = if base > 1 {
                -row.iter().filter(|v| **v > 0.0).map(|v| (v / s) * (v / s).ln()).sum::<f64>()
                    / (base as f64).ln()
            } else {
                0.0
            };
            s / total * (1.0 - h)
        })
        .sum()
}

/// Mean 0, variance 1 (a constant column becomes zeros).
fn standardise(mut x: Vec<f64>) -> Vec<f64> {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    for v in &mut x {
        *v = if sd > 1e-12 { (*v - mean) / sd } else { 0.0 };
    }
    x
}

/// Lasso by cyclic coordinate descent on standardised columns `x[i]` (each `n` long).
fn lasso(x: &[Vec<f64>], y: &[f64], alpha: f64) -> Vec<f64> {
    let n = y.len().max(1) as f64;
    let mut w = vec![0.0; x.len()];
    let mut residual = y.to_vec();
    for _ in 0..500 {
        let mut change = 0f64;
        for (i, col) in x.iter().enumerate() {
            let norm = col.iter().map(|v| v * v).sum::<f64>() / n;
            if norm <= 0.0 {
                continue;
            }
            let rho = col.iter().zip(&residual).map(|(a, r)| a * r).sum::<f64>() / n + norm * w[i];
            let new = rho.signum() * (rho.abs() - alpha).max(0.0) / norm;
            let delta = new - w[i];
            if delta != 0.0 {
                for (r, a) in residual.iter_mut().zip(col) {
                    *r -= delta * a;
                }
                w[i] = new;
                change = change.max(delta.abs());
            }
        }
        if change < 1e-7 {
            break;
        }
    }
    w
}
