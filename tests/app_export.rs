#![cfg(feature = "app")]
//! Exports and checkpoint loading driven through the real app and the real worker: each export
//! button writes a file that decodes (PNG, GIF frames, CSV rows), an existing file is never
//! replaced without the checkbox, and "Load from folder" restores a saved run.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::path::Path;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use genlab::app::run_view::Status;
use genlab::app::App;
use image::AnimationDecoder;

mod common;
use common::*;

/// Replaces the text of the field labelled `label`.
fn set_text(h: &mut Harness<'_, App>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).set_text_value_accesskit(text);
    h.run();
}

/// Waits until `path` holds a file `decode` accepts, and returns what it decoded to.
fn wait_for_file<T>(h: &mut Harness<'_, App>, path: &Path, decode: impl Fn(&[u8]) -> Option<T>) -> T {
    let ok = |_: &App| std::fs::read(path).ok().and_then(|b| decode(&b)).is_some();
    wait_for(h, &format!("{} to be written", path.display()), 1000, ok);
    decode(&std::fs::read(path).expect("the file")).expect("a valid file")
}

/// (width, height, frame count) of a GIF.
fn gif_frames(bytes: &[u8]) -> Option<(u32, u32, usize)> {
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).ok()?;
    let frames = dec.into_frames().collect_frames().ok()?;
    let first = frames.first()?.buffer();
    Some((first.width(), first.height(), frames.len()))
}

/// Side of an `n`-wide grid of 28-pixel digits with 2-pixel padding.
fn grid_side(n: u32) -> u32 {
    n * 30 + 2
}

#[test]
fn samples_tab_writes_sample_pngs_and_the_history_gif() {
    let mut h = trained_and_paused(2);
    select_tab(&mut h, "Samples");
    wait_for(&mut h, "the first prior samples", 500, |a| run(a).is_some_and(|r| r.explore.samples.is_some()));

    // Five individual PNGs into a folder that does not exist yet.
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("pngs");
    h.get_by_role_and_label(Role::SpinButton, "Count").set_value_accesskit(5.0);
    h.run();
    set_text(&mut h, "Samples folder", &folder.display().to_string());
    h.get_by_label("Save sample PNGs").click();
    let last = folder.join("sample-0004.png");
    let img = wait_for_file(&mut h, &last, |b| image::load_from_memory(b).ok());
    assert_eq!((img.width(), img.height()), (28, 28), "one 28×28 digit per file");
    wait_for(&mut h, "the PNG export to report", 500, |a| {
        run(a).is_some_and(|r| r.explore.samples.as_ref().is_some_and(|s| s.value.len() == 5))
    });
    h.get_by_label_contains("Saved 5 PNGs");
    let files = std::fs::read_dir(&folder).expect("the folder").count();
    assert_eq!(files, 5, "exactly the 5 asked for");
    for i in 0..5 {
        image::open(folder.join(format!("sample-{i:04}.png"))).expect("every PNG decodes");
    }

    // Again into the same folder: refused, nothing replaced.
    let before = std::fs::read(&last).expect("the PNG");
    std::fs::write(&last, b"keep me").expect("write");
    h.get_by_label("Save sample PNGs").click();
    h.run();
    h.get_by_label_contains("sample-0000.png exists already");
    std::thread::sleep(Duration::from_millis(200));
    h.run();
    assert_eq!(std::fs::read(&last).expect("the file"), b"keep me");
    assert_ne!(before, b"keep me");

    // The fixed-noise history as a GIF: every kept grid, one frame each.
    let kept = run(h.state()).expect("a run").explore.history.len();
    assert!(kept >= 2);
    let gif = dir.path().join("history.gif");
    set_text(&mut h, "Export path", &gif.display().to_string());
    h.get_by_label("Save history GIF").click();
    let (w, hgt, frames) = wait_for_file(&mut h, &gif, gif_frames);
    assert_eq!(frames, kept, "one frame per kept grid");
    assert_eq!((w, hgt), (grid_side(8), grid_side(8)), "an 8×8 grid of digits per frame");
    wait_for_label(&mut h, &format!("Saved {} ({kept} frames)", gif.display()), 200);

    // The grid PNG onto an existing file: refused until the checkbox is ticked.
    let png = dir.path().join("grid.png");
    std::fs::write(&png, b"not yours").expect("write");
    set_text(&mut h, "Export path", &png.display().to_string());
    h.get_by_label("Save grid PNG").click();
    h.run();
    h.get_by_label_contains("grid.png exists already");
    assert_eq!(std::fs::read(&png).expect("the file"), b"not yours");
    h.get_by_label("Overwrite an existing file").click();
    h.run();
    h.get_by_label("Save grid PNG").click();
    let img = wait_for_file(&mut h, &png, |b| image::load_from_memory(b).ok());
    assert_eq!((img.width(), img.height()), (grid_side(8), grid_side(8)));
}

