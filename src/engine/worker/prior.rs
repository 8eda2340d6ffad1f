//! The worker's latent prior: trained on request over the current model's encoded training
//! split (the run waits meanwhile), sampled on request, saved and loaded with checkpoints.

use std::path::Path;

use super::*;
use crate::engine::prior::{LatentPrior, PriorConfig};
use crate::engine::protocol::{PriorSummary, PRIOR_VIEW_SAMPLES};

impl WorkerLoop {
    pub(super) fn train_prior(&mut self, request: u64, config: PriorConfig) {
        let Some(run) = self.run.take() else {
            self.error("no run: train or load a VAE or autoencoder first".into());
            return;
        };
        let (id, step) = (run.id, run.session.step_count());
        let images = run.session.data().gather(&run.session.split().train);
        let mut last = Instant::now();
        let result = run.pool.install(|| {
            LatentPrior::fit_model(&config, run.session.model(), &images, &mut |p| {
                self.long_request_progress(id, request, p.step as usize, p.steps as usize, &mut last)
            })
        });
        self.run = Some(run);
        match result {
            Ok(Some(prior)) => {
                self.prior = Some((id, prior));
                self.emit_prior(request, step);
            }
            Ok(None) => self.emit(Event::ScoreCancelled { run: id, request }),
            Err(e) => {
                self.emit(Event::ScoreCancelled { run: id, request });
                self.error(format!("training the latent prior failed: {e}"));
            }
        }
    }

    /// The current run's prior, if it has one.
    fn run_prior(&self) -> Option<&LatentPrior> {
        let run = self.run.as_ref()?;
        self.prior.as_ref().filter(|(id, _)| *id == run.id).map(|(_, p)| p)
    }

    pub(super) fn sample_prior(&mut self, n: usize, seed: u64) {
        let (Some(run), Some(prior)) = (self.run.as_ref(), self.run_prior()) else {
            self.error("no latent prior for this run: train one first".into());
            return;
        };
        let id = run.id;
        match run.pool.install(|| prior.sample_images(run.session.model(), n.clamp(1, 1024), seed)) {
            Ok(images) => self.emit(Event::Samples { run: id, images }),
            Err(e) => self.error(format!("sampling from the latent prior failed: {e}")),
        }
    }

    /// Announces the run's prior with latents for the latent map.
    fn emit_prior(&mut self, request: u64, step: u64) {
        let (Some(run), Some(prior)) = (self.run.as_ref(), self.run_prior()) else { return };
        let id = run.id;
        let latents = run.pool.install(|| {
            prior
                .sample_latents(PRIOR_VIEW_SAMPLES, 0)?
                .flatten_all()?
                .to_vec1::<f32>()
                .map_err(EngineError::from)
        });
        match latents {
            Ok(latents) => {
                let summary =
                    PriorSummary { meta: prior.meta().clone(), param_count: prior.param_count(), latents };
                self.emit(Event::PriorTrained { run: id, request, step, summary: Box::new(summary) });
            }
            Err(e) => self.error(format!("sampling from the latent prior failed: {e}")),
        }
    }

    /// Writes the run's prior beside a checkpoint just saved.
    pub(super) fn save_prior(&mut self, dir: &Path) {
        let Some(prior) = self.run_prior() else { return };
        if let Err(e) = prior.save(dir) {
            self.error(format!("saving the latent prior failed: {e}"));
        }
    }

    /// Loads the prior saved with the checkpoint the new run started from, if it has one; a
    /// bad prior file is reported and the run goes on without it.
    pub(super) fn load_prior(&mut self, dir: &Path) {
        let Some(run) = self.run.as_ref() else { return };
        let (id, step) = (run.id, run.session.step_count());
        match LatentPrior::load(dir)
            .and_then(|p| p.map(|p| p.check_model(run.session.model()).map(|_| p)).transpose())
        {
            Ok(Some(prior)) => {
                self.prior = Some((id, prior));
                self.emit_prior(0, step);
            }
            Ok(None) => {}
            Err(e) => self.error(format!("the checkpoint's latent prior was not loaded: {e}")),
        }
    }
}
