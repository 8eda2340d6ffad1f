//! The engine's error type: every failure the app or CLI shows to a user.

use std::path::PathBuf;

use super::data::DataError;

/// Anything that can go wrong in the engine. Each message is meant for the user as it is.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Data(#[from] DataError),
    /// A configuration that cannot be built (the message says which setting and why).
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), source }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EngineError::Checkpoint { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
