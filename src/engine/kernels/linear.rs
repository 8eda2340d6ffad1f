//! A fully connected layer and its activation as one candle op: `y = act(x Wᵀ + b)`.
//!
//! Through candle's stock ops the same layer is a matmul, a broadcast add and an activation,
//! three passes forward and more backward (each op's gradient, plus candle's zero-filled
//! accumulator for every intermediate). Here the forward pass is one gemm and one pass that adds
//! the bias and applies the activation in place; the backward pass is one pass for the
//! activation's derivative and the bias gradient, and one gemm per needed gradient. The
//! gradient with respect to `x` is skipped when `x` does not depend on a variable (a layer fed
//! by the data), which a stock matmul's backward always computes.
//!
//! The activation's derivative is read from the output (`y > 0` for (leaky) ReLU, `1 − y²` for
//! tanh), so no pre-activation is kept. GELU and SiLU need it and go the stock way
//! (`layers.rs` decides which activations fuse).

use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::cpu::{f32s, for_each_maybe_par};
use super::gemm::{fresh_vec, gemm_fresh, threads};
use super::{fastmath, Epilogue, SideGrads};

/// `act(x Wᵀ + b)` for `x [B, in]`, `w [out, in]`, `b [out]` (f32 on the CPU). With a `sink`,
/// the gradients of `w` and `b` go there ([`SideGrads`]).
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    epilogue: Epilogue,
    sink: Option<&SideGrads>,
) -> Result<Tensor> {
    let op = LinearOp { epilogue, sink: sink.cloned() };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

struct LinearOp {
    epilogue: Epilogue,
    sink: Option<SideGrads>,
}

/// Below this many multiply-adds a fused linear layer runs on the calling thread (about 10 µs
/// of gemm on one core; a rayon hand-over costs a few µs, more when the other thread sleeps).
const LINEAR_PARALLEL_MIN: usize = 1 << 19;

/// How many parts the `rows` of a fused linear layer of `macs` multiply-adds are cut into: one
/// per thread of the pool, or one when the layer is small.
fn linear_parts(rows: usize, macs: usize) -> usize {
    if macs < LINEAR_PARALLEL_MIN {
        return 1;
    }
    rayon::current_num_threads().clamp(1, rows.max(1))
}

/// From this many inputs up, a fused linear layer computes `yᵀ = w · xᵀ` and transposes it
/// ([`transpose_add_bias`]); below, gemm's direct `x · wᵀ` is faster (with few inputs the
/// transposed product's unpacked operand is too short to stream well). At 64 rows here: 784 →
/// 400 and 400 → 784 ran 20–25% faster, 512 → 256 1.9×, 20 → 400 2.8× slower.
const TRANSPOSED_MIN_IN: usize = 64;

/// `dst[r, c] = t[c, r] + b[c]`: `t` is `[cols, rows]`, `dst` (`rows · cols` values) is
/// `[rows, cols]` and is written whole. Returns it, now initialised. Blocks of 16 rows keep the
/// destination lines being filled in L1 while the source is read along its rows.
fn transpose_add_bias<'a>(
    t: &[f32],
    cols: usize,
    b: &[f32],
    dst: &'a mut [MaybeUninit<f32>],
) -> &'a mut [f32] {
    const BLOCK: usize = 16;
    let rows = dst.len() / cols.max(1);
    assert!(
        t.len() == rows * cols && b.len() == cols && dst.len() == rows * cols,
        "transpose: sizes do not fit"
    );
    // Whole 16 × 16 tiles in registers where the CPU has AVX-512; the rest value by value.
    #[cfg(not(target_arch = "x86_64"))]
    let tiled_cols = 0;
    #[cfg(target_arch = "x86_64")]
    let tiled_cols = if super::simd::has_avx512f() { cols / BLOCK * BLOCK } else { 0 };
    #[cfg(target_arch = "x86_64")]
    if tiled_cols > 0 {
        let tiled_rows = rows / BLOCK * BLOCK;
        for r0 in (0..tiled_rows).step_by(BLOCK) {
            for c0 in (0..tiled_cols).step_by(BLOCK) {
                // SAFETY: AVX-512F is there; the tile's 16 rows and columns from (r0, c0) lie
                // inside `rows × cols`, whose sizes were checked above.
                unsafe { transpose_tile_avx512(t, rows, cols, b, dst, r0, c0) };
            }
        }
        // The last `rows % 16` rows of the tiled columns.
        for (c, &bias) in b.iter().enumerate().take(tiled_cols) {
            for r in tiled_rows..rows {
                dst[r * cols + c] = MaybeUninit::new(t[c * rows + r] + bias);
            }
        }
    }
    fastmath::with_simd(|| {
        for r0 in (0..rows).step_by(BLOCK) {
            let n = (rows - r0).min(BLOCK);
            for (c, &bias) in b.iter().enumerate().skip(tiled_cols) {
                let src = &t[c * rows + r0..][..n];
                for (j, &v) in src.iter().enumerate() {
                    dst[(r0 + j) * cols + c] = MaybeUninit::new(v + bias);
                }
            }
        }
    });
    // SAFETY: every (row, column) pair was written above: the tiles, their rows' remainder,
    // and the columns from `tiled_cols` on for every row.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// One 16 × 16 tile of [`transpose_add_bias`], from row `r0` and column `c0` of the destination:
