//! Differentiable augmentation for the discriminator (Zhao et al. 2020, "Differentiable
//! Augmentation for Data-Efficient GAN Training", DiffAugment): the same kind of random
//! transform T on real and generated images before D, in D's step and in G's step, so D never
//! sees an unaugmented image it could memorise and G's gradient flows back through T. Only the
//! geometric pair of the paper's policy is here, translation (up to 1/8 of the side) and
//! cutout (a square of half the side); the colour transforms and flips are left out, as flips
//! and rotations change what a digit is.
//!
//! Both transforms only move or blank pixels, so T is one gather: each output pixel reads one
//! input pixel of its own image or a fill value. `index_select` on the flattened batch with the
//! fill appended backpropagates (an index-add), which is all G's step needs.

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::engine::data::ImageShape;
use crate::engine::error::Result;

/// The paper's strengths (its reference code's defaults): translation by up to 1/8 of the
/// image's side, cutout of a square half the side.
pub const TRANSLATION: f64 = 0.125;
pub const CUTOUT: f64 = 0.5;

/// Which of DiffAugment's transforms a GAN applies when `diff_augment` is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentPolicy {
    /// Translation and cutout (the paper's geometric pair; what configurations saved before
    /// the policy existed had).
    #[default]
    TranslationCutout,
    /// Translation only: a half-side cutout blanks most of a 28×28 digit's strokes.
    Translation,
}

impl AugmentPolicy {
    /// (translation, cutout) strengths, as fractions of the image's side.
    pub fn strengths(self) -> (f64, f64) {
        match self {
            AugmentPolicy::TranslationCutout => (TRANSLATION, CUTOUT),
            AugmentPolicy::Translation => (TRANSLATION, 0.0),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AugmentPolicy::TranslationCutout => "translation + cutout",
            AugmentPolicy::Translation => "translation",
        }
    }
}

/// For `b` images of `shape`, row-major `[B, C·H·W]`: the source of each output value in the
/// flattened batch, or `b·C·H·W` (the appended fill) for a pixel shifted in from outside or
/// inside the cutout. Per image: a shift (dy, dx) uniform in [−s, s]², s = round(`translation`
/// · side), and a `cutout` · side square centred uniformly (it may overhang the border), as in
/// DiffAugment's `rand_translation` and `rand_cutout`. At 0 and 0 it is the identity.
pub fn gather_indices(
    b: usize,
    shape: ImageShape,
    translation: f64,
    cutout: f64,
    rng: &mut StdRng,
) -> Vec<u32> {
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let n = c * h * w;
    let fill = (b * n) as u32;
    let round = |side: usize, r: f64| (side as f64 * r + 0.5) as i64;
    let (sy, sx) = (round(h, translation), round(w, translation));
    let (ch, cw) = (round(h, cutout), round(w, cutout));
    let mut out = Vec::with_capacity(b * n);
    for i in 0..b {
        let dy = rng.random_range(-sy..=sy);
        let dx = rng.random_range(-sx..=sx);
        // The cutout's rows [oy − ch/2, oy − ch/2 + ch) ∩ [0, H); an odd size's centre may sit
        // on either border, an even size's one past it (the reference's offset range).
        let (cy0, cx0) = if ch > 0 && cw > 0 {
            let oy = rng.random_range(0..h as i64 + 1 - ch % 2);
            let ox = rng.random_range(0..w as i64 + 1 - cw % 2);
            (oy - ch / 2, ox - cw / 2)
        } else {
            (0, 0)
        };
        for ci in 0..c {
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let cut = (cy0..cy0 + ch).contains(&y) && (cx0..cx0 + cw).contains(&x);
                    let (yy, xx) = (y + dy, x + dx);
                    let inside = (0..h as i64).contains(&yy) && (0..w as i64).contains(&xx);
                    out.push(if cut || !inside {
                        fill
                    } else {
                        (i * n + ci * h * w) as u32 + (yy as usize * w + xx as usize) as u32
                    });
                }
            }
        }
    }
    out
}

