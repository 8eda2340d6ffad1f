//! The family: sizes, shapes, decoding, checkpoints, and that both objectives learn.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::engine::data::{builtin, ImageShape};
use crate::engine::models::layers::normal_tensor;
use crate::engine::models::{build_model, preset, Batch, StepOutcome};

fn model(cfg: &ModelConfig, seed: u64) -> Box<dyn GenerativeModel> {
    build_model(cfg, &AdamConfig { lr: 1e-3, ..AdamConfig::default() }, seed, &Exec::cpu()).expect("builds")
}

/// The presets have 0.3–0.6 M parameters at 28×28, counted the same from the shapes as in
/// the built model; the U-Net takes other sizes the down-sampling divides and refuses the rest.
#[test]
fn sizes_and_shapes() {
    for name in ["mnist_ddpm", "mnist_flow"] {
        let (cfg, _) = preset(name, ImageShape::new(1, 28, 28)).expect("preset");
        let m = model(&cfg, 0);
        let n = m.param_count();
        assert_eq!(n as u64, cfg.param_count_from_shapes(), "{name}");
        assert!((300_000..=600_000).contains(&n), "{name}: {n} parameters");
        assert_eq!(m.latent_dim(), 784);
        assert_eq!(cfg.latent_dim(), 784);
    }
    let mut cfg = DiffusionConfig { sample_steps: 2, ..DiffusionConfig::default() };
    cfg.net.input = ImageShape::new(3, 16, 12);
    let m = model(&ModelConfig::Diffusion(cfg.clone()), 1);
    let z = normal_tensor(2, 3 * 16 * 12, 1.0, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!(m.decode(&z).unwrap().dims(), &[2, 576]);
    cfg.net.input = ImageShape::new(1, 30, 30);
    let err = ModelConfig::Diffusion(cfg).validate().expect_err("30 is not divisible by 4");
    assert!(err.to_string().contains("divisible by 4"), "{err}");
    let bad = DiffusionConfig { sampler: Sampler::Euler, ..DiffusionConfig::default() };
    assert!(ModelConfig::Diffusion(bad).validate().is_err(), "Euler does not sample DDPM");
}

/// decode is deterministic in z, in [0, 1] for every sampler, and σ(decode_logits) = decode.
#[test]
fn decode_is_deterministic_and_matches_its_logits() {
    let z = normal_tensor(3, 784, 1.0, &mut StdRng::seed_from_u64(5)).unwrap();
    for (objective, sampler) in
        [(Objective::Ddpm, Sampler::Ddim), (Objective::Ddpm, Sampler::Ddpm), (Objective::Flow, Sampler::Heun)]
    {
        let cfg =
            DiffusionConfig { objective, sampler, sample_steps: 3, eta: 0.5, ..DiffusionConfig::default() };
        let m = model(&ModelConfig::Diffusion(cfg), 2);
        let a = m.decode(&z).unwrap();
        let b = m.decode(&z).unwrap();
        let diff = |x: &Tensor, y: &Tensor| -> f32 {
            (x - y).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
        };
        assert_eq!(diff(&a, &b), 0.0, "{sampler:?}");
        let v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|p| (0.0..=1.0).contains(p)), "{sampler:?}");
        let back = candle_nn::ops::sigmoid(&m.decode_logits(&z).unwrap()).unwrap();
        assert!(diff(&a, &back) < 1e-5, "{sampler:?}");
    }
}

fn digits(n: usize, offset: usize) -> Batch {
    let data = builtin::load().expect("built-in digits");
    let idx: Vec<usize> = (offset..offset + n).collect();
    Batch::unlabelled(Tensor::from_vec(data.gather(&idx), (n, 784), &Device::Cpu).unwrap())
}

/// Each objective learns on real digits: after 80 steps of batch 32 the held-out loss (the
/// same times and noise before and after) is under 55% of the untrained net's (DDPM's
/// untrained ε-MSE is about 1: the output layer starts at zero). The state round trip gives
/// the same held-out loss.
#[test]
fn both_objectives_learn() {
    let held_out = digits(128, 9000);
    for name in ["mnist_ddpm", "mnist_flow"] {
        let (cfg, _) = preset(name, ImageShape::new(1, 28, 28)).expect("preset");
        let mut m = model(&cfg, 3);
        let eval = |m: &dyn GenerativeModel| {
            m.evaluate(&held_out, &mut StdRng::seed_from_u64(9)).unwrap().get(LossKey::Loss).unwrap()
        };
        let before = eval(m.as_ref());
        let mut rng = StdRng::seed_from_u64(4);
        for step in 0..80 {
            let batch = digits(32, (step * 32) % 7968);
            assert!(matches!(m.train_step(&batch, &mut rng).unwrap(), StepOutcome::Applied(_)));
        }
        let after = eval(m.as_ref());
        assert!(after < 0.55 * before, "{name}: held-out loss {before:.3} → {after:.3}");
        let state: HashMap<String, Tensor> = m.state().unwrap();
        let mut fresh = model(&cfg, 99);
        fresh.load_state(&state).unwrap();
        assert!((eval(fresh.as_ref()) - after).abs() < 1e-6, "{name}: the state round trip");
    }
}

