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
//! The fused ops ([`conv2d_act`], [`conv_transpose2d_act`]) instead run the same products over
//! chunks of a few images ([`CHUNK_VALUES`]) with reused buffers, and recompute the columns in
//! the backward pass rather than keeping them.
//!
//! candle's autograd adds every gradient into a fresh zero tensor and sums broadcast gradients
//! with a slow strided loop unless the summed dims are the last ones, so the graph here is kept
//! short around the big column tensors and biases are broadcast so that their gradient sums run
//! over trailing dims.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fastmath;
use super::fused::{self, gemm_into, Epilogue, SideGrads};

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
}

/// Below this many column values an op runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

fn parallel(work: usize) -> bool {
    work >= PARALLEL_MIN && rayon::current_num_threads() > 1
}

/// The shape of one plane's rearrangement: kernel `k`, stride `s`, padding `p`, an `h × w`
/// plane and its `ho × wo` outputs. The kernel offsets read from (or add into) the plane with a
/// zero border of `p` around it, `hp × wp = (h + 2p) × (w + 2p)`, plus [`ROW_SLACK`] values.
#[derive(Clone, Copy, Debug)]
struct Taps {
    k: usize,
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl Taps {
    fn new(g: Geometry, h: usize, w: usize) -> Result<Self> {
        Ok(Self { k: g.kernel, s: g.stride, p: g.pad, h, w, ho: g.out_len(h)?, wo: g.out_len(w)? })
    }

    fn wp(&self) -> usize {
        self.w + 2 * self.p
    }

    /// Values of the bordered plane: its rows and the slack the vector rows may read past one.
    fn padded_len(&self) -> usize {
        (self.h + 2 * self.p) * self.wp() + ROW_SLACK
    }

    /// Whether the vector kernels apply: rows of at most 16 outputs spanning at most 32 inputs.
    fn vector_rows(&self) -> bool {
        self.wo > 0 && self.wo <= 16 && (self.wo - 1) * self.s < ROW_SLACK
    }

    /// The lengths the kernels rely on: `plane` holds `h·w` values, `cols` `k·k` rows of
    /// `ho·wo` at stride `ld`, `padded` [`Taps::padded_len`]. The output size guarantees
    /// `(ho − 1)·s + k ≤ h + 2p`, so every offset's rows stay inside the bordered plane.
    fn check(&self, plane: usize, cols: usize, ld: usize, padded: usize) {
        let (k, l) = (self.k, self.ho * self.wo);
        assert!(plane >= self.h * self.w, "rearrangement: plane too short");
        assert!(ld >= l && cols >= (k * k - 1) * ld + l, "rearrangement: columns too short");
        assert!(padded >= self.padded_len(), "rearrangement: bordered plane too short");
        assert!((self.ho.max(1) - 1) * self.s + k <= self.h + 2 * self.p && k <= self.wp());
    }
}

/// Slack after a bordered plane: the vector rows read or write up to 32 values from a row's start.
const ROW_SLACK: usize = 32;

/// The element types of the rearrangements, with their per-plane kernels (f32: AVX-512 where
/// the CPU has it and the rows fit).
trait Elem: Copy + Default + std::ops::AddAssign + Send + Sync + 'static {
    /// im2col of one `h × w` plane: copies it inside `padded` (whose border must be zero), then
    /// `out[(i·k + j)·ld + o_h·wo + o_w] = padded[(o_h·s + i)·wp + j + o_w·s]` for every kernel
    /// offset `(i, j)` and output `(o_h, o_w)`.
    #[inline(always)]
    fn unfold_plane(out: &mut [Self], ld: usize, plane: &[Self], padded: &mut [Self], t: Taps) {
        unfold_plane_portable(out, ld, plane, padded, t)
    }

    /// col2im onto one `h × w` plane, the adjoint of [`Elem::unfold_plane`]: zeroes `acc`, adds
    /// `cols[(i·k + j)·ld + o_h·wo + o_w]` into `acc[(o_h·s + i)·wp + j + o_w·s]`, and writes
    /// the inside of `acc` over `out`.
    #[inline(always)]
    fn fold_plane(out: &mut [Self], cols: &[Self], ld: usize, acc: &mut [Self], t: Taps) {
        fold_plane_portable(out, cols, ld, acc, t)
    }
}

