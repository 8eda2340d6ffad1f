#![cfg(feature = "app")]
//! Sample quality in the Training tab, from canned events: the curve, the best step, the cost,
//! the collapse warning, "rewind to the best" and the schedule setting.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use genlab::app::App;
use genlab::engine::config::preset;
use genlab::engine::data::ImageShape;
use genlab::engine::protocol::{Command, Event, FinishReason, QualityCost, QualitySchedule};
use genlab::engine::quality::metrics::Metrics;
use genlab::engine::quality::{ClassStats, QualityReport, Scored};

mod common;
use common::canned::{feed, recording, sent, trained};
use common::select_tab;

fn scored(fd: f64, recall: f64, covered: usize) -> Scored {
    let metrics = Metrics { fd, recall, coverage: recall, precision: 0.9, ..Metrics::default() };
    let classes = Some(ClassStats { histogram: vec![100; 10], confident: 0.8, covered });
    Scored { metrics, classes }
}

fn quality(run: u64, step: u64, fd: f64, recall: f64, covered: usize) -> Event {
    let report = QualityReport {
        n: 1000,
        features: "a classifier".into(),
        samples: scored(fd, recall, covered),
        floor: scored(2.0, 0.8, 10),
        ceiling: scored(900.0, 0.0, 0),
        seconds: 0.3,
    };
    let cost = QualityCost { seconds: 0.3, every: 5, share: 0.08, prepare_seconds: 2.0 };
    Event::Quality { run, step, report: Box::new(report), cost }
}

/// A paused GAN run with quality at steps 5 (the best) and 10 (collapsed), rewind points at both.
fn gan_with_quality() -> Harness<'static, App> {
    let mut h = recording();
    h.run();
    select_tab(&mut h, "Training");
    h.state_mut().persisted.quality = QualitySchedule::Auto;
    let config = preset("mnist_mlp_gan", ImageShape::new(1, 28, 28)).unwrap();
    let mut events = trained(1, &config);
    events.push(quality(1, 5, 20.0, 0.5, 10));
    events.push(quality(1, 10, 60.0, 0.05, 3));
    events.push(Event::RewindPoints { run: 1, steps: vec![5, 10] });
    feed(&mut h, events);
    h
}

#[test]
fn the_quality_curve_marks_the_best_step_and_its_cost() {
    let mut h = gan_with_quality();
    h.run();
    let run = h.state().run_view.current().unwrap();
    assert_eq!(run.quality.len(), 2);
    assert_eq!(run.best_quality().map(|q| q.step), Some(5));
    h.get_by_label_contains("Best: step 5, FD 20.00 (floor 2.00)");
    h.get_by_label_contains("quality every 5 steps, 300 ms each (1000 samples), 8.0% of training");
    // The collapse is flagged from recall and coverage, on the tab and as a notice.
    assert!(h.query_all_by_label_contains("the generator has probably collapsed").count() >= 2);
    assert!(h.query_all_by_label_contains("Warning: Run 1, step 10").count() >= 1, "a notice");
    // The run table shows the final quality once the run has ended.
    feed(&mut h, [Event::Finished { run: 1, step: 10, reason: FinishReason::Completed }]);
    h.get_by_label_contains("FD 60.0, recall 0.05, coverage 0.05 (step 10)");
}

#[test]
fn rewind_to_the_best_is_one_click() {
    let mut h = gan_with_quality();
    sent(&mut h);
    h.get_by_label("Rewind to best (step 5)").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::Rewind { step: 5 }]), "{cmds:?}");
    feed(&mut h, [Event::Rewound { run: 1, step: 5 }]);
    let run = h.state().run_view.current().unwrap();
    assert_eq!(run.quality.iter().map(|q| q.step).collect::<Vec<_>>(), [5], "later quality is void");
}

#[test]
fn the_schedule_setting_reaches_the_worker() {
    let mut h = gan_with_quality();
    sent(&mut h);
    h.get_by_label("Measure").click();
    h.run();
    h.get_by_label("Every N steps").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::SetQuality(QualitySchedule::Every(500))]), "{cmds:?}");
    assert_eq!(h.state().persisted.quality, QualitySchedule::Every(500));
    h.get_by_label("Measure now").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(matches!(cmds[..], [Command::EvaluateQuality]), "{cmds:?}");
}

/// The Samples tab's memorisation view: the button asks the worker, the answer shows the share
/// of samples closer than held-out images and the pairs.
#[test]
fn nearest_training_images_are_one_click_away() {
    use common::canned::images;
    use genlab::engine::protocol::NearestView;
    let mut h = recording();
    h.run();
    let config = preset("mnist_vae", ImageShape::new(1, 28, 28)).unwrap();
    feed(&mut h, trained(1, &config));
    select_tab(&mut h, "Samples");
    sent(&mut h);
    h.get_by_label("Find nearest training images").scroll_to_me();
    h.run();
    h.get_by_label("Find nearest training images").click();
    h.run();
    assert!(sent(&mut h).iter().any(|c| matches!(c, Command::Nearest)));
    let view = NearestView {
        samples: images(&config, 4),
        train: images(&config, 4),
        distances: vec![0.5, 1.0, 2.0, 3.0],
        train_indices: vec![1, 2, 3, 4],
        measured: 1000,
        share_closer: 0.42,
        test_p5: 4.5,
        test_median: 12.0,
        sample_median: 9.0,
    };
    feed(&mut h, [Event::Nearest { run: 1, step: 630, view: Box::new(view) }]);
    h.run();
    h.get_by_label_contains("Step 630: 42.0% of 1000 samples are closer to a training image");
    // The section's heading and the grid of pairs.
    assert!(h.get_all_by_label("Nearest training images").count() >= 2);
}
