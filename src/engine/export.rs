//! Files a user takes away: PNG grids, animated GIFs, the encoded set as CSV.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbaImage};

use super::error::{EngineError, Result};
use super::images::ImageBatch;
use super::session::Encoding;

/// Fails when `path` exists and `overwrite` is false, so no export replaces a file silently.
pub fn check_target(path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(EngineError::Other(format!(
            "{} exists already (choose another name or allow overwriting)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(EngineError::Other(format!("{}: the folder does not exist", dir.display())));
        }
    }
    Ok(())
}

/// An animated GIF, one frame per grid (each tiled `cols` wide), `delay_ms` per frame,
/// looping forever. Frames of different sizes are refused.
pub fn save_gif(path: &Path, frames: &[ImageBatch], cols: usize, delay_ms: u32) -> Result<()> {
    if frames.is_empty() {
        return Err(EngineError::Other("a GIF needs at least one frame".into()));
    }
    let io = |e: std::io::Error| EngineError::io(path, e);
    let file = BufWriter::new(File::create(path).map_err(io)?);
    let mut enc = GifEncoder::new_with_speed(file, 10);
    enc.set_repeat(Repeat::Infinite).map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))?;
    let mut size = None;
    for f in frames {
        let (w, h, rgba) = f.grid_rgba(cols, 2);
        if *size.get_or_insert((w, h)) != (w, h) {
            return Err(EngineError::Other("GIF frames must all have the same size".into()));
        }
        let img = RgbaImage::from_raw(w as u32, h as u32, rgba)
            .ok_or_else(|| EngineError::Other("frame buffer has the wrong size".into()))?;
        let frame = Frame::from_parts(img, 0, 0, Delay::from_numer_denom_ms(delay_ms, 1));
        enc.encode_frame(frame).map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Writes each image of a batch as `prefix-0000.png` … into `dir` (created if needed).
pub fn save_pngs(dir: &Path, prefix: &str, images: &ImageBatch) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    for i in 0..images.len() {
        images.slice(i, i + 1).save_grid_png_unpadded(&dir.join(format!("{prefix}-{i:04}.png")))?;
    }
    Ok(images.len())
}

/// The encoded set as CSV: `index,label,mu_0…,logvar_0…`.
pub fn encoding_csv(enc: &Encoding) -> String {
    let d = enc.dim;
    let mut s = String::from("index,label");
    (0..d).for_each(|j| s.push_str(&format!(",mu_{j}")));
    (0..d).for_each(|j| s.push_str(&format!(",logvar_{j}")));
    s.push('\n');
    for (row, &idx) in enc.indices.iter().enumerate() {
        let label = enc.labels.get(row).map(|l| l.to_string()).unwrap_or_default();
        s.push_str(&format!("{idx},{label}"));
        for v in &enc.mu[row * d..(row + 1) * d] {
            s.push_str(&format!(",{v}"));
        }
        for v in &enc.logvar[row * d..(row + 1) * d] {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}

pub fn save_encoding_csv(path: &Path, enc: &Encoding) -> Result<()> {
    std::fs::write(path, encoding_csv(enc)).map_err(|e| EngineError::io(path, e))
}
