//! Group normalisation and SiLU as one op (the diffusion U-Net's every residual block).

use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::buffers::output;
use super::cpu::f32s;
use super::fastmath;

/// `silu((x − μ_g) / √(σ²_g + ε) · γ + β)` for `x [B, C, H, W]`, `γ, β` of `C` values (any
/// shape, `[1, C, 1, 1]` in the U-Net), the statistics per image and per group of `C / groups`
/// consecutive channels. The stock ops take about fifteen passes over the activations forward
/// and as many backward, each with a fresh buffer; here the forward pass is three (mean,
/// variance, output) and the backward pass two.
pub fn group_norm_silu(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32) -> Result<Tensor> {
    let op = GroupNormSilu { groups, eps, stats: Default::default() };
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

struct GroupNormSilu {
    groups: usize,
    eps: f32,
    /// Per (image, group): the mean and 1/σ of the forward pass, for the backward pass.
    stats: std::sync::Arc<std::sync::Mutex<Vec<(f32, f32)>>>,
}

/// `(batch, channels, plane size)` of a `[B, C, H, W]` layout whose channels `groups` divides.
fn gn_dims(dims: &[usize], groups: usize) -> Result<(usize, usize, usize)> {
    match dims {
        &[b, c, h, w] if groups > 0 && c % groups == 0 => Ok((b, c, h * w)),
        _ => bail!("group norm: expected [B, C, H, W] with C divisible by {groups}, got {dims:?}"),
    }
}

/// Lanes of [`moments`]' sums: four vectors of 16, so that the adds do not wait on one another
/// (a single vector accumulator is one dependent add per 16 values, ~4 cycles each).
const MOMENT_LANES: usize = 64;

/// Mean and 1/σ of one group's values (the sum, then the squares around the mean, each in
/// [`MOMENT_LANES`] f32 lanes).
fn moments(v: &[f32], eps: f32) -> (f32, f32) {
    let n = v.len().max(1) as f32;
    let mean = lane_sum(v, |x| x) / n;
    let var = lane_sum(v, |x| (x - mean) * (x - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `Σ f(x)` over `v` in [`MOMENT_LANES`] partial sums.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let whole = v.len() / MOMENT_LANES * MOMENT_LANES;
    let mut acc = [0f32; MOMENT_LANES];
    for i in (0..whole).step_by(MOMENT_LANES) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += f(v[i + j]);
        }
    }
    fastmath::sum(&acc) + v[whole..].iter().map(|&x| f(x)).sum::<f32>()
}

/// `Σ a · (b − m)` in 16 lanes (a loop the compiler vectorises, unlike one running sum).
fn dot_centred(a: &[f32], b: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; 16];
    let whole = a.len() / 16 * 16;
    for i in (0..whole).step_by(16) {
        for (j, s) in acc.iter_mut().enumerate() {
            *s += a[i + j] * (b[i + j] - m);
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(&x, &y)| x * (y - m)).sum();
    fastmath::sum(&acc) + tail
}

impl CustomOp3 for GroupNormSilu {
    fn name(&self) -> &'static str {
        "fused-group-norm-silu"
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
        let (b, c, l) = gn_dims(xl.dims(), self.groups)?;
        if gl.shape().elem_count() != c || bl.shape().elem_count() != c {
            bail!("group norm: γ {:?} and β {:?} must have {c} values", gl.dims(), bl.dims())
        }
        let (x, gamma, beta) = (f32s(xs, xl, "x")?, f32s(gs, gl, "γ")?, f32s(bs, bl, "β")?);
        let cg = c / self.groups;
        let group = cg * l;
        let mut stats = vec![(0f32, 0f32); b * self.groups];
        // SAFETY: the groups of `group` values tile the `x.len()` outputs (`x.len() = b·c·l`, 0
        // when `group` is) and each value is written once, none read.
        let y = unsafe {
            output::<candle_core::Error>(x.len(), |y| {
                if group > 0 {
                    y.par_chunks_mut(group)
                        .zip(x.par_chunks(group))
                        .zip(stats.par_iter_mut())
                        .enumerate()
                        .for_each(|(i, ((ys, xs), st))| {
                            fastmath::with_simd(|| {
                                let (mean, rstd) = moments(xs, self.eps);
                                *st = (mean, rstd);
                                let first = (i % self.groups) * cg;
                                for (k, (o, p)) in ys.chunks_exact_mut(l).zip(xs.chunks_exact(l)).enumerate()
                                {
                                    let scale = gamma[first + k] * rstd;
                                    let shift = beta[first + k] - mean * scale;
                                    fastmath::silu_affine(o, p, scale, shift);
                                }
                            })
                        });
                }
                Ok(())
            })?
        };
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, l) = gn_dims(x.dims(), self.groups)?;
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if stats.len() != b * self.groups {
            bail!("group norm: no statistics for the backward pass")
        }
        let grad = grad.contiguous()?;
        let (cg, groups) = (c / self.groups, self.groups);
        let group = cg * l;
        let mut dx = vec![0f32; b * c * l];
        // Per (image, group), per channel of the group: Σ dz and Σ dz·x̂ (dz = dL/d(x̂γ + β)).
        let mut sums = vec![(0f32, 0f32); b * c];
        {
            let (xs, xl) = x.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (ms, ml) = gamma.storage_and_layout();
            let (bs, bl) = beta.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(gs), Storage::Cpu(ms), Storage::Cpu(bs)) =
                (&*xs, &*gs, &*ms, &*bs)
            else {
                bail!("group norm: CPU only")
            };
            let (xv, gv) = (f32s(xs, xl, "x")?, f32s(gs, gl, "grad")?);
            let (gam, bet) = (f32s(ms, ml, "γ")?, f32s(bs, bl, "β")?);
            if group > 0 {
                dx.par_chunks_mut(group)
                    .zip(xv.par_chunks(group))
                    .zip(gv.par_chunks(group))
                    .zip(sums.par_chunks_mut(cg))
                    .enumerate()
                    .for_each(|(i, (((dxs, xs), gs), sums))| {
                        fastmath::with_simd(|| {
                            let (mean, rstd) = stats[i];
                            let first = (i % groups) * cg;
                            // First pass: dz into dx (one vectorisable loop per channel),
                            // then per channel Σ dz and Σ dz·x̂ (for γ and β) and over the
                            // group Σ dz·γ and Σ dz·γ·x̂ (for dx).
                            let (mut s_dxh, mut s_dxh_xh) = (0f32, 0f32);
                            for k in 0..cg {
                                let (gm, bt) = (gam[first + k], bet[first + k]);
                                let (xc, gc) = (&xs[k * l..(k + 1) * l], &gs[k * l..(k + 1) * l]);
                                let dz = &mut dxs[k * l..(k + 1) * l];
                                let scale = rstd * gm;
                                fastmath::silu_grad_affine(dz, xc, gc, scale, bt - mean * scale);
                                let s_dz = fastmath::sum(dz);
                                let s_dz_xh = dot_centred(dz, xc, mean) * rstd;
                                sums[k] = (s_dz, s_dz_xh);
                                s_dxh += s_dz * gm;
                                s_dxh_xh += s_dz_xh * gm;
                            }
                            // dx = (γ dz − mean(γ dz) − x̂ · mean(γ dz · x̂)) / σ.
                            let n = group as f32;
                            let (m1, m2) = (s_dxh / n, s_dxh_xh / n);
                            for k in 0..cg {
                                let gm = gam[first + k];
                                let xc = &xs[k * l..(k + 1) * l];
                                for (d, &v) in dxs[k * l..(k + 1) * l].iter_mut().zip(xc) {
                                    *d = rstd * (gm * *d - m1 - (v - mean) * rstd * m2);
                                }
                            }
                        })
                    });
            }
        }
        let (mut dgamma, mut dbeta) = (vec![0f32; c], vec![0f32; c]);
        for img in sums.chunks_exact(c.max(1)) {
            for (ch, &(s_dz, s_dz_xh)) in img.iter().enumerate() {
                dbeta[ch] += s_dz;
                dgamma[ch] += s_dz_xh;
            }
        }
        let cpu = Device::Cpu;
        Ok((
            Some(Tensor::from_vec(dx, x.dims(), &cpu)?),
            Some(Tensor::from_vec(dgamma, gamma.dims(), &cpu)?),
            Some(Tensor::from_vec(dbeta, gamma.dims(), &cpu)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::reference;
    use crate::engine::kernels::testing::{max_diff, randn};
    use candle_core::Var;

    /// Group norm + SiLU against the stock ops, forward and all three gradients, with one,
    /// some and every channel per group, planes shorter and longer than the 16 summing lanes.
    #[test]
    fn group_norm_silu_matches_stock_ops() {
        for (threads, [b, c, h, w], groups) in
            [(1, [3, 4, 5, 2], 2), (2, [3, 8, 7, 7], 8), (2, [2, 6, 6, 6], 1), (3, [5, 16, 4, 3], 4)]
        {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x = Var::from_tensor(&randn(&[b, c, h, w], 21).affine(3.0, 1.0).unwrap()).unwrap();
                let gamma = Var::from_tensor(&randn(&[1, c, 1, 1], 22).affine(1.0, 1.5).unwrap()).unwrap();
                let beta = Var::from_tensor(&randn(&[1, c, 1, 1], 23)).unwrap();
                let up = randn(&[b, c, h, w], 24);
                let ours = group_norm_silu(&x, &gamma, &beta, groups, 1e-5).unwrap();
                let theirs = reference::group_norm_silu(&x, &gamma, &beta, groups, 1e-5).unwrap();
                assert!(max_diff(&ours, &theirs) < 1e-5, "{b}×{c}×{h}×{w}/{groups}: forward");
                let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                for (t, name) in [(&x, "x"), (&gamma, "gamma"), (&beta, "beta")] {
                    let (a, r) = (g1.get(t).unwrap(), g2.get(t).unwrap());
                    assert!(max_diff(a, r) < 1e-4, "{b}×{c}×{h}×{w}/{groups}: grad {name}");
                }
            });
        }
    }
}
