//! The 3×3, stride-1, padding-1 convolution (the diffusion U-Net's) as a direct AVX-512 kernel
//! on zero-bordered planes, with no im2col: the forward pass and, with the weights flipped and
//! transposed, the input gradient; and the weight gradient on planes wider than 16.
//!
//! im2col copies every input value 9 times and col2im adds 9 values into each input gradient;
//! with gemm's packing of those columns they were ~40% of a U-Net training step (unfold 12%,
//! fold 13%, packing 12%). Here each image's planes are copied once into a plane with a zero
//! border, `hp × wp = (h + 2) × (w + 2)`, and an output position `o_h·wp + o_w` of the "grid"
//! (rows of `wp`, the last two values of each row unused) reads kernel offset `(i, j)` at
//! `o_h·wp + o_w + i·wp + j`: every offset is a contiguous, shifted run of the bordered plane,
//! so 16 outputs are one unaligned load per offset and input channel. The register block is
//! up to 8 output channels × 3 vectors of 16 positions (24 accumulators), each weight a
//! broadcast operand of its FMAs. The weight gradient ([`weight_grad`]) sums, per output
//! channel and offset, the bordered gradient against the shifted bordered input; the fused
//! conv takes it on wide planes only (see `conv2d.rs`).

use super::Geometry;
use crate::engine::kernels::buffers::Scratch;

/// The one geometry this kernel computes.
#[cfg(target_arch = "x86_64")]
const K3: Geometry = Geometry { kernel: 3, stride: 1, pad: 1 };

/// Output channels per register block at most, and vectors of 16 positions per block.
const CO_MAX: usize = 8;
#[cfg(target_arch = "x86_64")]
const PV_MAX: usize = 3;

/// Whether the direct kernel runs for `geom`: 3×3, stride 1, padding 1, on a CPU with AVX-512F
/// (and `GENLAB_PORTABLE_KERNELS` unset); otherwise the convolution is im2col + gemm.
pub(super) fn applies(geom: Geometry) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        geom == K3 && crate::engine::kernels::simd::has_avx512f()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = geom;
        false
    }
}

/// The bordered planes of an `h × w` image: a plane of `ps` values holds the image at
/// `(r + 1)·wp + c + 1`, zeros around it and after it; a grid plane of `gs` values (a multiple
/// of 16) holds output `(o_h, o_w)` at `o_h·wp + o_w`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Planes {
    h: usize,
    w: usize,
    wp: usize,
    pub(super) ps: usize,
    pub(super) gs: usize,
}

impl Planes {
    pub(super) fn new(h: usize, w: usize) -> Self {
        let wp = w + 2;
        let gs = (h * wp).div_ceil(16) * 16;
        // The last vector of the grid reads offset (2, 2) up to `gs − 1 + 2·wp + 2`.
        Self { h, w, wp, ps: gs + 2 * wp + 2, gs }
    }

    /// Copies `c` planes of `h·w` values, plane `ci` at `src[ci·src_stride..]` with rows of
    /// `w` values `row_stride` apart, into `dst` (`c·ps` values) with zero borders.
    pub(super) fn border(
        &self,
        src: &[f32],
        c: usize,
        (src_stride, row_stride): (usize, usize),
        dst: &mut [f32],
    ) {
        let (h, w, wp) = (self.h, self.w, self.wp);
        let dst = &mut dst[..c * self.ps];
        dst.fill(0.0);
        for (ci, plane) in dst.chunks_exact_mut(self.ps).enumerate() {
            for r in 0..h {
                plane[(r + 1) * wp + 1..][..w].copy_from_slice(&src[ci * src_stride + r * row_stride..][..w]);
            }
        }
    }
}

/// Output-channel blocks `(first, count)` of `c` channels: blocks of [`CO_MAX`], then 4, 2, 1.
fn co_blocks(c: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let left = c - at;
        let n = [CO_MAX, 4, 2, 1].into_iter().find(|&n| n <= left)?;
        at += n;
        Some((at - n, n))
    })
}

