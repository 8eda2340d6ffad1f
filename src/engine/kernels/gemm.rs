//! gemm helpers of the fused ops: the thread setting, a strided product into a slice, and
//! products into fresh (uninitialised) memory.

use std::mem::MaybeUninit;

use gemm::Parallelism;

/// gemm's threads: those of the pool the op runs in.
pub(super) fn threads() -> Parallelism {
    match rayon::current_num_threads() {
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
pub(super) fn gemm_fresh<'a>(
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
pub(super) unsafe fn fresh_vec(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` values (the caller's promise).
    unsafe { v.set_len(len) };
    v
}
