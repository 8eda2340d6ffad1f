#![cfg(feature = "app")]
//! The exploring tabs (Samples, Latent space, Outliers) driven through the real app and the
//! real worker: widgets are found by label, background work is waited for with bounded frame
//! loops and a clear message.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use genlab::app::run_view::Status;

mod common;
use common::*;

#[test]
fn moving_a_latent_slider_changes_the_decoded_image() {
    let mut h = trained_and_paused(1);
    select_tab(&mut h, "Latent space");
    wait_for(&mut h, "the first live decode", 500, |a| {
        run(a).is_some_and(|r| r.explore.decoded.contains_key(&0))
    });
    let before =
        run(h.state()).and_then(|r| r.explore.decoded.get(&0)).map(|d| d.value.clone()).expect("decoded");

    h.get_by_role_and_label(Role::Slider, "z0").set_value_accesskit(2.5);
    h.get_by_role_and_label(Role::Slider, "z1").set_value_accesskit(-2.5);
    wait_for(&mut h, "a decode answering the slider move", 500, |a| {
        run(a)
            .and_then(|r| r.explore.decoded.get(&0))
            .is_some_and(|d| d.value.0 > before.0 && d.value.1.pixels != before.1.pixels)
    });
    let after =
        run(h.state()).and_then(|r| r.explore.decoded.get(&0)).map(|d| d.value.clone()).expect("decoded");
    assert_eq!(after.1.len(), 1, "one latent vector gives one image");
    assert_ne!(before.1.pixels, after.1.pixels, "moving z0 and z1 to ±2.5 did not change the image");

    // The encoder side: encode the test set, which brings the traversal grid and the map.
    h.get_by_label("Encode test set").click();
    wait_for(&mut h, "the test set's encoding and its traversal", 1500, |a| {
        run(a).is_some_and(|r| r.explore.encoded.is_some() && r.explore.decoded.contains_key(&1))
    });
    h.run();
    let r = run(h.state()).expect("a run");
    let traversal = r.explore.decoded[&1].value.clone();
    assert_eq!(traversal.1.len() % 9, 0, "traversal rows of 9 values");
    assert!(traversal.1.len() >= 9);

    // Centred on a test image instead of the prior's mean, the traversal changes.
    h.get_by_label("test image").click();
    h.run();
    h.get_by_role_and_label(Role::SpinButton, "#").set_value_accesskit(5.0);
    wait_for(&mut h, "the traversal around test image 5", 500, |a| {
        run(a).and_then(|r| r.explore.decoded.get(&1)).is_some_and(|d| d.value.0 > traversal.0)
    });
    let around = run(h.state()).map(|r| r.explore.decoded[&1].value.1.clone()).expect("traversal");
    assert_eq!(around.len(), traversal.1.len(), "the same dimensions and values");
    assert_ne!(
        around.pixels, traversal.1.pixels,
        "centred on a digit's μ, the traversal must differ from 0's"
    );

    // A → B: a strip of decodes between two test images' μ.
    h.get_by_role_and_label(Role::SpinButton, "Test image A").set_value_accesskit(3.0);
    h.get_by_role_and_label(Role::SpinButton, "Test image B").set_value_accesskit(7.0);
    h.get_by_role_and_label(Role::SpinButton, "Steps").set_value_accesskit(6.0);
    h.run();
    h.get_by_label("Interpolate").scroll_to_me();
    h.run();
    h.get_by_label("Interpolate").click();
    wait_for(&mut h, "the interpolation strip", 500, |a| {
        run(a).is_some_and(|r| r.explore.decoded.get(&2).is_some_and(|d| d.value.1.len() == 6))
    });
    h.get_by_label_contains("6 decodes from Test image 3 to Test image 7");
    let strip = run(h.state()).map(|r| r.explore.decoded[&2].value.1.clone()).expect("strip");
    let px = strip.shape.len();
    assert_ne!(strip.pixels[..px], strip.pixels[5 * px..], "the ends of the strip are different digits");

    // A different B asks again by itself once a strip is shown.
    h.get_by_role_and_label(Role::SpinButton, "Test image B").set_value_accesskit(9.0);
    wait_for(&mut h, "the strip to follow B", 500, |a| {
        run(a)
            .and_then(|r| r.explore.decoded.get(&2))
            .is_some_and(|d| d.value.1.pixels[5 * px..] != strip.pixels[5 * px..])
    });
}

#[test]
fn a_gan_interpolates_between_the_noise_of_two_seeds() {
    let mut h = trained_and_paused_with(harness(), Some("mnist_mlp_gan"), 1);
    assert_eq!(run(h.state()).map(|r| r.config.preset.as_str()), Some("mnist_mlp_gan"));
    select_tab(&mut h, "Latent space");
    h.get_by_label_contains("A GAN has no encoder");
    h.get_by_role_and_label(Role::SpinButton, "Seed A").set_value_accesskit(11.0);
    h.get_by_role_and_label(Role::SpinButton, "Seed B").set_value_accesskit(12.0);
    h.get_by_role_and_label(Role::SpinButton, "Steps").set_value_accesskit(4.0);
    h.run();
    h.get_by_label("Interpolate").click();
    wait_for(&mut h, "the GAN's interpolation strip", 500, |a| {
        run(a).is_some_and(|r| r.explore.decoded.get(&2).is_some_and(|d| d.value.1.len() == 4))
    });
    h.get_by_label_contains("4 decodes from Seed 11 to Seed 12");
    let strip = run(h.state()).map(|r| r.explore.decoded[&2].value.1.clone()).expect("strip");
    let px = strip.shape.len();
    assert_ne!(strip.pixels[..px], strip.pixels[3 * px..], "two seeds give two different images");
}

