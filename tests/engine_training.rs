//! Training on the real built-in digits: the quality bar, every preset learning, determinism,
//! divergence handling and checkpoint round trips.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::Arc;

use candle_core::{Device, Tensor};
use genlab::engine::checkpoint;
use genlab::engine::config::{data_for_preset, preset, presets, RunConfig};
use genlab::engine::data::{builtin, Dataset};
use genlab::engine::models::{LiveHyper, LossKey};
use genlab::engine::session::TrainingSession;

fn mnist() -> Arc<Dataset> {
    Arc::new(builtin::load().expect("the built-in dataset loads"))
}

fn config(name: &str, data: &Dataset) -> RunConfig {
    preset(name, data.shape).expect("preset exists")
}

/// The quality bar: PyTorch's VAE example (784-400-20) for 10 epochs on the 8,000
/// built-in training digits, seed 0, reaches 123.0 nats per test image; genlab must be ≤ 124.0.
#[test]
fn mnist_vae_quality_bar_10_epochs() {
    let data = mnist();
    let mut cfg = config("mnist_vae", &data);
    cfg.train.seed = 0;
    cfg.train.epochs = 10;
    let mut s = TrainingSession::new(cfg, data).unwrap();
    let mut last_test = None;
    while !s.is_finished() {
        let r = s.step().unwrap();
        assert!(!r.diverged, "diverged at step {}", r.step);
        if let Some(e) = r.epoch_end {
            last_test = e.test;
            eprintln!(
                "epoch {}: train {:.2} test {:.2}",
                e.epoch + 1,
                e.train.get(LossKey::Loss).unwrap(),
                e.test.unwrap().get(LossKey::Loss).unwrap()
            );
        }
    }
    let test = last_test.expect("a test loss").get(LossKey::Loss).unwrap();
    eprintln!("mnist_vae after 10 epochs: test loss {test:.2} nats per image");
    assert!(test <= 124.0, "test loss {test:.2} > 124.0 nats");
}

