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
