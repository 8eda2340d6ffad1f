//! `genlab parity`: the same presets trained from one seed on the CPU's reference kernels and
//! on another device or kernel path, their losses compared step by step.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::*;
use crate::engine::config::data_for_preset;
use crate::engine::parity::{compare, Side};

/// Images a preset laid out for another shape trains on, converted (dcgan64 on the built-in
/// digits: at most 4,096 of them at 3×64×64, 200 MB).
const CONVERTED_IMAGES: usize = 4096;

#[derive(Args, Debug)]
pub struct ParityArgs {
    /// Presets to compare (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub preset: Vec<String>,
    /// Training steps per preset and side.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Batch size (default: each preset's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// `builtin` or a path to an IDX file, CSV file or image folder. A preset that cannot be
    /// laid out on its images trains on them converted to its own shape (dcgan64: 3×64×64).
    #[arg(long, default_value = "builtin")]
    pub data: String,
    #[command(flatten)]
    pub load: LoadArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads for the CPU's maths.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The largest relative difference of the headline loss's mean over the last quarter of
    /// the steps that passes (exit code 1 above it, or when the first step differs by more
    /// than 1e-4). Step by step the traces agree at first and drift apart later (see README).
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// One JSON object per preset (both loss traces included).
    #[arg(long)]
    pub json: bool,
    /// The side compared with the CPU's reference kernels (default: the CPU's fused kernels).
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Before any update both sides compute the same forward pass: rounding only.
const FIRST_STEP_TOLERANCE: f64 = 1e-4;

pub(super) fn parity(a: ParityArgs) -> anyhow::Result<ExitCode> {
    let data = load_data(&a.data, &a.load)?;
    let data_shape = data.shape;
    let names: Vec<String> = if a.preset.is_empty() {
        presets().iter().map(|s| s.to_string()).collect()
    } else {
        a.preset.clone()
    };
    let reference = Side::new(candle_core::Device::Cpu, KernelPath::Reference);
    let other = Side::new(a.compute.device()?, a.compute.kernels.unwrap_or_default());
    if !a.json {
        println!("{} against {}, {} steps, seed {}", other.label(), reference.label(), a.steps, a.seed);
        println!(
            "{:<16} {:>10} {:>10} {:>12} {:>6} {:>8} {:>10} {:>10} {:>11}",
            "preset",
            "first step",
            "agree 1e-3",
            "max rel diff",
            "step",
            "loss",
            "tail mean",
            "img/s ref",
            "img/s other"
        );
    }
    let mut all_pass = true;
    for name in &names {
        if preset(name, data.shape).is_none() {
            bail!("unknown preset `{name}`; presets: {}", presets().join(", "));
        }
        let data = data_for_preset(name, &data, CONVERTED_IMAGES);
        if data.shape != data_shape {
            eprintln!(
                "note: {name} trains on {} images of {} converted to {}",
                data.len(),
                data_shape,
                data.shape
            );
        }
        let mut cfg = preset(name, data.shape)
            .ok_or_else(|| anyhow!("unknown preset `{name}`; presets: {}", presets().join(", ")))?;
        cfg.train.seed = a.seed;
        cfg.train.threads = a.threads;
        if let Some(b) = a.batch {
            cfg.train.batch_size = b;
        }
        let p =
            kernels::pool::install(a.threads, || compare(&cfg, data.clone(), &reference, &other, a.steps))??;
        let pass = p.first_step_diff <= FIRST_STEP_TOLERANCE
            && p.tail_mean_diff <= a.tolerance
            && p.steps == a.steps;
        all_pass &= pass;
        if a.json {
            let mut v = serde_json::to_value(&p)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("preset".into(), name.clone().into());
                o.insert("pass".into(), pass.into());
            }
            println!("{v}");
        } else {
            println!(
                "{:<16} {:>10.2e} {:>10} {:>12.2e} {:>6} {:>8} {:>10.2e} {:>10.0} {:>11.0}{}",
                name,
                p.first_step_diff,
                p.agree_steps,
                p.max_rel_diff,
                p.worst_step,
                p.worst_loss.map_or("-", |k| k.id()),
                p.tail_mean_diff,
                p.a.images_per_sec,
                p.b.images_per_sec,
                if pass { "" } else { "  ← over the tolerance" }
            );
        }
    }
    Ok(if all_pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
