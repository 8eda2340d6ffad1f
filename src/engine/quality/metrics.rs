//! Sample-quality metrics between a real and a generated set of feature vectors: the Fréchet
//! distance, the kernel inception distance (KID), precision and recall, density and coverage.
//! Each is the published definition:
//! - FD (Heusel et al. 2017): ‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2 (Σ_r^{½} Σ_g Σ_r^{½})^{½}).
//! - KID (Bińkowski et al. 2018): the unbiased MMD² with the kernel `(x·y / d + 1)³`, averaged
//!   over random subsets, with its standard deviation over them. A subset holds at most half
//!   of the smaller set, so the subsets differ (at the full size every one would be the whole
//!   set, and the spread a rounding error).
//! - Precision and recall (Kynkäänniemi et al. 2019), k = 3: the share of generated samples
//!   inside the real manifold (the union of balls around each real sample reaching its k-th
//!   nearest real neighbour), and of real samples inside the generated manifold.
//! - Density and coverage (Naeem et al. 2020), k = 5: how many real balls contain each
//!   generated sample, over k; the share of real samples whose ball holds a generated one.

use candle_core::{Device, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use serde::Serialize;

use crate::engine::error::{EngineError, Result};

/// `n × d` row-major feature vectors.
#[derive(Clone, Copy, Debug)]
pub struct Features<'a> {
    pub values: &'a [f32],
    pub dim: usize,
}

impl<'a> Features<'a> {
    pub fn new(values: &'a [f32], dim: usize) -> Result<Self> {
        if dim == 0 || !values.len().is_multiple_of(dim) || values.is_empty() {
            return Err(EngineError::Other(format!(
                "{} values are not whole {dim}-d feature vectors",
                values.len()
            )));
        }
        Ok(Self { values, dim })
    }

    pub fn n(&self) -> usize {
        self.values.len() / self.dim
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(self.values, (self.n(), self.dim), &Device::Cpu)?)
    }
}

/// Every metric of one generated set against the real one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub fd: f64,
    pub kid: f64,
    /// The standard deviation of KID over its subsets.
    pub kid_std: f64,
    pub precision: f64,
    pub recall: f64,
    pub density: f64,
    pub coverage: f64,
}

/// Neighbourhood sizes and KID's subsets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricOptions {
    /// k of precision and recall.
    pub k_pr: usize,
    /// k of density and coverage.
    pub k_dc: usize,
    pub kid_subsets: usize,
    pub kid_subset_size: usize,
    pub seed: u64,
}

impl Default for MetricOptions {
    fn default() -> Self {
        Self { k_pr: 3, k_dc: 5, kid_subsets: 50, kid_subset_size: 500, seed: 0 }
    }
}

/// All metrics of `fake` against `real`.
pub fn metrics(real: Features, fake: Features, opts: &MetricOptions) -> Result<Metrics> {
    if real.dim != fake.dim {
        return Err(EngineError::Other(format!("feature sizes differ: {} and {}", real.dim, fake.dim)));
    }
    let k_max = opts.k_pr.max(opts.k_dc);
    if real.n() <= k_max || fake.n() <= k_max {
        return Err(EngineError::Config(format!(
            "sample-quality metrics need more than {k_max} samples on each side (got {} real, {} generated)",
            real.n(),
            fake.n()
        )));
    }
    let (kid, kid_std) = kid(real, fake, opts)?;
    let rr = sq_distances(real, real)?;
    let ff = sq_distances(fake, fake)?;
    let rf = sq_distances(real, fake)?; // [n_real, n_fake]
    let (nr, nf) = (real.n(), fake.n());
    let real_r_pr = kth_radii(&rr, nr, opts.k_pr);
    let fake_r_pr = kth_radii(&ff, nf, opts.k_pr);
    let real_r_dc = kth_radii(&rr, nr, opts.k_dc);
    // Precision: generated samples inside some real ball; recall: real samples inside some
    // generated ball.
    let precision =
        (0..nf).filter(|&j| (0..nr).any(|i| rf[i * nf + j] <= real_r_pr[i])).count() as f64 / nf as f64;
    let recall =
        (0..nr).filter(|&i| (0..nf).any(|j| rf[i * nf + j] <= fake_r_pr[j])).count() as f64 / nr as f64;
    let inside: usize = (0..nf).map(|j| (0..nr).filter(|&i| rf[i * nf + j] <= real_r_dc[i]).count()).sum();
    let density = inside as f64 / (opts.k_dc as f64 * nf as f64);
    let coverage = (0..nr)
        .filter(|&i| {
            let nearest = rf[i * nf..(i + 1) * nf].iter().copied().fold(f32::INFINITY, f32::min);
            nearest <= real_r_dc[i]
        })
        .count() as f64
        / nr as f64;
    Ok(Metrics { fd: frechet_distance(real, fake)?, kid, kid_std, precision, recall, density, coverage })
}

