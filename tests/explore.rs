//! Traversals, interpolation, the latent map, the grid history and the export files.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::Arc;

use candle_core::{Device, Tensor};
use genlab::engine::config::preset;
use genlab::engine::data::{builtin, ImageShape, SplitKind};
use genlab::engine::explore::{self, GridHistory, Pca2};
use genlab::engine::export;
use genlab::engine::images::ImageBatch;
use genlab::engine::session::TrainingSession;

fn trained(preset_name: &str, latent: usize, epochs: usize) -> TrainingSession {
    let data = Arc::new(builtin::load().unwrap());
    let mut cfg = preset(preset_name, data.shape).unwrap();
    cfg.model.net_mut().latent_dim = latent;
    cfg.train.epochs = epochs;
    let mut s = TrainingSession::new(cfg, data).unwrap();
    while !s.is_finished() {
        s.step().unwrap();
    }
    s
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64
}

/// Spread of a traversal row: mean difference between its first and last image.
fn row_spread(grid: &ImageBatch, row: usize, cols: usize) -> f64 {
    let first = grid.slice(row * cols, row * cols + 1);
    let last = grid.slice(row * cols + cols - 1, row * cols + cols);
    mean_abs_diff(&first.pixels, &last.pixels)
}

#[test]
fn inactive_dimensions_traverse_to_the_same_image_and_active_ones_do_not() {
    // β = 4 presses unneeded dimensions onto the prior quickly.
    let s = trained("mnist_beta_vae", 16, 3);
    let enc = s.encode(SplitKind::Test).unwrap().unwrap();
    let kl = explore::kl_per_dim(&enc);
    let order = explore::dims_by_kl(&kl);
    let (top, bottom) = (order[0], order[order.len() - 1]);
    eprintln!(
        "KL per dim (sorted): {:?}",
        order.iter().map(|&d| (d, (kl[d] * 100.0).round() / 100.0)).collect::<Vec<_>>()
    );
    assert!(kl[top] > 0.3, "the most active dimension carries information: {}", kl[top]);
    assert!(kl[bottom] < 0.05, "a 16-d β-VAE on digits leaves some dimensions unused: {}", kl[bottom]);
    let values = explore::linspace(-3.0, 3.0, 7);
    let base = vec![0.0; 16];
    let grid = explore::traversal(s.model(), &base, &[top, bottom], &values).unwrap();
    assert_eq!(grid.len(), 14);
    let (active, inactive) = (row_spread(&grid, 0, 7), row_spread(&grid, 1, 7));
    eprintln!("traversal spread: active dim {active:.2}, inactive dim {inactive:.2} (grey levels)");
    assert!(active > 10.0, "moving an active dimension changes the image ({active})");
    // Nearly unchanged: under 2% of the grey range, and a small fraction of the active change.
    assert!(
        inactive < 5.0 && inactive < 0.15 * active,
        "moving an unused dimension leaves it (nearly) unchanged ({inactive})"
    );
}

#[test]
fn interpolation_endpoints_are_the_reconstructions_of_a_and_b() {
    let s = trained("mnist_vae", 20, 1);
    let (a, b) = (s.split().test[0], s.split().test[1]);
    let enc = genlab::engine::session::encode_indices(s.model(), s.data(), &[a, b], SplitKind::Test)
        .unwrap()
        .unwrap();
    let strip = explore::interpolate(s.model(), &enc.mu[..20], &enc.mu[20..], 10).unwrap();
    assert_eq!(strip.len(), 10);
    let (_, rec) = s.reconstruct(&[a, b]).unwrap().unwrap();
    assert_eq!(strip.slice(0, 1), rec.slice(0, 1), "the strip starts at A's reconstruction");
    assert_eq!(strip.slice(9, 10), rec.slice(1, 2), "the strip ends at B's reconstruction");
    assert_ne!(strip.slice(4, 5), strip.slice(0, 1));
}

#[test]
fn the_pca_map_finds_the_main_axes_and_inverts_on_them() {
    // Points on a noisy line along (1, 2, 0, 0) in 4-d.
    let mut x = Vec::new();
    for i in 0..200 {
        let t = i as f32 / 20.0 - 5.0;
        let e = ((i * 7919) % 13) as f32 / 13.0 - 0.5;
        x.extend([t, 2.0 * t, 0.1 * e, 0.5]);
    }
    let pca = Pca2::fit(&x, 4);
    let dir = [1.0 / 5f32.sqrt(), 2.0 / 5f32.sqrt()];
    let dot = (pca.axes[0][0] * dir[0] + pca.axes[0][1] * dir[1]).abs();
    assert!(dot > 0.999, "first axis along the line: {:?}", pca.axes[0]);
    assert!(pca.explained[0] > 0.99);
    let p = pca.project(&x[40..44]);
    let back = pca.unproject(p);
    for (a, b) in back.iter().zip(&x[40..44]) {
        assert!((a - b).abs() < 0.06, "{back:?} vs {:?}", &x[40..44]);
    }
}

