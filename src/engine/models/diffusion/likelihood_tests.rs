//! The ELBO's parts: the normal CDF against tabulated values, the bins' masses summing to one,
//! and the bound against the exact −log P(x) of 8-bit Gaussian data under its exact denoiser.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::engine::models::diffusion::schedule::TRAIN_STEPS;

#[test]
fn log_phi_matches_tables_and_the_far_tails() {
    // Φ(0) = ½, Φ(1.96) = 0.975002105, Φ(−3) = 0.001349898, log Φ(−10) = −53.23128515.
    for (z, want) in [(0.0, 0.5f64.ln()), (1.96, 0.975_002_105f64.ln()), (-3.0, 0.001_349_898f64.ln())] {
        assert!((log_phi(z) - want).abs() < 1e-6, "log Φ({z}) = {} vs {want}", log_phi(z));
    }
    assert!((log_phi(-10.0) + 53.231_285_15).abs() < 1e-5, "{}", log_phi(-10.0));
    assert!((log_phi(-40.0) + 804.608_442).abs() < 1e-3, "{}", log_phi(-40.0));
    // log Φ(8) = log(1 − 6.22e-16).
    assert!((log_phi(8.0) + 6.220_96e-16).abs() < 1e-21, "{}", log_phi(8.0));
    assert_eq!(log_phi(f64::NEG_INFINITY), f64::NEG_INFINITY);
    assert_eq!(log_phi(f64::INFINITY), 0.0);
}

/// Over the 256 bins the decoder's masses sum to one, wherever its mean and whatever its σ.
#[test]
fn bin_masses_sum_to_one() {
    for (m, sigma) in [(0.0, 0.0065), (0.99, 0.0065), (-1.3, 0.02), (0.3, 0.5), (0.1234, 1e-4)] {
        let total: f64 = (0..=255).map(|k| log_bin_mass(k as f64 / LEVELS * 2.0 - 1.0, m, sigma).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "m = {m}, σ = {sigma}: {total}");
    }
    // Far from the mean a bin is still a finite, very negative log-mass.
    let far = log_bin_mass(0.9, -0.9, 0.0065);
    assert!(far.is_finite() && far < -1e4, "{far}");
}

/// 8-bit data, each pixel independently a discretised N(0, s²): P(level) is known, and so is
/// the exact denoiser E[ε | x_t] (a 256-term posterior per pixel).
struct DiscreteGaussian {
    levels: Vec<f64>,
    log_p: Vec<f64>,
}

impl DiscreteGaussian {
    fn new(s: f64) -> Self {
        let levels: Vec<f64> = (0..=255).map(|k| k as f64 / LEVELS * 2.0 - 1.0).collect();
        let log_p = levels.iter().map(|&x| log_bin_mass(x, 0.0, s)).collect();
        Self { levels, log_p }
    }

    fn sample(&self, n: usize, rng: &mut StdRng) -> Vec<usize> {
        let cdf: Vec<f64> = self
            .log_p
            .iter()
            .scan(0.0, |acc, lp| {
                *acc += lp.exp();
                Some(*acc)
            })
            .collect();
        (0..n)
            .map(|_| {
                let u: f64 = rng.random_range(0.0..cdf[255]);
                cdf.iter().position(|&c| c >= u).unwrap_or(255)
            })
            .collect()
    }

    /// E[ε | x_t] for one pixel at ᾱ.
    fn eps(&self, xt: f64, ab: f64) -> f64 {
        let var = 1.0 - ab;
        let logits: Vec<f64> = self
            .levels
            .iter()
            .zip(&self.log_p)
            .map(|(&x, &lp)| lp - (xt - ab.sqrt() * x).powi(2) / (2.0 * var))
            .collect();
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut num, mut den) = (0.0, 0.0);
        for (&l, &x) in logits.iter().zip(&self.levels) {
            let w = (l - m).exp();
            num += w * x;
            den += w;
        }
        (xt - ab.sqrt() * num / den) / var.sqrt()
    }
}

