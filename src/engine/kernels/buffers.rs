//! Buffers of the fused ops without a zero fill: per-thread scratch reused from call to call,
//! and fresh outputs that the op writes in full. Each op used to zero (`vec![0; n]`) its
//! outputs and its per-chunk scratch only to overwrite them: memset and page clearing were
//! ~9% of a diffusion U-Net step and of sampling.

use std::cell::RefCell;
use std::mem::MaybeUninit;

/// At most this many scratch vectors are kept per thread (a conv's backward takes three).
const STASH: usize = 4;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `len` values of scratch, taken from this thread's stash and given back on drop. Its values
/// are unspecified (an earlier use's, or 0): write before reading.
///
/// Taking the vector out of the stash (rather than borrowing it) keeps this sound when rayon
/// runs another op's part on this thread while this one waits in a nested parallel call: that
/// part finds the stash emptier and allocates.
pub(super) struct Scratch {
    v: Vec<f32>,
}

impl Scratch {
    pub(super) fn new(len: usize) -> Self {
        let mut v = FREE.with(|f| f.borrow_mut().pop()).unwrap_or_default();
        if v.len() < len {
            // Only the growth is zeroed; a reused vector keeps its stale values.
            v.resize(len, 0.0);
        }
        v.truncate(len);
        Self { v }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        // `try_with`: a thread being torn down just frees the vector.
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < STASH {
                f.push(v);
            }
        });
    }
}

/// A fresh output of `len` values written by `fill`, without zeroing it first.
///
/// # Safety
/// When `fill` returns `Ok`, it has written every one of the `len` values, and it reads none
/// it has not written (the fused ops' outputs: one value per output position, written once).
pub(super) unsafe fn output<E>(
    len: usize,
    fill: impl FnOnce(&mut [f32]) -> Result<(), E>,
) -> Result<Vec<f32>, E> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    let spare: &mut [MaybeUninit<f32>] = &mut v.spare_capacity_mut()[..len];
    // SAFETY: `[f32]` and `[MaybeUninit<f32>]` have the same layout, and `fill` only writes
    // through the view before any value is read (the caller's promise); on an error the
    // vector is dropped with length 0.
    fill(unsafe { &mut *(spare as *mut [MaybeUninit<f32>] as *mut [f32]) })?;
    // SAFETY: all `len` values were written (the caller's promise).
    unsafe { v.set_len(len) };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_reused_on_the_same_thread_and_sized_as_asked() {
        let first = {
            let mut s = Scratch::new(1000);
            s[999] = 7.0;
            s.as_ptr()
        };
        let again = Scratch::new(500);
        assert_eq!(again.len(), 500);
        assert_eq!(again.as_ptr(), first, "the stashed vector is taken again");
        // A second one while the first is held is a different vector.
        let other = Scratch::new(10);
        assert_ne!(other.as_ptr(), again.as_ptr());
    }

    #[test]
    fn output_keeps_what_fill_wrote_and_passes_errors_on() {
        // SAFETY: the closure writes every value.
        let v = unsafe {
            output::<()>(5, |d| {
                d.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
                Ok(())
            })
        };
        assert_eq!(v, Ok(vec![0.0, 1.0, 2.0, 3.0, 4.0]));
        // SAFETY: on the error no value is read.
        let e = unsafe { output::<&str>(5, |_| Err("bad")) };
        assert_eq!(e, Err("bad"));
    }
}
