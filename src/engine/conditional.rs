//! Views of a conditional model that set the class apart from the noise: the class × noise
//! grid, interpolation between two classes at fixed noise, and "same style, other class"
//! (one image's code decoded under every label). Shared by the worker, the CLI and the tests.

use candle_core::{Device, Tensor};

use super::error::{EngineError, Result};
use super::images::ImageBatch;
use super::models::{default_labels, GenerativeModel};

/// Noise vectors (rows) of the worker's class × noise grid: the first rows of the fixed noise.
pub const CLASS_GRID_ROWS: usize = 8;

/// The classes of a conditional model, or an error naming what was asked of an unconditional one.
fn classes(model: &dyn GenerativeModel, what: &str) -> Result<usize> {
    match model.classes() {
        0 => Err(EngineError::Config(format!(
            "{what} needs a conditional model (train a conditional preset such as mnist_cvae)"
        ))),
        k => Ok(k),
    }
}

/// Row `r` of `z: [R, L]` repeated `times` times in place: `[R · times, L]`.
fn repeat_rows(z: &Tensor, times: usize) -> Result<Tensor> {
    let rows = z.dim(0)?;
    let idx: Vec<u32> = (0..rows * times).map(|i| (i / times) as u32).collect();
    Ok(z.index_select(&Tensor::from_vec(idx, rows * times, &Device::Cpu)?, 0)?)
}

/// The class × noise grid of noise `z: [R, L]`: image `r · K + c` is noise `r` as class `c`
/// (one column per class, one row per noise vector).
pub fn class_grid_of(model: &dyn GenerativeModel, z: &Tensor) -> Result<ImageBatch> {
    let k = classes(model, "a grid by class")?;
    let rows = z.dim(0)?;
    let z = repeat_rows(&z.to_device(&Device::Cpu)?, k)?; // [R·K, L]
    let y = default_labels(rows * k, k)?; // column c is class c
    ImageBatch::from_tensor(&model.decode_class(&z, Some(&y))?, model.config().input())
}

/// Each noise row of `z: [R, L]` decoded under a blend of classes `a` and `b` in `steps` steps:
/// image `r · steps + s` has the weights (1 − t) on `a` and t on `b`, t = s / (steps − 1).
/// An error for a model that takes no blended labels.
pub fn class_interpolation(
    model: &dyn GenerativeModel,
    z: &Tensor,
    a: u32,
    b: u32,
    steps: usize,
) -> Result<ImageBatch> {
    let k = classes(model, "interpolating between classes")?;
    for c in [a, b] {
        if c as usize >= k {
            return Err(EngineError::Config(format!(
                "class {c} is out of range: the model is conditioned on {k} classes (0 to {})",
                k - 1
            )));
        }
    }
    let steps = steps.max(2);
    let rows = z.dim(0)?;
    let mut w = vec![0f32; rows * steps * k];
    for r in 0..rows {
        for s in 0..steps {
            let t = s as f32 / (steps - 1) as f32;
            let row = &mut w[(r * steps + s) * k..][..k];
            row[a as usize] += 1.0 - t;
            row[b as usize] += t;
        }
    }
    let w = Tensor::from_vec(w, (rows * steps, k), &Device::Cpu)?; // [R·steps, K]
    let z = repeat_rows(&z.to_device(&Device::Cpu)?, steps)?; // [R·steps, L]
    match model.decode_mixed(&z, &w)? {
        Some(x) => ImageBatch::from_tensor(&x, model.config().input()),
        None => Err(EngineError::Config(format!(
            "a {} takes no blend of classes to interpolate between",
            model.config().family()
        ))),
    }
}

/// "Same style, other class": images `x: [B, D]` with labels `y: [B]` (u32) encoded under their
/// own labels, each code decoded under every class: image `i · K + c` is image `i` as class `c`.
/// `None` for a model without an encoder (a GAN).
pub fn same_style(model: &dyn GenerativeModel, x: &Tensor, y: &Tensor) -> Result<Option<ImageBatch>> {
    classes(model, "\"same style, other class\"")?;
    let Some((mu, _)) = model.encode_class(x, Some(y))? else { return Ok(None) };
    class_grid_of(model, &mu).map(Some)
}

/// Decodes latent vectors (`latents.len()` a multiple of the latent size) under `class`
/// (every class in turn when `None`; an unconditional model ignores it).
pub fn decode_latents(
    model: &dyn GenerativeModel,
    latents: &[f32],
    class: Option<u32>,
) -> Result<ImageBatch> {
    super::session::check_class(model, class)?;
    let d = model.latent_dim();
    if d == 0 || !latents.len().is_multiple_of(d) {
        return Err(EngineError::Other(format!("{} values are not whole {d}-d latents", latents.len())));
    }
    let n = latents.len() / d;
    let z = Tensor::from_slice(latents, (n, d), &Device::Cpu)?;
    let y = class.map(|c| super::models::class_labels(n, c)).transpose()?;
    ImageBatch::from_tensor(&model.decode_class(&z, y.as_ref())?, model.config().input())
}
