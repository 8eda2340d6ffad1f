//! The Training tab's sample-quality section: when to measure (off, auto within 10% of the
//! training time, every N steps), what it costs, the curves, the warnings, and "rewind to the
//! best" in one click.

use egui::RichText;

use crate::app::actions::Action;
use crate::app::run_view::RunRecord;
use crate::app::theme;
use crate::app::widgets::quality_plot::quality_plots;
use crate::engine::protocol::{Command, QualitySchedule, QUALITY_BUDGET};

/// The interval offered when switching to "every N steps".
const DEFAULT_EVERY: u64 = 500;

/// What the quality section draws and where its clicks go.
pub(super) struct QualityCtx<'a> {
    pub run: &'a RunRecord,
    pub overlays: &'a [&'a RunRecord],
    pub schedule: &'a mut QualitySchedule,
    pub actions: &'a mut Vec<Action>,
}

fn schedule_text(s: QualitySchedule) -> String {
    match s {
        QualitySchedule::Off => "Off".into(),
        QualitySchedule::Auto => format!("Auto (≤ {:.0}% of training time)", 100.0 * QUALITY_BUDGET),
        QualitySchedule::Every(n) => format!("Every {n} steps"),
    }
}

/// Draws the section in `height`.
pub(super) fn quality_section(ui: &mut egui::Ui, cx: QualityCtx<'_>, height: f32) {
    let QualityCtx { run, overlays, schedule, actions } = cx;
    let top = ui.cursor().top();
    ui.horizontal_wrapped(|ui| {
        ui.strong("Sample quality");
        let label = ui.label("Measure");
        let every = match *schedule {
            QualitySchedule::Every(n) => n,
            _ => DEFAULT_EVERY,
        };
        egui::ComboBox::from_id_salt("quality_schedule")
            .selected_text(schedule_text(*schedule))
            .show_ui(ui, |ui| {
                for s in [QualitySchedule::Off, QualitySchedule::Auto, QualitySchedule::Every(every)] {
                    let text = match s {
                        QualitySchedule::Every(_) => "Every N steps".to_string(),
                        s => schedule_text(s),
                    };
                    ui.selectable_value(schedule, s, text);
                }
            })
            .response
            .on_hover_text("FD, precision, recall and coverage of 1,000 samples against the training images, measured on the training thread")
            .labelled_by(label.id);
        if let QualitySchedule::Every(n) = schedule {
            let label = ui.label("N");
            ui.add(egui::DragValue::new(n).range(1..=10_000_000).suffix(" steps")).labelled_by(label.id);
        }
        if ui
            .add_enabled(run.has_model(), egui::Button::new("Measure now"))
            .on_hover_text("Measure the current model's sample quality once")
            .clicked()
        {
            actions.push(Action::Worker(Command::EvaluateQuality));
        }
        if let Some(best) = run.best_rewind_point() {
            let fd = best.report.samples.metrics.fd;
            if ui
                .add_enabled(run.has_model(), egui::Button::new(format!("Rewind to best (step {})", best.step)))
                .on_hover_text(format!("Go back to step {} (FD {fd:.2}, the lowest measured) and continue from there, paused", best.step))
                .clicked()
            {
                actions.push(Action::Worker(Command::Rewind { step: best.step }));
            }
        }
    });
    ui.label(RichText::new(cost_text(run, *schedule)).weak().small());
    if let Some(last) = run.last_quality() {
        let m = &last.report.samples.metrics;
        let best = run.best_quality().map_or(String::new(), |b| {
            format!(
                "Best: step {}, FD {:.2} (floor {:.2}). ",
                b.step, b.report.samples.metrics.fd, b.report.floor.metrics.fd
            )
        });
        let classes = last.report.samples.classes.as_ref().map_or(String::new(), |c| {
            format!(", confident {:.0}%, classes {}/{}", 100.0 * c.confident, c.covered, c.histogram.len())
        });
        ui.label(format!(
            "{best}Step {}: FD {:.2}, precision {:.2}, recall {:.2}, coverage {:.2}{classes}",
            last.step, m.fd, m.precision, m.recall, m.coverage
        ));
        for w in &last.warnings {
            egui::Frame::new().fill(theme::warning_fill(ui)).inner_margin(4.0).show(ui, |ui| {
                ui.add(egui::Label::new(format!("Step {}: {w}", last.step)).wrap());
            });
        }
    }
    if run.capabilities.conditional {
        conditioning(ui, run, actions);
    }
    let left = (height - (ui.cursor().top() - top)).max(120.0);
    if run.quality.is_empty() && overlays.iter().all(|r| r.quality.is_empty()) {
        return;
    }
    quality_plots(ui, run, overlays, (left / 2.0 - 4.0).max(60.0));
}

fn cost_text(run: &RunRecord, schedule: QualitySchedule) -> String {
    match &run.quality_cost {
        Some(c) => {
            let when = match schedule {
                QualitySchedule::Off => "measured on request".to_string(),
                _ if c.every > 0 => format!("quality every {} steps", c.every),
                _ => "quality".to_string(),
            };
            let n = run.last_quality().map_or(0, |q| q.report.n);
            format!(
                "{when}, {:.0} ms each ({n} samples), {:.1}% of training; reference prepared once in {:.1} s",
                1000.0 * c.seconds,
                100.0 * c.share,
                c.prepare_seconds
            )
        }
        None if schedule == QualitySchedule::Off => {
            "Off: choose Auto or Every N steps, or click Measure now.".into()
        }
        None => "The first measurement comes once the reference is ready and the budget allows.".into(),
    }
}

/// The per-class agreement of a conditional run: the share of samples asked of each class
/// that the classifier assigns to it, measured on the worker on request.
fn conditioning(ui: &mut egui::Ui, run: &RunRecord, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.strong("Conditioning");
        if ui
            .add_enabled(run.has_model(), egui::Button::new("Measure conditioning"))
            .on_hover_text("Draw samples of every class and ask the classifier which class each shows")
            .clicked()
        {
            actions.push(Action::Worker(Command::EvaluateConditioning));
        }
        if let Some(c) = &run.explore.conditioning {
            let (step, r) = &c.value;
            ui.label(format!(
                "step {step}: {:.1}% agree on average, worst class {:.1}% ({} samples a class)",
                100.0 * r.mean(),
                100.0 * r.min(),
                r.per_class_n
            ));
        }
    });
    let Some(c) = &run.explore.conditioning else { return };
    let r = &c.value.1;
    egui::Grid::new("conditioning_table").spacing([10.0, 2.0]).show(ui, |ui| {
        ui.label("class");
        for k in 0..r.agreement.len() {
            ui.label(k.to_string());
        }
        ui.end_row();
        ui.label("agrees");
        for &a in &r.agreement {
            let text = RichText::new(format!("{:.0}%", 100.0 * a));
            // The target: at least 90% in every class.
            ui.label(if a < 0.9 { text.color(theme::error_text(ui)) } else { text });
        }
        ui.end_row();
    });
}
