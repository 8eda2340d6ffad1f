//! The desktop app: a thin shell over the engine. Each frame it drains what the worker, the
//! loader and the file dialog sent ([`logic`]), draws the panels from that state, then carries
//! out the [`Action`]s the panels pushed. No frame ever waits on another thread.

pub mod actions;
pub mod export_target;
pub mod loader;
mod logic;
pub mod other_data;
pub mod panels;
pub mod run_view;
pub mod sink;
pub mod state;
pub mod textures;
pub mod theme;
pub mod widgets;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use egui::{Align2, FontId, Id, LayerId, Order, RichText};

use crate::engine::config::{preset, presets};
use crate::engine::data::{DataSource, Dataset, ImageShape};
use crate::engine::protocol::QualitySchedule;
use crate::engine::worker::{Waker, Worker};
use actions::Action;
use loader::{CheckpointJob, DialogJob, LoadJob};
use other_data::OtherData;
use panels::architecture::{architecture_ui, ArchitectureCtx};
use panels::controls::{controls_ui, ControlsCtx};
use panels::dataset::{DatasetCtx, DatasetPanel, LoadedDataset};
use panels::{Tab, TabCtx};
use run_view::RunView;
use sink::{CommandSink, Recorder};
use state::Persisted;
use textures::Textures;
use widgets::notices::{notices_ui, Notices};

/// How often the app looks again while something runs in the background, should a wake-up be
/// missed (events wake it at once).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Fresh state with sample quality off (tests and benchmarks).
fn quiet() -> Persisted {
    Persisted { quality: QualitySchedule::Off, ..Persisted::default() }
}

/// What the app is asked to do as it opens (`genlab open …`), built by the binary from its
/// command line. The default (plain `genlab`) reopens the last dataset.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// The dataset to load instead of the last one.
    pub data: Option<DataSource>,
    /// A preset to select once the data's shape is known.
    pub preset: Option<String>,
    /// Start training once the data is loaded.
    pub train: bool,
}

/// The workbench. Persisted state is [`Persisted`]; everything else is rebuilt at start-up.
pub struct App {
    pub persisted: Persisted,
    pub run_view: RunView,
    /// The training worker (or, in tests, a recorder of the commands sent).
    sink: CommandSink,
    waker: Waker,
    dataset: Option<LoadedDataset>,
    data_version: u64,
    split_cache: Option<((u64, u64), (usize, usize))>,
    loading: Option<LoadJob>,
    dialog: Option<DialogJob>,
    /// A checkpoint being read before a run starts from it.
    checkpoint_job: Option<CheckpointJob>,
    /// A second dataset to score against the model (the Outliers tab).
    other: OtherData,
    textures: Textures,
    notices: Notices,
    tabs: Vec<Box<dyn Tab>>,
    dataset_panel: DatasetPanel,
    /// `open --train`: start once the data is loaded.
    pending_train: bool,
    /// `open --preset`: apply once the data's shape is known.
    pending_preset: Option<String>,
    /// The start-up dataset came from the saved state; fall back to the built-in one if it fails.
    fallback_to_builtin: bool,
    /// The quality schedule the worker was last told (a new worker starts with it off).
    worker_quality: QualitySchedule,
}

impl App {
    /// The app as eframe starts it: saved state restored, `startup` applied.
    pub fn new(cc: &eframe::CreationContext<'_>, startup: Startup) -> Self {
        let persisted: Persisted = cc
            .storage
            .and_then(|s| eframe::get_value::<Persisted>(s, eframe::APP_KEY))
            .unwrap_or_default()
            .upgraded();
        let ctx = cc.egui_ctx.clone();
        let waker: Waker = Arc::new(move || ctx.request_repaint());
        theme::apply(&cc.egui_ctx, persisted.theme);
        Self::build(persisted, waker, startup, None)
    }

    /// The app with fresh state, the built-in data and no repaint waker (for tests).
    /// Sample quality is off, as in [`App::with_worker`] and [`App::recording`], so a test's
    /// runs cost what they did before it existed; a test turns it on in the Training tab.
    pub fn new_for_test() -> Self {
        Self::build(quiet(), Arc::new(|| {}), Startup::default(), None)
    }

