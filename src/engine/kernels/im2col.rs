//! im2col and col2im as candle ops (each one's backward is the other), and the rearrangements
//! the fused convolutions run per chunk of images.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::im2col_plane::{Elem, Taps};

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

pub(super) fn parallel(work: usize) -> bool {
    work >= PARALLEL_MIN && rayon::current_num_threads() > 1
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
pub(super) fn unfold_into<T: Elem>(
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
pub(super) fn fold_into<T: Elem>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{rand_tensor, Case, CASES};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
}
