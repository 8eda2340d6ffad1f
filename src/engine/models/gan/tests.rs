//! The gradient penalty against finite differences, on a tiny critic in f64 and on the conv
//! critic a WGAN-GP builds.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::engine::data::ImageShape;
use crate::engine::models::FamilyConfig;
use crate::engine::models::{Activation, Arch, NetConfig};

fn randn(shape: (usize, usize), rng: &mut StdRng) -> Tensor {
    let v: Vec<f64> = (0..shape.0 * shape.1).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// critic(x) = leaky_relu(x W₁ᵀ + b₁) w₂ᵀ, `[B, 3] → [B]`, with the same stock ops as the
/// reference path.
fn critic(x: &Tensor, w1: &Tensor, b1: &Tensor, w2: &Tensor) -> crate::engine::error::Result<Tensor> {
    let h = candle_nn::ops::leaky_relu(&x.matmul(&w1.t()?)?.broadcast_add(b1)?, 0.2)?;
    Ok(h.matmul(&w2.t()?)?.squeeze(1)?)
}

fn value(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn the_penalty_and_its_gradient_equal_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let (b, d, h) = (4, 3, 5);
    let x = randn((b, d), &mut rng);
    let w1 = Var::from_tensor(&randn((h, d), &mut rng)).unwrap();
    let b1 = Var::from_tensor(&randn((1, h), &mut rng).squeeze(0).unwrap()).unwrap();
    let w2 = Var::from_tensor(&randn((1, h), &mut rng)).unwrap();
    let f = |x: &Tensor, w1: &Tensor| critic(x, w1, b1.as_tensor(), w2.as_tensor());

    // The penalty: ∂D/∂x by central differences, then mean (‖·‖ − 1)².
    let gp = gradient_penalty(&x, |t| f(t, w1.as_tensor())).unwrap();
    let xs = x.to_vec2::<f64>().unwrap();
    let h_x = 1e-6;
    let mut want = 0.0;
    for row in &xs {
        let mut sq = 0.0;
        for j in 0..d {
            let at = |delta: f64| {
                let mut r = row.clone();
                r[j] += delta;
                value(
                    &f(&Tensor::from_vec(r, (1, d), &Device::Cpu).unwrap(), w1.as_tensor())
                        .unwrap()
                        .sum_all()
                        .unwrap(),
                )
            };
            let g = (at(h_x) - at(-h_x)) / (2.0 * h_x);
            sq += g * g;
        }
        want += (sq.sqrt() - 1.0).powi(2) / b as f64;
    }
    assert!((value(&gp) - want).abs() < 1e-6 * want.max(1.0), "penalty {} vs {want}", value(&gp));

    // Its gradient with respect to W₁ (which the critic's input gradient depends on).
    let grads = gp.backward().unwrap();
    let g_w1 =
        grads.get(w1.as_tensor()).expect("the penalty's gradient reaches W₁").to_vec2::<f64>().unwrap();
    let w1v = w1.as_tensor().to_vec2::<f64>().unwrap();
    let h_w = 1e-6;
    for i in 0..h {
        for j in 0..d {
            let at = |delta: f64| {
                let mut w = w1v.clone();
                w[i][j] += delta;
                let w: Vec<f64> = w.concat();
                let w = Tensor::from_vec(w, (h, d), &Device::Cpu).unwrap();
                value(&gradient_penalty(&x, |t| f(t, &w)).unwrap())
            };
            let fd = (at(h_w) - at(-h_w)) / (2.0 * h_w);
            assert!(
                (g_w1[i][j] - fd).abs() < 1e-5 * fd.abs().max(1.0),
                "∂GP/∂W₁[{i},{j}] {} vs {fd}",
                g_w1[i][j]
            );
        }
    }
}

/// A conv WGAN-GP's critic (stock conv2d, its transpose in the first backward and both in the
/// second) in f32: the penalty's gradient with respect to one weight of each layer, against
/// central differences.
#[test]
fn the_conv_critics_penalty_gradient_equals_finite_differences() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig { net, batch_norm: true, gan_loss: GanLoss::WganGp, ..GanConfig::default() };
    let gan = Gan::new(cfg, AdamConfig::default(), 1, &Exec::cpu()).unwrap();
    assert!(gan.d_trunk.batch_norms().is_empty(), "a WGAN-GP critic has no batch norm");
    let mut rng = StdRng::seed_from_u64(5);
    let v: Vec<f32> = (0..3 * 64).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let x = Tensor::from_vec(v, (3, 64), &Device::Cpu).unwrap();
    // The penalty's view computes what D's own (fused) layers compute.
    let (fused, twice) = (gan.d_logits(&x, None, true).unwrap(), gan.d_logits_twice(&x, None, true).unwrap());
    let gap = (fused - &twice).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(gap < 1e-5, "fused and twice-differentiable critics differ by {gap}");
    let penalty = |g: &Gan| gradient_penalty(&x, |t| g.d_logits_twice(t, None, true)).unwrap();
    let grads = penalty(&gan).backward().unwrap();
    for (name, var) in &gan.d_params.params {
        let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // A bias moves no input gradient (only LeakyReLU's masks, whose derivative is 0): no
        // gradient at all.
        let analytic = grads
            .get(var.as_tensor())
            .map_or(vec![0.0; orig.len()], |g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let k = orig.len() / 2;
        // Small: the penalty jumps where a unit's LeakyReLU flips; large enough for f32.
        let h = 1e-3f32;
        let at = |delta: f32| {
            let mut w = orig.clone();
            w[k] += delta;
            var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap()).unwrap();
            value(&penalty(&gan))
        };
        let fd = (at(h) - at(-h)) / (2.0 * h as f64);
        at(0.0);
        let a = analytic[k] as f64;
        assert!((a - fd).abs() < 2e-3 + 0.05 * fd.abs(), "{name}[{k}]: {a} vs {fd}");
    }
}

