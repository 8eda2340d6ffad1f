//! The built-in dataset: 10,000 MNIST digits (8,000 train, 2,000 test) compiled into the
//! binary from `assets/mnist10k/` (see its README for the licence and attribution).

use std::path::Path;

use super::idx::{read_idx_bytes, to_dataset};
use super::{DataError, DataSource, Dataset, LoadOptions};

const TRAIN_IMAGES: &[u8] = include_bytes!("../../../assets/mnist10k/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../../assets/mnist10k/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../../assets/mnist10k/test-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../../assets/mnist10k/test-labels-idx1-ubyte.gz");

/// Display name of the built-in dataset.
pub const NAME: &str = "MNIST 10k (built-in)";

/// Loads the built-in digits: the first 8,000 images are the training split, the last 2,000 the
/// test split.
pub fn load() -> Result<Dataset, DataError> {
    let opts = LoadOptions::default();
    let part = |images: &[u8], labels: &[u8], which: &str| -> Result<Dataset, DataError> {
        let ip = Path::new("builtin").join(format!("{which}-images-idx3-ubyte.gz"));
        let lp = Path::new("builtin").join(format!("{which}-labels-idx1-ubyte.gz"));
        let imgs = read_idx_bytes(images, &ip, opts.max_decoded_bytes)?;
        let labs = read_idx_bytes(labels, &lp, opts.max_decoded_bytes)?;
        to_dataset(NAME.into(), DataSource::Builtin, &ip, imgs, Some((lp, labs)), &opts)
    };
    let mut train = part(TRAIN_IMAGES, TRAIN_LABELS, "train")?;
    let test = part(TEST_IMAGES, TEST_LABELS, "test")?;
    let n_train = train.len();
    train.images.extend_from_slice(&test.images);
    if let (Some(a), Some(b)) = (train.labels.as_mut(), test.labels) {
        a.extend(b);
    }
    train.fixed_split = Some(n_train);
    train.class_names = Some((0..10).map(|d| d.to_string()).collect());
    Ok(train)
}
