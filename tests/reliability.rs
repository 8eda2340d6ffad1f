//! Reliability (issue #7): checkpoint layout and size checks, allocation limits on hostile
//! headers, and input validation with messages that say what is wrong.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genlab::engine::checkpoint;
use genlab::engine::config::{preset, preset_input, presets, RunConfig};
use genlab::engine::data::{DataSource, Dataset, ImageShape};
use genlab::engine::models::{build_model, AdamConfig, Family};
use genlab::engine::session::TrainingSession;

fn synthetic(shape: ImageShape, n: usize) -> Arc<Dataset> {
    let images: Vec<f32> = (0..n * shape.len()).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    Arc::new(Dataset::new("synthetic", DataSource::Builtin, shape, images, None).unwrap())
}

fn tiny_vae(data: &Dataset) -> RunConfig {
    let mut cfg = preset("mnist_vae", data.shape).unwrap();
    cfg.model.net_mut().hidden = vec![8];
    cfg.model.net_mut().latent_dim = 2;
    cfg.train.batch_size = 8;
    cfg
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

#[test]
fn param_count_from_shapes_matches_the_built_models() {
    let mut configs = Vec::new();
    for shape in [ImageShape::new(1, 28, 28), ImageShape::new(3, 16, 8)] {
        for name in presets() {
            let cfg = preset(name, shape).unwrap().model;
            if cfg.validate().is_ok() {
                configs.push(cfg);
            }
        }
    }
    // Each preset at the shape it is laid out for (3×64×64 for dcgan64 and conv_vae64).
    for name in presets() {
        configs.push(preset(name, preset_input(name).unwrap()).unwrap().model);
    }
    let ae_conv = preset("conv_vae", ImageShape::new(1, 8, 8)).unwrap().model;
    let ae_conv = ae_conv.with_family(Family::Autoencoder);
    configs.push(ae_conv);
    let mut gan_no_bn = preset("mnist_dcgan", ImageShape::new(3, 8, 8)).unwrap().model;
    gan_no_bn.gan_mut().unwrap().batch_norm = false;
    configs.push(gan_no_bn);
    let mut mlp_gan_bn = preset("mnist_mlp_gan", ImageShape::new(1, 8, 8)).unwrap().model;
    mlp_gan_bn.gan_mut().unwrap().batch_norm = true; // ignored by MLPs
    configs.push(mlp_gan_bn);
    let mut deep = preset("mnist_ae", ImageShape::new(1, 4, 4)).unwrap().model;
    deep.net_mut().hidden = vec![];
    configs.push(deep);
    for cfg in configs {
        let built = build_model(&cfg, &AdamConfig::default(), 0, &genlab::engine::kernels::Exec::cpu())
            .unwrap()
            .param_count() as u64;
        assert_eq!(
            cfg.param_count_from_shapes(),
            built,
            "{:?} {:?} {}",
            cfg.family(),
            cfg.net().arch,
            cfg.input()
        );
    }
}

/// The 64×64 presets' sizes, counted by hand from their layers. dcgan64: G 3,585,347 (linear
/// 100 → 512×4×4 with batch norm, transposed convs to 256, 128, 64 with batch norm, then 3) and
/// D 2,766,529 (convs 64, 128, 256, 512, batch norm on the last three, linear 8192 → 1), the
/// DCGAN paper's layout. conv_vae64: encoder convs 32, 64, 128, 256 (690,144), μ and log σ²
/// heads 4096 → 128 (1,048,832), decoder 128 → 256×4×4 and transposed convs back (1,218,275).
#[test]
fn the_64x64_presets_have_their_documented_sizes() {
    for (name, params) in
        [("dcgan64", 3_585_347 + 2_766_529), ("conv_vae64", 690_144 + 1_048_832 + 1_218_275)]
    {
        let shape = preset_input(name).unwrap();
        assert_eq!(shape, ImageShape::new(3, 64, 64), "{name}");
        let cfg = preset(name, shape).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.model.param_count_from_shapes(), params, "{name}");
    }
}

