//! The CSV loader on arbitrary bytes. The first byte picks the options (delimiter, label
//! column, image shape, resize); the rest is the file.
#![no_main]

use std::path::Path;

use genlab::engine::data::{csv, ImageShape, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else { return };
    let mut opts = LoadOptions { max_decoded_bytes: 64 << 20, ..LoadOptions::default() };
    if flags & 2 != 0 {
        opts.label_column = Some(if flags & 4 != 0 { "label".into() } else { "0".into() });
    }
    if flags & 8 != 0 {
        opts.csv_shape = Some(ImageShape::new(1, 2, 2));
    }
    if flags & 16 != 0 {
        opts.resize = Some((1 + (flags as usize >> 5), 3));
    }
    let name = if flags & 1 != 0 { "fuzz.tsv" } else { "fuzz.csv" };
    let _ = csv::load_from_reader(text, Path::new(name), &opts);
});
