//! What the app's kittest tests share: the real app in a harness, bounded waits for background
//! work (loader, worker) with a clear failure message, and a trained, paused run to start from;
//! [`canned`]: a recording app (no worker) and the events that put it into a run.
#![allow(dead_code)] // each test file uses its own part

pub mod canned;

use std::time::Duration;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use genlab::app::run_view::{RunRecord, Status};
use genlab::app::App;

/// The real app in a 1440 × 900 harness.
pub fn harness() -> Harness<'static, App> {
    harness_sized(1440.0, 900.0)
}

pub fn harness_sized(width: f32, height: f32) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(width, height))
        .build_ui_state(|ui, app: &mut App| app.show(ui), App::new_for_test())
}

/// Steps frames (sleeping a little between them) until `done` holds; panics naming `what`
/// and the errors on screen.
pub fn wait_for(h: &mut Harness<'_, App>, what: &str, max_frames: usize, done: impl Fn(&App) -> bool) {
    for _ in 0..max_frames {
        h.step();
        if done(h.state()) {
            h.step();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gave up after {max_frames} frames waiting for: {what}; errors: {:?}", h.state().errors());
}

/// Steps frames until a widget whose label contains `text` is on screen (an export's notice,
/// which arrives from the export's own thread); panics naming it and the errors on screen.
pub fn wait_for_label(h: &mut Harness<'_, App>, text: &str, max_frames: usize) {
    for _ in 0..max_frames {
        h.step();
        if h.query_all_by_label_contains(text).next().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "gave up after {max_frames} frames waiting for {text:?} on screen; errors: {:?}",
        h.state().errors()
    );
}

pub fn run(app: &App) -> Option<&RunRecord> {
    app.run_view.current()
}

/// Waits for the built-in dataset the app opens on.
pub fn loaded(h: &mut Harness<'_, App>) {
    wait_for(h, "the built-in dataset to load", 500, |a| a.dataset().is_some() && !a.is_loading());
    h.run();
}

/// Loads the built-in data, trains until `grids` fixed-noise grids have arrived, then pauses.
pub fn trained_and_paused(grids: usize) -> Harness<'static, App> {
    trained_and_paused_with(harness(), None, grids)
}

/// [`trained_and_paused`] in harness `h`, with a model preset chosen first.
pub fn trained_and_paused_with(
    mut h: Harness<'static, App>,
    preset: Option<&str>,
    grids: usize,
) -> Harness<'static, App> {
    loaded(&mut h);
    if let Some(p) = preset {
        h.get_by_label("Preset").click();
        h.run();
        h.get_by_label(p).click();
        h.run();
    }
    h.get_by_label("Train").click();
    wait_for(&mut h, &format!("{grids} fixed-noise grids while training"), 3000, |a| {
        run(a).is_some_and(|r| r.explore.history.len() >= grids)
    });
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the worker to confirm the pause", 500, |a| a.run_view.status() == Status::Paused);
    h
}

pub fn select_tab(h: &mut Harness<'_, App>, title: &str) {
    h.get_by_label(title).click();
    h.run();
    assert_eq!(h.state().persisted.tab, title);
}
