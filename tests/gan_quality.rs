//! What a GAN learns, judged by the shipped digit classifier: the MLP GAN preset (tanh output on
//! data scaled to [−1, 1]) spreads over several digit classes within a few hundred steps, where
//! the same network with genlab's old sigmoid output on [0, 1] data has already collapsed onto
//! one image (issue #15: its discriminator wins and G gets no useful gradient).
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::Arc;

use genlab::engine::config::preset;
use genlab::engine::data::{builtin, Dataset};
use genlab::engine::models::GanOutput;
use genlab::engine::quality::{feature_net, QualityContext, Scored};
use genlab::engine::session::TrainingSession;

/// Samples scored per model: enough for a class histogram, cheap in features.
const N: usize = 500;
const STEPS: usize = 1000;
/// Classes covered (each with ≥ 1% of the samples confidently) that count as "several". Seed 0
/// measured 4 classes, coverage 0.14 and FD 0.51 of noise's for the tanh GAN; 0 classes,
/// coverage 0.006 and FD 1.06 of noise's for the sigmoid one.
const MIN_CLASSES: usize = 3;

fn trained(output: GanOutput, ctx: &QualityContext, data: &Arc<Dataset>) -> Scored {
    let mut cfg = preset("mnist_mlp_gan", data.shape).unwrap();
    cfg.train.threads = 2;
    cfg.model.gan_mut().unwrap().output = output;
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    for _ in 0..STEPS {
        assert!(!s.step().unwrap().diverged);
    }
    let r = ctx.score_model(s.model(), 0).unwrap();
    let (m, c) = (&r.samples.metrics, r.samples.classes.as_ref().unwrap());
    eprintln!(
        "{output:?} after {STEPS} steps: FD {:.0} (noise {:.0})  recall {:.3}  coverage {:.3}  confident {:.3}  classes {}  {:?}",
        m.fd, ctx.ceiling.metrics.fd, m.recall, m.coverage, c.confident, c.covered, c.histogram
    );
    r.samples
}

fn context(data: &Dataset) -> QualityContext {
    let split = data.split(0.2, 0);
    let net = feature_net(data, &split, &mut |m| eprintln!("{m}")).unwrap();
    QualityContext::new(data, &split, net, N, 0).unwrap()
}

/// Several classes, some coverage and an FD well below noise's; the sigmoid GAN fails this.
fn learned_several_digits(s: &Scored, noise_fd: f64) -> bool {
    s.classes.as_ref().is_some_and(|c| c.covered >= MIN_CLASSES)
        && s.metrics.coverage > 0.05
        && s.metrics.fd < 0.7 * noise_fd
}

#[test]
fn the_mlp_gan_learns_several_digits() {
    let data = Arc::new(builtin::load().unwrap());
    let ctx = context(&data);
    let tanh = trained(GanOutput::Tanh, &ctx, &data);
    assert!(learned_several_digits(&tanh, ctx.ceiling.metrics.fd), "{tanh:?}");
}

/// The bound above tells the two outputs apart: genlab's old sigmoid GAN fails it. Ignored by
/// default (it costs as much again): `cargo test --release --test gan_quality -- --ignored`.
#[test]
#[ignore]
fn the_sigmoid_mlp_gan_collapses() {
    let data = Arc::new(builtin::load().unwrap());
    let ctx = context(&data);
    let sigmoid = trained(GanOutput::Sigmoid, &ctx, &data);
    assert!(!learned_several_digits(&sigmoid, ctx.ceiling.metrics.fd), "{sigmoid:?}");
}

/// WGAN-GP (issue #16) learns too: the MLP GAN's networks with the Wasserstein critic and its
/// gradient penalty (lazy, every 4th critic step), 2 critic steps per generator step, spread
/// over several digit classes within its first steps, judged by the same bound.
#[test]
fn the_mlp_wgan_gp_learns_several_digits() {
    use genlab::engine::models::GanLoss;
    let data = Arc::new(builtin::load().unwrap());
    let ctx = context(&data);
    let mut cfg = preset("mnist_mlp_gan", data.shape).unwrap();
    cfg.train.threads = 2;
    let gan = cfg.model.gan_mut().unwrap();
    gan.gan_loss = GanLoss::WganGp;
    gan.d_steps = 2;
    gan.gp_every = 4;
    cfg.optim.beta1 = 0.5;
    cfg.optim.beta2 = 0.9;
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    for _ in 0..WGAN_STEPS {
        assert!(!s.step().unwrap().diverged);
    }
    let r = ctx.score_model(s.model(), 0).unwrap();
    let (m, c) = (&r.samples.metrics, r.samples.classes.as_ref().unwrap());
    eprintln!(
        "WGAN-GP after {WGAN_STEPS} critic steps: FD {:.0} (noise {:.0})  recall {:.3}  coverage {:.3}  confident {:.3}  classes {}  {:?}",
        m.fd, ctx.ceiling.metrics.fd, m.recall, m.coverage, c.confident, c.covered, c.histogram
    );
    assert!(learned_several_digits(&r.samples, ctx.ceiling.metrics.fd), "{:?}", r.samples);
}

/// Critic steps of the WGAN-GP test (half as many generator steps).
const WGAN_STEPS: usize = 2000;