/// Weights `[cout, cin, 3, 3]` packed for the kernel: block by block of output channels
/// ([`co_blocks`]), `[cin][9][count]` within a block, so that a block starting at channel `c0`
/// starts at `c0·cin·9`. With `flip`, packs the input gradient's weights instead: `cin` output
/// channels over `cout` inputs, offset `(i, j)` taking `w[co, ci, 2 − i, 2 − j]`.
pub(super) fn pack(w: &[f32], cout: usize, cin: usize, flip: bool) -> Vec<f32> {
    let (outs, ins) = if flip { (cin, cout) } else { (cout, cin) };
    let mut packed = vec![0.0; outs * ins * 9];
    for (c0, n) in co_blocks(outs) {
        let block = &mut packed[c0 * ins * 9..][..n * ins * 9];
        for i in 0..ins {
            for t in 0..9 {
                for c in 0..n {
                    let o = c0 + c;
                    block[(i * 9 + t) * n + c] =
                        if flip { w[(i * cin + o) * 9 + 8 - t] } else { w[(o * cin + i) * 9 + t] };
                }
            }
        }
    }
    packed
}

/// `out[co·h·w + r·w + c] = bias[co] + Σ_ci Σ_(i,j) packed(co, ci, i, j) · planes[ci·ps + (r +
/// i)·wp + c + j]` for every output channel `co < outs` (`out`: `[outs, h, w]`, bias 0 when
/// `None`): `planes` holds `ins` bordered planes ([`Planes::border`]), `packed` comes from
/// [`pack`]. The kernel writes the image rows straight from its registers (the grid's two
/// unused columns dropped), with the bias as the accumulators' start, so no grid buffer and
/// no separate bias pass.
pub(super) fn conv(
    p: &Planes,
    planes: &[f32],
    ins: usize,
    packed: &[f32],
    outs: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let hw = p.h * p.w;
    assert!(planes.len() >= ins * p.ps && packed.len() >= outs * ins * 9 && out.len() >= outs * hw);
    assert!(bias.is_none_or(|b| b.len() >= outs));
    #[cfg(target_arch = "x86_64")]
    if applies(K3) {
        // SAFETY: AVX-512F is there; the asserts bound every block's reads and writes (see `block`).
        return unsafe { conv_avx512(p, planes, ins, packed, outs, bias, out) };
    }
    // Not reached by the fused op (it runs this kernel only where `applies`); kept exact for
    // any caller.
    let offs = offsets(p.wp);
    for co in 0..outs {
        let (c0, n) = co_blocks(outs).find(|&(c0, n)| co < c0 + n).unwrap_or((co, 1));
        for r in 0..p.h {
            for c in 0..p.w {
                let pos = r * p.wp + c;
                let mut acc = bias.map_or(0.0, |b| b[co]);
                for ci in 0..ins {
                    for (t, off) in offs.iter().enumerate() {
                        acc +=
                            packed[c0 * ins * 9 + (ci * 9 + t) * n + co - c0] * planes[ci * p.ps + pos + off];
                    }
                }
                out[co * hw + r * p.w + c] = acc;
            }
        }
    }
}

fn offsets(wp: usize) -> [usize; 9] {
    std::array::from_fn(|t| t / 3 * wp + t % 3)
}

/// Where grid vector `v` (positions `16·v..16·v + 16`) goes in an `h × w` output plane: the
/// mask of its lanes inside the image (not in the two unused columns, not past row `h − 1`) and
/// the output index of its first such lane. Those lanes, in order, are consecutive outputs.
#[cfg(target_arch = "x86_64")]
fn vector_place(p: &Planes, v: usize) -> (u16, usize) {
    let q = 16 * v;
    let mask = (0..16).filter(|&i| (q + i) % p.wp < p.w && q + i < p.h * p.wp).fold(0u16, |m, i| m | 1 << i);
    (mask, (q / p.wp).min(p.h) * p.w + (q % p.wp).min(p.w) * usize::from(q / p.wp < p.h))
}

