//! GPU textures for image grids, uploaded only when their content changes.

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Textures by name, each with the version of the data it shows.
#[derive(Default)]
pub struct Textures {
    slots: HashMap<String, (u64, TextureHandle)>,
}

impl Textures {
    /// The texture `key` showing data `version`; `make` runs only when the version changed.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        version: u64,
        make: impl FnOnce() -> ColorImage,
    ) -> &TextureHandle {
        let fresh = self.slots.get(key).is_some_and(|(v, _)| *v == version);
        if !fresh {
            let tex = ctx.load_texture(key, make(), TextureOptions::NEAREST);
            self.slots.insert(key.to_string(), (version, tex));
        }
        &self.slots[key].1
    }

    pub fn remove(&mut self, key: &str) {
        self.slots.remove(key);
    }
}

/// An RGBA buffer as an egui image (a 1×1 black pixel if the sizes disagree).
pub fn color_image(width: usize, height: usize, rgba: &[u8]) -> ColorImage {
    if width * height * 4 == rgba.len() && width > 0 && height > 0 {
        ColorImage::from_rgba_unmultiplied([width, height], rgba)
    } else {
        ColorImage::from_rgba_unmultiplied([1, 1], &[0, 0, 0, 255])
    }
}
