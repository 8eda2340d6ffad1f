//! The cost of one sample-quality evaluation (`genlab bench`'s `quality` record): drawing the
//! samples, their features and every metric against a prepared reference, per 1,000 samples.

use std::time::Instant;

use serde::Serialize;

use crate::engine::data::Dataset;
use crate::engine::error::Result;
use crate::engine::kernels::Exec;
use crate::engine::models::build_model;
use crate::engine::quality::{feature_net, QualityContext};

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityResult {
    pub kind: &'static str,
    pub framework: &'static str,
    /// The preset whose samples were measured (untrained: the cost hardly depends on it).
    pub preset: String,
    pub samples: usize,
    /// Preparing the reference once (feature network, real features, floor, ceiling).
    pub prepare_seconds: f64,
    /// The median of `repeats` evaluations.
    pub seconds: f64,
    pub ms_per_1000_samples: f64,
    pub repeats: usize,
}

/// Times `repeats` evaluations of `samples` samples of `model` on `data` (call inside the pool).
pub fn measure(data: &Dataset, model: &str, samples: usize, repeats: usize) -> Result<QualityResult> {
    let split = data.split(0.2, 0);
    let t0 = Instant::now();
    let net = feature_net(data, &split, &mut |_| {})?;
    let ctx = QualityContext::new(data, &split, net, samples, 0)?;
    let prepare_seconds = t0.elapsed().as_secs_f64();
    let (cfg, optim) = crate::engine::models::preset(model, data.shape)
        .ok_or_else(|| crate::engine::EngineError::Config(format!("unknown model `{model}`")))?;
    let m = build_model(&cfg, &optim, 0, &Exec::cpu())?;
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|seed| -> Result<f64> {
            let t = Instant::now();
            ctx.score_model(m.as_ref(), seed as u64)?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    Ok(QualityResult {
        kind: "quality",
        framework: "genlab",
        preset: model.to_string(),
        samples: ctx.n,
        prepare_seconds,
        seconds,
        ms_per_1000_samples: 1e6 * seconds / ctx.n.max(1) as f64,
        repeats: times.len(),
    })
}
