//! Background jobs that must never block a frame: loading a dataset (named thread
//! `genlab-loader`, with progress and cancel), the system file picker (named thread
//! `genlab-file-dialog`) and reading a checkpoint (`genlab-checkpoint`). Each job hands its
//! result back over a channel the app polls.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use crate::engine::checkpoint::{self, CheckpointMeta};
use crate::engine::data::{self, DataError, DataSource, Dataset, LoadOptions};
use crate::engine::worker::Waker;

/// A dialog that answers faster than this most likely never showed (no portal, no zenity).
const NO_DIALOG_THRESHOLD: Duration = Duration::from_millis(300);

enum LoadMsg {
    Progress(usize, usize),
    Done(Box<Result<Dataset, DataError>>),
}

/// A dataset being loaded on its own thread.
pub struct LoadJob {
    pub source: DataSource,
    /// `(done, total)` as the loader reports it (folders only; files report nothing).
    pub progress: Option<(usize, usize)>,
    pub started: Instant,
    cancel: Arc<AtomicBool>,
    rx: Receiver<LoadMsg>,
}

impl LoadJob {
    /// Starts loading `source` on a new thread.
    pub fn spawn(source: DataSource, opts: LoadOptions, waker: Waker) -> Result<Self, String> {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let src = source.clone();
        std::thread::Builder::new()
            .name("genlab-loader".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut progress = |done: usize, total: usize| {
                    // Progress is advisory: drop it when the UI lags, send at most ~30 a second.
                    if last.elapsed() > Duration::from_millis(33) || done == total {
                        last = Instant::now();
                        if tx.try_send(LoadMsg::Progress(done, total)).is_ok() {
                            waker();
                        }
                    }
                    !flag.load(Ordering::Relaxed)
                };
                let result = data::load_with_progress(&src, &opts, &mut progress);
                let result = match result {
                    Ok(_) if flag.load(Ordering::Relaxed) => Err(DataError::Cancelled),
                    other => other,
                };
                let _ = tx.send(LoadMsg::Done(Box::new(result)));
                waker();
            })
            .map_err(|e| format!("could not start the loader thread: {e}"))?;
        Ok(Self { source, progress: None, started: Instant::now(), cancel, rx })
    }

    /// Asks the loader to stop; it answers with [`DataError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelling(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Takes what has arrived; `Some` once the load is over.
    pub fn poll(&mut self) -> Option<Result<Dataset, DataError>> {
        loop {
            match self.rx.try_recv() {
                Ok(LoadMsg::Progress(d, t)) => self.progress = Some((d, t)),
                Ok(LoadMsg::Done(r)) => return Some(*r),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    let msg = "the loader thread stopped unexpectedly".to_string();
                    let path = match &self.source {
                        DataSource::Path(p) => p.clone(),
                        other => PathBuf::from(other.to_string()),
                    };
                    return Some(Err(DataError::Invalid { path, message: msg }));
                }
            }
        }
    }
}

/// What to pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    File,
    Folder,
}

/// How a file dialog ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogResult {
    Picked(PathBuf),
    Cancelled,
    /// It returned at once with nothing: no desktop portal or zenity to show one.
    Unavailable,
}

/// A system file picker running on a helper thread.
pub struct DialogJob {
    pub kind: DialogKind,
    rx: Receiver<(Option<PathBuf>, Duration)>,
}

/// What a dialog for writing asks for.
#[derive(Clone, Debug)]
pub enum SaveDialog {
    /// A file to write: the dialog's title, a suggested name and the extensions it offers.
    File { title: &'static str, file_name: String, extensions: &'static [&'static str] },
    /// A folder to write into (or a checkpoint folder to read).
    Folder { title: &'static str },
}

impl DialogJob {
    pub fn spawn(kind: DialogKind, start_dir: Option<PathBuf>, waker: Waker) -> Result<Self, String> {
        Self::spawn_with(kind, waker, move || {
            let mut dialog = rfd::AsyncFileDialog::new();
            if let Some(dir) = start_dir {
                dialog = dialog.set_directory(dir);
            }
            let picked = match kind {
                DialogKind::File => {
                    pollster::block_on(dialog.set_title("Open an IDX or CSV file").pick_file())
                }
                DialogKind::Folder => {
                    pollster::block_on(dialog.set_title("Open a folder of images").pick_folder())
                }
            };
            picked.map(|h| h.path().to_path_buf())
        })
    }

    /// A save dialog (or a folder picker) for an export or a checkpoint.
    pub fn spawn_save(what: SaveDialog, start_dir: Option<PathBuf>, waker: Waker) -> Result<Self, String> {
        let kind = match what {
            SaveDialog::File { .. } => DialogKind::File,
            SaveDialog::Folder { .. } => DialogKind::Folder,
        };
        Self::spawn_with(kind, waker, move || {
            let mut dialog = rfd::AsyncFileDialog::new();
            if let Some(dir) = start_dir {
                dialog = dialog.set_directory(dir);
            }
            let picked = match what {
                SaveDialog::File { title, file_name, extensions } => pollster::block_on(
                    dialog
                        .set_title(title)
                        .set_file_name(file_name)
                        .add_filter(extensions.join(", ").to_uppercase(), extensions)
                        .save_file(),
                ),
                SaveDialog::Folder { title } => pollster::block_on(dialog.set_title(title).pick_folder()),
            };
            picked.map(|h| h.path().to_path_buf())
        })
    }

    fn spawn_with(
        kind: DialogKind,
        waker: Waker,
        pick: impl FnOnce() -> Option<PathBuf> + Send + 'static,
    ) -> Result<Self, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("genlab-file-dialog".into())
            .spawn(move || {
                let t0 = Instant::now();
                let picked = pick();
                let _ = tx.send((picked, t0.elapsed()));
                waker();
            })
            .map_err(|e| format!("could not start the file dialog thread: {e}"))?;
        Ok(Self { kind, rx })
    }

    /// `Some` once the dialog has closed.
    pub fn poll(&mut self) -> Option<DialogResult> {
        match self.rx.try_recv() {
            Ok((Some(p), _)) => Some(DialogResult::Picked(p)),
            Ok((None, took)) if took < NO_DIALOG_THRESHOLD => Some(DialogResult::Unavailable),
            Ok((None, _)) => Some(DialogResult::Cancelled),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(DialogResult::Unavailable),
        }
    }
}

/// A checkpoint read and checked on its own thread before a run is started from it: the
/// configuration, the weights' checksum, and that the weights fit the model it describes.
pub struct CheckpointJob {
    pub dir: PathBuf,
    rx: Receiver<Result<CheckpointMeta, String>>,
}

impl CheckpointJob {
    pub fn spawn(dir: PathBuf, waker: Waker) -> Result<Self, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let d = dir.clone();
        std::thread::Builder::new()
            .name("genlab-checkpoint".into())
            .spawn(move || {
                let result = checkpoint::load(&d).map(|loaded| loaded.meta).map_err(|e| e.to_string());
                let _ = tx.send(result);
                waker();
            })
            .map_err(|e| format!("could not start the checkpoint reader thread: {e}"))?;
        Ok(Self { dir, rx })
    }

    /// `Some` once the checkpoint has been read.
    pub fn poll(&mut self) -> Option<Result<CheckpointMeta, String>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err("the checkpoint reader stopped unexpectedly".into())),
        }
    }
}
