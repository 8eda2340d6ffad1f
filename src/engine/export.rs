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
            // A regular file in the folder's place is not "missing": say what is there.
            let why = if dir.exists() { "is not a folder" } else { "does not exist" };
            return Err(EngineError::Other(format!(
                "cannot write {}: {} {why}",
                path.display(),
                dir.display()
            )));
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

/// The file [`save_pngs`] writes image `i` to.
pub fn png_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:04}.png")
}

/// Fails when one of the `n` files [`save_pngs`] would write into `dir` exists and `overwrite`
/// is false, or when `dir` is a file. The folder itself may exist (or not: it is created).
pub fn check_pngs_target(dir: &Path, prefix: &str, n: usize, overwrite: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(EngineError::Other(format!("{} is a file, not a folder", dir.display())));
    }
    if !overwrite {
        if let Some(taken) = (0..n).map(|i| dir.join(png_name(prefix, i))).find(|p| p.exists()) {
            return Err(EngineError::Other(format!(
                "{} exists already (choose another folder or allow overwriting)",
                taken.display()
            )));
        }
    }
    Ok(())
}

/// Writes each image of a batch as `prefix-0000.png` … into `dir` (created if needed).
pub fn save_pngs(dir: &Path, prefix: &str, images: &ImageBatch) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    for i in 0..images.len() {
        images.slice(i, i + 1).save_grid_png_unpadded(&dir.join(png_name(prefix, i)))?;
    }
    Ok(images.len())
}

/// The frames of a traversal GIF from a traversal grid of `rows` dimensions × `cols` values
/// (row-major, as [`super::explore::traversal`] decodes it): frame `k` holds every
/// dimension at value `k`, side by side.
pub fn traversal_frames(grid: &ImageBatch, rows: usize, cols: usize) -> Vec<ImageBatch> {
    if rows == 0 || cols == 0 || grid.len() < rows * cols {
        return Vec::new();
    }
    (0..cols)
        .filter_map(|k| {
            let parts: Vec<ImageBatch> =
                (0..rows).map(|r| grid.slice(r * cols + k, r * cols + k + 1)).collect();
            ImageBatch::concat(&parts.iter().collect::<Vec<_>>())
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::ImageShape;

    /// `n` 2×2 gray images, image `i` filled with the value `i`.
    fn batch(n: usize) -> ImageBatch {
        let pixels = (0..n).flat_map(|i| vec![i as u8; 4]).collect();
        ImageBatch { shape: ImageShape::new(1, 2, 2), pixels }
    }

    #[test]
    fn traversal_frames_take_one_value_of_every_dimension() {
        // 3 dimensions × 4 values.
        let frames = traversal_frames(&batch(12), 3, 4);
        assert_eq!(frames.len(), 4);
        for (k, f) in frames.iter().enumerate() {
            let firsts: Vec<u8> = (0..f.len()).map(|i| f.pixels[i * 4]).collect();
            assert_eq!(firsts, vec![k as u8, 4 + k as u8, 8 + k as u8]);
        }
        assert!(traversal_frames(&batch(11), 3, 4).is_empty(), "too few images for the grid");
    }

    #[test]
    fn png_folders_are_not_overwritten_without_asking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("samples");
        check_pngs_target(&out, "sample", 3, false).expect("a new folder is fine");
        assert_eq!(save_pngs(&out, "sample", &batch(3)).expect("written"), 3);
        let img = image::open(out.join("sample-0002.png")).expect("a PNG");
        assert_eq!((img.width(), img.height()), (2, 2));
        let err = check_pngs_target(&out, "sample", 3, false).expect_err("files exist").to_string();
        assert!(err.contains("sample-0000.png") && err.contains("exists already"), "{err}");
        check_pngs_target(&out, "sample", 3, true).expect("overwriting was allowed");
        check_pngs_target(&out, "other", 3, false).expect("other names do not clash");
        let file = out.join("sample-0000.png");
        assert!(check_pngs_target(&file, "x", 1, true).is_err(), "a file is not a folder");
    }
}
