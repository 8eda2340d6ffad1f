//! Convolution as im2col / col2im plus one matrix product.
//!
//! candle's CPU `conv_transpose2d` (which the input gradient of `conv2d` also uses) runs direct
//! loops; here both convolutions are a gather ([`Unfold`], im2col) or a scatter-add ([`Fold`],
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
//! candle's autograd adds every gradient into a fresh zero tensor and sums broadcast gradients
//! with a slow strided loop unless the summed dims are the last ones, so the graph here is kept
//! short around the big column tensors and biases are broadcast so that their gradient sums run
//! over trailing dims.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fused::{self, Epilogue, SideGrads};

/// Kernel size, stride and padding of a square convolution (no dilation, no groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output positions along a side of `n` input positions: `(n + 2p − k) / s + 1`.
    pub fn out_len(&self, n: usize) -> Result<usize> {
        if self.kernel == 0 || self.stride == 0 {
            bail!("conv: kernel {} and stride {} must be at least 1", self.kernel, self.stride)
        }
        if n + 2 * self.pad < self.kernel {
            bail!("conv: input side {n} with padding {} is smaller than the kernel {}", self.pad, self.kernel)
        }
        Ok((n + 2 * self.pad - self.kernel) / self.stride + 1)
    }

    /// The output positions `lo..hi` along a side whose input index `o·s + j − p` (for kernel
    /// offset `j`) lands inside `0..n`; the others read padding.
    fn valid(&self, j: usize, n: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if p > j { (p - j).div_ceil(s) } else { 0 };
        let hi = if n + p > j { ((n + p - j - 1) / s + 1).min(out) } else { 0 };
        (lo.min(hi), hi)
    }

    /// [`Geometry::valid`] for every kernel offset.
    fn valid_all(&self, n: usize, out: usize) -> Vec<(usize, usize)> {
        (0..self.kernel).map(|j| self.valid(j, n, out)).collect()
    }
}

/// Below this many column values an op runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

fn parallel(work: usize) -> bool {
    work >= PARALLEL_MIN && rayon::current_num_threads() > 1
}

/// `dst[t] = src[t·s]` for every `t` in `dst`.
#[inline(always)]
fn gather<T: Copy>(dst: &mut [T], src: &[T], s: usize) {
    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(s)) {
        *d = v;
    }
}

/// `dst[t·s] += src[t]` for every `t` in `src`.
#[inline(always)]
fn scatter_add<T: Copy + std::ops::AddAssign>(dst: &mut [T], src: &[T], s: usize) {
    for (d, &v) in dst.iter_mut().step_by(s).zip(src) {
        *d += v;
    }
}

/// im2col: `x [B, C, H, W]` → columns `[C·k·k, B·L]` (`L = Hout·Wout`): row `c·k·k + i·k + j`,
/// column `b·L + o_h·Wout + o_w` holds `x[b, c, o_h·s − p + i, o_w·s − p + j]` (zero in the
/// padding). Rows are in the order of a `[Cout, C, k, k]` weight reshaped to `[Cout, C·k·k]`.
#[derive(Clone, Copy, Debug)]
pub struct Unfold {
    pub geom: Geometry,
}

/// col2im: columns `[C·k·k, B·L]` → `[B, C, H, W]`, each value added to the pixel [`Unfold`]
/// reads it from (the adjoint of [`Unfold`]).
#[derive(Clone, Copy, Debug)]
pub struct Fold {
    pub geom: Geometry,
    /// Output height and width.
    pub size: (usize, usize),
}

