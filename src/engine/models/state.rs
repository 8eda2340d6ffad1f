//! Checkpoint state of a model: parameters, Adam moments and batch-norm statistics under
//! stable names, shared by every family's `state` / `load_state`.

use std::collections::HashMap;

use candle_core::Tensor;

use super::{layers, optim};
use crate::engine::error::{EngineError, Result};

/// Scalar of a 0-d or 1-element tensor as f64.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0])
}

/// Collects parameters and Adam state under stable names: `name`, `name.adam_m`, `name.adam_v`.
pub(crate) fn collect_state(
    params: &layers::ParamSet,
    adam: &optim::Adam,
    out: &mut HashMap<String, Tensor>,
) -> Result<()> {
    for ((name, var), moments) in params.params.iter().zip(&adam.moments) {
        let (m, v) = moments.to_cpu(var.shape())?;
        // A copy: the fused update changes the parameter's storage in place.
        out.insert(name.clone(), var.as_tensor().copy()?.to_device(&candle_core::Device::Cpu)?);
        out.insert(format!("{name}.adam_m"), m);
        out.insert(format!("{name}.adam_v"), v);
    }
    Ok(())
}

/// The inverse of [`collect_state`]: shapes must match exactly.
pub(crate) fn restore_state(
    params: &layers::ParamSet,
    adam: &mut optim::Adam,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    let get = |name: &str, shape: &candle_core::Shape| -> Result<Tensor> {
        let t = state.get(name).ok_or_else(|| EngineError::Other(format!("tensor `{name}` is missing")))?;
        if t.shape() != shape {
            return Err(EngineError::Other(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                t.dims(),
                shape.dims()
            )));
        }
        Ok(t.to_dtype(candle_core::DType::F32)?)
    };
    for ((name, var), moments) in params.params.iter().zip(adam.moments.iter_mut()) {
        let shape = var.shape().clone();
        var.set(&params.exec.put(&get(name, &shape)?)?)?;
        moments.set(&get(&format!("{name}.adam_m"), &shape)?, &get(&format!("{name}.adam_v"), &shape)?)?;
    }
    Ok(())
}

/// Saves and restores batch-norm running statistics under `prefix.bnK.running_{mean,var}`.
pub(crate) fn collect_bn(
    prefix: &str,
    bns: &[&layers::BatchNorm],
    out: &mut HashMap<String, Tensor>,
) -> Result<()> {
    for (i, bn) in bns.iter().enumerate() {
        let (m, v) = bn.running_stats();
        out.insert(format!("{prefix}.bn{i}.running_mean"), m.to_device(&candle_core::Device::Cpu)?);
        out.insert(format!("{prefix}.bn{i}.running_var"), v.to_device(&candle_core::Device::Cpu)?);
    }
    Ok(())
}

pub(crate) fn restore_bn(
    prefix: &str,
    bns: &[&layers::BatchNorm],
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    for (i, bn) in bns.iter().enumerate() {
        let (mean, _) = bn.running_stats();
        let get = |k: &str| -> Result<Tensor> {
            let name = format!("{prefix}.bn{i}.{k}");
            let t =
                state.get(&name).ok_or_else(|| EngineError::Other(format!("tensor `{name}` is missing")))?;
            if t.shape() != mean.shape() {
                return Err(EngineError::Other(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    mean.dims()
                )));
            }
            Ok(t.to_dtype(candle_core::DType::F32)?)
        };
        bn.set_running_stats(get("running_mean")?, get("running_var")?)?;
    }
    Ok(())
}
