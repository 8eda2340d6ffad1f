//! Hot kernels under Criterion (`cargo bench`): one mnist_vae training step through the engine,
//! the fused Adam update of a 784×400 layer, a fused linear layer's forward and backward pass,
//! the fused convolutions of conv_vae's middle layers (forward and backward) and their im2col /
//! col2im. Single-threaded, so numbers compare across machines with different core counts;
//! `genlab bench` measures whole models and threads.

use std::hint::black_box;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use genlab::engine::config::preset;
use genlab::engine::data::builtin;
use genlab::engine::kernels::{self, Epilogue, Geometry};
use genlab::engine::models::layers::ParamSet;
use genlab::engine::models::optim::{Adam, AdamConfig};
use genlab::engine::session::TrainingSession;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Makes rayon's global pool, which the kernels and candle's matmul split over outside an
/// installed pool, one thread; before the first op.
fn single_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("a one-thread global pool")
    });
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
    let mut adam = Adam::new(AdamConfig::default(), &params).expect("adam state");
    c.bench_function("fused Adam update (784×400 + 400)", |bench| {
        bench.iter(|| adam.step(&params, &grads).expect("an update"))
    });
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).expect("a tensor")
}

fn var(shape: &[usize]) -> Var {
    Var::from_tensor(&randn(shape)).expect("a variable")
}

/// mnist_vae's first layer (784 → 400, ReLU, batch 128), forward and backward, with the input
/// gradient (as for any layer but the first) and without it.
fn linear_layer(c: &mut Criterion) {
    single_thread();
    let (w, b, up) = (var(&[400, 784]), var(&[400]), randn(&[128, 400]));
    for (name, x) in [("with", var(&[128, 784]).as_tensor().clone()), ("without", randn(&[128, 784]))] {
        c.bench_function(&format!("fused linear 784→400, batch 128, fwd+bwd {name} dx"), |bench| {
            bench.iter(|| {
                let y = kernels::linear(&x, &w, &b, Epilogue::Relu, None).expect("forward");
                black_box((y * &up).and_then(|l| l.sum_all()).and_then(|l| l.backward()).expect("backward"))
            })
        });
    }
}

/// conv_vae's middle layers at batch 128: conv 32→64 (14×14 → 7×7) and its mirror, the
/// transposed conv 64→32 (7×7 → 14×14), 4×4 kernels, stride 2, padding 1, ReLU.
fn conv_layers(c: &mut Criterion) {
    single_thread();
    let g = Geometry { kernel: 4, stride: 2, pad: 1 };
    let (x, w, b, up) = (var(&[128, 32, 14, 14]), var(&[64, 32, 4, 4]), var(&[64]), randn(&[128, 64, 7, 7]));
    c.bench_function("fused conv2d 32→64, 14×14, batch 128, fwd+bwd", |bench| {
        bench.iter(|| {
            let y = kernels::conv2d_act(&x, &w, &b, g, Epilogue::Relu, None).expect("forward");
            black_box((y * &up).and_then(|l| l.sum_all()).and_then(|l| l.backward()).expect("backward"))
        })
    });
    let (xt, wt, bt, upt) =
        (var(&[128, 64, 7, 7]), var(&[64, 32, 4, 4]), var(&[32]), randn(&[128, 32, 14, 14]));
    c.bench_function("fused conv-transpose2d 64→32, 7×7, batch 128, fwd+bwd", |bench| {
        bench.iter(|| {
            let y = kernels::conv_transpose2d_act(&xt, &wt, &bt, g, Epilogue::Relu, None).expect("forward");
            black_box((y * &upt).and_then(|l| l.sum_all()).and_then(|l| l.backward()).expect("backward"))
        })
    });
    let plain = randn(&[128, 32, 14, 14]);
    let cols = kernels::unfold(&plain, g).expect("columns");
    c.bench_function("im2col 32×14×14, 4×4/2/1, batch 128", |bench| {
        bench.iter(|| black_box(kernels::unfold(&plain, g).expect("im2col")))
    });
    c.bench_function("col2im 32×14×14, 4×4/2/1, batch 128", |bench| {
        bench.iter(|| black_box(kernels::fold(&cols, (14, 14), g).expect("col2im")))
    });
}

criterion_group!(benches, vae_step, adam_update, linear_layer, conv_layers);
criterion_main!(benches);
