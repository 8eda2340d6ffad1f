//! The models' math against closed forms and naive formulas.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use candle_core::{Device, Tensor, Var};
use genlab::engine::kernels::{reference, Exec, KernelPath, RowLoss};
use genlab::engine::models::layers::ParamSet;
use genlab::engine::models::losses::{kl_rows, softplus};
use genlab::engine::models::optim::{adam_reference, grads_finite, Adam, AdamConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn t(v: &[f32], rows: usize) -> Tensor {
    Tensor::from_slice(v, (rows, v.len() / rows), &Device::Cpu).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn kl_closed_form_matches_monte_carlo() {
    // KL(N(μ, σ²) ‖ N(0, 1)) per dimension, estimated as E_q[log q(z) − log p(z)].
    let mus = [0.0f64, 1.5, -0.7];
    let logvars = [0.0f64, -1.2, 0.8];
    let closed = vec1(&kl_rows(&t(&mus.map(|v| v as f32), 1), &t(&logvars.map(|v| v as f32), 1)).unwrap())[0];
    let mut rng = StdRng::seed_from_u64(1);
    let n = 200_000;
    let mut mc = 0.0;
    for (&mu, &lv) in mus.iter().zip(&logvars) {
        let sd = (0.5 * lv).exp();
        let q = Normal::new(mu, sd).unwrap();
        let mut s = 0.0;
        for _ in 0..n {
            let z: f64 = q.sample(&mut rng);
            let log_q = -0.5 * ((z - mu) / sd).powi(2) - sd.ln();
            let log_p = -0.5 * z * z;
            s += log_q - log_p;
        }
        mc += s / n as f64;
    }
    let rel = (closed as f64 - mc).abs() / mc;
    assert!(rel < 0.01, "closed form {closed} vs Monte Carlo {mc} (relative error {rel})");
    // The closed form by hand: ½ Σ (σ² + μ² − 1 − log σ²).
    let by_hand: f64 = mus.iter().zip(&logvars).map(|(m, l)| 0.5 * (l.exp() + m * m - 1.0 - l)).sum();
    assert!((closed as f64 - by_hand).abs() < 1e-5);
}

#[test]
fn gradients_reach_mu_and_logvar_through_the_reparameterised_sample() {
    let mu = Var::from_tensor(&t(&[0.3, -0.2, 0.5, 0.1], 2)).unwrap();
    let logvar = Var::from_tensor(&t(&[0.1, -0.4, 0.2, 0.0], 2)).unwrap();
    let eps = t(&[0.7, -1.1, 0.4, 2.0], 2);
    // z = μ + σ ⊙ ε, a loss that depends on z only: Σ z².
    let z = (mu.as_tensor() + (logvar.as_tensor() * 0.5).unwrap().exp().unwrap().mul(&eps).unwrap()).unwrap();
    let loss = z.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let gmu = vec1(grads.get(mu.as_tensor()).expect("μ gets a gradient"));
    let glv = vec1(grads.get(logvar.as_tensor()).expect("log σ² gets a gradient"));
    let (m, l, e) = (vec1(mu.as_tensor()), vec1(logvar.as_tensor()), vec1(&eps));
    for i in 0..4 {
        let sd = (0.5 * l[i]).exp();
        let z = m[i] + sd * e[i];
        // ∂/∂μ z² = 2z; ∂/∂logσ² z² = 2z · ε · ½σ.
        assert!((gmu[i] - 2.0 * z).abs() < 1e-5, "dμ[{i}]");
        assert!((glv[i] - 2.0 * z * e[i] * 0.5 * sd).abs() < 1e-5, "dlogσ²[{i}]");
    }
}

#[test]
fn bce_from_logits_equals_the_naive_formula_where_finite() {
    let logits = [-8.0f32, -2.0, -0.1, 0.0, 0.3, 1.7, 6.0, 12.0];
    let target = [0.0f32, 0.2, 1.0, 0.5, 0.9, 0.0, 1.0, 0.3];
    let ours = vec1(&reference::row_loss(&t(&logits, 8), &t(&target, 8), RowLoss::BceWithLogits).unwrap());
    for i in 0..8 {
        let p = 1.0 / (1.0 + (-(logits[i] as f64)).exp());
        let x = target[i] as f64;
        let naive = -(x * p.ln() + (1.0 - x) * (1.0 - p).ln());
        assert!(
            (ours[i] as f64 - naive).abs() < 1e-4 * naive.max(1.0),
            "logit {}: {} vs {naive}",
            logits[i],
            ours[i]
        );
    }
    // Stable where the naive formula overflows.
    let big = vec1(&softplus(&t(&[-1000.0, 1000.0], 2)).unwrap());
    assert_eq!(big[0], 0.0);
    assert_eq!(big[1], 1000.0);
}

/// Both kernel paths' Adam (the fused update and the stock-op one) against the textbook.
#[test]
fn adam_matches_the_textbook_update_on_both_kernel_paths() {
    for path in KernelPath::ALL {
        adam_case(path);
    }
}

fn adam_case(path: KernelPath) {
    let mut rng = StdRng::seed_from_u64(3);
    let mut ps = ParamSet::new(Exec::new(Device::Cpu, path));
    let w = ps.uniform("w".into(), &[3, 5], 1.0, &mut rng).unwrap();
    let cfg = AdamConfig { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6 };
    let mut adam = Adam::new(cfg, &ps).unwrap();
    let mut p_ref = vec1(&w);
    let (mut m, mut v) = (vec![0.0; 15], vec![0.0; 15]);
    let target = Tensor::ones((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    for step in 1..=5 {
        let loss = (ps.params[0].1.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = vec1(grads.get(ps.params[0].1.as_tensor()).unwrap());
        adam.step(&ps, &grads).unwrap();
        adam_reference(&mut p_ref, &g, &mut m, &mut v, cfg, step);
        let ours = vec1(ps.params[0].1.as_tensor());
        for (a, b) in ours.iter().zip(&p_ref) {
            assert!((a - b).abs() < 1e-6, "{path}: step {step}: {a} vs {b}");
        }
    }
}

#[test]
fn fused_adam_spread_over_a_pool_matches_the_textbook_update() {
    // 90,000 values: the update splits into chunks over the pool's two threads.
    let mut rng = StdRng::seed_from_u64(4);
    let mut ps = ParamSet::default();
    let w = ps.uniform("w".into(), &[300, 300], 1.0, &mut rng).unwrap();
    let cfg = AdamConfig { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6 };
    let mut adam = Adam::new(cfg, &ps).unwrap();
    let mut p_ref = vec1(&w);
    let (mut m, mut v) = (vec![0.0; 90_000], vec![0.0; 90_000]);
    let target = Tensor::ones((300, 300), candle_core::DType::F32, &Device::Cpu).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for step in 1..=3 {
        let loss = (ps.params[0].1.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = vec1(grads.get(ps.params[0].1.as_tensor()).unwrap());
        pool.install(|| adam.step(&ps, &grads)).unwrap();
        adam_reference(&mut p_ref, &g, &mut m, &mut v, cfg, step);
        let ours = vec1(ps.params[0].1.as_tensor());
        let worst = ours.iter().zip(&p_ref).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-6, "step {step}: largest difference {worst}");
    }
}

/// On both kernel paths (the fused check, and the stock-op one every other device uses).
#[test]
fn gradient_check_over_a_pool_finds_one_bad_value_anywhere() {
    for path in KernelPath::ALL {
        gradient_check_case(path);
    }
}

fn gradient_check_case(path: KernelPath) {
    // 90,000 values: the fused check splits into chunks over the pool's two threads.
    let mut rng = StdRng::seed_from_u64(5);
    let mut ps = ParamSet::new(Exec::new(Device::Cpu, path));
    let w = ps.uniform("w".into(), &[300, 300], 1.0, &mut rng).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let grads_with = |bad: Option<(usize, f32)>| {
        let mut g = vec![0.5f32; 90_000];
        if let Some((at, v)) = bad {
            g[at] = v;
        }
        let g = Tensor::from_vec(g, (300, 300), &Device::Cpu).unwrap();
        // A store holding `g` as the gradient of `w`.
        let mut grads = (w.sum_all().unwrap() * 0.0).unwrap().backward().unwrap();
        grads.insert(&w, g);
        grads
    };
    assert!(pool.install(|| grads_finite(&ps, &grads_with(None))).unwrap());
    for at in [0, 32_767, 32_768, 65_536, 89_999] {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let grads = grads_with(Some((at, v)));
            assert!(
                !pool.install(|| grads_finite(&ps, &grads)).unwrap(),
                "{path}: {v} at {at} over the pool"
            );
            assert!(!grads_finite(&ps, &grads).unwrap(), "{path}: {v} at {at} on one thread");
        }
    }
}