/// The critic's whole loss as a D step computes it, D(x) and D(G(z)) on the fused kernels and
/// the penalty on the stock view, both on the same parameters: its gradient (both graphs summed
/// in one store) against central differences of the loss.
#[test]
fn the_critics_loss_gradient_over_both_views_equals_finite_differences() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig { net, gan_loss: GanLoss::WganGp, ..GanConfig::default() };
    let gan = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut rows = || {
        let v: Vec<f32> = (0..3 * 64).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, (3, 64), &Device::Cpu).unwrap()
    };
    let (x, fake) = (rows(), rows());
    // The same interpolation weights ε on every evaluation.
    let loss = |g: &Gan| {
        g.d_objective(
            &x,
            &fake,
            None,
            true,
            PenaltyDue { weight: 10.0, last: 0.0 },
            &mut StdRng::seed_from_u64(9),
        )
        .unwrap()
        .0
    };
    let grads = gan.d_params.backward(&loss(&gan)).unwrap();
    let mut checked = 0;
    for (name, var) in &gan.d_params.params {
        let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0, orig.len() / 2] {
            let h = 1e-3f32;
            let at = |delta: f32| {
                let mut w = orig.clone();
                w[k] += delta;
                var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap()).unwrap();
                value(&loss(&gan))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            at(0.0);
            let a = analytic[k] as f64;
            assert!((a - fd).abs() < 2e-3 + 0.05 * fd.abs(), "{name}[{k}]: {a} vs {fd}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * gan.d_params.params.len());
}

/// A lazy penalty (every k-th D step, weighted kλ) is computed on exactly those steps, and the
/// steps in between report the latest one in the D loss.
#[test]
fn a_lazy_penalty_runs_every_kth_d_step() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig { net, gan_loss: GanLoss::WganGp, gp_every: 3, ..GanConfig::default() };
    let mut gan = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let v: Vec<f32> = (0..4 * 64).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let batch = Batch::unlabelled(Tensor::from_vec(v, (4, 64), &Device::Cpu).unwrap());
    let mut measured = Vec::new();
    for _ in 0..7 {
        let StepOutcome::Applied(l) = gan.train_step(&batch, &mut rng).unwrap() else {
            panic!("a non-finite step")
        };
        measured.push(l.get(LossKey::GradPenalty).is_some());
        assert!(l.get(LossKey::DLoss).unwrap().is_finite());
    }
    assert_eq!(measured, [true, false, false, true, false, false, true]);
}

/// A live step ratio changes how often G steps; a live D learning rate changes D's Adam only.
#[test]
fn live_step_ratio_and_d_learning_rate_reach_the_optimisers() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig { net, ..GanConfig::default() };
    let mut gan = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let v: Vec<f32> = (0..4 * 64).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let batch = Batch::unlabelled(Tensor::from_vec(v, (4, 64), &Device::Cpu).unwrap());
    for _ in 0..2 {
        gan.train_step(&batch, &mut rng).unwrap();
    }
    assert_eq!(gan.optimizer_steps(), [2, 2], "1:1 at first");
    gan.set_hyper(LiveHyper::DiscSteps, 3.0).unwrap();
    for _ in 0..4 {
        gan.train_step(&batch, &mut rng).unwrap();
    }
    // D steps 3–6; G steps after D's 3rd and 6th only (at 1:1 it would be 6 too).
    assert_eq!(gan.optimizer_steps(), [4, 6]);
    assert!(gan.set_hyper(LiveHyper::DiscSteps, 0.0).is_err());
    gan.set_hyper(LiveHyper::DiscLearningRate, 5e-5).unwrap();
    assert_eq!((gan.d_adam.config.lr, gan.g_adam.config.lr), (5e-5, AdamConfig::default().lr));
    // From now on the run's learning rate is G's alone.
    gan.set_hyper(LiveHyper::LearningRate, 1e-4).unwrap();
    assert_eq!((gan.d_adam.config.lr, gan.g_adam.config.lr), (5e-5, 1e-4));
}

