//! What the worker does for models with a sampler (diffusion, flow matching): the denoising
//! trajectory of the fixed noise, the forward process of one image, live sampler settings,
//! and the loss per timestep bucket sent beside each fixed-noise grid.

use candle_core::{Device, Tensor};

use super::*;
use crate::engine::images::ImageBatch;

/// Most noise rows and recorded steps of one trajectory (a view, not a dataset).
const MAX_TRAJECTORY: usize = 32;
/// Steps between reports of the loss per timestep bucket: ten floats, so often enough that
/// the bars move while a slow model trains (a diffusion step takes about a second on 2
/// cores), far less than a grid's cost.
pub(super) const TIMESTEP_LOSS_EVERY: u64 = 10;

impl WorkerLoop {
    /// The training loss per timestep bucket, after every fixed-noise grid and every
    /// [`TIMESTEP_LOSS_EVERY`] steps (nothing for a family without timesteps).
    pub(super) fn emit_timestep_losses(&mut self) {
        let Some(run) = self.run.as_ref() else { return };
        let (id, step) = (run.id, run.session.step_count());
        if let Some(losses) = run.session.model().timestep_losses() {
            self.emit(Event::TimestepLosses { run: id, step, losses });
        }
    }

    /// One of [`Command::Trajectory`], [`Command::Noised`], [`Command::SetSampler`].
    pub(super) fn sampler(&mut self, cmd: Command) {
        let Some(run) = self.run.as_mut() else {
            self.error("no run: start training first".into());
            return;
        };
        let (id, step) = (run.id, run.session.step_count());
        if !run.session.model().capabilities().sampler {
            let family = run.session.config().model.family();
            self.error(format!(
                "a {family} model has no sampler: no trajectory, forward process or sampler settings"
            ));
            return;
        }
        let event = match cmd {
            Command::Trajectory { request, rows, columns } => {
                let (rows, columns) = (rows.clamp(1, MAX_TRAJECTORY), columns.clamp(1, MAX_TRAJECTORY));
                let (session, pool) = (&run.session, &run.pool);
                let t0 = Instant::now();
                let drawn = pool.install(|| {
                    let noise = session.fixed_noise();
                    let z = noise.narrow(0, 0, rows.min(noise.dim(0)?))?;
                    session.model().trajectory(&z, columns)
                });
                run.views.view_drawn(t0.elapsed().as_secs_f64());
                drawn
                    .map_err(|e| format!("drawing the denoising trajectory failed: {e}"))
                    .and_then(|t| t.ok_or_else(|| "this model records no trajectory".to_string()))
                    .map(|t| Event::Trajectory { run: id, step, request, trajectory: Box::new(t) })
            }
            Command::Noised { request, index, t, seed } => {
                let data = run.session.data().clone();
                if index >= data.len() {
                    self.error(format!("image {index} does not exist (the dataset has {})", data.len()));
                    return;
                }
                if !t.is_finite() {
                    self.error(format!("the time t must be a number between 0 and 1 (got {t})"));
                    return;
                }
                let (session, pool) = (&run.session, &run.pool);
                let x = data.gather(&[index]);
                pool.install(|| {
                    let xt = Tensor::from_vec(x.clone(), (1, data.shape.len()), &Device::Cpu)?;
                    let noised = session
                        .model()
                        .noised(&xt, t, seed)?
                        .ok_or_else(|| EngineError::Other("this model has no forward process".into()))?;
                    ImageBatch::from_tensor(&noised, data.shape)
                })
                .map_err(|e| format!("noising image {index} failed: {e}"))
                .map(|noised| Event::Noised {
                    run: id,
                    step,
                    request,
                    index,
                    t: t.clamp(0.0, 1.0),
                    original: ImageBatch::from_f32(&x, data.shape),
                    noised,
                })
            }
            Command::SetSampler(settings) => run
                .session
                .model_mut()
                .set_sampler(settings)
                .map(|()| Event::SamplerChanged { run: id, step, settings })
                .map_err(|e| e.to_string()),
            _ => return,
        };
        match event {
            Ok(ev) => self.emit(ev),
            Err(message) => self.error(message),
        }
    }
}