/// The trajectory records the steps asked for, ending on the sample `decode` draws; the
/// forward process leaves an image alone at t = 0 and keeps nothing of it at the end.
#[test]
fn trajectory_and_forward_process() {
    let cfg = DiffusionConfig { sample_steps: 6, ..DiffusionConfig::default() };
    let m = model(&ModelConfig::Diffusion(cfg), 3);
    let z = normal_tensor(2, 784, 1.0, &mut StdRng::seed_from_u64(9)).unwrap();
    let traj = m.trajectory(&z, 3).unwrap().expect("a diffusion model has one");
    assert_eq!(traj.times.len(), 3);
    assert_eq!(traj.times.last().copied(), Some(0.0));
    assert!(traj.times.windows(2).all(|w| w[0] > w[1]), "{:?}", traj.times);
    assert_eq!(traj.strip().unwrap().len(), 2 * 2 * 3);
    let frames = traj.frames();
    assert_eq!((frames.len(), frames[0].len()), (3, 4));
    let sample =
        crate::engine::images::ImageBatch::from_tensor(&m.decode(&z).unwrap(), ImageShape::new(1, 28, 28))
            .unwrap();
    assert_eq!(traj.xt[2], sample, "the last column is the sample");
    assert_eq!(views::recorded_steps(1000, 10).last(), Some(&999));
    assert_eq!(views::recorded_steps(2, 10), vec![0, 1]);

    let data = builtin::load().unwrap();
    let x = Tensor::from_vec(data.gather(&[0, 1]), (2, 784), &Device::Cpu).unwrap();
    let same = m.noised(&x, 0.0, 1).unwrap().unwrap();
    let err: f32 = (same - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(err < 1e-5, "{err}");
    let a = m.noised(&x, 1.0, 1).unwrap().unwrap();
    let b = m.noised(&x.affine(-1.0, 1.0).unwrap(), 1.0, 1).unwrap().unwrap();
    let diff: f32 = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(diff < 0.02, "x_T still shows the image: {diff}");
}

/// Group norm's groups: at most 8, dividing the channels, each at least `per_group` wide.
#[test]
fn group_counts_keep_the_embedding_visible() {
    use super::unet::groups;
    // The legacy rule (1 channel per group allowed) and the presets' (at least 4).
    assert_eq!([8, 16, 32, 64, 6].map(|c| groups(c, 1)), [8, 8, 8, 8, 6]);
    assert_eq!([8, 16, 32, 64, 6, 3].map(|c| groups(c, 4)), [2, 4, 8, 8, 1, 1]);
    assert_eq!(DiffusionConfig::default().group_channels, 4);
}

/// The moving average: after the first optimiser step it is d·w₀ + (1 − d)·w₁ with the
/// warmed-up d = 2/11; it saves and loads with the state (a fresh model then samples the
/// same), and a state saved without it starts it at the weights.
#[test]
fn the_moving_average_follows_the_weights_and_saves() {
    let mut cfg = DiffusionConfig { sample_steps: 2, base_channels: 8, ..DiffusionConfig::default() };
    cfg.net.hidden = vec![8, 8];
    let cfg = ModelConfig::Diffusion(cfg);
    let mut m = model(&cfg, 1);
    let w0 = m.state().unwrap();
    m.train_step(&digits(8, 0), &mut StdRng::seed_from_u64(2)).unwrap();
    let w1 = m.state().unwrap();
    let d = 2.0 / 11.0;
    let name = "conv_out.weight";
    let (a, b, e) = (&w0[name], &w1[name], &w1[&format!("ema.{name}")]);
    let want = ((a * d).unwrap() + (b * (1.0 - d)).unwrap()).unwrap();
    let gap = (e - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(gap < 1e-6, "EMA off by {gap}");
    assert!(diff(&w0[name], b) > 0.0, "the step moved nothing");

    let z = normal_tensor(2, 784, 1.0, &mut StdRng::seed_from_u64(3)).unwrap();
    let mut fresh = model(&cfg, 7);
    fresh.load_state(&w1).unwrap();
    assert_eq!(diff(&m.decode(&z).unwrap(), &fresh.decode(&z).unwrap()), 0.0);
    let no_ema: HashMap<String, Tensor> = w1.into_iter().filter(|(k, _)| !k.starts_with("ema.")).collect();
    fresh.load_state(&no_ema).unwrap();
    let raw = fresh.state().unwrap();
    assert_eq!(diff(&raw[name], &raw[&format!("ema.{name}")]), 0.0);
}

fn diff(x: &Tensor, y: &Tensor) -> f32 {
    (x - y).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}
