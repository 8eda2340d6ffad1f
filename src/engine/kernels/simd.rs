//! Which vector instructions the kernels may use. Every run-time SIMD choice in the kernels asks
//! here, so that `GENLAB_PORTABLE_KERNELS=1` sends all of them down their portable loops: the
//! loops every CPU without AVX-512 / AVX2 runs (an ARM Mac, say), tested on this machine.
//!
//! The switch covers genlab's own kernels only. candle's matmul (the `gemm` crate) picks its own
//! AVX-512 / AVX2 / NEON micro-kernels at run time and has no such switch.

use std::ffi::OsStr;
use std::sync::OnceLock;

/// The environment variable that forces the portable loops (any value but empty or `0`).
pub(super) const PORTABLE_VAR: &str = "GENLAB_PORTABLE_KERNELS";

/// Whether a value of [`PORTABLE_VAR`] asks for the portable loops.
fn asks_portable(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether the SIMD paths may run: false when [`PORTABLE_VAR`] is set. Read once, so that a
/// run never mixes paths.
pub(super) fn simd_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| !asks_portable(std::env::var_os(PORTABLE_VAR).as_deref()))
}

/// AVX-512F, for the hand-written intrinsics.
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx512f() -> bool {
    simd_allowed() && is_x86_feature_detected!("avx512f")
}

/// The AVX-512 subsets (F, BW, DQ, VL) that auto-vectorised loops may be compiled for.
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx512_loops() -> bool {
    simd_allowed()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
}

/// AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx2_fma() -> bool {
    simd_allowed() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_or_zero_value_keeps_simd() {
        assert!(!asks_portable(None));
        assert!(!asks_portable(Some(OsStr::new(""))));
        assert!(!asks_portable(Some(OsStr::new("0"))));
        assert!(asks_portable(Some(OsStr::new("1"))));
        assert!(asks_portable(Some(OsStr::new("yes"))));
    }

    /// Run under `GENLAB_PORTABLE_KERNELS=1` (CI does), this checks that the kernels' paths
    /// really are the portable ones.
    #[test]
    fn the_switch_is_read_from_the_environment() {
        let portable = asks_portable(std::env::var_os(PORTABLE_VAR).as_deref());
        assert_eq!(simd_allowed(), !portable);
        #[cfg(target_arch = "x86_64")]
        if portable {
            assert!(!has_avx512f() && !has_avx512_loops() && !has_avx2_fma());
        }
    }
}
