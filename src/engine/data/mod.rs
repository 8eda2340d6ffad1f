//! Datasets: images as N×C×H×W `f32` in [0, 1], optional labels, and where they came from.
//!
//! One loader per format ([`idx`], [`csv`], [`image_folder`], [`builtin`]); [`load`] picks one
//! from a [`DataSource`]. Every loader returns a [`DataError`] that names the file and what is
//! wrong (byte offset, CSV row and column, image path); none panics on bad input, and no size
//! read from a file is trusted before it is checked against the file's real length and
//! [`LoadOptions::max_decoded_bytes`].

pub mod builtin;
pub mod csv;
pub mod idx;
pub mod image_folder;
pub mod shapes;

pub use shapes::{Factors, SyntheticSet};

use std::fmt;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Channels, height and width of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        Self { channels, height, width }
    }

    /// Number of values in one image (C·H·W), saturating: a shape read from a file or typed
    /// in cannot overflow into a small count that some buffer happens to match.
    pub fn len(&self) -> usize {
        self.channels.saturating_mul(self.height).saturating_mul(self.width)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// Where a dataset comes from: the built-in MNIST subset, a path (IDX file, CSV file or
/// folder), or a dataset generated in code with known factors ([`shapes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataSource {
    Builtin,
    Path(PathBuf),
    Synthetic(SyntheticSet),
}

impl DataSource {
    /// Parses the CLI form: `builtin`, `builtin:shapes`, `builtin:shapes2` or a path.
    pub fn parse(s: &str) -> Self {
        if s == "builtin" {
            return DataSource::Builtin;
        }
        match s.strip_prefix("builtin:").and_then(SyntheticSet::from_key) {
            Some(set) => DataSource::Synthetic(set),
            None => DataSource::Path(PathBuf::from(s)),
        }
    }

    /// How the app names it in buttons and lists.
    pub fn title(&self) -> String {
        match self {
            DataSource::Builtin => "MNIST (built-in)".into(),
            DataSource::Path(p) => p.display().to_string(),
            DataSource::Synthetic(set) => set.title().into(),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Builtin => write!(f, "builtin"),
            DataSource::Path(p) => write!(f, "{}", p.display()),
            DataSource::Synthetic(set) => write!(f, "builtin:{}", set.key()),
        }
    }
}

/// Options shared by the loaders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Upper bound on the decoded dataset (f32 values), checked before allocating.
    pub max_decoded_bytes: u64,
    /// Force every image to this (height, width); `None` = infer. Folders and CSV files decode
    /// to it, other sources are converted after loading.
    pub resize: Option<(usize, usize)>,
    /// Force 1 (gray) or 3 (RGB) channels; `None` = infer (as for `resize`).
    pub channels: Option<usize>,
    /// CSV: the label column by name or 0-based index; `None` = look for `label`, `class`, `y`.
    pub label_column: Option<String>,
    /// CSV: the image shape when the pixel count is not a square (C, H, W).
    pub csv_shape: Option<ImageShape>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { max_decoded_bytes: 4 << 30, resize: None, channels: None, label_column: None, csv_shape: None }
    }
}

/// Why a dataset could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at byte {offset}: {message}")]
    Format { path: PathBuf, offset: u64, message: String },
    #[error("{path}: row {row}, column {column}: {message}")]
    Csv { path: PathBuf, row: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: the decoded data would take {needed} bytes, over the limit of {limit} bytes")]
    TooLarge { path: PathBuf, needed: u64, limit: u64 },
    #[error("loading was cancelled")]
    Cancelled,
}

impl DataError {
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }
}

/// Checks that `count` images of `shape` fit within the decode budget, before allocating.
pub(crate) fn check_budget(
    path: &Path,
    count: u64,
    shape: ImageShape,
    opts: &LoadOptions,
) -> Result<(), DataError> {
    let needed = count.saturating_mul(shape.len() as u64).saturating_mul(std::mem::size_of::<f32>() as u64);
    if needed > opts.max_decoded_bytes {
        return Err(DataError::TooLarge { path: path.to_path_buf(), needed, limit: opts.max_decoded_bytes });
    }
    Ok(())
}

/// A set of images, row-major N×C×H×W in [0, 1], with optional labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short name for display (file or folder name, "MNIST (built-in)").
    pub name: String,
    pub source: DataSource,
    pub shape: ImageShape,
    /// `len() * shape.len()` values in [0, 1].
    pub images: Vec<f32>,
    /// One label per image, indices into `class_names` when those are present.
    pub labels: Option<Vec<u32>>,
    pub class_names: Option<Vec<String>>,
    /// A split that comes with the data: the first `n` images train, the rest test.
    pub fixed_split: Option<usize>,
    /// Ground-truth factors of variation, one row per image (the generated [`shapes`] sets;
    /// `None` for every loaded dataset).
    pub factors: Option<Factors>,
}

/// Indices of the training and test images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Which part of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SplitKind {
    Train,
    Test,
}

impl fmt::Display for SplitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitKind::Train => "train",
            SplitKind::Test => "test",
        })
    }
}

