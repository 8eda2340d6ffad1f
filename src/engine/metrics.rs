//! The metrics of a run as rows (one per logged step, one per epoch and split), written as
//! `metrics.csv`. A long run keeps every epoch row but thins its step rows to at most
//! [`MAX_STEP_ROWS`], evenly spaced, so that its memory stays bounded.
//!
//! Sample quality, when measured, adds rows whose split is `quality` and the columns
//! [`QUALITY_COLUMNS`] after the losses (empty on the other rows); a log without quality
//! writes exactly the columns it always did.

use std::path::Path;

use super::error::{EngineError, Result};
use super::fsio::write_atomic;
use super::models::{LossKey, Losses};
use super::protocol::StepMetrics;
use super::quality::QualityReport;
use super::session::EpochSummary;

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub epoch: usize,
    pub step: u64,
    /// `step` (one training batch), `train` or `test` (epoch means).
    pub split: &'static str,
    pub losses: Losses,
}

/// The columns quality rows add, after the losses.
pub const QUALITY_COLUMNS: [&str; 8] =
    ["fd", "kid", "precision", "recall", "density", "coverage", "confident", "classes_covered"];

/// The figures of one quality evaluation, as logged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityRow {
    pub epoch: usize,
    pub step: u64,
    pub values: [Option<f64>; QUALITY_COLUMNS.len()],
}

impl QualityRow {
    pub fn new(epoch: usize, step: u64, r: &QualityReport) -> Self {
        let m = &r.samples.metrics;
        let c = r.samples.classes.as_ref();
        let values = [
            Some(m.fd),
            Some(m.kid),
            Some(m.precision),
            Some(m.recall),
            Some(m.density),
            Some(m.coverage),
            c.map(|c| c.confident),
            c.map(|c| c.covered as f64),
        ];
        Self { epoch, step, values }
    }
}

/// Step rows a log holds at most: past that, every other one is dropped and only every
/// `2·stride`-th step is kept from then on. With [`MAX_EPOCHS`], at most ~4 MB of rows however
/// long the run.
pub const MAX_STEP_ROWS: usize = 20_000;
/// Epochs a log holds rows for at most, thinned the same way as the steps.
pub const MAX_EPOCHS: usize = 5_000;

/// Rows of a run, in order.
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    pub rows: Vec<MetricRow>,
    /// Quality evaluations, in order of steps (few: no thinning).
    pub quality: Vec<QualityRow>,
    steps: Thinning,
    epochs: Thinning,
}

/// Which of a growing sequence of numbers (steps, epochs) are kept.
#[derive(Clone, Copy, Debug, Default)]
struct Thinning {
    /// Kept numbers are multiples of this (0 counts as 1).
    stride: u64,
    kept: usize,
}

impl Thinning {
    fn stride(&self) -> u64 {
        self.stride.max(1)
    }

    fn keeps(&self, n: u64) -> bool {
        n.is_multiple_of(self.stride())
    }
}

impl MetricsLog {
    /// Logs a training step (or skips it while step rows are thinned, see [`MAX_STEP_ROWS`]).
    pub fn push_step(&mut self, m: &StepMetrics) {
        if !self.steps.keeps(m.step) {
            return;
        }
        self.rows.push(MetricRow { epoch: m.epoch, step: m.step, split: "step", losses: m.losses });
        self.steps.kept += 1;
        if self.steps.kept > MAX_STEP_ROWS {
            self.steps.stride = self.steps.stride() * 2;
            let steps = self.steps;
            self.rows.retain(|r| r.split != "step" || steps.keeps(r.step));
            self.steps.kept = self.rows.iter().filter(|r| r.split == "step").count();
        }
    }

    /// Logs an epoch's train (and test) means (or skips it while epochs are thinned).
    pub fn push_epoch(&mut self, step: u64, e: &EpochSummary) {
        if !self.epochs.keeps(e.epoch as u64) {
            return;
        }
        self.rows.push(MetricRow { epoch: e.epoch, step, split: "train", losses: e.train });
        if let Some(t) = e.test {
            self.rows.push(MetricRow { epoch: e.epoch, step, split: "test", losses: t });
        }
        self.epochs.kept += 1;
        if self.epochs.kept > MAX_EPOCHS {
            self.epochs.stride = self.epochs.stride() * 2;
            let epochs = self.epochs;
            self.rows.retain(|r| r.split == "step" || epochs.keeps(r.epoch as u64));
            self.epochs.kept = self.rows.iter().filter(|r| r.split == "train").count();
        }
    }

    /// Logs a quality evaluation.
    pub fn push_quality(&mut self, row: QualityRow) {
        self.quality.retain(|q| q.step != row.step);
        self.quality.push(row);
    }

    /// Forgets everything after `step` (the run went back to it).
    pub fn truncate_after(&mut self, step: u64) {
        self.rows.retain(|r| r.step <= step);
        self.quality.retain(|q| q.step <= step);
    }

    /// Steps between logged step rows: 1 until the log is thinned.
    pub fn step_stride(&self) -> u64 {
        self.steps.stride()
    }

    /// CSV text: `epoch,step,split,<each of keys>` (the family's loss components), then
    /// [`QUALITY_COLUMNS`] if quality was measured; rows in order of steps.
    pub fn to_csv(&self, keys: &[LossKey]) -> String {
        let mut names: Vec<&str> = keys.iter().map(|k| k.id()).collect();
        let with_quality = !self.quality.is_empty();
        if with_quality {
            names.extend(QUALITY_COLUMNS);
        }
        let mut s = format!("epoch,step,split,{}\n", names.join(","));
        let blank_quality = if with_quality { ",".repeat(QUALITY_COLUMNS.len()) } else { String::new() };
        let mut quality = self.quality.iter().peekable();
        let quality_row = |s: &mut String, q: &QualityRow| {
            s.push_str(&format!("{},{},quality{}", q.epoch, q.step, ",".repeat(keys.len())));
            for v in q.values {
                match v {
                    Some(v) => s.push_str(&format!(",{v}")),
                    None => s.push(','),
                }
            }
            s.push('\n');
        };
        for r in &self.rows {
            while let Some(q) = quality.next_if(|q| q.step < r.step) {
                quality_row(&mut s, q);
            }
            s.push_str(&format!("{},{},{}", r.epoch, r.step, r.split));
            for &k in keys {
                match r.losses.get(k) {
                    Some(v) => s.push_str(&format!(",{v}")),
                    None => s.push(','),
                }
            }
            s.push_str(&blank_quality);
            s.push('\n');
        }
        for q in quality {
            quality_row(&mut s, q);
        }
        s
    }

    pub fn write_csv(&self, path: &Path, keys: &[LossKey]) -> Result<()> {
        write_atomic(path, self.to_csv(keys).as_bytes()).map_err(|e| EngineError::io(path, e))
    }
}
