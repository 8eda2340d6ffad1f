//! What the model learned, as plain data: latent traversals sorted by KL ("active units"),
//! interpolations between two encodings, a 2-D PCA map of the latent space, and the
//! memory-bounded history of fixed-noise grids.

use candle_core::{Device, Tensor};

use super::error::{EngineError, Result};
use super::images::ImageBatch;
use super::models::GenerativeModel;
use super::session::Encoding;

/// Average KL(q(z_d|x) ‖ N(0, 1)) per latent dimension over an encoded set, in nats.
/// Dimensions near 0 are inactive (the decoder ignores them).
pub fn kl_per_dim(enc: &Encoding) -> Vec<f64> {
    let d = enc.dim;
    let n = enc.mu.len() / d.max(1);
    let mut kl = vec![0.0; d];
    for (mu, logvar) in enc.mu.chunks_exact(d.max(1)).zip(enc.logvar.chunks_exact(d.max(1))) {
        for ((k, &m), &lv) in kl.iter_mut().zip(mu).zip(logvar) {
            let (m, lv) = (m as f64, lv as f64);
            *k += 0.5 * (lv.exp() + m * m - 1.0 - lv);
        }
    }
    kl.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    kl
}

/// Dimensions ordered by decreasing KL.
pub fn dims_by_kl(kl: &[f64]) -> Vec<usize> {
    let mut dims: Vec<usize> = (0..kl.len()).collect();
    dims.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
    dims
}

/// `n` evenly spaced values from `lo` to `hi`.
pub fn linspace(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    match n {
        0 => Vec::new(),
        1 => vec![(lo + hi) / 2.0],
        _ => (0..n).map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32).collect(),
    }
}

fn decode_rows(model: &dyn GenerativeModel, latents: Vec<f32>, class: Option<u32>) -> Result<ImageBatch> {
    if class.is_some() {
        return super::conditional::decode_latents(model, &latents, class);
    }
    let d = model.latent_dim();
    let z = Tensor::from_vec(latents, ((), d), &Device::Cpu)?;
    ImageBatch::from_tensor(&model.decode(&z)?, model.config().input())
}

fn check_base(model: &dyn GenerativeModel, base: &[f32]) -> Result<()> {
    if base.len() != model.latent_dim() {
        return Err(EngineError::Other(format!(
            "a {}-d latent vector for a model with {} latent dimensions",
            base.len(),
            model.latent_dim()
        )));
    }
    Ok(())
}

/// A traversal grid: one row per dimension in `dims`, one column per value, each image the
/// decode of `base` with that dimension set to `base[d] + value`.
pub fn traversal(
    model: &dyn GenerativeModel,
    base: &[f32],
    dims: &[usize],
    values: &[f32],
) -> Result<ImageBatch> {
    traversal_class(model, base, dims, values, None)
}

/// [`traversal`] decoded under class `class` (a conditional model; `None`: the model's
/// default labels).
pub fn traversal_class(
    model: &dyn GenerativeModel,
    base: &[f32],
    dims: &[usize],
    values: &[f32],
    class: Option<u32>,
) -> Result<ImageBatch> {
    check_base(model, base)?;
    if let Some(&bad) = dims.iter().find(|&&d| d >= base.len()) {
        return Err(EngineError::Other(format!(
            "latent dimension {bad} does not exist (0–{})",
            base.len() - 1
        )));
    }
    decode_rows(model, traversal_rows(base, dims, values), class)
}

/// The latent vectors of a traversal, row-major: for each dimension in `dims`, for each value,
/// `base` with that dimension moved by the value. Dimensions outside `base` are skipped.
pub fn traversal_rows(base: &[f32], dims: &[usize], values: &[f32]) -> Vec<f32> {
    let mut z = Vec::with_capacity(dims.len() * values.len() * base.len());
    for &d in dims.iter().filter(|&&d| d < base.len()) {
        for &v in values {
            let mut row = base.to_vec();
            row[d] = base[d] + v;
            z.extend(row);
        }
    }
    z
}

/// `steps` decodes along the straight line from `a` to `b` (both ends included).
pub fn interpolate(model: &dyn GenerativeModel, a: &[f32], b: &[f32], steps: usize) -> Result<ImageBatch> {
    interpolate_class(model, a, b, steps, None)
}

/// [`interpolate`] decoded under class `class` (a conditional model; `None`: the model's
/// default labels).
pub fn interpolate_class(
    model: &dyn GenerativeModel,
    a: &[f32],
    b: &[f32],
    steps: usize,
    class: Option<u32>,
) -> Result<ImageBatch> {
    check_base(model, a)?;
    check_base(model, b)?;
    decode_rows(model, line_rows(a, b, steps), class)
}

