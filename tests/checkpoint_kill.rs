//! Checkpoints survive a process killed while it saves: `genlab train --checkpoint-every 1` is
//! SIGKILLed at random moments, over and over into the same folder, and after every kill the
//! folder must load as either the checkpoint saved last or the one being saved, with exactly
//! the weights a replay of the run has at that step.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use genlab::engine::checkpoint;
use genlab::engine::data::{self, DataSource, Dataset, LoadOptions};
use genlab::engine::session::TrainingSession;
use rand::{Rng, SeedableRng};

/// 64 deterministic 8×8 gray images, one per row, no header.
fn write_tiny_csv(path: &Path) {
    let mut text = String::new();
    for i in 0..64u32 {
        let row: Vec<String> =
            (0..64u32).map(|p| ((i * 37 + p * 11 + (p / 8) * i) % 256).to_string()).collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn train_args<'a>(csv: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        csv,
        "--preset",
        "mnist_vae",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--batch",
        "8",
        "--seed",
        "5",
        "--threads",
        "1",
        "--epochs",
        epochs,
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        out,
    ]
}

/// The weights a fresh run of `meta`'s configuration has after `step` steps.
fn replay(meta: &checkpoint::CheckpointMeta, data: &Arc<Dataset>, step: u64) -> TrainingSession {
    let mut s = TrainingSession::new(meta.config.clone(), data.clone()).unwrap();
    while s.step_count() < step {
        s.step().unwrap();
    }
    s
}

fn assert_same_weights(dir: &Path, data: &Arc<Dataset>) -> u64 {
    let loaded = checkpoint::load(dir).unwrap_or_else(|e| panic!("the checkpoint does not load: {e}"));
    let step = loaded.meta.step;
    let want = replay(&loaded.meta, data, step).model().state().unwrap();
    let got = loaded.model.state().unwrap();
    assert_eq!(want.len(), got.len());
    for (name, w) in &want {
        let a: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = got[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "tensor {name} of the checkpoint at step {step} is not the replay's");
    }
    step
}

#[test]
fn checkpoints_killed_mid_save_load_as_the_old_or_the_new_one() {
    // The replay runs the maths on one thread, as the child does (`--threads 1`), before
    // the first tensor op reads it. This is the only test in this binary.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("tiny.csv");
    write_tiny_csv(&csv);
    let data = Arc::new(data::load(&DataSource::Path(csv.clone()), &LoadOptions::default()).unwrap());
    let out = tmp.path().join("ck");
    let (csv_s, out_s) = (csv.to_str().unwrap(), out.to_str().unwrap());

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // The step of the checkpoint on disk, once there is one.
    let mut on_disk: Option<u64> = None;
    let mut kills_mid_run = 0;
    let (mut found_old, mut found_new) = (0, 0);
    for round in 0..40 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_genlab"))
            .args(train_args(csv_s, out_s, "100000"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::Builder::new()
            .name("stderr-reader".into())
            .spawn(move || {
                let mut saved = Vec::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("saved checkpoint at step ") {
                        saved.push(n.trim().parse::<u64>().unwrap());
                    }
                }
                saved
            })
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.random_range(2_000..250_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let saved = reader.join().unwrap();
        if !saved.is_empty() {
            kills_mid_run += 1;
        }

        // The last save this child reported, else what was there before it; or the next save.
        let old = saved.last().copied().or(on_disk);
        let new = saved.last().map_or(1, |s| s + 1);
        if old.is_none() && !out.join(checkpoint::CONFIG_FILE).exists() {
            continue; // killed before its first save completed: nothing old, nothing new
        }
        let step = assert_same_weights(&out, &data);
        assert!(
            Some(step) == old || step == new,
            "round {round}: the checkpoint is at step {step}; expected the old one ({old:?}) or the new one ({new})"
        );
        if Some(step) == old {
            found_old += 1;
        } else {
            found_new += 1;
        }
        on_disk = Some(step);
    }
    eprintln!("{kills_mid_run} kills after a save; the folder held the old checkpoint {found_old} times, the new one {found_new} times");
    assert!(kills_mid_run >= 5, "only {kills_mid_run} of 40 kills came after a save: the timing is off");

    // A run that ends normally leaves one checkpoint and no debris from the killed ones.
    let o = Command::new(env!("CARGO_BIN_EXE_genlab")).args(train_args(csv_s, out_s, "2")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(assert_same_weights(&out, &data), 14);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let weights: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
    assert_eq!(weights.len(), 1, "one weights file: {names:?}");
    assert!(!names.iter().any(|n| n.contains(".tmp")), "temporary files left behind: {names:?}");
}
