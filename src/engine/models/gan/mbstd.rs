//! Minibatch standard deviation (Karras et al. 2018, "Progressive Growing of GANs", §3): D
//! sees, beside each image's features, how much the features vary within a small group of the
//! batch. A generator that collapses onto a few modes makes its batches vary less than real
//! ones, and this one number lets D say so. Real and generated images go through D in separate
//! batches, so every group is all real or all generated, as the statistic needs.

use candle_core::Tensor;

use crate::engine::error::Result;

/// ProGAN's group size.
pub const GROUP: usize = 4;

/// The group size for a batch of `b`: the largest of 4, 3, 2 that divides it, else the whole
/// batch as one group (a short last batch of prime size).
pub fn group_size(b: usize) -> usize {
    (2..=GROUP.min(b)).rev().find(|g| b.is_multiple_of(*g)).unwrap_or(b)
}

/// `phi: [B, F]` → `[B, F + 1]`: the features with one more, the standard deviation over the
/// image's group of each feature, averaged over the features. Groups are strided, as in the
/// reference code's reshape to `[G, B/G, F]`: image i is in group i mod B/G.
pub fn append(phi: &Tensor) -> Result<Tensor> {
    let (b, f) = phi.dims2()?;
    let g = group_size(b);
    let m = b / g;
    let y = phi.reshape((g, m, f))?; // [G, M, F]
    let centred = y.broadcast_sub(&y.mean_keepdim(0)?)?;
    let std = (centred.sqr()?.mean(0)? + 1e-8)?.sqrt()?; // [M, F]
    let s = std.mean_keepdim(1)?; // [M, 1]
    let s = s.unsqueeze(0)?.broadcast_as((g, m, 1))?.reshape((b, 1))?; // [B, 1]
    Ok(Tensor::cat(&[phi, &s], 1)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

    use candle_core::Device;

    use super::*;

    #[test]
    fn the_feature_is_the_group_std() {
        let (b, f) = (8, 3);
        let v: Vec<f32> = (0..b * f).map(|i| ((i * 7919) % 13) as f32 * 0.5 - 2.0).collect();
        let phi = Tensor::from_vec(v.clone(), (b, f), &Device::Cpu).unwrap();
        let out = append(&phi).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!((out.len(), out[0].len()), (b, f + 1));
        // Groups of 4, strided: {0, 2, 4, 6} and {1, 3, 5, 7}.
        for (i, row) in out.iter().enumerate() {
            assert_eq!(&row[..f], &v[i * f..(i + 1) * f], "the features pass unchanged");
            let members: Vec<usize> = (0..b).filter(|j| j % 2 == i % 2).collect();
            let mut want = 0.0f64;
            for k in 0..f {
                let xs: Vec<f64> = members.iter().map(|&j| v[j * f + k] as f64).collect();
                let mean = xs.iter().sum::<f64>() / 4.0;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
                want += (var + 1e-8).sqrt() / f as f64;
            }
            assert!((row[f] as f64 - want).abs() < 1e-5, "image {i}: {} vs {want}", row[f]);
        }
    }

    #[test]
    fn groups_fit_any_batch() {
        assert_eq!([128, 64, 6, 9, 7, 2, 1].map(group_size), [4, 4, 3, 3, 7, 2, 1]);
        // A batch of one has no spread.
        let one = append(&Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap()).unwrap();
        assert!(one.to_vec2::<f32>().unwrap()[0][2] < 1e-3);
    }
}
