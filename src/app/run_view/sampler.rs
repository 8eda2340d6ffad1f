//! What a run with a sampler (diffusion, flow matching) has to show: the denoising
//! trajectory, the forward process of one image, the loss per timestep bucket; and the
//! sampler settings folded into the run's configuration when they change.

use super::*;
use crate::engine::models::diffusion::views::Trajectory;
use crate::engine::models::ModelConfig;

/// The answer to one `Command::Trajectory`.
#[derive(Clone, Debug)]
pub struct TrajectoryView {
    pub request: u64,
    /// The training step whose weights drew it.
    pub step: u64,
    pub trajectory: Trajectory,
}

/// The answer to one `Command::Noised`.
#[derive(Clone, Debug)]
pub struct NoisedView {
    pub request: u64,
    pub index: usize,
    pub t: f64,
    pub original: ImageBatch,
    pub noised: ImageBatch,
}

#[derive(Clone, Debug, Default)]
pub struct SamplerViews {
    pub trajectory: Option<Versioned<TrajectoryView>>,
    pub noised: Option<Versioned<NoisedView>>,
    /// The newest loss per timestep bucket and the step it was read at.
    pub timestep_losses: Option<(u64, Vec<f64>)>,
}

impl RunView {
    /// Folds `Trajectory`, `Noised`, `SamplerChanged` and `TimestepLosses` events.
    pub(super) fn apply_sampler(&mut self, event: Event, version: u64) {
        let Some(r) = event.run().and_then(|id| self.record_mut(id)) else { return };
        let views = &mut r.explore.sampler;
        match event {
            Event::Trajectory { step, request, trajectory, .. } => {
                let value = TrajectoryView { request, step, trajectory: *trajectory };
                views.trajectory = Some(Versioned { version, value });
            }
            Event::Noised { request, index, t, original, noised, .. } => {
                let value = NoisedView { request, index, t, original, noised };
                views.noised = Some(Versioned { version, value });
            }
            Event::TimestepLosses { step, losses, .. } => views.timestep_losses = Some((step, losses)),
            Event::SamplerChanged { settings, .. } => {
                if let ModelConfig::Diffusion(d) = &mut r.config.model {
                    d.sampler = settings.sampler;
                    d.sample_steps = settings.steps;
                    d.eta = settings.eta;
                }
            }
            _ => {}
        }
    }
}