/// `steps` (at least 2) latent vectors evenly spaced on the straight line from `a` to `b`,
/// both ends included, row-major.
pub fn line_rows(a: &[f32], b: &[f32], steps: usize) -> Vec<f32> {
    let mut z = Vec::with_capacity(steps.max(2) * a.len());
    for t in linspace(0.0, 1.0, steps.max(2)) {
        z.extend(a.iter().zip(b).map(|(x, y)| x + t * (y - x)));
    }
    z
}

/// The generator noise vector a GAN interpolation starts or ends at: `dim` standard normal
/// draws from seed `seed` (the same vector for the app and `genlab interpolate`).
pub fn noise_vector(seed: u64, dim: usize) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..dim).map(|_| Distribution::<f32>::sample(&StandardNormal, &mut rng)).collect()
}

/// A 2-D linear map of the latent space: the mean and the first two principal axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca2 {
    pub mean: Vec<f32>,
    /// Two unit vectors (each `dim` long).
    pub axes: [Vec<f32>; 2],
    /// Share of the variance each axis explains.
    pub explained: [f32; 2],
}

impl Pca2 {
    /// Principal axes of row vectors `x` (`n × dim`), by power iteration with deflation.
    /// With `dim ≤ 2` the map is the latent space itself (coordinate axes, no centring).
    pub fn fit(x: &[f32], dim: usize) -> Pca2 {
        let n = x.len() / dim.max(1);
        let mut mean = vec![0.0f32; dim];
        for row in x.chunks_exact(dim) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n.max(1) as f32);
        }
        let unit = |k: usize| (0..dim).map(|j| if j == k { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        // Covariance (dim × dim) in f64.
        let mut cov = vec![0.0f64; dim * dim];
        for row in x.chunks_exact(dim) {
            for a in 0..dim {
                let da = (row[a] - mean[a]) as f64;
                for b in 0..dim {
                    cov[a * dim + b] += da * (row[b] - mean[b]) as f64;
                }
            }
        }
        let total: f64 = (0..dim).map(|a| cov[a * dim + a]).sum::<f64>().max(1e-12);
        if dim <= 2 {
            let e0 = cov.first().copied().unwrap_or(0.0) / total;
            let e1 = if dim == 2 { cov[3] / total } else { 0.0 };
            let second = if dim == 2 { unit(1) } else { vec![0.0; dim] };
            // No projection needed: the map's axes are z₀ and z₁ themselves, uncentred.
            let mean = vec![0.0; dim];
            return Pca2 { mean, axes: [unit(0), second], explained: [e0 as f32, e1 as f32] };
        }
        let mut axes: [Vec<f32>; 2] = [unit(0), unit(1)];
        let mut explained = [0.0f32; 2];
        for k in 0..2 {
            let mut v: Vec<f64> = (0..dim).map(|j| 1.0 + (j * (k + 1)) as f64 * 0.01).collect();
            let mut lambda = 0.0;
            for _ in 0..200 {
                let mut w: Vec<f64> =
                    (0..dim).map(|a| (0..dim).map(|b| cov[a * dim + b] * v[b]).sum()).collect();
                let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
                if norm < 1e-18 {
                    break;
                }
                w.iter_mut().for_each(|x| *x /= norm);
                lambda = norm;
                v = w;
            }
            explained[k] = (lambda / total) as f32;
            axes[k] = v.iter().map(|&x| x as f32).collect();
            // Deflate: cov -= λ v vᵀ.
            for a in 0..dim {
                for b in 0..dim {
                    cov[a * dim + b] -= lambda * v[a] * v[b];
                }
            }
        }
        Pca2 { mean, axes, explained }
    }

    /// Coordinates of a latent vector on the two axes.
    pub fn project(&self, z: &[f32]) -> [f32; 2] {
        let c = |axis: &[f32]| z.iter().zip(&self.mean).zip(axis).map(|((z, m), a)| (z - m) * a).sum();
        [c(&self.axes[0]), c(&self.axes[1])]
    }

    /// The latent vector at map point `p` (the mean plus the two axes; other directions 0).
    pub fn unproject(&self, p: [f32; 2]) -> Vec<f32> {
        (0..self.mean.len()).map(|j| self.mean[j] + p[0] * self.axes[0][j] + p[1] * self.axes[1][j]).collect()
    }
}

/// Every logged fixed-noise grid of a run, as 8-bit images, within a memory budget: when the
/// budget is exceeded the oldest entries are thinned (every other one dropped), never the
/// first nor the latest.
#[derive(Clone, Debug)]
pub struct GridHistory {
    pub budget_bytes: usize,
    entries: Vec<(u64, ImageBatch)>,
    bytes: usize,
}

impl GridHistory {
    pub fn new(budget_bytes: usize) -> Self {
        Self { budget_bytes, entries: Vec::new(), bytes: 0 }
    }

