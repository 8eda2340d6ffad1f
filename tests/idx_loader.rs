//! The IDX reader on files the tests write: good ones and every kind of broken one.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use genlab::engine::data::idx::write_idx;
use genlab::engine::data::{self, DataError, DataSource, ImageShape, LoadOptions};
use std::path::{Path, PathBuf};

fn load(p: &Path) -> Result<data::Dataset, DataError> {
    data::load(&DataSource::Path(p.to_path_buf()), &LoadOptions::default())
}

fn err(p: &Path) -> String {
    load(p).err().unwrap_or_else(|| panic!("{} should fail to load", p.display())).to_string()
}

fn images(dir: &Path, name: &str, n: usize) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..n * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
    write_idx(&p, &[n, 4, 3], &data).unwrap();
    p
}

#[test]
fn raw_and_gzip_images_load_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    for (img, lab) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ] {
        let p = images(dir.path(), img, 5);
        write_idx(&dir.path().join(lab), &[5], &[3, 1, 4, 1, 5]).unwrap();
        let d = load(&p).unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d.shape, ImageShape::new(1, 4, 3));
        assert_eq!(d.labels.as_deref(), Some(&[3, 1, 4, 1, 5][..]));
        assert_eq!(d.image(0)[1], 37.0 / 255.0);
        assert!(d.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // Without a labels file beside it: no labels.
    let other = tempfile::tempdir().unwrap();
    let p = images(other.path(), "digits-images-idx3-ubyte", 2);
    assert!(load(&p).unwrap().labels.is_none());
}

#[test]
fn the_builtin_set_has_its_own_split() {
    let d = data::builtin::load().unwrap();
    assert_eq!(d.len(), 10_000);
    assert_eq!(d.shape, ImageShape::new(1, 28, 28));
    let s = d.split(0.5, 1);
    assert_eq!((s.train.len(), s.test.len()), (8000, 2000));
    assert_eq!(d.label_histogram().iter().sum::<usize>(), 10_000);
    assert!(d.label_histogram().iter().all(|&c| c > 800), "{:?}", d.label_histogram());
}

#[test]
fn malformed_idx_files_give_errors_that_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let empty = d.join("empty-images-idx3-ubyte");
    std::fs::write(&empty, b"").unwrap();
    assert!(err(&empty).contains("empty"), "{}", err(&empty));

    let magic = d.join("magic-images-idx3-ubyte");
    std::fs::write(&magic, b"\x12\x34\x08\x03\0\0\0\x01\0\0\0\x01\0\0\0\x01\x00").unwrap();
    let e = err(&magic);
    assert!(
        e.contains("magic-images-idx3-ubyte") && e.contains("magic number") && e.contains("byte 0"),
        "{e}"
    );

    let p = images(d, "trunc-images-idx3-ubyte", 10);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    let e = err(&p);
    assert!(e.contains("trunc-images-idx3-ubyte") && e.contains("header claims"), "{e}");

    // A header claiming 4 billion images: refused from the file size, nothing allocated.
    let huge = d.join("huge-images-idx3-ubyte");
    let mut h = vec![0, 0, 8, 3];
    for v in [4_000_000_000u32, 28, 28] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h.extend_from_slice(&[0; 100]);
    std::fs::write(&huge, &h).unwrap();
    let e = err(&huge);
    assert!(e.contains("4000000000") && e.contains("100 bytes"), "{e}");

    // The same header gzip-compressed: the size is unknown up front, so the decode budget
    // refuses it before reading.
    let huge_gz = d.join("huge-images-idx3-ubyte.gz");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&huge_gz).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(&h).unwrap();
        gz.finish().unwrap();
    }
    let e = err(&huge_gz);
    assert!(e.contains("over the limit"), "{e}");

    // A small claim that the gzip stream cannot back.
    let short_gz = d.join("short-images-idx3-ubyte.gz");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&short_gz).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = vec![0, 0, 8, 3];
        for v in [10u32, 28, 28] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[7; 500]);
        gz.write_all(&b).unwrap();
        gz.finish().unwrap();
    }
    let e = err(&short_gz);
    assert!(e.contains("file ends after 500"), "{e}");

    let zero = d.join("zero-images-idx3-ubyte");
    write_idx(&zero, &[0, 28, 28], &[]).unwrap();
    assert!(err(&zero).contains("zero images"), "{}", err(&zero));

    // Named .gz, gzip magic, garbage inside.
    let notgz = d.join("bad-images-idx3-ubyte.gz");
    std::fs::write(&notgz, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    let e = err(&notgz);
    assert!(e.contains("bad-images-idx3-ubyte.gz") && e.contains("gzip"), "{e}");

    // Named .gz but plain text.
    let text_gz = d.join("text-images-idx3-ubyte.gz");
    std::fs::write(&text_gz, b"hello, this is not gzip").unwrap();
    assert!(err(&text_gz).contains("not an IDX file"), "{}", err(&text_gz));

    let labels_only = d.join("only-labels-idx1-ubyte");
    write_idx(&labels_only, &[3], &[1, 2, 3]).unwrap();
    assert!(err(&labels_only).contains("labels"), "{}", err(&labels_only));

    // Labels that do not match the image count.
    let p = images(d, "mismatch-images-idx3-ubyte", 4);
    write_idx(&d.join("mismatch-labels-idx1-ubyte"), &[3], &[1, 2, 3]).unwrap();
    let e = err(&p);
    assert!(e.contains("mismatch-labels-idx1-ubyte") && e.contains("3 labels for the 4 images"), "{e}");

    let missing = d.join("missing");
    assert!(err(&missing).contains("missing"));
}

#[test]
fn a_decode_budget_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = images(dir.path(), "a-images-idx3-ubyte", 100);
    let opts = LoadOptions { max_decoded_bytes: 1000, ..LoadOptions::default() };
    let e = data::load(&DataSource::Path(p), &opts).err().unwrap().to_string();
    assert!(e.contains("over the limit of 1000 bytes"), "{e}");
}