#[test]
fn the_grid_history_stays_within_budget_and_keeps_first_and_latest() {
    let shape = ImageShape::new(1, 28, 28);
    let grid = |v: u8| ImageBatch { shape, pixels: vec![v; 64 * 784] };
    let budget = 8 << 20; // 8 MiB: about 160 grids of 64 digits
    let mut h = GridHistory::new(budget);
    for step in 0..10_000u64 {
        h.push(step * 50, grid((step % 251) as u8));
        assert!(h.bytes() <= budget, "over budget at step {step}: {}", h.bytes());
    }
    let steps = h.steps();
    assert_eq!(steps[0], 0, "the first grid is kept");
    assert_eq!(*steps.last().unwrap(), 9_999 * 50, "the latest grid is kept");
    assert!(h.len() > 50, "thinning keeps a useful history: {}", h.len());
    assert!(steps.windows(2).all(|w| w[0] < w[1]));
    // Scrubbing: an older step finds the grid logged at or before it.
    let (s, g) = h.at_step(steps[3] + 1).unwrap();
    assert_eq!(s, steps[3]);
    assert_eq!(g.len(), 64);
}

#[test]
fn exported_png_and_gif_decode_to_the_expected_sizes_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    let shape = ImageShape::new(1, 28, 28);
    let frames: Vec<ImageBatch> = (0..5)
        .map(|k| ImageBatch { shape, pixels: (0..4 * 784).map(|i| ((i + k * 40) % 256) as u8).collect() })
        .collect();
    let gif = dir.path().join("t.gif");
    export::save_gif(&gif, &frames, 4, 100).unwrap();
    use image::AnimationDecoder;
    let dec =
        image::codecs::gif::GifDecoder::new(std::io::BufReader::new(std::fs::File::open(&gif).unwrap()))
            .unwrap();
    let decoded = dec.into_frames().collect_frames().unwrap();
    assert_eq!(decoded.len(), 5);
    assert_eq!(decoded[0].buffer().dimensions(), (4 * 30 + 2, 30 + 2));

    let png = dir.path().join("g.png");
    frames[0].save_grid_png(&png, 2).unwrap();
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (2 * 30 + 2, 2 * 30 + 2));
    assert!(export::check_target(&png, false).is_err(), "no silent overwrite");

    let n = export::save_pngs(&dir.path().join("each"), "sample", &frames[1]).unwrap();
    assert_eq!(n, 4);
    assert_eq!(image::open(dir.path().join("each/sample-0003.png")).unwrap().width(), 28);
}

#[test]
fn cli_traverse_encode_and_interpolate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let bin = env!("CARGO_BIN_EXE_genlab");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let ck_s = ck.to_str().unwrap();
    run(&["train", "--preset", "mnist_vae", "--max-steps", "40", "--quiet", "--out", ck_s]);
    let gif = dir.path().join("t.gif");
    run(&[
        "traverse",
        "--checkpoint",
        ck_s,
        "--out",
        gif.to_str().unwrap(),
        "--dims",
        "0,1,2",
        "--steps",
        "9",
    ]);
    use image::AnimationDecoder;
    let dec =
        image::codecs::gif::GifDecoder::new(std::io::BufReader::new(std::fs::File::open(&gif).unwrap()))
            .unwrap();
    assert_eq!(dec.into_frames().collect_frames().unwrap().len(), 9);
    let csv = dir.path().join("z.csv");
    run(&["encode", "--checkpoint", ck_s, "--out", csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 2001);
    assert!(text.starts_with("index,label,mu_0,"));
    let strip = dir.path().join("s.png");
    run(&[
        "interpolate",
        "--checkpoint",
        ck_s,
        "--from",
        "0",
        "--to",
        "5",
        "--steps",
        "10",
        "--out",
        strip.to_str().unwrap(),
    ]);
    assert_eq!(image::open(&strip).unwrap().width(), 10 * 30 + 2);
    // No silent overwrite.
    let o = std::process::Command::new(bin)
        .args(["encode", "--checkpoint", ck_s, "--out", csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("exists"));
    let _ = (Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu), ());
}