#[test]
fn latent_and_training_tabs_write_traversal_gif_encoding_and_metrics_csv() {
    let mut h = trained_and_paused(1);
    let dir = tempfile::tempdir().expect("tempdir");

    select_tab(&mut h, "Latent space");
    h.get_by_label("Encode test set").click();
    wait_for(&mut h, "the test set's encoding and its traversal", 1500, |a| {
        run(a).is_some_and(|r| r.explore.encoded.is_some() && r.explore.decoded.contains_key(&1))
    });
    h.run();
    let latent = run(h.state()).expect("a run").config.model.latent_dim();
    let rows = latent.min(10) as u32;

    // The traversal: 9 values from −3 to 3, each frame every traversed dimension side by side.
    let gif = dir.path().join("traversal.gif");
    set_text(&mut h, "Export path", &gif.display().to_string());
    h.get_by_label("Save traversal GIF").click();
    let (w, hgt, frames) = wait_for_file(&mut h, &gif, gif_frames);
    assert_eq!(frames, 9);
    assert_eq!((w, hgt), (grid_side(rows), grid_side(1)));

    // The encoding: index, label, μ and log σ² per test image.
    let csv_path = dir.path().join("z.csv");
    set_text(&mut h, "Export path", &csv_path.display().to_string());
    h.get_by_label("Save encoding CSV").click();
    let text = wait_for_file(&mut h, &csv_path, |b| {
        let t = String::from_utf8(b.to_vec()).ok()?;
        (t.lines().count() == 2001).then_some(t)
    });
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().expect("a header").iter().map(str::to_string).collect();
    assert_eq!(header.len(), 2 + 2 * latent);
    assert_eq!((header[0].as_str(), header[1].as_str(), header[2].as_str()), ("index", "label", "mu_0"));
    for row in rdr.records().map(|r| r.expect("a row")) {
        assert_eq!(row.len(), header.len());
        let label: u32 = row[1].parse().expect("a digit label");
        assert!(label < 10);
        assert!(row.iter().skip(2).all(|v| v.parse::<f32>().is_ok_and(f32::is_finite)));
    }

    // The metrics: one row per step the run took.
    select_tab(&mut h, "Training");
    let steps = run(h.state()).expect("a run").series.len();
    let metrics = dir.path().join("metrics.csv");
    set_text(&mut h, "Metrics CSV path", &metrics.display().to_string());
    h.get_by_label("Save metrics CSV").click();
    let text =
        wait_for_file(&mut h, &metrics, |b| String::from_utf8(b.to_vec()).ok().filter(|t| !t.is_empty()));
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().expect("a header").iter().map(str::to_string).collect();
    assert_eq!(header, ["step", "epoch", "loss", "recon", "kl", "lr", "images_per_sec"]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.expect("a row")).collect();
    assert_eq!(rows.len(), steps);
    assert_eq!(&rows[0][0], "1");
    assert!(rows.iter().all(|r| r[2].parse::<f64>().is_ok_and(f64::is_finite)));
    wait_for_label(&mut h, &format!("Saved {} ({steps} steps)", metrics.display()), 200);

    // Not over an existing file without the checkbox.
    h.get_by_label("Save metrics CSV").click();
    h.run();
    h.get_by_label_contains("exists already");
}