/// # Safety
/// AVX-512F; the lengths that [`conv`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn conv_avx512(
    p: &Planes,
    planes: &[f32],
    ins: usize,
    packed: &[f32],
    outs: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let offs = offsets(p.wp);
    let nv = p.gs / 16;
    let places: Vec<(u16, usize)> = (0..nv).map(|v| vector_place(p, v)).collect();
    let hw = p.h * p.w;
    let zeros = [0f32; CO_MAX];
    for (c0, n) in co_blocks(outs) {
        let wk = packed[c0 * ins * 9..].as_ptr();
        let dst = out[c0 * hw..].as_mut_ptr();
        let b = bias.map_or(&zeros[..n], |b| &b[c0..c0 + n]);
        let mut v0 = 0;
        while v0 < nv {
            let pv = (nv - v0).min(PV_MAX);
            let (pos, pl) = (v0 * 16, &places[v0..v0 + pv]);
            // SAFETY: a block reads `planes[ci·ps + pos + off ..][..16·pv]` with
            // `pos + 16·pv ≤ gs` and `off ≤ 2·wp + 2`, so below `ci·ps + ps` (`Planes::new`);
            // it reads `n·ins·9` packed weights from its block's start and writes, per channel
            // `c < n`, the lanes of each vector inside the image to `out[(c0 + c)·hw + at..]`,
            // below `(c0 + c + 1)·hw` ([`vector_place`]).
            unsafe {
                macro_rules! go {
                    ($co:literal) => {
                        match pv {
                            3 => block::<$co, 3>(planes.as_ptr(), p.ps, ins, &offs, wk, b, dst, hw, pos, pl),
                            2 => block::<$co, 2>(planes.as_ptr(), p.ps, ins, &offs, wk, b, dst, hw, pos, pl),
                            _ => block::<$co, 1>(planes.as_ptr(), p.ps, ins, &offs, wk, b, dst, hw, pos, pl),
                        }
                    };
                }
                match n {
                    8 => go!(8),
                    4 => go!(4),
                    2 => go!(2),
                    _ => go!(1),
                }
            }
            v0 += pv;
        }
    }
}

/// One register block: `CO` output channels × `PV` vectors of 16 grid positions from `pos`,
/// started at the channels' `bias`, each vector's image lanes compressed and stored at its
/// place (`places`, from [`vector_place`]) in each channel's plane of `hw` outputs.
///
/// # Safety
/// AVX-512F; the reads and writes [`conv_avx512`] states are in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn block<const CO: usize, const PV: usize>(
    planes: *const f32,
    ps: usize,
    ins: usize,
    offs: &[usize; 9],
    wk: *const f32,
    bias: &[f32],
    out: *mut f32,
    hw: usize,
    pos: usize,
    places: &[(u16, usize)],
) {
    use std::arch::x86_64::*;
    let mut acc: [[__m512; PV]; CO] = std::array::from_fn(|c| [_mm512_set1_ps(bias[c]); PV]);
    // SAFETY: the caller's bounds.
    unsafe {
        for ci in 0..ins {
            let src = planes.add(ci * ps + pos);
            let wc = wk.add(ci * 9 * CO);
            for (t, &off) in offs.iter().enumerate() {
                let s = src.add(off);
                let xv: [__m512; PV] = std::array::from_fn(|v| _mm512_loadu_ps(s.add(16 * v)));
                for (c, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*wc.add(t * CO + c));
                    for (a, &x) in row.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(x, wv, *a);
                    }
                }
            }
        }
        for (v, &(mask, at)) in places.iter().enumerate().take(PV) {
            let keep = ((1u32 << mask.count_ones()) - 1) as u16;
            for (c, row) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(out.add(c * hw + at), keep, _mm512_maskz_compress_ps(mask, row[v]));
            }
        }
    }
}

