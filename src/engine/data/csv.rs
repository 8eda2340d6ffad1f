//! CSV datasets: one image per row, plus an optional header and an optional label column.
//!
//! - **Header**: present when the first row has a text cell where the second row has a number,
//!   or a cell named like a label column. A headerless file whose labels are text still loads:
//!   its text cells are in the same column on every row.
//! - **Label column**: [`LoadOptions::label_column`] (a header name, or a 0-based index), else the
//!   header column named `label`, `class` or `y` (any case). A headerless, all-numeric file whose
//!   width is one more than an image takes its first column as the label (MNIST's CSV layout).
//!   Integer labels are kept as they are; text labels become indices into the sorted names.
//! - **Pixels**: the other columns, in C×H×W order. The shape is [`LoadOptions::csv_shape`], else
//!   1×s×s when the count is a square, else 3×s×s.
//! - **Scale**: from the largest value in the file: up to 1 is kept, up to 16 is divided by 16,
//!   up to 255 by 255. Negative values and values over 255 are errors.
//! - Tab-separated when the name ends in `.tsv` (or `.tsv.gz`); gzip-compressed when the file
//!   starts with gzip's magic bytes.
//!
//! Rows and columns in errors are 1-based, as an editor shows them (the header is row 1).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::{check_budget, convert_image, DataError, DataSource, Dataset, ImageShape, LoadOptions};

/// Header names recognised as the label column, in order of preference.
const LABEL_NAMES: [&str; 3] = ["label", "class", "y"];

/// Integer labels up to this value are used as class indices directly; larger ones are treated
/// as names, so that one stray label of 4,000,000,000 does not make four billion classes.
const MAX_DIRECT_LABEL: u64 = 65_535;

/// One row may always be this long, whatever the decode limit (it is checked per row anyway).
const MIN_ROW_CAP: u64 = 1 << 20;

/// Loads a CSV (or TSV, optionally gzip-compressed) file of images, one per row.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    load_from_reader(std::io::BufReader::new(file), path, opts)
}

/// Loads CSV text (or TSV, optionally gzip-compressed) from any reader. `path` names the data
/// in errors and decides the delimiter (tab for a `.tsv` or `.tsv.gz` name).
pub fn load_from_reader(reader: impl Read, path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let mut rows = RowReader::new(reader, path, opts)?;
    let mut first = csv::StringRecord::new();
    if !rows.read(&mut first)? {
        return Err(DataError::invalid(path, "the file is empty"));
    }
    strip_bom(&mut first);
    let mut second = csv::StringRecord::new();
    let has_second = rows.read(&mut second)?;
    let header = looks_like_header(&first, has_second.then_some(&second), opts);
    let layout = Layout::choose(path, &first, header, opts)?;

    let mut acc = Accumulator::new(path, layout, opts);
    if !header {
        acc.push(&first)?;
    }
    if has_second {
        acc.push(&second)?;
        let mut record = csv::StringRecord::new();
        while rows.read(&mut record)? {
            acc.push(&record)?;
        }
    }
    acc.finish(header)
}

/// Reads records one at a time, turning the csv crate's errors into [`DataError`]s.
struct RowReader<'a> {
    reader: csv::Reader<RowCap<Box<dyn Read + 'a>>>,
    path: &'a Path,
}

