//! Data intake and actions, no drawing: drain the worker, the loader and the file dialog into
//! the app's state at the start of a frame; carry out the panels' [`Action`]s at its end.

use std::path::PathBuf;
use std::time::Instant;

use super::actions::Action;
use super::loader::{CheckpointJob, DialogJob, DialogKind, DialogResult, LoadJob};
use super::other_data::OtherDataNews;
use super::panels::dataset::LoadedDataset;
use super::sink::CommandSink;
use super::theme;
use super::widgets::notices::NoticeKind;
use super::App;
use crate::engine::checkpoint::CheckpointMeta;
use crate::engine::config::preset;
use crate::engine::data::{DataError, DataSource};
use crate::engine::protocol::{Command, DataSpec, QualitySchedule};
use crate::engine::worker::{SendError, Worker, COMMAND_CAPACITY};

impl App {
    /// Folds everything that arrived since the last frame into the app's state.
    pub(super) fn drain(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        for ev in self.sink.try_events() {
            self.run_view.apply(ev, now);
        }
        for msg in self.run_view.take_messages() {
            self.notices.error(msg);
        }
        for msg in self.run_view.take_warnings() {
            self.notices.push(NoticeKind::Warning, msg);
        }

        if let Some(result) = self.loading.as_mut().and_then(|job| job.poll()) {
            let source = self.loading.take().map(|j| j.source).unwrap_or(DataSource::Builtin);
            self.finish_load(source, result);
        }

        if let Some(result) = self.checkpoint_job.as_mut().and_then(|j| j.poll()) {
            let dir = self.checkpoint_job.take().map(|j| j.dir).unwrap_or_default();
            self.finish_checkpoint_load(dir, result);
        }

        if let Some(result) = self.dialog.as_mut().and_then(|d| d.poll()) {
            self.dialog = None;
            match result {
                DialogResult::Picked(path) => self.start_load(DataSource::Path(path)),
                DialogResult::Cancelled => {}
                DialogResult::Unavailable => self.notices.push(
                    NoticeKind::Warning,
                    "No file dialog is available here (it needs a desktop portal or zenity). Type the path into the Path field and click Load.",
                ),
            }
        }

        match self.other.poll(&self.waker) {
            Some(OtherDataNews::Failed(msg)) => self.notices.error(msg),
            Some(OtherDataNews::Cancelled) => self.notices.push(NoticeKind::Info, "Loading cancelled."),
            Some(OtherDataNews::NoDialog) => self.notices.push(
                NoticeKind::Warning,
                "No file dialog is available here (it needs a desktop portal or zenity). Type the path into the Outliers tab's path field and click Load and score.",
            ),
            Some(OtherDataNews::Loaded(_)) | None => {}
        }

        let dropped: Vec<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if let Some(path) = dropped.into_iter().next() {
            if self.loading.is_none() && self.run_view.active().is_none() {
                self.start_load(DataSource::Path(path));
            } else {
                self.notices.push(
                    NoticeKind::Warning,
                    "Finish the current load or run before loading another dataset.",
                );
            }
        }

        if self.pending_train && self.dataset.is_some() && self.loading.is_none() {
            self.pending_train = false;
            self.act(Action::Train, ctx);
        }
    }

    pub(super) fn start_load(&mut self, source: DataSource) {
        if self.loading.is_some() {
            return;
        }
        if let DataSource::Path(p) = &source {
            self.dataset_panel.path = p.display().to_string();
        }
        match LoadJob::spawn(source, self.persisted.load.options(), self.waker.clone()) {
            Ok(job) => self.loading = Some(job),
            Err(e) => self.notices.error(e),
        }
    }