/// sixteen loads, the usual four rounds of unpacks and 128-bit lane shuffles, sixteen stores.
///
/// # Safety
/// The CPU has AVX-512F; `t` is `[cols, rows]`, `dst` `[rows, cols]`, `b` has `cols` values,
/// and `r0 + 16 ≤ rows`, `c0 + 16 ≤ cols`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_tile_avx512(
    t: &[f32],
    rows: usize,
    cols: usize,
    b: &[f32],
    dst: &mut [MaybeUninit<f32>],
    r0: usize,
    c0: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (every load and store): inside the tile, which the caller keeps inside the buffers.
    let mut r: [__m512; 16] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(t.as_ptr().add((c0 + i) * rows + r0)) });
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        u[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        u[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let pd = |a: __m512| _mm512_castps_pd(a);
    for q in (0..16).step_by(4) {
        r[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(u[q]), pd(u[q + 2])));
        r[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(u[q]), pd(u[q + 2])));
        r[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(u[q + 1]), pd(u[q + 3])));
        r[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(u[q + 1]), pd(u[q + 3])));
    }
    for h in [0, 8] {
        for j in h..h + 4 {
            u[j] = _mm512_shuffle_f32x4::<0x88>(r[j], r[j + 4]);
            u[j + 4] = _mm512_shuffle_f32x4::<0xdd>(r[j], r[j + 4]);
        }
    }
    let bias = unsafe { _mm512_loadu_ps(b.as_ptr().add(c0)) };
    for j in 0..8 {
        let (lo, hi) =
            (_mm512_shuffle_f32x4::<0x88>(u[j], u[j + 8]), _mm512_shuffle_f32x4::<0xdd>(u[j], u[j + 8]));
        unsafe {
            _mm512_storeu_ps(dst.as_mut_ptr().add((r0 + j) * cols + c0).cast(), _mm512_add_ps(lo, bias));
            _mm512_storeu_ps(dst.as_mut_ptr().add((r0 + j + 8) * cols + c0).cast(), _mm512_add_ps(hi, bias));
        }
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
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
        let (&[rows, fan_in], &[fan_out, w_in], &[b_len]) = (xl.dims(), wl.dims(), bl.dims()) else {
            bail!("fused linear: expected x [B, in], w [out, in], b [out]")
        };
        if w_in != fan_in || b_len != fan_out {
            bail!("fused linear: x [{rows}, {fan_in}], w [{fan_out}, {w_in}], b [{b_len}] do not fit")
        }
        let (x, w, b) = (f32s(xs, xl, "x")?, f32s(ws, wl, "w")?, f32s(bs, bl, "b")?);
        // Rows cut into one part per thread, each part's product single-threaded and followed by
        // its bias and activation: one hand-over per layer instead of gemm's own splitting
        // followed by a serial epilogue.
        let parts = linear_parts(rows, rows * fan_in * fan_out);
        let per = rows.div_ceil(parts).max(1);
        let threads = if parts > 1 { Parallelism::None } else { threads() };
        let e = self.epilogue;
        // SAFETY: the chunks cover all of `y` and each goes through `gemm_fresh`.
        let y = unsafe {
            fresh_vec(rows * fan_out, |y| {
                let chunks: Vec<_> = y.chunks_mut((per * fan_out).max(1)).enumerate().collect();
                for_each_maybe_par(chunks, parts > 1, |(i, yc)| {
                    let r = yc.len() / fan_out.max(1);
                    let xc = &x[i * per * fan_in..][..r * fan_in];
                    let yc = if fan_in >= TRANSPOSED_MIN_IN {
                        // yᵀ = w · xᵀ, then transposed back with the bias added: gemm then reads
                        // w as it is stored instead of gathering it into panels at a stride of
                        // `in` (this layout's packing is of x, `rows / out` the size).
                        // (Inside the outer `unsafe`: `gemm_fresh` writes all `out · r` values.)
                        let yt = fresh_vec(fan_out * r, |yt| {
                            gemm_fresh((fan_out, r, fan_in), yt, w, (fan_in, 1), xc, (1, fan_in), threads);
                        });
                        transpose_add_bias(&yt, fan_out, b, yc)
                    } else {
                        // y = x · wᵀ: wᵀ[k, n] = w[n, k], so its row stride is 1 and its column stride `in`.
                        let yc =
                            gemm_fresh((r, fan_out, fan_in), yc, xc, (fan_in, 1), w, (1, fan_in), threads);
                        fastmath::with_simd(|| {
                            for row in yc.chunks_exact_mut(fan_out.max(1)) {
                                row.iter_mut().zip(b).for_each(|(v, &bias)| *v += bias);
                            }
                        });
                        yc
                    };
                    fastmath::with_simd(|| {
                        for row in yc.chunks_exact_mut(fan_out.max(1)) {
                            e.map_in_place(row, |v| v);
                        }
                    });
                });
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((rows, fan_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, fan_in) = x.dims2()?;
        let fan_out = w.dim(0)?;
        let grad = grad.contiguous()?;

        // Rows cut into parts as in the forward pass.
        let parts = linear_parts(rows, rows * fan_in * fan_out);
        let (par, per) = (parts > 1, rows.div_ceil(parts).max(1));
        let threads = if par { Parallelism::None } else { threads() };

        // g = dL/d(pre-activation), and the bias gradient (its column sums) in the same pass,
        // per part; the parts' sums are added in part order.
        let e = self.epilogue;
        let cols = fan_out.max(1);
        let mut g = vec![0f32; rows * fan_out];
        let db = {
            let (gs, gl) = grad.storage_and_layout();
            let (ys, yl) = y.storage_and_layout();
            let (Storage::Cpu(gs), Storage::Cpu(ys)) = (&*gs, &*ys) else { bail!("fused linear: CPU only") };
            let (gy, yv) = (f32s(gs, gl, "grad")?, f32s(ys, yl, "y")?);
            let part = |((g, gy), yv): ((&mut [f32], &[f32]), &[f32])| {
                let mut db = vec![0f32; fan_out];
                fastmath::with_simd(|| {
                    for ((g, gy), yv) in
                        g.chunks_exact_mut(cols).zip(gy.chunks_exact(cols)).zip(yv.chunks_exact(cols))
                    {
                        e.grad_into(g, yv, gy);
                        db.iter_mut().zip(g.iter()).for_each(|(d, &g)| *d += g);
                    }
                });
                db
            };
            let chunk = per * cols;
            let dbs: Vec<Vec<f32>> = if par {
                g.par_chunks_mut(chunk)
                    .zip(gy.par_chunks(chunk))
                    .zip(yv.par_chunks(chunk))
                    .map(part)
                    .collect()
            } else {
                vec![part(((&mut g[..], gy), yv))]
            };
            let mut dbs = dbs.into_iter();
            let mut db = dbs.next().unwrap_or_else(|| vec![0f32; fan_out]);
            for d in dbs {
                db.iter_mut().zip(&d).for_each(|(t, v)| *t += v);
            }
            db
        };

        // dW [out, in] = gᵀ · x (unless the layer is frozen) and dx [B, in] = g · w (only when
        // something upstream needs it): the same work each. At N threads they run side by side,
        // each cut into N/2 parts (dW by output rows, dx by batch rows: no sums to merge).
        let want_dw = !SideGrads::is_frozen(self.sink.as_ref());
        let want_dx = x.track_op();
        let mut dx = Vec::new();
        let dw = {
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = w.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ws)) = (&*xs, &*ws) else { bail!("fused linear: CPU only") };
            let (xv, wv) = (f32s(xs, xl, "x")?, f32s(ws, wl, "w")?);
            let split = if want_dw && want_dx { (parts / 2).max(1) } else { parts };
            let (per_o, per_r) = (fan_out.div_ceil(split).max(1), rows.div_ceil(split).max(1));
            let (dw_len, dx_len) =
                (if want_dw { fan_out * fan_in } else { 0 }, if want_dx { rows * fan_in } else { 0 });
            // SAFETY: the chunks of each buffer cover all of it and each goes through `gemm_fresh`.
            unsafe {
                fresh_vec(dw_len, |dw| {
                    dx = fresh_vec(dx_len, |dx| {
                        // (is dW, first output row or batch row, destination)
                        let mut tasks: Vec<(bool, usize, &mut [MaybeUninit<f32>])> = Vec::new();
                        let row = fan_in.max(1);
                        tasks.extend(
                            dw.chunks_mut(per_o * row).enumerate().map(|(i, d)| (true, i * per_o, d)),
                        );
                        tasks.extend(
                            dx.chunks_mut(per_r * row).enumerate().map(|(i, d)| (false, i * per_r, d)),
                        );
                        for_each_maybe_par(tasks, par, |(is_dw, first, dst)| {
                            let n = dst.len() / row;
                            if is_dw {
                                // gᵀ[o, r] = g[r, o]: row stride 1, column stride `out`.
                                let gt = &g[first..];
                                gemm_fresh(
                                    (n, fan_in, rows),
                                    dst,
                                    gt,
                                    (1, fan_out),
                                    xv,
                                    (fan_in, 1),
                                    threads,
                                );
                            } else {
                                let gr = &g[first * fan_out..];
                                gemm_fresh(
                                    (n, fan_in, fan_out),
                                    dst,
                                    gr,
                                    (fan_out, 1),
                                    wv,
                                    (fan_in, 1),
                                    threads,
                                );
                            }
                        });
                    });
                })
            }
        };
        let dw = want_dw.then_some(dw);
        let dx = want_dx.then_some(dx);

        let sink = self.sink.as_ref();
        let (dw, db) = match dw {
            Some(dw) => (SideGrads::give(sink, w, dw)?, SideGrads::give(sink, b, db)?),
            None => (None, None),
        };
        Ok((dx.map(|dx| Tensor::from_vec(dx, (rows, fan_in), &Device::Cpu)).transpose()?, dw, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{max_diff, randn};
    use crate::engine::kernels::LEAKY_SLOPE;
    use candle_core::Var;

    fn stock(x: &Tensor, w: &Tensor, b: &Tensor, e: Epilogue) -> Tensor {
        let h = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap();
        match e {
            Epilogue::Identity => h,
            Epilogue::Relu => h.relu().unwrap(),
            Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(&h, LEAKY_SLOPE as f64).unwrap(),
            Epilogue::Tanh => h.tanh().unwrap(),
            Epilogue::Sigmoid => candle_nn::ops::sigmoid(&h).unwrap(),
        }
    }

    /// The transpose with bias equals the value-by-value definition for shapes with and
    /// without whole 16 × 16 tiles and remainders on either side.
    #[test]
    fn transpose_with_bias_matches_its_definition() {
        for (rows, cols) in [(64, 400), (37, 23), (16, 16), (5, 48), (48, 5), (1, 1), (33, 17)] {
            let t: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
            let b: Vec<f32> = (0..cols).map(|c| c as f32 * 100.0).collect();
            let mut dst = vec![MaybeUninit::new(f32::NAN); rows * cols];
            let out = transpose_add_bias(&t, cols, &b, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[r * cols + c], t[c * rows + r] + b[c], "{rows}x{cols} at ({r}, {c})");
                }
            }
        }
    }

    /// Values and all three gradients equal candle's stock ops, for every epilogue, with `x`
    /// a variable (its gradient needed) and a plain tensor (skipped). From 64 inputs up the
    /// forward pass takes the transposed product ([`TRANSPOSED_MIN_IN`]), here also with rows
    /// that are no multiple of its 16-row blocks and a single output.
    #[test]
    fn matches_stock_ops_forward_and_backward() {
        for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh, Epilogue::Sigmoid]
        {
            for (rows, fan_in, fan_out) in
                [(7, 13, 5), (32, 64, 48), (1, 3, 1), (37, 100, 23), (3, 64, 1), (17, 63, 9)]
            {
                let x = Var::from_tensor(&randn(&[rows, fan_in], 1)).unwrap();
                let w = Var::from_tensor(&randn(&[fan_out, fan_in], 2)).unwrap();
                let b = Var::from_tensor(&randn(&[fan_out], 3)).unwrap();
                let up = randn(&[rows, fan_out], 4); // a weighting so the loss's gradient is not uniform

                let ours = linear(&x, &w, &b, e, None).unwrap();
                let theirs = stock(&x, &w, &b, e);
                assert!(max_diff(&ours, &theirs) < 1e-5, "{e:?} forward");

                let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                for (v, name) in [(&x, "x"), (&w, "w"), (&b, "b")] {
                    let (a, c) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                    assert!(max_diff(a, c) < 1e-4, "{e:?} {rows}x{fan_in}x{fan_out}: grad {name}");
                }
            }
        }
    }

    /// Layers large enough to be cut into parts over a pool (2 and 3 threads, uneven parts)
    /// give the stock ops' values and gradients, with and without the input gradient.
    #[test]
    fn layers_cut_over_a_pool_match_stock_ops() {
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (rows, fan_in, fan_out) in [(129, 96, 80), (100, 70, 91)] {
                for x_var in [true, false] {
                    let xt = randn(&[rows, fan_in], 1);
                    let xv = Var::from_tensor(&xt).unwrap();
                    let x = if x_var { xv.as_tensor().clone() } else { xt };
                    let w = Var::from_tensor(&randn(&[fan_out, fan_in], 2)).unwrap();
                    let b = Var::from_tensor(&randn(&[fan_out], 3)).unwrap();
                    let up = randn(&[rows, fan_out], 4);
                    let (ours, g1) = pool.install(|| {
                        assert_eq!(linear_parts(rows, rows * fan_in * fan_out), threads);
                        let y = linear(&x, &w, &b, Epilogue::LeakyRelu, None).unwrap();
                        let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
                        (y, g)
                    });
                    let theirs = stock(&x, &w, &b, Epilogue::LeakyRelu);
                    let g2 = (&theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    let what = format!("{threads} threads, {rows}x{fan_in}x{fan_out}, x variable: {x_var}");
                    assert!(max_diff(&ours, &theirs) < 1e-4, "{what}: forward");
                    for (v, name) in [(&w, "w"), (&b, "b")] {
                        assert!(
                            max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-3,
                            "{what}: grad {name}"
                        );
                    }
                    match x_var {
                        true => assert!(
                            max_diff(g1.get(&xv).unwrap(), g2.get(&xv).unwrap()) < 1e-3,
                            "{what}: grad x"
                        ),
                        false => assert!(g1.get(&xv).is_none()),
                    }
                }
            }
        }
    }

    #[test]
    fn input_gradient_skipped_for_data() {
        let x = randn(&[4, 6], 1); // not a variable: data
        let w = Var::from_tensor(&randn(&[3, 6], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[3], 3)).unwrap();
        let grads = linear(&x, &w, &b, Epilogue::Relu, None).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let x = randn(&[4, 6], 1);
        let w = randn(&[3, 5], 2);
        let b = randn(&[3], 3);
        assert!(linear(&x, &w, &b, Epilogue::Identity, None).is_err());
    }
}
