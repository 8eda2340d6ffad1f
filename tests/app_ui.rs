#![cfg(feature = "app")]
//! The real app driven headlessly with egui_kittest: widgets are found by their labels, as a
//! user (or a screen reader) finds them. Background work (loader, worker) is waited for by
//! stepping frames with a bound and a clear failure message; tests that need neither run a
//! recording app fed canned events.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::time::Duration;

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use genlab::app::run_view::Status;
use genlab::app::App;
use genlab::engine::models::LossKey;

mod common;
use common::canned::{feed, recording, sent, started};
use common::*;

fn is_disabled(h: &Harness<'_, App>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

#[test]
fn builtin_dataset_is_shown_with_its_counts() {
    let mut h = harness();
    loaded(&mut h);
    h.get_by_label("10000 images · 8000 train / 2000 test");
    h.get_by_label("28×28 pixels, 1 channel (grey)");
    assert_eq!(h.state().dataset().map(|d| d.len()), Some(10_000));
    assert!(!is_disabled(&h, "Train"), "Train should be enabled with valid defaults");
    // Many frames do not widen the side panel (full-width widgets must not round up).
    let right = h.get_by_label("Load").rect().right();
    h.run_steps(60);
    assert_eq!(h.get_by_label("Load").rect().right(), right, "the side panel grew by itself");
    // The built-in data has its own split: the slider is off.
    let slider = h.get_by_role_and_label(egui::accesskit::Role::Slider, "Test share");
    assert!(slider.accesskit_node().is_disabled());
}

#[test]
fn train_produces_plot_points_and_pause_stops_steps() {
    let mut h = harness();
    loaded(&mut h);
    h.get_by_label("Epochs").set_value_accesskit(3.0);
    h.run();
    assert_eq!(h.state().persisted.config.train.epochs, 3);
    h.get_by_label("Train").click();
    wait_for(&mut h, "loss points after clicking Train", 1500, |a| a.run_view.steps() >= 5);
    assert_eq!(h.state().run_view.status(), Status::Training);
    h.run(); // the plot, legend and run list pass the accessibility check
    let run = h.state().run_view.current().expect("a run");
    assert_eq!(run.series.keys, [LossKey::Loss, LossKey::Recon, LossKey::Kl]);
    assert!(run.series.values[0].iter().all(|v| v.is_finite()));

    h.get_by_label("Pause").click();
    wait_for(&mut h, "the worker to confirm the pause", 500, |a| a.run_view.status() == Status::Paused);
    let steps = h.state().run_view.steps();
    for _ in 0..15 {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(h.state().run_view.steps(), steps, "steps were taken while paused");

    // Step takes exactly one batch.
    h.get_by_label("Step").click();
    wait_for(&mut h, "one more step", 500, |a| a.run_view.steps() == steps + 1);
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the run to stop", 500, |a| a.run_view.active().is_none());
    h.run();
    assert!(!is_disabled(&h, "Train"));
}

#[test]
fn zero_width_shows_its_message_and_disables_train() {
    let mut h = recording();
    h.run();
    h.get_by_label("Layer 1 width").set_value_accesskit(0.0);
    h.run();
    assert_eq!(h.state().persisted.config.model.net().hidden[0], 0);
    h.get_by_label_contains("layer 1 has width 0");
    assert!(is_disabled(&h, "Train"));
    h.get_by_label("Train").click();
    h.run();
    assert_eq!(h.state().run_view.status(), Status::Idle);
    assert!(sent(&mut h).is_empty(), "a disabled Train asks nothing of the worker");

    // A batch larger than the training split is refused too.
    h.get_by_label("Layer 1 width").set_value_accesskit(64.0);
    h.get_by_label("Batch size").set_value_accesskit(9000.0);
    h.run();
    h.get_by_label_contains("batch size 9000 is larger than the 8000 training images");
    assert!(is_disabled(&h, "Train"));
}

#[test]
fn malformed_file_shows_its_error_and_keeps_the_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken-images.idx");
    std::fs::write(&path, b"\x00\x00\x08\x03this is not an IDX file at all").expect("write");

    let mut h = harness();
    loaded(&mut h);
    h.get_by_label("Path").click();
    h.run();
    h.get_by_label("Path").type_text(&path.display().to_string());
    h.run();
    h.get_by_label("Load").click();
    wait_for(&mut h, "the load to fail", 500, |a| !a.is_loading() && !a.errors().is_empty());
    h.run();
    let errors = h.state().errors();
    assert!(errors[0].contains("broken-images.idx"), "the error names the file: {errors:?}");
    h.get_by_label_contains("Could not load the dataset");
    assert_eq!(h.state().dataset().map(|d| d.len()), Some(10_000), "the previous dataset stays");
    h.get_by_label("10000 images · 8000 train / 2000 test");

    h.get_by_label("Dismiss").click();
    h.run();
    assert!(h.state().errors().is_empty());
}

#[test]
fn without_a_display_the_app_says_so_and_exits() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genlab"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .expect("run genlab");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("genlab needs a display"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The divergence offer sends the lower learning rate, then Resume (canned events: no worker).
#[test]
fn a_diverged_run_offers_to_resume_with_a_lower_learning_rate() {
    use genlab::engine::config::RunConfig;
    use genlab::engine::protocol::{Command, Event};

    let mut h = recording();
    h.run();
    // The worker's report of a divergence, as if it had happened.
    feed(
        &mut h,
        [
            started(77, &RunConfig::default()),
            Event::Diverged { run: 77, step: 12, message: "the loss became NaN".into() },
            Event::Paused { run: 77, step: 12 },
        ],
    );
    h.get_by_label_contains("Diverged at step 12: the loss became NaN");
    h.get_by_label("Resume with lr ÷ 10").click();
    h.run();
    assert!((h.state().persisted.config.optim.lr - 1e-4).abs() < 1e-12);
    let cmds = sent(&mut h);
    assert!(
        matches!(&cmds[..], [Command::SetLearningRate(lr), Command::Resume] if (lr - 1e-4).abs() < 1e-12),
        "the lower rate, then resume: {cmds:?}"
    );
}

/// A run that really diverges: learning rate 1 (the most the field allows) on the default VAE
/// gives a NaN loss at step 4 (measured: 10, 3 and 1 all diverge at step 4; 0.3 trains 80
/// steps without). "Resume with lr ÷ 10" resumes that run at 0.1 from the restored weights,
/// and it trains on with finite losses (measured: 215 nats at step 44).
#[test]
fn a_run_that_really_diverges_resumes_at_the_lower_rate() {
    let mut h = harness();
    loaded(&mut h);
    h.state_mut().persisted.config.optim.lr = 1.0;
    h.get_by_label("Train").click();
    wait_for(&mut h, "the run to diverge", 1500, |a| {
        run(a).is_some_and(|r| r.diverged.is_some()) && a.run_view.status() == Status::Paused
    });
    let (id, step) = {
        let r = run(h.state()).expect("a run");
        (r.id, r.step)
    };
    assert!((1..=10).contains(&step), "diverged at step {step}");
    h.get_by_label_contains(&format!("Diverged at step {step}:"));
    h.get_by_label("Resume with lr ÷ 10").click();
    wait_for(&mut h, "the same run to train on past the divergence", 1500, |a| {
        run(a).is_some_and(|r| r.step >= step + 20)
    });
    assert!((h.state().persisted.config.optim.lr - 0.1).abs() < 1e-12);
    let r = run(h.state()).expect("a run");
    assert_eq!(r.id, id, "the diverged run was resumed, not replaced");
    assert!(r.diverged.is_none(), "the divergence notice went away: {:?}", r.diverged);
    assert!((r.learning_rate - 0.1).abs() < 1e-12, "the worker trains at {}", r.learning_rate);
    let losses = &r.series.values[0];
    assert!(losses.len() as u64 >= step + 20);
    let at = step as usize - 1; // the series holds step 1 at index 0
    assert!(losses[..at].iter().all(|l| l.is_finite()) && !losses[at].is_finite(), "{losses:?}");
    assert!(losses[step as usize..].iter().all(|l| l.is_finite()), "{:?}", &losses[step as usize..]);
    assert!(h.query_by_label("Resume with lr ÷ 10").is_none(), "the offer went away");
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the worker to confirm the pause", 500, |a| a.run_view.status() == Status::Paused);
}

#[test]
fn choosing_the_gan_preset_shows_generator_and_discriminator() {
    let mut h = recording();
    h.run();
    h.get_by_label("Preset").click();
    h.run();
    h.get_by_label("mnist_mlp_gan").click();
    h.run();
    let cfg = &h.state().persisted.config;
    assert_eq!(cfg.preset, "mnist_mlp_gan");
    assert_eq!(cfg.model.family(), genlab::engine::models::Family::Gan);
    h.get_by_label("Generator G");
    h.get_by_label("Discriminator D");
    h.get_by_label("D layer 2 width");
    assert!(!is_disabled(&h, "Train"));
}

#[test]
fn a_frame_with_a_long_run_stays_cheap() {
    use genlab::engine::config::RunConfig;
    use genlab::engine::data::{DataSource, ImageShape};
    use genlab::engine::models::Losses;
    use genlab::engine::protocol::{DatasetInfo, Event, StepMetrics};

    let mut h = recording();
    h.run();
    let now = std::time::Instant::now();
    let n = 100_000u64;
    let started = Event::Started {
        run: 5,
        config: Box::new(RunConfig::default()),
        capabilities: Box::new(RunConfig::default().model.capabilities()),
        param_count: 1,
        dataset: DatasetInfo {
            name: "d".into(),
            source: DataSource::Builtin,
            shape: ImageShape::new(1, 28, 28),
            train: 8000,
            test: 2000,
        },
        steps_per_epoch: 1000,
        total_steps: n,
        start_step: 0,
    };
    let steps = (1..=n)
        .map(|s| StepMetrics {
            step: s,
            epoch: (s / 1000) as usize,
            losses: Losses::of(&[
                (LossKey::Loss, 100.0 + 1e4 / s as f64 + (s as f64).sin()),
                (LossKey::Recon, 90.0 + (s as f64 * 0.1).cos()),
                (LossKey::Kl, 10.0),
            ]),
            learning_rate: 1e-3,
            images_per_sec: 1000.0,
        })
        .collect();
    let rv = &mut h.state_mut().run_view;
    rv.apply(started, now);
    rv.apply(Event::Metrics { run: 5, steps }, now);
    h.run(); // the first frame smooths everything once
    let t0 = std::time::Instant::now();
    let frames = 10;
    h.run_steps(frames);
    let per_frame = t0.elapsed() / frames as u32;
    eprintln!("frame with 3 × {n} points: {per_frame:?}");
    // Generous for a loaded 2-core machine; drawing is decimated to a few thousand points.
    assert!(per_frame < Duration::from_millis(150), "a frame took {per_frame:?}");
}

/// "Resize to" and "Channels" reach the load: a folder of grey PNGs of odd sizes loads as RGB
/// at the chosen width × height, and dcgan64 (which needs sides divisible by 16) then fits it.
#[test]
fn resize_and_channels_reach_the_folder_load() {
    use egui::accesskit::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (w, h)) in [(37u32, 53u32), (120, 71), (64, 64), (9, 200)].into_iter().enumerate() {
        image::GrayImage::from_pixel(w, h, image::Luma([40 * i as u8]))
            .save(dir.path().join(format!("{i}.png")))
            .expect("write a PNG");
    }
    let mut h = harness();
    loaded(&mut h);
    h.get_by_label("Resize to").click();
    h.run();
    h.get_by_role_and_label(Role::SpinButton, "Width").set_value_accesskit(48.0);
    h.run();
    h.get_by_role_and_label(Role::SpinButton, "Height").set_value_accesskit(32.0);
    h.run();
    h.get_by_role_and_label(Role::ComboBox, "Channels").click();
    h.run();
    h.get_by_label("3 (RGB)").click();
    h.run();
    h.get_by_label("Path").click();
    h.run();
    h.get_by_label("Path").type_text(&dir.path().display().to_string());
    h.run();
    h.get_by_label("Load").click();
    wait_for(&mut h, "the folder to load", 500, |a| {
        !a.is_loading() && a.dataset().is_some_and(|d| d.len() == 4)
    });
    let shape = h.state().dataset().map(|d| d.shape);
    assert_eq!(shape, Some(genlab::engine::data::ImageShape::new(3, 32, 48)), "{:?}", h.state().errors());
    h.get_by_label("48×32 pixels, 3 channels (RGB)");

    h.get_by_label("Preset").click();
    h.run();
    h.get_by_label("dcgan64").click();
    h.run();
    assert_eq!(h.state().persisted.config.model.input(), shape.unwrap());
    // The network can be built (Train waits for more images than the 4 here: batch 128).
    assert!(h.query_by_label("cannot be built").is_none(), "dcgan64 fits 32×48 images");
    h.get_by_label_contains(" parameters");
}
