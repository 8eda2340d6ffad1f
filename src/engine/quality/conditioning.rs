//! How well a conditional model draws the class it is asked for: the share of its samples of
//! each class that the feature network's classifier assigns to that class.

use std::time::Instant;

use serde::Serialize;

use super::features::argmax;
use super::QualityContext;
use crate::engine::error::{EngineError, Result};
use crate::engine::models::GenerativeModel;
use crate::engine::session;

/// Per-class agreement between the requested class and the classifier's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conditioning {
    /// Samples drawn per class.
    pub per_class_n: usize,
    /// Share of class `c`'s samples the classifier assigns to `c`, per class.
    pub agreement: Vec<f64>,
    /// `confusion[c][k]`: class `c`'s samples the classifier assigns to `k`.
    pub confusion: Vec<Vec<usize>>,
    pub seconds: f64,
}

impl Conditioning {
    /// The lowest per-class agreement (the figure a target is checked against).
    pub fn min(&self) -> f64 {
        self.agreement.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn mean(&self) -> f64 {
        self.agreement.iter().sum::<f64>() / self.agreement.len().max(1) as f64
    }
}

impl QualityContext {
    /// Draws `per_class` samples of every class from a conditional `model` (the same noise,
    /// seed `seed`, for each class) and asks the classifier what they show. An error when the
    /// model is not conditional or the features come from no classifier (unlabelled data).
    pub fn conditioning(
        &self,
        model: &dyn GenerativeModel,
        per_class: usize,
        seed: u64,
    ) -> Result<Conditioning> {
        let t0 = Instant::now();
        let k = model.classes();
        if k == 0 {
            return Err(EngineError::Config("conditioning accuracy needs a conditional model".into()));
        }
        let judged = self.net.classes();
        if judged < k {
            return Err(EngineError::Config(format!(
                "the model draws {k} classes but the feature network classifies {judged} (it needs a classifier trained on the same labels)"
            )));
        }
        let mut confusion = vec![vec![0usize; judged]; k];
        for (c, row) in confusion.iter_mut().enumerate() {
            let images = session::sample_class(model, per_class, 1.0, seed, Some(c as u32))?;
            let pixels: Vec<f32> = images.pixels.iter().map(|&p| p as f32 / 255.0).collect();
            let probs = self.embed(&pixels)?.probs.ok_or_else(|| {
                EngineError::Config("the feature network is no classifier (the data has no labels)".into())
            })?;
            for p in probs.chunks(judged) {
                row[argmax(p)] += 1;
            }
        }
        let agreement =
            confusion.iter().enumerate().map(|(c, row)| row[c] as f64 / per_class.max(1) as f64).collect();
        Ok(Conditioning { per_class_n: per_class, agreement, confusion, seconds: t0.elapsed().as_secs_f64() })
    }
}