fn unfold_cpu<T: Copy + Default + Send + Sync>(
    x: &[T],
    (b, c, h, w): (usize, usize, usize, usize),
    g: Geometry,
) -> Result<(Vec<T>, Shape)> {
    let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
    let (k, s, p) = (g.kernel, g.stride, g.pad);
    let (l, rows) = (ho * wo, c * k * k);
    let shape = Shape::from((rows, b * l));
    let mut dst = vec![T::default(); shape.elem_count()];
    if dst.is_empty() {
        return Ok((dst, shape));
    }
    let (vi, vj) = (g.valid_all(h, ho), g.valid_all(w, wo));
    // One row of the output: one (channel, kernel offset) over the whole batch. Padding stays 0.
    let row = |r: usize, out: &mut [T]| {
        let (ci, i, j) = (r / (k * k), r / k % k, r % k);
        let ((oh_lo, oh_hi), (lo, hi)) = (vi[i], vj[j]);
        if lo >= hi {
            return;
        }
        for (bi, out) in out.chunks_exact_mut(l).enumerate() {
            let plane = &x[(bi * c + ci) * h * w..][..h * w];
            for oh in oh_lo..oh_hi {
                let src = &plane[(oh * s + i - p) * w + lo * s + j - p..];
                gather(&mut out[oh * wo + lo..oh * wo + hi], src, s);
            }
        }
    };
    if parallel(dst.len()) {
        dst.par_chunks_mut(b * l).enumerate().for_each(|(r, out)| row(r, out));
    } else {
        dst.chunks_mut(b * l).enumerate().for_each(|(r, out)| row(r, out));
    }
    Ok((dst, shape))
}

fn fold_cpu<T: Copy + Default + std::ops::AddAssign + Send + Sync>(
    cols: &[T],
    dims: &[usize],
    g: Geometry,
    (h, w): (usize, usize),
) -> Result<(Vec<T>, Shape)> {
    let (k, s, p) = (g.kernel, g.stride, g.pad);
    let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
    let l = ho * wo;
    let (rows, n) = match dims {
        &[rows, n] if rows % (k * k) == 0 && l > 0 && n % l == 0 => (rows, n),
        _ => bail!(
            "fold: columns {dims:?} do not fit a {h}×{w} output with kernel {k}, stride {s}, padding {p}"
        ),
    };
    let (b, c) = (n / l, rows / (k * k));
    let mut dst = vec![T::default(); b * c * h * w];
    if dst.is_empty() {
        return Ok((dst, (b, c, h, w).into()));
    }
    let (vi, vj) = (g.valid_all(h, ho), g.valid_all(w, wo));
    // One output plane gathers k·k runs of L values, one from each of its channel's rows.
    let plane = |ci: usize, bi: usize, out: &mut [T]| {
        for i in 0..k {
            let (oh_lo, oh_hi) = vi[i];
            for j in 0..k {
                let (lo, hi) = vj[j];
                if lo >= hi {
                    continue;
                }
                let src = &cols[(ci * k * k + i * k + j) * n + bi * l..][..l];
                for oh in oh_lo..oh_hi {
                    let dst = &mut out[(oh * s + i - p) * w + lo * s + j - p..];
                    scatter_add(dst, &src[oh * wo + lo..oh * wo + hi], s);
                }
            }
        }
    };
    // Channel-major order, so that consecutive planes read consecutive runs of each row.
    let mut planes: Vec<(usize, usize, &mut [T])> =
        dst.chunks_mut(h * w).enumerate().map(|(idx, out)| (idx % c, idx / c, out)).collect();
    planes.sort_unstable_by_key(|&(ci, bi, _)| (ci, bi));
    if parallel(cols.len()) {
        let per_task = PARALLEL_MIN.div_ceil(k * k * l).max(1);
        planes.par_chunks_mut(per_task).for_each(|chunk| {
            for (ci, bi, out) in chunk {
                plane(*ci, *bi, out);
            }
        });
    } else {
        for (ci, bi, out) in planes {
            plane(ci, bi, out);
        }
    }
    Ok((dst, (b, c, h, w).into()))
}

/// The contiguous values of a CPU storage, or an error naming the op.
fn contiguous<'a, T>(v: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => bail!("{op}: the input must be contiguous"),
    }
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "unfold"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims4()?;
        match storage {
            CpuStorage::F32(v) => {
                let (out, shape) = unfold_cpu(contiguous(v, layout, "unfold")?, dims, self.geom)?;
                Ok((CpuStorage::F32(out), shape))
            }
            CpuStorage::F64(v) => {
                let (out, shape) = unfold_cpu(contiguous(v, layout, "unfold")?, dims, self.geom)?;
                Ok((CpuStorage::F64(out), shape))
            }
            s => bail!("unfold: unsupported dtype {:?}", s.dtype()),
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(fold(grad_res, (h, w), self.geom)?))
    }
}

