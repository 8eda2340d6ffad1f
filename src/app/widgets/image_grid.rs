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

/// Like [`image_grid`], but clickable: returns the index of the image clicked, if any.
/// `label` names the grid for screen readers (and UI tests).
#[allow(clippy::too_many_arguments)]
pub fn clickable_grid(
    ui: &mut egui::Ui,
    textures: &mut Textures,
    key: &str,
    version: u64,
    batch: &ImageBatch,
    cols: usize,
    max: Vec2,
    label: &str,
) -> Option<usize> {
    let n = batch.len();
    let cols = cols.clamp(1, n.max(1));
    let (w, h, rgba) = batch.grid_rgba(cols, 1);
    let tex = textures.get(ui.ctx(), key, version, || color_image(w, h, &rgba));
    let native = Vec2::new(w as f32, h as f32);
    let scale = (max.x / native.x).min(max.y / native.y).max(0.1);
    let scale = if scale >= 1.0 { scale.floor() } else { scale };
    let resp = ui
        .add(Image::new((tex.id(), native * scale)).sense(egui::Sense::click()))
        .on_hover_cursor(egui::CursorIcon::ZoomIn);
    let label = label.to_string();
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
    let pos = resp.interact_pointer_pos().filter(|_| resp.clicked())?;
    // Which cell: the grid is `pad + cols × (w + pad)` pixels wide, pad = 1.
    let local = (pos - resp.rect.min) / scale;
    let cell_w = (batch.shape.width + 1) as f32;
    let cell_h = (batch.shape.height + 1) as f32;
    let (c, r) = ((local.x / cell_w).floor() as usize, (local.y / cell_h).floor() as usize);
    let i = r * cols + c.min(cols - 1);
    (i < n).then_some(i)
}

/// A single image of `batch`, enlarged to `size` points.
pub fn single_image(
    ui: &mut egui::Ui,
    textures: &mut Textures,
    key: &str,
    version: u64,
    batch: &ImageBatch,
    index: usize,
    size: f32,
) -> egui::Response {
    let s = batch.shape;
    let tex = textures.get(ui.ctx(), key, version, || {
        if index < batch.len() {
            color_image(s.width, s.height, &batch.rgba(index))
        } else {
            color_image(0, 0, &[])
        }
    });
    let aspect = s.width.max(1) as f32 / s.height.max(1) as f32;
    ui.add(Image::new((tex.id(), Vec2::new(size * aspect, size))))
}
