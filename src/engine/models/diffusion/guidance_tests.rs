#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]
//! Class conditioning and classifier-free guidance: the guided prediction's end points and its
//! one-call mixture, label dropout, a conditional run that learns to use the label, the
//! conditional presets, and configurations saved before conditioning.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::guidance::{drop_labels, Cond};
use super::*;
use crate::engine::conditional::class_grid_of;
use crate::engine::data::{builtin, ImageShape};
use crate::engine::models::layers::normal_tensor;
use crate::engine::models::{preset, Batch, StepOutcome};

/// A U-Net small enough to train in a test: 8×8 images, 3 classes. Its levels have at least
/// two channels per group norm group: with one, the norm after the time (and class)
/// embedding is added removes the per-channel constant, and the label could not reach the
/// output.
fn tiny(classes: usize) -> DiffusionConfig {
    let mut cfg =
        DiffusionConfig { base_channels: 16, time_dim: 16, sample_steps: 3, ..DiffusionConfig::default() };
    cfg.net.input = ImageShape::new(1, 8, 8);
    cfg.net.hidden = vec![32];
    cfg.net.classes = classes;
    cfg
}

fn labels(v: &[u32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

/// A tiny conditional model a few steps away from its initialisation (whose output layer is
/// zero, so every prediction would be 0 and equal).
fn moved(cfg: DiffusionConfig) -> Diffusion {
    let mut m =
        Diffusion::new(cfg, AdamConfig { lr: 1e-2, ..AdamConfig::default() }, 1, &Exec::cpu()).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..3 {
        let x = Tensor::rand(0f32, 1f32, (6, 64), &Device::Cpu).unwrap();
        let batch = Batch { x, y: Some(labels(&[0, 1, 2, 0, 1, 2])) };
        assert!(matches!(m.train_step(&batch, &mut rng).unwrap(), StepOutcome::Applied(_)));
    }
    m
}

fn with_guidance(m: &mut Diffusion, w: f64) {
    let s = SamplerSettings { guidance: w, ..m.sampler_settings().unwrap() };
    m.set_sampler(s).unwrap();
}

/// w = 0 is the unconditional ("no class") prediction and w = 1 the conditional one, exactly;
/// any other w, from one call on the stacked rows, is ε̂_u + w (ε̂_c − ε̂_u) of two separate
/// calls. A one-hot blend is its label; the label changes the prediction.
#[test]
fn guidance_mixes_the_conditional_and_unconditional_predictions() {
    let mut m = moved(tiny(3));
    let x = normal_tensor(4, 64, 1.0, &mut StdRng::seed_from_u64(3)).unwrap();
    let y = labels(&[0, 1, 2, 1]);
    let t = 0.6;
    let cond = m.unet_forward(&x, t, Some(&y)).unwrap();
    let uncond = m.unet_forward(&x, t, None).unwrap();
    assert!(
        max_diff(&cond, &uncond) > 1e-3,
        "the label does not reach the prediction: {}",
        max_diff(&cond, &uncond)
    );
    let labelled = Cond::Labels(y.clone());
    with_guidance(&mut m, 0.0);
    assert_eq!(max_diff(&m.predict(&x, t, &labelled).unwrap(), &uncond), 0.0, "w = 0");
    with_guidance(&mut m, 1.0);
    assert_eq!(max_diff(&m.predict(&x, t, &labelled).unwrap(), &cond), 0.0, "w = 1");
    for w in [2.5, 0.4] {
        with_guidance(&mut m, w);
        let expected = (&uncond + ((&cond - &uncond).unwrap() * w).unwrap()).unwrap();
        let got = m.predict(&x, t, &labelled).unwrap();
        assert!(max_diff(&got, &expected) < 1e-5, "w = {w}: {}", max_diff(&got, &expected));
        let hot =
            Tensor::from_vec(vec![1f32, 0., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0.], (4, 3), &Device::Cpu)
                .unwrap();
        let blended = m.predict(&x, t, &Cond::Blend(hot)).unwrap();
        assert!(max_diff(&blended, &got) < 1e-5, "w = {w}: a one-hot blend is its label");
    }
    // An unconditional net ignores labels altogether.
    let u = moved(tiny(0));
    let plain = u.unet_forward(&x, t, None).unwrap();
    assert_eq!(max_diff(&u.predict(&x, t, &labelled).unwrap(), &plain), 0.0);
}

/// Label dropout replaces about p of the labels, by "no class" only, and leaves the rest.
#[test]
fn label_dropout_replaces_about_p_of_the_labels() {
    let ys: Vec<u32> = (0..20_000).map(|i| i % 10).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for p in [0.1, 0.5] {
        let out = drop_labels(&ys, 10, p, &mut rng);
        let dropped = out.iter().filter(|&&l| l == 10).count() as f64 / ys.len() as f64;
        assert!((dropped - p).abs() < 0.01, "p = {p}: {dropped}");
        assert!(out.iter().zip(&ys).all(|(&o, &y)| o == y || o == 10));
    }
    assert_eq!(drop_labels(&ys, 10, 0.0, &mut rng), ys);
    assert!(drop_labels(&ys, 10, 1.0, &mut rng).iter().all(|&l| l == 10));

    // The model's training labels drop at its configured rate; its evaluation labels do not.
    let m = Diffusion::new(tiny(10), AdamConfig::default(), 0, &Exec::cpu()).unwrap();
    let batch = Batch {
        x: Tensor::zeros((2000, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
        y: Some(labels(&ys[..2000])),
    };
    let train: Vec<u32> = m.batch_labels(&batch, true, &mut rng).unwrap().unwrap().to_vec1().unwrap();
    let share = train.iter().filter(|&&l| l == 10).count() as f64 / 2000.0;
    assert!((share - DEFAULT_LABEL_DROPOUT).abs() < 0.025, "{share}");
    let eval: Vec<u32> = m.batch_labels(&batch, false, &mut rng).unwrap().unwrap().to_vec1().unwrap();
    assert_eq!(eval, ys[..2000]);
    let err = m.batch_labels(&Batch { x: batch.x.clone(), y: None }, true, &mut rng).err().unwrap();
    assert!(err.to_string().contains("labelled"), "{err}");
}

fn digits(n: usize, offset: usize) -> (Tensor, Vec<u32>) {
    let data = builtin::load().expect("built-in digits");
    let idx: Vec<usize> = (offset..offset + n).collect();
    (Tensor::from_vec(data.gather(&idx), (n, 784), &Device::Cpu).unwrap(), data.gather_labels(&idx))
}

/// A conditional flow model (a small U-Net: 16, 16 and 32 channels) trained 80 steps of batch
/// 32 on the digits learns to use the label: on held-out digits, with the same times and noise,
/// its loss with the right labels is clearly below its loss with every label wrong (at the
/// start both are equal: the output layer is zero). Its "no class" prediction, trained on the
/// dropped labels, has learned too.
#[test]
fn a_conditional_run_learns_to_use_the_label() {
    let mut cfg = DiffusionConfig { objective: Objective::Flow, sampler: Sampler::Euler, ..tiny(10) };
    cfg.net.input = ImageShape::new(1, 28, 28);
    (cfg.base_channels, cfg.net.hidden, cfg.time_dim) = (16, vec![16, 32], 64);
    let mut m =
        Diffusion::new(cfg, AdamConfig { lr: 2e-3, ..AdamConfig::default() }, 5, &Exec::cpu()).unwrap();
    let (hx, hy) = digits(256, 9000);
    let held = Batch::unlabelled(hx);
    let wrong: Vec<u32> = hy.iter().enumerate().map(|(i, &y)| (y + 1 + (i as u32 % 9)) % 10).collect();
    let loss_with = |m: &Diffusion, y: &[u32]| -> f64 {
        let y = labels(y);
        let (l, _, _) = m.loss(&held, Some(&y), &mut StdRng::seed_from_u64(11)).unwrap();
        l.to_scalar::<f32>().unwrap() as f64
    };
    let none = vec![10u32; hy.len()];
    let before = loss_with(&m, &hy);
    assert_eq!(before, loss_with(&m, &wrong));
    let mut rng = StdRng::seed_from_u64(6);
    for step in 0..80 {
        let (x, y) = digits(32, (step * 32) % 7968);
        let out = m.train_step(&Batch { x, y: Some(labels(&y)) }, &mut rng).unwrap();
        assert!(matches!(out, StepOutcome::Applied(_)));
    }
    let (right, wrong, uncond) = (loss_with(&m, &hy), loss_with(&m, &wrong), loss_with(&m, &none));
    eprintln!("held-out loss: untrained {before:.4}, right labels {right:.4}, wrong {wrong:.4}, no class {uncond:.4}");
    // Measured: 1.92 untrained; 0.339 right, 0.353 wrong, 0.350 no class.
    assert!(right < 0.97 * wrong, "right labels {right:.4} vs wrong {wrong:.4}");
    assert!(right < uncond, "right labels {right:.4} vs no class {uncond:.4}");
    assert!(uncond < 0.7 * before, "no class: {before:.4} → {uncond:.4}");
}

/// The conditional presets are the unconditional ones with a class embedding: conditional in
/// their capabilities, 11 × 128 more parameters (as built), guidance 2 and label dropout 0.1.
/// Their samples follow the label: the class × noise grid decodes, and the same noise under
/// another class gives another image.
#[test]
fn conditional_presets_and_the_class_views() {
    for (plain, cond) in [("mnist_ddpm", "mnist_cddpm"), ("mnist_flow", "mnist_cflow")] {
        let shape = ImageShape::new(1, 28, 28);
        let (p, _) = preset(plain, shape).unwrap();
        let (c, _) = preset(cond, shape).unwrap();
        assert!(c.capabilities().conditional && !p.capabilities().conditional, "{cond}");
        assert_eq!(c.param_count_from_shapes(), p.param_count_from_shapes() + 11 * 128, "{cond}");
        let ModelConfig::Diffusion(d) = &c else { panic!("{cond} is a diffusion preset") };
        assert_eq!((d.guidance, d.label_dropout, d.net.classes), (2.0, 0.1, 10));
    }
    let m = moved(tiny(3));
    assert_eq!(GenerativeModel::classes(&m), 3);
    assert!(m.param_count() as u64 == ModelConfig::Diffusion(tiny(3)).param_count_from_shapes());
    let z = normal_tensor(2, 64, 1.0, &mut StdRng::seed_from_u64(8)).unwrap();
    let grid = class_grid_of(&m, &z).unwrap();
    assert_eq!(grid.len(), 2 * 3);
    let a = m.decode_class(&z, Some(&labels(&[0, 0]))).unwrap();
    let b = m.decode_class(&z, Some(&labels(&[2, 2]))).unwrap();
    assert!(max_diff(&a, &b) > 1e-4, "the label does not change the sample");
    let err = m.decode_class(&z, Some(&labels(&[3, 0]))).err().unwrap();
    assert!(err.to_string().contains("out of range"), "{err}");
    let w = Tensor::from_vec(vec![0.5f32, 0.5, 0.0, 0.0, 0.0, 1.0], (2, 3), &Device::Cpu).unwrap();
    assert_eq!(m.decode_mixed(&z, &w).unwrap().unwrap().dims(), &[2, 64]);
}

/// A diffusion configuration saved before conditioning (no `label_dropout`, no `guidance`)
/// loads unconditional with the defaults; sampler settings without a guidance scale too.
/// Switching an MLP configuration's family to diffusion gives a valid (conv) one.
#[test]
fn old_configurations_load_and_family_switches_are_valid() {
    let mut v = serde_json::to_value(ModelConfig::Diffusion(DiffusionConfig::default())).unwrap();
    let obj = v.as_object_mut().unwrap();
    assert!(obj.remove("label_dropout").is_some() && obj.remove("guidance").is_some());
    assert!(obj.remove("group_channels").is_some() && obj.remove("ema_decay").is_some());
    let old: ModelConfig = serde_json::from_value(v).unwrap();
    // Saved before `group_channels` and `ema_decay`: up to 8 groups of any width, as those nets
    // were trained, and no moving average.
    assert_eq!(
        old,
        ModelConfig::Diffusion(DiffusionConfig {
            group_channels: 1,
            ema_decay: 0.0,
            ..DiffusionConfig::default()
        })
    );
    assert!(!old.capabilities().conditional);
    let s: SamplerSettings = serde_json::from_str(r#"{"sampler":"ddim","steps":50,"eta":0.0}"#).unwrap();
    assert_eq!(s.guidance, DEFAULT_GUIDANCE);

    for from in ["mnist_vae", "mnist_cvae", "mnist_mlp_gan"] {
        let (cfg, _) = preset(from, ImageShape::new(1, 28, 28)).unwrap();
        let d = cfg.with_family(Family::Diffusion);
        d.validate().unwrap_or_else(|e| panic!("{from} → diffusion: {e}"));
        assert_eq!(d.net().arch, crate::engine::models::Arch::Conv);
        assert_eq!(d.classes(), cfg.classes(), "{from}: the classes carry over");
    }
    let bad = DiffusionConfig { guidance: -1.0, ..DiffusionConfig::default() };
    assert!(ModelConfig::Diffusion(bad).validate().is_err());
    let bad = DiffusionConfig { label_dropout: 1.5, ..DiffusionConfig::default() };
    assert!(ModelConfig::Diffusion(bad).validate().is_err());
}
