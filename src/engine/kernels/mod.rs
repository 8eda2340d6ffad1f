//! The hand-written CPU kernels (candle custom ops) the models run on, their reference path in
//! candle's stock ops ([`reference`]), and the one seam they are called through: [`Exec`].
//! Models import from here (`crate::engine::kernels::…`), never from the files below, so that
//! the choice of kernel is made in this one place: the fused op when the run asks for it
//! ([`KernelPath::Fused`], the default) and the tensors are f32 on the CPU, the reference op
//! otherwise (any other device, or `--kernels reference`).
//!
//! One op per file: [`linear`] (a fully connected layer and its activation), [`row_loss`],
//! [`batch_norm_act`], the convolutions (`conv/`), im2col / col2im ([`unfold`], [`fold`]), the
//! group norm + SiLU and nearest ×2 up-sampling (the diffusion U-Net's), the
//! Adam update and the gradients' finiteness check ([`adam_update`], [`all_finite`]).
//! Beside them: the activations they end in (`epilogue`), the side channel for parameter
//! gradients ([`SideGrads`]), gemm helpers and vectorisable maths ([`fastmath`]).
//!
//! Threads: a kernel splits its work over the rayon pool it runs in
//! (`rayon::current_num_threads()`); a run's maths runs inside [`pool::build`]'s pool.

mod adam;
mod batch_norm;
mod buffers;
mod conv;
mod cpu;
mod epilogue;
pub mod fastmath;
mod gemm;
mod group_norm;
mod im2col;
mod im2col_plane;
mod linear;
pub mod pool;
pub mod reference;
mod row_loss;
mod side_grads;
mod upsample;
// Only x86-64 kernels have SIMD paths to switch off; elsewhere every loop is the portable one.
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
mod testing;

pub use adam::{adam_update, all_finite, AdamStep};
pub use batch_norm::{batch_norm_act, BatchStats};
pub use conv::{conv2d, conv2d_act, conv_transpose2d, conv_transpose2d_act};
pub use epilogue::{Epilogue, LEAKY_SLOPE};
pub use im2col::{fold, unfold, Geometry};
pub use linear::linear;
pub use row_loss::{row_loss, RowLoss};
pub use side_grads::SideGrads;

mod exec;
pub use exec::{Exec, KernelPath, Moments};
