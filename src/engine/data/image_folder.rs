//! Image-folder datasets: PNG, JPEG, BMP and GIF (first frame) files.
//!
//! - **Layout**: when the folder has sub-folders holding images, each such sub-folder is a class
//!   (torchvision's ImageFolder): its name is the class name, its images (at any depth) are that
//!   class, and images lying loose beside the class folders are ignored. Otherwise the folder's
//!   own images load without labels.
//! - **Skipped**: hidden files and folders (names starting with `.`), files with other
//!   extensions, and symbolic links to folders inside a class folder (no cycles).
//! - **Shape**: every image is resized (triangle filter) to [`LoadOptions::resize`], else to the
//!   most common size (ties go to the size met first). Channels are [`LoadOptions::channels`],
//!   else gray when every image is gray (a gray colour type, or RGB with r = g = b everywhere),
//!   else RGB. Alpha is ignored: a pixel keeps its stored colour whatever its opacity.
//! - **Order**: class by class in sorted order, files sorted by path, so loads are repeatable.
//!
//! Sizes come from each file's header and are checked against the decode budget before any
//! image is decoded.

use std::collections::HashMap;
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::{check_budget, DataError, DataSource, Dataset, ImageShape, LoadOptions};

/// File extensions read as images (compared without case).
pub const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "gif"];

/// An image file to load and its class, if the folder has classes.
struct Entry {
    path: PathBuf,
    label: Option<u32>,
}

/// What a file's header says, read without decoding the pixels.
#[derive(Clone, Copy)]
struct Header {
    height: usize,
    width: usize,
    gray: bool,
}

/// Loads a folder of images; `progress(done, total)` is called as files are decoded and
/// cancels the load by returning `false`.
pub fn load(
    path: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Dataset, DataError> {
    let (entries, class_names) = list_images(path)?;
    if entries.is_empty() {
        return Err(DataError::invalid(
            path,
            format!(
                "no images found (read: .{}; one sub-folder per class, or images directly in the folder)",
                EXTENSIONS.join(", .")
            ),
        ));
    }
    let headers = entries.iter().map(|e| probe(&e.path)).collect::<Result<Vec<_>, _>>()?;
    let shape = choose_shape(path, &headers, opts)?;
    check_budget(path, entries.len() as u64, shape, opts)?;
    for (entry, header) in entries.iter().zip(&headers) {
        // Each image is also held once at full size in f32, before resizing.
        let full_size = ImageShape::new(shape.channels, header.height, header.width);
        check_budget(&entry.path, 1, full_size, opts)?;
    }

    let total = entries.len();
    if !progress(0, total) {
        return Err(DataError::Cancelled);
    }
    let mut images = Vec::with_capacity(total * shape.len());
    // Whether every RGB image so far has r = g = b, so that the set can be stored as gray.
    let mut all_gray = opts.channels.is_none() && shape.channels == 3;
    for (done, entry) in entries.iter().enumerate() {
        let img = ImageReader::open(&entry.path)
            .map_err(|e| DataError::io(&entry.path, e))?
            .with_guessed_format()
            .map_err(|e| DataError::io(&entry.path, e))?
            .decode()
            .map_err(|e| decode_error(&entry.path, e))?;
        let gray = append_planes(&img, shape, &mut images);
        all_gray &= gray;
        if !progress(done + 1, total) {
            return Err(DataError::Cancelled);
        }
    }
    let shape = if all_gray { keep_first_plane(&mut images, shape) } else { shape };

    let labels = entries.iter().map(|e| e.label).collect::<Option<Vec<u32>>>();
    let mut data =
        Dataset::new(folder_name(path), DataSource::Path(path.to_path_buf()), shape, images, labels)
            .map_err(|m| DataError::invalid(path, m))?;
    data.class_names = class_names;
    Ok(data)
}

fn decode_error(path: &Path, e: image::ImageError) -> DataError {
    match e {
        image::ImageError::Limits(_) => DataError::invalid(
            path,
            format!("the image is too large to decode: its header claims more than the decoder's memory limit ({e})"),
        ),
        e => DataError::invalid(path, format!("cannot decode the image: {e}")),
    }
}

fn folder_name(path: &Path) -> String {
    match path.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        // `.` or `/`: name the folder by its full path.
        None => std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| path.display().to_string()),
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

/// The visible entries of a folder, sorted by name.
fn read_sorted(dir: &Path) -> Result<Vec<std::fs::DirEntry>, DataError> {
    let mut entries = std::fs::read_dir(dir)
        .and_then(|it| it.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| DataError::io(dir, e))?;
    entries.retain(|e| !is_hidden(&e.path()));
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// The images to load, in order, and the class names when the folder has class sub-folders.
fn list_images(root: &Path) -> Result<(Vec<Entry>, Option<Vec<String>>), DataError> {
    let mut classes: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut loose = Vec::new();
    for entry in read_sorted(root)? {
        let path = entry.path();
        if path.is_dir() {
            let mut files = Vec::new();
            collect_images(&path, &mut files)?;
            if !files.is_empty() {
                files.sort();
                classes.push((entry.file_name().to_string_lossy().into_owned(), files));
            }
        } else if has_image_extension(&path) && path.is_file() {
            loose.push(Entry { path, label: None });
        }
    }
    if classes.is_empty() {
        return Ok((loose, None));
    }
    let mut entries = Vec::new();
    let mut names = Vec::with_capacity(classes.len());
    for (label, (name, files)) in classes.into_iter().enumerate() {
        names.push(name);
        entries.extend(files.into_iter().map(|path| Entry { path, label: Some(label as u32) }));
    }
    Ok((entries, Some(names)))
}

/// Adds the image files under `dir` (at any depth, not following links to folders) to `out`.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in read_sorted(dir)? {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        if kind.is_dir() {
            collect_images(&path, out)?;
        } else if has_image_extension(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads an image file's size and colour type from its header.
fn probe(path: &Path) -> Result<Header, DataError> {
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    probe_reader(reader, path)
}

/// Reads an image's size and colour type from its header (`path` names it in errors).
fn probe_reader<R: BufRead + Seek>(reader: ImageReader<R>, path: &Path) -> Result<Header, DataError> {
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DataError::invalid(path, format!("the image is {width}×{height} pixels")));
    }
    Ok(Header { height: height as usize, width: width as usize, gray: !decoder.color_type().has_color() })
}

