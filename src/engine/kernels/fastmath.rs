//! `exp`, `ln(1 + x)` and the sigmoid in straight-line f32 arithmetic (Cephes' polynomials),
//! so that loops over them vectorise. The C library's `expf` and `log1pf` are calls the
//! compiler cannot vectorise; in the BCE loss of a 784-pixel VAE they took 17% of a training
//! step. Accuracy: within 2 ulp of the C library on the ranges the losses use (tests below).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `x − n·ln 2` loses nothing: `LN2_HI` has few mantissa bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5·2²³ rounds an f32 of magnitude below 2²² to the nearest
/// integer without a rounding instruction (none before SSE4.1).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x`, for any finite or infinite `x` (results clamp at the normal range: inputs below
/// −87.3 give ≈ 1.2·10⁻³⁸ instead of a subnormal or 0, inputs above 88.3 give ≈ 2.4·10³⁸).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_55, 88.376_26);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((k + 127) as u32) << 23)
}

/// `ln x` for a positive normal `x`.
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    // The mantissa in [0.5, 1).
    let mut m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    // Centre it on 1: m in [√½, √2).
    let small = m < SQRT_HALF;
    e -= small as i32;
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let z = m * m;
    let y = 7.037_683_6e-2;
    let y = y * m - 1.151_461e-1;
    let y = y * m + 1.167_699_9e-1;
    let y = y * m - 1.242_014_1e-1;
    let y = y * m + 1.424_932_3e-1;
    let y = y * m - 1.666_805_8e-1;
    let y = y * m + 2.000_071_4e-1;
    let y = y * m - 2.499_999_4e-1;
    let y = y * m + 3.333_333e-1;
    let y = y * m * z + e * LN2_LO - 0.5 * z;
    m + y + e * LN2_HI
}

/// `ln(1 + t)` for `t` in [0, 1], accurate also for tiny `t`: `u = 1 + t` is rounded, and
/// `ln u · t / (u − 1)` corrects for it (`u − 1` is exact).
#[inline(always)]
pub fn ln_1p_unit(t: f32) -> f32 {
    let u = 1.0 + t;
    let d = u - 1.0;
    if d == 0.0 {
        t
    } else {
        ln_normal(u) * (t / d)
    }
}

/// `softplus(l) = ln(1 + e^l)`, written stably as `max(l, 0) + ln(1 + e^{−|l|})`.
#[inline(always)]
pub fn softplus(l: f32) -> f32 {
    l.max(0.0) + ln_1p_unit(exp(-l.abs()))
}

/// `σ(l) = 1 / (1 + e^{−l})`.
#[inline(always)]
pub fn sigmoid(l: f32) -> f32 {
    1.0 / (1.0 + exp(-l))
}

/// `dst[i] = silu(z) = z · σ(z)` with `z = src[i] · scale + shift`, over `min(len)` values
/// (group norm + SiLU's output). With AVX-512F the quotient is a 14-bit reciprocal estimate
/// refined by one Newton step instead of a division (a `vdivps` per 16 values cost as much as
/// the whole exponential): within a few ulp of [`sigmoid`]'s, but not bit-identical to the
/// portable loop.
pub fn silu_affine(dst: &mut [f32], src: &[f32], scale: f32, shift: f32) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx512f() {
        // SAFETY: AVX-512F is there; the lengths are equal.
        return unsafe { silu_grad_avx512::<false>(dst, src, None, scale, shift) };
    }
    for (o, &v) in dst.iter_mut().zip(src) {
        let z = v * scale + shift;
        *o = z * sigmoid(z);
    }
}

/// `dst[i] = g[i] · silu′(z)`, `silu′(z) = σ(z) · (1 + z · (1 − σ(z)))`, with `z = src[i] ·
/// scale + shift` (group norm + SiLU's backward pass); the reciprocal as in [`silu_affine`].
pub fn silu_grad_affine(dst: &mut [f32], src: &[f32], g: &[f32], scale: f32, shift: f32) {
    let n = dst.len().min(src.len()).min(g.len());
    let (dst, src, g) = (&mut dst[..n], &src[..n], &g[..n]);
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx512f() {
        // SAFETY: AVX-512F is there; the lengths are equal.
        return unsafe { silu_grad_avx512::<true>(dst, src, Some(g), scale, shift) };
    }
    for ((o, &v), &g) in dst.iter_mut().zip(src).zip(g) {
        let z = v * scale + shift;
        let s = sigmoid(z);
        *o = g * (s * (1.0 + z * (1.0 - s)));
    }
}