/// Squared Euclidean distances `[a.n, b.n]`, row-major, by one matrix product.
pub(crate) fn sq_distances(a: Features, b: Features) -> Result<Vec<f32>> {
    let (ta, tb) = (a.tensor()?, b.tensor()?);
    let na = ta.sqr()?.sum_keepdim(1)?; // [n_a, 1]
    let nb = tb.sqr()?.sum_keepdim(1)?.t()?; // [1, n_b]
    let d = na.broadcast_add(&nb)?.sub(&(ta.matmul(&tb.t()?)? * 2.0)?)?.relu()?;
    Ok(d.flatten_all()?.to_vec1()?)
}

/// Each row's squared distance to its k-th nearest other row (`d` is the set against itself).
fn kth_radii(d: &[f32], n: usize, k: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let mut row: Vec<f32> =
                d[i * n..(i + 1) * n].iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &v)| v).collect();
            let k = k.clamp(1, row.len());
            let (_, kth, _) = row.select_nth_unstable_by(k - 1, f32::total_cmp);
            *kth
        })
        .collect()
}

/// Mean and covariance (f64) of a set of feature vectors.
fn moments(f: Features) -> (Vec<f64>, DMatrix<f64>) {
    let (n, d) = (f.n(), f.dim);
    let mut mean = vec![0f64; d];
    for i in 0..n {
        mean.iter_mut().zip(f.row(i)).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred = DMatrix::from_fn(n, d, |i, j| f.row(i)[j] as f64 - mean[j]);
    let cov = (centred.transpose() * &centred) / (n.saturating_sub(1).max(1) as f64);
    (mean, cov)
}

/// The symmetric square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding are clamped to 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(m.clone());
    let s = e.eigenvalues.map(|v| v.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
}

/// The Fréchet distance between the Gaussians fitted to two sets.
pub fn frechet_distance(real: Features, fake: Features) -> Result<f64> {
    let (m1, s1) = moments(real);
    let (m2, s2) = moments(fake);
    let mean_term: f64 = m1.iter().zip(&m2).map(|(a, b)| (a - b) * (a - b)).sum();
    let r = sqrt_psd(&s1);
    let inner = &r * &s2 * &r;
    // tr((Σ₁^{½} Σ₂ Σ₁^{½})^{½}) = Σ √λ of the symmetric middle matrix.
    let inner = (&inner + inner.transpose()) * 0.5;
    let tr_sqrt: f64 = SymmetricEigen::new(inner).eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    Ok((mean_term + s1.trace() + s2.trace() - 2.0 * tr_sqrt).max(0.0))
}

/// KID: the unbiased MMD² with the cubic polynomial kernel over random subsets (mean, std).
pub fn kid(real: Features, fake: Features, opts: &MetricOptions) -> Result<(f64, f64)> {
    let m = opts.kid_subset_size.min(real.n() / 2).min(fake.n() / 2);
    if m < 2 {
        return Err(EngineError::Config("KID needs at least 4 samples on each side".into()));
    }
    let d = real.dim as f64;
    let (tr, tf) = (real.tensor()?, fake.tensor()?);
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x4b1d);
    let mut values = Vec::with_capacity(opts.kid_subsets.max(1));
    for _ in 0..opts.kid_subsets.max(1) {
        let pick = |t: &Tensor, n: usize, rng: &mut StdRng| -> Result<Tensor> {
            let idx: Vec<u32> = sample(rng, n, m).into_iter().map(|i| i as u32).collect();
            Ok(t.index_select(&Tensor::from_vec(idx, m, &Device::Cpu)?, 0)?)
        };
        let (x, y) = (pick(&tr, real.n(), &mut rng)?, pick(&tf, fake.n(), &mut rng)?);
        let kernel = |a: &Tensor, b: &Tensor| -> Result<Tensor> {
            Ok(a.matmul(&b.t()?)?.to_dtype(candle_core::DType::F64)?.affine(1.0 / d, 1.0)?.powf(3.0)?)
        };
        let (kxx, kyy, kxy) = (kernel(&x, &x)?, kernel(&y, &y)?, kernel(&x, &y)?);
        let off_diag = |k: &Tensor| -> Result<f64> {
            let total = k.sum_all()?.to_scalar::<f64>()?;
            let diag: f64 = k.to_vec2::<f64>()?.iter().enumerate().map(|(i, r)| r[i]).sum();
            Ok(total - diag)
        };
        let mf = m as f64;
        let mmd = (off_diag(&kxx)? + off_diag(&kyy)?) / (mf * (mf - 1.0))
            - 2.0 * kxy.sum_all()?.to_scalar::<f64>()? / (mf * mf);
        values.push(mmd);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
        / values.len().max(2).saturating_sub(1) as f64;
    Ok((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(n: usize, d: usize, shift: f32, scale: f32, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| shift + scale * Distribution::<f32>::sample(&StandardNormal, &mut rng)).collect()
    }

    /// FD of two isotropic Gaussians: ‖Δμ‖² + d (σ₁ − σ₂)², here with a shift of 1 in each of
    /// 8 dimensions and σ 1 against 2: 8 + 8 = 16.
    #[test]
    fn frechet_distance_matches_the_closed_form() {
        let (a, b) = (gaussian(20_000, 8, 0.0, 1.0, 1), gaussian(20_000, 8, 1.0, 2.0, 2));
        let fd = frechet_distance(Features::new(&a, 8).unwrap(), Features::new(&b, 8).unwrap()).unwrap();
        assert!((fd - 16.0).abs() < 0.5, "FD {fd}");
        let same = frechet_distance(Features::new(&a, 8).unwrap(), Features::new(&a, 8).unwrap()).unwrap();
        assert!(same < 1e-6, "FD of a set with itself {same}");
    }

    /// Two samples of one distribution: KID ≈ 0 (unbiased, so it scatters around 0), precision,
    /// recall, density and coverage near 1; a shifted distribution: all of them fall.
    #[test]
    fn same_distribution_scores_as_such() {
        let opts = MetricOptions::default();
        let (a, b) = (gaussian(1000, 16, 0.0, 1.0, 3), gaussian(1000, 16, 0.0, 1.0, 4));
        let m = metrics(Features::new(&a, 16).unwrap(), Features::new(&b, 16).unwrap(), &opts).unwrap();
        assert!(m.kid.abs() < 3.0 * m.kid_std.max(1e-3), "{m:?}");
        // k = 3 balls in 16 dimensions miss some of a second sample of the same distribution.
        assert!(m.precision > 0.7 && m.recall > 0.7 && m.coverage > 0.9, "{m:?}");
        assert!((m.density - 1.0).abs() < 0.25, "{m:?}");
        let c = gaussian(1000, 16, 3.0, 1.0, 5);
        let far = metrics(Features::new(&a, 16).unwrap(), Features::new(&c, 16).unwrap(), &opts).unwrap();
        assert!(far.kid > 10.0 * m.kid.abs().max(m.kid_std), "{far:?}");
        assert!(far.precision < 0.1 && far.recall < 0.1 && far.coverage < 0.1, "{far:?}");
    }

    /// As many samples as a subset's default size (500): the subsets still differ, so KID's
    /// spread is the estimate's, not a rounding error, and the shift is many spreads away.
    #[test]
    fn kid_has_a_spread_when_the_sets_are_no_larger_than_a_subset() {
        let opts = MetricOptions::default();
        let (a, b) = (gaussian(500, 16, 0.0, 1.0, 6), gaussian(500, 16, 0.5, 1.0, 7));
        let (kid, std) = kid(Features::new(&a, 16).unwrap(), Features::new(&b, 16).unwrap(), &opts).unwrap();
        assert!(std > 1e-3 * kid && std < 0.5 * kid, "KID {kid} ± {std}");
    }
}
