#![cfg(feature = "app")]
//! The Latent space tab's Disentanglement section through the real app, loader and worker: a
//! model trained on the shapes data is scored on request, the scores appear with their
//! numbers, the matrix is drawn and the traversal rows name the factor each dimension captures.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use egui_kittest::kittest::{NodeT, Queryable};
use genlab::app::run_view::Status;

mod common;
use common::*;

/// The numbers in `text`, in order.
fn numbers(text: &str) -> Vec<f64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|s| s.parse().ok()).collect()
}

/// What a label shows (its value, else its accessible name).
fn text_of(node: &egui_kittest::Node<'_>) -> String {
    node.value().or_else(|| node.accesskit_node().label()).unwrap_or_default()
}

#[test]
fn a_shapes_run_is_scored_on_request_and_its_traversal_rows_are_labelled() {
    let mut h = harness_sized(1440.0, 1400.0);
    loaded(&mut h);
    h.get_by_label("Shapes").click();
    wait_for(&mut h, "the shapes data to load", 1500, |a| {
        !a.is_loading() && a.dataset().is_some_and(|d| d.factors.is_some())
    });
    h.get_by_label("Preset").click();
    h.run();
    h.get_by_label("shapes_vae").click();
    h.run();
    h.get_by_label("Train").click();
    // 400 steps (~5 s): enough for the code to carry position and scale.
    wait_for(&mut h, "400 training steps", 6000, |a| run(a).is_some_and(|r| r.step >= 400));
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the worker to confirm the pause", 500, |a| a.run_view.status() == Status::Paused);
    select_tab(&mut h, "Latent space");
    assert!(h.query_all_by_label_contains("no ground-truth factors").next().is_none());

    h.get_by_label("Compute scores").click();
    wait_for(&mut h, "the disentanglement scores", 3000, |a| {
        run(a).is_some_and(|r| r.explore.disentangled.is_some())
    });
    let report = run(h.state()).unwrap().explore.disentangled.clone().unwrap().value.1;
    assert_eq!(report.factor_names, ["shape", "scale", "rotation", "x", "y"]);
    // Each score is on screen with its number.
    for name in ["MIG", "FactorVAE", "DCI", "Active units"] {
        h.get_by_label(name);
    }
    h.get_by_label(&format!("{:.3}", report.mig));
    h.get_by_label(&format!("{:.3}", report.factor_vae.eval_accuracy));
    h.get_by_label(&format!("{:.3}", report.dci.disentanglement));
    h.get_by_label(&format!("{} of 10", report.active_units));
    let gaps = text_of(&h.get_by_label_contains("gap per factor: shape"));
    let gaps = numbers(&gaps);
    assert_eq!(gaps.len(), 5, "one gap per factor");
    let mean = gaps.iter().sum::<f64>() / 5.0;
    assert!((mean - report.mig).abs() < 0.01, "MIG {} is the mean of the gaps {gaps:?}", report.mig);
    h.get_by_label("Mutual information between dimensions and factors");
    h.get_by_label("Recompute scores");

    // The traversal, once the test set is encoded: each row names its dimension's factor.
    h.get_by_label("Encode test set").click();
    wait_for(&mut h, "the traversal", 3000, |a| {
        run(a).is_some_and(|r| r.explore.encoded.is_some() && r.explore.decoded.contains_key(&1))
    });
    h.run();
    let labelled: Vec<String> =
        h.query_all_by_label_contains("z").map(|n| text_of(&n)).filter(|l| l.contains(" · ")).collect();
    assert_eq!(labelled.len(), 10, "one label per traversal row: {labelled:?}");
    assert!(
        labelled.iter().any(|l| !l.ends_with("inactive")),
        "some dimension captures a factor: {labelled:?}"
    );
    for l in &labelled {
        let (dim, factor) = l.split_once(" · ").unwrap();
        let i: usize = dim.trim_start_matches('z').parse().unwrap();
        let expected = if report.captures[i].is_some() { report.captured_name(i) } else { "inactive" };
        assert_eq!(factor, expected, "row {l}");
    }
    eprintln!(
        "scores after {} steps: MIG {:.3}, rows {labelled:?}",
        run(h.state()).unwrap().step,
        report.mig
    );
}