/// Decodes one image file's bytes as a folder load would (`path` names it in errors): to
/// [`LoadOptions::resize`], else its own size, and [`LoadOptions::channels`], else gray when
/// its colour type is gray and RGB otherwise. The header's size is checked against the decode
/// budget first. Returns the shape and the C×H×W values in [0, 1].
pub fn decode_image(
    bytes: &[u8],
    path: &Path,
    opts: &LoadOptions,
) -> Result<(ImageShape, Vec<f32>), DataError> {
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DataError::io(path, e))
    };
    let header = probe_reader(reader()?, path)?;
    let shape = choose_shape(path, &[header], opts)?;
    check_budget(path, 1, shape, opts)?;
    check_budget(path, 1, ImageShape::new(shape.channels, header.height, header.width), opts)?;
    let img = reader()?.decode().map_err(|e| decode_error(path, e))?;
    let mut values = Vec::with_capacity(shape.len());
    append_planes(&img, shape, &mut values);
    Ok((shape, values))
}

/// The shape every image is converted to (see the module documentation).
fn choose_shape(path: &Path, headers: &[Header], opts: &LoadOptions) -> Result<ImageShape, DataError> {
    let (height, width) = match opts.resize {
        Some((h, w)) if h == 0 || w == 0 => {
            return Err(DataError::invalid(path, format!("cannot resize images to {h}×{w}")));
        }
        Some(size) => size,
        None => most_common_size(headers),
    };
    let channels = match opts.channels {
        Some(c @ (1 | 3)) => c,
        Some(c) => {
            return Err(DataError::invalid(path, format!("images can have 1 or 3 channels, not {c}")));
        }
        None if headers.iter().all(|h| h.gray) => 1,
        None => 3,
    };
    Ok(ImageShape::new(channels, height, width))
}

/// The (height, width) shared by most images; ties go to the size met first.
fn most_common_size(headers: &[Header]) -> (usize, usize) {
    // size → (count, index of first image with it)
    let mut counts: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        counts.entry((h.height, h.width)).or_insert((0, i)).0 += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, (count, first))| (*count, std::cmp::Reverse(*first)))
        .map_or((0, 0), |(size, _)| size)
}

/// Appends `img` as `shape.channels` planes of `shape.height`×`shape.width` values in [0, 1].
/// Returns whether the image is gray (for RGB output: r = g = b at every pixel, before resizing).
fn append_planes(img: &DynamicImage, shape: ImageShape, out: &mut Vec<f32>) -> bool {
    let (w, h) = (shape.width as u32, shape.height as u32);
    if shape.channels == 1 {
        let mut luma = img.to_luma32f();
        if luma.dimensions() != (w, h) {
            luma = imageops::resize(&luma, w, h, FilterType::Triangle);
        }
        out.extend_from_slice(luma.as_raw());
        return true;
    }
    let mut rgb = img.to_rgb32f();
    let gray = rgb.as_raw().chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
    if rgb.dimensions() != (w, h) {
        rgb = imageops::resize(&rgb, w, h, FilterType::Triangle);
    }
    for c in 0..3 {
        out.extend(rgb.as_raw().chunks_exact(3).map(|p| p[c]));
    }
    gray
}

/// Keeps the first plane of each RGB image in place (used when all three planes are equal).
fn keep_first_plane(images: &mut Vec<f32>, shape: ImageShape) -> ImageShape {
    let plane = shape.height * shape.width;
    let n = images.len() / shape.len();
    for i in 0..n {
        images.copy_within(i * 3 * plane..i * 3 * plane + plane, i * plane);
    }
    images.truncate(n * plane);
    images.shrink_to_fit();
    ImageShape::new(1, shape.height, shape.width)
}
