#![cfg(feature = "app")]
//! The views of a model with a sampler, on a real diffusion run of the built-in digits: the
//! denoising trajectory of the fixed noise appears in the Samples tab, the forward process
//! noises a test image, the sampler settings change how the worker samples, and the Training
//! tab shows the loss per timestep bucket. A VAE run shows none of it.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use genlab::engine::config::preset;
use genlab::engine::data::ImageShape;
use genlab::engine::models::ModelConfig;

mod common;
use common::canned::{feed, recording, trained};
use common::{harness_sized, run, select_tab, trained_and_paused_with, wait_for};

#[test]
fn the_denoising_trajectory_and_forward_process_appear_for_a_diffusion_run() {
    // Paused after the first fixed-noise grid: a few steps of the untrained U-Net are enough
    // to show that the views are computed by the worker and drawn.
    let mut h = trained_and_paused_with(harness_sized(1440.0, 1400.0), Some("mnist_ddpm"), 1);
    assert!(run(h.state()).unwrap().capabilities.sampler);
    select_tab(&mut h, "Samples");
    h.get_by_label("Denoising trajectory");
    wait_for(&mut h, "the denoising trajectory", 3000, |a| {
        run(a).is_some_and(|r| r.explore.sampler.trajectory.is_some())
    });
    let t = run(h.state()).unwrap().explore.sampler.trajectory.clone().unwrap().value.trajectory;
    // 4 noise rows, 10 of the preset's 100 DDPM steps, from noise (t near 1) to data (t = 0).
    assert_eq!((t.times.len(), t.xt[0].len(), t.x0[0].len()), (10, 4, 4));
    assert!(t.times.windows(2).all(|w| w[0] > w[1]), "{:?}", t.times);
    h.get_by_label("Save trajectory GIF");
    h.get_by_label_contains("t per column");
    // The grid's cost is measured and the rule that spaces the grids is said.
    let seconds = run(h.state()).unwrap().grid_seconds.unwrap();
    assert!(seconds > 0.1, "a 100-step sampler's grid took {seconds} s");
    h.get_by_label_contains(&format!("A grid takes {seconds:.2} s to draw"));

    // The forward process of the first test image: at t = 1 it is (almost) pure noise.
    h.get_by_role_and_label(Role::Slider, "t").set_value_accesskit(1.0);
    h.run();
    wait_for(&mut h, "the noised test image at t = 1", 500, |a| {
        run(a).is_some_and(|r| r.explore.sampler.noised.as_ref().is_some_and(|n| n.value.t == 1.0))
    });
    let n = run(h.state()).unwrap().explore.sampler.noised.clone().unwrap().value;
    let diff: f64 =
        n.original.pixels.iter().zip(&n.noised.pixels).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum();
    assert!(
        diff / n.noised.pixels.len() as f64 > 40.0,
        "x_1 should be noise, mean |x_1 − x_0| = {}",
        diff / 784.0
    );
    h.get_by_label_contains("x₀ and x_t at t = 1.000");

    // Fewer sampler steps, applied live: the next trajectory records them all.
    h.get_by_role_and_label(Role::Slider, "Steps").set_value_accesskit(5.0);
    h.run();
    let apply = h.get_by_label("Apply sampler");
    assert!(!apply.accesskit_node().is_disabled(), "the edited steps enable Apply");
    apply.click_accesskit();
    wait_for(&mut h, "the worker to take 5 sampler steps", 3000, |a| {
        run(a).is_some_and(|r| matches!(&r.config.model, ModelConfig::Diffusion(d) if d.sample_steps == 5))
    });
    let steps = match &run(h.state()).unwrap().config.model {
        ModelConfig::Diffusion(d) => d.sample_steps,
        _ => 0,
    };
    assert_eq!(steps, 5);
    h.get_by_label("Draw trajectory").click_accesskit();
    wait_for(&mut h, "a trajectory of the 5 steps", 1500, |a| {
        run(a).is_some_and(|r| {
            r.explore.sampler.trajectory.as_ref().is_some_and(|t| t.value.trajectory.times.len() == 5)
        })
    });

    select_tab(&mut h, "Training");
    h.get_by_label("Loss per timestep");
    h.get_by_label("Loss per timestep bucket");
}