impl Split {
    pub fn get(&self, kind: SplitKind) -> &[usize] {
        match kind {
            SplitKind::Train => &self.train,
            SplitKind::Test => &self.test,
        }
    }
}

impl Dataset {
    /// Builds a dataset after checking that the buffer matches the shape and labels.
    pub fn new(
        name: impl Into<String>,
        source: DataSource,
        shape: ImageShape,
        images: Vec<f32>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self, String> {
        if shape.is_empty() {
            return Err(format!("image shape {shape} has no pixels"));
        }
        if !images.len().is_multiple_of(shape.len()) {
            return Err(format!("{} values are not a whole number of {shape} images", images.len()));
        }
        let n = images.len() / shape.len();
        if let Some(l) = &labels {
            if l.len() != n {
                return Err(format!("{} labels for {n} images", l.len()));
            }
        }
        Ok(Self {
            name: name.into(),
            source,
            shape,
            images,
            labels,
            class_names: None,
            fixed_split: None,
            factors: None,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.shape.len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pixels of image `i` (C·H·W values).
    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.shape.len();
        &self.images[i * d..(i + 1) * d]
    }

    /// Number of classes (max label + 1, or the class-name count).
    pub fn num_classes(&self) -> usize {
        match (&self.class_names, &self.labels) {
            (Some(names), _) => names.len(),
            (None, Some(l)) => l.iter().max().map_or(0, |m| *m as usize + 1),
            _ => 0,
        }
    }

    /// Display name of a label.
    pub fn class_name(&self, label: u32) -> String {
        self.class_names
            .as_ref()
            .and_then(|n| n.get(label as usize).cloned())
            .unwrap_or_else(|| label.to_string())
    }

    /// Count of images per label.
    pub fn label_histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.num_classes()];
        if let Some(labels) = &self.labels {
            for &l in labels {
                if let Some(c) = h.get_mut(l as usize) {
                    *c += 1;
                }
            }
        }
        h
    }

    /// Train/test split: the data's own split if it has one, else `test_fraction` of the images
    /// (at least one of each when there are two or more), drawn with `seed`.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Split {
        let n = self.len();
        if let Some(k) = self.fixed_split.filter(|k| *k <= n) {
            return Split { train: (0..k).collect(), test: (k..n).collect() };
        }
        let mut idx: Vec<usize> = (0..n).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        let frac = if test_fraction.is_finite() { test_fraction.clamp(0.0, 1.0) } else { 0.0 };
        let mut n_test = (n as f64 * frac).round() as usize;
        if n >= 2 {
            n_test = n_test.clamp(1, n - 1);
        }
        let test = idx.split_off(n - n_test.min(n));
        Split { train: idx, test }
    }

    /// Gathers the images at `indices` into one contiguous buffer.
    pub fn gather(&self, indices: &[usize]) -> Vec<f32> {
        let d = self.shape.len();
        let mut out = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
        out
    }

    /// Labels at `indices` (empty when the dataset has none).
    pub fn gather_labels(&self, indices: &[usize]) -> Vec<u32> {
        match &self.labels {
            Some(l) => indices.iter().map(|&i| l[i]).collect(),
            None => Vec::new(),
        }
    }

    /// At most `n` images, every k-th: a smaller set that keeps the whole set's variety, with
    /// a fixed split kept in proportion.
    pub fn thinned(&self, n: usize) -> Dataset {
        let len = self.len();
        if n >= len {
            return self.clone();
        }
        let step = len.div_ceil(n.max(1));
        let picks: Vec<usize> = (0..len).step_by(step).collect();
        Dataset {
            name: self.name.clone(),
            source: self.source.clone(),
            shape: self.shape,
            images: self.gather(&picks),
            labels: self.labels.as_ref().map(|_| self.gather_labels(&picks)),
            class_names: self.class_names.clone(),
            fixed_split: self.fixed_split.map(|k| k.div_ceil(step)),
            factors: self.factors.as_ref().map(|f| f.gather(&picks)),
        }
    }

    /// The images converted to another shape (nearest-channel conversion and bilinear resize),
    /// so that any image set can be fed to a model trained on another size.
    pub fn converted_to(&self, target: ImageShape) -> Dataset {
        if target == self.shape {
            return self.clone();
        }
        let mut images = Vec::with_capacity(self.len() * target.len());
        for i in 0..self.len() {
            images.extend(convert_image(self.image(i), self.shape, target));
        }
        Dataset { shape: target, images, ..self.clone() }
    }
}

/// Converts one image between channel counts (gray ↔ RGB, luma weights) and sizes (bilinear).
pub fn convert_image(src: &[f32], from: ImageShape, to: ImageShape) -> Vec<f32> {
    let plane = |c: usize| &src[c * from.height * from.width..(c + 1) * from.height * from.width];
    // Channel conversion first, at the source size.
    let planes: Vec<Vec<f32>> = match (from.channels, to.channels) {
        (a, b) if a == b => (0..a).map(|c| plane(c).to_vec()).collect(),
        (_, 1) if from.channels >= 3 => {
            let (r, g, b) = (plane(0), plane(1), plane(2));
            vec![(0..r.len()).map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i]).collect()]
        }
        (_, 1) => vec![plane(0).to_vec()],
        (1, n) => (0..n).map(|_| plane(0).to_vec()).collect(),
        (_, n) => (0..n).map(|c| plane(c.min(from.channels - 1)).to_vec()).collect(),
    };
    let mut out = Vec::with_capacity(to.len());
    for p in &planes {
        out.extend(resize_plane(p, from.height, from.width, to.height, to.width));
    }
    out
}