    pub(super) fn finish_load(
        &mut self,
        source: DataSource,
        result: Result<crate::engine::data::Dataset, DataError>,
    ) {
        match result {
            Ok(data) => {
                self.fallback_to_builtin = false;
                let cfg = &mut self.persisted.config;
                if let Some(name) = self.pending_preset.take() {
                    match preset(&name, data.shape) {
                        Some(p) => *cfg = p,
                        None => self.notices.error(format!("unknown preset `{name}`")),
                    }
                }
                // The model reads what the data holds.
                cfg.model.net_mut().input = data.shape;
                crate::engine::config::fit_classes(cfg, &data);
                self.persisted.remember_dataset(&source);
                self.data_version += 1;
                if data.is_empty() {
                    self.notices.push(NoticeKind::Warning, format!("{} holds no images", data.name));
                }
                self.dataset = Some(LoadedDataset::new(data, self.data_version));
            }
            Err(DataError::Cancelled) => {
                self.notices.push(NoticeKind::Info, "Loading cancelled; the previous dataset stays loaded.")
            }
            Err(e) => {
                let keep = if self.dataset.is_some() { " The previous dataset stays loaded." } else { "" };
                self.notices.error(format!("Could not load the dataset: {e}.{keep}"));
                self.pending_train = false;
                if self.dataset.is_none() && self.fallback_to_builtin {
                    self.fallback_to_builtin = false;
                    self.start_load(DataSource::Builtin);
                }
            }
        }
    }

    /// Starts a paused run from a checkpoint that was read and checked, if it fits the loaded
    /// data; otherwise says why and changes nothing (the current run and settings stay).
    fn finish_checkpoint_load(&mut self, dir: PathBuf, result: Result<CheckpointMeta, String>) {
        let fail = |why: String| format!("Could not load the checkpoint {}: {why}", dir.display());
        let meta = match result {
            Ok(m) => m,
            Err(e) => return self.notices.error(fail(e)),
        };
        let Some(d) = &self.dataset else {
            return self.notices.error(fail("load a dataset to continue on first".into()));
        };
        let data = d.data.clone();
        let mut config = meta.config;
        if config.model.input() != data.shape {
            return self.notices.error(fail(format!(
                "its model reads {} images but the loaded dataset ({}) has {}; load the data it was trained on ({})",
                config.model.input(), data.name, data.shape, meta.data_source
            )));
        }
        let train = data.split(config.train.test_fraction, config.train.seed).train.len();
        if config.train.batch_size > train {
            return self.notices.error(fail(format!(
                "its batch size {} is larger than the {train} training images of {}",
                config.train.batch_size, data.name
            )));
        }
        // How many threads and which device to use is this machine's choice, not the
        // checkpoint's.
        config.train.threads = self.persisted.config.train.threads;
        config.train.device = self.persisted.config.train.device;
        self.sync_quality();
        let cmd = Command::Start {
            config: Box::new(config.clone()),
            data: DataSpec::Loaded(data.clone()),
            checkpoint: Some(dir.clone()),
            paused: true,
        };
        if !self.send(cmd) {
            return self.notices.error(fail("the training thread is not running".into()));
        }
        self.persisted.config = config;
        self.run_view.start_requested();
        let elsewhere = if meta.data_source != data.source {
            format!(" It was trained on {}; it continues on {}.", meta.data_source, data.name)
        } else {
            String::new()
        };
        self.notices.push(
            NoticeKind::Info,
            format!(
                "Loaded {} at step {} (paused: Resume continues training).{elsewhere}",
                dir.display(),
                meta.step
            ),
        );
    }

    /// Queues a command without waiting (a frame never blocks on the worker), restarting the
    /// worker once if it has gone away; a full queue drops the command and says so.
    fn send(&mut self, cmd: Command) -> bool {
        let cmd = match self.sink.try_send(cmd) {
            Ok(()) => return true,
            Err(SendError::Full(_)) => {
                self.notices.error(format!(
                    "The training thread is busy with {COMMAND_CAPACITY} requests waiting; this one was \
                     dropped. Try again once it has caught up."
                ));
                return false;
            }
            Err(SendError::Gone(cmd)) => cmd,
        };
        self.notices.error("The training thread had stopped; it was restarted.");
        self.sink = CommandSink::Worker(Worker::spawn(self.waker.clone()));
        self.worker_quality = QualitySchedule::Off;
        if self.persisted.quality != QualitySchedule::Off {
            let _ = self.sink.try_send(Command::SetQuality(self.persisted.quality));
            self.worker_quality = self.persisted.quality;
        }
        self.sink.try_send(*cmd).is_ok()
    }