#[test]
fn load_checkpoint_restores_a_saved_run_and_a_bad_folder_changes_nothing() {
    let mut h = trained_and_paused(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = dir.path().join("ck");

    // Samples of the trained run (seed 1), to compare with the restored model's.
    select_tab(&mut h, "Samples");
    wait_for(&mut h, "the first prior samples", 500, |a| run(a).is_some_and(|r| r.explore.samples.is_some()));
    let samples = run(h.state()).and_then(|r| r.explore.samples.as_ref()).expect("samples").value.clone();

    select_tab(&mut h, "Training");
    set_text(&mut h, "Checkpoint folder", &ck.display().to_string());
    h.get_by_label("Save checkpoint").click();
    wait_for(&mut h, "the checkpoint to be saved", 500, |a| {
        run(a).is_some_and(|r| r.saved_checkpoint.is_some())
    });
    let (old_id, saved_step, saved_model) = {
        let r = run(h.state()).expect("a run");
        (r.id, r.step, r.config.model.clone())
    };

    // A folder that is not a checkpoint: an error naming it, and the run and settings stay.
    let empty = dir.path().join("not-a-checkpoint");
    std::fs::create_dir(&empty).expect("mkdir");
    h.state_mut().persisted.config.model.net_mut().latent_dim = 3;
    set_text(&mut h, "Checkpoint folder", &empty.display().to_string());
    h.get_by_label("Load from folder").click();
    wait_for(&mut h, "the failed load to report", 500, |a| {
        !a.is_loading_checkpoint() && !a.errors().is_empty()
    });
    let errors = h.state().errors();
    assert!(errors.iter().any(|e| e.contains("not-a-checkpoint")), "{errors:?}");
    let r = run(h.state()).expect("the run");
    assert_eq!((r.id, r.step), (old_id, saved_step), "the current run survives");
    assert!(r.has_model());
    assert_eq!(h.state().run_view.status(), Status::Paused);
    assert_eq!(h.state().persisted.config.model.latent_dim(), 3, "the settings are untouched");

    // The saved folder: its configuration comes back and a paused run continues from its step.
    set_text(&mut h, "Checkpoint folder", &ck.display().to_string());
    h.get_by_label("Load from folder").click();
    wait_for(&mut h, "a paused run from the checkpoint", 1000, |a| {
        run(a).is_some_and(|r| r.id != old_id) && a.run_view.status() == Status::Paused
    });
    let r = run(h.state()).expect("the restored run");
    assert_eq!(r.step, saved_step);
    assert_eq!(r.config.model, saved_model);
    assert_eq!(h.state().persisted.config.model, saved_model, "the model panel shows the checkpoint's");
    h.get_by_label_contains(&format!("at step {saved_step} (paused"));

    // The same weights: the same seed gives the same samples.
    select_tab(&mut h, "Samples");
    wait_for(&mut h, "samples of the restored model", 500, |a| {
        run(a).is_some_and(|r| r.id != old_id && r.explore.samples.is_some())
    });
    let restored = run(h.state()).and_then(|r| r.explore.samples.as_ref()).expect("samples").value.clone();
    assert_eq!(restored, samples, "the restored model draws what the saved one drew");

    // And it trains on from there.
    h.get_by_label("Step").click();
    wait_for(&mut h, "one more step", 500, |a| run(a).is_some_and(|r| r.step == saved_step + 1));

    // Data of another shape (4×4 images): refused, naming the folder; run and settings stay.
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the run to stop", 500, |a| a.run_view.active().is_none());
    let restored_id = run(h.state()).expect("a run").id;
    let tiny = dir.path().join("tiny.csv");
    let mut text = format!("label,{}\n", (0..16).map(|i| format!("p{i}")).collect::<Vec<_>>().join(","));
    for r in 0..60 {
        let pixels: Vec<String> = (0..16).map(|i| ((r * 7 + i * 13) % 256).to_string()).collect();
        text.push_str(&format!("{},{}\n", r % 3, pixels.join(",")));
    }
    std::fs::write(&tiny, text).expect("write");
    select_tab(&mut h, "Training");
    set_text(&mut h, "Path", &tiny.display().to_string());
    h.get_by_label("Load").click();
    wait_for(&mut h, "the 4×4 dataset to load", 500, |a| {
        !a.is_loading() && a.dataset().is_some_and(|d| d.shape.height == 4)
    });
    let errors_before = h.state().errors().len();
    set_text(&mut h, "Checkpoint folder", &ck.display().to_string());
    h.get_by_label("Load from folder").click();
    wait_for(&mut h, "the mismatched load to report", 500, |a| {
        !a.is_loading_checkpoint() && a.errors().len() > errors_before
    });
    let errors = h.state().errors();
    let last = errors.last().expect("an error");
    assert!(last.contains(&ck.display().to_string()) && last.contains("1×4×4"), "{last}");
    assert_eq!(run(h.state()).map(|r| r.id), Some(restored_id), "no run was started");
    assert_eq!(h.state().persisted.config.model.input().height, 4, "the settings still fit the data");
}

/// Steps frames until a widget whose label contains `text` is on screen; panics naming it.
fn wait_for_label(h: &mut Harness<'_, App>, text: &str, max_frames: usize) {
    for _ in 0..max_frames {
        h.step();
        if h.query_all_by_label_contains(text).next().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gave up after {max_frames} frames waiting for a label containing {text:?}");
}

#[test]
fn an_unwritable_export_target_shows_an_error_naming_it_and_the_app_goes_on() {
    let mut h = trained_and_paused(1);
    select_tab(&mut h, "Samples");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file.txt");
    std::fs::write(&file, "a regular file").expect("write");

    // Under a regular file: nothing can be created there, even by root.
    let under_file = file.join("grid.png");
    set_text(&mut h, "Export path", &under_file.display().to_string());
    h.get_by_label("Save grid PNG").click();
    let expected = format!("cannot write {}: {} is not a folder", under_file.display(), file.display());
    wait_for_label(&mut h, &expected, 200);
    assert!(!under_file.exists());
    assert_eq!(std::fs::read_to_string(&file).expect("the file"), "a regular file", "left alone");

    // A folder in the file's place (overwriting allowed): the write itself fails, on the export
    // thread, and that error names the path too.
    let folder = dir.path().join("folder.png");
    std::fs::create_dir(&folder).expect("mkdir");
    set_text(&mut h, "Export path", &folder.display().to_string());
    h.get_by_label("Overwrite an existing file").click();
    h.run();
    h.get_by_label("Save grid PNG").click();
    wait_for_label(&mut h, &format!("Could not write {}", folder.display()), 500);
    assert!(folder.is_dir());

    // The app is still there: the run is paused, steps, and the next export succeeds.
    assert_eq!(h.state().run_view.status(), Status::Paused);
    let step = run(h.state()).expect("the run").step;
    h.get_by_label("Step").click();
    wait_for(&mut h, "one more step", 500, |a| run(a).is_some_and(|r| r.step == step + 1));
    let png = dir.path().join("grid.png");
    set_text(&mut h, "Export path", &png.display().to_string());
    h.get_by_label("Save grid PNG").click();
    let img = wait_for_file(&mut h, &png, |b| image::load_from_memory(b).ok());
    assert_eq!((img.width(), img.height()), (grid_side(8), grid_side(8)));
    wait_for_label(&mut h, &format!("Saved {}", png.display()), 200);
}
