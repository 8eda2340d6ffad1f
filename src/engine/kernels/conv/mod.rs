//! Convolution as im2col / col2im plus one matrix product.
//!
//! candle's CPU `conv_transpose2d` (which the input gradient of `conv2d` also uses) runs direct
//! loops; here both convolutions are a gather ([`unfold`], im2col) or a scatter-add ([`fold`],
//! col2im) around candle's matmul. Only the two rearrangements are custom ops (each one's
//! backward is the other); the products, and so the weight and bias gradients, go through
//! candle's autograd.
//!
//! Layout: the columns of a whole batch form one `[C·k·k, B·L]` matrix (`L = Hout·Wout`), so that
//! the product and both of its gradients are each a single large gemm. One `[C·k·k, L]` matrix
//! per image (a batched matmul against the broadcast weight) measured 1.5–2× slower per layer
//! (forward + backward, batch 128) on the preset layers with many output channels, and ~10%
//! faster only on the single-channel output layers: it runs `B` small gemms and sums a
//! `[B, Cout, C·k·k]` weight gradient over the batch.
//!
//! The fused ops ([`conv2d_act`], [`conv_transpose2d_act`]) instead run the same products over
//! chunks of a few images ([`CHUNK_VALUES`]) with reused buffers, and recompute the columns in
//! the backward pass rather than keeping them.
//!
//! candle's autograd adds every gradient into a fresh zero tensor and sums broadcast gradients
//! with a slow strided loop unless the summed dims are the last ones, so the graph here is kept
//! short around the big column tensors and biases are broadcast so that their gradient sums run
//! over trailing dims.

mod conv2d;
mod conv_transpose2d;
mod direct3x3;
#[cfg(test)]
mod tests;

use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::gemm::threads;
use super::{fold, unfold, Epilogue, Geometry, SideGrads};

/// Convolution, PyTorch's `conv2d` without dilation or groups: `x [B, Cin, H, W]`,
/// `w [Cout, Cin, k, k]`, `b [Cout]` → `[B, Cout, Hout, Wout]`, `Hout = (H + 2p − k) / s + 1`.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: usize) -> Result<Tensor> {
    let (batch, cin, h, wd) = x.dims4()?;
    let (cout, wcin, k, k2) = w.dims4()?;
    if wcin != cin || k != k2 {
        bail!("conv2d: weight {:?} does not fit an input of {cin} channels (square kernels only)", w.dims())
    }
    let geom = Geometry { kernel: k, stride, pad };
    let (ho, wo) = (geom.out_len(h)?, geom.out_len(wd)?);
    let cols = unfold(x, geom)?; // [Cin·k·k, B·Hout·Wout]
    let mut y = w.reshape((cout, cin * k * k))?.matmul(&cols)?; // [Cout, B·Hout·Wout]
    if let Some(b) = b {
        // Its gradient sums the last dim: candle's fast path.
        y = y.broadcast_add(&b.reshape((cout, 1))?)?;
    }
    y.reshape((cout, batch, ho, wo))?.transpose(0, 1)?.contiguous() // [B, Cout, Hout, Wout]
}

/// Transposed convolution, PyTorch's `conv_transpose2d` without output padding, dilation or
/// groups: `x [B, Cin, H, W]`, `w [Cin, Cout, k, k]`, `b [Cout]` → `[B, Cout, Hout, Wout]`,
/// `Hout = (H − 1)·s − 2p + k`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (batch, cin, h, wd) = x.dims4()?;
    let (wcin, cout, k, k2) = w.dims4()?;
    if wcin != cin || k != k2 {
        bail!(
            "conv_transpose2d: weight {:?} does not fit an input of {cin} channels (square kernels only)",
            w.dims()
        )
    }
    let geom = Geometry { kernel: k, stride, pad };
    let out = |n: usize| match n.checked_sub(1).map(|m| m * stride + k).and_then(|m| m.checked_sub(2 * pad)) {
        Some(m) if m > 0 => Ok(m),
        _ => bail!("conv_transpose2d: an input side of {n} gives an empty output"),
    };
    let (ho, wo) = (out(h)?, out(wd)?);
    let xt = x.transpose(0, 1)?.reshape((cin, batch * h * wd))?; // [Cin, B·H·W]
    let wt = w.reshape((cin, cout * k * k))?.t()?; // [Cout·k·k, Cin]
    let cols = wt.matmul(&xt)?; // [Cout·k·k, B·H·W]
    let y = fold(&cols, (ho, wo), geom)?; // [B, Cout, Hout, Wout]
    match b {
        // Broadcast in two steps so that the gradient sums H, W (trailing dims, candle's fast
        // path) before B (a small strided sum), instead of one strided sum over B, H and W.
        Some(b) => {
            y.add(&b.reshape((1, cout, 1, 1))?.broadcast_as((batch, cout, 1, 1))?.broadcast_as(y.shape())?)
        }
        None => Ok(y),
    }
}

/// About this many column values (1 MB of f32) per chunk of images in the fused ops, so that a
/// chunk's columns stay in the L2 cache between the rearrangement and the product that reads
/// or writes them, instead of the whole batch's (12.8 MB on the preset layers at batch 128).
const CHUNK_VALUES: usize = 1 << 18;

