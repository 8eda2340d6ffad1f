#![cfg(feature = "app")]
//! The app's views of a conditional run, from canned events: the class × noise grid appears
//! (and the fixed-noise history scrubs it), the class picker asks for samples of one class,
//! interpolation and "same style" ask the worker, and the conditioning table shows per-class
//! agreement. An unconditional run shows none of it.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use genlab::app::App;
use genlab::engine::config::{preset, RunConfig};
use genlab::engine::data::ImageShape;
use genlab::engine::images::ImageBatch;
use genlab::engine::protocol::{Command, Event};
use genlab::engine::quality::Conditioning;

mod common;
use common::canned::{feed, images, recording, sent, trained, GRID_STEPS};
use common::select_tab;

fn config(name: &str) -> RunConfig {
    preset(name, ImageShape::new(1, 28, 28)).unwrap()
}

/// A class grid of `classes` columns and 8 rows, every pixel `value`.
fn class_grid(config: &RunConfig, classes: usize, value: u8) -> ImageBatch {
    let shape = config.model.input();
    ImageBatch { shape, pixels: vec![value; 8 * classes * shape.len()] }
}

/// A paused run of `name` with a class grid beside each fixed-noise grid (when conditional).
fn conditional_run(name: &str) -> Harness<'static, App> {
    let mut h = recording();
    h.run();
    let cfg = config(name);
    let k = cfg.model.classes();
    let mut events = trained(1, &cfg);
    if k > 0 {
        // After the fixed-noise grids, before the pause, as the worker sends them.
        let at = events.iter().position(|e| matches!(e, Event::Samples { .. })).unwrap();
        for (i, step) in GRID_STEPS.into_iter().enumerate() {
            let images = class_grid(&cfg, k, 40 * (i as u8 + 1));
            events.insert(at + i, Event::ClassGrid { run: 1, step, classes: k, images });
        }
    }
    feed(&mut h, events);
    h
}

#[test]
fn the_class_grid_appears_for_a_conditional_run_and_the_history_scrubs_it() {
    let mut h = conditional_run("mnist_cvae");
    select_tab(&mut h, "Samples");
    let [first, last] = GRID_STEPS;
    h.get_by_label("Class grid");
    h.get_by_label_contains(&format!("after step {last}: one column per class"));
    h.get_by_role_and_label(Role::Slider, "History step").set_value_accesskit(first as f64);
    h.run();
    h.get_by_label_contains(&format!("after step {first}: one column per class"));
    assert_eq!(h.state().run_view.current().unwrap().explore.class_history.len(), 2);

    let mut h = conditional_run("mnist_vae");
    select_tab(&mut h, "Samples");
    assert!(h.query_by_label("Class grid").is_none(), "an unconditional run has no class grid");
    assert!(h.query_by_label("Interpolate classes").is_none());
}

#[test]
fn the_class_picker_interpolation_and_same_style_ask_the_worker() {
    let mut h = conditional_run("mnist_cvae");
    select_tab(&mut h, "Samples");
    sent(&mut h);
    h.get_by_role_and_label(Role::ComboBox, "Class").click();
    h.run();
    h.get_by_label("7").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(cmds.iter().any(|c| matches!(c, Command::SampleClass { class: Some(7), n: 64, .. })), "{cmds:?}");
    h.get_by_label("New samples").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::SampleClass { class: Some(7), .. }]), "{cmds:?}");

    h.get_by_label("Interpolate classes").scroll_to_me();
    h.run();
    h.get_by_label("Interpolate classes").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::ClassInterpolate { a: 1, b: 7, steps: 8, .. }]), "{cmds:?}");
    let cfg = config("mnist_cvae");
    feed(
        &mut h,
        [Event::ClassInterpolated { run: 1, step: 10, a: 1, b: 7, steps: 8, images: images(&cfg, 32) }],
    );
    h.get_by_label("Class interpolation");

    h.get_by_label("Restyle test images").scroll_to_me();
    h.run();
    h.get_by_label("Restyle test images").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::SameStyle { indices }] = &cmds[..] else { panic!("{cmds:?}") };
    assert_eq!(indices.len(), 4);
    let event = Event::SameStyle {
        run: 1,
        step: 10,
        indices: indices.clone(),
        originals: images(&cfg, 4),
        classes: 10,
        images: images(&cfg, 40),
    };
    feed(&mut h, [event]);
    h.get_by_label("Same style");

    // The sliders of the latent space are decoded under the picked class.
    select_tab(&mut h, "Latent space");
    sent(&mut h);
    h.get_by_role_and_label(Role::ComboBox, "Class").click();
    h.run();
    // The popup's option (the map's label filter has a "3" check box too).
    h.get_by_role_and_label(Role::Button, "3").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(cmds.iter().any(|c| matches!(c, Command::DecodeClass { class: Some(3), .. })), "{cmds:?}");
}

#[test]
fn the_conditioning_table_shows_per_class_agreement() {
    let mut h = conditional_run("mnist_cvae");
    select_tab(&mut h, "Training");
    sent(&mut h);
    h.get_by_label("Measure conditioning").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::EvaluateConditioning]), "{cmds:?}");
    let mut agreement = vec![0.97; 10];
    agreement[4] = 0.85;
    let report = Conditioning { per_class_n: 100, agreement, confusion: vec![vec![0; 10]; 10], seconds: 0.5 };
    feed(&mut h, [Event::Conditioning { run: 1, step: 10, report: Box::new(report) }]);
    h.get_by_label_contains("step 10: 95.8% agree on average, worst class 85.0% (100 samples a class)");
    h.get_by_label("85%");
}
