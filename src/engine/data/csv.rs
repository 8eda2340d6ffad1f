//! CSV datasets (placeholder until the CSV loader lands).

use std::path::Path;

use super::{DataError, Dataset, LoadOptions};

/// Loads a CSV dataset.
pub fn load(path: &Path, _opts: &LoadOptions) -> Result<Dataset, DataError> {
    Err(DataError::invalid(path, "CSV loading is not implemented yet"))
}
