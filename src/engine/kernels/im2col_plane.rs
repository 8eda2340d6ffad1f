//! One plane's im2col / col2im (the inner loops of [`super::im2col`]): portable loops, and
//! AVX-512 ones for f32 where the CPU has it and the rows fit.

use candle_core::Result;

use super::Geometry;

/// The shape of one plane's rearrangement: kernel `k`, stride `s`, padding `p`, an `h × w`
/// plane and its `ho × wo` outputs. The kernel offsets read from (or add into) the plane with a
/// zero border of `p` around it, `hp × wp = (h + 2p) × (w + 2p)`, plus [`ROW_SLACK`] values.
#[derive(Clone, Copy, Debug)]
pub(super) struct Taps {
    k: usize,
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl Taps {
    pub(super) fn new(g: Geometry, h: usize, w: usize) -> Result<Self> {
        Ok(Self { k: g.kernel, s: g.stride, p: g.pad, h, w, ho: g.out_len(h)?, wo: g.out_len(w)? })
    }

    pub(super) fn wp(&self) -> usize {
        self.w + 2 * self.p
    }

    /// Values of the bordered plane: its rows and the slack the vector rows may read past one.
    pub(super) fn padded_len(&self) -> usize {
        (self.h + 2 * self.p) * self.wp() + ROW_SLACK
    }

    /// Whether the vector kernels apply: rows of at most 16 outputs spanning at most 32 inputs.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn vector_rows(&self) -> bool {
        self.wo > 0 && self.wo <= 16 && (self.wo - 1) * self.s < ROW_SLACK
    }

    /// The lengths the kernels rely on: `plane` holds `h·w` values, `cols` `k·k` rows of
    /// `ho·wo` at stride `ld`, `padded` [`Taps::padded_len`]. The output size guarantees
    /// `(ho − 1)·s + k ≤ h + 2p`, so every offset's rows stay inside the bordered plane.
    pub(super) fn check(&self, plane: usize, cols: usize, ld: usize, padded: usize) {
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
pub(super) trait Elem: Copy + Default + std::ops::AddAssign + Send + Sync + 'static {
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
        if t.s == 1 && super::simd::has_avx512f() {
            t.check(plane.len(), out.len(), ld, padded.len());
            // SAFETY: AVX-512F is there; `check` bounds every access (see the function).
            return unsafe { unfold_plane_avx512_s1(out, ld, plane, padded, t) };
        }
        #[cfg(target_arch = "x86_64")]
        if t.vector_rows() && super::simd::has_avx512f() {
            t.check(plane.len(), out.len(), ld, padded.len());
            // SAFETY: AVX-512F is there; `check` bounds every access (see the function).
            return unsafe { unfold_plane_avx512(out, ld, plane, padded, t) };
        }
        unfold_plane_portable(out, ld, plane, padded, t)
    }

