//! Messages for the user (errors, warnings, hints), shown until dismissed and logged once.

use egui::{Frame, Margin, RichText};

use crate::app::actions::Action;
use crate::app::theme;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Error,
    Warning,
    Info,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub id: u64,
    pub kind: NoticeKind,
    pub text: String,
}

/// The messages on screen.
#[derive(Default)]
pub struct Notices {
    pub items: Vec<Notice>,
    next_id: u64,
}

impl Notices {
    /// Shows `text` and logs it to stderr.
    pub fn push(&mut self, kind: NoticeKind, text: impl Into<String>) {
        let text = text.into();
        let tag = match kind {
            NoticeKind::Error => "error",
            NoticeKind::Warning => "warning",
            NoticeKind::Info => "note",
        };
        eprintln!("genlab: {tag}: {text}");
        // The same message twice in a row adds nothing.
        if self.items.last().is_some_and(|n| n.text == text && n.kind == kind) {
            return;
        }
        self.next_id += 1;
        self.items.push(Notice { id: self.next_id, kind, text });
        // Keep the newest few; old ones scroll out of relevance.
        if self.items.len() > 5 {
            self.items.remove(0);
        }
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.push(NoticeKind::Error, text);
    }

    pub fn dismiss(&mut self, id: u64) {
        self.items.retain(|n| n.id != id);
    }

    /// Errors currently shown.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter(|n| n.kind == NoticeKind::Error).map(|n| n.text.as_str())
    }
}

/// One banner per notice, each with a Dismiss button.
pub fn notices_ui(ui: &mut egui::Ui, notices: &Notices, actions: &mut Vec<Action>) {
    for n in &notices.items {
        let fill = match n.kind {
            NoticeKind::Error => theme::error_fill(ui),
            NoticeKind::Warning => theme::warning_fill(ui),
            NoticeKind::Info => theme::info_fill(ui),
        };
        Frame::new().fill(fill).corner_radius(4.0).inner_margin(Margin::symmetric(8, 4)).show(ui, |ui| {
            ui.horizontal(|ui| {
                if ui.button("Dismiss").clicked() {
                    actions.push(Action::DismissNotice(n.id));
                }
                let icon = match n.kind {
                    NoticeKind::Error => "Error:",
                    NoticeKind::Warning => "Warning:",
                    NoticeKind::Info => "Note:",
                };
                ui.add(egui::Label::new(RichText::new(format!("{icon} {}", n.text))).wrap());
            });
        });
        ui.add_space(2.0);
    }
}
