//! `genlab bench` end to end: the JSON lines parse and carry the fields the comparison script
//! reads, with positive numbers. No timing is asserted.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::process::Command;

#[test]
fn quick_bench_prints_one_json_line_per_model() {
    let lines = json_lines(&[
        "bench",
        "--quick",
        "--json",
        "--models",
        "mnist_vae",
        "--steps",
        "5",
        "--threads",
        "1",
    ]);

    let models: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("model").is_some()).collect();
    assert_eq!(models.len(), 1, "one line per model: {lines:?}");
    let m = models[0];
    assert_eq!(m["model"], "mnist_vae");
    assert_eq!(m["threads"], 1);
    assert_eq!(m["steps"], 5);
    assert!(m["repeats"].as_u64().is_some_and(|r| r >= 1));
    assert!(m["date"].as_str().is_some_and(|d| d.len() == 20 && d.ends_with('Z')), "{}", m["date"]);
    for key in ["images_per_sec", "gflops", "peak_rss_mb"] {
        let v = m[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {m}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }

    let sgemm: Vec<_> = lines.iter().filter(|v| v["kind"] == "sgemm").collect();
    assert!(!sgemm.is_empty(), "an sgemm peak: {lines:?}");
    assert!(sgemm.iter().all(|s| s["gflops"].as_f64().is_some_and(|g| g > 0.0)));
    let loads: Vec<_> = lines.iter().filter(|v| v["kind"] == "load").map(|v| v["format"].clone()).collect();
    assert_eq!(loads, ["idx-raw", "idx-gz", "png-folder"]);
}

/// `--no-loads` (what `bench/compare.sh` runs every round): the sgemm peak and the training,
/// no dataset loads, and the model's share of that peak.
#[test]
fn no_loads_keeps_the_sgemm_peak_and_skips_the_loads() {
    let lines = json_lines(&[
        "bench",
        "--quick",
        "--json",
        "--no-loads",
        "--models",
        "mnist_vae",
        "--steps",
        "3",
        "--threads",
        "1",
    ]);
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["kind"].as_str()).collect();
    assert!(kinds.contains(&"sgemm") && kinds.contains(&"train") && !kinds.contains(&"load"), "{lines:?}");
    let m = lines.iter().find(|v| v["kind"] == "train").expect("a model line");
    assert!(m["pct_of_sgemm_peak"].as_f64().is_some_and(|p| p > 0.0), "{m}");
}

#[test]
fn unknown_model_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(["bench", "--quick", "--train-only", "--models", "nope"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown model `nope`"), "{err}");
}

fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_genlab")).args(args).output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn positive(v: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}: {v}");
    }
}

#[cfg(feature = "app")]
#[test]
fn ui_bench_reports_frame_times_and_latency() {
    let lines = json_lines(&["bench", "ui", "--frames", "30", "--json"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let u = &lines[0];
    assert_eq!(u["kind"], "ui");
    assert_eq!(u["frames"], 30);
    assert_eq!(u["history_points"], 100_000);
    assert_eq!(u["gallery_images"], 64);
    // The app trains on one thread and leaves the other core to the UI.
    assert_eq!(u["train_threads"], 1);
    assert_eq!(u["candle_num_threads"], "1");
    positive(u, &["frame_cpu_ms_p50", "frame_cpu_ms_p95", "frame_cpu_ms_p99", "frame_wall_ms_p95"]);
    positive(u, &["update_cpu_ms_p50", "target_frame_p95_ms", "target_latency_ms"]);
    assert!(u["frame_cpu_ms_p50"].as_f64() <= u["frame_cpu_ms_p99"].as_f64());
    for key in ["latency_ms_p50", "latency_ms_p95", "latency_samples", "live_steps", "trainer_cores"] {
        assert!(u[key].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "{key}: {u}");
    }
    assert!(u["meets_frame"].is_boolean() && u["meets_latency"].is_boolean());
}

#[test]
fn memory_bench_samples_rss_and_reports_the_slope() {
    let lines = json_lines(&["bench", "memory", "--steps", "300", "--json"]);
    let samples: Vec<_> = lines.iter().filter(|v| v["kind"] == "memory_sample").collect();
    assert!(samples.len() >= 10, "RSS sampled through the run: {lines:?}");
    assert_eq!(samples[0]["step"], 0);
    assert!(samples.windows(2).all(|w| w[0]["step"].as_u64() < w[1]["step"].as_u64()));
    let summary: Vec<_> = lines.iter().filter(|v| v["kind"] == "memory").collect();
    assert_eq!(summary.len(), 1, "{lines:?}");
    let m = summary[0];
    assert_eq!(m["model"], "mnist_vae");
    assert!(m["steps"].as_u64().is_some_and(|s| s >= 300), "{m}");
    positive(m, &["peak_rss_mb", "rss_at_10pct_mb", "rss_end_mb", "seconds", "steps_per_sec"]);
    assert!(m["slope_mb_per_10k_steps"].as_f64().is_some_and(f64::is_finite), "{m}");
    assert!(m["peak_rss_mb"].as_f64() >= m["rss_end_mb"].as_f64(), "{m}");
    assert!(m["flat"].is_boolean() && m["meets_peak"].is_boolean());
}
