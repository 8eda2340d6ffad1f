//! The fused transposed convolution's forward and backward passes
//! ([`super::ConvTranspose2dAct`]).

use candle_core::{bail, CpuStorage, Layout, Result, Shape, Tensor};

use super::{chunk_to_channel_major, sum_parts, ConvTranspose2dAct, Split};
use crate::engine::kernels::cpu::{f32s, with_f32};
use crate::engine::kernels::gemm::gemm_into;
use crate::engine::kernels::im2col::{fold_into, unfold_into};
use crate::engine::kernels::{fastmath, SideGrads};

impl candle_core::CustomOp3 for ConvTranspose2dAct {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d"
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
        let (batch, cin, h, wd) = xl.shape().dims4()?;
        let (wcin, cout, k, k2) = wl.shape().dims4()?;
        if wcin != cin || k != k2 || k != self.geom.kernel || bl.dims() != [cout] {
            bail!(
                "conv_transpose2d: weight {:?} / bias {:?} do not fit an input of {cin} channels",
                wl.dims(),
                bl.dims()
            )
        }
        let (s, p) = (self.geom.stride, self.geom.pad);
        let out = |n: usize| match n.checked_sub(1).map(|m| m * s + k).and_then(|m| m.checked_sub(2 * p)) {
            Some(m) if m > 0 => Ok(m),
            _ => bail!("conv_transpose2d: an input side of {n} gives an empty output"),
        };
        let (ho, wo) = (out(h)?, out(wd)?);
        let (x, w, b) = (f32s(xs, xl, "x")?, f32s(ws, wl, "w")?, f32s(bs, bl, "b")?);
        let (hw, ckk, lo) = (h * wd, cout * k * k, ho * wo);
        let mut y = vec![0f32; batch * cout * lo]; // [B, Cout, Ho, Wo]
        let e = self.epilogue;
        if hw > 0 && cin > 0 {
            let sp = Split::new(ckk * hw, batch);
            let (geom, threads) = (self.geom, sp.gemm_threads());
            sp.run(batch, &mut y, cout * lo, |first, n, ys| {
                let (nb, ld) = (sp.nb, sp.nb * hw);
                let mut xt = vec![0f32; cin * ld]; // [Cin, ld]
                let mut cols = vec![0f32; ckk * ld]; // [Cout·k·k, ld]
                for c0 in (0..n).step_by(nb) {
                    let (m, b0) = (nb.min(n - c0), first + c0);
                    chunk_to_channel_major(&x[b0 * cin * hw..], (m, cin, hw), &mut xt, ld);
                    // cols [Cout·k·k, m·H·W] = Wᵀ · x, W viewed as [Cin, Cout·k·k].
                    gemm_into((ckk, m * hw, cin), &mut cols, ld, false, w, (1, ckk), &xt, (ld, 1), threads);
                    let ys = &mut ys[c0 * cout * lo..][..m * cout * lo];
                    fold_into(&cols, ld, (m, cout, ho, wo), geom, ys, sp.inner_parallel())?;
                    fastmath::with_simd(|| {
                        for (i, plane) in ys.chunks_exact_mut(lo).enumerate() {
                            let bias = b[i % cout];
                            e.map_in_place(plane, |v| v + bias);
                        }
                    });
                }
                Ok(())
            })?;
        } else {
            for (i, plane) in y.chunks_exact_mut(lo.max(1)).enumerate() {
                let bias = b[i % cout];
                e.map_in_place(plane, |v| v + bias);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((batch, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, cin, h, wd) = x.dims4()?;
        let (_, cout, k, _) = w.dims4()?;
        let (_, _, ho, wo) = y.dims4()?;
        let (hw, ckk, lo) = (h * wd, cout * k * k, ho * wo);
        let (e, geom) = (self.epilogue, self.geom);
        let want_dx = x.track_op();
        let grad = grad.contiguous()?;
        let mut dx = if want_dx { vec![0f32; batch * cin * hw] } else { Vec::new() };
        let parts = with_f32(y, "conv_transpose2d: output", |yv| {
            with_f32(&grad, "conv_transpose2d: gradient", |gv| {
                with_f32(x, "conv_transpose2d: x", |xv| {
                    with_f32(w, "conv_transpose2d: w", |wv| {
                        let sp = Split::new(ckk * hw.max(1), batch);
                        let threads = sp.gemm_threads();
                        sp.run(batch, &mut dx, cin * hw, |first, n, dx| {
                            let (nb, ld) = (sp.nb, sp.nb * hw);
                            let mut g = vec![0f32; nb * cout * lo]; // [m, Cout, Ho, Wo]
                            let mut gcols = vec![0f32; ckk * ld]; // [Cout·k·k, ld]
                            let mut xt = vec![0f32; cin * ld]; // [Cin, ld]
                            let mut dxt = if want_dx { vec![0f32; cin * ld] } else { Vec::new() };
                            let (mut dw, mut db) = (vec![0f32; cin * ckk], vec![0f32; cout]);
                            for c0 in (0..n).step_by(nb) {
                                let (m, b0) = (nb.min(n - c0), first + c0);
                                // g = grad ⊙ act′(y) and its per-channel sums.
                                let (ys, gs) =
                                    (&yv[b0 * cout * lo..][..m * cout * lo], &gv[b0 * cout * lo..]);
                                fastmath::with_simd(|| {
                                    let planes = g
                                        .chunks_exact_mut(lo)
                                        .zip(ys.chunks_exact(lo))
                                        .zip(gs.chunks_exact(lo));
                                    for (plane, ((d, yp), gp)) in planes.enumerate() {
                                        db[plane % cout] += e.grad_into(d, yp, gp);
                                    }
                                });
                                if hw == 0 {
                                    continue;
                                }
                                let gm = &g[..m * cout * lo];
                                unfold_into(
                                    gm,
                                    (m, cout, ho, wo),
                                    geom,
                                    &mut gcols,
                                    ld,
                                    sp.inner_parallel(),
                                )?;
                                chunk_to_channel_major(&xv[b0 * cin * hw..], (m, cin, hw), &mut xt, ld);
                                // dW [Cin, Cout·k·k] += x · gcolsᵀ
                                gemm_into(
                                    (cin, ckk, m * hw),
                                    &mut dw,
                                    ckk,
                                    c0 > 0,
                                    &xt,
                                    (ld, 1),
                                    &gcols,
                                    (1, ld),
                                    threads,
                                );
                                if want_dx {
                                    // dx [Cin, m·H·W] = W · gcols, back to [m, Cin, H, W].
                                    gemm_into(
                                        (cin, m * hw, ckk),
                                        &mut dxt,
                                        ld,
                                        false,
                                        wv,
                                        (ckk, 1),
                                        &gcols,
                                        (ld, 1),
                                        threads,
                                    );
                                    let dxs = dx[c0 * cin * hw..][..m * cin * hw].chunks_exact_mut(cin * hw);
                                    for (bi, planes) in dxs.enumerate() {
                                        for (ci, plane) in planes.chunks_exact_mut(hw).enumerate() {
                                            plane.copy_from_slice(&dxt[ci * ld + bi * hw..][..hw]);
                                        }
                                    }
                                }
                            }
                            Ok((dw, db))
                        })
                    })
                })
            })
        })?;
        let (dw, db) = sum_parts(parts);
        let dx = if want_dx { Some(Tensor::from_vec(dx, (batch, cin, h, wd), x.device())?) } else { None };
        let sink = self.sink.as_ref();
        Ok((dx, SideGrads::give(sink, w, dw)?, SideGrads::give(sink, b, db)?))
    }
}
