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
//! ([`fusable`]).

use candle_core::backprop::GradStore;
use candle_core::{
    bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor, TensorId, Var,
};
use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::fastmath;

/// The leaky ReLU's slope for negative inputs ([`Activation::LeakyRelu`]).
pub const LEAKY_SLOPE: f32 = 0.2;

/// Parameter gradients that fused ops hand over directly instead of through candle's
/// autograd, which would add each into a fresh zero tensor (a zero-fill and an extra pass over
/// every weight per step). Keyed by the parameter tensor's id; a parameter used twice in one
/// graph gets the sum. After `backward()`, [`SideGrads::drain_into`] moves them into the
/// gradient store so the optimiser sees one set.
#[derive(Clone, Default)]
pub struct SideGrads {
    grads: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<TensorId, Vec<f32>>>>,
    /// While set, nobody wants these parameters' gradients (a GAN's generator step goes back
    /// through the discriminator only for its input gradient): fused layers skip the weight
    /// and bias gradients instead of computing and discarding them.
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SideGrads {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<TensorId, Vec<f32>>> {
        self.grads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Freezes (or thaws) the parameters that hand their gradients here; see the field.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the parameters behind `sink` are frozen (no sink: never).
    pub(super) fn is_frozen(sink: Option<&SideGrads>) -> bool {
        sink.is_some_and(|s| s.frozen.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Hands over `grad` for `param`, or returns it as a tensor for candle when `param` is not
    /// a variable (or there is no sink).
    pub(super) fn give(sink: Option<&SideGrads>, param: &Tensor, grad: Vec<f32>) -> Result<Option<Tensor>> {
        match sink {
            Some(sink) if param.is_variable() => {
                let mut map = sink.lock();
                match map.get_mut(&param.id()) {
                    Some(sum) if sum.len() == grad.len() => {
                        sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g)
                    }
                    _ => {
                        map.insert(param.id(), grad);
                    }
                }
                Ok(None)
            }
            _ => Ok(Some(Tensor::from_vec(grad, param.shape(), param.device())?)),
        }
    }

    /// Forgets every gradient handed over (before a backward pass, or to discard one).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Moves the gradients of `vars` into `grads` (added to any already there).
    pub fn drain_into<'a>(&self, vars: impl Iterator<Item = &'a Var>, grads: &mut GradStore) -> Result<()> {
        let mut map = self.lock();
        for var in vars {
            let t = var.as_tensor();
            if let Some(g) = map.remove(&t.id()) {
                let g = Tensor::from_vec(g, t.shape(), t.device())?;
                let sum = match grads.get(t) {
                    Some(prev) => (prev + g)?,
                    None => g,
                };
                grads.insert(t, sum);
            }
        }
        map.clear();
        Ok(())
    }
}

/// What follows the affine map in a fused layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    Identity,
    Relu,
    LeakyRelu,
    Tanh,
    /// `σ(v)`: pixel values from logits (a GAN generator's output layer).
    Sigmoid,
}

impl Epilogue {
    #[inline(always)]
    pub(super) fn apply(self, v: f32) -> f32 {
        match self {
            Epilogue::Identity => v,
            Epilogue::Relu => v.max(0.0),
            Epilogue::LeakyRelu => {
                if v > 0.0 {
                    v
                } else {
                    LEAKY_SLOPE * v
                }
            }
            Epilogue::Tanh => v.tanh(),
            Epilogue::Sigmoid => fastmath::sigmoid(v),
        }
    }