/// The input and weight gradients of a chunk of `m` images of the fused conv's backward pass:
/// `xs` their inputs `[m, ins, h, w]`, `g` the gradient before the conv `[outs, ld]` (image
/// `b`'s plane `co` at `co·ld + b·h·w`), `flipped` the weights [`pack`]ed with `flip`. Adds
/// into `dw` `[outs, ins, 3, 3]` when given; writes `dx` `[m, ins, h, w]` when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn chunk_grads(
    p: &Planes,
    (m, ins, outs): (usize, usize, usize),
    xs: &[f32],
    (g, ld): (&[f32], usize),
    flipped: &[f32],
    dw: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
) {
    let (h, w) = (p.h, p.w);
    let mut gplanes = Scratch::new(m * outs * p.ps);
    for (b, planes) in gplanes.chunks_exact_mut(outs * p.ps).enumerate() {
        p.border(&g[b * h * w..], outs, (ld, w), planes);
    }
    if let Some(dw) = dw {
        let mut xplanes = Scratch::new(m * ins * p.ps);
        for (b, planes) in xplanes.chunks_exact_mut(ins * p.ps).enumerate() {
            p.border(&xs[b * ins * h * w..], ins, (h * w, w), planes);
        }
        weight_grad(p, &xplanes, ins, &gplanes, outs, m, dw);
    }
    if let Some(dx) = dx {
        for (planes, dxi) in gplanes.chunks_exact(outs * p.ps).zip(dx.chunks_exact_mut(ins * h * w)) {
            conv(p, planes, outs, flipped, ins, None, dxi);
        }
    }
}

/// The weight gradient of `m` images: `dw[(co·ins + ci)·9 + (i·3 + j)] += Σ_img Σ_(r,c)
/// g[img, co, r, c] · x[img, ci, r + i − 1, c + j − 1]`. `xplanes` holds each image's `ins`
/// bordered planes of the input and `gplanes` its `outs` bordered planes of the output's
/// gradient ([`Planes::border`]), `ins·ps` and `outs·ps` values per image. A grid position
/// `pos` reads g at `pos + wp + 1` of its bordered plane, where the unused columns and the rows
/// past the image are border zeros, so they add nothing.
pub(super) fn weight_grad(
    p: &Planes,
    xplanes: &[f32],
    ins: usize,
    gplanes: &[f32],
    outs: usize,
    m: usize,
    dw: &mut [f32],
) {
    assert!(
        xplanes.len() >= m * ins * p.ps && gplanes.len() >= m * outs * p.ps && dw.len() >= outs * ins * 9
    );
    #[cfg(target_arch = "x86_64")]
    if applies(K3) {
        // SAFETY: AVX-512F is there; the assert bounds every read (see `dw_block`).
        return unsafe { weight_grad_avx512(p, xplanes, ins, gplanes, outs, m, dw) };
    }
    let offs = offsets(p.wp);
    for img in 0..m {
        for co in 0..outs {
            let gp = &gplanes[(img * outs + co) * p.ps + p.wp + 1..];
            for ci in 0..ins {
                let xp = &xplanes[(img * ins + ci) * p.ps..];
                for (t, off) in offs.iter().enumerate() {
                    dw[(co * ins + ci) * 9 + t] += (0..p.gs).map(|pos| gp[pos] * xp[pos + off]).sum::<f32>();
                }
            }
        }
    }
}