/// `disc_batch_norm: false` takes batch norm out of a conv D only; a configuration saved
/// before the field keeps it in both networks.
#[test]
fn discriminator_batch_norm_can_be_left_out() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let with = GanConfig { net: net.clone(), batch_norm: true, ..GanConfig::default() };
    let without = GanConfig { disc_batch_norm: false, ..with.clone() };
    let gan = Gan::new(with.clone(), AdamConfig::default(), 1, &Exec::cpu()).unwrap();
    assert!(!gan.d_trunk.batch_norms().is_empty() && !gan.generator.batch_norms().is_empty());
    let gan = Gan::new(without, AdamConfig::default(), 1, &Exec::cpu()).unwrap();
    assert!(gan.d_trunk.batch_norms().is_empty(), "D keeps its batch norm");
    assert!(!gan.generator.batch_norms().is_empty(), "G lost its batch norm");
    let mut v = serde_json::to_value(&with).unwrap();
    v.as_object_mut().unwrap().remove("disc_batch_norm").unwrap();
    let old: GanConfig = serde_json::from_value(v).unwrap();
    assert!(old.disc_batch_norm);
}

/// With DiffAugment, G's loss reaches G through the augmentation: its gradient on G's
/// parameters equals finite differences of the loss under the same random transforms.
#[test]
fn diff_augment_passes_the_generators_gradient() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig { net, diff_augment: true, ..GanConfig::default() };
    let gan = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    let z = gan.noise(3, &mut StdRng::seed_from_u64(5)).unwrap();
    let loss = |g: &Gan| {
        let fake = g.generate(&z, false).unwrap();
        let seen = g.augmented(&fake, &mut StdRng::seed_from_u64(9)).unwrap();
        assert_ne!(seen.to_vec2::<f32>().unwrap(), fake.to_vec2::<f32>().unwrap(), "T did nothing");
        g.gan.gan_loss.g_loss(&g.d_logits(&seen, None, false).unwrap()).unwrap()
    };
    let grads = gan.g_params.backward(&loss(&gan)).unwrap();
    let mut checked = 0;
    for (name, var) in &gan.g_params.params {
        let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0, orig.len() / 2] {
            let h = 1e-3f32;
            let at = |delta: f32| {
                let mut w = orig.clone();
                w[k] += delta;
                var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap()).unwrap();
                value(&loss(&gan))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            at(0.0);
            let a = analytic[k] as f64;
            assert!((a - fd).abs() < 2e-3 + 0.05 * fd.abs(), "{name}[{k}]: {a} vs {fd}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * gan.g_params.params.len());
}

/// A configuration saved before DiffAugment existed loads with it off.
#[test]
fn diff_augment_is_off_in_old_configs() {
    let mut v = serde_json::to_value(GanConfig { diff_augment: true, ..GanConfig::default() }).unwrap();
    v.as_object_mut().unwrap().remove("diff_augment").unwrap();
    let old: GanConfig = serde_json::from_value(v).unwrap();
    assert!(!old.diff_augment);
}

/// Configurations saved before the augment policy and G's own activation load with the old
/// behaviour: translation and cutout, and G on D's activation.
#[test]
fn augment_policy_and_g_activation_default_to_the_old_behaviour() {
    let cfg = GanConfig {
        diff_augment: true,
        augment_policy: AugmentPolicy::Translation,
        g_activation: Some(Activation::Relu),
        ..GanConfig::default()
    };
    let mut v = serde_json::to_value(&cfg).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("augment_policy").unwrap();
    o.remove("g_activation").unwrap();
    let old: GanConfig = serde_json::from_value(v).unwrap();
    assert_eq!(old.augment_policy, AugmentPolicy::TranslationCutout);
    assert_eq!(old.g_activation, None);
    assert_eq!(old.generator_activation(), old.net.activation);
    let back: GanConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}

/// The translation-only policy moves each image by one shift and blanks only what came in
/// from outside: a pixel is blanked exactly when its source lies off the image, so no blank
/// square is cut out of the middle.
#[test]
fn translation_policy_cuts_nothing_out() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let cfg = GanConfig {
        net,
        diff_augment: true,
        augment_policy: AugmentPolicy::Translation,
        ..GanConfig::default()
    };
    let gan = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    // Distinct values above the fill (−1), one 8×8 image per row.
    let x: Vec<f32> = (0..16 * 64).map(|i| i as f32).collect();
    let x = Tensor::from_vec(x, (16, 64), &Device::Cpu).unwrap();
    let y = gan.augmented(&x, &mut StdRng::seed_from_u64(3)).unwrap().to_vec2::<f32>().unwrap();
    let mut moved = 0;
    for (i, row) in y.iter().enumerate() {
        // The shift from the first pixel that is not the fill; translation is at most 1 on 8.
        let (p, v) = row.iter().enumerate().find(|(_, &v)| v != -1.0).unwrap();
        let src = *v as usize - i * 64;
        let (dy, dx) = ((src / 8) as i64 - (p / 8) as i64, (src % 8) as i64 - (p % 8) as i64);
        assert!(dy.abs() <= 1 && dx.abs() <= 1, "shift ({dy}, {dx})");
        moved += usize::from((dy, dx) != (0, 0));
        for (q, &w) in row.iter().enumerate() {
            let (yy, xx) = ((q / 8) as i64 + dy, (q % 8) as i64 + dx);
            if (0..8).contains(&yy) && (0..8).contains(&xx) {
                assert_eq!(w as i64, i as i64 * 64 + yy * 8 + xx, "image {i} pixel {q}");
            } else {
                assert_eq!(w, -1.0, "image {i} pixel {q}");
            }
        }
    }
    assert!(moved > 0, "no image was moved");
}