/// A canned run of `preset` (a recording app: no worker), its data from `source`, on the
/// Latent space tab.
fn canned_run(
    source: genlab::engine::data::DataSource,
    preset_name: &str,
) -> egui_kittest::Harness<'static, genlab::app::App> {
    use common::canned::{feed, recording, trained};
    use genlab::engine::protocol::Event;
    let mut h = recording();
    h.run();
    let config =
        genlab::engine::config::preset(preset_name, genlab::engine::data::ImageShape::new(1, 28, 28))
            .unwrap();
    let mut events = trained(1, &config);
    if let Some(Event::Started { dataset, .. }) = events.first_mut() {
        dataset.source = source;
    }
    feed(&mut h, events);
    select_tab(&mut h, "Latent space");
    h
}

#[test]
fn data_without_factors_says_so_and_names_the_shapes_data() {
    let mut h = canned_run(genlab::engine::data::DataSource::Builtin, "mnist_vae");
    h.run();
    let note = text_of(&h.get_by_label_contains("no ground-truth factors"));
    assert!(note.contains("builtin:shapes"), "{note}");
    assert!(h.query_all_by_label("Compute scores").next().is_none());
}

#[test]
fn the_sweep_panel_sends_the_sweep_shows_progress_cancels_plots_and_exports_csv() {
    use common::canned::{feed, sent};
    use egui::accesskit::Role;
    use genlab::engine::data::{DataSource, SyntheticSet};
    use genlab::engine::protocol::{Command, Event};
    use genlab::engine::sweep::SweepRow;
    let mut h = canned_run(DataSource::Synthetic(SyntheticSet::Shapes), "mnist_vae");
    h.get_by_label("Compute scores");
    h.get_by_label("β sweep").click();
    h.run();
    h.get_by_role_and_label(Role::TextInput, "β values").set_text_value_accesskit("1, 4");
    h.run();
    sent(&mut h);
    h.get_by_label("Run sweep").click();
    h.run();
    let cmds = sent(&mut h);
    let Some(Command::Sweep { request, betas, seeds, max_steps, .. }) =
        cmds.iter().find(|c| matches!(c, Command::Sweep { .. }))
    else {
        panic!("Run sweep sends a Sweep: {cmds:?}")
    };
    assert_eq!((betas.as_slice(), seeds.as_slice()), ([1.0, 4.0].as_slice(), [0].as_slice()));
    let request = *request;
    let run_epochs =
        genlab::engine::config::preset("mnist_vae", genlab::engine::data::ImageShape::new(1, 28, 28))
            .unwrap()
            .train
            .epochs as u64;
    assert_eq!(*max_steps, Some(run_epochs * common::canned::STEPS_PER_EPOCH), "the run's epochs, in steps");

    feed(&mut h, [Event::ScoreProgress { run: 1, request, done: 5, total: 40 }]);
    h.get_by_label_contains("model 1 of 2");
    h.get_by_label("Cancel sweep").click();
    h.run();
    assert!(sent(&mut h).iter().any(|c| matches!(c, Command::CancelScore)));

    let row = |beta: f64, mig: f64| SweepRow {
        beta,
        seed: 0,
        steps: 20,
        mig,
        factor_vae: 0.5,
        dci_disentanglement: 0.3,
        dci_completeness: 0.3,
        recon: 60.0,
        kl: 10.0,
        active_units: 5,
        latent_dim: 10,
        seconds: 1.0,
        diverged: false,
    };
    feed(
        &mut h,
        [
            Event::SweepRow { run: 1, request, index: 0, total: 2, row: row(1.0, 0.04) },
            Event::SweepRow { run: 1, request, index: 1, total: 2, row: row(4.0, 0.14) },
            Event::SweepDone { run: 1, request, cancelled: false },
        ],
    );
    h.get_by_label_contains("2 of 2 models trained (done)");
    h.get_by_label("0.140 ± 0.000");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.csv");
    h.get_by_role_and_label(Role::TextInput, "Sweep CSV path")
        .set_text_value_accesskit(&path.display().to_string());
    h.run();
    h.get_by_label("Export CSV").click();
    wait_for_label(&mut h, "Saved", 500);
    let csv = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], genlab::engine::sweep::CSV_HEADER);
    assert!(lines[2].starts_with("4,0,20,0.140000,"), "{csv}");
}
