//! A run's full configuration (model, optimiser, training schedule) and the named presets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::data::{Dataset, ImageShape};
use super::device::DeviceChoice;
use super::error::{EngineError, Result};
use super::kernels::KernelPath;
use super::models::{self, AdamConfig, ModelConfig};

/// The training schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub epochs: usize,
    /// Fixes initial weights, data order, ε and GAN noise.
    pub seed: u64,
    /// Worker threads for the tensor maths.
    pub threads: usize,
    /// Share of the images held out for testing (ignored when the data has its own split).
    pub test_fraction: f64,
    /// Steps between fixed-noise sample grids.
    pub sample_every: u64,
    /// Test images evaluated at the end of each epoch (0 = all).
    pub eval_limit: usize,
    /// Steps between rewind points (checkpoints the app can go back to; 0 = none).
    pub keep_every: u64,
    /// Rewind points kept at most (the oldest are thinned, the first is kept).
    pub keep_count: usize,
    /// The fused CPU kernels (default) or candle's stock ops everywhere; tensors on a GPU
    /// always take the stock ops.
    pub kernels: KernelPath,
    /// Where the run computes. Chosen each time a run starts (`--device`, the app's picker),
    /// never saved: a checkpoint written on a GPU loads anywhere.
    #[serde(skip)]
    pub device: DeviceChoice,
    /// Fault injection for tests: the step that would be step `n` (1-based) panics, and 0
    /// panics while the session is built, so that tests can check a panic is isolated. Never
    /// saved or loaded.
    #[doc(hidden)]
    #[serde(skip)]
    pub fault_at_step: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            epochs: 10,
            seed: 0,
            threads: 1,
            test_fraction: 0.2,
            sample_every: 50,
            eval_limit: 0,
            keep_every: 500,
            keep_count: 10,
            kernels: KernelPath::Fused,
            device: DeviceChoice::Cpu,
            fault_at_step: None,
        }
    }
}

/// Everything a training run needs besides the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// The preset it started from (informational).
    pub preset: String,
    pub model: ModelConfig,
    pub optim: AdamConfig,
    pub train: TrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        preset("mnist_vae", ImageShape::new(1, 28, 28)).unwrap_or_else(|| RunConfig {
            preset: String::new(),
            model: ModelConfig::default(),
            optim: AdamConfig::default(),
            train: TrainConfig::default(),
        })
    }
}

/// A [`RunConfig`] as versions before the tagged model configuration saved it, for formats
/// that cannot read the new layout from the old one (see [`models::legacy`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LegacyRunConfig {
    pub preset: String,
    pub model: models::legacy::LegacyModelConfig,
    pub optim: AdamConfig,
    pub train: TrainConfig,
}

impl From<LegacyRunConfig> for RunConfig {
    fn from(c: LegacyRunConfig) -> Self {
        RunConfig { preset: c.preset, model: c.model.into(), optim: c.optim, train: c.train }
    }
}

/// The preset names of every family, in the order the app lists them.
pub fn presets() -> Vec<&'static str> {
    models::preset_names()
}

/// A named preset, adapted to images of `input` shape (the MLP presets take any shape; the conv
/// presets keep their layers and need sizes divisible by 2 per conv layer: 4 for the MNIST
/// ones, 16 for the 64×64 ones). Each family defines its own.
pub fn preset(name: &str, input: ImageShape) -> Option<RunConfig> {
    let (model, optim) = models::preset(name, input)?;
    let train = TrainConfig { epochs: models::preset_epochs(name)?, ..TrainConfig::default() };
    Some(RunConfig { preset: name.to_string(), model, optim, train })
}

/// The image shape preset `name` is laid out for: 1×28×28 for the MNIST presets, 3×64×64 for
/// `dcgan64` and `conv_vae64`.
pub fn preset_input(name: &str) -> Option<ImageShape> {
    models::preset_input(name)
}