#[test]
fn a_vae_run_has_no_sampler_views() {
    let mut h = recording();
    h.run();
    let cfg = preset("mnist_vae", ImageShape::new(1, 28, 28)).unwrap();
    feed(&mut h, trained(1, &cfg));
    select_tab(&mut h, "Samples");
    assert!(h.query_by_label("Denoising trajectory").is_none());
    assert!(h.query_by_label("Forward process").is_none());
    select_tab(&mut h, "Training");
    assert!(h.query_by_label("Loss per timestep").is_none());
}

/// A conditional diffusion run's Sampler section has a guidance slider, applied with the other
/// settings; an unconditional one's has none. The Latent tab shows no slider per pixel of a
/// diffusion model's image-sized noise (the VAE's sliders stay), and the Samples tab no
/// temperature.
#[test]
fn guidance_for_a_conditional_diffusion_run_and_no_noise_sliders() {
    use common::canned::sent;
    use genlab::engine::protocol::Command;

    let mut h = recording();
    h.run();
    let cfg = preset("mnist_cddpm", ImageShape::new(1, 28, 28)).unwrap();
    feed(&mut h, trained(1, &cfg));
    select_tab(&mut h, "Samples");
    assert!(h.query_by_label("Temperature").is_none(), "a sampler's noise has no temperature");
    h.get_by_role_and_label(Role::Slider, "Guidance").set_value_accesskit(3.5);
    h.run();
    sent(&mut h);
    h.get_by_label("Apply sampler").click_accesskit();
    h.run();
    let applied = sent(&mut h).into_iter().find_map(|c| match c {
        Command::SetSampler(s) => Some(s),
        _ => None,
    });
    assert_eq!(applied.map(|s| s.guidance), Some(3.5), "Apply sends the guidance scale");
    h.get_by_label_contains("guidance 2.0");

    select_tab(&mut h, "Latent space");
    let sliders = h.query_all_by_role(Role::Slider).count();
    assert!(sliders < 10, "{sliders} sliders: one per pixel of noise?");
    assert!(h.query_all_by_label("z0").next().is_none() && h.query_all_by_label("z783").next().is_none());
    assert!(h.query_by_label("Reset to 0").is_none());
    h.get_by_label("Random");
    h.get_by_label_contains("has no sliders");

    for (run, name) in [(2, "mnist_ddpm"), (3, "mnist_vae")] {
        let cfg = preset(name, ImageShape::new(1, 28, 28)).unwrap();
        feed(&mut h, trained(run, &cfg));
        select_tab(&mut h, "Samples");
        assert!(h.query_by_label("Guidance").is_none(), "{name}: no guidance without classes");
    }
    assert!(h.query_all_by_label("Temperature").next().is_some(), "the VAE's temperature");
    select_tab(&mut h, "Latent space");
    assert!(h.query_all_by_label("z0").next().is_some(), "the VAE's sliders");
}

/// The Model panel: switching an MLP configuration's family to Diffusion gives a valid (conv)
/// configuration, and its noise size, the image's, is no setting there.
#[test]
fn switching_the_family_to_diffusion_gives_a_valid_configuration() {
    let mut h = recording();
    h.run();
    h.get_by_label("Preset").click();
    h.run();
    h.get_by_label("mnist_vae").click();
    h.run();
    assert!(h.query_by_label("Latent dim").is_some());
    h.get_by_role_and_label(Role::ComboBox, "Family").click();
    h.run();
    h.get_by_label("Diffusion").click();
    h.run();
    let cfg = h.state().persisted.config.model.clone();
    assert!(matches!(cfg, ModelConfig::Diffusion(_)), "{cfg:?}");
    cfg.validate().unwrap();
    assert!(h.query_by_label("Noise dim").is_none() && h.query_by_label("Latent dim").is_none());
    assert!(h.query_by_label_contains("cannot be built").is_none(), "the panel counts its parameters");
}
