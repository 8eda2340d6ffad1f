//! [`Exec`]: where a model computes (its candle device) and which kernels it runs. Every op a
//! model calls goes through it, and each method makes the one choice: the fused CPU op when the
//! run asks for it and the tensors are f32 on the CPU, the [`reference`] op otherwise.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{adam, batch_norm, conv, group_norm, linear, reference, row_loss, upsample};
use super::{AdamStep, Epilogue, Geometry, RowLoss, SideGrads};

/// Which implementation of the ops a run asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KernelPath {
    /// The hand-written CPU ops (tensors on another device still take the reference ops).
    #[default]
    Fused,
    /// candle's stock ops everywhere: slower on the CPU, the same maths.
    Reference,
}

impl KernelPath {
    pub const ALL: [KernelPath; 2] = [KernelPath::Fused, KernelPath::Reference];

    /// The name in configurations and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            KernelPath::Fused => "fused",
            KernelPath::Reference => "reference",
        }
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A model's device and kernel path. Cheap to clone (a candle device is a handle).
#[derive(Clone, Debug)]
pub struct Exec {
    device: Device,
    path: KernelPath,
}

impl Default for Exec {
    fn default() -> Self {
        Self::cpu()
    }
}

impl Exec {
    pub fn new(device: Device, path: KernelPath) -> Self {
        Self { device, path }
    }

    /// The CPU with the fused kernels.
    pub fn cpu() -> Self {
        Self::new(Device::Cpu, KernelPath::Fused)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// This device with candle's stock ops, whose gradients can be differentiated again: the
    /// fused ops' backward passes are hand-written and not themselves differentiable, and a
    /// gradient penalty (WGAN-GP) differentiates D's input gradient with respect to D's
    /// parameters. A network built with it runs on the reference path whatever the run asks.
    pub fn twice_differentiable(&self) -> Self {
        Self::new(self.device.clone(), KernelPath::Reference)
    }

    /// Whether the fused op runs on `x`.
    fn fused(&self, x: &Tensor) -> bool {
        self.path == KernelPath::Fused && x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// `t` on this device: the same tensor when it is there already, else a copy.
    pub fn put(&self, t: &Tensor) -> Result<Tensor> {
        if t.device().same_device(&self.device) {
            Ok(t.clone())
        } else {
            t.to_device(&self.device)
        }
    }

    /// `act(x Wᵀ + b)`; the fused op hands the gradients of `w` and `b` to `sink`.
    pub fn linear(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        e: Epilogue,
        sink: &SideGrads,
    ) -> Result<Tensor> {
        if self.fused(x) {
            linear::linear(x, w, b, e, Some(sink))
        } else {
            reference::linear(x, w, b, e)
        }
    }

    /// The per-row reconstruction loss `[B, D], [B, D] → [B]`.
    pub fn row_loss(&self, logits: &Tensor, target: &Tensor, kind: RowLoss) -> Result<Tensor> {
        if self.fused(logits) {
            row_loss::row_loss(logits, target, kind)
        } else {
            reference::row_loss(logits, target, kind)
        }
    }

    /// Training-mode batch norm and `e`: the output and the batch's mean and (biased) variance,
    /// detached, shaped like `gamma`.
    pub fn batch_norm_act(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
        e: Epilogue,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        if !self.fused(x) {
            return reference::batch_norm_act(x, gamma, beta, eps, e);
        }
        let (y, stats) = batch_norm::batch_norm_act(x, gamma, beta, eps, e)?;
        let (mean, var) = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let shape = gamma.shape();
        Ok((y, Tensor::from_vec(mean, shape, x.device())?, Tensor::from_vec(var, shape, x.device())?))
    }

    /// Group normalisation (statistics per image and group of `C / groups` channels) and SiLU:
    /// `x [B, C, H, W]`, `γ, β [1, C, 1, 1]` → `[B, C, H, W]`.
    pub fn group_norm_silu(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        groups: usize,
        eps: f32,
    ) -> Result<Tensor> {
        if self.fused(x) {
            group_norm::group_norm_silu(x, gamma, beta, groups, eps)
        } else {
            reference::group_norm_silu(x, gamma, beta, groups, eps)
        }
    }

    /// Nearest-neighbour ×2 up-sampling `[B, C, H, W] → [B, C, 2H, 2W]`.
    pub fn upsample_nearest2x(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused(x) {
            upsample::upsample_nearest2x(x)
        } else {
            let (_, _, h, w) = x.dims4()?;
            x.upsample_nearest2d(2 * h, 2 * w)
        }
    }

    /// `act(conv2d(x, w) + b)`; the fused op hands the gradients of `w` and `b` to `sink`.
    pub fn conv2d_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        geom: Geometry,
        e: Epilogue,
        sink: &SideGrads,
    ) -> Result<Tensor> {
        if self.fused(x) {
            conv::conv2d_act(x, w, b, geom, e, Some(sink))
        } else {
            reference::conv2d_act(x, w, b, geom, e)
        }
    }

    /// `act(conv_transpose2d(x, w) + b)`; the fused op hands the gradients of `w` and `b` to
    /// `sink`.
    pub fn conv_transpose2d_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        geom: Geometry,
        e: Epilogue,
        sink: &SideGrads,
    ) -> Result<Tensor> {
        if self.fused(x) {
            conv::conv_transpose2d_act(x, w, b, geom, e, Some(sink))
        } else {
            reference::conv_transpose2d_act(x, w, b, geom, e)
        }
    }

