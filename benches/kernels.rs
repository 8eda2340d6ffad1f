//! Hot kernels under Criterion (`cargo bench`): one mnist_vae training step through the engine
//! and the fused Adam update of a 784×400 layer. Single-threaded, so numbers compare across
//! machines with different core counts; `genlab bench` measures whole models and threads.

use std::hint::black_box;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use genlab::engine::config::preset;
use genlab::engine::data::builtin;
use genlab::engine::models::layers::ParamSet;
use genlab::engine::models::optim::{Adam, AdamConfig};
use genlab::engine::session::TrainingSession;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn single_thread() {
    // candle reads it per op; set before the first one.
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

fn vae_step(c: &mut Criterion) {
    single_thread();
    let data = Arc::new(builtin::load().expect("the built-in digits load"));
    let mut cfg = preset("mnist_vae", data.shape).expect("a preset");
    cfg.train.epochs = usize::MAX / 2;
    cfg.train.eval_limit = 128;
    // Every 63rd step ends an epoch and evaluates 128 test images, as a real run would.
    let mut s = TrainingSession::new(cfg, data).expect("a session");
    c.bench_function("mnist_vae train step (batch 128, 1 thread)", |b| {
        b.iter(|| black_box(s.step().expect("a step")))
    });
}

fn adam_update(c: &mut Criterion) {
    single_thread();
    let mut rng = StdRng::seed_from_u64(0);
    let mut params = ParamSet::default();
    let w = params.uniform("w".into(), &[400, 784], 0.05, &mut rng).expect("a weight");
    let b = params.uniform("b".into(), &[400], 0.05, &mut rng).expect("a bias");
    let mut grads = GradStore::default();
    grads.insert(&w, Tensor::randn(0f32, 1e-3, (400, 784), &Device::Cpu).expect("a gradient"));
    grads.insert(&b, Tensor::randn(0f32, 1e-3, 400, &Device::Cpu).expect("a gradient"));
    let mut adam = Adam::new(AdamConfig::default(), &params);
    c.bench_function("fused Adam update (784×400 + 400)", |bench| {
        bench.iter(|| adam.step(&params, &grads).expect("an update"))
    });
}

criterion_group!(benches, vae_step, adam_update);
criterion_main!(benches);
