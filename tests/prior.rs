//! The latent prior end to end: through the worker (train with progress, sample, cancel, a
//! bad request leaves the run working, saved and loaded with a checkpoint) and through the
//! `genlab` binary (`prior`, `sample --prior`, clear errors for a missing or broken prior).
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::path::Path;
use std::process::{Command as Process, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genlab::engine::config::preset;
use genlab::engine::data::builtin;
use genlab::engine::prior::PriorConfig;
use genlab::engine::protocol::{Command, DataSpec, Event};
use genlab::engine::worker::Worker;

/// Events until one satisfies `pick` (60 s at most); returns what `pick` made of it.
fn until<T>(w: &Worker, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "gave up waiting for {what}");
        if let Some(e) = w.recv_timeout(Duration::from_millis(50)) {
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    }
}

fn small_prior() -> PriorConfig {
    PriorConfig { epochs: 1, width: 32, blocks: 1, sample_steps: 4, ..PriorConfig::default() }
}

#[test]
fn the_worker_trains_samples_cancels_saves_and_reloads_a_prior() {
    let w = Worker::spawn(Arc::new(|| {}));
    let data = Arc::new(builtin::load().unwrap());
    let cfg = preset("mnist_vae", data.shape).unwrap();
    let start = |checkpoint| Command::Start {
        config: Box::new(cfg.clone()),
        data: DataSpec::Loaded(data.clone()),
        checkpoint,
        paused: true,
    };
    w.send(start(None));
    until(&w, "the paused start", |e| matches!(e, Event::Paused { .. }).then_some(()));

    w.send(Command::SamplePrior { n: 4, seed: 0 });
    let msg = until(&w, "an error without a prior", |e| match e {
        Event::Error { message } => Some(message.clone()),
        _ => None,
    });
    assert!(msg.contains("no latent prior"), "{msg}");

    w.send(Command::TrainPrior { request: 1, config: PriorConfig { width: 0, ..small_prior() } });
    let msg = until(&w, "an error for a bad setting", |e| match e {
        Event::Error { message } => Some(message.clone()),
        _ => None,
    });
    assert!(msg.contains("width"), "{msg}");
    // The run goes on after the error.
    w.send(Command::Sample { n: 2, temperature: 1.0, seed: 0 });
    until(&w, "samples after the error", |e| matches!(e, Event::Samples { .. }).then_some(()));

    w.send(Command::TrainPrior { request: 2, config: small_prior() });
    let mut progressed = false;
    let summary = until(&w, "the trained prior", |e| match e {
        Event::ScoreProgress { request: 2, total, .. } => {
            progressed |= *total == 32; // 8,000 codes in batches of 256
            None
        }
        Event::PriorTrained { request: 2, summary, .. } => Some(summary.clone()),
        _ => None,
    });
    assert!(progressed, "no progress in steps came before the prior");
    assert_eq!(summary.meta.latent_dim, cfg.model.latent_dim());
    assert_eq!(summary.meta.train_latents, 8000);
    assert_eq!(summary.latents.len(), 1000 * cfg.model.latent_dim());

    w.send(Command::SamplePrior { n: 5, seed: 0 });
    let pixels = until(&w, "prior samples", |e| match e {
        Event::Samples { images, .. } => Some(images.pixels.len()),
        _ => None,
    });
    assert_eq!(pixels, 5 * 784);

    w.send(Command::TrainPrior { request: 3, config: PriorConfig { epochs: 500, ..small_prior() } });
    // Cancelled once under way (a cancel drained with the request itself would be handled
    // before it, as a user's click cannot be).
    until(&w, "progress of the long training", |e| {
        matches!(e, Event::ScoreProgress { request: 3, .. }).then_some(())
    });
    w.send(Command::CancelScore);
    until(&w, "the cancelled training", |e| {
        matches!(e, Event::ScoreCancelled { request: 3, .. }).then_some(())
    });

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    w.send(Command::SaveCheckpoint { dir: ck.clone() });
    until(&w, "the saved checkpoint", |e| matches!(e, Event::CheckpointSaved { .. }).then_some(()));
    assert!(ck.join("prior.json").is_file() && ck.join("prior.safetensors").is_file());
    w.send(start(Some(ck)));
    let loaded = until(&w, "the prior loaded with the checkpoint", |e| match e {
        Event::PriorTrained { request: 0, summary: s, .. } => Some(s.clone()),
        _ => None,
    });
    assert_eq!(loaded.meta, summary.meta);
}

fn genlab(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_genlab")).args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_cli_trains_a_prior_samples_from_it_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("vae");
    let o = genlab(&[
        "train",
        "--data",
        "builtin",
        "--preset",
        "mnist_vae",
        "--max-steps",
        "5",
        "--quiet",
        "--out",
        s(&ck),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let grid = dir.path().join("g.png");
    let sample = || genlab(&["sample", "--checkpoint", s(&ck), "--prior", "--n", "4", "--out", s(&grid)]);

    let o = sample();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no latent prior") && stderr(&o).contains("genlab prior"), "{}", stderr(&o));

    let o = genlab(&[
        "prior",
        "--checkpoint",
        s(&ck),
        "--epochs",
        "1",
        "--width",
        "32",
        "--steps",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["latent_dim"], 20);
    assert_eq!(v["train_latents"], 8000);
    assert!(stderr(&o).contains("trained a latent prior"), "{}", stderr(&o));

    let o = sample();
    assert!(o.status.success(), "{}", stderr(&o));
    let g = image::open(&grid).unwrap();
    assert_eq!((g.width(), g.height()), (2 * 30 + 2, 2 * 30 + 2), "a 2×2 grid of 28-px digits");

    // The checkpoint itself still loads and samples from N(0, I) with a prior beside it.
    let o = genlab(&["sample", "--checkpoint", s(&ck), "--n", "4", "--out", s(&grid)]);
    assert!(o.status.success(), "{}", stderr(&o));

    std::fs::write(ck.join("prior.json"), b"{\"format_version\": 1}").unwrap();
    let o = sample();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("prior.json") && e.lines().count() == 1, "{e}");

    // A new model saved into the folder voids the prior fitted to the old one's codes.
    let o = genlab(&[
        "train",
        "--data",
        "builtin",
        "--preset",
        "mnist_vae",
        "--max-steps",
        "2",
        "--quiet",
        "--out",
        s(&ck),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!ck.join("prior.json").exists() && !ck.join("prior.safetensors").exists());
}
