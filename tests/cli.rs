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
