//! The reference path: every fused op written with candle's stock tensor ops. It runs on any
//! candle device (CUDA, Metal) and, on request, on the CPU ([`super::KernelPath::Reference`]);
//! the fused ops' unit tests compare against it. Gradients come from candle's autograd, so
//! nothing goes through [`super::SideGrads`] here.

use candle_core::{Result, Tensor, Var};

use super::{AdamStep, Epilogue, Geometry, RowLoss, LEAKY_SLOPE};

/// `e` applied to `h` with stock ops.
pub fn activation(h: &Tensor, e: Epilogue) -> Result<Tensor> {
    match e {
        Epilogue::Identity => Ok(h.clone()),
        Epilogue::Relu => h.relu(),
        Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(h, LEAKY_SLOPE as f64),
        Epilogue::Tanh => h.tanh(),
        Epilogue::Sigmoid => candle_nn::ops::sigmoid(h),
    }
}

/// `act(x Wᵀ + b)` for `x [B, in]`, `w [out, in]`, `b [out]`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, e: Epilogue) -> Result<Tensor> {
    activation(&x.matmul(&w.t()?)?.broadcast_add(b)?, e)
}

/// `softplus(l) = log(1 + e^l)`, written stably as `max(l, 0) + log(1 + e^{−|l|})`.
pub fn softplus(l: &Tensor) -> Result<Tensor> {
    l.relu()? + (l.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The per-row reconstruction loss `[B, D], [B, D] → [B]`: BCE from logits as
/// `softplus(l) − x·l` (equal to `−x log σ(l) − (1−x) log(1−σ(l))`, never overflows), or the
/// squared error of the sigmoid `‖x − σ(l)‖²`.
pub fn row_loss(logits: &Tensor, target: &Tensor, kind: RowLoss) -> Result<Tensor> {
    match kind {
        RowLoss::BceWithLogits => (softplus(logits)? - (target * logits)?)?.sum(1),
        RowLoss::SquaredError => (candle_nn::ops::sigmoid(logits)? - target)?.sqr()?.sum(1),
    }
}

/// Training-mode batch normalisation over (B, H, W) per channel, then `e`: `x [B, C, H, W]`,
/// `γ, β [1, C, 1, 1]`. Returns the output and the (detached) batch mean and biased variance,
/// each `[1, C, 1, 1]`.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    e: Epilogue,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let xhat = centred.broadcast_div(&(&var + eps as f64)?.sqrt()?)?;
    let y = activation(&xhat.broadcast_mul(gamma)?.broadcast_add(beta)?, e)?;
    Ok((y, mean.detach(), var.detach()))
}

/// Group normalisation per image over `groups` groups of consecutive channels, then SiLU:
/// `x [B, C, H, W]`, `γ, β [1, C, 1, 1]`.
pub fn group_norm_silu(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let g = x.reshape((b, groups, (c / groups) * h * w))?; // [B, G, C/G·H·W]
    let mean = g.mean_keepdim(2)?;
    let centred = g.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(2)?;
    let xhat = centred.broadcast_div(&(var + eps as f64)?.sqrt()?)?.reshape((b, c, h, w))?;
    xhat.broadcast_mul(gamma)?.broadcast_add(beta)?.silu()
}

/// `act(conv2d(x, w) + b)`: `x [B, Cin, H, W]`, `w [Cout, Cin, k, k]`, `b [Cout]`.
pub fn conv2d_act(x: &Tensor, w: &Tensor, b: &Tensor, geom: Geometry, e: Epilogue) -> Result<Tensor> {
    let y = x.conv2d(w, geom.pad, geom.stride, 1, 1)?;
    activation(&y.broadcast_add(&b.reshape((1, (), 1, 1))?)?, e)
}

/// `act(conv_transpose2d(x, w) + b)`: `x [B, Cin, H, W]`, `w [Cin, Cout, k, k]`, `b [Cout]`.
pub fn conv_transpose2d_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    geom: Geometry,
    e: Epilogue,
) -> Result<Tensor> {
    let y = x.conv_transpose2d(w, geom.pad, 0, geom.stride, 1)?;
    activation(&y.broadcast_add(&b.reshape((1, (), 1, 1))?)?, e)
}

/// One Adam step with the moments `m`, `v` as tensors beside the parameter (the same formula
/// as the fused update: `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`).
pub fn adam_update(param: &Var, grad: &Tensor, m: &mut Tensor, v: &mut Tensor, s: AdamStep) -> Result<()> {
    let (b1, b2) = (s.beta1 as f64, s.beta2 as f64);
    // Detached: a stock backward's parameter gradients can still hold the step's forward
    // graph (candle sums them with `add`, not detached), and moments built from them would
    // chain every step's graph to the next (+300 MB a step for the WGAN-GP critic).
    *m = ((&*m * b1)? + (grad * (1.0 - b1))?)?.detach();
    *v = ((&*v * b2)? + (grad.sqr()? * (1.0 - b2))?)?.detach();
    let denom = v.sqrt()?.affine(s.inv_bc2_sqrt as f64, s.eps as f64)?;
    let update = (m.div(&denom)? * s.step_size as f64)?;
    param.set(&param.as_tensor().sub(&update)?)
}

/// Whether every value of `grads` is finite, with one number read back from the device:
/// `g − g` is 0 for a finite value and NaN for an infinite or NaN one, and so is its sum.
pub fn all_finite(grads: &[&Tensor]) -> Result<bool> {
    let mut total: Option<Tensor> = None;
    for g in grads {
        let s = g.sub(g)?.sum_all()?.to_dtype(candle_core::DType::F32)?;
        total = Some(match total {
            Some(t) => (t + s)?,
            None => s,
        });
    }
    match total {
        Some(t) => Ok(t.to_scalar::<f32>()? == 0.0),
        None => Ok(true),
    }
}
