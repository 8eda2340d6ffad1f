//! IDX files (MNIST's format), raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
//! one big-endian `u32` per dimension, then the values. Images are `idx3` (N×H×W); labels are
//! `idx1` (N), read from the file beside the images whose name swaps `images`/`idx3` for
//! `labels`/`idx1`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{check_budget, DataError, DataSource, Dataset, ImageShape, LoadOptions};

/// The header and values of one IDX file.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn format_err(path: &Path, offset: u64, message: impl Into<String>) -> DataError {
    DataError::Format { path: path.to_path_buf(), offset, message: message.into() }
}

/// Reads an IDX array of unsigned bytes from `reader`. `known_len` is the real length of the
/// stream when it is known (an uncompressed file), so a header can be checked before any
/// allocation; otherwise the data are read incrementally and never beyond what the header says.
pub fn read_idx(
    mut reader: impl Read,
    path: &Path,
    known_len: Option<u64>,
    max_bytes: u64,
) -> Result<IdxArray, DataError> {
    let mut magic = [0u8; 4];
    let got = read_full(&mut reader, &mut magic, path)?;
    if got == 0 {
        return Err(DataError::invalid(path, "the file is empty"));
    }
    if got < 4 {
        return Err(format_err(path, got as u64, "file ends inside the 4-byte IDX magic number"));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format_err(
            path,
            0,
            format!(
                "not an IDX file: magic number {:02x}{:02x}{:02x}{:02x} should start with 0000",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(format_err(
            path,
            2,
            format!("IDX value type 0x{:02x} is not supported (only 0x08, unsigned bytes)", magic[2]),
        ));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 || ndims > 4 {
        return Err(format_err(path, 3, format!("IDX file with {ndims} dimensions (expected 1 to 4)")));
    }
    let mut dims = Vec::with_capacity(ndims);
    let mut total: u64 = 1;
    for d in 0..ndims {
        let mut b = [0u8; 4];
        let offset = 4 + 4 * d as u64;
        if read_full(&mut reader, &mut b, path)? < 4 {
            return Err(format_err(path, offset, "file ends inside the IDX header"));
        }
        let v = u32::from_be_bytes(b) as u64;
        total = total.saturating_mul(v);
        dims.push(v as usize);
    }
    let header = 4 + 4 * ndims as u64;
    if let Some(len) = known_len {
        let have = len.saturating_sub(header);
        if have != total {
            return Err(format_err(
                path,
                header,
                format!(
                    "header claims dimensions {dims:?} ({total} bytes of data) but the file has {have} bytes after the header"
                ),
            ));
        }
    }
    // f32 after decoding: four times the bytes.
    if total.saturating_mul(4) > max_bytes {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            needed: total.saturating_mul(4),
            limit: max_bytes,
        });
    }
    let mut data = Vec::new();
    if known_len.is_some() {
        data.reserve_exact(total as usize);
    }
    reader.take(total).read_to_end(&mut data).map_err(|e| DataError::io(path, e))?;
    if (data.len() as u64) < total {
        return Err(format_err(
            path,
            header + data.len() as u64,
            format!(
                "file ends after {} of the {total} data bytes its header claims (dimensions {dims:?})",
                data.len()
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Reads as many bytes as fit in `buf`, stopping early only at the end of the stream.
fn read_full(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, DataError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(got)
}

/// Opens an IDX file, raw or gzip-compressed (by its first two bytes, not its name).
pub fn read_idx_file(path: &Path, max_bytes: u64) -> Result<IdxArray, DataError> {
    let bytes_len = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = [0u8; 2];
    let got = read_full(&mut file, &mut head, path)?;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = std::io::BufReader::new(file);
    if got == 2 && head == [0x1f, 0x8b] {
        read_idx(GzipChecked::new(reader, path), path, None, max_bytes)
    } else {
        read_idx(reader, path, Some(bytes_len), max_bytes)
    }
}

/// Reads IDX bytes already in memory (the built-in data), gzip-compressed or not.
pub fn read_idx_bytes(bytes: &[u8], name: &Path, max_bytes: u64) -> Result<IdxArray, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_idx(GzipChecked::new(bytes, name), name, None, max_bytes)
    } else {
        read_idx(bytes, name, Some(bytes.len() as u64), max_bytes)
    }
}

/// A gzip decoder whose errors say that the file is not valid gzip.
struct GzipChecked<R: Read> {
    inner: flate2::read::GzDecoder<R>,
    path: PathBuf,
}

impl<R: Read> GzipChecked<R> {
    fn new(r: R, path: &Path) -> Self {
        Self { inner: flate2::read::GzDecoder::new(r), path: path.to_path_buf() }
    }
}

impl<R: Read> Read for GzipChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("gzip data of {} is corrupt or truncated: {e}", self.path.display()),
            )
        })
    }
}

