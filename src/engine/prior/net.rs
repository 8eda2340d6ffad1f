//! The latent prior's denoiser: an MLP over standardised latents `[B, D]`.
//!
//! ```text
//! t → sinusoids(32) → Linear(32→W) → SiLU → Linear(W→W) = temb            [B, W]
//! x [B, D] → Linear(D→W) + temb = h
//!   → blocks × { h ← h + Linear(W→W)(SiLU(Linear(W→W)(SiLU(h)) + temb)) }
//!   → SiLU → Linear(W→D) → [B, D]   (ε for DDPM, v for the flow)
//! ```
//! The last layer starts at zero, so an untrained net predicts 0 and each residual block starts
//! near the identity: training begins from a stable point.

use candle_core::Tensor;
use rand::rngs::StdRng;

use crate::engine::error::Result;
use crate::engine::models::diffusion::unet::{sinusoids, SINUSOID_DIM};
use crate::engine::models::layers::{Linear, ParamSet};
use crate::engine::models::Activation;

pub(super) struct PriorNet {
    time_in: Linear,
    time_out: Linear,
    input: Linear,
    blocks: Vec<(Linear, Linear)>,
    output: Linear,
}

impl PriorNet {
    /// Registers the net's parameters in `ps` under `prior.*`.
    pub(super) fn new(
        ps: &mut ParamSet,
        dim: usize,
        width: usize,
        blocks: usize,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let time_in = Linear::new(ps, "prior.time_in", SINUSOID_DIM, width, rng)?;
        let time_out = Linear::new(ps, "prior.time_out", width, width, rng)?;
        let input = Linear::new(ps, "prior.input", dim, width, rng)?;
        let blocks = (0..blocks)
            .map(|i| {
                Ok((
                    Linear::new(ps, &format!("prior.block{i}.fc1"), width, width, rng)?,
                    Linear::new(ps, &format!("prior.block{i}.fc2"), width, width, rng)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let n_before = ps.params.len();
        let output = Linear::new(ps, "prior.output", width, dim, rng)?;
        for (_, var) in &ps.params[n_before..] {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
        Ok(Self { time_in, time_out, input, blocks, output })
    }

    /// `x: [B, D]` at times `t` (one per row, in [0, 1]) → `[B, D]`.
    pub(super) fn forward(&self, x: &Tensor, t: &[f64]) -> Result<Tensor> {
        let temb =
            self.time_out.forward(&self.time_in.forward_act(&sinusoids(t, x)?, Some(Activation::Silu))?)?;
        let mut h = self.input.forward(x)?.broadcast_add(&temb)?; // [B, W]
        for (fc1, fc2) in &self.blocks {
            let inner = (fc1.forward(&h.silu()?)? + &temb)?;
            h = (&h + fc2.forward(&inner.silu()?)?)?;
        }
        Ok(self.output.forward(&h.silu()?)?)
    }
}
