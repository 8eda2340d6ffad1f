//! What the worker does with the commands of conditional models: samples and decodes of one
//! class, the class × noise grid beside the fixed-noise grid, interpolation between classes,
//! and "same style, other class".

use super::*;
use crate::engine::conditional::{class_interpolation, decode_latents, same_style};
use crate::engine::session::{batch_of, sample_class};

/// Most noise rows and steps of one class interpolation (a view, not a dataset).
const MAX_INTERPOLATION: usize = 32;

impl WorkerLoop {
    /// The class × noise grid of the newest weights, after every fixed-noise grid.
    pub(super) fn emit_class_grid(&mut self) {
        let Some(run) = self.run.as_ref() else { return };
        let (id, step, classes) = (run.id, run.session.step_count(), run.session.model().classes());
        match run.pool.install(|| run.session.fixed_class_grid()) {
            Ok(Some(images)) => self.emit(Event::ClassGrid { run: id, step, classes, images }),
            Ok(None) => {}
            Err(e) => self.error(format!("drawing the class grid failed: {e}")),
        }
    }

    /// One of [`Command::SampleClass`], [`Command::DecodeClass`],
    /// [`Command::ClassInterpolate`], [`Command::SameStyle`].
    pub(super) fn conditional(&mut self, cmd: Command) {
        let Some(run) = self.run.as_ref() else {
            self.error("no run: start training first".into());
            return;
        };
        let (id, step) = (run.id, run.session.step_count());
        let model = run.session.model();
        let event = match cmd {
            Command::SampleClass { n, temperature, seed, class } => run
                .pool
                .install(|| sample_class(model, n.clamp(1, 1024), temperature, seed, class))
                .map(|images| Event::Samples { run: id, images })
                .map_err(|e| format!("sampling failed: {e}")),
            Command::DecodeClass { channel, request, latents, class } => run
                .pool
                .install(|| decode_latents(model, &latents, class))
                .map(|images| Event::Decoded { run: id, channel, request, images })
                .map_err(|e| format!("decoding failed: {e}")),
            Command::ClassInterpolate { a, b, steps, rows } => {
                let (steps, rows) = (steps.clamp(2, MAX_INTERPOLATION), rows.clamp(1, MAX_INTERPOLATION));
                let noise = run.session.fixed_noise();
                run.pool
                    .install(|| {
                        let z = noise.narrow(0, 0, rows.min(noise.dim(0)?))?;
                        class_interpolation(model, &z, a, b, steps)
                    })
                    .map(|images| Event::ClassInterpolated { run: id, step, a, b, steps, images })
                    .map_err(|e| format!("interpolating between classes failed: {e}"))
            }
            Command::SameStyle { indices } => {
                let data = run.session.data();
                let n = data.len();
                if let Some(bad) = indices.iter().find(|&&i| i >= n) {
                    self.error(format!("image {bad} does not exist (the dataset has {n})"));
                    return;
                }
                if data.labels.is_none() {
                    self.error(format!("{} has no labels to encode its images under", data.name));
                    return;
                }
                let r = run.pool.install(|| {
                    let b = batch_of(data, &indices)?;
                    let y = b.y.as_ref().ok_or_else(|| EngineError::Other("no labels".into()))?;
                    same_style(model, &b.x, y)
                });
                match r {
                    Ok(Some(images)) => Ok(Event::SameStyle {
                        run: id,
                        step,
                        originals: crate::engine::images::ImageBatch::from_f32(
                            &data.gather(&indices),
                            data.shape,
                        ),
                        indices,
                        classes: model.classes(),
                        images,
                    }),
                    Ok(None) => Err("a GAN has no encoder to take an image's style from".into()),
                    Err(e) => Err(format!("\"same style, other class\" failed: {e}")),
                }
            }
            _ => return,
        };
        match event {
            Ok(ev) => self.emit(ev),
            Err(message) => self.error(message),
        }
    }
}
