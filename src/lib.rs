//! genlab: a workbench for deep generative models.
//!
//! [`engine`] holds everything that trains and evaluates models (no GUI code);
//! the CLI ([`cli`]) and the app ([`app`]) are thin layers over it.
#[cfg(feature = "app")]
pub mod app;
pub mod bench;
pub mod cli;
pub mod engine;
