#![cfg(feature = "app")]
//! Every central tab drawn for every preset and every family, before any run and after a canned
//! one, checked for its key labels. Tabs come from the app's own list and configurations from
//! the presets and families, so a new tab or family is drawn here without a test of its own.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use genlab::app::panels::all_tabs;
use genlab::app::App;
use genlab::engine::config::{preset, presets, RunConfig};
use genlab::engine::data::ImageShape;
use genlab::engine::models::{Capabilities, Family, LiveHyper};

mod common;
use common::canned::{feed, recording, trained, GRID_STEPS};
use common::select_tab;

/// A label the user must see: exactly this text, or a label containing it.
enum Shown {
    Is(String),
    Has(String),
}

fn is(s: impl Into<String>) -> Shown {
    Shown::Is(s.into())
}

fn has(s: impl Into<String>) -> Shown {
    Shown::Has(s.into())
}

/// What tab `title` shows for a trained, paused run whose model offers `caps`. A tab missing
/// here is still drawn in both states for every configuration; add its line to check its labels.
fn trained_labels(title: &str, caps: &Capabilities) -> Vec<Shown> {
    let last_grid = GRID_STEPS[GRID_STEPS.len() - 1];
    match title {
        "Training" => {
            let mut v = vec![
                is("Samples from fixed noise"),
                is(format!("after step {last_grid}")),
                is("Rewind point"),
                is("Checkpoint folder"),
                is("Save checkpoint"),
                is("Save metrics CSV"),
            ];
            // The plot's legend names every loss component the family reports.
            v.extend(caps.loss_keys.iter().map(|k| is(k.id())));
            v
        }
        "Samples" => {
            let mut v = vec![
                is("Reconstructions"),
                match caps.encoder {
                    true => is("Reconstructions grid"),
                    false => has("has no encoder, so it cannot reconstruct images"),
                },
                is("Samples from the prior"),
                is("Samples grid"),
                is("Fixed noise through training"),
                is("History step"),
                is("History grid"),
            ];
            if caps.encoder && !caps.conditional {
                v.push(is("Train latent prior"));
            }
            v
        }
        "Latent space" => {
            let mut v = vec![is(format!("Decoded {} vector", caps.latent_name)), is("Random")];
            // A sampler's image-sized noise has no slider per value.
            if caps.latent_axes() {
                v.push(is("z0"));
            }
            match (caps.encoder, caps.latent_axes()) {
                (true, _) => {
                    v.extend([is("Encode test set"), is("KL per dimension (nats; near 0 = unused)")])
                }
                (false, true) => v.extend([has("has no encoder: the sliders move its"), is("Interpolate")]),
                (false, false) => v.extend([has("so it has no sliders"), is("Interpolate")]),
            }
            v
        }
        "Outliers" => vec![
            is("Score test set"),
            is("Score train set"),
            is("Compare with another dataset"),
            is("Hold out classes"),
        ],
        _ => Vec::new(),
    }
}

/// Every preset, then a default configuration of each family, all for the built-in digits.
fn configurations() -> Vec<RunConfig> {
    let shape = ImageShape::new(1, 28, 28);
    let mut configs: Vec<RunConfig> = presets().into_iter().filter_map(|p| preset(p, shape)).collect();
    assert_eq!(configs.len(), presets().len(), "every preset fits the built-in digits");
    for family in Family::ALL {
        let mut model = family.default_config();
        model.net_mut().input = shape;
        configs.push(RunConfig { preset: String::new(), model, ..RunConfig::default() });
    }
    configs
}

fn assert_shown(h: &Harness<'_, App>, what: &str, labels: &[Shown]) {
    for l in labels {
        let found = match l {
            Shown::Is(s) => h.query_all_by_label(s).next().is_some(),
            Shown::Has(s) => h.query_all_by_label_contains(s).next().is_some(),
        };
        let text = match l {
            Shown::Is(s) => format!("`{s}`"),
            Shown::Has(s) => format!("a label containing `{s}`"),
        };
        assert!(found, "{what}: {text} is not shown");
    }
}

#[test]
fn every_tab_shows_its_key_labels_for_every_family_before_and_after_training() {
    let titles: Vec<&str> = all_tabs().iter().map(|t| t.title()).collect();
    for config in configurations() {
        let caps = config.model.capabilities();
        let name = format!("{} ({})", config.preset, config.model.family());
        let mut h = recording();
        h.state_mut().persisted.config = config.clone();
        h.run();
        // The model panel offers what the family can change while training.
        let mut side = vec![is("Preset"), is("Learning rate")];
        if caps.is_live(LiveHyper::Beta) {
            side.push(is("β"));
        }
        assert_shown(&h, &name, &side);
        for title in &titles {
            select_tab(&mut h, title);
            assert_shown(&h, &format!("{name}, {title} before a run"), &[has("No run yet")]);
        }

        feed(&mut h, trained(1, &config));
        let run = h.state().run_view.current().expect("the canned run");
        assert_eq!(run.capabilities, caps);
        for title in &titles {
            select_tab(&mut h, title);
            assert_shown(&h, &format!("{name}, {title} after training"), &trained_labels(title, &caps));
        }
    }
}