/// # Safety
/// AVX-512F; the lengths that [`weight_grad`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_avx512(
    p: &Planes,
    xplanes: &[f32],
    ins: usize,
    gplanes: &[f32],
    outs: usize,
    m: usize,
    dw: &mut [f32],
) {
    let offs = offsets(p.wp);
    let strides = (ins * p.ps, outs * p.ps, p.ps);
    for (c0, n) in co_blocks(outs) {
        for ci in 0..ins {
            for i in 0..3 {
                let row = [offs[3 * i], offs[3 * i + 1], offs[3 * i + 2]];
                // SAFETY: image `img`'s reads are `gplanes[(img·outs + c0 + c)·ps + wp + 1 +
                // pos..][..16]` and `xplanes[(img·ins + ci)·ps + pos + off..][..16]` with
                // `pos + 16 ≤ gs`, `off ≤ 2·wp + 2`, so inside each plane of
                // `ps ≥ gs + 2·wp + 2` values.
                let sums: [[f32; 3]; CO_MAX] = unsafe {
                    let x0 = xplanes.as_ptr().add(ci * p.ps);
                    let g0 = gplanes.as_ptr().add(c0 * p.ps + p.wp + 1);
                    let nv = p.gs / 16;
                    macro_rules! go {
                        ($co:literal) => {{
                            let s = dw_block::<$co>(x0, g0, strides, row, nv, m);
                            let mut out = [[0.0; 3]; CO_MAX];
                            out[..$co].copy_from_slice(&s);
                            out
                        }};
                    }
                    match n {
                        8 => {
                            let a = dw_block::<4>(x0, g0, strides, row, nv, m);
                            let b = dw_block::<4>(x0, g0.add(4 * p.ps), strides, row, nv, m);
                            let mut out = [[0.0; 3]; CO_MAX];
                            out[..4].copy_from_slice(&a);
                            out[4..].copy_from_slice(&b);
                            out
                        }
                        4 => go!(4),
                        2 => go!(2),
                        _ => go!(1),
                    }
                };
                for (c, s) in sums.iter().enumerate().take(n) {
                    let d = &mut dw[((c0 + c) * ins + ci) * 9 + 3 * i..][..3];
                    d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

/// `CO` output channels' sums over the 3 offsets `row` (one kernel row) of one input channel,
/// all `m` images and `nv` vectors of grid positions, the lanes summed: `[CO][3]`. A kernel row
/// at a time, 4 channels: 12 accumulators; all 9 offsets of 2 channels (18) made LLVM shuffle
/// and spill them every iteration.
///
/// # Safety
/// AVX-512F; the reads [`weight_grad_avx512`] states are in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dw_block<const CO: usize>(
    x0: *const f32,
    g0: *const f32,
    (x_image, g_image, ps): (usize, usize, usize),
    row: [usize; 3],
    nv: usize,
    m: usize,
) -> [[f32; 3]; CO] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 3]; CO];
    // SAFETY: the caller's bounds.
    unsafe {
        for img in 0..m {
            let (xs, gs) = (x0.add(img * x_image), g0.add(img * g_image));
            for v in 0..nv {
                let pos = 16 * v;
                let x = [
                    _mm512_loadu_ps(xs.add(pos + row[0])),
                    _mm512_loadu_ps(xs.add(pos + row[1])),
                    _mm512_loadu_ps(xs.add(pos + row[2])),
                ];
                for (c, a) in acc.iter_mut().enumerate() {
                    let g = _mm512_loadu_ps(gs.add(c * ps + pos));
                    for (a, &x) in a.iter_mut().zip(&x) {
                        *a = _mm512_fmadd_ps(g, x, *a);
                    }
                }
            }
        }
    }
    let mut sums = [[0.0; 3]; CO];
    for (s, a) in sums.iter_mut().zip(&acc) {
        for (s, &a) in s.iter_mut().zip(a) {
            *s = _mm512_reduce_add_ps(a);
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels against the definition of the convolution (f64 sums over the plain image):
    /// forward, flipped as the input gradient (the adjoint: ⟨conv(x), g⟩ = ⟨x, convᵀ(g)⟩), and
    /// the weight gradient,
    /// for channel counts that use every block size and sides that leave partial vectors.
    #[test]
    fn direct_conv_matches_the_definition_and_its_adjoint() {
        let val = |i: usize, s: f32| ((i as f32 * s).sin() * 1.3).fract();
        for (cin, cout, h, w) in [(3, 13, 5, 7), (16, 16, 28, 28), (2, 1, 7, 7), (5, 8, 14, 3), (1, 9, 1, 1)]
        {
            let x: Vec<f32> = (0..cin * h * w).map(|i| val(i, 0.37)).collect();
            let wt: Vec<f32> = (0..cout * cin * 9).map(|i| val(i, 0.91)).collect();
            let p = Planes::new(h, w);
            let mut planes = vec![f32::NAN; cin * p.ps];
            p.border(&x, cin, (h * w, w), &mut planes);
            let bias: Vec<f32> = (0..cout).map(|i| val(i, 0.29)).collect();
            let mut yb = vec![f32::NAN; cout * h * w];
            conv(&p, &planes, cin, &pack(&wt, cout, cin, false), cout, Some(&bias), &mut yb);
            let at = |ci: usize, r: isize, c: isize| -> f64 {
                if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
                    0.0
                } else {
                    x[(ci * h + r as usize) * w + c as usize] as f64
                }
            };
            let mut y = vec![0f32; cout * h * w];
            for co in 0..cout {
                for r in 0..h {
                    let got = &yb[(co * h + r) * w..][..w];
                    for c in 0..w {
                        let mut want = bias[co] as f64;
                        for ci in 0..cin {
                            for t in 0..9 {
                                let (i, j) = ((t / 3) as isize, (t % 3) as isize);
                                want += wt[(co * cin + ci) * 9 + t] as f64
                                    * at(ci, r as isize + i - 1, c as isize + j - 1);
                            }
                        }
                        assert!(
                            (got[c] as f64 - want).abs() < 1e-4,
                            "{cin}→{cout}, {h}×{w}: ({co}, {r}, {c})"
                        );
                        y[(co * h + r) * w + c] = got[c] - bias[co];
                    }
                }
            }
            // The input gradient of ⟨y, g⟩ through the flipped weights.
            let g: Vec<f32> = (0..cout * h * w).map(|i| val(i, 0.53)).collect();
            let mut gplanes = vec![f32::NAN; cout * p.ps];
            p.border(&g, cout, (h * w, w), &mut gplanes);
            let mut dxs = vec![f32::NAN; cin * h * w];
            conv(&p, &gplanes, cout, &pack(&wt, cout, cin, true), cin, None, &mut dxs);
            let lhs: f64 = y.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mut rhs = 0.0;
            for ci in 0..cin {
                for r in 0..h {
                    let dx = &dxs[(ci * h + r) * w..][..w];
                    rhs += (0..w).map(|c| dx[c] as f64 * x[(ci * h + r) * w + c] as f64).sum::<f64>();
                }
            }
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "adjoint, {cin}→{cout}: {lhs} vs {rhs}");

            // The weight gradient of ⟨y, g⟩ over two images (the second one's x and g negated,
            // so its terms equal the first's), added to 0.5: 0.5 + 2·∂⟨y, g⟩/∂w.
            let (xn, gn): (Vec<f32>, Vec<f32>) =
                (x.iter().map(|v| -v).collect(), g.iter().map(|v| -v).collect());
            let mut xp2 = vec![f32::NAN; 2 * cin * p.ps];
            p.border(&x, cin, (h * w, w), &mut xp2);
            p.border(&xn, cin, (h * w, w), &mut xp2[cin * p.ps..]);
            let mut gp2 = vec![f32::NAN; 2 * cout * p.ps];
            p.border(&g, cout, (h * w, w), &mut gp2);
            p.border(&gn, cout, (h * w, w), &mut gp2[cout * p.ps..]);
            let mut dw = vec![0.5f32; cout * cin * 9];
            weight_grad(&p, &xp2, cin, &gp2, cout, 2, &mut dw);
            for co in 0..cout {
                for ci in 0..cin {
                    for t in 0..9 {
                        let (i, j) = ((t / 3) as isize, (t % 3) as isize);
                        let mut want = 0.5;
                        for r in 0..h as isize {
                            for c in 0..w as isize {
                                let gv = g[(co * h + r as usize) * w + c as usize] as f64;
                                want += 2.0 * gv * at(ci, r + i - 1, c + j - 1);
                            }
                        }
                        let got = dw[(co * cin + ci) * 9 + t] as f64;
                        assert!(
                            (got - want).abs() < 1e-3 * want.abs().max(1.0),
                            "dW ({co}, {ci}, {t}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