impl CustomOp1 for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        match storage {
            CpuStorage::F32(v) => {
                let (out, shape) = fold_cpu(contiguous(v, layout, "fold")?, dims, self.geom, self.size)?;
                Ok((CpuStorage::F32(out), shape))
            }
            CpuStorage::F64(v) => {
                let (out, shape) = fold_cpu(contiguous(v, layout, "fold")?, dims, self.geom, self.size)?;
                Ok((CpuStorage::F64(out), shape))
            }
            s => bail!("fold: unsupported dtype {:?}", s.dtype()),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(unfold(grad_res, self.geom)?))
    }
}

/// im2col with autograd: `[B, C, H, W]` → `[C·k·k, B·Hout·Wout]` (see [`Unfold`]).
pub fn unfold(x: &Tensor, geom: Geometry) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Unfold { geom })
}

/// col2im with autograd: `[C·k·k, B·Hout·Wout]` → `[B, C, H, W]` with `(H, W) = size` (see [`Fold`]).
pub fn fold(cols: &Tensor, size: (usize, usize), geom: Geometry) -> Result<Tensor> {
    cols.contiguous()?.apply_op1(Fold { geom, size })
}

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

/// `[R, B·L]` (channel-major columns) → `[B, R, L]` (batch-major images), `f` applied on the way.
fn to_batch_major(
    src: &[f32],
    (r, b, l): (usize, usize, usize),
    mut f: impl FnMut(usize, f32) -> f32,
) -> Vec<f32> {
    let mut dst = vec![0f32; r * b * l];
    for (bi, img) in dst.chunks_exact_mut(r * l.max(1)).enumerate().take(b) {
        for (ri, row) in img.chunks_exact_mut(l.max(1)).enumerate() {
            for (d, &v) in row.iter_mut().zip(&src[ri * b * l + bi * l..][..l]) {
                *d = f(ri, v);
            }
        }
    }
    dst
}

/// `[B, R, L]` → `[R, B·L]`, the inverse of [`to_batch_major`].
fn to_channel_major(src: &[f32], (b, r, l): (usize, usize, usize)) -> Vec<f32> {
    let mut dst = vec![0f32; r * b * l];
    for bi in 0..b {
        for ri in 0..r {
            dst[ri * b * l + bi * l..][..l].copy_from_slice(&src[(bi * r + ri) * l..][..l]);
        }
    }
    dst
}

/// Reads a CPU tensor's contiguous f32 values inside `f`.
fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else { bail!("{what}: CPU only") };
    f(fused::f32s(s, l, what)?)
}