#[test]
fn history_slider_shows_an_older_grid_and_export_writes_a_png() {
    let mut h = trained_and_paused(2);
    select_tab(&mut h, "Samples");
    let steps = run(h.state()).expect("a run").explore.history.steps();
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    assert!(first < last);
    h.get_by_label_contains(&format!("after step {last} "));

    h.get_by_role_and_label(Role::Slider, "History step").set_value_accesskit(first as f64);
    h.run();
    h.get_by_label_contains(&format!("after step {first} ·"));

    // Two steps side by side: the newest beside the first.
    h.get_by_role_and_label(Role::Slider, "History step").set_value_accesskit(last as f64);
    h.get_by_label("Compare with step").click();
    h.run();
    h.get_by_role_and_label(Role::Slider, "Compare step").set_value_accesskit(first as f64);
    h.run();
    h.get_by_label("Compared grid");
    h.get_by_label("History grid");
    h.get_by_label(&format!("after step {first}"));
    h.get_by_label(&format!("after step {last}"));
    h.get_by_label("Compare with step").click();
    h.run();
    assert!(h.query_by_label("Compared grid").is_none(), "unticked, the comparison goes away");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grid.png");
    h.get_by_role_and_label(Role::TextInput, "Export path").click();
    h.run();
    h.get_by_role_and_label(Role::TextInput, "Export path").type_text(&path.display().to_string());
    h.run();
    h.get_by_label("Save grid PNG").click();
    wait_for(&mut h, "the PNG to be written", 500, |_| image::open(&path).is_ok());
    let img = image::open(&path).expect("a readable PNG");
    assert!(img.width() > 28 * 8 && img.height() > 28 * 8, "an 8×8 grid of 28-pixel digits");
    wait_for_label(&mut h, &format!("Saved {}", path.display()), 200);

    // A second export to the same path is refused, not silently overwritten.
    h.get_by_label("Save grid PNG").click();
    h.run();
    h.get_by_label_contains("exists already");

    // Allowed to overwrite, the history goes out as an animated GIF.
    h.get_by_label("Overwrite an existing file").click();
    h.run();
    h.get_by_label("Save history GIF").click();
    wait_for(&mut h, "the GIF to be written", 500, |_| {
        std::fs::read(&path).is_ok_and(|b| {
            b.starts_with(b"GIF8") && image::load_from_memory_with_format(&b, image::ImageFormat::Gif).is_ok()
        })
    });
}

#[test]
fn scoring_the_test_set_fills_the_histogram() {
    let mut h = trained_and_paused(1);
    select_tab(&mut h, "Outliers");
    h.get_by_label_contains("Bernoulli on grey levels");
    h.get_by_role_and_label(Role::Slider, "K").set_value_accesskit(2.0);
    h.run();
    h.get_by_label("Score test set").click();
    wait_for(&mut h, "the test set's scores", 3000, |a| run(a).is_some_and(|r| !r.explore.scored.is_empty()));
    h.run();
    let r = run(h.state()).expect("a run");
    let set = &r.explore.scored.values().last().expect("scores").value.set;
    assert_eq!(set.samples.len(), 2000, "every test image scored");
    assert_eq!(set.k, 2);
    assert!(set.anomaly_scores().iter().all(|v| v.is_finite()));
    h.get_by_label("Histogram of −log p(x) (IWAE, nats) (higher = less likely)");
    h.get_by_label("Most likely test images (lowest score)");
    h.get_by_label("Least likely test images (highest score)");
}

#[test]
fn rewind_goes_back_to_a_kept_step() {
    let mut h = harness();
    wait_for(&mut h, "the built-in dataset to load", 500, |a| a.dataset().is_some() && !a.is_loading());
    h.get_by_role_and_label(Role::SpinButton, "Rewind every").set_value_accesskit(20.0);
    h.run();
    assert_eq!(h.state().persisted.config.train.keep_every, 20, "the field sets the rewind interval");
    h.get_by_label("Train").click();
    wait_for(&mut h, "two rewind points and a few steps past them", 3000, |a| {
        run(a).is_some_and(|r| {
            r.rewind_points.len() >= 2 && r.rewind_points.last().is_some_and(|p| r.step > p + 5)
        })
    });
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the worker to confirm the pause", 500, |a| a.run_view.status() == Status::Paused);
    let before = run(h.state()).expect("a run").step;
    h.get_by_role_and_label(Role::Button, "Rewind").click();
    wait_for(&mut h, "the run to go back to a rewind point", 500, |a| {
        run(a).is_some_and(|r| r.step < before && r.rewind_points.contains(&r.step))
    });
    assert_eq!(h.state().run_view.status(), Status::Paused);
    let r = run(h.state()).expect("a run");
    let grids = r.explore.history.steps();
    assert!(
        !grids.is_empty() && grids.iter().all(|s| *s <= r.step),
        "grids after the rewind point: {grids:?}"
    );
}

#[test]
fn save_checkpoint_writes_a_folder_the_engine_loads() {
    let mut h = trained_and_paused(1);
    select_tab(&mut h, "Training");
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    h.get_by_label("Checkpoint folder").click();
    h.run();
    h.get_by_label("Checkpoint folder").type_text(ck.to_str().unwrap());
    h.run();
    h.get_by_label("Save checkpoint").click();
    for _ in 0..300 {
        h.step();
        if run(h.state()).is_some_and(|r| r.saved_checkpoint.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        run(h.state()).is_some_and(|r| r.saved_checkpoint.is_some()),
        "no checkpoint saved; errors: {:?}",
        h.state().errors()
    );
    let loaded = genlab::engine::checkpoint::load(&ck).expect("the saved checkpoint loads");
    let step = run(h.state()).map(|r| r.step).unwrap_or(0);
    assert_eq!(loaded.meta.step, step);
}
