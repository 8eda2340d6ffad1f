//! Nearest-neighbour ×2 up-sampling with a direct backward pass.

use candle_core::{bail, CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::buffers::output;
use super::cpu::{f32s, with_f32};

/// `[B, C, H, W] → [B, C, 2H, 2W]`, every pixel repeated over a 2×2 block. candle's own op
/// differentiates through a grouped convolution with a ones kernel (one small im2col per
/// channel), which took a fifth of a U-Net training step; the gradient here is the sum of each
/// 2×2 block.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Upsample2x)
}

struct Upsample2x;

impl CustomOp1 for Upsample2x {
    fn name(&self) -> &'static str {
        "fused-upsample-nearest2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[b, c, h, w] = l.dims() else { bail!("up-sampling: expected [B, C, H, W], got {:?}", l.dims()) };
        let x = f32s(s, l, "x")?;
        // SAFETY: each input plane writes its whole output plane of 4·H·W values once (none
        // when H·W = 0, and then there are no outputs).
        let y = unsafe {
            output::<candle_core::Error>(x.len() * 4, |y| {
                if h * w > 0 {
                    // One input plane → one output plane of 4·H·W.
                    y.par_chunks_mut(4 * h * w).zip(x.par_chunks(h * w)).for_each(|(out, plane)| {
                        for (r, row) in plane.chunks_exact(w).enumerate() {
                            let (top, bottom) = out[4 * r * w..4 * (r + 1) * w].split_at_mut(2 * w);
                            for (pair, &v) in top.chunks_exact_mut(2).zip(row) {
                                pair[0] = v;
                                pair[1] = v;
                            }
                            bottom.copy_from_slice(top);
                        }
                    });
                }
                Ok(())
            })?
        };
        Ok((CpuStorage::F32(y), Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = x.dims4()?;
        let grad = grad.contiguous()?;
        let mut dx = vec![0f32; b * c * h * w];
        with_f32(&grad, "up-sampling grad", |g| {
            if h * w > 0 {
                dx.par_chunks_mut(h * w).zip(g.par_chunks(4 * h * w)).for_each(|(d, plane)| {
                    for (r, drow) in d.chunks_exact_mut(w).enumerate() {
                        let (top, bottom) = plane[4 * r * w..4 * (r + 1) * w].split_at(2 * w);
                        for (j, v) in drow.iter_mut().enumerate() {
                            *v = top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1];
                        }
                    }
                });
            }
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(dx, (b, c, h, w), &Device::Cpu)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{max_diff, randn};
    use candle_core::Var;

    /// Forward and input gradient against candle's `upsample_nearest2d`.
    #[test]
    fn upsample_matches_stock_op() {
        for [b, c, h, w] in [[2, 3, 7, 7], [1, 2, 1, 5], [3, 1, 4, 2]] {
            let x = Var::from_tensor(&randn(&[b, c, h, w], 5)).unwrap();
            let up = randn(&[b, c, 2 * h, 2 * w], 6);
            let ours = upsample_nearest2x(&x).unwrap();
            let theirs = x.upsample_nearest2d(2 * h, 2 * w).unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0);
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5);
        }
    }
}