/// `g = grad ⊙ act′(y)` for a `[B, C, L]` output, and the per-channel sums of `g` (the bias
/// gradient).
fn epilogue_grad(y: &Tensor, grad: &Tensor, e: Epilogue, c: usize, l: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let grad = grad.contiguous()?;
    with_f32(y, "conv: output", |yv| {
        with_f32(&grad, "conv: gradient", |gv| {
            let mut g = vec![0f32; yv.len()];
            let mut db = vec![0f32; c];
            let l = l.max(1);
            for (plane, ((g, gy), yv)) in
                g.chunks_exact_mut(l).zip(gv.chunks_exact(l)).zip(yv.chunks_exact(l)).enumerate()
            {
                let mut sum = 0f32;
                for ((g, &gy), &yv) in g.iter_mut().zip(gy).zip(yv) {
                    *g = e.grad(yv, gy);
                    sum += *g;
                }
                db[plane % c] += sum;
            }
            Ok((g, db))
        })
    })
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
    let op = Conv2dAct { geom, epilogue, cols: Default::default(), sink: sink.cloned() };
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

/// `act(conv2d(x, w) + b)` for f32 on the CPU: im2col, one gemm, then bias, activation and
/// the `[Cout, B·L] → [B, Cout, L]` rearrangement in one pass. Backward: the activation's
/// derivative and the bias gradient in one pass, the weight gradient as one gemm against the
/// recomputed columns, and the input gradient (one gemm and a col2im) only when the input
/// depends on a variable.
struct Conv2dAct {
    geom: Geometry,
    epilogue: Epilogue,
    /// The forward pass's im2col columns, kept for the weight gradient.
    cols: std::sync::Mutex<Option<Vec<f32>>>,
    sink: Option<SideGrads>,
}

/// `act(conv_transpose2d(x, w) + b)` for f32 on the CPU, the mirror of [`Conv2dAct`].
struct ConvTranspose2dAct {
    geom: Geometry,
    epilogue: Epilogue,
    sink: Option<SideGrads>,
}

impl candle_core::CustomOp3 for Conv2dAct {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, cin, h, wd) = xl.shape().dims4()?;
        let (cout, wcin, k, k2) = wl.shape().dims4()?;
        if wcin != cin || k != k2 || k != self.geom.kernel || bl.dims() != [cout] {
            bail!(
                "conv2d: weight {:?} / bias {:?} do not fit an input of {cin} channels",
                wl.dims(),
                bl.dims()
            )
        }
        let (x, w, b) = (fused::f32s(xs, xl, "x")?, fused::f32s(ws, wl, "w")?, fused::f32s(bs, bl, "b")?);
        let (cols, _) = unfold_cpu(x, (batch, cin, h, wd), self.geom)?; // [Cin·k·k, B·L]
        let (ho, wo) = (self.geom.out_len(h)?, self.geom.out_len(wd)?);
        let (l, ckk) = (ho * wo, cin * k * k);
        let y = fused::matmul((cout, batch * l, ckk), w, (ckk, 1), &cols, (batch * l, 1));
        let e = self.epilogue;
        let out = to_batch_major(&y, (cout, batch, l), |co, v| e.apply(v + b[co]));
        *self.cols.lock().unwrap_or_else(|p| p.into_inner()) = Some(cols);
        Ok((CpuStorage::F32(out), Shape::from((batch, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, cin, h, wd) = x.dims4()?;
        let (cout, _, k, _) = w.dims4()?;
        let (_, _, ho, wo) = y.dims4()?;
        let (l, ckk, n) = (ho * wo, cin * k * k, batch * ho * wo);
        let (g, db) = epilogue_grad(y, grad, self.epilogue, cout, l)?;
        let g = to_channel_major(&g, (batch, cout, l)); // [Cout, B·L]
                                                        // The forward pass's columns, or the same recomputed.
        let kept = self.cols.lock().unwrap_or_else(|p| p.into_inner()).take();
        let cols = match kept {
            Some(cols) if cols.len() == ckk * n => cols,
            _ => with_f32(x, "conv2d: x", |xv| Ok(unfold_cpu(xv, (batch, cin, h, wd), self.geom)?.0))?,
        };
        // dW [Cout, Cin·k·k] = g · colsᵀ
        let dw = fused::matmul((cout, ckk, n), &g, (n, 1), &cols, (1, n));
        drop(cols);
        let dx = if x.track_op() {
            with_f32(w, "conv2d: w", |wv| {
                // dcols [Cin·k·k, B·L] = Wᵀ · g, folded back onto the input.
                let dcols = fused::matmul((ckk, n, cout), wv, (1, ckk), &g, (n, 1));
                Ok(Some(fold_cpu(&dcols, &[ckk, n], self.geom, (h, wd))?.0))
            })?
        } else {
            None
        };
        let sink = self.sink.as_ref();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, (batch, cin, h, wd), x.device())).transpose()?,
            SideGrads::give(sink, w, dw)?,
            SideGrads::give(sink, b, db)?,
        ))
    }
}