    /// Tells the worker the quality schedule when it differs from what it was last told.
    pub(super) fn sync_quality(&mut self) {
        let want = self.persisted.quality;
        if want != self.worker_quality && self.send(Command::SetQuality(want)) {
            self.worker_quality = want;
        }
    }

    fn start_run(&mut self, paused: bool) -> bool {
        if let Some(why) = self.train_blocker() {
            self.notices.error(format!("Cannot train: {why}"));
            return false;
        }
        self.sync_quality();
        let Some(d) = &self.dataset else { return false };
        let cmd = Command::Start {
            config: Box::new(self.persisted.config.clone()),
            data: DataSpec::Loaded(d.data.clone()),
            checkpoint: None,
            paused,
        };
        let ok = self.send(cmd);
        if ok {
            self.run_view.start_requested();
        }
        ok
    }

    /// Carries out one action.
    pub(super) fn act(&mut self, action: Action, ctx: &egui::Context) {
        match action {
            Action::Train => {
                self.start_run(false);
            }
            Action::Pause => {
                self.send(Command::Pause);
            }
            Action::Resume => {
                self.send(Command::Resume);
            }
            Action::Step => {
                // Without a run, start one paused; then take one batch.
                if self.run_view.active().is_some() || self.start_run(true) {
                    self.send(Command::Step(1));
                }
            }
            Action::Stop => {
                self.send(Command::Stop);
            }
            Action::SetLearningRate(lr) => {
                self.send(Command::SetLearningRate(lr));
            }
            Action::SetBeta(b) => {
                self.send(Command::SetBeta(b));
            }
            Action::SetHyper(hyper, value) => {
                self.send(Command::SetHyper { hyper, value });
            }
            Action::ResumeWithLearningRate(lr) => {
                self.persisted.config.optim.lr = lr;
                self.send(Command::SetLearningRate(lr));
                self.send(Command::Resume);
            }
            Action::Load(src) => self.start_load(src),
            Action::CancelLoad => {
                if let Some(job) = &self.loading {
                    job.cancel();
                }
            }
            Action::OpenFileDialog | Action::OpenFolderDialog => {
                if self.dialog.is_some() {
                    return;
                }
                let kind = if matches!(action, Action::OpenFileDialog) {
                    DialogKind::File
                } else {
                    DialogKind::Folder
                };
                let start_dir = match &self.persisted.last_dataset {
                    Some(DataSource::Path(p)) => p.parent().map(|d| d.to_path_buf()),
                    _ => None,
                };
                match DialogJob::spawn(kind, start_dir, self.waker.clone()) {
                    Ok(d) => self.dialog = Some(d),
                    Err(e) => self.notices.error(format!("{e}. Type the path into the Path field instead.")),
                }
            }
            Action::LoadOther(src) => {
                if let Err(e) = self.other.start_load(src, self.waker.clone()) {
                    self.notices.error(e);
                }
            }
            Action::CancelOtherLoad => self.other.cancel(),
            Action::OpenOtherDialog(kind) => {
                if let Err(e) = self.other.open_dialog(kind, self.waker.clone()) {
                    self.notices.error(format!("{e}. Type the path into the path field instead."));
                }
            }
            Action::ApplyPreset(name) => {
                let shape = self.persisted.config.model.input();
                match preset(&name, shape) {
                    Some(mut p) => {
                        // Machine and data choices are not the preset's to change.
                        p.train.threads = self.persisted.config.train.threads;
                        p.train.device = self.persisted.config.train.device;
                        p.train.kernels = self.persisted.config.train.kernels;
                        p.train.test_fraction = self.persisted.config.train.test_fraction;
                        self.persisted.config = p;
                    }
                    None => self.notices.error(format!("unknown preset `{name}`")),
                }
            }
            Action::DismissNotice(id) => self.notices.dismiss(id),
            Action::SetTheme(t) => {
                self.persisted.theme = t;
                theme::apply(ctx, t);
            }
            Action::SelectTab(t) => self.persisted.tab = t,
            Action::LoadCheckpoint(dir) => {
                if self.checkpoint_job.is_some() {
                    return;
                }
                if self.loading.is_some() {
                    self.notices.error("Wait for the dataset to load before loading a checkpoint.");
                    return;
                }
                match CheckpointJob::spawn(dir, self.waker.clone()) {
                    Ok(job) => self.checkpoint_job = Some(job),
                    Err(e) => self.notices.error(e),
                }
            }
            Action::Worker(cmd) => {
                self.send(cmd);
            }
        }
    }

