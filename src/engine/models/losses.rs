//! Loss functions, all reported per image in nats (sum over pixels or latent dimensions, mean
//! over the batch). The reconstruction losses are [`crate::engine::kernels::Exec::row_loss`].

use candle_core::{Result, Tensor};

pub use crate::engine::kernels::reference::softplus;

/// KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (σ² + μ² − 1 − log σ²) per row, from μ and log σ²: `[B, L] → [B]`.
pub fn kl_rows(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((logvar.exp()? + mu.sqr()?)? - 1.0)?.sub(logvar)?.sum(1)? * 0.5
}

/// Per-dimension KL averaged over the batch: `[B, L] → [L]` (the "active units" measure).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((logvar.exp()? + mu.sqr()?)? - 1.0)?.sub(logvar)?.mean(0)? * 0.5
}
