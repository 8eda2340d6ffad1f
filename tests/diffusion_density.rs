//! A DDPM model's density (its −ELBO in bits/dim on 8-bit levels) as an outlier score, in
//! the style of `scoring.rs`'s VAE tests: a short `mnist_ddpm` run, then digits against
//! uniform noise and inverted digits; and the flow refusing to score. Run with `--release`.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::time::Instant;

use genlab::engine::config::preset;
use genlab::engine::data::{builtin, DataSource, Dataset, ImageShape, SplitKind};
use genlab::engine::models::{AnomalyScore, LossKey};
use genlab::engine::scoring::{auroc, score_dataset, score_indices, ScoreOptions};
use genlab::engine::session::TrainingSession;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MNIST: ImageShape = ImageShape::new(1, 28, 28);
/// Training steps of the short run (batch 64): about a minute and a half on 2 shared cores.
const STEPS: u64 = 120;
/// Images of each set scored, and timestep draws per image.
const IMAGES: usize = 200;
const DRAWS: usize = 8;

/// The short version of a long check. The bound needs a trained net: after 120 steps its
/// error at small t dominates (−ELBO about 13,500 nats per digit, 25 bits/dim) and the AUROC
/// is 0.87 (noise) and 0.84 (inverted digits); after 240 and 480 steps of batch 64, 0.92 / 0.90
/// and 0.94 / 0.93; the preset's default run (20 epochs) reaches 0.995 / 0.989 at 4.3 bits/dim
/// (the README's `genlab score` command). Here: clearly better than chance (0.5), and the
/// bound in bits per pixel ordered digits < inverted, noise.
#[test]
fn a_short_ddpm_run_flags_noise_and_inverted_digits_by_its_elbo() {
    let data = std::sync::Arc::new(builtin::load().unwrap());
    let mut cfg = preset("mnist_ddpm", MNIST).unwrap();
    cfg.train.batch_size = 64;
    cfg.train.eval_limit = 64;
    cfg.train.threads = 2;
    let caps = cfg.model.capabilities();
    assert_eq!(caps.default_anomaly(), AnomalyScore::NegElbo);
    assert!(caps.likelihood);
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    let t0 = Instant::now();
    let mut losses = Vec::new();
    while s.step_count() < STEPS {
        let r = s.step().unwrap();
        assert!(!r.diverged);
        losses.push(r.losses.get(LossKey::Loss).unwrap());
    }
    let train_s = t0.elapsed().as_secs_f64();

    let test: Vec<usize> = s.split().get(SplitKind::Test).iter().copied().take(IMAGES).collect();
    let opts = ScoreOptions { k: DRAWS, ..ScoreOptions::default() };
    let t1 = Instant::now();
    let digits = score_indices(s.model(), &data, &test, &opts, &mut |_, _| true).unwrap().unwrap();
    let score_s = t1.elapsed().as_secs_f64();
    let d = MNIST.len();
    let mut rng = StdRng::seed_from_u64(21);
    let noise: Vec<f32> = (0..IMAGES * d).map(|_| rng.random::<f32>()).collect();
    let noise = Dataset::new("noise", DataSource::Builtin, MNIST, noise, None).unwrap();
    let inverted: Vec<f32> = data.gather(&test).iter().map(|v| 1.0 - v).collect();
    let inverted = Dataset::new("inverted", DataSource::Builtin, MNIST, inverted, None).unwrap();
    let noise = score_dataset(s.model(), &noise, &opts, &mut |_, _| true).unwrap().unwrap();
    let inverted = score_dataset(s.model(), &inverted, &opts, &mut |_, _| true).unwrap().unwrap();

    let summary = digits.summary();
    eprintln!(
        "mnist_ddpm {STEPS} steps in {train_s:.0} s (loss {:.3} → {:.3}); {IMAGES} digits scored with K = {DRAWS} in {score_s:.1} s",
        losses[..10].iter().sum::<f64>() / 10.0,
        losses[losses.len() - 10..].iter().sum::<f64>() / 10.0
    );
    eprintln!("digits: {summary:?}");
    eprintln!("noise: {:?}", noise.summary());
    eprintln!("inverted: {:?}", inverted.summary());
    let a_noise = auroc(&digits.anomaly_scores(), &noise.anomaly_scores()).unwrap();
    let a_inv = auroc(&digits.anomaly_scores(), &inverted.anomaly_scores()).unwrap();
    eprintln!("AUROC digits vs noise {a_noise:.4}, vs inverted {a_inv:.4}");
    assert!(a_noise >= 0.75, "noise AUROC {a_noise}");
    assert!(a_inv >= 0.75, "inverted AUROC {a_inv}");

    let names: Vec<&str> = summary.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["recon", "kl_nats", "elbo_nats", "bits_per_dim"]);
    // Bits per pixel, ordered: a barely trained net's bound is far above the 8 bits a uniform
    // code costs, but it spends fewer on digits than on what it never saw.
    let bits = |set: &genlab::engine::scoring::ScoredSet| set.summary()[3].1.mean;
    let (b_digits, b_noise, b_inv) = (bits(&digits), bits(&noise), bits(&inverted));
    assert!(b_digits > 0.0 && b_digits < b_inv && b_digits < b_noise, "{b_digits} {b_inv} {b_noise}");
    let s0 = &digits.samples[0];
    assert!((s0.neg_elbo.unwrap() - s0.recon.unwrap() - s0.kl.unwrap()).abs() < 1e-6 * s0.neg_elbo.unwrap());
}

#[test]
fn a_flow_model_refuses_to_score() {
    let data = std::sync::Arc::new(builtin::load().unwrap());
    let cfg = preset("mnist_flow", MNIST).unwrap();
    assert!(cfg.model.capabilities().anomaly_scores.is_empty());
    let s = TrainingSession::new(cfg, data.clone()).unwrap();
    let err =
        score_indices(s.model(), &data, &[0, 1], &ScoreOptions::default(), &mut |_, _| true).unwrap_err();
    assert!(err.to_string().contains("flow-matching model does not score"), "{err}");
}
