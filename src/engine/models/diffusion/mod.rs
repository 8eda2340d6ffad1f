//! Diffusion and flow matching (issue #17): a denoiser trained to undo a noising process.

pub mod schedule;