impl candle_core::CustomOp3 for ConvTranspose2dAct {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, cin, h, wd) = xl.shape().dims4()?;
        let (wcin, cout, k, k2) = wl.shape().dims4()?;
        if wcin != cin || k != k2 || k != self.geom.kernel || bl.dims() != [cout] {
            bail!(
                "conv_transpose2d: weight {:?} / bias {:?} do not fit an input of {cin} channels",
                wl.dims(),
                bl.dims()
            )
        }
        let (s, p) = (self.geom.stride, self.geom.pad);
        let out = |n: usize| match n.checked_sub(1).map(|m| m * s + k).and_then(|m| m.checked_sub(2 * p)) {
            Some(m) if m > 0 => Ok(m),
            _ => bail!("conv_transpose2d: an input side of {n} gives an empty output"),
        };
        let (ho, wo) = (out(h)?, out(wd)?);
        let (x, w, b) = (fused::f32s(xs, xl, "x")?, fused::f32s(ws, wl, "w")?, fused::f32s(bs, bl, "b")?);
        let n = batch * h * wd;
        let ckk = cout * k * k;
        let xt = to_channel_major(x, (batch, cin, h * wd)); // [Cin, B·H·W]
                                                            // cols [Cout·k·k, B·H·W] = Wᵀ · x, W viewed as [Cin, Cout·k·k].
        let cols = fused::matmul((ckk, n, cin), w, (1, ckk), &xt, (n, 1));
        let (mut y, _) = fold_cpu(&cols, &[ckk, n], self.geom, (ho, wo))?; // [B, Cout, Ho, Wo]
        let (e, l) = (self.epilogue, ho * wo);
        for (i, plane) in y.chunks_exact_mut(l).enumerate() {
            let bias = b[i % cout];
            for v in plane {
                *v = e.apply(*v + bias);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((batch, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, cin, h, wd) = x.dims4()?;
        let (_, cout, k, _) = w.dims4()?;
        let (_, _, ho, wo) = y.dims4()?;
        let (n, ckk) = (batch * h * wd, cout * k * k);
        let (g, db) = epilogue_grad(y, grad, self.epilogue, cout, ho * wo)?;
        let (gcols, _) = unfold_cpu(&g, (batch, cout, ho, wo), self.geom)?; // [Cout·k·k, B·H·W]
        let dw = with_f32(x, "conv_transpose2d: x", |xv| {
            let xt = to_channel_major(xv, (batch, cin, h * wd));
            // dW [Cin, Cout·k·k] = x · gcolsᵀ
            Ok(fused::matmul((cin, ckk, n), &xt, (n, 1), &gcols, (1, n)))
        })?;
        let dx = if x.track_op() {
            with_f32(w, "conv_transpose2d: w", |wv| {
                // dx [Cin, B·H·W] = W · gcols, back to [B, Cin, H, W].
                let dxt = fused::matmul((cin, n, ckk), wv, (ckk, 1), &gcols, (n, 1));
                Ok(Some(to_batch_major(&dxt, (cin, batch, h * wd), |_, v| v)))
            })?
        } else {
            None
        };
        let sink = self.sink.as_ref();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, (batch, cin, h, wd), x.device())).transpose()?,
            SideGrads::give(sink, w, dw)?,
            SideGrads::give(sink, b, db)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn rand_tensor(shape: &[usize], rng: &mut StdRng) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Largest difference relative to the larger magnitude (floored at 1, so tiny values compare absolutely).
    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1.0)).fold(0.0, f32::max)
    }

    /// One test shape: `x [batch, cin, h, w]`, `cout` output channels, a `k`×`k` kernel, stride
    /// `s`, padding `p`.
    #[derive(Clone, Copy, Debug)]
    struct Case {
        batch: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        p: usize,
    }

    /// `[batch, cin, cout, h, w, k, s, p]`
    const fn case([batch, cin, cout, h, w, k, s, p]: [usize; 8]) -> Case {
        Case { batch, cin, cout, h, w, k, s, p }
    }

    const CASES: [Case; 7] = [
        case([2, 3, 5, 8, 8, 4, 2, 1]),
        case([3, 1, 4, 28, 28, 4, 2, 1]),
        case([2, 4, 3, 7, 7, 4, 2, 1]),
        case([1, 2, 2, 6, 10, 4, 2, 1]),
        case([2, 3, 4, 9, 7, 3, 1, 1]),
        case([2, 5, 2, 5, 5, 3, 1, 1]),
        case([2, 2, 3, 6, 6, 3, 2, 0]),
    ];

    #[test]
    fn geometry_valid_ranges_match_brute_force() {
        for (k, s, p, n) in
            [(4, 2, 1, 7), (4, 2, 1, 28), (3, 1, 1, 5), (3, 2, 0, 6), (5, 3, 2, 9), (4, 2, 3, 4)]
        {
            let g = Geometry { kernel: k, stride: s, pad: p };
            let out = g.out_len(n).unwrap();
            for j in 0..k {
                let inside: Vec<usize> = (0..out).filter(|o| (o * s + j) >= p && o * s + j - p < n).collect();
                let (lo, hi) = g.valid(j, n, out);
                assert_eq!((lo..hi).collect::<Vec<_>>(), inside, "k {k} s {s} p {p} n {n} j {j}");
            }
        }
    }

    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        // ⟨unfold(x), c⟩ = ⟨x, fold(c)⟩
        let mut rng = StdRng::seed_from_u64(1);
        for &Case { batch: b, cin: c, h, w, k, s, p, .. } in &CASES {
            let g = Geometry { kernel: k, stride: s, pad: p };
            let x = rand_tensor(&[b, c, h, w], &mut rng);
            let u = unfold(&x, g).unwrap();
            let cols = rand_tensor(u.dims(), &mut rng);
            let f = fold(&cols, (h, w), g).unwrap();
            let lhs = (u * &cols).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let rhs = (x * f).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn unfold_matches_a_direct_gather() {
        let mut rng = StdRng::seed_from_u64(2);
        let (b, c, h, w) = (3, 2, 8, 6);
        for g in [Geometry { kernel: 4, stride: 2, pad: 1 }, Geometry { kernel: 3, stride: 1, pad: 1 }] {
            let x = rand_tensor(&[b, c, h, w], &mut rng);
            let cols = unfold(&x, g).unwrap();
            let (ho, wo) = (g.out_len(h).unwrap(), g.out_len(w).unwrap());
            assert_eq!(cols.dims(), &[c * g.kernel * g.kernel, b * ho * wo]);
            let (xv, cv) =
                (x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), cols.to_vec2::<f32>().unwrap());
            let k = g.kernel;
            for (r, row) in cv.iter().enumerate() {
                let (ci, i, j) = (r / (k * k), r / k % k, r % k);
                for (col, &got) in row.iter().enumerate() {
                    let (bi, oh, ow) = (col / (ho * wo), col / wo % ho, col % wo);
                    let ih = (oh * g.stride + i) as isize - g.pad as isize;
                    let iw = (ow * g.stride + j) as isize - g.pad as isize;
                    let want = if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                        0.0
                    } else {
                        xv[((bi * c + ci) * h + ih as usize) * w + iw as usize]
                    };
                    assert_eq!(got, want, "row {r}, column {col}");
                }
            }
        }
    }

    #[test]
    fn conv2d_matches_candle() {
        let mut rng = StdRng::seed_from_u64(3);
        for case in CASES {
            let Case { batch: b, cin, cout, h, w, k, s, p } = case;
            let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
            let wt = Var::from_tensor(&rand_tensor(&[cout, cin, k, k], &mut rng)).unwrap();
            let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
            let ours = conv2d(&x, &wt, Some(&bias), s, p).unwrap();
            let theirs = x
                .conv2d(&wt, p, s, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {case:?}");

            // A random linear functional of the output, so every output position matters.
            let probe = rand_tensor(ours.dims(), &mut rng);
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
                let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {case:?}");
            }
        }
    }

    #[test]
    fn conv_transpose2d_matches_candle() {
        let mut rng = StdRng::seed_from_u64(4);
        for case in CASES {
            let Case { batch: b, cin, cout, h, w, k, s, p } = case;
            let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
            let wt = Var::from_tensor(&rand_tensor(&[cin, cout, k, k], &mut rng)).unwrap();
            let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
            let ours = conv_transpose2d(&x, &wt, Some(&bias), s, p).unwrap();
            let theirs = x
                .conv_transpose2d(&wt, p, 0, s, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {case:?}");

            let probe = rand_tensor(ours.dims(), &mut rng);
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
                let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {case:?}");
            }
        }
    }

    /// The fused ops ([`conv2d_act`], [`conv_transpose2d_act`]) against candle's stock
    /// convolutions plus bias and activation, forward and all three gradients, for every
    /// epilogue; with a plain-data input, no input gradient is formed.
    #[test]
    fn fused_convs_match_candle() {
        let mut rng = StdRng::seed_from_u64(6);
        let stock_act = |t: Tensor, e: Epilogue| match e {
            Epilogue::Identity => t,
            Epilogue::Relu => t.relu().unwrap(),
            Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(&t, fused::LEAKY_SLOPE as f64).unwrap(),
            Epilogue::Tanh => t.tanh().unwrap(),
        };
        for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh] {
            for case in CASES {
                let Case { batch: b, cin, cout, h, w, k, s, p } = case;
                let geom = Geometry { kernel: k, stride: s, pad: p };
                for transpose in [false, true] {
                    let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
                    let wshape = if transpose { [cin, cout, k, k] } else { [cout, cin, k, k] };
                    let wt = Var::from_tensor(&rand_tensor(&wshape, &mut rng)).unwrap();
                    let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
                    let (ours, conv) = if transpose {
                        (
                            conv_transpose2d_act(&x, &wt, &bias, geom, e, None).unwrap(),
                            x.conv_transpose2d(&wt, p, 0, s, 1).unwrap(),
                        )
                    } else {
                        (
                            conv2d_act(&x, &wt, &bias, geom, e, None).unwrap(),
                            x.conv2d(&wt, p, s, 1, 1).unwrap(),
                        )
                    };
                    let theirs =
                        stock_act(conv.broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap(), e);
                    let what = format!("{e:?}, transpose {transpose}, {case:?}");
                    assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {what}");
                    let probe = rand_tensor(ours.dims(), &mut rng);
                    let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                    let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
                        let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                        assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {what}");
                    }
                    let data = x.as_tensor().detach();
                    let y = if transpose {
                        conv_transpose2d_act(&data, &wt, &bias, geom, e, None).unwrap()
                    } else {
                        conv2d_act(&data, &wt, &bias, geom, e, None).unwrap()
                    };
                    let g = y.sum_all().unwrap().backward().unwrap();
                    assert!(g.get(&data).is_none() && g.get(&wt).is_some(), "{what}");
                }
            }
        }
    }

    #[test]
    fn large_inputs_take_the_parallel_path_and_agree() {
        // Big enough for `for_each_chunk` to use rayon (when the pool has two threads or more).
        let mut rng = StdRng::seed_from_u64(5);
        let x = rand_tensor(&[64, 8, 14, 14], &mut rng);
        let w = rand_tensor(&[8, 4, 4, 4], &mut rng);
        let ours = conv_transpose2d(&x, &w, None, 2, 1).unwrap();
        let theirs = x.conv_transpose2d(&w, 1, 0, 2, 1).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4);
        let w = rand_tensor(&[16, 8, 4, 4], &mut rng);
        let ours = conv2d(&x, &w, None, 2, 1).unwrap();
        let theirs = x.conv2d(&w, 1, 2, 1, 1).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let x = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 2, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(conv2d(&x, &w, None, 2, 1).is_err());
        assert!(conv_transpose2d(&x, &w, None, 2, 1).is_err());
        let g = Geometry { kernel: 4, stride: 2, pad: 1 };
        let cols = Tensor::zeros((16, 10), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fold(&cols, (8, 8), g).is_err());
        let cols = Tensor::zeros((15, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fold(&cols, (8, 8), g).is_err());
    }
}
