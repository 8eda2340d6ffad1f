//! The CSV and image-folder loaders, on small files written by the tests.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::path::{Path, PathBuf};

use genlab::engine::data::{self, csv, image_folder, DataError, DataSource, ImageShape, LoadOptions};
use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn opts() -> LoadOptions {
    LoadOptions::default()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

/// The row, column and message of a CSV error (panics on any other error).
fn csv_error(result: Result<data::Dataset, DataError>) -> (usize, usize, String) {
    match result {
        Err(DataError::Csv { row, column, message, .. }) => (row, column, message),
        other => panic!("expected a CSV error, got {other:?}"),
    }
}

fn invalid_message(result: Result<data::Dataset, DataError>) -> (PathBuf, String) {
    match result {
        Err(DataError::Invalid { path, message }) => (path, message),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_with_header_and_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(dir.path(), "digits.csv", "p0,p1,label,p2,p3\n0,255,3,51,0\n255,255,1,0,0\n102,0,7,0,255\n");
    let d = csv::load(&path, &opts()).unwrap();
    assert_eq!(d.shape, ImageShape::new(1, 2, 2));
    assert_eq!(d.len(), 3);
    assert_eq!(d.labels, Some(vec![3, 1, 7]));
    assert_eq!(d.class_names, None);
    assert_close(d.image(0), &[0.0, 1.0, 0.2, 0.0]);
    assert_close(d.image(1), &[1.0, 1.0, 0.0, 0.0]);
    assert_close(d.image(2), &[0.4, 0.0, 0.0, 1.0]);
    assert_eq!(d.name, "digits.csv");
    assert_eq!(d.source, DataSource::Path(path));
}

#[test]
fn csv_without_header() {
    let dir = tempfile::tempdir().unwrap();
    // One more column than a square image: the first column is the label (MNIST's CSV layout).
    let labelled = write(dir.path(), "a.csv", "5,0,255,255,0\n2,255,0,0,255\n");
    let d = csv::load(&labelled, &opts()).unwrap();
    assert_eq!(d.shape, ImageShape::new(1, 2, 2));
    assert_eq!(d.labels, Some(vec![5, 2]));
    assert_close(d.images.as_slice(), &[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);

    // Exactly a square: no labels.
    let bare = write(dir.path(), "b.csv", "0,0.5,1,0.25\n1,1,1,1\n");
    let d = csv::load(&bare, &opts()).unwrap();
    assert_eq!(d.labels, None);
    assert_close(d.image(0), &[0.0, 0.5, 1.0, 0.25]);
}

#[test]
fn csv_value_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let sixteen = write(dir.path(), "a.csv", "label,a,b,c,d\n0,0,4,8,16\n1,16,16,0,2\n");
    assert_close(csv::load(&sixteen, &opts()).unwrap().image(0), &[0.0, 0.25, 0.5, 1.0]);

    let unit = write(dir.path(), "b.csv", "label,a,b,c,d\n0,0,0.25,0.5,1\n");
    assert_close(csv::load(&unit, &opts()).unwrap().image(0), &[0.0, 0.25, 0.5, 1.0]);

    let (row, column, message) =
        csv_error(csv::load(&write(dir.path(), "c.csv", "label,a,b,c,d\n0,0,1,2,3\n1,0,300,0,0\n"), &opts()));
    assert_eq!((row, column), (3, 3));
    assert!(message.contains("300"), "{message}");

    let (row, column, _) =
        csv_error(csv::load(&write(dir.path(), "d.csv", "label,a,b,c,d\n0,0,1,-2,3\n"), &opts()));
    assert_eq!((row, column), (2, 4));
}

#[test]
fn csv_string_labels_become_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(dir.path(), "a.csv", "Class,a,b,c,d\ndog,0,0,0,0\ncat,1,1,1,1\nemu,0,1,0,1\ndog,1,0,1,0\n");
    let d = csv::load(&path, &opts()).unwrap();
    assert_eq!(d.labels, Some(vec![1, 0, 2, 1]));
    assert_eq!(d.class_names, Some(vec!["cat".to_string(), "dog".to_string(), "emu".to_string()]));
    assert_eq!(d.num_classes(), 3);

    // Text labels without a header: the first row is data, not a header.
    let path = write(dir.path(), "b.csv", "0,0,0,0,dog\n1,1,1,1,cat\n");
    let d = csv::load(&path, &opts()).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.labels, Some(vec![1, 0]));
    assert_close(d.image(0), &[0.0; 4]);
}

