//! The rayon pool a run's maths executes in. The kernels split their work over the pool they
//! run in (`rayon::current_num_threads()`), and so does candle's matmul (vendor/README.md), so
//! a run's thread count is the size of this pool and nothing else: no environment variable is
//! set or read per run.

use crate::engine::error::{EngineError, Result};

/// A pool of `threads` threads for one run's maths, its threads named `genlab-math-N`.
pub fn build(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("genlab-math-{i}"))
        .build()
        .map_err(|e| EngineError::Other(format!("could not start {threads} threads: {e}")))
}

/// Runs `f` in a pool of `threads` threads, built for this call ([`build`]).
pub fn install<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(build(threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_in_a_pool_of_the_given_size() {
        for threads in [1, 3] {
            let seen = install(threads, rayon::current_num_threads).unwrap();
            assert_eq!(seen, threads);
        }
    }
}