/// With the exact denoiser the model's −ELBO averaged over the data is at least the data's
/// entropy (−ELBO ≥ −log p_θ, and cross-entropy ≥ entropy), per image paired with −log P(x),
/// and close to it: the gap left is the fixed reverse variances', not the Monte-Carlo's.
#[test]
fn bound_is_above_the_exact_density_and_close_to_it() {
    let sched = CosineSchedule::new(TRAIN_STEPS);
    let data = DiscreteGaussian::new(0.3);
    let mut rng = StdRng::seed_from_u64(7);
    let (n, d) = (400, 4);
    let idx = data.sample(n * d, &mut rng);
    let x: Vec<f32> = idx.iter().map(|&k| data.levels[k] as f32).collect();
    let true_nll: Vec<f64> = idx.chunks(d).map(|r| -r.iter().map(|&k| data.log_p[k]).sum::<f64>()).collect();
    let x0 = Tensor::from_vec(x, (n, d), &Device::Cpu).unwrap();
    let data = &data;
    let mut exact = |xt: &Tensor, t: &[f64]| -> Result<Tensor> {
        let v: Vec<f32> = xt.flatten_all()?.to_vec1()?;
        let e: Vec<f32> = v
            .chunks(d)
            .zip(t)
            .flat_map(|(row, &t)| {
                let ab = sched.alpha_bar((t * TRAIN_STEPS as f64).round() as usize);
                row.iter().map(move |&p| data.eps(p as f64, ab) as f32).collect::<Vec<_>>()
            })
            .collect();
        Ok(Tensor::from_vec(e, (n, d), &Device::Cpu)?)
    };
    let bits = |nats: f64| nats / (d as f64 * std::f64::consts::LN_2);
    let mut gaps = Vec::new();
    for draws in [4, 64] {
        let elbo = neg_elbo(&sched, &x0, draws, &mut exact, &mut rng).unwrap();
        let diff: Vec<f64> = elbo.iter().zip(&true_nll).map(|(e, t)| e.total() - t).collect();
        let mean = diff.iter().sum::<f64>() / n as f64;
        let sd = (diff.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let se = sd / (n as f64).sqrt();
        let true_bits = bits(true_nll.iter().sum::<f64>() / n as f64);
        let prior = elbo.iter().map(|e| e.prior).sum::<f64>() / n as f64;
        let dec = elbo.iter().map(|e| e.decoder).sum::<f64>() / n as f64;
        eprintln!(
            "{draws} draws: true {true_bits:.4} bits/dim, gap {:.4} ± {:.4} bits/dim (sd {:.4}); L_T {:.2e}, L_0 {:.4} bits/dim",
            bits(mean),
            bits(se),
            bits(sd),
            bits(prior),
            bits(dec)
        );
        assert!(mean > -3.0 * se, "the bound fell below −log P: {mean} ± {se} nats");
        gaps.push((bits(mean), bits(sd)));
    }
    // More draws: the same bound, less spread per image.
    assert!(gaps[1].1 < 0.5 * gaps[0].1, "{gaps:?}");
    assert!(gaps[1].0 < 0.5, "the bound is loose by {} bits/dim", gaps[1].0);
}

/// A denoiser whose error is known at every t (ε̂ = ε + f(t) per pixel, so ‖ε − ε̂‖² = D f(t)²):
/// the importance-sampled sum matches the sum over all 999 timesteps on average, and its
/// spread per image is small because the draws only see f, not the weights' 100× range.
#[test]
fn importance_sampled_sum_is_unbiased_against_the_full_sum() {
    let sched = CosineSchedule::new(TRAIN_STEPS);
    let (n, d) = (200, 3);
    let pixels = [0.2f32, -0.5, 0.9];
    let x0 = Tensor::from_vec(pixels.repeat(n), (n, d), &Device::Cpu).unwrap();
    let f = |t: f64| 0.3 + t;
    let mut net = |xt: &Tensor, t: &[f64]| -> Result<Tensor> {
        let v: Vec<f32> = xt.flatten_all()?.to_vec1()?;
        let e: Vec<f32> = v
            .chunks(d)
            .zip(t)
            .flat_map(|(row, &t)| {
                let ab = sched.alpha_bar((t * TRAIN_STEPS as f64).round() as usize);
                row.iter()
                    .zip(&pixels)
                    .map(move |(&p, &x)| {
                        ((p as f64 - ab.sqrt() * x as f64) / (1.0 - ab).sqrt() + f(t)) as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Tensor::from_vec(e, (n, d), &Device::Cpu)?)
    };
    let exact: f64 = (2..=TRAIN_STEPS)
        .map(|t| {
            let (w, c) = kl_terms(&sched, t);
            (w * f(t as f64 / TRAIN_STEPS as f64).powi(2) + c) * d as f64
        })
        .sum();
    let mut rng = StdRng::seed_from_u64(3);
    let elbo = neg_elbo(&sched, &x0, 8, &mut net, &mut rng).unwrap();
    let est: Vec<f64> = elbo.iter().map(|e| e.diffusion).collect();
    let mean = est.iter().sum::<f64>() / n as f64;
    let sd = (est.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    eprintln!("exact Σ L_t-1 {exact:.4} nats; estimate {mean:.4} ± {sd:.4} (sd per image, 8 draws)");
    assert!((mean - exact).abs() < 3.0 * sd / (n as f64).sqrt() + 1e-3 * exact, "{mean} vs {exact}");
    // The spread one unstratified draw would have, times 1/√8, under the mixture and under
    // uniform t: g(t) = w_t D f(t)², the estimate g(t)/P(t).
    let proposal = TimeProposal::new(&sched);
    let g = |t: usize| kl_terms(&sched, t).0 * d as f64 * f(t as f64 / TRAIN_STEPS as f64).powi(2);
    let spread = |p: &dyn Fn(usize) -> f64| {
        let m: f64 = (2..=TRAIN_STEPS).map(g).sum();
        let second: f64 = (2..=TRAIN_STEPS).map(|t| g(t).powi(2) / p(t)).sum();
        ((second - m * m) / 8.0).sqrt()
    };
    let mixture = spread(&|t| proposal.probability(t));
    let uniform = spread(&|_| 1.0 / (TRAIN_STEPS - 1) as f64);
    eprintln!("unstratified spread: mixture {mixture:.1}, uniform {uniform:.1}");
    assert!(sd < 1.2 * mixture, "measured spread {sd} vs the mixture's {mixture}");
    assert!(mixture < 0.5 * uniform, "mixture {mixture} vs uniform {uniform}");
}