#[test]
fn csv_label_column_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.csv", "a,b,digit,c,d\n0,0,4,0,0\n1,1,9,1,1\n");
    // No column is named like a label: all five columns would be pixels.
    assert!(matches!(csv::load(&path, &opts()), Err(DataError::Invalid { .. })));
    let by_name = LoadOptions { label_column: Some("digit".into()), ..opts() };
    assert_eq!(csv::load(&path, &by_name).unwrap().labels, Some(vec![4, 9]));
    let by_index = LoadOptions { label_column: Some("2".into()), ..opts() };
    assert_eq!(csv::load(&path, &by_index).unwrap().labels, Some(vec![4, 9]));
    let missing = LoadOptions { label_column: Some("nope".into()), ..opts() };
    let (_, message) = invalid_message(csv::load(&path, &missing));
    assert!(message.contains("nope"), "{message}");
    let out_of_range = LoadOptions { label_column: Some("9".into()), ..opts() };
    assert!(matches!(csv::load(&path, &out_of_range), Err(DataError::Invalid { .. })));
}

#[test]
fn csv_ragged_rows_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let short = write(dir.path(), "a.csv", "label,a,b,c,d\n0,0,0,0,0\n1,1,1,1\n2,0,0,0,0\n");
    let (row, column, message) = csv_error(csv::load(&short, &opts()));
    assert_eq!((row, column), (3, 5), "{message}");

    let long = write(dir.path(), "b.csv", "label,a,b,c,d\n0,0,0,0,0\n1,1,1,1,1\n2,0,0,0,0,0\n");
    let (row, column, _) = csv_error(csv::load(&long, &opts()));
    assert_eq!((row, column), (4, 6));
}

#[test]
fn csv_nan_and_text_cells_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let nan = write(dir.path(), "a.csv", "label,a,b,c,d\n0,0,0,0,0\n1,1,NaN,1,1\n");
    let (row, column, message) = csv_error(csv::load(&nan, &opts()));
    assert_eq!((row, column), (3, 3));
    assert!(message.contains("NaN"), "{message}");

    let inf = write(dir.path(), "b.csv", "0,0,0,0,0\n1,1,1,inf,1\n");
    let (row, column, _) = csv_error(csv::load(&inf, &opts()));
    assert_eq!((row, column), (2, 4));

    let text = write(dir.path(), "c.csv", "label,a,b,c,d\n0,0,0,0,0\n1,1,1,1,1\n2,0,0,0,zero\n");
    let (row, column, message) = csv_error(csv::load(&text, &opts()));
    assert_eq!((row, column), (4, 5));
    assert!(message.contains("zero"), "{message}");

    let empty_cell = write(dir.path(), "d.csv", "label,a,b,c,d\n0,0,,0,0\n");
    assert_eq!(csv_error(csv::load(&empty_cell, &opts())).1, 3);
}

#[test]
fn csv_empty_and_header_only_files_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "a.csv", "");
    let (path, message) = invalid_message(csv::load(&empty, &opts()));
    assert_eq!(path, empty);
    assert!(message.contains("empty"), "{message}");
    let header_only = write(dir.path(), "b.csv", "label,a,b,c,d\n");
    let (_, message) = invalid_message(csv::load(&header_only, &opts()));
    assert!(message.contains("no data rows"), "{message}");
}

