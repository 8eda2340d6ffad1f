//! Mutual information gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"),
//! computed as disentanglement_lib does: each code dimension discretised into a 20-bin
//! histogram, discrete mutual information with each factor, and for each factor the gap between
//! the two dimensions that share the most information with it, over the factor's entropy;
//! averaged over factors.

use serde::{Deserialize, Serialize};

use super::{column, discretize, entropy, mutual_info};
use crate::engine::data::Factors;

/// MIG and what it is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mig {
    /// Mean over factors of the normalised gap, in [0, 1].
    pub score: f64,
    /// Each factor's normalised gap.
    pub per_factor: Vec<f64>,
    /// `[d][k]` mutual information (nats).
    pub mi: Vec<Vec<f64>>,
    /// Entropy (nats) of each factor.
    pub entropy: Vec<f64>,
}

/// MIG of codes `[n, d]` (row-major) against `factors` (`n` rows), `bins` bins per dimension.
pub fn mig(codes: &[f32], d: usize, factors: &Factors, bins: usize) -> Mig {
    let k = factors.k();
    let discrete: Vec<Vec<u32>> = (0..d).map(|i| discretize(&column(codes, d, i), bins.max(1))).collect();
    let factor_cols: Vec<Vec<u32>> =
        (0..k).map(|j| factors.values.chunks_exact(k).map(|row| row[j]).collect()).collect();
    let mi: Vec<Vec<f64>> = discrete
        .iter()
        .map(|c| (0..k).map(|j| mutual_info(c, bins.max(1), &factor_cols[j], factors.sizes[j])).collect())
        .collect();
    let entropy: Vec<f64> = (0..k).map(|j| entropy(&factor_cols[j], factors.sizes[j])).collect();
    let per_factor: Vec<f64> = (0..k)
        .map(|j| {
            let mut col: Vec<f64> = mi.iter().map(|row| row[j]).collect();
            col.sort_by(|a, b| b.total_cmp(a));
            let gap = col.first().copied().unwrap_or(0.0) - col.get(1).copied().unwrap_or(0.0);
            // A factor that never varies carries no information to capture.
            if entropy[j] > 0.0 {
                gap / entropy[j]
            } else {
                0.0
            }
        })
        .collect();
    let score = per_factor.iter().sum::<f64>() / k.max(1) as f64;
    Mig { score, per_factor, mi, entropy }
}
