//! The evidence for the schedule and samplers: closed forms, exact denoisers.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::engine::models::layers::normal_tensor;

fn col_stats(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = x.dims2().unwrap();
    let v = x.to_vec2::<f32>().unwrap();
    let mean: Vec<f64> = (0..d).map(|j| v.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64).collect();
    let var: Vec<f64> = (0..d)
        .map(|j| v.iter().map(|r| (r[j] as f64 - mean[j]).powi(2)).sum::<f64>() / (n - 1) as f64)
        .collect();
    (mean, var)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// ᾱ follows Nichol & Dhariwal's formula wherever β is not clipped, falls monotonically
/// from 1 and is nearly 0 at T.
#[test]
fn cosine_schedule_has_its_closed_form() {
    let s = CosineSchedule::new(TRAIN_STEPS);
    let f = |t: f64| ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    assert_eq!(s.alpha_bar(0), 1.0);
    for t in [1, 10, 100, 500, 900, 980] {
        let want = f(t as f64) / f(0.0);
        assert!(
            (s.alpha_bar(t) - want).abs() < 1e-9 * want.max(1e-3),
            "ᾱ_{t} = {} vs {want}",
            s.alpha_bar(t)
        );
    }
    assert!((1..=TRAIN_STEPS).all(|t| s.alpha_bar(t) < s.alpha_bar(t - 1)));
    assert!(s.alpha_bar(TRAIN_STEPS) < 1e-6);
    assert_eq!(s.respaced(1), vec![1000]);
    assert_eq!(s.respaced(4), vec![1000, 750, 500, 250]);
    assert_eq!(s.respaced(1000), (1..=1000).rev().collect::<Vec<_>>());
}

/// x_t of both processes, drawn many times from one x₀, has the closed form's mean and
/// variance: DDPM √ᾱ x₀ and 1 − ᾱ, the flow (1 − t) x₀ and t².
#[test]
fn forward_process_matches_its_closed_form() {
    let mut rng = StdRng::seed_from_u64(1);
    let n = 40_000;
    let x0_row = [-1.0f32, -0.3, 0.4, 1.0];
    let x0 = Tensor::from_vec(x0_row.repeat(n), (n, 4), &Device::Cpu).unwrap();
    let sched = CosineSchedule::new(TRAIN_STEPS);
    for t in [50, 400, 800] {
        let ab = sched.alpha_bar(t);
        let eps = normal_tensor(n, 4, 1.0, &mut rng).unwrap();
        let xt = ddpm_noised(&x0, &eps, &vec![ab; n]).unwrap();
        let (mean, var) = col_stats(&xt);
        for j in 0..4 {
            let m = ab.sqrt() * x0_row[j] as f64;
            assert!((mean[j] - m).abs() < 0.02, "t {t}: mean {} vs {m}", mean[j]);
            assert!(
                (var[j] - (1.0 - ab)).abs() < 0.03 * (1.0 - ab) + 1e-3,
                "t {t}: var {} vs {}",
                var[j],
                1.0 - ab
            );
        }
    }
    for t in [0.1, 0.5, 0.9] {
        let eps = normal_tensor(n, 4, 1.0, &mut rng).unwrap();
        let (xt, v) = flow_noised(&x0, &eps, &vec![t; n]).unwrap();
        let (mean, var) = col_stats(&xt);
        for j in 0..4 {
            let m = (1.0 - t) * x0_row[j] as f64;
            assert!((mean[j] - m).abs() < 0.02, "t {t}: mean {} vs {m}", mean[j]);
            assert!((var[j] - t * t).abs() < 0.03 * t * t, "t {t}: var {} vs {}", var[j], t * t);
        }
        assert!(max_abs_diff(&v, &(&eps - &x0).unwrap()) < 1e-6);
    }
}

/// A denoiser that returns the noise actually in x_t (given the true x₀) makes DDIM (η = 0)
/// and DDPM's ancestral sampler (η = 1) land on x₀ from any x_T, at every step count.
#[test]
fn exact_noise_makes_ddpm_and_ddim_reconstruct_x0() {
    let mut rng = StdRng::seed_from_u64(2);
    let (b, d) = (6, 50);
    let vals: Vec<f32> = (0..b * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x0 = Tensor::from_vec(vals, (b, d), &Device::Cpu).unwrap();
    let sched = CosineSchedule::new(TRAIN_STEPS);
    for (eta, steps) in [(0.0, 1), (0.0, 10), (0.0, 50), (0.0, 1000), (1.0, 10), (1.0, 1000), (0.5, 37)] {
        let xt = normal_tensor(b, d, 1.0, &mut rng).unwrap();
        let mut calls = 0;
        let mut oracle = |x: &Tensor, tf: f64| -> Result<Tensor> {
            calls += 1;
            let ab = sched.alpha_bar((tf * TRAIN_STEPS as f64).round() as usize);
            Ok(((x - (&x0 * ab.sqrt())?)? / (1.0 - ab).sqrt())?)
        };
        let out = sample_ddim(&sched, &xt, steps, eta, false, &mut oracle, &mut rng, None).unwrap();
        assert_eq!(calls, steps);
        // One step divides f32 rounding by √ᾱ_T ≈ 5e-5; from t ≤ 100 it is exact to f32.
        let tol = if steps == 1 { 1e-2 } else { 1e-4 };
        let err = max_abs_diff(&out, &x0);
        assert!(err < tol, "η {eta}, {steps} steps: max error {err}");
    }
}

/// Gaussian data N(μ, s²) per dimension and Gaussian noise: the path's exact velocity
/// E[ε − x₀ | x_t] is affine in x_t, and its ODE maps x₁ to μ + s x₁. Euler (many steps) and
/// Heun (few) land there, and so on the target's moments.
#[test]
fn flow_euler_and_heun_with_the_exact_velocity_reach_the_target() {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 20_000;
    let (mu, s) = ([1.5f64, -0.5], [0.5f64, 2.0]);
    let x1 = normal_tensor(n, 2, 1.0, &mut rng).unwrap();
    let mut exact = |x: &Tensor, t: f64| -> Result<Tensor> {
        let (a, c): (Vec<f32>, Vec<f32>) = (0..2)
            .map(|j| {
                let var = (1.0 - t).powi(2) * s[j] * s[j] + t * t;
                let a = (t - (1.0 - t) * s[j] * s[j]) / var;
                (a as f32, (-a * (1.0 - t) * mu[j] - mu[j]) as f32)
            })
            .unzip();
        let a = Tensor::from_vec(a, (1, 2), &Device::Cpu)?;
        let c = Tensor::from_vec(c, (1, 2), &Device::Cpu)?;
        Ok(x.broadcast_mul(&a)?.broadcast_add(&c)?)
    };
    let target = {
        let m = Tensor::from_vec(vec![mu[0] as f32, mu[1] as f32], (1, 2), &Device::Cpu).unwrap();
        let sd = Tensor::from_vec(vec![s[0] as f32, s[1] as f32], (1, 2), &Device::Cpu).unwrap();
        x1.broadcast_mul(&sd).unwrap().broadcast_add(&m).unwrap()
    };
    // Tolerances from the same integration in f64 over ±4.2σ: Euler's error falls as 1/steps
    // (0.062 at 200, 0.012 at 1,000), Heun's as 1/steps² (0.011 at 20).
    for (heun, steps, tol) in [(false, 200, 0.1), (true, 20, 0.03), (false, 1000, 0.025)] {
        let out = sample_flow(&x1, steps, heun, &mut exact, None).unwrap();
        let err = max_abs_diff(&out, &target);
        assert!(err < tol, "heun {heun}, {steps} steps: max error {err}");
        let (mean, var) = col_stats(&out);
        for j in 0..2 {
            assert!((mean[j] - mu[j]).abs() < 0.05, "mean {} vs {}", mean[j], mu[j]);
            assert!((var[j].sqrt() - s[j]).abs() < 0.05 * s[j], "sd {} vs {}", var[j].sqrt(), s[j]);
        }
    }
    // One Euler step of the exact field is far off: the test can tell a sampler apart.
    let one = sample_flow(&x1, 1, false, &mut exact, None).unwrap();
    assert!(max_abs_diff(&one, &target) > 0.1);
}

#[test]
fn step_counts_outside_1_to_1000_are_refused() {
    let x = Tensor::zeros((1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut v = |x: &Tensor, _t: f64| -> Result<Tensor> { Ok(x.clone()) };
    assert!(sample_flow(&x, 0, false, &mut v, None).is_err());
    assert!(sample_flow(&x, 1001, false, &mut v, None).is_err());
}