impl<'a> RowReader<'a> {
    fn new(mut input: impl Read + 'a, path: &'a Path, opts: &LoadOptions) -> Result<Self, DataError> {
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut input, &mut magic).map_err(|e| DataError::io(path, e))?;
        // Put the sniffed bytes back in front of the rest.
        let whole = std::io::Cursor::new(magic).take(got as u64).chain(input);
        let input: Box<dyn Read + 'a> = if got == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(whole))
        } else {
            Box::new(whole)
        };
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let delimiter = if name.ends_with(".tsv") || name.ends_with(".tsv.gz") { b'\t' } else { b',' };
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(RowCap::new(input, opts.max_decoded_bytes.max(MIN_ROW_CAP)));
        Ok(Self { reader, path })
    }

    /// Reads the next record into `record`; `false` at the end of the file.
    fn read(&mut self, record: &mut csv::StringRecord) -> Result<bool, DataError> {
        let start = self.reader.position().byte();
        self.reader.get_mut().mark(start);
        match self.reader.read_record(record) {
            Ok(more) => Ok(more),
            Err(_) if self.reader.get_ref().tripped => Err(DataError::invalid(
                self.path,
                format!(
                    "the row starting at byte {start} is longer than {} bytes; is this a CSV file?",
                    self.reader.get_ref().cap
                ),
            )),
            Err(e) => Err(self.csv_error(e)),
        }
    }

    fn csv_error(&self, e: csv::Error) -> DataError {
        let row = e.position().map_or(0, |p| p.line() as usize);
        match e.into_kind() {
            csv::ErrorKind::Io(source) => DataError::io(self.path, source),
            csv::ErrorKind::Utf8 { err, .. } => DataError::Csv {
                path: self.path.to_path_buf(),
                row,
                column: err.field() + 1,
                message: "the text is not valid UTF-8 (is this a CSV file?)".into(),
            },
            other => DataError::invalid(self.path, format!("CSV error: {other:?}")),
        }
    }
}

/// Reads as many bytes as fit in `buf`, stopping early only at the end of the stream.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Fails a read once one row has grown past `cap` bytes, so that a file without line breaks
/// cannot make the csv crate buffer all of it.
struct RowCap<R> {
    inner: R,
    /// Bytes read from `inner` so far.
    read: u64,
    /// Where the current row starts.
    row_start: u64,
    cap: u64,
    tripped: bool,
}

impl<R: Read> RowCap<R> {
    fn new(inner: R, cap: u64) -> Self {
        Self { inner, read: 0, row_start: 0, cap, tripped: false }
    }

    fn mark(&mut self, row_start: u64) {
        self.row_start = row_start;
    }
}

impl<R: Read> Read for RowCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read.saturating_sub(self.row_start) > self.cap {
            self.tripped = true;
            return Err(std::io::Error::other("row too long"));
        }
        let k = self.inner.read(buf)?;
        self.read += k as u64;
        Ok(k)
    }
}

fn strip_bom(record: &mut csv::StringRecord) {
    if record.get(0).is_some_and(|c| c.starts_with('\u{feff}')) {
        let cells: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { c.trim_start_matches('\u{feff}') } else { c }.to_string())
            .collect();
        *record = csv::StringRecord::from(cells);
    }
}

fn is_number(cell: &str) -> bool {
    cell.trim().parse::<f64>().is_ok()
}

fn is_label_name(cell: &str) -> bool {
    LABEL_NAMES.iter().any(|n| cell.trim().eq_ignore_ascii_case(n))
}

/// Whether the first row names the columns (see the module documentation).
fn looks_like_header(
    first: &csv::StringRecord,
    second: Option<&csv::StringRecord>,
    opts: &LoadOptions,
) -> bool {
    let text_columns: Vec<usize> =
        first.iter().enumerate().filter(|(_, c)| !is_number(c)).map(|(i, _)| i).collect();
    if text_columns.is_empty() {
        return false;
    }
    let named_label = opts.label_column.as_deref().is_some_and(|l| first.iter().any(|c| c.trim() == l));
    if named_label || first.iter().any(is_label_name) {
        return true;
    }
    match second {
        None => true,
        Some(second) => text_columns.iter().any(|&i| second.get(i).is_some_and(is_number)),
    }
}

/// Which column holds the label, how wide a row is, and the image shape.
#[derive(Clone, Copy, Debug)]
struct Layout {
    label: Option<usize>,
    width: usize,
    shape: ImageShape,
}

impl Layout {
    fn choose(
        path: &Path,
        first: &csv::StringRecord,
        header: bool,
        opts: &LoadOptions,
    ) -> Result<Self, DataError> {
        let width = first.len();
        let label = match (&opts.label_column, header) {
            (Some(wanted), _) => Some(find_column(path, first, header, wanted)?),
            (None, true) => LABEL_NAMES
                .iter()
                .find_map(|name| first.iter().position(|c| c.trim().eq_ignore_ascii_case(name))),
            (None, false) => {
                let text: Vec<usize> =
                    first.iter().enumerate().filter(|(_, c)| !is_number(c)).map(|(i, _)| i).collect();
                match text.as_slice() {
                    [only] => Some(*only),
                    _ if shape_for(width, opts).is_err()
                        && width > 1
                        && shape_for(width - 1, opts).is_ok() =>
                    {
                        Some(0)
                    }
                    _ => None,
                }
            }
        };
        let pixels = width - usize::from(label.is_some());
        let shape = shape_for(pixels, opts).map_err(|m| DataError::invalid(path, m))?;
        Ok(Self { label, width, shape })
    }
}