    /// The app with fresh state and the built-in data, driving `worker` (which may already be
    /// running something; `genlab bench ui` hands in one with a step hook).
    pub fn with_worker(worker: Worker) -> Self {
        Self::build(quiet(), Arc::new(|| {}), Startup::default(), Some(worker))
    }

    /// The app with fresh state and `data` already loaded, sending its commands to a
    /// [`Recorder`] instead of a worker: UI tests read what a click sent and feed it canned
    /// events ([`App::recorder`]), with no thread to wait for.
    pub fn recording(data: Dataset) -> Self {
        let sink = CommandSink::Recorder(Recorder::default());
        let mut app = Self::unloaded(quiet(), Arc::new(|| {}), Startup::default(), sink);
        let source = data.source.clone();
        app.finish_load(source, Ok(data));
        app
    }

    /// The recorder of a [`App::recording`] app (`None` when a real worker runs).
    pub fn recorder(&mut self) -> Option<&mut Recorder> {
        match &mut self.sink {
            CommandSink::Recorder(r) => Some(r),
            CommandSink::Worker(_) => None,
        }
    }

    fn build(persisted: Persisted, waker: Waker, mut startup: Startup, worker: Option<Worker>) -> Self {
        let (source, fallback) = match startup.data.take() {
            Some(s) => (s, false),
            None => match &persisted.last_dataset {
                Some(s @ DataSource::Path(_)) => (s.clone(), true),
                Some(s @ DataSource::Synthetic(_)) => (s.clone(), false),
                _ => (DataSource::Builtin, false),
            },
        };
        let sink = CommandSink::Worker(worker.unwrap_or_else(|| Worker::spawn(waker.clone())));
        let mut app = Self::unloaded(persisted, waker, startup, sink);
        app.fallback_to_builtin = fallback;
        app.start_load(source);
        app
    }

    /// The app before any dataset is asked for.
    fn unloaded(persisted: Persisted, waker: Waker, startup: Startup, sink: CommandSink) -> Self {
        Self {
            persisted,
            run_view: RunView::default(),
            sink,
            waker,
            dataset: None,
            data_version: 0,
            split_cache: None,
            loading: None,
            dialog: None,
            checkpoint_job: None,
            other: OtherData::default(),
            textures: Textures::default(),
            notices: Notices::default(),
            tabs: panels::all_tabs(),
            dataset_panel: DatasetPanel::default(),
            pending_train: startup.train,
            pending_preset: startup.preset,
            fallback_to_builtin: false,
            worker_quality: QualitySchedule::Off,
        }
    }

