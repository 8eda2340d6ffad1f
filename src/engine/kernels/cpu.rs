//! Plumbing shared by the CPU kernels: reading a tensor's f32 values and running parts of the
//! work over the pool.

use candle_core::{bail, CpuStorage, Layout, Result, Tensor};
use rayon::prelude::*;

/// A contiguous f32 slice of a tensor's storage.
pub(super) fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fused linear: {what} must be f32") };
    match l.contiguous_offsets() {
        Some((lo, hi)) => Ok(&v[lo..hi]),
        None => bail!("fused linear: {what} must be contiguous"),
    }
}

/// Runs `work` on each item, over the pool when `parallel`.
pub(super) fn for_each_maybe_par<T: Send>(items: Vec<T>, parallel: bool, work: impl Fn(T) + Sync + Send) {
    if parallel {
        items.into_par_iter().for_each(work);
    } else {
        items.into_iter().for_each(work);
    }
}

/// Reads a CPU tensor's contiguous f32 values inside `f`.
pub(super) fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else { bail!("{what}: CPU only") };
    f(f32s(s, l, what)?)
}