/// The label column named or numbered by `wanted`.
fn find_column(
    path: &Path,
    first: &csv::StringRecord,
    header: bool,
    wanted: &str,
) -> Result<usize, DataError> {
    if header {
        let wanted = wanted.trim();
        let exact = first.iter().position(|c| c.trim() == wanted);
        let loose = || first.iter().position(|c| c.trim().eq_ignore_ascii_case(wanted));
        if let Some(i) = exact.or_else(loose) {
            return Ok(i);
        }
    }
    match wanted.trim().parse::<usize>() {
        Ok(i) if i < first.len() => Ok(i),
        Ok(i) => Err(DataError::invalid(
            path,
            format!("label column {i} is out of range: rows have {} columns (0-based)", first.len()),
        )),
        Err(_) if header => {
            Err(DataError::invalid(path, format!("the header has no column named {wanted:?}")))
        }
        Err(_) => Err(DataError::invalid(
            path,
            format!("the file has no header, so the label column {wanted:?} must be a 0-based index"),
        )),
    }
}

/// The image shape for `pixels` values per row.
fn shape_for(pixels: usize, opts: &LoadOptions) -> Result<ImageShape, String> {
    if pixels == 0 {
        return Err("the rows have no pixel columns".into());
    }
    if let Some(shape) = opts.csv_shape {
        return if shape.len() == pixels {
            Ok(shape)
        } else {
            Err(format!(
                "the rows have {pixels} pixel values but the given shape {shape} needs {}",
                shape.len()
            ))
        };
    }
    let side = pixels.isqrt();
    if side * side == pixels {
        return Ok(ImageShape::new(1, side, side));
    }
    let side = (pixels / 3).isqrt();
    if pixels.is_multiple_of(3) && side * side * 3 == pixels {
        return Ok(ImageShape::new(3, side, side));
    }
    Err(format!(
        "{pixels} pixel values per row are neither a square gray image (s×s) nor a square RGB \
         image (3×s×s); give the image shape"
    ))
}

/// Gathers pixels and labels row by row, within the decode budget.
struct Accumulator<'a> {
    path: &'a Path,
    layout: Layout,
    opts: &'a LoadOptions,
    rows: u64,
    pixels: Vec<f32>,
    max_value: f32,
    /// Distinct label texts in order of first appearance, and each row's index into them.
    label_names: Vec<String>,
    label_index: HashMap<String, u32>,
    labels: Vec<u32>,
}

impl<'a> Accumulator<'a> {
    fn new(path: &'a Path, layout: Layout, opts: &'a LoadOptions) -> Self {
        Self {
            path,
            layout,
            opts,
            rows: 0,
            pixels: Vec::new(),
            max_value: 0.0,
            label_names: Vec::new(),
            label_index: HashMap::new(),
            labels: Vec::new(),
        }
    }

    fn cell_error(&self, row: usize, column: usize, message: impl Into<String>) -> DataError {
        DataError::Csv { path: self.path.to_path_buf(), row, column, message: message.into() }
    }