    /// Fresh (zero) Adam moments for `param`: host vectors for the fused update, tensors on the
    /// parameter's device for the reference one.
    pub fn moments(&self, param: &Tensor) -> Result<Moments> {
        Ok(if self.fused(param) {
            Moments::Host { m: vec![0.0; param.elem_count()], v: vec![0.0; param.elem_count()] }
        } else {
            Moments::Device { m: param.zeros_like()?, v: param.zeros_like()? }
        })
    }

    /// One Adam step on `param` in place, with the update its moments were made for.
    pub fn adam_update(&self, param: &Var, grad: &Tensor, moments: &mut Moments, s: AdamStep) -> Result<()> {
        match moments {
            Moments::Host { m, v } => adam::adam_update(param.as_tensor(), grad, m, v, s),
            Moments::Device { m, v } => reference::adam_update(param, grad, m, v, s),
        }
    }

    /// Whether every value of every gradient is finite.
    pub fn all_finite(&self, grads: &[&Tensor]) -> Result<bool> {
        if grads.iter().all(|g| self.fused(g)) {
            Ok(grads.iter().all(|g| adam::all_finite(g)))
        } else {
            reference::all_finite(grads)
        }
    }
}

/// Adam's first and second moments of one parameter.
pub enum Moments {
    /// For the fused CPU update.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Tensors on the parameter's device, for the reference update.
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    /// Both moments as CPU tensors of `shape` (for checkpoints).
    pub fn to_cpu(&self, shape: &Shape) -> Result<(Tensor, Tensor)> {
        match self {
            Moments::Host { m, v } => {
                Ok((Tensor::from_slice(m, shape, &Device::Cpu)?, Tensor::from_slice(v, shape, &Device::Cpu)?))
            }
            Moments::Device { m, v } => Ok((m.to_device(&Device::Cpu)?, v.to_device(&Device::Cpu)?)),
        }
    }

    /// Replaces both moments by `m` and `v` (of the parameter's shape, on any device).
    pub fn set(&mut self, m: &Tensor, v: &Tensor) -> Result<()> {
        match self {
            Moments::Host { m: hm, v: hv } => {
                *hm = m.flatten_all()?.to_vec1()?;
                *hv = v.flatten_all()?.to_vec1()?;
            }
            Moments::Device { m: dm, v: dv } => {
                *dm = m.to_device(dm.device())?;
                *dv = v.to_device(dv.device())?;
            }
        }
        Ok(())
    }
}
