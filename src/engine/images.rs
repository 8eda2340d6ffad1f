//! Plain 8-bit image batches: what crosses from the worker to the UI and what export writes.

use std::path::Path;

use candle_core::Tensor;

use super::data::ImageShape;
use super::error::{EngineError, Result};

/// `count` images of `shape`, N×C×H×W bytes (0 = black, 255 = white).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBatch {
    pub shape: ImageShape,
    pub pixels: Vec<u8>,
}

impl ImageBatch {
    /// From `[B, C·H·W]` values in [0, 1].
    pub fn from_tensor(t: &Tensor, shape: ImageShape) -> Result<Self> {
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        Ok(Self::from_f32(&v, shape))
    }

    pub fn from_f32(values: &[f32], shape: ImageShape) -> Self {
        let pixels = values.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        Self { shape, pixels }
    }

    pub fn len(&self) -> usize {
        self.pixels.len() / self.shape.len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `i` as interleaved RGBA rows (what textures and PNG files want).
    pub fn rgba(&self, i: usize) -> Vec<u8> {
        let s = self.shape;
        let hw = s.height * s.width;
        let img = &self.pixels[i * s.len()..(i + 1) * s.len()];
        let mut out = Vec::with_capacity(hw * 4);
        for p in 0..hw {
            let (r, g, b) = if s.channels >= 3 {
                (img[p], img[hw + p], img[2 * hw + p])
            } else {
                (img[p], img[p], img[p])
            };
            out.extend_from_slice(&[r, g, b, 255]);
        }
        out
    }

    /// The batch tiled into a grid `cols` wide with a `pad`-pixel border: (width, height, RGBA).
    pub fn grid_rgba(&self, cols: usize, pad: usize) -> (usize, usize, Vec<u8>) {
        let n = self.len();
        let cols = cols.clamp(1, n.max(1));
        let rows = n.div_ceil(cols).max(1);
        let (h, w) = (self.shape.height, self.shape.width);
        let gw = cols * (w + pad) + pad;
        let gh = rows * (h + pad) + pad;
        let mut out = vec![0u8; gw * gh * 4];
        for px in out.chunks_exact_mut(4) {
            px.copy_from_slice(&[40, 40, 40, 255]);
        }
        for i in 0..n {
            let (r, c) = (i / cols, i % cols);
            let (x0, y0) = (pad + c * (w + pad), pad + r * (h + pad));
            let img = self.rgba(i);
            for y in 0..h {
                let dst = ((y0 + y) * gw + x0) * 4;
                out[dst..dst + w * 4].copy_from_slice(&img[y * w * 4..(y + 1) * w * 4]);
            }
        }
        (gw, gh, out)
    }

    /// Writes the grid as a PNG file.
    pub fn save_grid_png(&self, path: &Path, cols: usize) -> Result<()> {
        let (w, h, rgba) = self.grid_rgba(cols, 2);
        let img = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
            .ok_or_else(|| EngineError::Other("grid buffer has the wrong size".into()))?;
        img.save(path).map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))
    }

    /// Writes the first image alone (no border) as a PNG file.
    pub fn save_grid_png_unpadded(&self, path: &Path) -> Result<()> {
        let (w, h) = (self.shape.width as u32, self.shape.height as u32);
        let img = image::RgbaImage::from_raw(w, h, self.rgba(0))
            .ok_or_else(|| EngineError::Other("image buffer has the wrong size".into()))?;
        img.save(path).map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))
    }

    /// Keeps images `range` only.
    pub fn slice(&self, start: usize, end: usize) -> ImageBatch {
        let d = self.shape.len();
        let end = end.min(self.len());
        let start = start.min(end);
        ImageBatch { shape: self.shape, pixels: self.pixels[start * d..end * d].to_vec() }
    }

    /// Concatenates batches of the same shape.
    pub fn concat(parts: &[&ImageBatch]) -> Option<ImageBatch> {
        let shape = parts.first()?.shape;
        let mut pixels = Vec::new();
        for p in parts {
            if p.shape != shape {
                return None;
            }
            pixels.extend_from_slice(&p.pixels);
        }
        Some(ImageBatch { shape, pixels })
    }
}