/// `x: [B, C·H·W]` → the same shape, each image translated and cut out (see
/// [`gather_indices`]), the uncovered pixels set to `fill` (the background in D's space: −1
/// for a tanh GAN, 0 for a sigmoid one). Differentiable in `x`.
pub fn diff_augment(
    x: &Tensor,
    shape: ImageShape,
    fill: f64,
    translation: f64,
    cutout: f64,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let (b, n) = x.dims2()?;
    let idx = gather_indices(b, shape, translation, cutout, rng);
    let idx = Tensor::from_vec(idx, b * n, x.device())?;
    let fill = Tensor::full(fill, 1, x.device())?.to_dtype(x.dtype())?;
    let flat = Tensor::cat(&[&x.flatten_all()?, &fill], 0)?; // [B·N + 1]
    Ok(flat.index_select(&idx, 0)?.reshape((b, n))?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

    use candle_core::{DType, Device, Var};
    use rand::SeedableRng;

    use super::*;

    fn ramp(b: usize, n: usize) -> Tensor {
        let v: Vec<f32> = (0..b * n).map(|i| 1.0 + i as f32).collect();
        Tensor::from_vec(v, (b, n), &Device::Cpu).unwrap()
    }

    #[test]
    fn zero_strength_is_the_identity() {
        let shape = ImageShape::new(2, 5, 4);
        let x = ramp(3, shape.len());
        let y = diff_augment(&x, shape, -1.0, 0.0, 0.0, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(y.dims(), x.dims());
        assert_eq!(y.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
    }

    /// Every output pixel is the fill or its image's own pixel at one shift (dy, dx) with
    /// |dy|, |dx| ≤ 4 on 28×28, the same for all channels; the cutout blanks a 14×14 square
    /// (less where it overhangs the border) and nothing else is blanked apart from the shift.
    #[test]
    fn translation_and_cutout_follow_the_reference_recipe() {
        let shape = ImageShape::new(2, 28, 28);
        let (b, n, hw) = (16, shape.len(), 28 * 28);
        let x = ramp(b, n);
        let mut rng = StdRng::seed_from_u64(7);
        let y = diff_augment(&x, shape, -1.0, TRANSLATION, CUTOUT, &mut rng).unwrap();
        assert_eq!(y.dims(), &[b, n]);
        let (xs, ys) = (x.to_vec2::<f32>().unwrap(), y.to_vec2::<f32>().unwrap());
        let mut blanked_some = false;
        for (xi, yi) in xs.iter().zip(&ys) {
            // The shift from any pixel that is not the fill (values are distinct and > 0).
            let mut shift = None;
            for (p, &v) in yi.iter().enumerate() {
                if v == -1.0 {
                    continue;
                }
                let src = xi.iter().position(|&u| u == v).unwrap();
                assert_eq!(src / hw, p / hw, "a pixel came from another channel");
                let d = ((src % hw / 28) as i64 - (p % hw / 28) as i64, (src % 28) as i64 - (p % 28) as i64);
                assert!(d.0.abs() <= 4 && d.1.abs() <= 4, "shift {d:?} is over 1/8 of the side");
                assert_eq!(*shift.get_or_insert(d), d, "one shift per image");
            }
            let (dy, dx) = shift.unwrap();
            // Fill that the shift alone does not explain is the cutout: within one 14×14 box,
            // the same in both channels.
            let cut: Vec<(usize, usize)> = (0..hw)
                .filter(|&p| {
                    let (yy, xx) = ((p / 28) as i64 + dy, (p % 28) as i64 + dx);
                    yi[p] == -1.0 && (0..28).contains(&yy) && (0..28).contains(&xx)
                })
                .map(|p| (p / 28, p % 28))
                .collect();
            for &(r, c) in &cut {
                assert_eq!(yi[hw + r * 28 + c], -1.0, "the cutout covers every channel");
            }
            if let (Some(r0), Some(r1)) = (cut.iter().map(|p| p.0).min(), cut.iter().map(|p| p.0).max()) {
                let (c0, c1) =
                    (cut.iter().map(|p| p.1).min().unwrap(), cut.iter().map(|p| p.1).max().unwrap());
                assert!(r1 - r0 < 14 && c1 - c0 < 14, "the cutout is larger than half the side");
                blanked_some = true;
            }
        }
        assert!(blanked_some);
    }

    /// The augmented batch's gradient is the index-add of the upstream gradient: with
    /// upstream weights u, ∂(Σ u·T(x))/∂x_p = Σ over outputs reading p of u.
    #[test]
    fn the_gradient_reaches_the_input() {
        let shape = ImageShape::new(1, 8, 8);
        let (b, n) = (3, shape.len());
        let x = Var::from_tensor(&ramp(b, n).to_dtype(DType::F64).unwrap()).unwrap();
        let u: Vec<f64> = (0..b * n).map(|i| (i % 7) as f64 - 3.0).collect();
        let ut = Tensor::from_vec(u.clone(), (b, n), &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let y = diff_augment(x.as_tensor(), shape, -1.0, TRANSLATION, CUTOUT, &mut rng).unwrap();
        let grads = (y * &ut).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let idx = gather_indices(b, shape, TRANSLATION, CUTOUT, &mut StdRng::seed_from_u64(3));
        let mut want = vec![0.0; b * n];
        for (o, &s) in idx.iter().enumerate() {
            if (s as usize) < b * n {
                want[s as usize] += u[o];
            }
        }
        assert_eq!(g, want);
        assert!(g.iter().any(|&v| v != 0.0));
    }
}