/// Each preset trains for a few hundred steps and its loss falls by a clear margin. The 64×64
/// presets train on the digits converted to 3×64×64, for fewer and smaller batches (a dcgan64
/// step costs about 60 mnist_dcgan steps).
#[test]
fn every_preset_learns() {
    let mnist = mnist();
    for name in presets() {
        let data = data_for_preset(name, &mnist, 512);
        let mut cfg = config(name, &data);
        // A diffusion step costs ~40 MLP steps; the family's own test checks that both of its
        // presets learn (engine::models::diffusion::tests::both_objectives_learn).
        if cfg.model.family() == genlab::engine::models::Family::Diffusion {
            continue;
        }
        let conv = cfg.model.net().arch == genlab::engine::models::Arch::Conv;
        let big = data.shape != mnist.shape;
        cfg.train.batch_size = if big { 16 } else { 64 };
        let (steps, window) = match (big, conv) {
            (true, _) => (32, 6),
            (false, true) => (60, 10),
            (false, false) => (200, 10),
        };
        let t0 = std::time::Instant::now();
        let mut s = TrainingSession::new(cfg.clone(), data.clone()).unwrap();
        let mut first = Vec::new();
        let mut last = Vec::new();
        let mut w_last = Vec::new();
        for i in 0..steps {
            let r = s.step().unwrap();
            assert!(!r.diverged, "{name} diverged at step {}", r.step);
            let v = r.losses.get(cfg.model.capabilities().headline).unwrap();
            if i < window {
                first.push(v);
            }
            if i >= steps - window {
                last.push(v);
                w_last.extend(r.losses.get(LossKey::WEstimate));
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (a, b) = (mean(&first), mean(&last));
        eprintln!("{name}: {a:.3} → {b:.3} in {steps} steps, {:.1} s", t0.elapsed().as_secs_f64());
        // Reconstruction losses fall by a large factor. A GAN's discriminator learns to tell
        // real from fake: its loss ends clearly under 2 ln 2 ≈ 1.386, chance level. (It need
        // not fall from its first steps: a healthy tanh GAN's D is ahead at once and stays
        // near 1 while G catches up; what G learns is tests/gan_quality.rs's business.)
        // A critic (WGAN-GP) has no chance level: it learns when its Wasserstein estimate
        // E D(x) − E D(G(z)) is clearly positive.
        if !w_last.is_empty() {
            let w = mean(&w_last);
            assert!(w > 0.5, "{name}: the critic's Wasserstein estimate ends at {w:.3}");
        } else if cfg.model.capabilities().discriminator {
            let chance = 2.0 * std::f64::consts::LN_2;
            assert!(
                b < 0.85 * chance,
                "{name}: D loss {a:.3} → {b:.3}, not clearly under chance {chance:.3}"
            );
        } else {
            assert!(b < a * 0.6, "{name}: loss {a:.3} → {b:.3} did not fall below 0.6×");
        }
    }
}

fn losses_of(cfg: &RunConfig, data: &Arc<Dataset>, steps: usize) -> Vec<f64> {
    let mut s = TrainingSession::new(cfg.clone(), data.clone()).unwrap();
    let headline = cfg.model.capabilities().headline;
    (0..steps).map(|_| s.step().unwrap().losses.get(headline).unwrap()).collect()
}

#[test]
fn seeded_runs_are_identical_and_seeds_differ() {
    let data = mnist();
    for name in ["mnist_vae", "mnist_mlp_gan"] {
        let cfg = config(name, &data);
        let a = losses_of(&cfg, &data, 30);
        let b = losses_of(&cfg, &data, 30);
        assert_eq!(a, b, "{name}: same seed, different losses");
        let mut other = cfg.clone();
        other.train.seed = 1;
        assert_ne!(a, losses_of(&other, &data, 30), "{name}: different seeds, same losses");
    }
}

#[test]
fn a_huge_learning_rate_is_caught_and_the_last_good_weights_restored() {
    let data = mnist();
    let mut cfg = config("mnist_ae", &data);
    cfg.optim.lr = 1e6;
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    let probe = Tensor::from_vec(data.gather(&[0, 1, 2]), (3, 784), &Device::Cpu).unwrap();
    let report = (0..200)
        .map(|_| s.step().unwrap())
        .find(|r| r.diverged)
        .expect("lr = 1e6 never produced a non-finite loss in 200 steps");
    let restored = report.restored_to.expect("weights were restored");
    assert!(restored < report.step);
    let rec: Vec<f32> =
        s.model().reconstruct(&probe).unwrap().unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(rec.iter().all(|v| v.is_finite()), "the restored weights give finite outputs");
    // The run goes on with a sane learning rate.
    s.model_mut().set_hyper(LiveHyper::LearningRate, 1e-3).unwrap();
    for _ in 0..20 {
        let r = s.step().unwrap();
        assert!(!r.diverged && r.losses.is_finite(), "still diverging at step {}", r.step);
    }
}

#[test]
fn checkpoint_round_trip_restores_identical_outputs_and_resumes() {
    let data = mnist();
    for name in ["mnist_vae", "mnist_mlp_gan"] {
        let cfg = config(name, &data);
        let mut s = TrainingSession::new(cfg.clone(), data.clone()).unwrap();
        for _ in 0..20 {
            s.step().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        checkpoint::save(dir.path(), s.model(), s.config(), &data.source, s.step_count(), None).unwrap();
        let loaded = checkpoint::load(dir.path()).unwrap();
        assert_eq!(loaded.meta.step, 20);
        assert_eq!(loaded.meta.config, cfg);
        let a = s.sample(16, 1.0, 7).unwrap();
        let b = genlab::engine::session::sample(loaded.model.as_ref(), 16, 1.0, 7).unwrap();
        assert_eq!(a, b, "{name}: decoded images differ after a round trip");

        // Resuming: a session restored from the checkpoint trains on exactly like the original.
        let mut resumed = TrainingSession::new(cfg.clone(), data.clone()).unwrap();
        resumed.model_mut().load_state(&loaded.model.state().unwrap()).unwrap();
        resumed.model_mut().set_optimizer_steps(&loaded.model.optimizer_steps());
        resumed.set_progress(loaded.meta.step);
        let x = genlab::engine::session::batch_of(&data, &[5, 6, 7, 8]).unwrap();
        let mut r1 = rand::SeedableRng::seed_from_u64(9);
        let mut r2 = rand::SeedableRng::seed_from_u64(9);
        let l1 = s.model_mut().train_step(&x, &mut r1).unwrap();
        let l2 = resumed.model_mut().train_step(&x, &mut r2).unwrap();
        assert_eq!(l1, l2, "{name}: a step after resuming differs");
        assert_eq!(s.sample(4, 1.0, 1).unwrap(), resumed.sample(4, 1.0, 1).unwrap());
    }
}

#[test]
fn corrupt_and_truncated_checkpoints_give_clear_errors() {
    let data = mnist();
    let cfg = config("mnist_vae", &data);
    let s = TrainingSession::new(cfg, data.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), s.model(), s.config(), &data.source, 0, None).unwrap();
    let weights = checkpoint::weights_path(dir.path()).unwrap();
    let weights_name = weights.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&weights).unwrap();

    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = checkpoint::load(dir.path()).err().expect("truncated weights fail").to_string();
    assert!(e.contains(&weights_name) && e.contains("bytes"), "{e}");

    let mut flipped = bytes.clone();
    let k = flipped.len() - 10;
    flipped[k] ^= 0xff;
    std::fs::write(&weights, &flipped).unwrap();
    let e = checkpoint::load(dir.path()).err().expect("corrupt weights fail").to_string();
    assert!(e.contains("checksum"), "{e}");

    std::fs::write(dir.path().join(checkpoint::CONFIG_FILE), b"{ not json").unwrap();
    let e = checkpoint::load(dir.path()).err().expect("bad config fails").to_string();
    assert!(e.contains("config.json"), "{e}");

    let e = checkpoint::load(&dir.path().join("nope")).err().expect("missing folder fails").to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn configurations_that_do_not_fit_say_why() {
    let data = mnist();
    let mut cfg = config("mnist_vae", &data);
    cfg.model.net_mut().hidden = vec![400, 0];
    let e = TrainingSession::new(cfg, data.clone()).err().unwrap().to_string();
    assert!(e.contains("width 0"), "{e}");

    let mut cfg = config("mnist_vae", &data);
    cfg.model.net_mut().latent_dim = 0;
    assert!(TrainingSession::new(cfg, data.clone()).err().unwrap().to_string().contains("latent"));

    let mut cfg = config("mnist_vae", &data);
    cfg.train.batch_size = 9000;
    let e = TrainingSession::new(cfg, data.clone()).err().unwrap().to_string();
    assert!(e.contains("batch size 9000") && e.contains("8000"), "{e}");

    let mut cfg = config("conv_vae", &data);
    cfg.model.net_mut().hidden = vec![8, 8, 8];
    let e = TrainingSession::new(cfg, data.clone()).err().unwrap().to_string();
    assert!(e.contains("divisible by 8"), "{e}");

    // The 64×64 presets on 28×28 digits: the message says how to load them at 64×64.
    for name in ["dcgan64", "conv_vae64"] {
        let e = TrainingSession::new(config(name, &data), data.clone()).err().unwrap().to_string();
        assert!(e.contains("divisible by 16") && e.contains("28×28"), "{name}: {e}");
        assert!(
            e.contains("resize the data to 64×64") && e.contains("--resize 64 --channels 3"),
            "{name}: {e}"
        );
        assert!(e.contains("Resize to"), "{name}: {e}");
    }

    for lr in [f64::NAN, 0.0, -1.0] {
        let mut cfg = config("mnist_vae", &data);
        cfg.optim.lr = lr;
        assert!(TrainingSession::new(cfg, data.clone()).err().unwrap().to_string().contains("learning rate"));
    }
    let mut cfg = config("mnist_vae", &data);
    cfg.train.epochs = 0;
    assert!(TrainingSession::new(cfg, data.clone()).err().unwrap().to_string().contains("epochs"));
}

#[test]
fn presets_adapt_to_other_image_shapes() {
    use genlab::engine::data::{DataSource, ImageShape};
    for shape in [ImageShape::new(1, 8, 8), ImageShape::new(3, 32, 32)] {
        let n = 64;
        let images: Vec<f32> = (0..n * shape.len()).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
        let d = Arc::new(Dataset::new("synthetic", DataSource::Builtin, shape, images, None).unwrap());
        for name in presets() {
            let mut cfg = config(name, &d);
            cfg.train.batch_size = 16;
            let layers = cfg.model.net().hidden.len() as u32;
            let conv = cfg.model.net().arch == genlab::engine::models::Arch::Conv;
            if conv && !shape.height.is_multiple_of(1 << layers) {
                continue;
            }
            // A conditional preset refuses data without labels (tests/conditional.rs).
            if cfg.model.capabilities().conditional {
                continue;
            }
            let mut s =
                TrainingSession::new(cfg, d.clone()).unwrap_or_else(|e| panic!("{name} on {shape}: {e}"));
            let r = s.step().unwrap();
            assert!(r.losses.is_finite(), "{name} on {shape}");
            assert_eq!(s.sample(2, 1.0, 0).unwrap().shape, shape);
        }
    }
}