    /// The loaded dataset, if any.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.dataset.as_ref().map(|d| d.data.as_ref())
    }

    /// Whether a dataset is being loaded.
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Whether a checkpoint is being read.
    pub fn is_loading_checkpoint(&self) -> bool {
        self.checkpoint_job.is_some()
    }

    /// The second dataset loaded for scoring, if any.
    pub fn other_dataset(&self) -> Option<&Dataset> {
        self.other.loaded.as_ref().map(|d| d.value.as_ref())
    }

    /// Whether that second dataset is being loaded.
    pub fn is_loading_other(&self) -> bool {
        self.other.loading.is_some()
    }

    /// The error messages on screen.
    pub fn errors(&self) -> Vec<String> {
        self.notices.errors().map(str::to_string).collect()
    }

    /// Draws one frame of the whole app into `ui` (what eframe and the UI tests call).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.drain(&ctx);
        let mut actions = Vec::new();
        self.shortcuts(&ctx, &mut actions);

        let locked = self.run_view.active().is_some();
        let train_blocker = self.train_blocker();
        let problem = self.config_problem();
        let split = self.split_counts();
        let shape = self.dataset.as_ref().map_or(self.persisted.config.model.input(), |d| d.data.shape);

        egui::Panel::top("controls").show(ui, |ui| {
            ui.add_space(2.0);
            controls_ui(
                ui,
                ControlsCtx {
                    run_view: &self.run_view,
                    train_blocker,
                    theme: self.persisted.theme,
                    actions: &mut actions,
                },
            );
            ui.add_space(2.0);
        });

        egui::Panel::left("side").default_size(360.0).min_size(280.0).max_size(560.0).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("side_scroll").show(ui, |ui| {
                self.dataset_panel.ui(
                    ui,
                    DatasetCtx {
                        dataset: self.dataset.as_ref(),
                        loading: self.loading.as_ref(),
                        dialog_open: self.dialog.is_some(),
                        recent: &self.persisted.recent,
                        load: &mut self.persisted.load,
                        split,
                        test_fraction: &mut self.persisted.config.train.test_fraction,
                        locked,
                        textures: &mut self.textures,
                        actions: &mut actions,
                    },
                );
                ui.separator();
                architecture_ui(
                    ui,
                    &mut self.persisted.config,
                    ArchitectureCtx { locked, shape, problem, actions: &mut actions },
                );
                ui.add_space(8.0);
            });
        });

        egui::CentralPanel::default().show(ui, |ui| {
            notices_ui(ui, &self.notices, &mut actions);
            let selected = self
                .tabs
                .iter()
                .position(|t| t.title() == self.persisted.tab)
                .unwrap_or(0)
                .min(self.tabs.len().saturating_sub(1));
            ui.horizontal(|ui| {
                for (i, t) in self.tabs.iter().enumerate() {
                    if ui.selectable_label(i == selected, RichText::new(t.title()).strong()).clicked() {
                        actions.push(Action::SelectTab(t.title().to_string()));
                    }
                }
            });
            ui.separator();
            if let Some(tab) = self.tabs.get_mut(selected) {
                let mut cx = TabCtx {
                    run_view: &self.run_view,
                    dataset: self.dataset.as_ref().map(|d| d.data.as_ref()),
                    other: &self.other,
                    plot: &mut self.persisted.plot,
                    quality: &mut self.persisted.quality,
                    textures: &mut self.textures,
                    actions: &mut actions,
                };
                tab.ui(ui, &mut cx);
            }
        });

        drop_overlay(&ctx);
        for a in actions {
            self.act(a, &ctx);
        }
        self.sync_quality();
        let busy = self.loading.is_some()
            || self.dialog.is_some()
            || self.checkpoint_job.is_some()
            || self.other.is_busy()
            || self.run_view.active().is_some();
        if busy {
            ctx.request_repaint_after(POLL_INTERVAL);
        }
    }

    /// Space pauses and resumes (unless a text field has the keyboard).
    fn shortcuts(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if ctx.egui_wants_keyboard_input() || ctx.memory(|m| m.focused().is_some()) {
            return;
        }
        if ctx.input(|i| i.key_pressed(egui::Key::Space)) {
            if let Some(r) = self.run_view.active() {
                actions.push(if r.paused { Action::Resume } else { Action::Pause });
            }
        }
    }
}

/// Darkens the window while files are dragged over it.
fn drop_overlay(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let painter = ctx.layer_painter(LayerId::new(Order::Foreground, Id::unique("drop_overlay")));
    let rect = ctx.content_rect();
    painter.rect_filled(rect, 0.0, theme::DROP_OVERLAY_FILL);
    painter.text(
        rect.center(),
        Align2::CENTER_CENTER,
        "Drop to load this dataset",
        FontId::proportional(28.0),
        theme::DROP_OVERLAY_TEXT,
    );
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.persisted);
    }
}

/// Opens the app window (`genlab` or `genlab open …`); returns when it closes.
pub fn launch(startup: Startup) -> ExitCode {
    if let Some(name) = startup.preset.as_deref() {
        if preset(name, ImageShape::new(1, 28, 28)).is_none() {
            eprintln!("error: unknown preset `{name}`; presets: {}", presets().join(", "));
            return ExitCode::from(2);
        }
    }
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !has_display {
        eprintln!(
            "genlab needs a display (DISPLAY or WAYLAND_DISPLAY); the CLI works headless: genlab train --help"
        );
        return ExitCode::from(1);
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("genlab")
            .with_app_id("genlab")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let result = eframe::run_native(
        "genlab",
        options,
        Box::new(move |cc| Ok(Box::new(App::new(cc, startup)) as Box<dyn eframe::App>)),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("genlab could not open its window: {e}. The CLI works headless: genlab train --help");
            ExitCode::from(1)
        }
    }
}
