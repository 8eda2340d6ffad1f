//! A second dataset, loaded only to be scored against the current model (the Outliers tab's
//! "another dataset"). It has its own loader thread and file dialog, so loading it never
//! touches the training data or the run, and a failed load leaves the previous one in place.

use std::sync::Arc;

use super::loader::{DialogJob, DialogKind, DialogResult, LoadJob};
use super::run_view::Versioned;
use crate::engine::data::{DataError, DataSource, Dataset, LoadOptions};
use crate::engine::worker::Waker;

/// What happened since the last [`OtherData::poll`], for the app's notices.
pub enum OtherDataNews {
    Loaded(String),
    Failed(String),
    Cancelled,
    NoDialog,
}

#[derive(Default)]
pub struct OtherData {
    /// The loaded set; the version changes with every load.
    pub loaded: Option<Versioned<Arc<Dataset>>>,
    pub loading: Option<LoadJob>,
    dialog: Option<DialogJob>,
    version: u64,
}

impl OtherData {
    pub fn dialog_open(&self) -> bool {
        self.dialog.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.loading.is_some() || self.dialog.is_some()
    }

    /// Starts loading `source` (ignored while a load is under way).
    pub fn start_load(&mut self, source: DataSource, waker: Waker) -> Result<(), String> {
        if self.loading.is_some() {
            return Ok(());
        }
        self.loading = Some(LoadJob::spawn(source, LoadOptions::default(), waker)?);
        Ok(())
    }

    pub fn cancel(&self) {
        if let Some(job) = &self.loading {
            job.cancel();
        }
    }

    pub fn open_dialog(&mut self, kind: DialogKind, waker: Waker) -> Result<(), String> {
        if self.dialog.is_none() {
            self.dialog = Some(DialogJob::spawn(kind, None, waker)?);
        }
        Ok(())
    }

    /// Takes what the loader and the dialog sent; a picked path starts loading at once.
    pub fn poll(&mut self, waker: &Waker) -> Option<OtherDataNews> {
        if let Some(result) = self.dialog.as_mut().and_then(|d| d.poll()) {
            self.dialog = None;
            match result {
                DialogResult::Picked(path) => {
                    if let Err(e) = self.start_load(DataSource::Path(path), waker.clone()) {
                        return Some(self.failed(e));
                    }
                }
                DialogResult::Cancelled => {}
                DialogResult::Unavailable => return Some(OtherDataNews::NoDialog),
            }
        }
        let result = self.loading.as_mut().and_then(|job| job.poll())?;
        let source = self.loading.take().map(|j| j.source).unwrap_or(DataSource::Builtin);
        Some(match result {
            Ok(data) if data.is_empty() => self.failed(format!("{source} holds no images")),
            Ok(data) => {
                self.version += 1;
                let name = data.name.clone();
                self.loaded = Some(Versioned { version: self.version, value: Arc::new(data) });
                OtherDataNews::Loaded(name)
            }
            Err(DataError::Cancelled) => OtherDataNews::Cancelled,
            Err(e) => self.failed(e.to_string()),
        })
    }

    /// The message of a failed load (shown once, as the app's error notice).
    fn failed(&self, message: String) -> OtherDataNews {
        let keep = match &self.loaded {
            Some(d) => format!(" {} stays loaded.", d.value.name),
            None => String::new(),
        };
        OtherDataNews::Failed(format!("Could not load the dataset to compare: {message}.{keep}"))
    }
}
