//! Image-folder datasets (placeholder until the folder loader lands).

use std::path::Path;

use super::{DataError, Dataset, LoadOptions};

/// Loads a folder of images.
pub fn load(
    path: &Path,
    _opts: &LoadOptions,
    _progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Dataset, DataError> {
    Err(DataError::invalid(path, "image folders are not implemented yet"))
}
