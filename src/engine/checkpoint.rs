//! Checkpoints: a folder that a process killed at any moment of a save leaves loadable, as
//! either the checkpoint it replaced or the one it was writing.
//!
//! Layout:
//! - `model-<hash>.safetensors`: weights, optimiser moments and batch-norm statistics, named
//!   by the FNV-1a hash of its bytes, so a save never overwrites the weights the current
//!   `config.json` names (the same name means the same bytes).
//! - `config.json`: run configuration, data source, step, and the name, length and hash of
//!   its weights file. Replacing it is the one step that switches the folder to a new
//!   checkpoint.
//! - `metrics.csv`: the run's metrics, written after `config.json`; a save interrupted just
//!   before it leaves the previous save's metrics.
//!
//! A save writes the weights (temporary file, fsync, rename, fsync of the folder), then
//! `config.json` the same way, then `metrics.csv`, and only then deletes weights files that
//! `config.json` no longer names and temporary files left by interrupted saves. Checkpoints
//! written before this layout (`model.safetensors`, no `weights_file` field) still load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::data::DataSource;
use super::error::{EngineError, Result};
use super::fsio::{temp_target, write_atomic};
use super::kernels::{Exec, KernelPath};
use super::metrics::MetricsLog;
use super::models::{build_model, GenerativeModel};

/// The weights file of checkpoints written before weights files were named by their hash.
pub const LEGACY_WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.csv";
const FORMAT_VERSION: u32 = 1;
/// Bytes a weights file holds per parameter at least: the value and Adam's two moments (f32).
const BYTES_PER_PARAM: u64 = 12;

/// The contents of `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub genlab_version: String,
    pub config: RunConfig,
    pub data_source: DataSource,
    pub step: u64,
    pub optimizer_steps: Vec<u64>,
    pub param_count: usize,
    /// The weights file in the same folder (a bare file name).
    #[serde(default = "legacy_weights_file")]
    pub weights_file: String,
    /// Length and FNV-1a hash of the weights file.
    pub weights_len: u64,
    pub weights_fnv1a: String,
}

fn legacy_weights_file() -> String {
    LEGACY_WEIGHTS_FILE.to_string()
}

/// The FNV-1a hash of `bytes` as 16 hex digits: the checksum `config.json` records for its
/// weights file.
pub fn weights_checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Whether `name` is a file name that a save writes weights to (or the legacy one).
fn is_weights_name(name: &str) -> bool {
    name == LEGACY_WEIGHTS_FILE || (name.starts_with("model-") && name.ends_with(".safetensors"))
}

fn is_prior_name(name: &str) -> bool {
    name == crate::engine::prior::PRIOR_META || name == crate::engine::prior::PRIOR_WEIGHTS
}

/// Writes a checkpoint of `model` into `dir` (created if needed), replacing the one there.
pub fn save(
    dir: &Path,
    model: &dyn GenerativeModel,
    config: &RunConfig,
    data_source: &DataSource,
    step: u64,
    metrics: Option<&MetricsLog>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let state = model.state()?;
    let bytes = safetensors_bytes(&state)?;
    let hash = weights_checksum(&bytes);
    let weights_file = format!("model-{hash}.safetensors");
    let weights_path = dir.join(&weights_file);
    write_atomic(&weights_path, &bytes).map_err(|e| EngineError::io(&weights_path, e))?;
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        genlab_version: env!("CARGO_PKG_VERSION").into(),
        config: config.clone(),
        data_source: data_source.clone(),
        step,
        optimizer_steps: model.optimizer_steps(),
        param_count: model.param_count(),
        weights_file: weights_file.clone(),
        weights_len: bytes.len() as u64,
        weights_fnv1a: hash,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| EngineError::checkpoint(dir, e.to_string()))?;
    let config_path = dir.join(CONFIG_FILE);
    write_atomic(&config_path, &json).map_err(|e| EngineError::io(&config_path, e))?;
    if let Some(m) = metrics {
        m.write_csv(&dir.join(METRICS_FILE), &config.model.capabilities().loss_keys)?;
    }
    remove_stale_files(dir, &weights_file);
    Ok(dir.to_path_buf())
}

/// Deletes weights files other than `keep` and the temporary files of interrupted saves. The
/// checkpoint is complete without this, so failures are ignored (the next save retries).
fn remove_stale_files(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match temp_target(&name) {
            Some(target) => is_weights_name(target) || target == CONFIG_FILE || target == METRICS_FILE,
            // A latent prior was fitted to the codes of the model this save replaces.
            None => (is_weights_name(&name) && name != keep) || is_prior_name(&name),
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn safetensors_bytes(state: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = state.keys().collect();
    names.sort();
    let views: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &state[*n])).collect();
    safetensors::serialize(views, None).map_err(|e| EngineError::Other(e.to_string()))
}

