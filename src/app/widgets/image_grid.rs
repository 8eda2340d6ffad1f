//! An [`ImageBatch`] tiled into a grid, shown as one texture.

use egui::{Image, Vec2};

use crate::app::textures::{color_image, Textures};
use crate::engine::images::ImageBatch;

/// Shows `batch` as a grid `cols` wide, scaled (by whole pixels when it fits) to at most
/// `max` points. `version` must change whenever the images do.
pub fn image_grid(
    ui: &mut egui::Ui,
    textures: &mut Textures,
    key: &str,
    version: u64,
    batch: &ImageBatch,
    cols: usize,
    max: Vec2,
) -> egui::Response {
    let (w, h, rgba) = batch.grid_rgba(cols, 1);
    let tex = textures.get(ui.ctx(), key, version, || color_image(w, h, &rgba));
    let native = Vec2::new(w as f32, h as f32);
    let scale = (max.x / native.x).min(max.y / native.y).max(0.1);
    // Whole-pixel scaling keeps digits crisp when there is room for it.
    let scale = if scale >= 1.0 { scale.floor() } else { scale };
    ui.add(Image::new((tex.id(), native * scale)))
}