    /// Train/test image counts of the loaded data under the configured test share (cached).
    pub(super) fn split_counts(&mut self) -> Option<(usize, usize)> {
        let d = self.dataset.as_ref()?;
        let frac = self.persisted.config.train.test_fraction;
        let key = (d.version, frac.to_bits());
        match self.split_cache {
            Some((k, counts)) if k == key => Some(counts),
            _ => {
                let s = d.data.split(frac, self.persisted.config.train.seed);
                let counts = (s.train.len(), s.test.len());
                self.split_cache = Some((key, counts));
                Some(counts)
            }
        }
    }

    /// What is wrong with the settings for the loaded data, if anything.
    pub(super) fn config_problem(&mut self) -> Option<String> {
        let cfg = &self.persisted.config;
        if let Err(e) = cfg.validate() {
            return Some(e.to_string());
        }
        let d = self.dataset.as_ref()?;
        if cfg.model.input() != d.data.shape {
            return Some(format!(
                "the model reads {} images but the dataset has {}",
                cfg.model.input(),
                d.data.shape
            ));
        }
        let batch = cfg.train.batch_size;
        let (train, _) = self.split_counts()?;
        if batch > train {
            return Some(format!("batch size {batch} is larger than the {train} training images"));
        }
        None
    }

    /// Why Train is disabled, if it is.
    pub(super) fn train_blocker(&mut self) -> Option<String> {
        if self.loading.is_some() {
            return Some("a dataset is loading".into());
        }
        if self.dataset.is_none() {
            return Some("load a dataset first".into());
        }
        self.config_problem()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::data::LoadOptions;
    use crate::engine::worker::StepHook;

    #[test]
    fn a_full_command_queue_drops_the_command_with_a_notice_and_never_blocks_the_frame() {
        let entered = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let hook: StepHook = {
            let (entered, release) = (entered.clone(), release.clone());
            Arc::new(move |_run, _step| {
                entered.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let mut app = App::with_worker(Worker::spawn_with_hook(Arc::new(|| {}), Some(hook)));
        let ctx = egui::Context::default();
        let config = Box::new(app.persisted.config.clone());
        let data = DataSpec::Source(DataSource::Builtin, LoadOptions::default());
        app.act(Action::Worker(Command::Start { config, data, checkpoint: None, paused: false }), &ctx);
        let t0 = Instant::now();
        while !entered.load(Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(60), "the run never took a step");
            std::thread::sleep(Duration::from_millis(5));
        }

        let t0 = Instant::now();
        for _ in 0..=COMMAND_CAPACITY {
            app.act(Action::Worker(Command::SetLearningRate(1e-3)), &ctx);
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "sending waited on the worker");
        assert!(app.errors().iter().any(|e| e.contains("busy")), "errors: {:?}", app.errors());
        // Dropping the app shuts the worker down through the full queue once it is free.
        release.store(true, Ordering::SeqCst);
        drop(app);
    }
}
