//! The engine: datasets, models, training, checkpoints and scoring. No GUI code lives here, so
//! everything below is tested headlessly and shared by the app, the CLI and the benchmarks.

pub mod data;
pub mod device;
pub mod disentangle;
pub mod error;
pub mod kernels;
pub mod models;

pub use error::{EngineError, Result};
pub mod checkpoint;
pub mod conditional;
pub mod config;
pub mod explore;
pub mod export;
pub mod fsio;
pub mod images;
pub mod metrics;
pub mod parity;
pub mod prior;
pub mod protocol;
pub mod quality;
pub mod rewind;
pub mod scoring;
pub mod session;
pub mod sweep;
pub mod worker;