#[test]
fn a_model_over_the_parameter_limit_is_refused_before_it_is_built() {
    let mut cfg = preset("mnist_vae", ImageShape::new(3, 4096, 4096)).unwrap();
    cfg.model.net_mut().hidden = vec![16384];
    let t0 = Instant::now();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("parameters") && e.contains("limit"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    let data = synthetic(ImageShape::new(3, 4096, 4096), 0);
    let e = TrainingSession::new(cfg, data).err().unwrap().to_string();
    assert!(e.contains("parameters"), "{e}");
}

/// Saves a tiny checkpoint and returns its folder.
fn saved_checkpoint(dir: &Path) -> (RunConfig, Arc<Dataset>) {
    let data = synthetic(ImageShape::new(1, 8, 8), 32);
    let cfg = tiny_vae(&data);
    let mut s = TrainingSession::new(cfg.clone(), data.clone()).unwrap();
    s.step().unwrap();
    checkpoint::save(dir, s.model(), s.config(), &data.source, 1, None).unwrap();
    (cfg, data)
}

#[test]
fn checkpoints_in_the_old_layout_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    saved_checkpoint(dir);
    let weights = checkpoint::weights_path(dir).unwrap();
    std::fs::rename(&weights, dir.join(checkpoint::LEGACY_WEIGHTS_FILE)).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(checkpoint::CONFIG_FILE)).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("weights_file");
    std::fs::write(dir.join(checkpoint::CONFIG_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
    let loaded = checkpoint::load(dir).unwrap();
    assert_eq!(loaded.meta.weights_file, checkpoint::LEGACY_WEIGHTS_FILE);
    assert_eq!(loaded.meta.step, 1);

    // The next save moves to the new layout and removes the old weights file.
    checkpoint::save(dir, loaded.model.as_ref(), &loaded.meta.config, &loaded.meta.data_source, 2, None)
        .unwrap();
    assert!(!dir.join(checkpoint::LEGACY_WEIGHTS_FILE).exists());
    assert_eq!(checkpoint::load(dir).unwrap().meta.step, 2);
}

#[test]
fn a_config_json_that_names_weights_outside_the_folder_or_a_bigger_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    saved_checkpoint(dir);
    let text = std::fs::read(dir.join(checkpoint::CONFIG_FILE)).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut m = meta.clone();
        f(&mut m);
        std::fs::write(dir.join(checkpoint::CONFIG_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        checkpoint::load(dir).err().expect("the edited checkpoint is refused").to_string()
    };
    let e = edit(&|m| m["weights_file"] = "../elsewhere/model.safetensors".into());
    assert!(e.contains("same folder"), "{e}");
    // A model 4,000 times wider than its weights: refused before it is built.
    let t0 = Instant::now();
    let e = edit(&|m| m["config"]["model"]["hidden"] = serde_json::json!([16000]));
    assert!(e.contains("parameters") && e.contains("bytes of weights"), "{e}");
    assert!(t0.elapsed() < Duration::from_millis(500), "took {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Long runs

#[test]
fn the_metrics_log_of_a_long_run_is_thinned_evenly_and_stays_bounded() {
    use genlab::engine::metrics::{MetricsLog, MAX_EPOCHS, MAX_STEP_ROWS};
    use genlab::engine::models::Losses;
    use genlab::engine::protocol::StepMetrics;
    use genlab::engine::session::EpochSummary;
    let mut log = MetricsLog::default();
    let losses = Losses::of(&[(genlab::engine::models::LossKey::Loss, 1.0)]);
    let steps_per_epoch = 7;
    for step in 1..=300_000u64 {
        let epoch = ((step - 1) / steps_per_epoch) as usize;
        log.push_step(&StepMetrics { step, epoch, losses, learning_rate: 1e-3, images_per_sec: 1.0 });
        if step % steps_per_epoch == 0 {
            log.push_epoch(step, &EpochSummary { epoch, train: losses, test: Some(losses) });
        }
    }
    let steps: Vec<u64> = log.rows.iter().filter(|r| r.split == "step").map(|r| r.step).collect();
    let epochs: Vec<usize> = log.rows.iter().filter(|r| r.split == "test").map(|r| r.epoch).collect();
    assert!(steps.len() <= MAX_STEP_ROWS && steps.len() > MAX_STEP_ROWS / 2, "{} step rows", steps.len());
    assert!(epochs.len() <= MAX_EPOCHS && epochs.len() > MAX_EPOCHS / 2, "{} epochs", epochs.len());
    let stride = log.step_stride();
    assert_eq!(stride, 16);
    assert!(steps.windows(2).all(|w| w[1] - w[0] == stride), "step rows evenly spaced");
    assert_eq!(steps.last(), Some(&(300_000 / stride * stride)));
    assert!(epochs.windows(2).all(|w| w[1] - w[0] == epochs[1] - epochs[0]), "epoch rows evenly spaced");
    // Still in order of steps, as metrics.csv is read.
    assert!(log.rows.windows(2).all(|w| w[0].step <= w[1].step));
    // A short run keeps every step.
    let mut short = MetricsLog::default();
    for step in 1..=1000 {
        short.push_step(&StepMetrics { step, epoch: 0, losses, learning_rate: 1e-3, images_per_sec: 1.0 });
    }
    assert_eq!(short.rows.len(), 1000);
}

// ---------------------------------------------------------------------------------------------
// Input validation (the basic cases are in engine_training.rs)

fn refused(cfg: RunConfig, data: &Arc<Dataset>) -> String {
    match TrainingSession::new(cfg, data.clone()) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_out_of_range_setting_is_refused_with_its_name() {
    let data = synthetic(ImageShape::new(1, 8, 8), 40); // 32 train / 8 test
    let base = tiny_vae(&data);
    let mut cases: Vec<(RunConfig, &str)> = Vec::new();
    let mut add = |f: &dyn Fn(&mut RunConfig), needle: &'static str| {
        let mut c = base.clone();
        f(&mut c);
        cases.push((c, needle));
    };
    add(&|c| c.model.net_mut().hidden = vec![8, 0, 8], "layer 2 has width 0");
    add(&|c| c.model.net_mut().hidden = vec![20_000], "width 20000");
    add(&|c| c.model.net_mut().latent_dim = 5000, "latent dim 5000");
    add(
        &|c| {
            c.model = c.model.with_family(Family::Gan);
            c.model.gan_mut().unwrap().disc_hidden = vec![0];
        },
        "discriminator layer 1 has width 0",
    );
    add(
        &|c| {
            c.model = c.model.with_family(Family::Gan);
            c.model.gan_mut().unwrap().disc_hidden = vec![];
        },
        "discriminator needs at least one hidden layer",
    );
    add(
        &|c| {
            c.model = c.model.with_family(Family::BetaVae);
            *c.model.beta_mut().unwrap() = f64::NAN;
        },
        "β must be",
    );
    add(
        &|c| {
            c.model = c.model.with_family(Family::BetaVae);
            *c.model.beta_mut().unwrap() = -1.0;
        },
        "β must be",
    );
    add(
        &|c| {
            c.model.net_mut().arch = genlab::engine::models::Arch::Conv;
            c.model.net_mut().hidden = vec![];
        },
        "at least one conv layer",
    );
    add(&|c| c.optim.lr = f64::INFINITY, "learning rate");
    add(&|c| c.optim.beta1 = 1.0, "β₁ and β₂");
    add(&|c| c.optim.beta2 = f64::NAN, "β₁ and β₂");
    add(&|c| c.optim.eps = 0.0, "Adam ε");
    add(&|c| c.train.batch_size = 0, "batch size must be at least 1");
    add(&|c| c.train.batch_size = 33, "batch size 33 is larger than the 32 training images");
    add(&|c| c.train.threads = 0, "threads");
    add(&|c| c.train.threads = 1000, "threads");
    add(&|c| c.train.test_fraction = 1.0, "test fraction");
    add(&|c| c.train.test_fraction = f64::NAN, "test fraction");
    add(&|c| c.train.test_fraction = -0.1, "test fraction");
    add(
        &|c| c.model.net_mut().input = ImageShape::new(1, 28, 28),
        "the model reads 1×28×28 images but the dataset has 1×8×8",
    );
    for (cfg, needle) in cases {
        let e = refused(cfg, &data);
        assert!(e.contains(needle), "expected {needle:?} in: {e}");
    }
    // The boundary: a batch of exactly the training split trains.
    let mut cfg = base.clone();
    cfg.train.batch_size = 32;
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    assert!(s.step().unwrap().losses.is_finite());
    // A single image: all of it trains, nothing is held out.
    let one = synthetic(ImageShape::new(1, 8, 8), 1);
    let mut cfg = base.clone();
    cfg.train.batch_size = 1;
    let mut s = TrainingSession::new(cfg, one).unwrap();
    let r = s.step().unwrap();
    assert!(r.losses.is_finite() && r.epoch_end.is_some_and(|e| e.test.is_none()));
}

#[test]
fn negative_or_non_numeric_settings_in_a_file_are_refused_by_name() {
    for (json, needle) in [
        (r#"{"model": {"family": "vae", "hidden": [400, -5]}}"#, "-5"),
        (r#"{"model": {"family": "gan", "latent_dim": -1}}"#, "-1"),
        (r#"{"model": {"family": "gan", "disc_hidden": [3, -2]}}"#, "-2"),
        // A model is always of a family: the tag is what picks its settings' type.
        (r#"{"model": {"hidden": [400]}}"#, "family"),
        (r#"{"train": {"batch_size": 1.5}}"#, "1.5"),
        (r#"{"optim": {"lr": "fast"}}"#, "fast"),
        (r#"{"model": {"family": "normalizing-flow"}}"#, "normalizing-flow"),
    ] {
        let e = serde_json::from_str::<RunConfig>(json).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
    // Missing settings take their defaults; the result still validates.
    let cfg: RunConfig = serde_json::from_str(r#"{"train": {"epochs": 2}}"#).unwrap();
    assert_eq!(cfg.train.epochs, 2);
    cfg.validate().unwrap();
}

/// Batch-norm statistics of the wrong shape used to be accepted as they were (and broadcast
/// silently, or failed at the first forward pass); they are refused on load, naming the tensor.
#[test]
fn batch_norm_statistics_of_the_wrong_shape_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(ImageShape::new(1, 8, 8), 32);
    let mut cfg = preset("mnist_dcgan", data.shape).unwrap();
    cfg.model.net_mut().hidden = vec![2, 3];
    cfg.model.net_mut().latent_dim = 2;
    cfg.train.batch_size = 8;
    let s = TrainingSession::new(cfg, data.clone()).unwrap();
    checkpoint::save(tmp.path(), s.model(), s.config(), &data.source, 0, None).unwrap();
    let config = std::fs::read(tmp.path().join(checkpoint::CONFIG_FILE)).unwrap();
    let weights = std::fs::read(checkpoint::weights_path(tmp.path()).unwrap()).unwrap();
    assert!(checkpoint::load_from_bytes(&config, &weights, tmp.path()).is_ok());

    let mut state = candle_core::safetensors::load_buffer(&weights, &candle_core::Device::Cpu).unwrap();
    let name = "discriminator.bn0.running_mean";
    assert!(state.contains_key(name), "{:?}", state.keys());
    state.insert(
        name.into(),
        candle_core::Tensor::zeros(1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    let mut names: Vec<&String> = state.keys().collect();
    names.sort();
    let bad = safetensors::serialize(names.iter().map(|n| (n.as_str(), &state[*n])), None).unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&config).unwrap();
    meta["weights_len"] = bad.len().into();
    meta["weights_fnv1a"] = checkpoint::weights_checksum(&bad).into();
    let config = serde_json::to_vec(&meta).unwrap();
    let e = checkpoint::load_from_bytes(&config, &bad, tmp.path()).err().expect("refused").to_string();
    assert!(e.contains(name) && e.contains("shape"), "{e}");
}