    pub fn push(&mut self, step: u64, grid: ImageBatch) {
        if self.entries.last().is_some_and(|(s, _)| *s == step) {
            if let Some(last) = self.entries.last_mut() {
                self.bytes = self.bytes - last.1.pixels.len() + grid.pixels.len();
                last.1 = grid;
            }
        } else {
            self.bytes += grid.pixels.len();
            self.entries.push((step, grid));
        }
        while self.bytes > self.budget_bytes && self.entries.len() > 2 {
            self.thin_oldest_half();
        }
    }

    /// Drops every other entry in the older half (keeping the first).
    fn thin_oldest_half(&mut self) {
        let n = self.entries.len();
        let half = (n / 2).max(2);
        let mut kept = Vec::with_capacity(n);
        for (i, e) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if i == 0 || i >= half || i % 2 == 0 {
                kept.push(e);
            } else {
                self.bytes -= e.1.pixels.len();
            }
        }
        if kept.len() == n {
            // Nothing could go from the older half: drop the second entry.
            let e = kept.remove(1);
            self.bytes -= e.1.pixels.len();
        }
        self.entries = kept;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn steps(&self) -> Vec<u64> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }

    pub fn get(&self, i: usize) -> Option<(u64, &ImageBatch)> {
        self.entries.get(i).map(|(s, g)| (*s, g))
    }

    /// The entry logged at or just before `step`.
    pub fn at_step(&self, step: u64) -> Option<(u64, &ImageBatch)> {
        let i = self.entries.partition_point(|(s, _)| *s <= step);
        self.get(i.checked_sub(1)?)
    }

    pub fn latest(&self) -> Option<(u64, &ImageBatch)> {
        self.entries.last().map(|(s, g)| (*s, g))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops the grids logged after `step` (the run went back to it).
    pub fn truncate_after(&mut self, step: u64) {
        let keep = self.entries.partition_point(|(s, _)| *s <= step);
        for (_, g) in self.entries.drain(keep..) {
            self.bytes -= g.pixels.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::ImageShape;

    fn grid(x: u8) -> ImageBatch {
        ImageBatch { shape: ImageShape::new(1, 2, 2), pixels: vec![x; 8] }
    }

    #[test]
    fn truncate_after_drops_later_grids_and_their_bytes() {
        let mut h = GridHistory::new(1 << 20);
        for (i, step) in [0u64, 50, 100, 150, 200].into_iter().enumerate() {
            h.push(step, grid(i as u8));
        }
        h.truncate_after(120);
        assert_eq!(h.steps(), vec![0, 50, 100]);
        assert_eq!(h.bytes(), 3 * 8);
        assert_eq!(h.latest().map(|(s, g)| (s, g.pixels[0])), Some((100, 2)));
        // A grid logged exactly at the step stays; nothing before the first goes either way.
        h.truncate_after(50);
        assert_eq!(h.steps(), vec![0, 50]);
        h.truncate_after(1000);
        assert_eq!(h.steps(), vec![0, 50]);
        // Training on after the rewind logs new grids after the kept ones.
        h.push(100, grid(9));
        assert_eq!(h.at_step(100).map(|(_, g)| g.pixels[0]), Some(9));
        assert_eq!(h.bytes(), 3 * 8);
    }

    #[test]
    fn traversal_and_line_rows_are_laid_out_row_major() {
        let base = [1.0, 2.0, 3.0];
        let z = traversal_rows(&base, &[2, 0, 7], &[-1.0, 1.0]);
        // Dimension 7 does not exist and is skipped: 2 dims × 2 values × 3 entries.
        assert_eq!(z, vec![1.0, 2.0, 2.0, 1.0, 2.0, 4.0, 0.0, 2.0, 3.0, 2.0, 2.0, 3.0]);

        let line = line_rows(&[0.0, 10.0], &[4.0, 2.0], 5);
        assert_eq!(line, vec![0.0, 10.0, 1.0, 8.0, 2.0, 6.0, 3.0, 4.0, 4.0, 2.0]);
        assert_eq!(line_rows(&[1.0], &[3.0], 1), vec![1.0, 3.0], "at least both ends");
    }

    #[test]
    fn noise_vectors_are_seeded_standard_normals() {
        assert_eq!(noise_vector(7, 16), noise_vector(7, 16));
        assert_ne!(noise_vector(7, 16), noise_vector(8, 16));
        let v = noise_vector(1, 20_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
    }

    #[test]
    fn a_two_dimensional_latent_space_is_its_own_map() {
        let x = [1.0, 2.0, 3.0, 5.0, -1.0, 0.5];
        let pca = Pca2::fit(&x, 2);
        assert_eq!(pca.project(&[3.0, 5.0]), [3.0, 5.0]);
        assert_eq!(pca.unproject([-1.0, 0.5]), vec![-1.0, 0.5]);
        assert!((pca.explained[0] + pca.explained[1] - 1.0).abs() < 1e-6);
    }
}
