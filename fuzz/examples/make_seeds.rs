//! Writes the seed corpora in `fuzz/seeds/<target>/` from real data: the built-in MNIST IDX
//! files, CSV rows and image files of real digits, and checkpoints saved by genlab itself.
//!
//!     cd fuzz && cargo run --release --example make_seeds

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use genlab::engine::checkpoint;
use genlab::engine::config::preset;
use genlab::engine::data::{builtin, DataSource, Dataset, ImageShape};
use genlab::engine::session::TrainingSession;

fn seeds(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("the seeds folder can be created");
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// The first `n` built-in digits as bytes, and their labels.
fn digits(data: &Dataset, n: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels = data.images[..n * 784].iter().map(|v| (v * 255.0).round() as u8).collect();
    let labels = data.labels.as_ref().expect("labels")[..n].iter().map(|&l| l as u8).collect();
    (pixels, labels)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("the seed can be written");
}

fn main() {
    let mnist = builtin::load().expect("the built-in digits load");
    let (pixels, labels) = digits(&mnist, 4);

    let dir = seeds("idx");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let real_labels = std::fs::read(repo.join("assets/mnist10k/test-labels-idx1-ubyte.gz")).expect("asset");
    write(&dir, "test-labels-idx1-ubyte.gz", &real_labels);
    let images = idx_bytes(&[4, 28, 28], &pixels);
    write(&dir, "images-4-idx3-ubyte", &images);
    write(&dir, "images-4-idx3-ubyte.gz", &gzip(&images));
    write(&dir, "labels-4-idx1-ubyte", &idx_bytes(&[4], &labels));
    // N×H×W×C colour images, cropped digits.
    let rgb: Vec<u8> = pixels.iter().take(2 * 6 * 6 * 3).copied().collect();
    write(&dir, "rgb-2x6x6x3-idx", &idx_bytes(&[2, 6, 6, 3], &rgb));

    let dir = seeds("csv");
    let row = |i: usize, sep: &str| -> String {
        let cells: Vec<String> = pixels[i * 784..(i + 1) * 784].iter().map(|p| p.to_string()).collect();
        cells.join(sep)
    };
    let (a, b) = (row(0, ","), row(1, ","));
    // Flags byte first (see fuzz_targets/csv.rs), then the file.
    let header: Vec<String> =
        std::iter::once("label".to_string()).chain((0..784).map(|i| format!("p{i}"))).collect();
    write(
        &dir,
        "header-label",
        format!("\x00{}\n{},{a}\n{},{b}\n", header.join(","), labels[0], labels[1]).as_bytes(),
    );
    write(&dir, "mnist-layout", format!("\x00{},{a}\n{},{b}\n", labels[0], labels[1]).as_bytes());
    write(&dir, "no-label", format!("\x00{a}\n{b}\n").as_bytes());
    write(&dir, "tsv", format!("\x01label\tx\ty\tz\tw\ncat\t0.5\t1\t0\t0.25\ndog\t0\t0\t1\t1\n").as_bytes());
    write(&dir, "label-option-shape", b"\x0aa,1,2,3,4\nb,0,16,8,4\n");
    write(&dir, "resize", format!("\x30{a}\n").as_bytes());
    let mut gz = vec![0u8];
    gz.extend(gzip(format!("{},{a}\n", labels[0]).as_bytes()));
    write(&dir, "gzip", &gz);

    let dir = seeds("image");
    let digit = image::GrayImage::from_raw(28, 28, pixels[..784].to_vec()).expect("28×28");
    let small = image::imageops::resize(&digit, 8, 8, image::imageops::FilterType::Triangle);
    let rgb = image::DynamicImage::ImageLuma8(small.clone()).to_rgb8();
    let mut rgb_tinted = rgb.clone();
    rgb_tinted.pixels_mut().for_each(|p| p.0[2] = 255 - p.0[2]);
    for (name, img, format, flags) in [
        ("gray.png", image::DynamicImage::ImageLuma8(small.clone()), image::ImageFormat::Png, 0u8),
        ("rgb.png", image::DynamicImage::ImageRgb8(rgb_tinted.clone()), image::ImageFormat::Png, 2),
        ("digit.jpg", image::DynamicImage::ImageRgb8(rgb.clone()), image::ImageFormat::Jpeg, 1),
        ("digit.bmp", image::DynamicImage::ImageRgb8(rgb_tinted.clone()), image::ImageFormat::Bmp, 4),
        ("digit.gif", image::DynamicImage::ImageRgb8(rgb_tinted), image::ImageFormat::Gif, 0x15),
        (
            "gray-alpha.png",
            image::DynamicImage::ImageLumaA8(image::DynamicImage::ImageLuma8(small).to_luma_alpha8()),
            image::ImageFormat::Png,
            0,
        ),
    ] {
        // The flags byte (see fuzz_targets/image.rs), then the file.
        let mut encoded = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut encoded), format).expect("encode");
        write(&dir, name, &[&[flags][..], &encoded].concat());
    }

    let dir = seeds("checkpoint");
    let shape = ImageShape::new(1, 8, 8);
    let small_digits: Vec<f32> = (0..16)
        .flat_map(|i| {
            let img = mnist.image(i);
            genlab::engine::data::convert_image(img, mnist.shape, shape)
        })
        .collect();
    let data = Arc::new(
        Dataset::new("digits 8×8", DataSource::Builtin, shape, small_digits, None).expect("dataset"),
    );
    let tmp = std::env::temp_dir().join(format!("genlab-seeds-{}", std::process::id()));
    for (name, preset_name, hidden, batch_norm) in [
        ("vae", "mnist_vae", vec![6], false),
        ("ae", "mnist_ae", vec![5, 3], false),
        ("mlp-gan", "mnist_mlp_gan", vec![4], false),
        ("dcgan", "mnist_dcgan", vec![2, 3], true),
        ("conv-vae", "conv_vae", vec![2], false),
    ] {
        let mut cfg = preset(preset_name, shape).expect("preset");
        cfg.model.net_mut().hidden = hidden;
        cfg.model.net_mut().latent_dim = 2;
        if let Some(gan) = cfg.model.gan_mut() {
            gan.disc_hidden = vec![3];
            gan.batch_norm = batch_norm;
        }
        cfg.train.batch_size = 4;
        let mut s = TrainingSession::new(cfg, data.clone()).expect("session");
        s.step().expect("a step");
        let ck = tmp.join(name);
        checkpoint::save(&ck, s.model(), s.config(), &data.source, 1, None).expect("save");
        let config = std::fs::read(ck.join(checkpoint::CONFIG_FILE)).expect("config.json");
        let weights = std::fs::read(checkpoint::weights_path(&ck).expect("weights")).expect("weights");
        for flags in [0u8, 1] {
            let mut bytes = vec![flags];
            bytes.extend((config.len() as u32).to_le_bytes());
            bytes.extend(&config);
            bytes.extend(&weights);
            write(&dir, &format!("{name}-{flags}"), &bytes);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("seeds written to {}", seeds("").display());
}
