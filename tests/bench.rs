//! `genlab bench` end to end: the JSON lines parse and carry the fields the comparison script
//! reads, with positive numbers. No timing is asserted.

use std::process::Command;

#[test]
fn quick_bench_prints_one_json_line_per_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(["bench", "--quick", "--json", "--models", "mnist_vae", "--steps", "5", "--threads", "1"])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let models: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("model").is_some()).collect();
    assert_eq!(models.len(), 1, "one line per model: {stdout}");
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
    assert!(!sgemm.is_empty(), "an sgemm peak: {stdout}");
    assert!(sgemm.iter().all(|s| s["gflops"].as_f64().is_some_and(|g| g > 0.0)));
    let loads: Vec<_> = lines.iter().filter(|v| v["kind"] == "load").map(|v| v["format"].clone()).collect();
    assert_eq!(loads, ["idx-raw", "idx-gz", "png-folder"]);
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