impl Elem for f64 {}

impl Elem for f32 {
    #[inline(always)]
    fn unfold_plane(out: &mut [f32], ld: usize, plane: &[f32], padded: &mut [f32], t: Taps) {
        #[cfg(target_arch = "x86_64")]
        if t.vector_rows() && std::arch::is_x86_feature_detected!("avx512f") {
            t.check(plane.len(), out.len(), ld, padded.len());
            // SAFETY: AVX-512F is there; `check` bounds every access (see the function).
            return unsafe { unfold_plane_avx512(out, ld, plane, padded, t) };
        }
        unfold_plane_portable(out, ld, plane, padded, t)
    }

    #[inline(always)]
    fn fold_plane(out: &mut [f32], cols: &[f32], ld: usize, acc: &mut [f32], t: Taps) {
        #[cfg(target_arch = "x86_64")]
        if t.vector_rows() && std::arch::is_x86_feature_detected!("avx512f") {
            t.check(out.len(), cols.len(), ld, acc.len());
            // SAFETY: as above.
            return unsafe { fold_plane_avx512(out, cols, ld, acc, t) };
        }
        fold_plane_portable(out, cols, ld, acc, t)
    }
}

/// [`Elem::unfold_plane`] one value at a time.
#[inline(always)]
fn unfold_plane_portable<T: Copy>(out: &mut [T], ld: usize, plane: &[T], padded: &mut [T], t: Taps) {
    t.check(plane.len(), out.len(), ld, padded.len());
    let Taps { k, s, p, h, w, ho, wo } = t;
    let wp = t.wp();
    for (r, row) in plane[..h * w].chunks_exact(w.max(1)).enumerate() {
        padded[(r + p) * wp + p..][..w].copy_from_slice(row);
    }
    for i in 0..k {
        for j in 0..k {
            let dst = &mut out[(i * k + j) * ld..][..ho * wo];
            for (oh, d) in dst.chunks_exact_mut(wo.max(1)).enumerate() {
                let row = &padded[(oh * s + i) * wp + j..];
                (0..wo).for_each(|o| d[o] = row[o * s]);
            }
        }
    }
}

/// [`Elem::fold_plane`] one value at a time.
#[inline(always)]
fn fold_plane_portable<T: Copy + Default + std::ops::AddAssign>(
    out: &mut [T],
    cols: &[T],
    ld: usize,
    acc: &mut [T],
    t: Taps,
) {
    t.check(out.len(), cols.len(), ld, acc.len());
    let Taps { k, s, p, h, w, ho, wo } = t;
    let wp = t.wp();
    acc.fill(T::default());
    for i in 0..k {
        for j in 0..k {
            let src = &cols[(i * k + j) * ld..][..ho * wo];
            for (oh, v) in src.chunks_exact(wo.max(1)).enumerate() {
                let row = &mut acc[(oh * s + i) * wp + j..];
                (0..wo).for_each(|o| row[o * s] += v[o]);
            }
        }
    }
    for (y, row) in out[..h * w].chunks_exact_mut(w.max(1)).enumerate() {
        row.copy_from_slice(&acc[(y + p) * wp + p..][..w]);
    }
}

/// Copies `n` f32 values with masked 16-lane moves (no library call for rows of 7–28 values).
///
/// # Safety
/// The CPU has AVX-512F; `src` has `n` readable values and `dst` `n` writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn copy_f32s(dst: *mut f32, src: *const f32, n: usize) {
    use std::arch::x86_64::*;
    let mut at = 0;
    while at < n {
        let lanes: __mmask16 = if n - at >= 16 { 0xffff } else { ((1u32 << (n - at)) - 1) as u16 };
        // SAFETY: the lanes stay inside `n` values (the caller's promise).
        unsafe { _mm512_mask_storeu_ps(dst.add(at), lanes, _mm512_maskz_loadu_ps(lanes, src.add(at))) };
        at += 16;
    }
}