#[test]
fn csv_shape_is_inferred_or_given() {
    let dir = tempfile::tempdir().unwrap();
    let five = write(dir.path(), "a.csv", "a,b,c,d,e\n0,0,0,0,0\n");
    let (_, message) = invalid_message(csv::load(&five, &opts()));
    assert!(message.contains("5 pixel values"), "{message}");
    let given = LoadOptions { csv_shape: Some(ImageShape::new(1, 1, 5)), ..opts() };
    assert_eq!(csv::load(&five, &given).unwrap().shape, ImageShape::new(1, 1, 5));
    let wrong = LoadOptions { csv_shape: Some(ImageShape::new(1, 2, 2)), ..opts() };
    assert!(matches!(csv::load(&five, &wrong), Err(DataError::Invalid { .. })));

    // 12 values: not a square, but 3 × 2 × 2.
    let rgb = write(dir.path(), "b.csv", "0,0,0,0,255,255,255,255,0,0,0,0\n");
    let d = csv::load(&rgb, &opts()).unwrap();
    assert_eq!(d.shape, ImageShape::new(3, 2, 2));
    assert_close(&d.image(0)[4..8], &[1.0; 4]);

    let resized = LoadOptions { resize: Some((4, 4)), ..opts() };
    let d = csv::load(&rgb, &resized).unwrap();
    assert_eq!(d.shape, ImageShape::new(3, 4, 4));
}

#[test]
fn csv_over_budget_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.csv", "label,a,b,c,d\n0,0,0,0,0\n1,1,1,1,1\n2,0,0,0,0\n");
    // Two rows fit (2 × 4 × 4 = 32 bytes), the third does not.
    let small = LoadOptions { max_decoded_bytes: 40, ..opts() };
    match csv::load(&path, &small) {
        Err(DataError::TooLarge { path: p, needed, limit }) => {
            assert_eq!((p, needed, limit), (path, 48, 40));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn csv_gzip_and_tsv() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("a.csv.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(b"label,a,b,c,d\n4,0,255,0,255\n").unwrap();
    enc.finish().unwrap();
    let d = csv::load(&gz, &opts()).unwrap();
    assert_eq!(d.labels, Some(vec![4]));
    assert_close(d.image(0), &[0.0, 1.0, 0.0, 1.0]);

    let tsv = write(dir.path(), "b.tsv", "y\ta\tb\tc\td\n4\t0\t1\t0\t1\n");
    assert_eq!(csv::load(&tsv, &opts()).unwrap().labels, Some(vec![4]));
}

#[test]
fn binary_file_as_csv_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x81, b',', 0xc3, b'\n', 0x80]).unwrap();
    let (row, column, message) = csv_error(csv::load(&path, &opts()));
    assert_eq!((row, column), (1, 1));
    assert!(message.contains("UTF-8"), "{message}");
}

// ---------------------------------------------------------------- image folders

fn gray(path: &Path, w: u32, h: u32, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(w, h, Luma([v])).save(path).unwrap();
}

fn rgb(path: &Path, w: u32, h: u32, c: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb(c)).save(path).unwrap();
}

fn no_progress() -> impl FnMut(usize, usize) -> bool {
    |_, _| true
}

#[test]
fn folder_with_class_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pets");
    gray(&root.join("dog/b.png"), 4, 4, 51);
    gray(&root.join("dog/a.png"), 4, 4, 102);
    gray(&root.join("cat/z.png"), 4, 4, 255);
    gray(&root.join("cat/deeper/y.png"), 4, 4, 0);
    write(&root, "cat/notes.txt", "not an image");
    write(&root, "cat/.hidden.png", "not an image either");
    write(&root, ".git/HEAD", "ref");
    std::fs::create_dir_all(root.join("empty")).unwrap();

    let d = image_folder::load(&root, &opts(), &mut no_progress()).unwrap();
    assert_eq!(d.shape, ImageShape::new(1, 4, 4));
    assert_eq!(d.class_names, Some(vec!["cat".to_string(), "dog".to_string()]));
    // Class by class, files sorted by path: cat/deeper/y, cat/z, dog/a, dog/b.
    assert_eq!(d.labels, Some(vec![0, 0, 1, 1]));
    for (i, v) in [0.0, 1.0, 0.4, 0.2].into_iter().enumerate() {
        assert_close(d.image(i), &[v; 16]);
    }
    assert_eq!(d.name, "pets");
    assert_eq!(d.source, DataSource::Path(root));
}