/// The labels file that belongs to an images file, if the name follows MNIST's convention.
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_string_lossy().to_string();
    if !name.contains("idx3") {
        return None;
    }
    let swapped = name.replace("images", "labels").replace("idx3", "idx1");
    let candidate = images.with_file_name(&swapped);
    if candidate.exists() {
        return Some(candidate);
    }
    // `foo.gz` images with raw labels beside them, or the other way round.
    let alt = match swapped.strip_suffix(".gz") {
        Some(raw) => raw.to_string(),
        None => format!("{swapped}.gz"),
    };
    let candidate = images.with_file_name(alt);
    candidate.exists().then_some(candidate)
}

/// Builds a dataset from an images array and an optional labels array.
pub fn to_dataset(
    name: String,
    source: DataSource,
    path: &Path,
    images: IdxArray,
    labels: Option<(PathBuf, IdxArray)>,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let (n, shape) = match images.dims.as_slice() {
        [n, h, w] => (*n, ImageShape::new(1, *h, *w)),
        [n, h, w, c] if *c == 1 || *c == 3 => (*n, ImageShape::new(*c, *h, *w)),
        [_] => {
            return Err(DataError::invalid(
                path,
                "this is an idx1 (labels) file; open the matching images (idx3) file instead",
            ))
        }
        d => {
            return Err(DataError::invalid(
                path,
                format!("IDX dimensions {d:?} are not images (expected N×H×W or N×H×W×C)"),
            ))
        }
    };
    if n == 0 {
        return Err(DataError::invalid(path, "the file holds zero images"));
    }
    if shape.is_empty() {
        return Err(DataError::invalid(path, format!("images of size {shape} have no pixels")));
    }
    check_budget(path, n as u64, shape, opts)?;
    let mut pixels = Vec::with_capacity(images.data.len());
    if shape.channels == 1 {
        pixels.extend(images.data.iter().map(|&b| b as f32 / 255.0));
    } else {
        // N×H×W×C → N×C×H×W
        let (c, hw) = (shape.channels, shape.height * shape.width);
        for img in images.data.chunks_exact(shape.len()) {
            for ch in 0..c {
                pixels.extend((0..hw).map(|p| img[p * c + ch] as f32 / 255.0));
            }
        }
    }
    let labels = match labels {
        None => None,
        Some((lpath, arr)) => {
            if arr.dims.len() != 1 {
                return Err(DataError::invalid(
                    &lpath,
                    format!("labels file has dimensions {:?}, expected one", arr.dims),
                ));
            }
            if arr.dims[0] != n {
                return Err(DataError::invalid(
                    &lpath,
                    format!("{} labels for the {n} images of {}", arr.dims[0], path.display()),
                ));
            }
            Some(arr.data.into_iter().map(u32::from).collect())
        }
    };
    Dataset::new(name, source, shape, pixels, labels).map_err(|m| DataError::invalid(path, m))
}

/// Loads an IDX images file and, when it is beside it, its labels file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let images = read_idx_file(path, opts.max_decoded_bytes)?;
    let labels = match labels_path_for(path) {
        Some(lp) => {
            let arr = read_idx_file(&lp, opts.max_decoded_bytes)?;
            Some((lp, arr))
        }
        None => None,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    to_dataset(name, DataSource::Path(path.to_path_buf()), path, images, labels, opts)
}

/// Writes an IDX file of unsigned bytes (used by tests, benchmarks and export).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let f = std::fs::File::create(path)?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(&out)?;
        gz.finish()?;
        Ok(())
    } else {
        std::fs::write(path, out)
    }
}