/// [`Elem::unfold_plane`] for f32: the border copy by masked moves, then each row of an offset
/// two vector loads, one two-source permute and one masked store (the stride-2 rows on the
/// presets are 7 and 14 values wide). Per-row copies through intermediate grids, and then
/// AVX-512 gathers from a table, had each made im2col and col2im ~25–30% of a conv_vae step.
///
/// # Safety
/// The CPU has AVX-512F; `t.vector_rows()`; `t.check(plane.len(), out.len(), ld,
/// padded.len())` passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn unfold_plane_avx512(out: &mut [f32], ld: usize, plane: &[f32], padded: &mut [f32], t: Taps) {
    use std::arch::x86_64::*;
    let Taps { k, s, p, h, w, ho, wo } = t;
    let wp = t.wp();
    let mut picks = [0i32; 16];
    for (o, v) in picks.iter_mut().enumerate() {
        *v = (o * s).min(ROW_SLACK - 1) as i32;
    }
    // SAFETY: `check` keeps the border copy inside both planes; rows start at most at
    // `((ho − 1)·s + k − 1)·wp + k − 1 < (h + 2p)·wp` and read 32 values (the slack); the
    // masked stores write `wo` values of rows inside `(k·k − 1)·ld + ho·wo`.
    unsafe {
        for r in 0..h {
            copy_f32s(padded.as_mut_ptr().add((r + p) * wp + p), plane.as_ptr().add(r * w), w);
        }
        let picks = _mm512_loadu_si512(picks.as_ptr().cast());
        let lanes: __mmask16 = ((1u32 << wo) - 1) as u16;
        for i in 0..k {
            for j in 0..k {
                let dst = out.as_mut_ptr().add((i * k + j) * ld);
                for oh in 0..ho {
                    let row = padded.as_ptr().add((oh * s + i) * wp + j);
                    let v = _mm512_permutex2var_ps(_mm512_loadu_ps(row), picks, _mm512_loadu_ps(row.add(16)));
                    _mm512_mask_storeu_ps(dst.add(oh * wo), lanes, v);
                }
            }
        }
    }
}

