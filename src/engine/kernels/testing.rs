//! Helpers of the kernels' unit tests: seeded random tensors, differences, test geometries.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// A uniform tensor in [−1, 1) from a fixed linear congruential sequence.
pub(super) fn randn(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest absolute difference between two tensors of one shape.
pub(super) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

pub(super) fn rand_tensor(shape: &[usize], rng: &mut StdRng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub(super) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Largest difference relative to the larger magnitude (floored at 1, so tiny values compare absolutely).
pub(super) fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1.0)).fold(0.0, f32::max)
}

/// One test shape: `x [batch, cin, h, w]`, `cout` output channels, a `k`×`k` kernel, stride
/// `s`, padding `p`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Case {
    pub(super) batch: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) s: usize,
    pub(super) p: usize,
}

/// `[batch, cin, cout, h, w, k, s, p]`
pub(super) const fn case([batch, cin, cout, h, w, k, s, p]: [usize; 8]) -> Case {
    Case { batch, cin, cout, h, w, k, s, p }
}

pub(super) const CASES: [Case; 10] = [
    case([2, 3, 5, 8, 8, 4, 2, 1]),
    // 20 outputs a row: more than the vector rows take, so f32 runs the portable loops.
    case([1, 2, 3, 6, 40, 4, 2, 1]),
    case([3, 1, 4, 28, 28, 4, 2, 1]),
    case([2, 4, 3, 7, 7, 4, 2, 1]),
    case([1, 2, 2, 6, 10, 4, 2, 1]),
    case([2, 3, 4, 9, 7, 3, 1, 1]),
    case([2, 5, 2, 5, 5, 3, 1, 1]),
    case([2, 2, 3, 6, 6, 3, 2, 0]),
    // Stride 1 with rows wider than a vector (the diffusion U-Net's 28×28 layers) and of a
    // length that is no multiple of 16.
    case([2, 3, 4, 28, 28, 3, 1, 1]),
    case([1, 2, 3, 5, 21, 3, 1, 1]),
];
