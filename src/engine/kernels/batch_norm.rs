//! Training-mode batch normalisation and an activation as one op.

use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::cpu::f32s;
use super::{fastmath, Epilogue};

/// Batch statistics of one [`batch_norm_act`] call: per-channel mean and (biased) variance.
pub type BatchStats = std::sync::Arc<std::sync::Mutex<(Vec<f32>, Vec<f32>)>>;

/// Training-mode batch normalisation over (B, H, W) per channel followed by an activation, as
/// one op: `act((x − μ) / √(σ² + ε) · γ + β)` for `x [B, C, H, W]`, `γ, β [1, C, 1, 1]`. Returns
/// the output and the batch statistics (for the running averages). The stock ops take a
/// dozen passes, three of them strided reductions over the batch; here the forward pass is
/// three passes (mean, variance, output) and the backward pass two.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    epilogue: Epilogue,
) -> Result<(Tensor, BatchStats)> {
    let stats = BatchStats::default();
    let op = BatchNormOp { eps, epilogue, stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, stats))
}

struct BatchNormOp {
    eps: f32,
    epilogue: Epilogue,
    stats: BatchStats,
}

/// Images per part when `b` images are cut into one contiguous part per thread of the pool,
/// as the fused convolutions do: fixed parts whose sums are added in order, so that results do
/// not depend on which thread ran what.
fn part_images(b: usize) -> usize {
    b.div_ceil(rayon::current_num_threads().clamp(1, b.max(1))).max(1)
}

/// The element-wise sum of the parts' `c` sums, added in part order.
fn sum_in_order(parts: Vec<Vec<f64>>, c: usize) -> Vec<f64> {
    let mut total = vec![0f64; c];
    for p in parts {
        total.iter_mut().zip(&p).for_each(|(t, v)| *t += v);
    }
    total
}