    #[inline(always)]
    fn fold_plane(out: &mut [f32], cols: &[f32], ld: usize, acc: &mut [f32], t: Taps) {
        #[cfg(target_arch = "x86_64")]
        if t.s == 1 && super::simd::has_avx512f() {
            t.check(out.len(), cols.len(), ld, acc.len());
            // SAFETY: as above.
            return unsafe { fold_plane_avx512_s1(out, cols, ld, acc, t) };
        }
        #[cfg(target_arch = "x86_64")]
        if t.vector_rows() && super::simd::has_avx512f() {
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
                if s == 1 {
                    // A contiguous copy (memcpy) instead of a strided loop the compiler cannot
                    // vectorise: the 28×28 stride-1 layers of the diffusion U-Net spent ~20% of
                    // a training step in the strided loop.
                    d.copy_from_slice(&row[..wo]);
                } else {
                    (0..wo).for_each(|o| d[o] = row[o * s]);
                }
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
                if s == 1 {
                    // Unit stride: a loop over two slices that the compiler vectorises.
                    row[..wo].iter_mut().zip(v).for_each(|(r, &v)| *r += v);
                } else {
                    (0..wo).for_each(|o| row[o * s] += v[o]);
                }
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

/// Adds `n` f32 values of `src` into `dst` with masked 16-lane vectors.
///
/// # Safety
/// The CPU has AVX-512F; `src` has `n` readable values and `dst` `n` readable and writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn add_f32s(dst: *mut f32, src: *const f32, n: usize) {
    use std::arch::x86_64::*;
    let mut at = 0;
    while at < n {
        let lanes: __mmask16 = if n - at >= 16 { 0xffff } else { ((1u32 << (n - at)) - 1) as u16 };
        // SAFETY: the lanes stay inside `n` values (the caller's promise).
        unsafe {
            let sum = _mm512_add_ps(
                _mm512_maskz_loadu_ps(lanes, dst.add(at)),
                _mm512_maskz_loadu_ps(lanes, src.add(at)),
            );
            _mm512_mask_storeu_ps(dst.add(at), lanes, sum);
        }
        at += 16;
    }
}

/// [`Elem::unfold_plane`] for f32 at stride 1, any row length: every row of an offset is `wo`
/// contiguous values of the bordered plane, copied by masked moves (a `memcpy` call per row of
/// 28 values cost the 28×28 U-Net layers ~9% of a step in call overhead).
///
/// # Safety
/// The CPU has AVX-512F; `t.s == 1`; `t.check(plane.len(), out.len(), ld, padded.len())` passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn unfold_plane_avx512_s1(out: &mut [f32], ld: usize, plane: &[f32], padded: &mut [f32], t: Taps) {
    let Taps { k, p, h, w, ho, wo, .. } = t;
    let wp = t.wp();
    // SAFETY: `check` keeps the border copy inside both planes; at stride 1, `wo = wp − k + 1`,
    // so a row starting at `(o_h + i)·wp + j` (`j < k`, `o_h + i < h + 2p`) ends inside its
    // bordered row; the stores write rows inside `(k·k − 1)·ld + ho·wo`.
    unsafe {
        for r in 0..h {
            copy_f32s(padded.as_mut_ptr().add((r + p) * wp + p), plane.as_ptr().add(r * w), w);
        }
        for i in 0..k {
            for j in 0..k {
                let dst = out.as_mut_ptr().add((i * k + j) * ld);
                for oh in 0..ho {
                    copy_f32s(dst.add(oh * wo), padded.as_ptr().add((oh + i) * wp + j), wo);
                }
            }
        }
    }
}

/// [`Elem::fold_plane`] for f32 at stride 1, the mirror of [`unfold_plane_avx512_s1`].
///
/// # Safety
/// The CPU has AVX-512F; `t.s == 1`; `t.check(out.len(), cols.len(), ld, acc.len())` passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fold_plane_avx512_s1(out: &mut [f32], cols: &[f32], ld: usize, acc: &mut [f32], t: Taps) {
    let Taps { k, p, h, w, ho, wo, .. } = t;
    let wp = t.wp();
    acc.fill(0.0);
    // SAFETY: as in `unfold_plane_avx512_s1`, with reads and writes swapped.
    unsafe {
        for i in 0..k {
            for j in 0..k {
                let src = cols.as_ptr().add((i * k + j) * ld);
                for oh in 0..ho {
                    add_f32s(acc.as_mut_ptr().add((oh + i) * wp + j), src.add(oh * wo), wo);
                }
            }
        }
        for y in 0..h {
            copy_f32s(out.as_mut_ptr().add(y * w), acc.as_ptr().add((y + p) * wp + p), w);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{Case, CASES};

    /// The f32 dispatch (AVX-512 where the CPU has it, the rows fit and
    /// `GENLAB_PORTABLE_KERNELS` is unset) and the portable loops give the same bits, both ways.
    #[test]
    fn f32_paths_agree_with_the_portable_loops() {
        for case in CASES {
            let Case { h, w, k, s, p, .. } = case;
            let t = Taps::new(Geometry { kernel: k, stride: s, pad: p }, h, w).unwrap();
            let ld = t.ho * t.wo + 3; // a stride past the row, as the batched columns have
            let plane: Vec<f32> = (0..h * w).map(|i| (i as f32 * 0.37).sin()).collect();
            let cols_len = (k * k - 1) * ld + t.ho * t.wo;
            let (mut fast, mut slow) = (vec![0.0; cols_len], vec![0.0; cols_len]);
            let mut padded = vec![0.0; t.padded_len()];
            f32::unfold_plane(&mut fast, ld, &plane, &mut padded, t);
            let mut padded = vec![0.0; t.padded_len()];
            unfold_plane_portable(&mut slow, ld, &plane, &mut padded, t);
            assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()), "unfold, {case:?}");

            let cols: Vec<f32> = (0..cols_len).map(|i| (i as f32 * 0.11).cos()).collect();
            let (mut fast, mut slow) = (vec![0.0; h * w], vec![0.0; h * w]);
            f32::fold_plane(&mut fast, &cols, ld, &mut vec![f32::NAN; t.padded_len()], t);
            fold_plane_portable(&mut slow, &cols, ld, &mut vec![f32::NAN; t.padded_len()], t);
            assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()), "fold, {case:?}");
        }
    }
}
