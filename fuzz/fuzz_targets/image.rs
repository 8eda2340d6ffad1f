//! One image file of an image folder (PNG, JPEG, BMP, GIF, by content) on arbitrary bytes.
//! The first byte picks the channels and resize options; the rest is the file.
#![no_main]

use std::path::Path;

use genlab::engine::data::{image_folder, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    // A 1 MB decode budget: inputs are at most 4 KB, but their headers may claim up to the
    // budget, and decoding 64 MB images held the long run to ~500 executions a second.
    // Larger claims still exercise the budget check, which runs before any decoding.
    let mut opts = LoadOptions { max_decoded_bytes: 1 << 20, ..LoadOptions::default() };
    opts.channels = match flags & 3 {
        1 => Some(1),
        2 => Some(3),
        _ => None,
    };
    if flags & 4 != 0 {
        opts.resize = Some((1 + (flags as usize >> 4), 1 + (flags as usize >> 5)));
    }
    if let Ok((shape, values)) = image_folder::decode_image(bytes, Path::new("fuzz.png"), &opts) {
        assert_eq!(values.len(), shape.len());
    }
});