#[test]
fn flat_folder_has_no_labels_and_reads_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    gray(&root.join("a.png"), 3, 3, 0);
    rgb(&root.join("b.bmp"), 3, 3, [255, 0, 0]);
    rgb(&root.join("c.JPG"), 3, 3, [0, 0, 255]);
    RgbaImage::from_pixel(3, 3, Rgba([0, 255, 0, 255])).save(root.join("d.gif")).unwrap();
    write(root, "readme.md", "hello");

    let d = image_folder::load(root, &opts(), &mut no_progress()).unwrap();
    assert_eq!(d.len(), 4);
    assert_eq!(d.labels, None);
    assert_eq!(d.class_names, None);
    assert_eq!(d.shape, ImageShape::new(3, 3, 3));
    // The gray PNG is repeated in all three planes; the BMP is exactly red.
    assert_close(d.image(0), &[0.0; 27]);
    let red = [[1.0; 9], [0.0; 9], [0.0; 9]].concat();
    assert_close(d.image(1), &red);
    // JPEG is lossy: blue dominates.
    let jpeg = d.image(2);
    assert!(jpeg[18..].iter().all(|v| *v > 0.9) && jpeg[..9].iter().all(|v| *v < 0.1));
    let green = [[0.0; 9], [1.0; 9], [0.0; 9]].concat();
    assert_close(d.image(3), &green);
}

#[test]
fn mixed_sizes_are_resized_to_the_most_common() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    gray(&root.join("a.png"), 8, 6, 200);
    gray(&root.join("b.png"), 4, 5, 100);
    gray(&root.join("c.png"), 4, 5, 100);
    let d = image_folder::load(root, &opts(), &mut no_progress()).unwrap();
    // image::save takes (width, height); shapes are height × width.
    assert_eq!(d.shape, ImageShape::new(1, 5, 4));
    assert_close(d.image(0), &[200.0 / 255.0; 20]);

    let forced = LoadOptions { resize: Some((2, 3)), channels: Some(3), ..opts() };
    let d = image_folder::load(root, &forced, &mut no_progress()).unwrap();
    assert_eq!(d.shape, ImageShape::new(3, 2, 3));
    assert_close(d.image(1), &[100.0 / 255.0; 18]);

    let bad = LoadOptions { channels: Some(2), ..opts() };
    assert!(matches!(image_folder::load(root, &bad, &mut no_progress()), Err(DataError::Invalid { .. })));
}

/// A folder of photos of odd sizes, loaded for the 64×64 presets (`--resize 64 --channels 3`).
#[test]
fn odd_sizes_load_resized_to_64x64_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("faces");
    rgb(&root.join("a.png"), 97, 131, [255, 0, 0]);
    rgb(&root.join("b.png"), 50, 37, [0, 0, 255]);
    gray(&root.join("c.png"), 201, 64, 128);
    let forced = LoadOptions { resize: Some((64, 64)), channels: Some(3), ..opts() };
    let d = data::load(&DataSource::Path(root), &forced).unwrap();
    assert_eq!((d.len(), d.shape), (3, ImageShape::new(3, 64, 64)));
    let plane = 64 * 64;
    assert_close(d.image(0), &[[1.0; 4096], [0.0; 4096], [0.0; 4096]].concat());
    assert_close(&d.image(1)[2 * plane..], &[1.0; 4096]);
    assert_close(d.image(2), &[128.0 / 255.0; 3 * 4096]);
}

