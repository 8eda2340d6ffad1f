//! The `genlab` binary end to end: train, sample, eval and score on the built-in data, and
//! one-line errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn genlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genlab")).args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--data", "builtin", "--out", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    genlab(&args)
}

#[test]
fn train_sample_eval_and_score_a_vae() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("vae");
    let o = train(&ck, &["--preset", "mnist_vae", "--epochs", "1", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(genlab::engine::checkpoint::weights_path(&ck).unwrap().exists());
    for f in ["config.json", "metrics.csv", "samples.png", "reconstructions.png"] {
        assert!(ck.join(f).exists(), "{f} missing");
    }
    let samples = image::open(ck.join("samples.png")).unwrap();
    assert_eq!((samples.width(), samples.height()), (8 * 30 + 2, 8 * 30 + 2), "an 8×8 grid of 28-px digits");
    let csv = std::fs::read_to_string(ck.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("epoch,step,split,loss,recon,kl"));
    assert_eq!(csv.lines().filter(|l| l.split(',').nth(2) == Some("step")).count(), 63, "one row per step");
    assert!(csv.lines().any(|l| l.starts_with("0,63,test,")));

    let grid = dir.path().join("grid.png");
    let o = genlab(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--n",
        "16",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = image::open(&grid).unwrap();
    assert_eq!(g.width(), 4 * 30 + 2);

    let o = genlab(&["eval", "--checkpoint", ck.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["split"], "test");
    assert_eq!(v["n"], 2000);
    let (loss, recon, kl) =
        (v["loss_nats"].as_f64().unwrap(), v["recon_nats"].as_f64().unwrap(), v["kl_nats"].as_f64().unwrap());
    assert!((loss - (recon + kl)).abs() < 1e-3 * loss, "loss = recon + KL for a VAE: {v}");
    assert!(loss > 80.0 && loss < 260.0, "one epoch of the VAE: {loss}");

    let o = genlab(&["score", "--checkpoint", ck.to_str().unwrap(), "--json", "--k", "8", "--limit", "200"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("iwae_nats") && text.contains("bits_per_dim"), "{text}");
}

#[test]
fn train_a_gan_and_eval_reports_d_and_g_losses() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("gan");
    let o = train(&ck, &["--preset", "mnist_mlp_gan", "--max-steps", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ck.join("samples.png").exists());
    assert!(!ck.join("reconstructions.png").exists(), "a GAN has nothing to reconstruct");
    let o = genlab(&["eval", "--checkpoint", ck.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["d_loss"].as_f64().is_some() && v["g_loss"].as_f64().is_some(), "{v}");
}

#[test]
fn a_diverging_run_exits_3_and_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(&dir.path().join("x"), &["--preset", "mnist_ae", "--lr", "1e6", "--epochs", "3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("diverged") && e.contains("at step"), "{e}");
}

#[test]
fn bad_input_gives_one_line_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage-images-idx3-ubyte");
    std::fs::write(&garbage, b"\x00\x00\x08\x03\xff\xff\xff\xff\x00\x00\x00\x1c\x00\x00\x00\x1c").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["train".into(), "--data".into(), garbage.display().to_string(), "--out".into(), "o".into()],
            "garbage-images-idx3-ubyte",
        ),
        (
            vec!["train".into(), "--data".into(), "/no/such/file.csv".into(), "--out".into(), "o".into()],
            "/no/such/file.csv",
        ),
        (
            vec!["train".into(), "--preset".into(), "nope".into(), "--out".into(), "o".into()],
            "unknown preset",
        ),
        (vec!["train".into(), "--hidden".into(), "400,0".into(), "--out".into(), "o".into()], "width 0"),
        (
            vec!["sample".into(), "--checkpoint".into(), "/no/ck".into(), "--out".into(), "g.png".into()],
            "/no/ck",
        ),
        (vec!["eval".into(), "--checkpoint".into(), dir.path().display().to_string()], "config.json"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = genlab(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
        assert!(e.contains(needle), "{args:?}: error should mention {needle:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: one line: {e}");
    }
}

#[test]
fn out_of_range_settings_and_an_unwritable_output_fail_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, "a regular file").unwrap();
    let under_file = file.join("ck");
    let out = dir.path().join("o");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--hidden=-5,3"], "-5"),
        (vec!["--latent", "0"], "latent"),
        (vec!["--batch", "0"], "batch size"),
        (vec!["--batch", "100000"], "batch size 100000 is larger than the 8000 training images"),
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--lr", "NaN"], "learning rate"),
        (vec!["--lr=-1"], "learning rate"),
        (vec!["--threads", "0"], "threads"),
    ];
    for (extra, needle) in cases {
        let t0 = std::time::Instant::now();
        let o = train(&out, &extra);
        let e = stderr(&o);
        assert!(!o.status.success(), "{extra:?} should fail");
        assert!(!e.contains("panicked"), "{extra:?} panicked: {e}");
        assert!(e.contains(needle), "{extra:?}: error should mention {needle:?}: {e}");
        assert!(t0.elapsed().as_secs() < 30, "{extra:?}: not refused up front");
    }
    // An output folder that cannot be created (under a regular file; permission bits would not
    // stop root) is refused before a single step, naming the folder.
    let t0 = std::time::Instant::now();
    let o = train(&under_file, &["--epochs", "50"]);
    let e = stderr(&o);
    assert!(!o.status.success() && !e.contains("panicked"), "{e}");
    assert!(e.contains("cannot create the output folder") && e.contains("file.txt/ck"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(t0.elapsed().as_secs() < 30, "not refused up front");
}

#[test]
fn eval_and_score_say_when_the_checkpoints_dataset_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("digits.csv");
    let mut text = String::from("label");
    for p in 0..64 {
        text.push_str(&format!(",p{p}"));
    }
    text.push('\n');
    for i in 0..40 {
        text.push_str(&(i % 3).to_string());
        for p in 0..64 {
            text.push_str(&format!(",{}", (i * 31 + p * 7) % 256));
        }
        text.push('\n');
    }
    std::fs::write(&csv, text).unwrap();
    let ck = dir.path().join("ck");
    let o = genlab(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--hidden",
        "8",
        "--latent",
        "2",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        ck.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = genlab(&["eval", "--checkpoint", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    std::fs::remove_file(&csv).unwrap();
    for cmd in ["eval", "score"] {
        let o = genlab(&[cmd, "--checkpoint", ck.to_str().unwrap()]);
        let e = stderr(&o);
        assert!(!o.status.success() && !e.contains("panicked"), "{cmd}: {e}");
        assert!(e.contains("loading the checkpoint's dataset") && e.contains("digits.csv"), "{cmd}: {e}");
        assert!(e.contains("No such file"), "{cmd}: {e}");
    }
    // What needs no data still works.
    let grid = dir.path().join("grid.png");
    let o = genlab(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--n",
        "4",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}
