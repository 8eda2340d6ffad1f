#![cfg(feature = "app")]
//! What a click asks of the worker: the app records its commands instead of sending them to a
//! thread, and canned events put it into a running state, so nothing trains and nothing waits.

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use genlab::app::run_view::Status;
use genlab::app::App;
use genlab::engine::config::{preset, presets};
use genlab::engine::data::SplitKind;
use genlab::engine::models::Family;
use genlab::engine::protocol::{Command, DataSpec, Event, ScoreTarget};

mod common;
use common::canned::{feed, recording, scored_set, sent, started, trained};
use common::select_tab;

fn is_disabled(h: &Harness<'_, App>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

fn choose_preset(h: &mut Harness<'_, App>, name: &str) {
    h.get_by_label("Preset").click();
    h.run();
    h.get_by_label(name).click();
    h.run();
}

/// Puts the app into a live run of its current configuration.
fn start_run(h: &mut Harness<'_, App>) {
    let config = h.state().persisted.config.clone();
    feed(h, [started(1, &config)]);
    assert_eq!(h.state().run_view.status(), Status::Training);
}

#[test]
fn train_sends_start_with_the_panels_settings() {
    let mut h = recording();
    h.run();
    h.get_by_role_and_label(Role::SpinButton, "Latent dim").set_value_accesskit(7.0);
    h.run();
    h.get_by_label("Train").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::Start { config, data, checkpoint, paused }] = &cmds[..] else {
        panic!("Train sends one Start: {cmds:?}");
    };
    assert_eq!(config.model.latent_dim(), 7, "the panel's latent size travels with the run");
    assert_eq!(**config, h.state().persisted.config);
    assert!(matches!(data, DataSpec::Loaded(d) if d.len() == 10_000), "the loaded data goes with it");
    assert!(checkpoint.is_none() && !paused);
    assert_eq!(h.state().run_view.status(), Status::Starting);
    assert!(is_disabled(&h, "Train"), "no second start while the first is under way");
}

/// The Kernels picker's choice travels with the run, and a preset keeps it (a machine's
/// choice, like the threads).
#[test]
fn the_kernel_path_chosen_travels_with_the_run() {
    use genlab::engine::kernels::KernelPath;
    let mut h = recording();
    h.run();
    // The picker sits at the foot of the settings: scroll it into view first.
    h.get_by_role_and_label(Role::ComboBox, "Kernels").scroll_to_me();
    h.run();
    h.get_by_role_and_label(Role::ComboBox, "Kernels").click();
    h.run();
    h.get_by_label("reference").click();
    h.run();
    choose_preset(&mut h, "mnist_mlp_gan");
    h.get_by_label("Train").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::Start { config, .. }] = &cmds[..] else { panic!("Train sends one Start: {cmds:?}") };
    assert_eq!(config.train.kernels, KernelPath::Reference);
    assert_eq!(config.preset, "mnist_mlp_gan");
}

#[test]
fn train_after_choosing_a_preset_sends_that_preset() {
    let mut h = recording();
    h.run();
    choose_preset(&mut h, "mnist_dcgan");
    h.get_by_label("Train").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::Start { config, .. }] = &cmds[..] else { panic!("Train sends one Start: {cmds:?}") };
    let shape = h.state().dataset().map(|d| d.shape).expect("data");
    let expected = preset("mnist_dcgan", shape).expect("the preset");
    assert_eq!(config.preset, "mnist_dcgan");
    assert_eq!(config.model.family(), Family::Gan);
    assert_eq!(config.model, expected.model);
    assert_eq!(config.optim, expected.optim);
}

