//! genlab: a workbench for deep generative models.
//!
//! [`engine`] holds everything that trains and evaluates models (no GUI code);
//! the app and the CLI are thin layers over it.
pub mod engine;