/// [`silu_affine`] (`GRAD` false) or [`silu_grad_affine`] (`GRAD` true, `g` given) in 16 lanes,
/// [`exp`]'s polynomial and range reduction, the tail under a mask.
///
/// # Safety
/// AVX-512F; `src` and `g` (when given) at least as long as `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_grad_avx512<const GRAD: bool>(
    dst: &mut [f32],
    src: &[f32],
    g: Option<&[f32]>,
    scale: f32,
    shift: f32,
) {
    use std::arch::x86_64::*;
    let n = dst.len();
    let set = _mm512_set1_ps;
    let (sc, sh, one) = (set(scale), set(shift), set(1.0));
    let mut i = 0;
    while i < n {
        let left = n - i;
        let mask: __mmask16 = if left >= 16 { 0xffff } else { (1u16 << left) - 1 };
        // SAFETY: lanes at and past `n` are masked off on every load and store.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let z = _mm512_add_ps(_mm512_mul_ps(v, sc), sh);
            // e^{−z}, as `exp` computes it (the clamp, n = round(x·log₂e), r = x − n·ln 2).
            let x = _mm512_min_ps(
                _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), set(-87.336_55)),
                set(88.376_26),
            );
            let nn = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, set(LOG2E)),
            );
            let r = _mm512_sub_ps(
                _mm512_sub_ps(x, _mm512_mul_ps(nn, set(LN2_HI))),
                _mm512_mul_ps(nn, set(LN2_LO)),
            );
            let mut p = set(1.987_569_1e-4);
            for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
                p = _mm512_fmadd_ps(p, r, set(c));
            }
            let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), one);
            let e = _mm512_scalef_ps(e, nn);
            // σ(z) = 1 / (1 + e^{−z}): the estimate, then s ← s + s·(1 − d·s).
            let d = _mm512_add_ps(one, e);
            let s0 = _mm512_rcp14_ps(d);
            let s = _mm512_fmadd_ps(s0, _mm512_fnmadd_ps(d, s0, one), s0);
            let out = if GRAD {
                let gv = _mm512_maskz_loadu_ps(mask, g.unwrap_or(src).as_ptr().add(i));
                let dz = _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one);
                _mm512_mul_ps(gv, _mm512_mul_ps(s, dz))
            } else {
                _mm512_mul_ps(z, s)
            };
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, out);
        }
        i += 16;
    }
}