/// Bilinear resize of one H×W plane (pixel centres aligned).
pub fn resize_plane(src: &[f32], h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    if h == nh && w == nw {
        return src.to_vec();
    }
    let mut out = Vec::with_capacity(nh * nw);
    let sy = h as f32 / nh as f32;
    let sx = w as f32 / nw as f32;
    for y in 0..nh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(h - 1);
        let ty = fy - y0 as f32;
        for x in 0..nw {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let tx = fx - x0 as f32;
            let top = src[y0 * w + x0] * (1.0 - tx) + src[y0 * w + x1] * tx;
            let bot = src[y1 * w + x0] * (1.0 - tx) + src[y1 * w + x1] * tx;
            out.push(top * (1.0 - ty) + bot * ty);
        }
    }
    out
}

/// Loads a dataset from any source: `builtin`, an IDX file (raw or `.gz`), a CSV file, or a
/// folder of images.
pub fn load(source: &DataSource, opts: &LoadOptions) -> Result<Dataset, DataError> {
    load_with_progress(source, opts, &mut |_, _| true)
}

/// Like [`load`], reporting `(done, total)` for folders; the callback returns `false` to cancel.
pub fn load_with_progress(
    source: &DataSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Dataset, DataError> {
    let data = load_source(source, opts, progress)?;
    fit_to_options(data, opts)
}

/// Folders and CSV files decode straight to [`LoadOptions::resize`] and `channels`; the
/// built-in digits and IDX files are stored at one size and are converted after loading
/// (bilinear, [`Dataset::converted_to`]), so that the options mean the same for every source.
fn fit_to_options(data: Dataset, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let (height, width) = opts.resize.unwrap_or((data.shape.height, data.shape.width));
    let target = ImageShape::new(opts.channels.unwrap_or(data.shape.channels), height, width);
    if target == data.shape {
        return Ok(data);
    }
    let path = PathBuf::from(data.source.to_string());
    if target.is_empty() {
        return Err(DataError::invalid(&path, format!("cannot resize images to {height}×{width}")));
    }
    if !matches!(target.channels, 1 | 3) {
        return Err(DataError::invalid(
            &path,
            format!("images can have 1 or 3 channels, not {}", target.channels),
        ));
    }
    check_budget(&path, data.len() as u64, target, opts)?;
    Ok(data.converted_to(target))
}

fn load_source(
    source: &DataSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Dataset, DataError> {
    let path = match source {
        DataSource::Builtin => return builtin::load(),
        DataSource::Synthetic(set) => return Ok(shapes::load(*set)),
        DataSource::Path(p) => p,
    };
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        return image_folder::load(path, opts, progress);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") || name.ends_with(".tsv") {
        csv::load(path, opts)
    } else if name.contains("idx") || name.ends_with("ubyte") || name.ends_with("ubyte.gz") {
        idx::load(path, opts)
    } else {
        // Sniff: IDX files start with two zero bytes (or gzip's 1f 8b).
        let head = read_head(path, 4)?;
        let idx_magic = head.len() >= 3 && head[0] == 0 && head[1] == 0 && head[2] == 0x08;
        if idx_magic || head.starts_with(&[0x1f, 0x8b]) {
            idx::load(path, opts)
        } else if image::guess_format(&head).is_ok() {
            Err(DataError::invalid(
                path,
                "this is a single image; open the folder that holds the images instead",
            ))
        } else {
            csv::load(path, opts)
        }
    }
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        Dataset::new("t", DataSource::Builtin, ImageShape::new(1, 2, 2), vec![0.5; n * 4], None).unwrap()
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let d = tiny(100);
        let a = d.split(0.2, 7);
        let b = d.split(0.2, 7);
        assert_eq!(a, b);
        assert_eq!(a.test.len(), 20);
        assert_eq!(a.train.len(), 80);
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_ne!(a, d.split(0.2, 8));
    }

    #[test]
    fn fixed_split_is_kept() {
        let mut d = tiny(10);
        d.fixed_split = Some(7);
        let s = d.split(0.5, 1);
        assert_eq!(s.train, (0..7).collect::<Vec<_>>());
        assert_eq!(s.test, vec![7, 8, 9]);
    }

    #[test]
    fn resize_keeps_constant_images_constant() {
        let out = resize_plane(&[0.25; 16], 4, 4, 7, 3);
        assert_eq!(out.len(), 21);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
        let rgb = convert_image(&[1.0; 12], ImageShape::new(3, 2, 2), ImageShape::new(1, 4, 4));
        assert!(rgb.iter().all(|v| (v - 1.0).abs() < 1e-5));
    }
}
