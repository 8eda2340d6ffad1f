//! What panels ask of the app. Panels push [`Action`]s; the app carries them out after the
//! frame is drawn, so no panel mutates app-wide state or talks to a thread.

use crate::engine::data::DataSource;
use crate::engine::protocol::Command;

use super::loader::DialogKind;
use super::state::ThemeChoice;

#[derive(Clone, Debug)]
pub enum Action {
    /// Start a run with the current configuration and dataset.
    Train,
    Pause,
    Resume,
    /// One batch (starts a paused run first when there is none).
    Step,
    Stop,
    /// Change the running model's learning rate (takes effect at the next step).
    SetLearningRate(f64),
    /// Change the running β-VAE's β (takes effect at the next step).
    SetBeta(f64),
    /// Change another live hyperparameter of the running model (a GAN's D learning rate or
    /// D:G step ratio; takes effect at the next step).
    SetHyper(crate::engine::models::LiveHyper, f64),
    /// After a divergence: set this learning rate, then resume.
    ResumeWithLearningRate(f64),
    /// Load a dataset on the loader thread.
    Load(DataSource),
    CancelLoad,
    /// Open the system file picker for a file / a folder.
    OpenFileDialog,
    OpenFolderDialog,
    /// Load a second dataset to score against the current model (the Outliers tab).
    LoadOther(DataSource),
    CancelOtherLoad,
    /// Open the system file picker for that second dataset.
    OpenOtherDialog(DialogKind),
    /// Replace the configuration with a preset adapted to the loaded images.
    ApplyPreset(String),
    DismissNotice(u64),
    SetTheme(ThemeChoice),
    SelectTab(String),
    /// Read a checkpoint folder, take its configuration and start a paused run from it on the
    /// loaded dataset (the current run stays if the folder does not fit).
    LoadCheckpoint(std::path::PathBuf),
    /// Pass a command to the worker as it is (samples, decoding, scoring, rewinding).
    Worker(Command),
}