/// Runs `f` compiled for the widest vector unit the CPU has (AVX-512, else AVX2), picked at
/// run time: the default x86-64 target only has SSE2. Floating-point results are the same
/// either way (Rust never fuses a multiply and an add on its own), only faster. Elsewhere, and
/// under `GENLAB_PORTABLE_KERNELS`, `f` runs as the target's baseline compiles it.
#[inline(always)]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if super::simd::has_avx512_loops() {
            // SAFETY: the CPU has every feature the function is compiled for (checked above).
            return unsafe { avx512(f) };
        }
        if super::simd::has_avx2_fma() {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `Σ v` over a slice with sixteen independent partial sums (so the loop vectorises; the
/// order differs from a left-to-right sum by rounding only).
#[inline(always)]
pub fn sum(v: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let whole = v.len() / LANES * LANES;
    for i in (0..whole).step_by(LANES) {
        for j in 0..LANES {
            acc[j] += v[i + j];
        }
    }
    let mut total = 0.0;
    for a in acc {
        total += a;
    }
    for &x in &v[whole..] {
        total += x;
    }
    total
}

/// Whether every value of `v` is finite (neither infinite nor NaN). The largest exponent field
/// (an integer max, which vectorises; `all(is_finite)` stops early and ran one value at a time)
/// is all ones exactly when some value is not finite. Call inside [`with_simd`].
#[inline(always)]
pub fn all_finite(v: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    v.chunks(4096).all(|c| c.iter().fold(0u32, |acc, x| acc.max(x.to_bits() & EXP)) != EXP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn all_finite_finds_any_infinity_or_nan() {
        let mut v: Vec<f32> = (0..10_000).map(|i| (i as f32 - 5_000.0) * 1e34).collect();
        v[17] = f32::MAX;
        v[18] = -f32::MIN_POSITIVE / 2.0; // subnormal
        assert!(with_simd(|| all_finite(&v)) && all_finite(&[]));
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN] {
            for at in [0, 4095, 4096, 9_999] {
                let mut w = v.clone();
                w[at] = bad;
                assert!(!with_simd(|| all_finite(&w)), "{bad} at {at}");
            }
        }
    }

    #[test]
    fn exp_matches_the_c_library_within_two_ulp() {
        let mut worst = (0, 0.0);
        for i in 0..=400_000 {
            let x = -87.0 + 175.0 * i as f32 / 400_000.0;
            let u = ulps(exp(x), x.exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1.3e-38 && exp(-1e4) >= 0.0);
        assert!(exp(f32::INFINITY) > 1e38 && exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn ln_1p_matches_the_c_library_on_the_unit_interval() {
        let mut worst = (0, 0.0);
        for i in 0..=400_000 {
            // Log-spaced from 1e-30 to 1, and the edges.
            let t = if i == 0 { 0.0 } else { 10f32.powf(-30.0 + 30.0 * i as f32 / 400_000.0) };
            let u = ulps(ln_1p_unit(t), t.ln_1p());
            if u > worst.0 {
                worst = (u, t);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at t = {}", worst.0, worst.1);
    }

    #[test]
    fn softplus_and_sigmoid_are_accurate_and_finite_at_the_extremes() {
        for i in -2000..=2000 {
            let l = i as f32 * 0.05;
            let reference = l.max(0.0) + (-l.abs()).exp().ln_1p();
            assert!(
                (softplus(l) - reference).abs() <= 2.0 * f32::EPSILON * reference.max(1.0),
                "softplus({l})"
            );
            let s = 1.0 / (1.0 + (-l).exp());
            assert!((sigmoid(l) - s).abs() <= 2.0 * f32::EPSILON, "sigmoid({l})");
        }
        for l in [1e4f32, -1e4, f32::MAX, f32::MIN] {
            assert!(softplus(l).is_finite() && sigmoid(l).is_finite(), "{l}");
        }
        assert!((0.0..1e-37).contains(&softplus(-1e4)), "{}", softplus(-1e4));
        assert_eq!(softplus(1e4), 1e4);
        assert!(sigmoid(1e4) == 1.0 && sigmoid(-1e4) < 1e-37);
    }

    /// The loops give the same bits compiled for the widest vectors as for the baseline (what
    /// `GENLAB_PORTABLE_KERNELS` and CPUs without AVX run): no fused multiply-adds appear.
    #[test]
    fn with_simd_changes_speed_not_results() {
        let v: Vec<f32> = (0..10_007).map(|i| (i as f32 * 0.731).sin() * 30.0).collect();
        let loss = |v: &[f32]| v.iter().map(|&l| softplus(l) - 0.3 * l + sigmoid(l)).collect::<Vec<_>>();
        let (fast, slow) = (with_simd(|| loss(&v)), loss(&v));
        assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(with_simd(|| sum(&fast)).to_bits(), sum(&slow).to_bits());
    }

    /// The vectorised SiLU and its gradient against the scalar formulas (the portable loop),
    /// over the normal range and the extremes, rows of every tail length.
    #[test]
    fn silu_rows_match_the_scalar_formulas() {
        for n in [0usize, 1, 15, 16, 17, 40, 1003] {
            let src: Vec<f32> = (0..n).map(|i| (i as f32 * 0.377).sin() * 25.0).collect();
            let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            for (scale, shift) in [(1.0, 0.0), (0.7, -1.3), (8.0, 3.0), (1e3, 0.0)] {
                let (mut y, mut dy) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                silu_affine(&mut y, &src, scale, shift);
                silu_grad_affine(&mut dy, &src, &g, scale, shift);
                for i in 0..n {
                    let z = src[i] * scale + shift;
                    let s = 1.0 / (1.0 + (-(z as f64)).exp());
                    let (want, dwant) = (z as f64 * s, g[i] as f64 * s * (1.0 + z as f64 * (1.0 - s)));
                    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-6 * b.abs().max(1e-3);
                    assert!(close(y[i], want), "silu({z}) = {} vs {want}", y[i]);
                    // silu′ crosses 0 near z = −1.28, where `1 + z·(1 − σ)` cancels in either
                    // formula: its error is relative to the terms' size, `σ·(1 + |z|)`.
                    let terms = g[i].abs() as f64 * (s * (1.0 + (z as f64).abs())).max(1e-3);
                    assert!(
                        (dy[i] as f64 - dwant).abs() <= 1e-6 * terms,
                        "silu'({z})·{} = {} vs {dwant}",
                        g[i],
                        dy[i]
                    );
                }
            }
        }
        let ext = [1e4f32, -1e4, 88.0, -88.0, -100.0, f32::MAX, f32::MIN];
        let (mut y, mut dy) = (vec![0.0; ext.len()], vec![0.0; ext.len()]);
        silu_affine(&mut y, &ext, 1.0, 0.0);
        silu_grad_affine(&mut dy, &ext, &[1.0; 7], 1.0, 0.0);
        assert!(y.iter().chain(&dy).all(|v| v.is_finite()), "{y:?} {dy:?}");
        assert_eq!((y[0], dy[0]), (1e4, 1.0));
        assert!(y[1].abs() < 1e-30 && dy[1].abs() < 1e-30, "{} {}", y[1], dy[1]);
    }

    #[test]
    fn lane_sum_equals_the_plain_sum_up_to_rounding() {
        for n in [0, 1, 7, 8, 9, 100, 784] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 * 0.1 - 0.4).collect();
            let plain: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((sum(&v) as f64 - plain).abs() < 1e-4, "n = {n}");
        }
    }
}
