//! Rewind points: checkpoints of the current run kept every K steps in a temporary folder,
//! at most N of them (the first and the latest always stay; the rest are thinned evenly), so
//! a user can go back to any of them and continue (a GAN that collapsed, a run that
//! over-fitted). A point can carry the sample quality measured there (its FD): the one with
//! the lowest is never thinned away, so "rewind to the best" stays possible.

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
    /// Fréchet distance measured at kept steps.
    fd: Vec<(u64, f64)>,
}

impl RewindStore {
    /// A store for run `run` in the system's temporary folder.
    pub fn new(run: u64, every: u64, count: usize) -> Self {
        // Several workers can live in one process (tests, the app after a restart of its
        // worker): a process-wide counter keeps their folders apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("genlab-{}-{n}-run{run}", std::process::id()));
        Self { dir, every, count: count.max(2), steps: Vec::new(), fd: Vec::new() }
    }

    /// Whether a rewind point is due after `step`.
    pub fn due(&self, step: u64) -> bool {
        self.every > 0 && step > 0 && step.is_multiple_of(self.every)
    }

    /// Whether points are kept at all (the run's `keep_every` is not 0).
    pub fn enabled(&self) -> bool {
        self.every > 0
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
        self.fd.retain(|&(k, _)| k != step);
        self.thin();
        Ok(())
    }

    /// Notes the FD measured at the kept point `step` (a point not kept is ignored).
    pub fn note_fd(&mut self, step: u64, fd: f64) {
        if self.steps.contains(&step) && fd.is_finite() {
            self.fd.retain(|&(k, _)| k != step);
            self.fd.push((step, fd));
        }
    }

    /// The kept point with the lowest FD, if any carries one.
    pub fn best(&self) -> Option<u64> {
        self.fd.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|&(k, _)| k)
    }

    fn thin(&mut self) {
        let best = self.best();
        for gone in thin_keeping(&mut self.steps, self.count, best) {
            let _ = std::fs::remove_dir_all(self.path(gone));
            self.fd.retain(|&(k, _)| k != gone);
        }
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
        self.fd.retain(|&(k, _)| k <= step);
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
    thin_keeping(steps, count, None)
}

/// [`thin`], never removing `keep` (one more point may then remain).
pub fn thin_keeping(steps: &mut Vec<u64>, count: usize, keep: Option<u64>) -> Vec<u64> {
    let mut removed = Vec::new();
    while steps.len() > count.max(2) + usize::from(keep.is_some_and(|k| steps.contains(&k))) {
        let inner = (1..steps.len() - 1).filter(|&i| Some(steps[i]) != keep);
        let Some(i) = inner.min_by_key(|&i| steps[i + 1] - steps[i - 1]) else { break };
        removed.push(steps.remove(i));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::{thin, thin_keeping};

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

    #[test]
    fn thinning_spares_the_best_point() {
        let mut s = Vec::new();
        for k in 1..=100u64 {
            s.push(k);
            thin_keeping(&mut s, 5, Some(7));
            assert!(s.len() <= 6);
        }
        assert!(s.contains(&7), "{s:?}");
        assert_eq!((s[0], s[s.len() - 1]), (1, 100));
    }
}