/// `data` as preset `name` can train on it: unchanged when the preset's layers fit its images,
/// else at most `limit` of them (thinned evenly) converted to the shape the preset is laid out
/// for. The bench, `genlab parity` and the tests run the 64×64 presets on the built-in digits
/// this way.
pub fn data_for_preset(name: &str, data: &Arc<Dataset>, limit: usize) -> Arc<Dataset> {
    let fits = preset(name, data.shape).is_some_and(|c| c.validate().is_ok());
    match preset_input(name) {
        Some(want) if !fits && want != data.shape => Arc::new(data.thinned(limit).converted_to(want)),
        _ => data.clone(),
    }
}

/// A conditional configuration made for `data`: its class count becomes the data's (the
/// MNIST presets say 10; a folder of 3 classes needs 3). An unconditional one, or data
/// without labels (which [`check_labels`] then refuses by name), is left as it is.
pub fn fit_classes(cfg: &mut RunConfig, data: &Dataset) {
    let classes = data.num_classes();
    if cfg.model.classes() > 0 && data.labels.is_some() && classes > 0 {
        cfg.model.net_mut().classes = classes;
    }
}

/// Whether a conditional configuration can train on `data`: the data must carry labels,
/// all below the model's class count. The message names the preset and the dataset.
pub fn check_labels(cfg: &RunConfig, data: &Dataset) -> Result<()> {
    let classes = cfg.model.classes();
    if classes == 0 {
        return Ok(());
    }
    let what = if cfg.preset.is_empty() {
        format!("this conditional {}", cfg.model.family())
    } else {
        format!("preset `{}`", cfg.preset)
    };
    let Some(labels) = &data.labels else {
        return Err(EngineError::Config(format!(
            "{what} is conditional ({classes} classes) and needs labelled data, but dataset `{}` has no labels (use an unconditional preset, or data with labels: IDX with a labels file, CSV with a label column, a folder of class folders)",
            data.name
        )));
    };
    if let Some(&max) = labels.iter().max() {
        if max as usize >= classes {
            return Err(EngineError::Config(format!(
                "dataset `{}` has labels up to {max} but {what} is conditioned on {classes} classes (set classes to {})",
                data.name,
                max as usize + 1
            )));
        }
    }
    Ok(())
}

/// How to load images for a preset laid out for `want`: the command-line flags and the app's
/// dataset-panel option that resize them.
fn resize_hint(preset: &str, want: ImageShape) -> String {
    let size = if want.height == want.width {
        want.height.to_string()
    } else {
        format!("{}x{}", want.width, want.height)
    };
    format!(
        "preset `{preset}` is laid out for {want} images: resize the data to {}×{} (`--resize {size} --channels {}`, or \"Resize to\" in the app's dataset panel)",
        want.width, want.height, want.channels
    )
}

impl RunConfig {
    /// Checks the model and the schedule; messages name the setting.
    pub fn validate(&self) -> Result<()> {
        self.model.validate().map_err(|e| match (e, preset_input(&self.preset)) {
            // A preset met with images of another size: say how to load them at its own.
            (EngineError::Config(m), Some(want)) if want != self.model.input() => {
                EngineError::Config(format!("{m}; {}", resize_hint(&self.preset, want)))
            }
            (e, _) => e,
        })?;
        let err = |m: String| Err(EngineError::Config(m));
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return err(format!("learning rate must be a positive number (got {})", o.lr));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return err(format!("Adam β₁ and β₂ must be in [0, 1) (got {}, {})", o.beta1, o.beta2));
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return err(format!("Adam ε must be a positive number (got {})", o.eps));
        }
        let t = &self.train;
        if t.batch_size == 0 {
            return err("batch size must be at least 1".into());
        }
        if t.epochs == 0 {
            return err("epochs must be at least 1".into());
        }
        if t.threads == 0 || t.threads > 256 {
            return err(format!("threads must be between 1 and 256 (got {})", t.threads));
        }
        if !(t.test_fraction.is_finite() && (0.0..1.0).contains(&t.test_fraction)) {
            return err(format!("test fraction must be in [0, 1) (got {})", t.test_fraction));
        }
        Ok(())
    }
}