/// Images per chunk when each image has `per_image` column values.
fn chunk_images(per_image: usize, batch: usize) -> usize {
    (CHUNK_VALUES / per_image.max(1)).clamp(1, batch.max(1))
}

/// How the fused convolutions cut a batch: one contiguous part of the images per thread of the
/// pool, each part run on one thread in chunks of at most `nb` images ([`CHUNK_VALUES`]) with its
/// own buffers, single-threaded products and its own weight-gradient sum. Splitting every
/// chunk's product and rearrangement over both threads instead (one synchronisation per small
/// product) gained ~1.1× over one thread; parts need none until the end.
#[derive(Clone, Copy, Debug)]
struct Split {
    /// Images per part (the last part may have fewer).
    per_part: usize,
    /// Images per chunk within a part: as few chunks as fit [`CHUNK_VALUES`], of equal size.
    nb: usize,
    parts: usize,
}

impl Split {
    fn new(per_image: usize, batch: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let per_part = batch.div_ceil(threads.clamp(1, batch.max(1))).max(1);
        let parts = batch.div_ceil(per_part).max(1);
        let chunks = per_part.div_ceil(chunk_images(per_image, per_part));
        Self { per_part, nb: per_part.div_ceil(chunks).max(1), parts }
    }

    /// Within a part: the rearrangements may split over the pool, and gemm uses every thread,
    /// only when the batch is a single part.
    fn inner_parallel(&self) -> bool {
        self.parts == 1
    }

    fn gemm_threads(&self) -> gemm::Parallelism {
        if self.inner_parallel() {
            threads()
        } else {
            gemm::Parallelism::None
        }
    }

    /// Runs `work(first, images, out)` on each part — `first` its first image, `out` its
    /// `images · out_per_image` values of `out` (empty when `out` is) — in parallel, and returns
    /// the results in part order.
    fn run<R: Send>(
        &self,
        batch: usize,
        out: &mut [f32],
        out_per_image: usize,
        work: impl Fn(usize, usize, &mut [f32]) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let mut parts = Vec::with_capacity(self.parts);
        let mut rest = out;
        for p in 0..self.parts {
            let first = p * self.per_part;
            let images = self.per_part.min(batch.saturating_sub(first));
            let take = if rest.is_empty() { 0 } else { images * out_per_image };
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(take);
            rest = tail;
            parts.push((first, images, mine));
        }
        if parts.len() == 1 {
            parts.into_iter().map(|(f, n, o)| work(f, n, o)).collect()
        } else {
            parts.into_par_iter().map(|(f, n, o)| work(f, n, o)).collect()
        }
    }
}

/// The weight and bias gradients of the parts of a [`Split`], summed in part order.
fn sum_parts(parts: Vec<(Vec<f32>, Vec<f32>)>) -> (Vec<f32>, Vec<f32>) {
    let mut parts = parts.into_iter();
    let (mut dw, mut db) = parts.next().unwrap_or_default();
    for (w, b) in parts {
        dw.iter_mut().zip(&w).for_each(|(d, v)| *d += v);
        db.iter_mut().zip(&b).for_each(|(d, v)| *d += v);
    }
    (dw, db)
}

/// Copies `m` batch-major images `[m, R, L]` into the first `m·L` columns of the channel-major
/// `dst` `[R, ld]`.
fn chunk_to_channel_major(src: &[f32], (m, r, l): (usize, usize, usize), dst: &mut [f32], ld: usize) {
    for (bi, img) in src.chunks_exact(r * l).take(m).enumerate() {
        for (ri, row) in img.chunks_exact(l).enumerate() {
            dst[ri * ld + bi * l..][..l].copy_from_slice(row);
        }
    }
}

/// [`conv2d`] followed by an activation, as one op ([`Conv2dAct`]); with a `sink`, the weight
/// and bias gradients go there ([`SideGrads`]).
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    geom: Geometry,
    epilogue: Epilogue,
    sink: Option<&SideGrads>,
) -> Result<Tensor> {
    let op = Conv2dAct { geom, epilogue, sink: sink.cloned() };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// [`conv_transpose2d`] followed by an activation, as one op ([`ConvTranspose2dAct`]); with a
/// `sink`, the weight and bias gradients go there ([`SideGrads`]).
pub fn conv_transpose2d_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    geom: Geometry,
    epilogue: Epilogue,
    sink: Option<&SideGrads>,
) -> Result<Tensor> {
    let op = ConvTranspose2dAct { geom, epilogue, sink: sink.cloned() };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// `act(conv2d(x, w) + b)` for f32 on the CPU, cut as a [`Split`] says: per chunk of images,
/// im2col into a reused buffer, one gemm, then bias, activation and the `[Cout, m·L] → [m, Cout,
/// L]` rearrangement in one pass. Backward, per chunk: the activation's derivative and the bias
/// gradient in one pass, the weight gradient accumulated by one gemm against the recomputed
/// columns, and the input gradient (one gemm and a col2im) only when the input depends on a
/// variable.
struct Conv2dAct {
    geom: Geometry,
    epilogue: Epilogue,
    sink: Option<SideGrads>,
}

/// `act(conv_transpose2d(x, w) + b)` for f32 on the CPU, the mirror of [`Conv2dAct`].
struct ConvTranspose2dAct {
    geom: Geometry,
    epilogue: Epilogue,
    sink: Option<SideGrads>,
}