/// The DiffAugment policy (shown once DiffAugment is on) and G's own activation, chosen in
/// the panel, reach the run's configuration.
#[test]
fn a_gans_augment_policy_and_g_activation_travel_with_the_run() {
    use genlab::engine::models::gan::AugmentPolicy;
    use genlab::engine::models::{Activation, ModelConfig};
    let mut h = recording();
    h.run();
    choose_preset(&mut h, "mnist_dcgan");
    assert!(h.query_by_label("augment").is_none(), "the policy shows only with DiffAugment on");
    h.get_by_label("DiffAugment").scroll_to_me();
    h.run();
    h.get_by_label("DiffAugment").click();
    h.run();
    for (combo, choice) in [("augment", "translation"), ("G activation", "ReLU")] {
        h.get_by_label(combo).scroll_to_me();
        h.run();
        h.get_by_label(combo).click();
        h.run();
        h.get_by_label(choice).click();
        h.run();
    }
    h.get_by_label("Train").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::Start { config, .. }] = &cmds[..] else { panic!("Train sends one Start: {cmds:?}") };
    let ModelConfig::Gan(g) = &config.model else { panic!("not a GAN") };
    assert!(g.diff_augment);
    assert_eq!(g.augment_policy, AugmentPolicy::Translation);
    assert_eq!(g.g_activation, Some(Activation::Relu));
    assert_eq!(g.net.activation, Activation::LeakyRelu, "D keeps its activation");
}

#[test]
fn a_gans_diff_augment_and_minibatch_std_toggles_travel_with_the_run() {
    use genlab::engine::models::ModelConfig;
    let mut h = recording();
    h.run();
    choose_preset(&mut h, "mnist_dcgan");
    let gan = |h: &Harness<'_, App>| match &h.state().persisted.config.model {
        ModelConfig::Gan(g) => (g.diff_augment, g.minibatch_std),
        other => panic!("not a GAN: {other:?}"),
    };
    let (augment, std) = gan(&h);
    for label in ["DiffAugment", "minibatch std in D"] {
        h.get_by_label(label).scroll_to_me();
        h.run();
        h.get_by_label(label).click();
        h.run();
    }
    h.get_by_label("Train").click();
    h.run();
    let cmds = sent(&mut h);
    let [Command::Start { config, .. }] = &cmds[..] else { panic!("Train sends one Start: {cmds:?}") };
    let ModelConfig::Gan(g) = &config.model else { panic!("not a GAN") };
    assert_eq!((g.diff_augment, g.minibatch_std), (!augment, !std));
}

#[test]
fn step_without_a_run_starts_one_paused_and_takes_one_batch() {
    let mut h = recording();
    h.run();
    h.get_by_label("Step").click();
    h.run();
    let cmds = sent(&mut h);
    assert!(
        matches!(&cmds[..], [Command::Start { paused: true, .. }, Command::Step(1)]),
        "a paused start, then one step: {cmds:?}"
    );
}

#[test]
fn pause_resume_step_and_stop_send_their_commands() {
    let mut h = recording();
    h.run();
    assert!(is_disabled(&h, "Pause") && is_disabled(&h, "Stop"), "nothing to pause without a run");
    start_run(&mut h);

    h.get_by_label("Pause").click();
    h.run();
    assert!(matches!(&sent(&mut h)[..], [Command::Pause]));
    // The button follows the worker's confirmation, not the click.
    feed(&mut h, [Event::Paused { run: 1, step: 3 }]);
    h.get_by_label("Resume").click();
    h.run();
    assert!(matches!(&sent(&mut h)[..], [Command::Resume]));
    h.get_by_label("Step").click();
    h.run();
    assert!(matches!(&sent(&mut h)[..], [Command::Step(1)]), "paused, Step takes one batch");
    h.get_by_label("Stop").click();
    h.run();
    assert!(matches!(&sent(&mut h)[..], [Command::Stop]));
}

#[test]
fn the_learning_rate_changes_live_only_while_a_run_is_active() {
    let mut h = recording();
    h.run();
    // Without a run the field edits the next run's settings and asks nothing of the worker.
    h.get_by_role_and_label(Role::SpinButton, "Learning rate").set_value_accesskit(2e-3);
    h.run();
    assert!((h.state().persisted.config.optim.lr - 2e-3).abs() < 1e-12);
    assert!(sent(&mut h).is_empty());

    start_run(&mut h);
    h.get_by_role_and_label(Role::SpinButton, "Learning rate").set_value_accesskit(3e-4);
    h.run();
    let cmds = sent(&mut h);
    let [Command::SetLearningRate(lr)] = &cmds[..] else { panic!("one SetLearningRate: {cmds:?}") };
    assert!((lr - 3e-4).abs() < 1e-12, "sent {lr}");
}

