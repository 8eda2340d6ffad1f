//! Where an export goes and how it went: a typed path, a "Choose…" button opening the system
//! save dialog (the typed path always works, also where no dialog is available), an
//! "Overwrite" checkbox, and the write itself on its own thread with its result shown in the
//! tab. A tab owns one per destination; nothing here blocks a frame.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use egui::RichText;

use super::loader::{DialogJob, DialogResult, SaveDialog};
use super::theme;

/// The outcome of an export, as shown to the user.
pub type Outcome = Result<String, String>;

pub struct ExportTarget {
    /// What the path field is called (its accessible name too).
    label: &'static str,
    hint: &'static str,
    /// What "Choose…" asks for.
    dialog_kind: SaveDialog,
    pub path: String,
    pub overwrite: bool,
    dialog: Option<DialogJob>,
    job: Option<Receiver<Outcome>>,
    pub message: Option<Outcome>,
}

impl ExportTarget {
    pub fn new(label: &'static str, hint: &'static str, dialog_kind: SaveDialog) -> Self {
        Self {
            label,
            hint,
            dialog_kind,
            path: String::new(),
            overwrite: false,
            dialog: None,
            job: None,
            message: None,
        }
    }

    /// Whether a write is under way.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// The typed path, or `None` (with a message saying so) when it is empty.
    pub fn target(&mut self) -> Option<PathBuf> {
        let p = PathBuf::from(self.path.trim());
        if p.as_os_str().is_empty() {
            self.message = Some(Err(format!("Type a path into {} (or click Choose…) first.", self.label)));
            return None;
        }
        Some(p)
    }

    /// The path field with its "Choose…" button, and the overwrite checkbox. `file_name` is
    /// what the save dialog suggests.
    pub fn path_ui(&mut self, ui: &mut egui::Ui, file_name: &str, overwrite_label: &str) {
        self.poll(ui.ctx());
        ui.horizontal(|ui| {
            let label = ui.label(self.label);
            let choose = ui
                .add_enabled(self.dialog.is_none(), egui::Button::new("Choose…"))
                .on_hover_text("Pick the destination in the system's dialog")
                .accessible_name(format!("Choose {}", self.label));
            ui.add(
                egui::TextEdit::singleline(&mut self.path).hint_text(self.hint).desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
            if choose.clicked() {
                self.open_dialog(ui.ctx(), file_name);
            }
        });
        ui.checkbox(&mut self.overwrite, overwrite_label);
    }

    fn open_dialog(&mut self, ctx: &egui::Context, file_name: &str) {
        let what = match &self.dialog_kind {
            SaveDialog::File { title, extensions, .. } => {
                SaveDialog::File { title, file_name: file_name.to_string(), extensions }
            }
            folder @ SaveDialog::Folder { .. } => folder.clone(),
        };
        let typed = PathBuf::from(self.path.trim());
        let start = if typed.is_dir() {
            Some(typed)
        } else {
            typed.parent().filter(|p| p.is_dir()).map(Path::to_path_buf)
        };
        let ctx = ctx.clone();
        match DialogJob::spawn_save(what, start, Arc::new(move || ctx.request_repaint())) {
            Ok(d) => self.dialog = Some(d),
            Err(e) => self.message = Some(Err(format!("{e}. Type the path instead."))),
        }
    }

    /// Writes on a thread of its own; `write` returns the message to show on success. The
    /// caller has checked the target (see [`crate::engine::export::check_target`]).
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        path: PathBuf,
        write: impl FnOnce(&Path) -> Outcome + Send + 'static,
    ) {
        // One result, sent once.
        let (tx, rx) = mpsc::sync_channel(1);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("genlab-export".into()).spawn(move || {
            let result = write(&path).map_err(|e| format!("Could not write {}: {e}", path.display()));
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => {
                self.job = Some(rx);
                self.message = None;
            }
            Err(e) => self.message = Some(Err(format!("could not start the export: {e}"))),
        }
    }

    /// Takes what the dialog and the write sent.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(result) = self.dialog.as_mut().and_then(|d| d.poll()) {
            self.dialog = None;
            match result {
                DialogResult::Picked(p) => self.path = p.display().to_string(),
                DialogResult::Cancelled => {}
                DialogResult::Unavailable => {
                    self.message = Some(Err(format!(
                        "No file dialog is available here (it needs a desktop portal or zenity). Type the path into {}.",
                        self.label
                    )))
                }
            }
        }
        if self.dialog.is_some() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        let Some(rx) = &self.job else { return };
        match rx.try_recv() {
            Ok(result) => {
                self.message = Some(result);
                self.job = None;
            }
            Err(mpsc::TryRecvError::Empty) => ctx.request_repaint_after(Duration::from_millis(100)),
            Err(mpsc::TryRecvError::Disconnected) => {
                self.message = Some(Err("the export stopped unexpectedly".into()));
                self.job = None;
            }
        }
    }

    /// A spinner while writing, then the outcome.
    pub fn message_ui(&self, ui: &mut egui::Ui) {
        if self.is_busy() {
            ui.spinner();
        }
        match &self.message {
            Some(Ok(m)) => {
                ui.add(egui::Label::new(RichText::new(m).color(theme::ok_text(ui))).wrap());
            }
            Some(Err(m)) => {
                ui.add(egui::Label::new(RichText::new(m).color(theme::error_text(ui))).wrap());
            }
            None => {}
        }
    }
}
