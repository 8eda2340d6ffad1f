//! The metrics of a run as rows (one per logged step, one per epoch and split), written as
//! `metrics.csv`.

use std::io::Write;
use std::path::Path;

use super::error::{EngineError, Result};
use super::models::{Family, Losses};
use super::protocol::StepMetrics;
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

/// Rows of a run, in order.
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    pub rows: Vec<MetricRow>,
}

impl MetricsLog {
    pub fn push_step(&mut self, m: &StepMetrics) {
        self.rows.push(MetricRow { epoch: m.epoch, step: m.step, split: "step", losses: m.losses });
    }

    pub fn push_epoch(&mut self, step: u64, e: &EpochSummary) {
        self.rows.push(MetricRow { epoch: e.epoch, step, split: "train", losses: e.train });
        if let Some(t) = e.test {
            self.rows.push(MetricRow { epoch: e.epoch, step, split: "test", losses: t });
        }
    }

    /// CSV text: `epoch,step,split,<every loss component of the family>`.
    pub fn to_csv(&self, family: Family) -> String {
        let names = Losses::names_for(family);
        let mut s = format!("epoch,step,split,{}\n", names.join(","));
        for r in &self.rows {
            s.push_str(&format!("{},{},{}", r.epoch, r.step, r.split));
            for n in names {
                match r.losses.get(n) {
                    Some(v) => s.push_str(&format!(",{v}")),
                    None => s.push(','),
                }
            }
            s.push('\n');
        }
        s
    }

    pub fn write_csv(&self, path: &Path, family: Family) -> Result<()> {
        write_atomic(path, self.to_csv(family).as_bytes())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::io(path, e)
    })
}