    fn push(&mut self, record: &csv::StringRecord) -> Result<(), DataError> {
        let row = record.position().map_or(0, |p| p.line() as usize);
        let width = self.layout.width;
        if record.len() != width {
            return Err(self.cell_error(
                row,
                record.len().min(width) + 1,
                format!("the row has {} cells, the first row has {width}", record.len()),
            ));
        }
        let needed = (self.rows + 1)
            .saturating_mul(self.layout.shape.len() as u64)
            .saturating_mul(std::mem::size_of::<f32>() as u64);
        if needed > self.opts.max_decoded_bytes {
            return Err(DataError::TooLarge {
                path: self.path.to_path_buf(),
                needed,
                limit: self.opts.max_decoded_bytes,
            });
        }
        for (i, cell) in record.iter().enumerate() {
            if Some(i) == self.layout.label {
                let label = self.intern_label(cell).map_err(|m| self.cell_error(row, i + 1, m))?;
                self.labels.push(label);
            } else {
                let v = parse_pixel(cell).map_err(|m| self.cell_error(row, i + 1, m))?;
                self.max_value = self.max_value.max(v);
                self.pixels.push(v);
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn intern_label(&mut self, cell: &str) -> Result<u32, String> {
        let name = cell.trim();
        if name.is_empty() {
            return Err("the label is empty".into());
        }
        if let Some(&i) = self.label_index.get(name) {
            return Ok(i);
        }
        let i = self.label_names.len() as u32;
        self.label_names.push(name.to_string());
        self.label_index.insert(name.to_string(), i);
        Ok(i)
    }

    fn finish(mut self, header: bool) -> Result<Dataset, DataError> {
        if self.rows == 0 {
            let what = if header { "the file has a header but no data rows" } else { "no data rows" };
            return Err(DataError::invalid(self.path, what));
        }
        let scale = if self.max_value <= 1.0 {
            1.0
        } else if self.max_value <= 16.0 {
            1.0 / 16.0
        } else {
            1.0 / 255.0
        };
        if scale != 1.0 {
            self.pixels.iter_mut().for_each(|v| *v *= scale);
        }
        let mut shape = self.layout.shape;
        if let Some((height, width)) =
            self.opts.resize.filter(|&(h, w)| (h, w) != (shape.height, shape.width))
        {
            let target = ImageShape::new(shape.channels, height, width);
            if target.is_empty() {
                return Err(DataError::invalid(self.path, format!("cannot resize to {height}×{width}")));
            }
            check_budget(self.path, self.rows, target, self.opts)?;
            self.pixels = self
                .pixels
                .chunks_exact(shape.len())
                .flat_map(|img| convert_image(img, shape, target))
                .collect();
            shape = target;
        }
        let (labels, class_names) = match self.layout.label {
            None => (None, None),
            Some(_) => {
                let (labels, names) = resolve_labels(self.labels, self.label_names);
                (Some(labels), names)
            }
        };
        let name = self.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let mut data =
            Dataset::new(name, DataSource::Path(self.path.to_path_buf()), shape, self.pixels, labels)
                .map_err(|m| DataError::invalid(self.path, m))?;
        data.class_names = class_names;
        Ok(data)
    }
}

/// One pixel value: a finite, non-negative number no larger than 255.
fn parse_pixel(cell: &str) -> Result<f32, String> {
    let text = cell.trim();
    if text.is_empty() {
        return Err("the cell is empty".into());
    }
    let v: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{text:?} is not a finite number"));
    }
    if v < 0.0 {
        return Err(format!("{text} is negative; pixel values must be in [0, 1], [0, 16] or [0, 255]"));
    }
    if v > 255.0 {
        return Err(format!("{text} is over 255; pixel values must be in [0, 1], [0, 16] or [0, 255]"));
    }
    Ok(v as f32)
}

/// Turns interned label texts into class indices: small non-negative integers are used as they
/// are; anything else becomes an index into the sorted names (numerically when all are numbers),
/// returned as the class names.
fn resolve_labels(raw: Vec<u32>, names: Vec<String>) -> (Vec<u32>, Option<Vec<String>>) {
    let direct: Option<Vec<u32>> = names
        .iter()
        .map(|n| n.parse::<u64>().ok().filter(|&v| v <= MAX_DIRECT_LABEL).map(|v| v as u32))
        .collect();
    if let Some(values) = direct {
        return (raw.into_iter().map(|i| values[i as usize]).collect(), None);
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    let numbers: Option<Vec<f64>> = names.iter().map(|n| n.parse::<f64>().ok()).collect();
    match numbers {
        Some(v) => order.sort_by(|&a, &b| v[a].total_cmp(&v[b])),
        None => order.sort_by(|&a, &b| names[a].cmp(&names[b])),
    }
    let mut new_index = vec![0u32; names.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new as u32;
    }
    let sorted = order.iter().map(|&i| names[i].clone()).collect();
    (raw.into_iter().map(|i| new_index[i as usize]).collect(), Some(sorted))
}
