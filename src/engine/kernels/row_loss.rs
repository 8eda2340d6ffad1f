//! Per-row reconstruction losses (BCE from logits, squared error of the sigmoid) as one op.

use candle_core::{bail, CpuStorage, Device, Layout, Result, Shape, Storage, Tensor};

use super::cpu::{f32s, for_each_maybe_par};
use super::fastmath;

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

/// How many parts the rows of a row loss over `rows × cols` values are cut into: one per
/// thread of the pool, or one below 32 K values.
fn row_loss_parts(rows: usize, cols: usize) -> usize {
    if rows * cols < 1 << 15 {
        return 1;
    }
    rayon::current_num_threads().clamp(1, rows.max(1))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{max_diff, randn};
    use candle_core::Var;

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

    /// Values and gradients equal the reference path's stock ops, for both losses, with
    /// the targets a variable and plain data; extreme logits stay finite.
    #[test]
    fn row_losses_match_stock_ops() {
        use crate::engine::kernels::reference;
        for kind in [RowLoss::BceWithLogits, RowLoss::SquaredError] {
            let mut l = randn(&[5, 9], 7).affine(8.0, 0.0).unwrap().to_vec2::<f32>().unwrap();
            l[0][0] = 80.0;
            l[0][1] = -80.0;
            let l = Var::from_tensor(&Tensor::new(l, &Device::Cpu).unwrap()).unwrap();
            let x = Var::from_tensor(&randn(&[5, 9], 8).affine(0.5, 0.5).unwrap()).unwrap();
            let up = randn(&[5], 9);
            let ours = row_loss(&l, &x, kind).unwrap();
            let theirs = reference::row_loss(&l, &x, kind).unwrap();
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
}