/// `(batch, channels, plane size)` of a `[B, C, H, W]` layout.
fn bn_dims(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        &[b, c, h, w] => Ok((b, c, h * w)),
        _ => bail!("batch norm: expected [B, C, H, W], got {dims:?}"),
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "fused-batch-norm"
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
        let (b, c, l) = bn_dims(xl.dims())?;
        if gl.shape().elem_count() != c || bl.shape().elem_count() != c {
            bail!("batch norm: γ {:?} and β {:?} must have {c} values", gl.dims(), bl.dims())
        }
        let (x, gamma, beta) = (f32s(xs, xl, "x")?, f32s(gs, gl, "γ")?, f32s(bs, bl, "β")?);
        let n = (b * l).max(1) as f64;
        let mut y = vec![0f32; x.len()];
        let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
        if !x.is_empty() {
            let part = part_images(b) * c * l;
            // Per channel, Σ f(plane) over each part's planes (in memory order, each plane's
            // sum in f32 lanes, the channel's in f64), the parts added in order.
            let channel_sums = |f: &(dyn Fn(&[f32], usize) -> f32 + Sync)| -> Vec<f64> {
                let parts: Vec<Vec<f64>> = x
                    .par_chunks(part)
                    .map(|xs| {
                        fastmath::with_simd(|| {
                            let mut sums = vec![0f64; c];
                            for img in xs.chunks_exact(c * l) {
                                for (ch, (s, p)) in sums.iter_mut().zip(img.chunks_exact(l)).enumerate() {
                                    *s += f(p, ch) as f64;
                                }
                            }
                            sums
                        })
                    })
                    .collect();
                sum_in_order(parts, c)
            };
            let sum = channel_sums(&|p, _| fastmath::sum(p));
            mean.iter_mut().zip(&sum).for_each(|(m, &s)| *m = (s / n) as f32);
            let sq = channel_sums(&|p, ch| {
                let m = mean[ch];
                // Σ (v − m)² in 16 lanes, as `fastmath::sum` does.
                let mut acc = [0f32; 16];
                let whole = p.len() / 16 * 16;
                for i in (0..whole).step_by(16) {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a += (p[i + j] - m) * (p[i + j] - m);
                    }
                }
                let tail: f32 = p[whole..].iter().map(|&v| (v - m) * (v - m)).sum();
                fastmath::sum(&acc) + tail
            });
            var.iter_mut().zip(&sq).for_each(|(v, &s)| *v = (s / n) as f32);
            let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] / (var[ch] + self.eps).sqrt()).collect();
            let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
            let e = self.epilogue;
            y.par_chunks_mut(part).zip(x.par_chunks(part)).for_each(|(ys, xs)| {
                fastmath::with_simd(|| {
                    for (out, img) in ys.chunks_exact_mut(c * l).zip(xs.chunks_exact(c * l)) {
                        for (ch, (o, p)) in out.chunks_exact_mut(l).zip(img.chunks_exact(l)).enumerate() {
                            let (k, t) = (scale[ch], shift[ch]);
                            e.map(o, p, |v| v * k + t);
                        }
                    }
                })
            });
        }
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = (mean, var);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, l) = bn_dims(x.dims())?;
        let (mean, var) = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if mean.len() != c {
            bail!("batch norm: no batch statistics for the backward pass")
        }
        let grad = grad.contiguous()?;
        let n = (b * l).max(1) as f32;
        let mut dx = x.track_op().then(|| vec![0f32; b * c * l]);
        let mut dgamma = vec![0f32; c];
        let mut dbeta = vec![0f32; c];
        {
            let (xs, xl) = x.storage_and_layout();
            let (ys, yl) = y.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (ms, ml) = gamma.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(gs), Storage::Cpu(ms)) =
                (&*xs, &*ys, &*gs, &*ms)
            else {
                bail!("batch norm: CPU only")
            };
            let (xv, yv, gv, gam) =
                (f32s(xs, xl, "x")?, f32s(ys, yl, "y")?, f32s(gs, gl, "grad")?, f32s(ms, ml, "γ")?);
            // dz = dL/d(normalised·γ + β) through the activation, written where dx goes (or
            // into a scratch plane), then dx computed from it in place. Per part of the batch
            // (one per thread), planes in memory order, each plane's sums in f32 lanes and the
            // channel's in f64, the parts' sums added in order.
            let e = self.epilogue;
            let img = c * l;
            let per = part_images(b);
            let part_sums = |first: usize, mut dzs: Option<&mut [f32]>| {
                fastmath::with_simd(|| {
                    let (mut sum_dz, mut sum_dz_dev) = (vec![0f64; c], vec![0f64; c]);
                    let mut scratch = vec![0f32; if dzs.is_some() { 0 } else { l }];
                    let mut dev = vec![0f32; l];
                    for bi in first..(first + per).min(b) {
                        for ch in 0..c {
                            let at = (bi * c + ch) * l;
                            let dz = match dzs.as_deref_mut() {
                                Some(d) => &mut d[(bi - first) * img + ch * l..][..l],
                                None => &mut scratch[..],
                            };
                            sum_dz[ch] += e.grad_into(dz, &yv[at..at + l], &gv[at..at + l]) as f64;
                            let (m, xs) = (mean[ch], &xv[at..at + l]);
                            (0..l).for_each(|i| dev[i] = dz[i] * (xs[i] - m));
                            sum_dz_dev[ch] += fastmath::sum(&dev) as f64;
                        }
                    }
                    (sum_dz, sum_dz_dev)
                })
            };
            let parts: Vec<(Vec<f64>, Vec<f64>)> = match dx.as_mut() {
                Some(dx) if img > 0 => dx
                    .par_chunks_mut(per * img)
                    .enumerate()
                    .map(|(i, d)| part_sums(i * per, Some(d)))
                    .collect(),
                _ => (0..b.div_ceil(per)).into_par_iter().map(|i| part_sums(i * per, None)).collect(),
            };
            let (dz_parts, dev_parts): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
            let (sum_dz, sum_dz_dev) = (sum_in_order(dz_parts, c), sum_in_order(dev_parts, c));
            let inv: Vec<f32> = var.iter().map(|&v| 1.0 / (v + self.eps).sqrt()).collect();
            for ch in 0..c {
                dbeta[ch] = sum_dz[ch] as f32;
                dgamma[ch] = (sum_dz_dev[ch] * inv[ch] as f64) as f32;
            }
            if let Some(dx) = dx.as_mut().filter(|_| img > 0) {
                // dx = γ/σ · (dz − mean(dz) − x̂ · mean(dz · x̂)), x̂ = (x − μ)/σ.
                let coef: Vec<(f32, f32, f32, f32)> = (0..c)
                    .map(|ch| {
                        let m_dz = (sum_dz[ch] / n as f64) as f32;
                        let m_dzx = (sum_dz_dev[ch] * inv[ch] as f64 / n as f64) as f32;
                        (gam[ch] * inv[ch], m_dz, mean[ch], inv[ch] * m_dzx)
                    })
                    .collect();
                dx.par_chunks_mut(img).zip(xv.par_chunks(img)).for_each(|(dimg, ximg)| {
                    fastmath::with_simd(|| {
                        for (ch, (d, xs)) in dimg.chunks_exact_mut(l).zip(ximg.chunks_exact(l)).enumerate() {
                            let (k, m_dz, m, slope) = coef[ch];
                            (0..l).for_each(|i| d[i] = k * (d[i] - m_dz - (xs[i] - m) * slope));
                        }
                    })
                });
            }
        }
        let cpu = Device::Cpu;
        let param_shape = gamma.dims().to_vec();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, x.dims(), &cpu)).transpose()?,
            Some(Tensor::from_vec(dgamma, param_shape.as_slice(), &cpu)?),
            Some(Tensor::from_vec(dbeta, param_shape.as_slice(), &cpu)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{max_diff, randn};
    use crate::engine::kernels::LEAKY_SLOPE;
    use candle_core::Var;

    /// Batch norm + activation against the stock formula (batch statistics, biased variance),
    /// forward, statistics and all three gradients.
    #[test]
    fn batch_norm_matches_stock_ops() {
        // Planes shorter and longer than the 16 summing lanes; the batch cut into 1, 2 and 3
        // parts (one per thread of the pool).
        for (threads, [b, c, h, w]) in
            [(1, [3, 4, 5, 2]), (2, [3, 4, 5, 2]), (2, [5, 3, 6, 6]), (3, [5, 3, 6, 6])]
        {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| batch_norm_case([b, c, h, w]));
        }
    }

    fn batch_norm_case([b, c, h, w]: [usize; 4]) {
        for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh, Epilogue::Sigmoid]
        {
            let x = Var::from_tensor(&randn(&[b, c, h, w], 11).affine(3.0, 1.0).unwrap()).unwrap();
            let gamma = Var::from_tensor(&randn(&[1, c, 1, 1], 12).affine(1.0, 1.5).unwrap()).unwrap();
            let beta = Var::from_tensor(&randn(&[1, c, 1, 1], 13)).unwrap();
            let up = randn(&[b, c, h, w], 14);
            let (ours, stats) = batch_norm_act(&x, &gamma, &beta, 1e-5, e).unwrap();
            let mean = x.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
            let centred = x.broadcast_sub(&mean).unwrap();
            let var = centred
                .sqr()
                .unwrap()
                .mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap();
            let z = centred
                .broadcast_div(&(&var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&gamma)
                .unwrap()
                .broadcast_add(&beta)
                .unwrap();
            let theirs = match e {
                Epilogue::Identity => z,
                Epilogue::Relu => z.relu().unwrap(),
                Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(&z, LEAKY_SLOPE as f64).unwrap(),
                Epilogue::Tanh => z.tanh().unwrap(),
                Epilogue::Sigmoid => candle_nn::ops::sigmoid(&z).unwrap(),
            };
            assert!(max_diff(&ours, &theirs) < 1e-5, "{e:?} forward");
            let (m, v) = stats.lock().unwrap().clone();
            assert!(max_diff(&Tensor::new(m, &Device::Cpu).unwrap(), &mean.flatten_all().unwrap()) < 1e-5);
            assert!(max_diff(&Tensor::new(v, &Device::Cpu).unwrap(), &var.flatten_all().unwrap()) < 1e-4);
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
            for (t, name) in [(&x, "x"), (&gamma, "gamma"), (&beta, "beta")] {
                let (a, c) = (g1.get(t).unwrap(), g2.get(t).unwrap());
                assert!(max_diff(a, c) < 1e-4, "{e:?}: grad {name}");
            }
        }
    }
}
