//! A run's per-step loss series (one column per [`LossKey`]) and the markers drawn on it.

use super::*;

/// Per-step values of every loss component of a family, column by column, with each step's
/// epoch, learning rate and throughput.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The family's loss components, in plot order.
    pub keys: Vec<LossKey>,
    pub steps: Vec<f64>,
    /// One column per key, each as long as `steps` (NaN where a value was missing).
    pub values: Vec<Vec<f64>>,
    /// 0-based epoch of each step. This and the next two are kept narrow (the per-step series
    /// is what grows over a long run: 40 bytes a step for a VAE instead of 56).
    pub epochs: Vec<u32>,
    pub learning_rates: Vec<f32>,
    /// Images per second at each step (unsmoothed, as the worker measured it).
    pub images_per_sec: Vec<f32>,
    /// Bumped whenever steps are removed (a rewind), so that caches built on the series as it
    /// only grew know to start over.
    pub revision: u64,
}

impl Series {
    pub fn new(keys: &[LossKey]) -> Self {
        Self { keys: keys.to_vec(), values: vec![Vec::new(); keys.len()], ..Default::default() }
    }

    pub fn push(&mut self, m: &StepMetrics) {
        self.steps.push(m.step as f64);
        for (col, &key) in self.values.iter_mut().zip(&self.keys) {
            col.push(m.losses.get(key).unwrap_or(f64::NAN));
        }
        self.epochs.push(u32::try_from(m.epoch).unwrap_or(u32::MAX));
        self.learning_rates.push(m.learning_rate as f32);
        self.images_per_sec.push(m.images_per_sec as f32);
    }

    /// Keeps the first `n` steps.
    pub fn truncate(&mut self, n: usize) {
        if n < self.steps.len() {
            self.revision += 1;
        }
        self.steps.truncate(n);
        for col in &mut self.values {
            col.truncate(n);
        }
        self.epochs.truncate(n);
        self.learning_rates.truncate(n);
        self.images_per_sec.truncate(n);
    }

    /// CSV text: `step,epoch,<loss components>,lr,images_per_sec`, one row per step (empty
    /// cells where a value is missing).
    pub fn to_csv(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(|k| k.id()).collect();
        let mut s = format!("step,epoch,{},lr,images_per_sec\n", names.join(","));
        let cell = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
        for i in 0..self.steps.len() {
            let epoch = self.epochs.get(i).map_or(String::new(), |e| e.to_string());
            s.push_str(&format!("{},{epoch}", self.steps[i]));
            for col in &self.values {
                s.push(',');
                s.push_str(&cell(col.get(i).copied().unwrap_or(f64::NAN)));
            }
            for col in [&self.learning_rates, &self.images_per_sec] {
                // As f32, so that 1e-3 reads 0.001, not its f64 widening.
                let v = col.get(i).copied().unwrap_or(f32::NAN);
                s.push(',');
                s.push_str(&if v.is_finite() { v.to_string() } else { String::new() });
            }
            s.push('\n');
        }
        s
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn column(&self, key: LossKey) -> Option<&[f64]> {
        let i = self.keys.iter().position(|&k| k == key)?;
        Some(&self.values[i])
    }
}

/// Something that happened at a step, drawn as a vertical line.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkerKind {
    LearningRate(f64),
    Beta(f64),
    /// Another live hyperparameter (a GAN's D learning rate or step ratio).
    Hyper(crate::engine::models::LiveHyper, f64),
    Diverged,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub step: u64,
    pub kind: MarkerKind,
}