/// [`Elem::fold_plane`] for f32, the mirror of [`unfold_plane_avx512`]: each row's values are
/// spread to their strided lanes by two permutes and added into two masked vectors.
///
/// # Safety
/// The CPU has AVX-512F; `t.vector_rows()`; `t.check(out.len(), cols.len(), ld, acc.len())`
/// passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fold_plane_avx512(out: &mut [f32], cols: &[f32], ld: usize, acc: &mut [f32], t: Taps) {
    use std::arch::x86_64::*;
    let Taps { k, s, p, h, w, ho, wo } = t;
    let wp = t.wp();
    // Lane q of a row's 32 values takes value q / s when q is a multiple of s.
    let (mut spread, mut hit) = ([0i32; 32], 0u32);
    for o in 0..wo {
        spread[o * s] = o as i32; // o·s < 32: `vector_rows`
        hit |= 1 << (o * s);
    }
    let (lo_hit, hi_hit) = (hit as u16, (hit >> 16) as u16);
    acc.fill(0.0);
    // SAFETY: as in `unfold_plane_avx512`, with reads and writes swapped.
    unsafe {
        let lo_idx = _mm512_loadu_si512(spread.as_ptr().cast());
        let hi_idx = _mm512_loadu_si512(spread.as_ptr().add(16).cast());
        let lanes: __mmask16 = ((1u32 << wo) - 1) as u16;
        for i in 0..k {
            for j in 0..k {
                let src = cols.as_ptr().add((i * k + j) * ld);
                for oh in 0..ho {
                    let v = _mm512_maskz_loadu_ps(lanes, src.add(oh * wo));
                    let d = acc.as_mut_ptr().add((oh * s + i) * wp + j);
                    let lo =
                        _mm512_add_ps(_mm512_maskz_loadu_ps(lo_hit, d), _mm512_permutexvar_ps(lo_idx, v));
                    _mm512_mask_storeu_ps(d, lo_hit, lo);
                    if hi_hit != 0 {
                        let d = d.add(16);
                        let hi =
                            _mm512_add_ps(_mm512_maskz_loadu_ps(hi_hit, d), _mm512_permutexvar_ps(hi_idx, v));
                        _mm512_mask_storeu_ps(d, hi_hit, hi);
                    }
                }
            }
        }
        for y in 0..h {
            copy_f32s(out.as_mut_ptr().add(y * w), acc.as_ptr().add((y + p) * wp + p), w);
        }
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

fn unfold_cpu<T: Elem>(
    x: &[T],
    (b, c, h, w): (usize, usize, usize, usize),
    g: Geometry,
) -> Result<(Vec<T>, Shape)> {
    let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
    let (l, rows) = (ho * wo, c * g.kernel * g.kernel);
    let shape = Shape::from((rows, b * l));
    let mut dst = vec![T::default(); shape.elem_count()];
    if !dst.is_empty() {
        unfold_into(x, (b, c, h, w), g, &mut dst, b * l, true)?;
    }
    Ok((dst, shape))
}

/// im2col of the `b` images of `x` into `dst`, row `r` at `dst[r·ld..][..b·L]` (see [`Unfold`]);
/// every one of those values is written, padding included. With `split`, large inputs spread
/// over the rayon pool.
///
/// Each input plane is copied into a zero-bordered `(H + 2p) × (W + 2p)` plane, from which each
/// kernel offset's `Hout` rows of `Wout` strided values are copied ([`Elem::unfold_plane`]).
fn unfold_into<T: Elem>(
    x: &[T],
    (b, c, h, w): (usize, usize, usize, usize),
    g: Geometry,
    dst: &mut [T],
    ld: usize,
    split: bool,
) -> Result<()> {
    let k = g.kernel;
    let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
    let (l, kk) = (ho * wo, k * k);
    if b * l == 0 || c * kk == 0 {
        return Ok(());
    }
    if ld < b * l || dst.len() < c * kk * ld || x.len() < b * c * h * w {
        bail!("unfold: buffers too small for {b} images of {c}×{h}×{w}")
    }
    let taps = Taps::new(g, h, w)?;
    // The k·k rows of channel `ci`; `padded` keeps its zero border (and slack) between planes.
    let channel = |ci: usize, out: &mut [T], padded: &mut Vec<T>| {
        padded.resize(taps.padded_len(), T::default());
        for bi in 0..b {
            let plane = &x[(bi * c + ci) * h * w..][..h * w];
            T::unfold_plane(&mut out[bi * l..], ld, plane, padded, taps);
        }
    };
    let dst = &mut dst[..c * kk * ld];
    if split && parallel(c * kk * b * l) && c > 1 {
        dst.par_chunks_mut(kk * ld).enumerate().for_each_init(Vec::new, |pd, (ci, out)| channel(ci, out, pd));
    } else {
        let mut pd = Vec::new();
        dst.chunks_mut(kk * ld).enumerate().for_each(|(ci, out)| channel(ci, out, &mut pd));
    }
    Ok(())
}

fn fold_cpu<T: Elem>(
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
    if !dst.is_empty() {
        fold_into(cols, n, (b, c, h, w), g, &mut dst, true)?;
    }
    Ok((dst, (b, c, h, w).into()))
}

/// col2im: the columns of `b` images (row `r` at `cols[r·ld..][..b·L]`) summed onto their pixels,
/// written over `dst` `[b, c, h, w]` (see [`Fold`]). The mirror of [`unfold_into`]: each
/// kernel offset's rows are added into a zero-bordered plane ([`Elem::fold_plane`]), whose
/// inside is the output. With `split`, large outputs spread over the rayon pool.
fn fold_into<T: Elem>(
    cols: &[T],
    ld: usize,
    (b, c, h, w): (usize, usize, usize, usize),
    g: Geometry,
    dst: &mut [T],
    split: bool,
) -> Result<()> {
    let k = g.kernel;
    let (ho, wo) = (g.out_len(h)?, g.out_len(w)?);
    let (l, kk, hw) = (ho * wo, k * k, h * w);
    if b * c * hw == 0 {
        return Ok(());
    }
    if ld < b * l || cols.len() < (c * kk - 1) * ld + b * l || dst.len() < b * c * hw {
        bail!("fold: buffers too small for {b} images of {c}×{h}×{w}")
    }
    let taps = Taps::new(g, h, w)?;
    let plane = |n: usize, out: &mut [T], acc: &mut Vec<T>| {
        let (bi, ci) = (n / c, n % c);
        acc.resize(taps.padded_len(), T::default());
        T::fold_plane(out, &cols[ci * kk * ld + bi * l..], ld, acc, taps);
    };
    let dst = &mut dst[..b * c * hw];
    if split && parallel(c * kk * b * l) {
        let per_task = PARALLEL_MIN.div_ceil(kk * l).max(1);
        dst.par_chunks_mut(per_task * hw).enumerate().for_each_init(Vec::new, |acc, (n, outs)| {
            for (i, out) in outs.chunks_exact_mut(hw).enumerate() {
                plane(n * per_task + i, out, acc);
            }
        });
    } else {
        let mut acc = Vec::new();
        dst.chunks_exact_mut(hw).enumerate().for_each(|(n, out)| plane(n, out, &mut acc));
    }
    Ok(())
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

/// Reads a CPU tensor's contiguous f32 values inside `f`.
fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else { bail!("{what}: CPU only") };
    f(fused::f32s(s, l, what)?)
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
            fused::threads()
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
        let (ho, wo) = (self.geom.out_len(h)?, self.geom.out_len(wd)?);
        let (l, ckk, img) = (ho * wo, cin * k * k, cin * h * wd);
        let shape = Shape::from((batch, cout, ho, wo));
        let mut out = vec![0f32; shape.elem_count()];
        if shape.elem_count() > 0 {
            let sp = Split::new(ckk * l, batch);
            let (geom, e, threads) = (self.geom, self.epilogue, sp.gemm_threads());
            sp.run(batch, &mut out, cout * l, |first, n, out| {
                let (nb, ld) = (sp.nb, sp.nb * l);
                let mut cols = vec![0f32; ckk * ld]; // [Cin·k·k, ld]
                let mut y = vec![0f32; cout * ld]; // [Cout, ld]
                for c0 in (0..n).step_by(nb) {
                    let (m, b0) = (nb.min(n - c0), first + c0);
                    let xs = &x[b0 * img..][..m * img];
                    unfold_into(xs, (m, cin, h, wd), geom, &mut cols, ld, sp.inner_parallel())?;
                    gemm_into((cout, m * l, ckk), &mut y, ld, false, w, (ckk, 1), &cols, (ld, 1), threads);
                    let outs = out[c0 * cout * l..][..m * cout * l].chunks_exact_mut(cout * l);
                    fastmath::with_simd(|| {
                        for (bi, planes) in outs.enumerate() {
                            for ((co, &bias), plane) in b.iter().enumerate().zip(planes.chunks_exact_mut(l)) {
                                e.map(plane, &y[co * ld + bi * l..][..l], |v| v + bias);
                            }
                        }
                    });
                }
                Ok(())
            })?;
        }
        Ok((CpuStorage::F32(out), shape))
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
        let (l, ckk, img) = (ho * wo, cin * k * k, cin * h * wd);
        let (e, geom) = (self.epilogue, self.geom);
        let want_dx = x.track_op();
        // A frozen layer (a GAN's discriminator in the generator's step) needs no dW, db.
        let want_dw = !SideGrads::is_frozen(self.sink.as_ref());
        let grad = grad.contiguous()?;
        let mut dx = if want_dx { vec![0f32; batch * img] } else { Vec::new() };
        let (mut dw, mut db) = (vec![0f32; cout * ckk], vec![0f32; cout]);
        if batch * l > 0 {
            let parts = with_f32(y, "conv2d: output", |yv| {
                with_f32(&grad, "conv2d: gradient", |gv| {
                    with_f32(x, "conv2d: x", |xv| {
                        with_f32(w, "conv2d: w", |wv| {
                            let sp = Split::new(ckk * l, batch);
                            let threads = sp.gemm_threads();
                            sp.run(batch, &mut dx, img, |first, n, dx| {
                                let (nb, ld) = (sp.nb, sp.nb * l);
                                let mut cols = if want_dw { vec![0f32; ckk * ld] } else { Vec::new() };
                                let mut g = vec![0f32; cout * ld]; // [Cout, ld]
                                let mut dcols = if want_dx { vec![0f32; ckk * ld] } else { Vec::new() };
                                let (mut dw, mut db) = (vec![0f32; cout * ckk], vec![0f32; cout]);
                                for c0 in (0..n).step_by(nb) {
                                    let (m, b0) = (nb.min(n - c0), first + c0);
                                    // g = grad ⊙ act′(y), channel-major, and its per-channel sums.
                                    let (ys, gs) =
                                        (&yv[b0 * cout * l..][..m * cout * l], &gv[b0 * cout * l..]);
                                    fastmath::with_simd(|| {
                                        for (plane, (yp, gp)) in
                                            ys.chunks_exact(l).zip(gs.chunks_exact(l)).enumerate()
                                        {
                                            let (bi, co) = (plane / cout, plane % cout);
                                            db[co] += e.grad_into(&mut g[co * ld + bi * l..][..l], yp, gp);
                                        }
                                    });
                                    if want_dw {
                                        let xs = &xv[b0 * img..][..m * img];
                                        unfold_into(
                                            xs,
                                            (m, cin, h, wd),
                                            geom,
                                            &mut cols,
                                            ld,
                                            sp.inner_parallel(),
                                        )?;
                                        // dW [Cout, Cin·k·k] += g · colsᵀ
                                        gemm_into(
                                            (cout, ckk, m * l),
                                            &mut dw,
                                            ckk,
                                            c0 > 0,
                                            &g,
                                            (ld, 1),
                                            &cols,
                                            (1, ld),
                                            threads,
                                        );
                                    }
                                    if want_dx {
                                        // dcols [Cin·k·k, m·L] = Wᵀ · g, folded back onto the input.
                                        gemm_into(
                                            (ckk, m * l, cout),
                                            &mut dcols,
                                            ld,
                                            false,
                                            wv,
                                            (1, ckk),
                                            &g,
                                            (ld, 1),
                                            threads,
                                        );
                                        let dxs = &mut dx[c0 * img..][..m * img];
                                        fold_into(
                                            &dcols,
                                            ld,
                                            (m, cin, h, wd),
                                            geom,
                                            dxs,
                                            sp.inner_parallel(),
                                        )?;
                                    }
                                }
                                Ok((dw, db))
                            })
                        })
                    })
                })
            })?;
            (dw, db) = sum_parts(parts);
        }
        let dx = if want_dx { Some(Tensor::from_vec(dx, (batch, cin, h, wd), x.device())?) } else { None };
        if !want_dw {
            return Ok((dx, None, None));
        }
        let sink = self.sink.as_ref();
        Ok((dx, SideGrads::give(sink, w, dw)?, SideGrads::give(sink, b, db)?))
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
        let (hw, ckk, lo) = (h * wd, cout * k * k, ho * wo);
        let mut y = vec![0f32; batch * cout * lo]; // [B, Cout, Ho, Wo]
        let e = self.epilogue;
        if hw > 0 && cin > 0 {
            let sp = Split::new(ckk * hw, batch);
            let (geom, threads) = (self.geom, sp.gemm_threads());
            sp.run(batch, &mut y, cout * lo, |first, n, ys| {
                let (nb, ld) = (sp.nb, sp.nb * hw);
                let mut xt = vec![0f32; cin * ld]; // [Cin, ld]
                let mut cols = vec![0f32; ckk * ld]; // [Cout·k·k, ld]
                for c0 in (0..n).step_by(nb) {
                    let (m, b0) = (nb.min(n - c0), first + c0);
                    chunk_to_channel_major(&x[b0 * cin * hw..], (m, cin, hw), &mut xt, ld);
                    // cols [Cout·k·k, m·H·W] = Wᵀ · x, W viewed as [Cin, Cout·k·k].
                    gemm_into((ckk, m * hw, cin), &mut cols, ld, false, w, (1, ckk), &xt, (ld, 1), threads);
                    let ys = &mut ys[c0 * cout * lo..][..m * cout * lo];
                    fold_into(&cols, ld, (m, cout, ho, wo), geom, ys, sp.inner_parallel())?;
                    fastmath::with_simd(|| {
                        for (i, plane) in ys.chunks_exact_mut(lo).enumerate() {
                            let bias = b[i % cout];
                            e.map_in_place(plane, |v| v + bias);
                        }
                    });
                }
                Ok(())
            })?;
        } else {
            for (i, plane) in y.chunks_exact_mut(lo.max(1)).enumerate() {
                let bias = b[i % cout];
                e.map_in_place(plane, |v| v + bias);
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
        let (hw, ckk, lo) = (h * wd, cout * k * k, ho * wo);
        let (e, geom) = (self.epilogue, self.geom);
        let want_dx = x.track_op();
        let grad = grad.contiguous()?;
        let mut dx = if want_dx { vec![0f32; batch * cin * hw] } else { Vec::new() };
        let parts = with_f32(y, "conv_transpose2d: output", |yv| {
            with_f32(&grad, "conv_transpose2d: gradient", |gv| {
                with_f32(x, "conv_transpose2d: x", |xv| {
                    with_f32(w, "conv_transpose2d: w", |wv| {
                        let sp = Split::new(ckk * hw.max(1), batch);
                        let threads = sp.gemm_threads();
                        sp.run(batch, &mut dx, cin * hw, |first, n, dx| {
                            let (nb, ld) = (sp.nb, sp.nb * hw);
                            let mut g = vec![0f32; nb * cout * lo]; // [m, Cout, Ho, Wo]
                            let mut gcols = vec![0f32; ckk * ld]; // [Cout·k·k, ld]
                            let mut xt = vec![0f32; cin * ld]; // [Cin, ld]
                            let mut dxt = if want_dx { vec![0f32; cin * ld] } else { Vec::new() };
                            let (mut dw, mut db) = (vec![0f32; cin * ckk], vec![0f32; cout]);
                            for c0 in (0..n).step_by(nb) {
                                let (m, b0) = (nb.min(n - c0), first + c0);
                                // g = grad ⊙ act′(y) and its per-channel sums.
                                let (ys, gs) =
                                    (&yv[b0 * cout * lo..][..m * cout * lo], &gv[b0 * cout * lo..]);
                                fastmath::with_simd(|| {
                                    let planes = g
                                        .chunks_exact_mut(lo)
                                        .zip(ys.chunks_exact(lo))
                                        .zip(gs.chunks_exact(lo));
                                    for (plane, ((d, yp), gp)) in planes.enumerate() {
                                        db[plane % cout] += e.grad_into(d, yp, gp);
                                    }
                                });
                                if hw == 0 {
                                    continue;
                                }
                                let gm = &g[..m * cout * lo];
                                unfold_into(
                                    gm,
                                    (m, cout, ho, wo),
                                    geom,
                                    &mut gcols,
                                    ld,
                                    sp.inner_parallel(),
                                )?;
                                chunk_to_channel_major(&xv[b0 * cin * hw..], (m, cin, hw), &mut xt, ld);
                                // dW [Cin, Cout·k·k] += x · gcolsᵀ
                                gemm_into(
                                    (cin, ckk, m * hw),
                                    &mut dw,
                                    ckk,
                                    c0 > 0,
                                    &xt,
                                    (ld, 1),
                                    &gcols,
                                    (1, ld),
                                    threads,
                                );
                                if want_dx {
                                    // dx [Cin, m·H·W] = W · gcols, back to [m, Cin, H, W].
                                    gemm_into(
                                        (cin, m * hw, ckk),
                                        &mut dxt,
                                        ld,
                                        false,
                                        wv,
                                        (ckk, 1),
                                        &gcols,
                                        (ld, 1),
                                        threads,
                                    );
                                    let dxs = dx[c0 * cin * hw..][..m * cin * hw].chunks_exact_mut(cin * hw);
                                    for (bi, planes) in dxs.enumerate() {
                                        for (ci, plane) in planes.chunks_exact_mut(hw).enumerate() {
                                            plane.copy_from_slice(&dxt[ci * ld + bi * hw..][..hw]);
                                        }
                                    }
                                }
                            }
                            Ok((dw, db))
                        })
                    })
                })
            })
        })?;
        let (dw, db) = sum_parts(parts);
        let dx = if want_dx { Some(Tensor::from_vec(dx, (batch, cin, h, wd), x.device())?) } else { None };
        let sink = self.sink.as_ref();
        Ok((dx, SideGrads::give(sink, w, dw)?, SideGrads::give(sink, b, db)?))
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

    const CASES: [Case; 8] = [
        case([2, 3, 5, 8, 8, 4, 2, 1]),
        // 20 outputs a row: more than the vector rows take, so f32 runs the portable loops.
        case([1, 2, 3, 6, 40, 4, 2, 1]),
        case([3, 1, 4, 28, 28, 4, 2, 1]),
        case([2, 4, 3, 7, 7, 4, 2, 1]),
        case([1, 2, 2, 6, 10, 4, 2, 1]),
        case([2, 3, 4, 9, 7, 3, 1, 1]),
        case([2, 5, 2, 5, 5, 3, 1, 1]),
        case([2, 2, 3, 6, 6, 3, 2, 0]),
    ];

    /// The f64 rearrangements (the portable loops) and the f32 ones (AVX-512 where the CPU has
    /// it and the rows fit) agree on every test geometry.
    #[test]
    fn f32_and_f64_rearrangements_agree() {
        let mut rng = StdRng::seed_from_u64(6);
        for case in CASES {
            let Case { batch: b, cin: c, h, w, k, s, p, .. } = case;
            let g = Geometry { kernel: k, stride: s, pad: p };
            let x32: Vec<f32> = (0..b * c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let (u32s, shape) = unfold_cpu(&x32, (b, c, h, w), g).unwrap();
            let (u64s, _) = unfold_cpu(&x64, (b, c, h, w), g).unwrap();
            assert!(u32s.iter().zip(&u64s).all(|(&a, &b)| a as f64 == b), "unfold, {case:?}");
            let (f32s, _) = fold_cpu(&u32s, shape.dims(), g, (h, w)).unwrap();
            let (f64s, _) = fold_cpu(&u64s, shape.dims(), g, (h, w)).unwrap();
            let worst = f32s.iter().zip(&f64s).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-5, "fold, {case:?}: {worst}");
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
            Epilogue::Sigmoid => candle_nn::ops::sigmoid(&t).unwrap(),
        };
        for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh, Epilogue::Sigmoid]
        {
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

    /// Batches spanning several chunks of [`CHUNK_VALUES`], the last one partial, cut into one
    /// part per thread of pools of 1, 2 and 3 threads ([`Split`]): the fused convs against
    /// candle's stock ones, forward and all three gradients.
    #[test]
    fn fused_convs_over_several_chunks_and_parts_match_candle() {
        let mut rng = StdRng::seed_from_u64(7);
        let geom = Geometry { kernel: 4, stride: 2, pad: 1 };
        // 16 channels × 4×4 kernel × 14×14 positions = 50176 column values an image: 5 a chunk.
        let (b, cin, cout) = (11, 16, 16);
        let per_image = cin * 16 * 14 * 14;
        assert!(chunk_images(per_image, b) < b);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let sp = pool.install(|| Split::new(per_image, b));
            assert_eq!(sp.parts, threads, "{sp:?}");
            assert!(sp.per_part * sp.parts >= b && sp.nb <= sp.per_part, "{sp:?}");
            if threads < 3 {
                assert!(sp.nb < sp.per_part, "several chunks a part: {sp:?}");
            }
            pool.install(|| several_chunks_case(geom, (b, cin, cout), threads, &mut rng));
        }
    }

    fn several_chunks_case(
        geom: Geometry,
        (b, cin, cout): (usize, usize, usize),
        threads: usize,
        rng: &mut StdRng,
    ) {
        for transpose in [false, true] {
            let (h, wshape) = if transpose { (14, [cin, cout, 4, 4]) } else { (28, [cout, cin, 4, 4]) };
            let x = Var::from_tensor(&rand_tensor(&[b, cin, h, h], rng)).unwrap();
            let wt = Var::from_tensor(&rand_tensor(&wshape, rng)).unwrap();
            let bias = Var::from_tensor(&rand_tensor(&[cout], rng)).unwrap();
            let (ours, conv) = if transpose {
                (
                    conv_transpose2d_act(&x, &wt, &bias, geom, Epilogue::LeakyRelu, None).unwrap(),
                    x.conv_transpose2d(&wt, 1, 0, 2, 1).unwrap(),
                )
            } else {
                (
                    conv2d_act(&x, &wt, &bias, geom, Epilogue::LeakyRelu, None).unwrap(),
                    x.conv2d(&wt, 1, 2, 1, 1).unwrap(),
                )
            };
            let theirs = candle_nn::ops::leaky_relu(
                &conv.broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap(),
                fused::LEAKY_SLOPE as f64,
            )
            .unwrap();
            assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, transpose {transpose}, {threads} threads");
            let probe = rand_tensor(ours.dims(), rng);
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
                let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(
                    max_rel_diff(ga, gb) < 1e-3,
                    "{name} gradient, transpose {transpose}, {threads} threads"
                );
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
