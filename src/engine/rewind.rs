//! Rewind points: checkpoints of the current run kept every K steps in a temporary folder,
//! at most N of them (the first and the latest always stay; the rest are thinned evenly), so
//! a user can go back to any of them and continue (a GAN that collapsed, a run that
//! over-fitted).

use std::path::PathBuf;

use super::checkpoint;
use super::error::{EngineError, Result};
use super::metrics::MetricsLog;
use super::session::TrainingSession;

pub struct RewindStore {
    dir: PathBuf,
    every: u64,
    count: usize,
    steps: Vec<u64>,
}

impl RewindStore {
    /// A store for run `run` in the system's temporary folder.
    pub fn new(run: u64, every: u64, count: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("genlab-{}-run{run}", std::process::id()));
        Self { dir, every, count: count.max(2), steps: Vec::new() }
    }

    /// Whether a rewind point is due after `step`.
    pub fn due(&self, step: u64) -> bool {
        self.every > 0 && step > 0 && step.is_multiple_of(self.every)
    }

    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    fn path(&self, step: u64) -> PathBuf {
        self.dir.join(format!("step-{step:09}"))
    }

    /// Saves the session's current state as a rewind point.
    pub fn keep(&mut self, session: &TrainingSession, metrics: &MetricsLog) -> Result<()> {
        let step = session.step_count();
        let s = session;
        checkpoint::save(&self.path(step), s.model(), s.config(), &s.data().source, step, Some(metrics))?;
        self.steps.retain(|&k| k != step);
        self.steps.push(step);
        for gone in thin(&mut self.steps, self.count) {
            let _ = std::fs::remove_dir_all(self.path(gone));
        }
        Ok(())
    }

    /// Puts the session back to the point at `step`.
    pub fn restore(&self, step: u64, session: &mut TrainingSession) -> Result<()> {
        if !self.steps.contains(&step) {
            return Err(EngineError::Other(format!("there is no rewind point at step {step}")));
        }
        let loaded = checkpoint::load(&self.path(step))?;
        session.model_mut().load_state(&loaded.model.state()?)?;
        session.model_mut().set_optimizer_steps(&loaded.meta.optimizer_steps);
        session.set_progress(step);
        Ok(())
    }

    /// Forgets the points after `step` (after a rewind, the run's future is rewritten).
    pub fn truncate_after(&mut self, step: u64) {
        for &k in self.steps.iter().filter(|&&k| k > step) {
            let _ = std::fs::remove_dir_all(self.path(k));
        }
        self.steps.retain(|&k| k <= step);
    }
}

impl Drop for RewindStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes points until at most `count` (≥ 2) remain, keeping the first and the last and
/// dropping each time the inner point whose removal leaves the smallest gap, so spacing stays
/// as even as it can. Returns the removed steps.
pub fn thin(steps: &mut Vec<u64>, count: usize) -> Vec<u64> {
    let mut removed = Vec::new();
    while steps.len() > count.max(2) {
        let i = (1..steps.len() - 1).min_by_key(|&i| steps[i + 1] - steps[i - 1]).unwrap_or(1);
        removed.push(steps.remove(i));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_the_ends_and_spreads_the_rest() {
        let mut s: Vec<u64> = (1..=100).map(|k| k * 10).collect();
        thin(&mut s, 5);
        assert_eq!(s.len(), 5);
        assert_eq!((s[0], s[4]), (10, 1000));
        let gaps: Vec<u64> = s.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().max().unwrap() <= &(3 * gaps.iter().min().unwrap()), "{s:?}");
        // Growing one point at a time stays bounded too.
        let mut s = Vec::new();
        for k in 1..=1000u64 {
            s.push(k);
            thin(&mut s, 10);
            assert!(s.len() <= 10);
        }
        assert_eq!((s[0], s[9]), (1, 1000));
    }
}