    /// The derivative at the pre-activation whose output is `y`, times `g`.
    #[inline(always)]
    pub(super) fn grad(self, y: f32, g: f32) -> f32 {
        match self {
            Epilogue::Identity => g,
            Epilogue::Relu => {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            Epilogue::LeakyRelu => {
                if y > 0.0 {
                    g
                } else {
                    LEAKY_SLOPE * g
                }
            }
            Epilogue::Tanh => g * (1.0 - y * y),
            Epilogue::Sigmoid => g * y * (1.0 - y),
        }
    }

    /// `dst[i] = act(pre(src[i]))` for every `i`. The match on the activation is outside the
    /// loop (each arm calls [`Epilogue::apply`] on a constant) so that each arm vectorises:
    /// `apply` per element on a variable compiled to a scalar loop through a jump table (~10%
    /// of a DCGAN step).
    #[inline(always)]
    pub(super) fn map(self, dst: &mut [f32], src: &[f32], pre: impl Fn(f32) -> f32) {
        let n = dst.len().min(src.len());
        let (dst, src) = (&mut dst[..n], &src[..n]);
        macro_rules! each {
            ($e:expr) => {
                (0..n).for_each(|i| dst[i] = $e.apply(pre(src[i])))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
    }

    /// `v = act(pre(v))` for every `v` of `vs` (see [`Epilogue::map`]).
    #[inline(always)]
    pub(super) fn map_in_place(self, vs: &mut [f32], pre: impl Fn(f32) -> f32) {
        macro_rules! each {
            ($e:expr) => {
                vs.iter_mut().for_each(|v| *v = $e.apply(pre(*v)))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
    }

    /// `dst[i] = grad(y[i], g[i])` for every `i` (see [`Epilogue::grad`], [`Epilogue::map`]);
    /// returns `Σ dst`.
    #[inline(always)]
    pub(super) fn grad_into(self, dst: &mut [f32], y: &[f32], g: &[f32]) -> f32 {
        let n = dst.len().min(y.len()).min(g.len());
        let (dst, y, g) = (&mut dst[..n], &y[..n], &g[..n]);
        macro_rules! each {
            ($e:expr) => {
                (0..n).for_each(|i| dst[i] = $e.grad(y[i], g[i]))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
        fastmath::sum(dst)
    }
}

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

/// A contiguous f32 slice of a tensor's storage.
pub(super) fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fused linear: {what} must be f32") };
    match l.contiguous_offsets() {
        Some((lo, hi)) => Ok(&v[lo..hi]),
        None => bail!("fused linear: {what} must be contiguous"),
    }
}

/// gemm's threads: as many as the tensor maths is given (`RAYON_NUM_THREADS`).
pub(super) fn threads() -> Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `acc`: an `[m, n]` product over `k` into `dst`
/// with row stride `dst_rs`, each operand given by its row and column strides, on `threads`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    threads: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n, "gemm: destination too small");
    if k == 0 {
        if !acc {
            dst.chunks_mut(dst_rs).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs, "gemm: left operand too small");
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs, "gemm: right operand too small");
    // SAFETY: the asserts keep every read inside `lhs` and `rhs` and every access to `dst`
    // (row `i < m` at `i·dst_rs`, `n ≤ dst_rs` values) inside `dst`, which `&mut` holds alone.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

/// `dst = lhs · rhs` into fresh memory: the dense `[m, n]` destination (`m·n` values, row
/// stride `n`) needs no zero fill, since gemm writes every value without reading any when it
/// does not accumulate. Returns the now initialised values.
fn gemm_fresh<'a>(
    (m, n, k): (usize, usize, usize),
    dst: &'a mut [MaybeUninit<f32>],
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    threads: Parallelism,
) -> &'a mut [f32] {
    assert_eq!(dst.len(), m * n, "gemm: destination of the wrong size");
    if k == 0 {
        dst.fill(MaybeUninit::new(0.0));
    } else if m > 0 && n > 0 {
        // SAFETY: `[f32]` and `[MaybeUninit<f32>]` have the same layout; gemm only writes
        // through the view (no accumulation, so it reads no destination value).
        let view = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
        gemm_into((m, n, k), view, n, false, lhs, lhs_strides, rhs, rhs_strides, threads);
    }
    // SAFETY: every one of the `m·n` values was written above.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A vector of `len` values written by `fill` into its spare capacity.
///
/// # Safety
/// `fill` writes every one of the `len` values (it does when each chunk of them goes through
/// [`gemm_fresh`]).
unsafe fn fresh_vec(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` values (the caller's promise).
    unsafe { v.set_len(len) };
    v
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
    let mut tiled_cols = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        tiled_cols = cols / BLOCK * BLOCK;
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

/// How many parts the rows of a row loss over `rows × cols` values are cut into: one per
/// thread of the pool, or one below 32 K values.
fn row_loss_parts(rows: usize, cols: usize) -> usize {
    if rows * cols < 1 << 15 {
        return 1;
    }
    rayon::current_num_threads().clamp(1, rows.max(1))
}

/// Runs `work` on each item, over the pool when `parallel`.
fn for_each_maybe_par<T: Send>(items: Vec<T>, parallel: bool, work: impl Fn(T) + Sync + Send) {
    if parallel {
        items.into_par_iter().for_each(work);
    } else {
        items.into_iter().for_each(work);
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

/// The per-row reconstruction losses of [`row_loss`], between logits `l` and targets `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLoss {
    /// Binary cross-entropy from logits, `softplus(l) − x·l` (never overflows).
    BceWithLogits,
    /// `(σ(l) − x)²`.
    SquaredError,
}

/// `Σ_j loss(l[b, j], x[b, j])` per row: `[B, D], [B, D] → [B]`, one pass forward and one
/// backward (the stock ops take seven passes and their gradients for the BCE).
pub fn row_loss(logits: &Tensor, target: &Tensor, kind: RowLoss) -> Result<Tensor> {
    logits.contiguous()?.apply_op2(&target.contiguous()?, RowLossOp { kind })
}

struct RowLossOp {
    kind: RowLoss,
}

impl RowLossOp {
    /// The terms of one row into `out`. Plain index loops free of calls and branches, so that
    /// they vectorise, with the CPU's widest vectors under [`fastmath::with_simd`] (iterator
    /// adaptors are separate functions that would be compiled for the baseline target).
    #[inline(always)]
    fn values(&self, l: &[f32], x: &[f32], out: &mut [f32]) {
        let n = out.len();
        let (l, x) = (&l[..n], &x[..n]);
        match self.kind {
            RowLoss::BceWithLogits => {
                for i in 0..n {
                    out[i] = fastmath::softplus(l[i]) - x[i] * l[i];
                }
            }
            RowLoss::SquaredError => {
                for i in 0..n {
                    let d = fastmath::sigmoid(l[i]) - x[i];
                    out[i] = d * d;
                }
            }
        }
    }

    /// `g·∂/∂l` and, with `dx`, `g·∂/∂x` of every term of one row (`g` the row's upstream
    /// gradient).
    #[inline(always)]
    fn grads(&self, g: f32, l: &[f32], x: &[f32], dl: &mut [f32], dx: Option<&mut [f32]>) {
        let n = dl.len();
        let (l, x) = (&l[..n], &x[..n]);
        match self.kind {
            RowLoss::BceWithLogits => {
                for i in 0..n {
                    dl[i] = g * (fastmath::sigmoid(l[i]) - x[i]);
                }
            }
            RowLoss::SquaredError => {
                for i in 0..n {
                    let s = fastmath::sigmoid(l[i]);
                    dl[i] = g * 2.0 * (s - x[i]) * s * (1.0 - s);
                }
            }
        }
        let Some(dx) = dx else { return };
        let dx = &mut dx[..n];
        match self.kind {
            RowLoss::BceWithLogits => {
                for i in 0..n {
                    dx[i] = -g * l[i];
                }
            }
            RowLoss::SquaredError => {
                for i in 0..n {
                    dx[i] = -g * 2.0 * (fastmath::sigmoid(l[i]) - x[i]);
                }
            }
        }
    }
}

impl candle_core::CustomOp2 for RowLossOp {
    fn name(&self) -> &'static str {
        "fused-row-loss"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[rows, cols] = ll.dims() else { bail!("row loss: logits must be [B, D]") };
        if xl.dims() != ll.dims() {
            bail!("row loss: logits {:?} and targets {:?} differ in shape", ll.dims(), xl.dims())
        }
        let (l, x) = (f32s(ls, ll, "logits")?, f32s(xs, xl, "targets")?);
        let mut out = vec![0f32; rows];
        if cols > 0 {
            // Rows are independent: one part per thread when the batch is large.
            let per = rows.div_ceil(row_loss_parts(rows, cols)).max(1);
            let part = |(p, out): (usize, &mut [f32])| {
                let mut terms = vec![0f32; cols];
                fastmath::with_simd(
                    #[inline(always)]
                    || {
                        for (i, o) in out.iter_mut().enumerate() {
                            let r = p * per + i;
                            let span = r * cols..(r + 1) * cols;
                            self.values(&l[span.clone()], &x[span], &mut terms);
                            *o = fastmath::sum(&terms);
                        }
                    },
                );
            };
            let parts: Vec<_> = out.chunks_mut(per).enumerate().collect();
            for_each_maybe_par(parts, per < rows, part);
        }
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, cols) = logits.dims2()?;
        let grad = grad.contiguous()?;
        let want_x = target.track_op();
        let mut dl = vec![0f32; rows * cols];
        let mut dx = if want_x { vec![0f32; rows * cols] } else { Vec::new() };
        {
            let (gs, gl) = grad.storage_and_layout();
            let (ls, ll) = logits.storage_and_layout();
            let (xs, xl) = target.storage_and_layout();
            let (Storage::Cpu(gs), Storage::Cpu(ls), Storage::Cpu(xs)) = (&*gs, &*ls, &*xs) else {
                bail!("row loss: CPU only")
            };
            let (g, l, x) = (f32s(gs, gl, "grad")?, f32s(ls, ll, "logits")?, f32s(xs, xl, "targets")?);
            if g.len() < rows {
                bail!("row loss: {} upstream gradients for {rows} rows", g.len())
            }
            let per = rows.div_ceil(row_loss_parts(rows, cols)).max(1);
            let chunk = (per * cols).max(1);
            // (first row, dl rows, dx rows or none)
            let mut dxs = dx.chunks_mut(chunk);
            let parts: Vec<_> =
                dl.chunks_mut(chunk).enumerate().map(|(p, d)| (p * per, d, dxs.next())).collect();
            for_each_maybe_par(parts, per < rows, |(r0, dl, mut dx)| {
                fastmath::with_simd(
                    #[inline(always)]
                    || {
                        for (i, dl) in dl.chunks_exact_mut(cols).enumerate() {
                            let r = r0 + i;
                            let span = r * cols..(r + 1) * cols;
                            let dx = dx.as_deref_mut().map(|d| &mut d[i * cols..(i + 1) * cols]);
                            self.grads(g[r], &l[span.clone()], &x[span], dl, dx);
                        }
                    },
                );
            });
        }
        let cpu = Device::Cpu;
        let dx = if want_x { Some(Tensor::from_vec(dx, (rows, cols), &cpu)?) } else { None };
        Ok((Some(Tensor::from_vec(dl, (rows, cols), &cpu)?), dx))
    }
}

/// Batch statistics of one [`batch_norm_act`] call: per-channel mean and (biased) variance.
pub type BatchStats = std::sync::Arc<std::sync::Mutex<(Vec<f32>, Vec<f32>)>>;

/// Training-mode batch normalisation over (B, H, W) per channel followed by an activation, as
/// one op: `act((x − μ) / √(σ² + ε) · γ + β)` for `x [B, C, H, W]`, `γ, β [1, C, 1, 1]`. Returns
/// the output and the batch statistics (for the running averages). The stock ops take a
/// dozen passes, three of them strided reductions over the batch; here the forward pass is
/// three passes (mean, variance, output) and the backward pass two.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    epilogue: Epilogue,
) -> Result<(Tensor, BatchStats)> {
    let stats = BatchStats::default();
    let op = BatchNormOp { eps, epilogue, stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, stats))
}

struct BatchNormOp {
    eps: f32,
    epilogue: Epilogue,
    stats: BatchStats,
}

/// Images per part when `b` images are cut into one contiguous part per thread of the pool,
/// as the fused convolutions do: fixed parts whose sums are added in order, so that results do
/// not depend on which thread ran what.
fn part_images(b: usize) -> usize {
    b.div_ceil(rayon::current_num_threads().clamp(1, b.max(1))).max(1)
}

/// The element-wise sum of the parts' `c` sums, added in part order.
fn sum_in_order(parts: Vec<Vec<f64>>, c: usize) -> Vec<f64> {
    let mut total = vec![0f64; c];
    for p in parts {
        total.iter_mut().zip(&p).for_each(|(t, v)| *t += v);
    }
    total
}

/// `(batch, channels, plane size)` of a `[B, C, H, W]` layout.
fn bn_dims(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        &[b, c, h, w] => Ok((b, c, h * w)),
        _ => bail!("batch norm: expected [B, C, H, W], got {dims:?}"),
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "fused-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, l) = bn_dims(xl.dims())?;
        if gl.shape().elem_count() != c || bl.shape().elem_count() != c {
            bail!("batch norm: γ {:?} and β {:?} must have {c} values", gl.dims(), bl.dims())
        }
        let (x, gamma, beta) = (f32s(xs, xl, "x")?, f32s(gs, gl, "γ")?, f32s(bs, bl, "β")?);
        let n = (b * l).max(1) as f64;
        let mut y = vec![0f32; x.len()];
        let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
        if !x.is_empty() {
            let part = part_images(b) * c * l;
            // Per channel, Σ f(plane) over each part's planes (in memory order, each plane's
            // sum in f32 lanes, the channel's in f64), the parts added in order.
            let channel_sums = |f: &(dyn Fn(&[f32], usize) -> f32 + Sync)| -> Vec<f64> {
                let parts: Vec<Vec<f64>> = x
                    .par_chunks(part)
                    .map(|xs| {
                        fastmath::with_simd(|| {
                            let mut sums = vec![0f64; c];
                            for img in xs.chunks_exact(c * l) {
                                for (ch, (s, p)) in sums.iter_mut().zip(img.chunks_exact(l)).enumerate() {
                                    *s += f(p, ch) as f64;
                                }
                            }
                            sums
                        })
                    })
                    .collect();
                sum_in_order(parts, c)
            };
            let sum = channel_sums(&|p, _| fastmath::sum(p));
            mean.iter_mut().zip(&sum).for_each(|(m, &s)| *m = (s / n) as f32);
            let sq = channel_sums(&|p, ch| {
                let m = mean[ch];
                // Σ (v − m)² in 16 lanes, as `fastmath::sum` does.
                let mut acc = [0f32; 16];
                let whole = p.len() / 16 * 16;
                for i in (0..whole).step_by(16) {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a += (p[i + j] - m) * (p[i + j] - m);
                    }
                }
                let tail: f32 = p[whole..].iter().map(|&v| (v - m) * (v - m)).sum();
                fastmath::sum(&acc) + tail
            });
            var.iter_mut().zip(&sq).for_each(|(v, &s)| *v = (s / n) as f32);
            let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] / (var[ch] + self.eps).sqrt()).collect();
            let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
            let e = self.epilogue;
            y.par_chunks_mut(part).zip(x.par_chunks(part)).for_each(|(ys, xs)| {
                fastmath::with_simd(|| {
                    for (out, img) in ys.chunks_exact_mut(c * l).zip(xs.chunks_exact(c * l)) {
                        for (ch, (o, p)) in out.chunks_exact_mut(l).zip(img.chunks_exact(l)).enumerate() {
                            let (k, t) = (scale[ch], shift[ch]);
                            e.map(o, p, |v| v * k + t);
                        }
                    }
                })
            });
        }
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = (mean, var);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, l) = bn_dims(x.dims())?;
        let (mean, var) = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if mean.len() != c {
            bail!("batch norm: no batch statistics for the backward pass")
        }
        let grad = grad.contiguous()?;
        let n = (b * l).max(1) as f32;
        let mut dx = x.track_op().then(|| vec![0f32; b * c * l]);
        let mut dgamma = vec![0f32; c];
        let mut dbeta = vec![0f32; c];
        {
            let (xs, xl) = x.storage_and_layout();
            let (ys, yl) = y.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (ms, ml) = gamma.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(gs), Storage::Cpu(ms)) =
                (&*xs, &*ys, &*gs, &*ms)
            else {
                bail!("batch norm: CPU only")
            };
            let (xv, yv, gv, gam) =
                (f32s(xs, xl, "x")?, f32s(ys, yl, "y")?, f32s(gs, gl, "grad")?, f32s(ms, ml, "γ")?);
            // dz = dL/d(normalised·γ + β) through the activation, written where dx goes (or
            // into a scratch plane), then dx computed from it in place. Per part of the batch
            // (one per thread), planes in memory order, each plane's sums in f32 lanes and the
            // channel's in f64, the parts' sums added in order.
            let e = self.epilogue;
            let img = c * l;
            let per = part_images(b);
            let part_sums = |first: usize, mut dzs: Option<&mut [f32]>| {
                fastmath::with_simd(|| {
                    let (mut sum_dz, mut sum_dz_dev) = (vec![0f64; c], vec![0f64; c]);
                    let mut scratch = vec![0f32; if dzs.is_some() { 0 } else { l }];
                    let mut dev = vec![0f32; l];
                    for bi in first..(first + per).min(b) {
                        for ch in 0..c {
                            let at = (bi * c + ch) * l;
                            let dz = match dzs.as_deref_mut() {
                                Some(d) => &mut d[(bi - first) * img + ch * l..][..l],
                                None => &mut scratch[..],
                            };
                            sum_dz[ch] += e.grad_into(dz, &yv[at..at + l], &gv[at..at + l]) as f64;
                            let (m, xs) = (mean[ch], &xv[at..at + l]);
                            (0..l).for_each(|i| dev[i] = dz[i] * (xs[i] - m));
                            sum_dz_dev[ch] += fastmath::sum(&dev) as f64;
                        }
                    }
                    (sum_dz, sum_dz_dev)
                })
            };
            let parts: Vec<(Vec<f64>, Vec<f64>)> = match dx.as_mut() {
                Some(dx) if img > 0 => dx
                    .par_chunks_mut(per * img)
                    .enumerate()
                    .map(|(i, d)| part_sums(i * per, Some(d)))
                    .collect(),
                _ => (0..b.div_ceil(per)).into_par_iter().map(|i| part_sums(i * per, None)).collect(),
            };
            let (dz_parts, dev_parts): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
            let (sum_dz, sum_dz_dev) = (sum_in_order(dz_parts, c), sum_in_order(dev_parts, c));
            let inv: Vec<f32> = var.iter().map(|&v| 1.0 / (v + self.eps).sqrt()).collect();
            for ch in 0..c {
                dbeta[ch] = sum_dz[ch] as f32;
                dgamma[ch] = (sum_dz_dev[ch] * inv[ch] as f64) as f32;
            }
            if let Some(dx) = dx.as_mut().filter(|_| img > 0) {
                // dx = γ/σ · (dz − mean(dz) − x̂ · mean(dz · x̂)), x̂ = (x − μ)/σ.
                let coef: Vec<(f32, f32, f32, f32)> = (0..c)
                    .map(|ch| {
                        let m_dz = (sum_dz[ch] / n as f64) as f32;
                        let m_dzx = (sum_dz_dev[ch] * inv[ch] as f64 / n as f64) as f32;
                        (gam[ch] * inv[ch], m_dz, mean[ch], inv[ch] * m_dzx)
                    })
                    .collect();
                dx.par_chunks_mut(img).zip(xv.par_chunks(img)).for_each(|(dimg, ximg)| {
                    fastmath::with_simd(|| {
                        for (ch, (d, xs)) in dimg.chunks_exact_mut(l).zip(ximg.chunks_exact(l)).enumerate() {
                            let (k, m_dz, m, slope) = coef[ch];
                            (0..l).for_each(|i| d[i] = k * (d[i] - m_dz - (xs[i] - m) * slope));
                        }
                    })
                });
            }
        }
        let cpu = Device::Cpu;
        let param_shape = gamma.dims().to_vec();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, x.dims(), &cpu)).transpose()?,
            Some(Tensor::from_vec(dgamma, param_shape.as_slice(), &cpu)?),
            Some(Tensor::from_vec(dbeta, param_shape.as_slice(), &cpu)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

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

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
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

    /// Through a sink, the parameter gradients leave candle's store and come back by
    /// `drain_into` equal to the plain path's, summed over two uses of the same layer.
    #[test]
    fn side_gradients_equal_the_autograd_ones() {
        let x = randn(&[6, 5], 1);
        let w = Var::from_tensor(&randn(&[4, 5], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[4], 3)).unwrap();
        let twice = |sink: Option<&SideGrads>| {
            let h = linear(&x, &w, &b, Epilogue::Tanh, sink).unwrap();
            let h2 = linear(&x.affine(0.5, 0.1).unwrap(), &w, &b, Epilogue::Relu, sink).unwrap();
            (h.sum_all().unwrap() + h2.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap()
        };
        let plain = twice(None);
        let sink = SideGrads::default();
        let mut side = twice(Some(&sink));
        assert!(side.get(&w).is_none() && side.get(&b).is_none());
        sink.drain_into([&w, &b].into_iter(), &mut side).unwrap();
        for v in [&w, &b] {
            assert!(max_diff(plain.get(v).unwrap(), side.get(v).unwrap()) < 1e-5);
        }
        assert!(sink.lock().is_empty());
    }

    #[test]
    fn a_frozen_layer_passes_its_input_gradient_and_skips_its_own() {
        let x = Var::from_tensor(&randn(&[6, 5], 1)).unwrap();
        let w = Var::from_tensor(&randn(&[4, 5], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[4], 3)).unwrap();
        let sink = SideGrads::default();
        let run = || {
            linear(&x, &w, &b, Epilogue::Tanh, Some(&sink)).unwrap().sum_all().unwrap().backward().unwrap()
        };
        let live = run();
        assert_eq!(sink.lock().len(), 2, "w and b handed over");
        sink.clear();
        sink.set_frozen(true);
        let frozen = run();
        sink.set_frozen(false);
        assert!(sink.lock().is_empty(), "a frozen layer hands over nothing");
        assert!(frozen.get(&w).is_none() && frozen.get(&b).is_none());
        assert!(max_diff(live.get(&x).unwrap(), frozen.get(&x).unwrap()) < 1e-6, "same input gradient");
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

    /// A row loss cut into parts over a pool gives exactly the one-thread values and gradients
    /// (each row is summed the same way wherever it runs).
    #[test]
    fn row_losses_over_a_pool_equal_one_thread() {
        let vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for kind in [RowLoss::BceWithLogits, RowLoss::SquaredError] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    assert_eq!(row_loss_parts(67, 784), threads, "one part per thread");
                    let l = Var::from_tensor(&randn(&[67, 784], 1).affine(4.0, 0.0).unwrap()).unwrap();
                    let x = Var::from_tensor(&randn(&[67, 784], 2).affine(0.5, 0.5).unwrap()).unwrap();
                    let up = randn(&[67], 3);
                    let rows = row_loss(&l, &x, kind).unwrap();
                    let g = (&rows * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    (vec(&rows), vec(g.get(&l).unwrap()), vec(g.get(&x).unwrap()))
                })
            };
            let one = run(1);
            for threads in [2, 3] {
                assert_eq!(run(threads), one, "{kind:?}, {threads} threads");
            }
        }
    }

    /// Values and gradients equal the stock-op formulas of `losses.rs`, for both losses, with
    /// the targets a variable and plain data; extreme logits stay finite.
    #[test]
    fn row_losses_match_stock_ops() {
        use crate::engine::models::losses::{bce_with_logits_rows, squared_error_rows};
        for kind in [RowLoss::BceWithLogits, RowLoss::SquaredError] {
            let mut l = randn(&[5, 9], 7).affine(8.0, 0.0).unwrap().to_vec2::<f32>().unwrap();
            l[0][0] = 80.0;
            l[0][1] = -80.0;
            let l = Var::from_tensor(&Tensor::new(l, &Device::Cpu).unwrap()).unwrap();
            let x = Var::from_tensor(&randn(&[5, 9], 8).affine(0.5, 0.5).unwrap()).unwrap();
            let up = randn(&[5], 9);
            let ours = row_loss(&l, &x, kind).unwrap();
            let theirs = match kind {
                RowLoss::BceWithLogits => bce_with_logits_rows(&l, &x).unwrap(),
                RowLoss::SquaredError => squared_error_rows(&l, &x).unwrap(),
            };
            assert!(max_diff(&ours, &theirs) < 1e-4, "{kind:?} forward");
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&l, "logits"), (&x, "targets")] {
                let (a, c) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(max_diff(a, c) < 1e-4, "{kind:?}: grad {name}");
            }
            let plain = x.as_tensor().detach();
            let g = row_loss(&l, &plain, kind).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(g.get(&plain).is_none() && g.get(&l).is_some());
        }
    }

    /// Batch norm + activation against the stock formula (batch statistics, biased variance),
    /// forward, statistics and all three gradients.
    #[test]
    fn batch_norm_matches_stock_ops() {
        // Planes shorter and longer than the 16 summing lanes; the batch cut into 1, 2 and 3
        // parts (one per thread of the pool).
        for (threads, [b, c, h, w]) in
            [(1, [3, 4, 5, 2]), (2, [3, 4, 5, 2]), (2, [5, 3, 6, 6]), (3, [5, 3, 6, 6])]
        {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| batch_norm_case([b, c, h, w]));
        }
    }

    fn batch_norm_case([b, c, h, w]: [usize; 4]) {
        for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh, Epilogue::Sigmoid]
        {
            let x = Var::from_tensor(&randn(&[b, c, h, w], 11).affine(3.0, 1.0).unwrap()).unwrap();
            let gamma = Var::from_tensor(&randn(&[1, c, 1, 1], 12).affine(1.0, 1.5).unwrap()).unwrap();
            let beta = Var::from_tensor(&randn(&[1, c, 1, 1], 13)).unwrap();
            let up = randn(&[b, c, h, w], 14);
            let (ours, stats) = batch_norm_act(&x, &gamma, &beta, 1e-5, e).unwrap();
            let mean = x.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
            let centred = x.broadcast_sub(&mean).unwrap();
            let var = centred
                .sqr()
                .unwrap()
                .mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap();
            let z = centred
                .broadcast_div(&(&var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&gamma)
                .unwrap()
                .broadcast_add(&beta)
                .unwrap();
            let theirs = match e {
                Epilogue::Identity => z,
                Epilogue::Relu => z.relu().unwrap(),
                Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(&z, LEAKY_SLOPE as f64).unwrap(),
                Epilogue::Tanh => z.tanh().unwrap(),
                Epilogue::Sigmoid => candle_nn::ops::sigmoid(&z).unwrap(),
            };
            assert!(max_diff(&ours, &theirs) < 1e-5, "{e:?} forward");
            let (m, v) = stats.lock().unwrap().clone();
            assert!(max_diff(&Tensor::new(m, &Device::Cpu).unwrap(), &mean.flatten_all().unwrap()) < 1e-5);
            assert!(max_diff(&Tensor::new(v, &Device::Cpu).unwrap(), &var.flatten_all().unwrap()) < 1e-4);
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
            for (t, name) in [(&x, "x"), (&gamma, "gamma"), (&beta, "beta")] {
                let (a, c) = (g1.get(t).unwrap(), g2.get(t).unwrap());
                assert!(max_diff(a, c) < 1e-4, "{e:?}: grad {name}");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let x = randn(&[4, 6], 1);
        let w = randn(&[3, 5], 2);
        let b = randn(&[3], 3);
        assert!(linear(&x, &w, &b, Epilogue::Identity, None).is_err());
    }
}