/// Sources stored at one size (the built-in digits, IDX files) are converted after loading, so
/// that the options mean the same for every source.
#[test]
fn resize_and_channels_convert_the_builtin_digits() {
    let forced = LoadOptions { resize: Some((20, 36)), channels: Some(3), ..opts() };
    let d = data::load(&DataSource::Builtin, &forced).unwrap();
    let mnist = data::builtin::load().unwrap();
    assert_eq!((d.len(), d.shape), (mnist.len(), ImageShape::new(3, 20, 36)));
    assert_eq!((d.labels, d.fixed_split), (mnist.labels.clone(), mnist.fixed_split));
    let zero = LoadOptions { resize: Some((0, 64)), ..opts() };
    assert!(matches!(data::load(&DataSource::Builtin, &zero), Err(DataError::Invalid { .. })));
    let small = LoadOptions { max_decoded_bytes: 1 << 20, ..forced };
    assert!(matches!(data::load(&DataSource::Builtin, &small), Err(DataError::TooLarge { .. })));
}

#[test]
fn gray_or_rgb_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    // RGB files whose pixels are all gray load as one channel.
    let grayish = dir.path().join("grayish");
    rgb(&grayish.join("a.png"), 2, 2, [10, 10, 10]);
    rgb(&grayish.join("b.png"), 2, 2, [90, 90, 90]);
    let d = image_folder::load(&grayish, &opts(), &mut no_progress()).unwrap();
    assert_eq!(d.shape, ImageShape::new(1, 2, 2));
    assert_close(d.image(1), &[90.0 / 255.0; 4]);

    // One coloured image makes the whole set RGB.
    let mixed = dir.path().join("mixed");
    gray(&mixed.join("a.png"), 2, 2, 10);
    rgb(&mixed.join("b.png"), 2, 2, [0, 128, 255]);
    let d = image_folder::load(&mixed, &opts(), &mut no_progress()).unwrap();
    assert_eq!(d.shape, ImageShape::new(3, 2, 2));
    assert_close(d.image(0), &[10.0 / 255.0; 12]);
    assert_close(&d.image(1)[8..], &[1.0; 4]);

    // Forced gray.
    let one = LoadOptions { channels: Some(1), ..opts() };
    assert_eq!(image_folder::load(&mixed, &one, &mut no_progress()).unwrap().shape, ImageShape::new(1, 2, 2));

    // Alpha is ignored: a fully transparent pixel keeps its colour.
    let alpha = dir.path().join("alpha");
    std::fs::create_dir_all(&alpha).unwrap();
    RgbaImage::from_pixel(2, 2, Rgba([255, 0, 0, 0])).save(alpha.join("a.png")).unwrap();
    let d = image_folder::load(&alpha, &opts(), &mut no_progress()).unwrap();
    assert_close(d.image(0), &[[1.0; 4], [0.0; 4], [0.0; 4]].concat());
}

#[test]
fn undecodable_image_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("a/ok.png"), 2, 2, 0);
    let bad = write(dir.path(), "a/broken.png", "this is text, not a PNG");
    let (path, message) = invalid_message(image_folder::load(dir.path(), &opts(), &mut no_progress()));
    assert_eq!(path, bad);
    assert!(message.contains("decode"), "{message}");
}

#[test]
fn folder_without_images_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let (path, message) = invalid_message(image_folder::load(dir.path(), &opts(), &mut no_progress()));
    assert_eq!(path, dir.path());
    assert!(message.contains(".png") && message.contains(".jpg"), "{message}");

    write(dir.path(), "notes.txt", "x");
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    assert!(matches!(
        image_folder::load(dir.path(), &opts(), &mut no_progress()),
        Err(DataError::Invalid { .. })
    ));
}

#[test]
fn progress_is_reported_and_can_cancel() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        gray(&dir.path().join(format!("{i}.png")), 2, 2, 0);
    }
    let mut calls = Vec::new();
    image_folder::load(dir.path(), &opts(), &mut |done, total| {
        calls.push((done, total));
        true
    })
    .unwrap();
    assert_eq!(calls, vec![(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]);

    let mut seen = 0;
    let result = image_folder::load(dir.path(), &opts(), &mut |done, _| {
        seen = done;
        done < 2
    });
    assert!(matches!(result, Err(DataError::Cancelled)), "{result:?}");
    assert_eq!(seen, 2);
}

