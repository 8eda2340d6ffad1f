//! Files written by genlab before each model family had its own configuration type still load
//! and give the same outputs. `tests/fixtures/legacy/` was written by main at f8bac44 (the flat
//! `ModelConfig`): one small trained checkpoint per family and network shape, with the
//! decodes, encodings and discriminator logits that version computed from fixed inputs
//! (`expected.json`), and the app's saved state (eframe's RON) for three presets.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use genlab::app::state::Persisted;
use genlab::engine::checkpoint;
use genlab::engine::config::preset;
use genlab::engine::data::ImageShape;
use genlab::engine::models::{Family, GanOutput, GenerativeModel};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn close(got: &[f32], want: &serde_json::Value, what: &str) {
    let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w} before");
    }
}

#[test]
fn checkpoints_of_every_family_load_and_compute_what_they_did() {
    let cases = [
        ("ae_mlp", Family::Autoencoder),
        ("vae_mlp", Family::Vae),
        ("beta_vae_mlp", Family::BetaVae),
        ("gan_mlp", Family::Gan),
        ("vae_conv", Family::Vae),
        ("gan_conv", Family::Gan),
    ];
    for (name, family) in cases {
        let dir = fixtures().join(name);
        let loaded = checkpoint::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let m: &dyn GenerativeModel = loaded.model.as_ref();
        assert_eq!(m.config().family(), family, "{name}");
        assert_eq!(m.param_count() as u64, expected["param_count"].as_u64().unwrap(), "{name}");
        let z: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) * 0.4).collect();
        let z = Tensor::from_vec(z, (2, 3), &Device::Cpu).unwrap();
        close(&values(&m.decode(&z).unwrap()), &expected["decode"], &format!("{name} decode"));
        let x: Vec<f32> = (0..128).map(|i| ((i * 7) % 13) as f32 / 12.0).collect();
        let x = Tensor::from_vec(x, (2, 64), &Device::Cpu).unwrap();
        match m.encode(&x).unwrap() {
            Some((mu, logvar)) => {
                close(&values(&mu), &expected["encode"][0], &format!("{name} μ"));
                close(&values(&logvar), &expected["encode"][1], &format!("{name} log σ²"));
            }
            None => assert!(expected["encode"].is_null(), "{name} had an encoder"),
        }
        match m.discriminate(&x).unwrap() {
            Some(d) => close(&values(&d), &expected["discriminate"], &format!("{name} D")),
            None => assert!(expected["discriminate"].is_null(), "{name} had a discriminator"),
        }
        // Saved again, it loads again (in the new layout) with the same weights.
        let tmp = tempfile::tempdir().unwrap();
        let meta = &loaded.meta;
        checkpoint::save(tmp.path(), m, &meta.config, &meta.data_source, meta.step, None).unwrap();
        let again = checkpoint::load(tmp.path()).unwrap();
        assert_eq!(again.meta.config, meta.config, "{name}");
        close(&values(&again.model.decode(&z).unwrap()), &expected["decode"], &format!("{name} re-saved"));
    }
}

#[test]
fn saved_app_state_of_the_flat_config_loads_with_its_settings() {
    for (p, family) in
        [("mnist_beta_vae", Family::BetaVae), ("mnist_dcgan", Family::Gan), ("mnist_ae", Family::Autoencoder)]
    {
        let ron = std::fs::read_to_string(fixtures().join(format!("app_state_{p}.ron"))).unwrap();
        let state: Persisted =
            ron::from_str::<Persisted>(&ron).unwrap_or_else(|e| panic!("{p}: {e}")).upgraded();
        let mut want = preset(p, ImageShape::new(1, 28, 28)).unwrap();
        want.model.net_mut().latent_dim = 7;
        // Saved before the GAN presets moved to tanh and longer runs: it keeps what it had.
        if let Some(gan) = want.model.gan_mut() {
            gan.output = GanOutput::Sigmoid;
            want.train.epochs = 10;
        }
        assert_eq!(state.config, want, "{p}");
        assert_eq!(state.config.model.family(), family);
        // What this version saves loads back the same.
        let saved = ron::ser::to_string(&state).unwrap();
        let back: Persisted = ron::from_str::<Persisted>(&saved).unwrap().upgraded();
        assert_eq!(back.config, want, "{p}: round trip of {saved}");
    }
}