/// G's own activation is the one its layers apply: a ReLU generator differs from a LeakyReLU
/// one built from the same seed (same parameters, D's activation unchanged).
#[test]
fn g_activation_changes_the_generator_only() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let leaky = Gan::new(
        GanConfig { net: net.clone(), ..GanConfig::default() },
        AdamConfig::default(),
        2,
        &Exec::cpu(),
    )
    .unwrap();
    let cfg = GanConfig { net, g_activation: Some(Activation::Relu), ..GanConfig::default() };
    assert_eq!(cfg.generator_activation(), Activation::Relu);
    let relu = Gan::new(cfg, AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    let z = leaky.noise(4, &mut StdRng::seed_from_u64(5)).unwrap();
    let (a, b) = (leaky.generate(&z, false).unwrap(), relu.generate(&z, false).unwrap());
    assert_ne!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    // D is untouched: the same image gets the same logit from both.
    let la = leaky.d_logits(&a, None, false).unwrap().to_vec1::<f32>().unwrap();
    let lb = relu.d_logits(&a, None, false).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(la, lb);
}

/// With the minibatch std, D's head reads one feature more (the counts agree), steps stay
/// finite, and the head's extra weight learns (it gets a gradient); old configs load without it.
#[test]
fn minibatch_std_widens_the_head_and_trains() {
    let net = NetConfig {
        arch: Arch::Conv,
        input: ImageShape::new(1, 8, 8),
        hidden: vec![2, 3],
        latent_dim: 2,
        activation: Activation::LeakyRelu,
        classes: 0,
    };
    let plain = GanConfig { net, batch_norm: true, ..GanConfig::default() };
    let cfg = GanConfig { minibatch_std: true, ..plain.clone() };
    assert_eq!(cfg.param_count(), plain.param_count() + 1);
    let mut gan = Gan::new(cfg.clone(), AdamConfig::default(), 2, &Exec::cpu()).unwrap();
    assert_eq!(gan.param_count() as u64, cfg.param_count());
    let head = |g: &Gan| {
        let (_, w) = g.d_params.params.iter().find(|(n, _)| n == "discriminator.out.weight").unwrap();
        w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let before = head(&gan);
    let mut rng = StdRng::seed_from_u64(1);
    let v: Vec<f32> = (0..8 * 64).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let batch = Batch::unlabelled(Tensor::from_vec(v, (8, 64), &Device::Cpu).unwrap());
    for _ in 0..3 {
        let StepOutcome::Applied(l) = gan.train_step(&batch, &mut rng).unwrap() else {
            panic!("a non-finite step")
        };
        assert!(l.get(LossKey::DLoss).unwrap().is_finite());
    }
    let after = head(&gan);
    assert_ne!(before.last(), after.last(), "the std feature's weight did not move");
    let mut v = serde_json::to_value(&cfg).unwrap();
    v.as_object_mut().unwrap().remove("minibatch_std").unwrap();
    assert!(!serde_json::from_value::<GanConfig>(v).unwrap().minibatch_std);
}