#[test]
fn folder_over_budget_is_too_large_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("a.png"), 4, 4, 0);
    gray(&dir.path().join("b.png"), 4, 4, 0);
    let small = LoadOptions { max_decoded_bytes: 100, ..opts() };
    let mut called = false;
    let result = image_folder::load(dir.path(), &small, &mut |_, _| {
        called = true;
        true
    });
    match result {
        Err(DataError::TooLarge { needed, limit, .. }) => assert_eq!((needed, limit), (128, 100)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!called, "nothing should be decoded over budget");
}

// ---------------------------------------------------------------- dispatch

#[test]
fn load_dispatches_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = write(dir.path(), "a.csv", "label,a,b,c,d\n1,0,0,0,0\n");
    let d = data::load(&DataSource::Path(csv_path.clone()), &opts()).unwrap();
    assert_eq!((d.len(), d.labels.clone()), (1, Some(vec![1])));
    assert_eq!(d.source, DataSource::Path(csv_path));

    let folder = dir.path().join("imgs");
    gray(&folder.join("x/a.png"), 2, 2, 0);
    let d = data::load(&DataSource::Path(folder.clone()), &opts()).unwrap();
    assert_eq!(d.class_names, Some(vec!["x".to_string()]));
    assert_eq!(d.source, DataSource::Path(folder));
}

#[test]
fn csv_row_without_line_breaks_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    std::fs::write(&path, "0,".repeat(2 << 20)).unwrap();
    let small = LoadOptions { max_decoded_bytes: 1000, ..opts() };
    let (_, message) = invalid_message(csv::load(&path, &small));
    assert!(message.contains("longer than"), "{message}");
}

/// Real digits written out the way they are usually shared (MNIST's headerless CSV with the
/// label first; PNGs in one folder per class) load back to the same pixels and labels.
#[test]
fn builtin_digits_round_trip_through_csv_and_png_folders() {
    let mnist = data::builtin::load().unwrap();
    let n = 200;
    let dir = tempfile::tempdir().unwrap();
    let labels = mnist.labels.as_ref().unwrap();

    let mut text = String::new();
    for (i, label) in labels.iter().enumerate().take(n) {
        let pixels: Vec<String> =
            mnist.image(i).iter().map(|v| ((v * 255.0).round() as u8).to_string()).collect();
        text.push_str(&format!("{label},{}\n", pixels.join(",")));
    }
    let csv_path = write(dir.path(), "mnist_train.csv", &text);
    let from_csv = data::load(&DataSource::Path(csv_path), &opts()).unwrap();
    assert_eq!(from_csv.shape, ImageShape::new(1, 28, 28));
    assert_eq!(from_csv.labels.as_deref(), Some(&labels[..n]));
    assert_close(&from_csv.images, &mnist.images[..n * 784]);

    let root = dir.path().join("mnist_png");
    for (i, label) in labels.iter().enumerate().take(n) {
        let bytes: Vec<u8> = mnist.image(i).iter().map(|v| (v * 255.0).round() as u8).collect();
        let class = root.join(label.to_string());
        std::fs::create_dir_all(&class).unwrap();
        GrayImage::from_raw(28, 28, bytes).unwrap().save(class.join(format!("{i:05}.png"))).unwrap();
    }
    let from_png = data::load(&DataSource::Path(root), &opts()).unwrap();
    assert_eq!(from_png.shape, ImageShape::new(1, 28, 28));
    assert_eq!(from_png.class_names.as_ref().unwrap().len(), 10);
    // Grouped by class, in file order within each class.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (labels[i], i));
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(from_png.class_name(from_png.labels.as_ref().unwrap()[k]), labels[i].to_string());
        assert_close(from_png.image(k), mnist.image(i));
    }
}