#[test]
fn beta_changes_live_for_a_beta_vae() {
    let mut h = recording();
    h.run();
    assert!(
        h.query_by_role_and_label(Role::SpinButton, "β").is_none(),
        "a plain VAE's KL weight is 1, with no β to set"
    );
    choose_preset(&mut h, "mnist_beta_vae");
    start_run(&mut h);
    h.get_by_role_and_label(Role::SpinButton, "β").set_value_accesskit(2.5);
    h.run();
    let cmds = sent(&mut h);
    let [Command::SetBeta(beta)] = &cmds[..] else { panic!("one SetBeta: {cmds:?}") };
    assert!((beta - 2.5).abs() < 1e-12, "sent {beta}");
}

#[test]
fn a_gans_step_ratio_and_d_learning_rate_change_live() {
    use genlab::engine::models::LiveHyper;
    let mut h = recording();
    h.run();
    choose_preset(&mut h, "mnist_dcgan");
    // D's learning rate is its own only with its own Adam (chosen before the run).
    assert!(h.query_by_role_and_label(Role::SpinButton, "D learning rate").is_none());
    h.get_by_label("D has its own Adam").click();
    h.run();
    start_run(&mut h);
    sent(&mut h);
    h.get_by_role_and_label(Role::SpinButton, "D steps per G step").set_value_accesskit(3.0);
    h.run();
    let cmds = sent(&mut h);
    assert!(
        matches!(&cmds[..], [Command::SetHyper { hyper: LiveHyper::DiscSteps, value }] if *value == 3.0),
        "{cmds:?}"
    );
    h.get_by_role_and_label(Role::SpinButton, "D learning rate").set_value_accesskit(5e-5);
    h.run();
    let cmds = sent(&mut h);
    assert!(
        matches!(&cmds[..], [Command::SetHyper { hyper: LiveHyper::DiscLearningRate, value }] if (value - 5e-5).abs() < 1e-12),
        "{cmds:?}"
    );
    // The worker's answer leaves a marker on the loss plot.
    feed(&mut h, [Event::HyperChanged { run: 1, step: 4, hyper: LiveHyper::DiscSteps, value: 3.0 }]);
    let markers = &h.state().run_view.active().expect("a run").markers;
    assert_eq!(markers.len(), 1, "{markers:?}");
}

#[test]
fn scoring_sends_its_request_and_the_answer_fills_the_histogram_for_every_preset() {
    for name in presets() {
        let mut h = recording();
        let shape = h.state().dataset().map(|d| d.shape).expect("data");
        let config = preset(name, shape).expect("the preset");
        h.state_mut().persisted.config = config.clone();
        feed(&mut h, trained(1, &config));
        select_tab(&mut h, "Outliers");
        sent(&mut h);

        h.get_by_label("Score test set").click();
        h.run();
        let cmds = sent(&mut h);
        let [Command::Score { request, target: ScoreTarget::Split(SplitKind::Test), .. }] = &cmds[..] else {
            panic!("{name}: one Score of the test split: {cmds:?}");
        };
        let request = *request;
        feed(&mut h, [Event::ScoreProgress { run: 1, request, done: 500, total: 2000 }]);
        h.get_by_label_contains("500/2000");
        h.get_by_label("Cancel").click();
        h.run();
        assert!(matches!(&sent(&mut h)[..], [Command::CancelScore]), "{name}: Cancel");

        let set = Box::new(scored_set(&config, 2000));
        feed(&mut h, [Event::Scored { run: 1, request, name: "test".into(), set }]);
        let score = config.model.capabilities().default_anomaly();
        h.get_by_label(&format!("Histogram of {} (higher = less likely)", score.label()));
        h.get_by_label("Most likely test images (lowest score)");
    }
}
