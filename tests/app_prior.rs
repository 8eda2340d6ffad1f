#![cfg(feature = "app")]
//! The latent prior in the app: a VAE run offers "Train latent prior" in the Samples tab and
//! sends the command; once the worker reports a prior, "sample from: learned prior" makes prior
//! samples come from it, and the Latent tab's map draws its samples. A GAN run has no section.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use egui_kittest::kittest::Queryable;
use genlab::engine::config::preset;
use genlab::engine::data::ImageShape;
use genlab::engine::prior::{PriorConfig, PriorMeta};
use genlab::engine::protocol::{Command, Event, PriorSummary};

mod common;
use common::canned::{encoding, feed, recording, sent, trained};
use common::{run, select_tab};

fn summary(dim: usize) -> PriorSummary {
    let meta = PriorMeta {
        format_version: 1,
        config: PriorConfig::default(),
        latent_dim: dim,
        mean: vec![0.0; dim],
        std: vec![1.0; dim],
        train_latents: 8000,
        steps: 960,
        final_loss: 1.3,
        seconds: 20.0,
    };
    PriorSummary {
        meta,
        param_count: 479_508,
        latents: (0..50 * dim).map(|i| (i % 7) as f32 / 7.0).collect(),
    }
}

#[test]
fn a_vae_run_trains_a_latent_prior_and_samples_from_it() {
    let mut h = recording();
    h.run();
    let cfg = preset("mnist_vae", ImageShape::new(1, 28, 28)).unwrap();
    feed(&mut h, trained(1, &cfg));
    select_tab(&mut h, "Samples");
    sent(&mut h);
    assert!(h.query_by_label("learned prior").is_none(), "no source choice before a prior exists");
    h.get_by_label("Train latent prior").click();
    h.run();
    let cmds = sent(&mut h);
    let request = cmds
        .iter()
        .find_map(|c| match c {
            Command::TrainPrior { request, config } => {
                assert_eq!(config.epochs, PriorConfig::default().epochs);
                Some(*request)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no TrainPrior among {cmds:?}"));

    // The progress bar's spinner repaints for ever: a few frames, not `run`.
    h.state_mut().recorder().unwrap().feed([Event::ScoreProgress { run: 1, request, done: 3, total: 960 }]);
    h.run_steps(3);
    h.get_by_label("Cancel");
    let dim = cfg.model.latent_dim();
    let step = run(h.state()).unwrap().step;
    feed(&mut h, [Event::PriorTrained { run: 1, request, step, summary: Box::new(summary(dim)) }]);
    assert!(h.query_by_label("Cancel").is_none(), "the progress ends with the prior");
    h.get_by_label("Retrain latent prior");
    h.get_by_label("learned prior").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(cmds.iter().any(|c| matches!(c, Command::SamplePrior { n: 64, .. })), "{cmds:?}");
    h.get_by_label("New samples").click();
    h.run();
    assert!(
        sent(&mut h).iter().any(|c| matches!(c, Command::SamplePrior { .. })),
        "new samples keep the source"
    );
    h.get_by_label("N(0, I)").click();
    h.run();
    assert!(sent(&mut h).iter().any(|c| matches!(c, Command::Sample { .. })));

    // The map of the encoded test set with the prior's samples over it.
    feed(&mut h, [Event::Encoded { run: 1, encoding: encoding(&cfg, 200) }]);
    select_tab(&mut h, "Latent space");
    h.run();
    h.get_by_label_contains("Map of the test set");
    h.get_by_label("learned prior"); // the map's legend entry for the prior's samples
    assert_eq!(run(h.state()).unwrap().explore.prior.as_ref().unwrap().value.summary.latents.len(), 50 * dim);
}

#[test]
fn a_gan_run_has_no_latent_prior_section() {
    let mut h = recording();
    h.run();
    let cfg = preset("mnist_mlp_gan", ImageShape::new(1, 28, 28)).unwrap();
    feed(&mut h, trained(1, &cfg));
    select_tab(&mut h, "Samples");
    assert!(h.query_by_label("Train latent prior").is_none());
}
