//! The fused CPU kernels against the reference path (candle's stock ops, what every GPU runs):
//! every preset trained from one seed on both gives the same losses step by step, and a
//! checkpoint written by one loads in the other.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::Arc;

use candle_core::{Device, Tensor};
use genlab::engine::checkpoint;
use genlab::engine::config::{data_for_preset, preset, presets};
use genlab::engine::data::{builtin, Dataset};
use genlab::engine::kernels::KernelPath;
use genlab::engine::parity::{compare, Side};
use genlab::engine::session::{sample, TrainingSession};

fn mnist() -> Arc<Dataset> {
    Arc::new(builtin::load().expect("the built-in dataset loads"))
}

/// The largest relative loss difference allowed over the steps below. The two paths differ in
/// the order of their sums and in the fused ops' fast exp/tanh; training amplifies that a
/// little every step (measured: see the test's output and README "Kernels").
const MAX_REL_DIFF: f64 = 1e-3;
/// Before any update: the forward passes and losses alone.
const MAX_FIRST_STEP_DIFF: f64 = 1e-5;

#[test]
fn every_preset_trains_alike_on_both_kernel_paths() {
    let mnist = mnist();
    let fused = Side::new(Device::Cpu, KernelPath::Fused);
    let reference = Side::new(Device::Cpu, KernelPath::Reference);
    for name in presets() {
        // The 64×64 presets run on a few digits converted to 3×64×64.
        let data = data_for_preset(name, &mnist, 64);
        let mut cfg = preset(name, data.shape).unwrap();
        let conv = cfg.model.net().arch == genlab::engine::models::Arch::Conv;
        // candle's CPU convolutions are slow: fewer, smaller steps for the conv presets, and
        // fewer still at 64×64 (a dcgan64 step costs about 60 mnist_dcgan steps).
        let (steps, batch) = match (data.shape != mnist.shape, conv) {
            (true, _) => (2, 16),
            (false, true) => (8, 32),
            (false, false) => (30, 64),
        };
        cfg.train.batch_size = batch;
        cfg.train.seed = 3;
        let p = compare(&cfg, data.clone(), &fused, &reference, steps).unwrap();
        eprintln!(
            "{name:>16}: {steps} steps, max relative loss difference {:.2e} (step {}, {:?}), first step {:.2e}; {:.0} vs {:.0} img/s",
            p.max_rel_diff, p.worst_step, p.worst_loss, p.first_step_diff, p.a.images_per_sec, p.b.images_per_sec
        );
        assert_eq!(p.steps, steps, "{name}");
        assert!(
            p.first_step_diff < MAX_FIRST_STEP_DIFF,
            "{name}: first step differs by {:.2e}",
            p.first_step_diff
        );
        assert!(p.max_rel_diff < MAX_REL_DIFF, "{name}: losses differ by {:.2e}", p.max_rel_diff);
    }
}

/// A checkpoint written on one path loads on the other and draws the same samples.
#[test]
fn checkpoints_load_across_kernel_paths() {
    let data = mnist();
    for name in ["mnist_vae", "mnist_dcgan"] {
        for (from, to) in
            [(KernelPath::Fused, KernelPath::Reference), (KernelPath::Reference, KernelPath::Fused)]
        {
            let mut cfg = preset(name, data.shape).unwrap();
            cfg.train.batch_size = 32;
            cfg.train.kernels = from;
            let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
            for _ in 0..5 {
                s.step().unwrap();
            }
            let dir = tempfile::tempdir().unwrap();
            checkpoint::save(dir.path(), s.model(), s.config(), &data.source, s.step_count(), None).unwrap();
            let loaded = checkpoint::load_on(dir.path(), &Device::Cpu, Some(to)).unwrap();
            let z = Tensor::randn(0f32, 1.0, (16, cfg_latent(&s)), &Device::Cpu).unwrap();
            let (a, b) = (s.model().decode(&z).unwrap(), loaded.model.decode(&z).unwrap());
            let worst = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let worst = worst.to_scalar::<f32>().unwrap();
            assert!(worst < 1e-5, "{name} {from} → {to}: samples differ by {worst}");
            assert_eq!(
                s.sample(16, 1.0, 7).unwrap().shape,
                sample(loaded.model.as_ref(), 16, 1.0, 7).unwrap().shape
            );
            // And the state it holds is the state that was saved (Adam's moments too).
            let (sa, sb) = (s.model().state().unwrap(), loaded.model.state().unwrap());
            assert_eq!(sa.len(), sb.len());
            for (k, t) in &sa {
                let d = (t - &sb[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                assert!(d.to_scalar::<f32>().unwrap() == 0.0, "{name} {from} → {to}: {k} differs");
            }
        }
    }
}

fn cfg_latent(s: &TrainingSession) -> usize {
    s.config().model.latent_dim()
}
