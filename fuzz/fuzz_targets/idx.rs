//! The IDX reader on arbitrary bytes (raw, or gzip when they start with 1f 8b), then the
//! conversion to a dataset.
#![no_main]

use std::path::Path;

use genlab::engine::data::{idx, DataSource, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions { max_decoded_bytes: 64 << 20, ..LoadOptions::default() };
    let path = Path::new("fuzz-images-idx3-ubyte");
    if let Ok(images) = idx::read_idx_bytes(data, path, opts.max_decoded_bytes) {
        let source = DataSource::Path(path.to_path_buf());
        let _ = idx::to_dataset("fuzz".into(), source, path, images, None, &opts);
    }
});
