//! Checkpoints: a folder with `model.safetensors` (weights, optimiser moments, batch-norm
//! statistics), `config.json` (run configuration, data source, step, a checksum of the
//! weights file) and `metrics.csv`. Each file is written atomically (temporary file, fsync,
//! rename); `config.json` goes last and names the weights it belongs to, so a torn save is
//! detected on load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::data::DataSource;
use super::error::{EngineError, Result};
use super::metrics::{write_atomic, MetricsLog};
use super::models::{build_model, GenerativeModel};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.csv";
const FORMAT_VERSION: u32 = 1;

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
    /// Length and FNV-1a hash of `model.safetensors`.
    pub weights_len: u64,
    pub weights_fnv1a: String,
}

fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes a checkpoint of `model` into `dir` (created if needed).
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
    write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    if let Some(m) = metrics {
        m.write_csv(&dir.join(METRICS_FILE), config.model.family)?;
    }
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        genlab_version: env!("CARGO_PKG_VERSION").into(),
        config: config.clone(),
        data_source: data_source.clone(),
        step,
        optimizer_steps: model.optimizer_steps(),
        param_count: model.param_count(),
        weights_len: bytes.len() as u64,
        weights_fnv1a: fnv1a(&bytes),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| EngineError::checkpoint(dir, e.to_string()))?;
    write_atomic(&dir.join(CONFIG_FILE), &json)?;
    Ok(dir.to_path_buf())
}

fn safetensors_bytes(state: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = state.keys().collect();
    names.sort();
    let views: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &state[*n])).collect();
    safetensors::serialize(views, None).map_err(|e| EngineError::Other(e.to_string()))
}

/// Reads and checks `config.json`.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
    let meta: CheckpointMeta = serde_json::from_slice(&text)
        .map_err(|e| EngineError::checkpoint(&path, format!("not a genlab checkpoint configuration: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(EngineError::checkpoint(
            &path,
            format!("format version {} is not supported", meta.format_version),
        ));
    }
    meta.config.validate().map_err(|e| EngineError::checkpoint(&path, e.to_string()))?;
    Ok(meta)
}

/// Reads the weights file and checks it is the one `meta` describes.
pub fn read_state(dir: &Path, meta: &CheckpointMeta) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(WEIGHTS_FILE);
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
    if fnv1a(&bytes) != meta.weights_fnv1a {
        return Err(EngineError::checkpoint(
            &path,
            "the weights do not match config.json's checksum (corrupt file?)",
        ));
    }
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| EngineError::checkpoint(&path, format!("not a valid safetensors file: {e}")))
}

/// A model restored from a checkpoint folder.
pub struct Loaded {
    pub meta: CheckpointMeta,
    pub model: Box<dyn GenerativeModel>,
}

/// Loads a checkpoint: configuration, weights and optimiser state.
pub fn load(dir: &Path) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(EngineError::checkpoint(dir, "no such checkpoint folder"));
    }
    let meta = read_meta(dir)?;
    let state = read_state(dir, &meta)?;
    let mut model = build_model(&meta.config.model, &meta.config.optim, meta.config.train.seed)?;
    model.load_state(&state).map_err(|e| EngineError::checkpoint(dir.join(WEIGHTS_FILE), e.to_string()))?;
    model.set_optimizer_steps(&meta.optimizer_steps);
    Ok(Loaded { meta, model })
}
