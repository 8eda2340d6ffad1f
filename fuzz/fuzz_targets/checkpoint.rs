//! Checkpoint loading from the bytes of `config.json` and the weights file. Layout of the
//! input: one flags byte, the length of the config (u32, little-endian), the config, the
//! weights. With flag 1 the config's recorded weights length and checksum are set to match
//! the weights, so that mutated weights get past the checksum to the safetensors parser and
//! the model. A model that loads also decodes two samples.
#![no_main]

use std::path::Path;

use genlab::engine::{checkpoint, session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let flags = data[0];
    let len = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let rest = &data[5..];
    let (config, weights) = rest.split_at(len.min(rest.len()));
    let patched;
    let config = match serde_json::from_slice::<serde_json::Value>(config) {
        Ok(mut v) if flags & 1 != 0 && v.is_object() => {
            v["weights_len"] = weights.len().into();
            v["weights_fnv1a"] = checkpoint::weights_checksum(weights).into();
            patched = serde_json::to_vec(&v).unwrap_or_default();
            &patched[..]
        }
        _ => config,
    };
    if let Ok(loaded) = checkpoint::load_from_bytes(config, weights, Path::new("fuzz-checkpoint")) {
        let _ = session::sample(loaded.model.as_ref(), 2, 1.0, 0);
    }
});