/// Parses and checks the text of `config.json` (`path` names it in errors).
pub fn parse_meta(bytes: &[u8], path: &Path) -> Result<CheckpointMeta> {
    let meta: CheckpointMeta = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::checkpoint(path, format!("not a genlab checkpoint configuration: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(EngineError::checkpoint(
            path,
            format!("format version {} is not supported", meta.format_version),
        ));
    }
    let name = Path::new(&meta.weights_file);
    if name.file_name() != Some(name.as_os_str()) || !meta.weights_file.ends_with(".safetensors") {
        return Err(EngineError::checkpoint(
            path,
            format!("the weights file {:?} is not a .safetensors file in the same folder", meta.weights_file),
        ));
    }
    meta.config.validate().map_err(|e| EngineError::checkpoint(path, e.to_string()))?;
    // The model is built before the weights are checked against it: make sure the weights
    // file is big enough to hold it, so that an edited config.json cannot make us allocate a
    // model far bigger than the checkpoint.
    let params = meta.config.model.param_count_from_shapes();
    if params.saturating_mul(BYTES_PER_PARAM) > meta.weights_len {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "the configuration describes a model of {params} parameters, which needs at least {} bytes of weights, but the weights file has {} bytes",
                params.saturating_mul(BYTES_PER_PARAM),
                meta.weights_len
            ),
        ));
    }
    Ok(meta)
}

/// Reads and checks `config.json`.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
    parse_meta(&text, &path)
}

/// The weights file `config.json` of the checkpoint in `dir` names.
pub fn weights_path(dir: &Path) -> Result<PathBuf> {
    Ok(dir.join(read_meta(dir)?.weights_file))
}

/// Checks weights bytes against `meta` and parses them (`path` names them in errors).
pub fn parse_state(bytes: &[u8], meta: &CheckpointMeta, path: &Path) -> Result<HashMap<String, Tensor>> {
    if bytes.len() as u64 != meta.weights_len {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "the file has {} bytes but config.json expects {} (an interrupted save?)",
                bytes.len(),
                meta.weights_len
            ),
        ));
    }
    if weights_checksum(bytes) != meta.weights_fnv1a {
        return Err(EngineError::checkpoint(
            path,
            "the weights do not match config.json's checksum (corrupt file?)",
        ));
    }
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| EngineError::checkpoint(path, format!("not a valid safetensors file: {e}")))
}

/// Reads the weights file and checks it is the one `meta` describes.
pub fn read_state(dir: &Path, meta: &CheckpointMeta) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(&meta.weights_file);
    let real_len = std::fs::metadata(&path).map_err(|e| EngineError::io(&path, e))?.len();
    if real_len != meta.weights_len {
        return Err(EngineError::checkpoint(
            &path,
            format!(
                "the file has {real_len} bytes but config.json expects {} (an interrupted save?)",
                meta.weights_len
            ),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
    parse_state(&bytes, meta, &path)
}

/// A model restored from a checkpoint folder.
pub struct Loaded {
    pub meta: CheckpointMeta,
    pub model: Box<dyn GenerativeModel>,
}

/// Loads a checkpoint: configuration, weights and optimiser state.
pub fn load(dir: &Path) -> Result<Loaded> {
    load_on(dir, &Device::Cpu, None)
}

/// [`load`] with the model on `device`, on the checkpoint's kernel path or on `kernels`.
/// Checkpoints carry no device: one written on a GPU loads on the CPU and the other way round.
pub fn load_on(dir: &Path, device: &Device, kernels: Option<KernelPath>) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(EngineError::checkpoint(dir, "no such checkpoint folder"));
    }
    // A save running while we read may replace config.json and delete the weights it named
    // between our two reads; the new config.json then names weights that exist.
    let mut attempts = 0;
    let (meta, state) = loop {
        let meta = read_meta(dir)?;
        match read_state(dir, &meta) {
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && attempts < 2
                    && read_meta(dir).is_ok_and(|m| m.weights_file != meta.weights_file) =>
            {
                attempts += 1;
            }
            result => break (meta, result?),
        }
    };
    let weights = dir.join(&meta.weights_file);
    let exec = Exec::new(device.clone(), kernels.unwrap_or(meta.config.train.kernels));
    restore(meta, &state, &weights, &exec)
}

/// Loads a checkpoint from the bytes of its `config.json` and weights file (`name` stands for
/// the folder in errors).
pub fn load_from_bytes(config_json: &[u8], weights: &[u8], name: &Path) -> Result<Loaded> {
    let meta = parse_meta(config_json, &name.join(CONFIG_FILE))?;
    let weights_path = name.join(&meta.weights_file);
    let state = parse_state(weights, &meta, &weights_path)?;
    let exec = Exec::new(Device::Cpu, meta.config.train.kernels);
    restore(meta, &state, &weights_path, &exec)
}

/// Builds the model `meta` describes and puts the weights (from `weights`) into it.
fn restore(
    meta: CheckpointMeta,
    state: &HashMap<String, Tensor>,
    weights: &Path,
    exec: &Exec,
) -> Result<Loaded> {
    let mut model = build_model(&meta.config.model, &meta.config.optim, meta.config.train.seed, exec)?;
    model.load_state(state).map_err(|e| EngineError::checkpoint(weights, e.to_string()))?;
    model.set_optimizer_steps(&meta.optimizer_steps);
    Ok(Loaded { meta, model })
}
