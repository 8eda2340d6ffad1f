//! Loss functions, all reported per image in nats (sum over pixels or latent dimensions, mean
//! over the batch). Training computes the reconstruction losses with the fused kernel
//! [`crate::engine::kernels::row_loss`]; the stock-op formulas here are its reference in the tests.

use candle_core::{Result, Tensor};

/// `softplus(l) = log(1 + e^l)`, written stably as `max(l, 0) + log(1 + e^{−|l|})`.
pub fn softplus(l: &Tensor) -> Result<Tensor> {
    l.relu()? + (l.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Binary cross-entropy from logits, summed over the last dimension, per row: `[B, D] → [B]`.
/// `softplus(l) − x·l` equals `−x log σ(l) − (1−x) log(1−σ(l))` and never overflows.
pub fn bce_with_logits_rows(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    (softplus(logits)? - (target * logits)?)?.sum(1)
}

/// Squared error ‖x − σ(l)‖² per row: `[B, D] → [B]`.
pub fn squared_error_rows(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    (candle_nn::ops::sigmoid(logits)? - target)?.sqr()?.sum(1)
}

/// KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (σ² + μ² − 1 − log σ²) per row, from μ and log σ²: `[B, L] → [B]`.
pub fn kl_rows(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((logvar.exp()? + mu.sqr()?)? - 1.0)?.sub(logvar)?.sum(1)? * 0.5
}

/// Per-dimension KL averaged over the batch: `[B, L] → [L]` (the "active units" measure).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((logvar.exp()? + mu.sqr()?)? - 1.0)?.sub(logvar)?.mean(0)? * 0.5
}
