//! The top bar: Train, Pause / Resume, Step, Stop, progress and status, the theme switch, and
//! the divergence banner with its way out.

use std::time::Instant;

use egui::{ProgressBar, RichText};

use super::training::format_duration;
use crate::app::actions::Action;
use crate::app::run_view::{RunView, Status};
use crate::app::state::ThemeChoice;
use crate::app::theme;
use crate::engine::protocol::FinishReason;

pub struct ControlsCtx<'a> {
    pub run_view: &'a RunView,
    /// Why Train is disabled, if it is.
    pub train_blocker: Option<String>,
    pub theme: ThemeChoice,
    pub actions: &'a mut Vec<Action>,
}

pub fn controls_ui(ui: &mut egui::Ui, cx: ControlsCtx<'_>) {
    let ControlsCtx { run_view, train_blocker, theme: current_theme, actions } = cx;
    let status = run_view.status();
    let active = run_view.active();
    let busy = active.is_some() || status == Status::Starting;
    ui.horizontal(|ui| {
        ui.heading(RichText::new("genlab").strong());
        ui.separator();
        let train_blocker =
            if busy { Some("A run is in progress: stop it first".into()) } else { train_blocker };
        let train =
            ui.add_enabled(train_blocker.is_none(), egui::Button::new(RichText::new("Train").strong()));
        let train = match &train_blocker {
            Some(why) => train.on_disabled_hover_text(why),
            None => train.on_hover_text("Start a new run with these settings"),
        };
        if train.clicked() {
            actions.push(Action::Train);
        }
        let paused = active.is_some_and(|r| r.paused);
        if paused {
            if ui.add_enabled(active.is_some(), egui::Button::new("Resume")).on_hover_text("Space").clicked()
            {
                actions.push(Action::Resume);
            }
        } else if ui
            .add_enabled(active.is_some(), egui::Button::new("Pause"))
            .on_hover_text("Space")
            .clicked()
        {
            actions.push(Action::Pause);
        }
        let can_step = paused || (active.is_none() && train_blocker.is_none());
        if ui
            .add_enabled(can_step, egui::Button::new("Step"))
            .on_hover_text("Train on one batch, then pause")
            .clicked()
        {
            actions.push(Action::Step);
        }
        if ui.add_enabled(active.is_some(), egui::Button::new("Stop")).clicked() {
            actions.push(Action::Stop);
        }
        ui.separator();

        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            for (choice, label) in [(ThemeChoice::Light, "Light"), (ThemeChoice::Dark, "Dark")] {
                if ui.selectable_label(current_theme == choice, label).clicked() && current_theme != choice {
                    actions.push(Action::SetTheme(choice));
                }
            }
            ui.label(RichText::new("Theme").weak());
            ui.separator();
            status_label(ui, &status);
            ui.separator();
            progress(ui, run_view);
        });
    });

    if let Some(r) = active {
        if let Some((step, msg)) = &r.diverged {
            egui::Frame::new().fill(theme::error_fill(ui)).corner_radius(4.0).inner_margin(6.0).show(
                ui,
                |ui| {
                    ui.horizontal(|ui| {
                        let lower = r.learning_rate / 10.0;
                        if ui
                            .button("Resume with lr ÷ 10")
                            .on_hover_text(format!("Set the learning rate to {lower:.1e} and resume"))
                            .clicked()
                        {
                            actions.push(Action::ResumeWithLearningRate(lower));
                        }
                        ui.add(egui::Label::new(format!("Diverged at step {step}: {msg}")).wrap());
                    });
                },
            );
        }
    }
}

fn status_label(ui: &mut egui::Ui, status: &Status) {
    let (text, color) = match status {
        Status::Idle => ("Ready".to_string(), None),
        Status::Starting => ("Starting…".to_string(), None),
        Status::Training => ("Training".to_string(), Some(theme::ok_text(ui))),
        Status::Paused => ("Paused".to_string(), None),
        Status::Finished(FinishReason::Completed) => ("Done".to_string(), Some(theme::ok_text(ui))),
        Status::Finished(_) => ("Stopped".to_string(), None),
        Status::Failed(_) => ("Failed".to_string(), Some(theme::error_text(ui))),
    };
    let mut rt = RichText::new(text).strong();
    if let Some(c) = color {
        rt = rt.color(c);
    }
    let response = ui.label(rt);
    if let Status::Failed(msg) = status {
        response.on_hover_text(msg);
    }
}

fn progress(ui: &mut egui::Ui, run_view: &RunView) {
    let width = ui.available_width().clamp(120.0, 560.0);
    let Some(r) = run_view.current() else {
        ui.label(RichText::new("No run yet").weak());
        return;
    };
    let epochs = r.config.train.epochs;
    let epoch = if r.step == 0 { 1 } else { (r.epoch + 1).min(epochs.max(1)) };
    let mut text = format!("epoch {epoch}/{epochs} · step {}/{}", r.step, r.total_steps);
    if r.is_active() && r.images_per_sec > 0.0 && !r.paused {
        text.push_str(&format!(" · {:.0} img/s", r.images_per_sec));
        if let Some(eta) = r.eta() {
            text.push_str(&format!(" · ETA {}", format_duration(eta.as_secs_f64())));
        }
    } else if !r.is_active() {
        text.push_str(&format!(" · took {}", format_duration(r.duration(Instant::now()).as_secs_f64())));
    }
    ui.add(ProgressBar::new(r.progress()).desired_width(width).text(text));
}
