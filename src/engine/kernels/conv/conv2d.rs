//! The fused convolution's forward and backward passes ([`super::Conv2dAct`]).

use candle_core::{bail, CpuStorage, Layout, Result, Shape, Tensor};

use super::{direct3x3, sum_parts, Conv2dAct, Split};
use crate::engine::kernels::buffers::{output, Scratch};
use crate::engine::kernels::cpu::{f32s, with_f32};
use crate::engine::kernels::gemm::gemm_into;
use crate::engine::kernels::im2col::{fold_into, unfold_into};
use crate::engine::kernels::{fastmath, Epilogue, SideGrads};

/// Planes wider than this take the direct weight gradient ([`direct3x3::chunk_grads`]).
const DIRECT_DW_MIN_WIDTH: usize = 16;

impl candle_core::CustomOp3 for Conv2dAct {
    fn name(&self) -> &'static str {
        "fused-conv2d"
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
        let (cout, wcin, k, k2) = wl.shape().dims4()?;
        if wcin != cin || k != k2 || k != self.geom.kernel || bl.dims() != [cout] {
            bail!(
                "conv2d: weight {:?} / bias {:?} do not fit an input of {cin} channels",
                wl.dims(),
                bl.dims()
            )
        }
        let (x, w, b) = (f32s(xs, xl, "x")?, f32s(ws, wl, "w")?, f32s(bs, bl, "b")?);
        let (ho, wo) = (self.geom.out_len(h)?, self.geom.out_len(wd)?);
        let (l, ckk, img) = (ho * wo, cin * k * k, cin * h * wd);
        let shape = Shape::from((batch, cout, ho, wo));
        let sp = Split::new(ckk * l, batch);
        let (geom, e, threads) = (self.geom, self.epilogue, sp.gemm_threads());
        if direct3x3::applies(geom) {
            let packed = direct3x3::pack(w, cout, cin, false);
            let p = direct3x3::Planes::new(h, wd);
            // SAFETY: every image of every part writes its `Cout·L` outputs once (`conv` writes
            // every value of `[Cout, H, W]`, the epilogue then maps them in place) and reads
            // none before.
            let out = unsafe {
                output(shape.elem_count(), |out| {
                    if out.is_empty() {
                        return Ok(());
                    }
                    sp.run(batch, out, cout * l, |first, n, out| {
                        // Scratch: `border` writes all of it before `conv` reads it.
                        let mut planes = Scratch::new(cin * p.ps);
                        for (i, outs) in out[..n * cout * l].chunks_exact_mut(cout * l).enumerate() {
                            p.border(&x[(first + i) * img..], cin, (h * wd, wd), &mut planes);
                            direct3x3::conv(&p, &planes, cin, &packed, cout, Some(b), outs);
                            if e != Epilogue::Identity {
                                fastmath::with_simd(|| e.map_in_place(outs, |v| v));
                            }
                        }
                        Ok(())
                    })
                    .map(|_| ())
                })?
            };
            return Ok((CpuStorage::F32(out), shape));
        }
        // SAFETY: every chunk of every part writes each of its images' `Cout·L` outputs once
        // (`e.map` over each plane) and reads none of them.
        let out = unsafe {
            output(shape.elem_count(), |out| {
                if out.is_empty() {
                    return Ok(());
                }
                sp.run(batch, out, cout * l, |first, n, out| {
                    let (nb, ld) = (sp.nb, sp.nb * l);
                    // Scratch: the unfold and the gemm write every value they later read.
                    let mut cols = Scratch::new(ckk * ld); // [Cin·k·k, ld]
                    let mut y = Scratch::new(cout * ld); // [Cout, ld]
                    for c0 in (0..n).step_by(nb) {
                        let (m, b0) = (nb.min(n - c0), first + c0);
                        let xs = &x[b0 * img..][..m * img];
                        unfold_into(xs, (m, cin, h, wd), geom, &mut cols, ld, sp.inner_parallel())?;
                        gemm_into(
                            (cout, m * l, ckk),
                            &mut y,
                            ld,
                            false,
                            w,
                            (ckk, 1),
                            &cols,
                            (ld, 1),
                            threads,
                        );
                        let outs = out[c0 * cout * l..][..m * cout * l].chunks_exact_mut(cout * l);
                        fastmath::with_simd(|| {
                            for (bi, planes) in outs.enumerate() {
                                for ((co, &bias), plane) in
                                    b.iter().enumerate().zip(planes.chunks_exact_mut(l))
                                {
                                    e.map(plane, &y[co * ld + bi * l..][..l], |v| v + bias);
                                }
                            }
                        });
                    }
                    Ok(())
                })
                .map(|_| ())
            })?
        };
        Ok((CpuStorage::F32(out), shape))
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
        let (cout, _, k, _) = w.dims4()?;
        let (_, _, ho, wo) = y.dims4()?;
        let (l, ckk, img) = (ho * wo, cin * k * k, cin * h * wd);
        let (e, geom) = (self.epilogue, self.geom);
        let want_dx = x.track_op();
        // A frozen layer (a GAN's discriminator in the generator's step) needs no dW, db.
        let want_dw = !SideGrads::is_frozen(self.sink.as_ref());
        let grad = grad.contiguous()?;
        let mut dx = if want_dx { vec![0f32; batch * img] } else { Vec::new() };
        let (mut dw, mut db) = (vec![0f32; cout * ckk], vec![0f32; cout]);
        if batch * l > 0 {
            let parts = with_f32(y, "conv2d: output", |yv| {
                with_f32(&grad, "conv2d: gradient", |gv| {
                    with_f32(x, "conv2d: x", |xv| {
                        with_f32(w, "conv2d: w", |wv| {
                            // Wide planes (the U-Net's 28×28 layers) take the weight gradient
                            // directly too (`direct3x3::chunk_grads`); on narrower ones the
                            // per-chunk lane sums cost more than im2col + gemm.
                            let full = direct3x3::applies(geom) && wd > DIRECT_DW_MIN_WIDTH;
                            let p = direct3x3::Planes::new(h, wd);
                            let sp = Split::new(if full { (cin + cout) * p.ps } else { ckk * l }, batch);
                            let threads = sp.gemm_threads();
                            let direct = want_dx && direct3x3::applies(geom);
                            let packed =
                                if direct { direct3x3::pack(wv, cout, cin, true) } else { Vec::new() };
                            sp.run(batch, &mut dx, img, |first, n, dx| {
                                let (nb, ld) = (sp.nb, sp.nb * l);
                                // Scratch: each is written (unfold, `grad_into`, gemm) before
                                // it is read, over the `m·L` columns read.
                                let mut cols = Scratch::new(if want_dw && !full { ckk * ld } else { 0 });
                                let mut g = Scratch::new(cout * ld); // [Cout, ld]
                                let mut dcols = Scratch::new(if want_dx && !direct { ckk * ld } else { 0 });
                                let (mut dw, mut db) = (vec![0f32; cout * ckk], vec![0f32; cout]);
                                for c0 in (0..n).step_by(nb) {
                                    let (m, b0) = (nb.min(n - c0), first + c0);
                                    // g = grad ⊙ act′(y), channel-major, and its per-channel sums.
                                    let (ys, gs) =
                                        (&yv[b0 * cout * l..][..m * cout * l], &gv[b0 * cout * l..]);
                                    fastmath::with_simd(|| {
                                        for (plane, (yp, gp)) in
                                            ys.chunks_exact(l).zip(gs.chunks_exact(l)).enumerate()
                                        {
                                            let (bi, co) = (plane / cout, plane % cout);
                                            db[co] += e.grad_into(&mut g[co * ld + bi * l..][..l], yp, gp);
                                        }
                                    });
                                    if full {
                                        direct3x3::chunk_grads(
                                            &p,
                                            (m, cin, cout),
                                            &xv[b0 * img..][..m * img],
                                            (&g, ld),
                                            &packed,
                                            want_dw.then_some(&mut dw[..]),
                                            want_dx.then(|| &mut dx[c0 * img..][..m * img]),
                                        );
                                        continue;
                                    }
                                    if want_dw {
                                        let xs = &xv[b0 * img..][..m * img];
                                        unfold_into(
                                            xs,
                                            (m, cin, h, wd),
                                            geom,
                                            &mut cols,
                                            ld,
                                            sp.inner_parallel(),
                                        )?;
                                        // dW [Cout, Cin·k·k] += g · colsᵀ
                                        gemm_into(
                                            (cout, ckk, m * l),
                                            &mut dw,
                                            ckk,
                                            c0 > 0,
                                            &g,
                                            (ld, 1),
                                            &cols,
                                            (1, ld),
                                            threads,
                                        );
                                    }
                                    if direct {
                                        // dx = g convolved with the flipped, transposed weights.
                                        direct3x3::chunk_grads(
                                            &p,
                                            (m, cin, cout),
                                            &xv[b0 * img..][..m * img],
                                            (&g, ld),
                                            &packed,
                                            None,
                                            Some(&mut dx[c0 * img..][..m * img]),
                                        );
                                    } else if want_dx {
                                        // dcols [Cin·k·k, m·L] = Wᵀ · g, folded back onto the input.
                                        gemm_into(
                                            (ckk, m * l, cout),
                                            &mut dcols,
                                            ld,
                                            false,
                                            wv,
                                            (1, ckk),
                                            &g,
                                            (ld, 1),
                                            threads,
                                        );
                                        let dxs = &mut dx[c0 * img..][..m * img];
                                        fold_into(
                                            &dcols,
                                            ld,
                                            (m, cin, h, wd),
                                            geom,
                                            dxs,
                                            sp.inner_parallel(),
                                        )?;
                                    }
                                }
                                Ok((dw, db))
                            })
                        })
                    })
                })
            })?;
            (dw, db) = sum_parts(parts);
        }
        let dx = if want_dx { Some(Tensor::from_vec(dx, (batch, cin, h, wd), x.device())?) } else { None };
        if !want_dw {
            return Ok((dx, None, None));
        }
        let sink = self.sink.as_ref();
        Ok((dx, SideGrads::give(sink, w, dw)?, SideGrads::give(sink, b, db)?))
    }
}
