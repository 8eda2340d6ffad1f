//! The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising"), with
//! disentanglement_lib's defaults: codes normalised by their standard deviation over 10,000
//! points; dimensions whose variance is below 0.05 pruned (collapsed to the prior); each vote
//! fixes one factor at a random value, draws a batch of 64 points sharing it, and votes for the
//! (active) dimension of least normalised variance; a majority-vote classifier maps each
//! dimension to a factor from 10,000 training votes and is scored on 5,000 more.
//!
//! Points sharing a factor value are drawn from the given codes (with replacement), which on a
//! dataset that is the whole factor grid (`builtin:shapes`) is disentanglement_lib's sampling.
//! Chance level is the share of the most common factor among votes, about 1/k.

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{argmax, column, variance};
use crate::engine::data::Factors;

/// Sizes of the FactorVAE score's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FactorVaeOptions {
    /// Points per vote.
    pub batch: usize,
    pub train_votes: usize,
    pub eval_votes: usize,
    /// Points for the global variances.
    pub variance_points: usize,
    /// Dimensions whose (unnormalised) variance is below this are pruned.
    pub prune_below: f64,
}

impl Default for FactorVaeOptions {
    fn default() -> Self {
        Self { batch: 64, train_votes: 10_000, eval_votes: 5_000, variance_points: 10_000, prune_below: 0.05 }
    }
}

/// The score and how it was reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorVaeScore {
    /// Majority-vote accuracy on the training votes.
    pub train_accuracy: f64,
    /// Accuracy on the held-out votes: the score.
    pub eval_accuracy: f64,
    /// Dimensions left after pruning; 0 means every dimension collapsed (score 0).
    pub active_dims: usize,
}

/// FactorVAE score of codes `[n, d]` (row-major) against `factors` (`n` rows).
pub fn factor_vae(
    codes: &[f32],
    d: usize,
    factors: &Factors,
    opts: &FactorVaeOptions,
    rng: &mut StdRng,
) -> FactorVaeScore {
    let n = factors.len();
    let k = factors.k();
    let rows: Vec<usize> = (0..opts.variance_points.max(2)).map(|_| rng.random_range(0..n)).collect();
    let sample = super::gather_rows(codes, d, &rows);
    let global: Vec<f64> = (0..d).map(|j| variance(&column(&sample, d, j))).collect();
    let active: Vec<usize> = (0..d).filter(|&j| global[j] >= opts.prune_below).collect();
    if active.is_empty() || k == 0 {
        return FactorVaeScore { train_accuracy: 0.0, eval_accuracy: 0.0, active_dims: 0 };
    }
    // Rows sharing each factor's value: groups[j][v].
    let groups: Vec<Vec<Vec<usize>>> = (0..k)
        .map(|j| {
            let mut g = vec![Vec::new(); factors.sizes[j]];
            for i in 0..n {
                g[factors.of(i)[j] as usize].push(i);
            }
            g
        })
        .collect();
    let scale: Vec<f64> = global.iter().map(|v| v.sqrt()).collect();
    let votes = |count: usize, rng: &mut StdRng| {
        let mut table = vec![vec![0usize; k]; d];
        let mut batch = vec![0f64; opts.batch.max(2)];
        for _ in 0..count {
            let j = rng.random_range(0..k);
            // A value as it occurs in the data: the value of a random point.
            let v = factors.of(rng.random_range(0..n))[j] as usize;
            let pool = &groups[j][v];
            let picks: Vec<usize> = (0..batch.len()).map(|_| pool[rng.random_range(0..pool.len())]).collect();
            let mut best = (active[0], f64::INFINITY);
            for &dim in &active {
                for (b, &p) in batch.iter_mut().zip(&picks) {
                    *b = codes[p * d + dim] as f64 / scale[dim];
                }
                let var = variance(&batch);
                if var < best.1 {
                    best = (dim, var);
                }
            }
            table[best.0][j] += 1;
        }
        table
    };
    let train = votes(opts.train_votes.max(1), rng);
    let eval = votes(opts.eval_votes.max(1), rng);
    let classifier: Vec<usize> = train.iter().map(|row| argmax(row.iter().map(|&c| c as f64))).collect();
    let accuracy = |table: &[Vec<usize>]| {
        let right: usize = table.iter().zip(&classifier).map(|(row, &c)| row[c]).sum();
        let all: usize = table.iter().flatten().sum();
        right as f64 / all.max(1) as f64
    };
    FactorVaeScore {
        train_accuracy: accuracy(&train),
        eval_accuracy: accuracy(&eval),
        active_dims: active.len(),
    }
}
