//! The hand-written CPU kernels (candle custom ops) the models run on, and the one seam they
//! are called through: models import from here (`crate::engine::kernels::…`), never from the
//! files below, so that the choice of kernel is made in this one place.
//!
//! Today every entry point is the fused f32 CPU op. This module is where a later change adds
//! device dispatch: the fused ops for tensors on the CPU, candle's stock ops elsewhere (the
//! tests already hold those stock compositions as the fused ops' references).

mod conv_ops;
pub mod fastmath;
mod fused;

pub use conv_ops::{conv2d, conv2d_act, conv_transpose2d, conv_transpose2d_act, fold, unfold, Geometry};
pub use fused::{batch_norm_act, linear, row_loss, BatchStats, Epilogue, RowLoss, SideGrads, LEAKY_SLOPE};
