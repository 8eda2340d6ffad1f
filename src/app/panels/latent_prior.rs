//! The Samples tab's "Latent prior" section (a model with an encoder): train a small flow or
//! DDPM model over the encoded training set on the worker, and choose whether prior samples
//! decode N(0, I) draws or draws from it.

use egui::RichText;

use super::TabCtx;
use crate::app::actions::Action;
use crate::app::run_view::RunRecord;
use crate::engine::explore::Pca2;
use crate::engine::models::diffusion::schedule::Objective;
use crate::engine::prior::PriorConfig;
use crate::engine::protocol::Command;

/// Where prior samples come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFrom {
    Normal,
    Learned,
}

pub struct LatentPriorSection {
    pub from: SampleFrom,
    epochs: usize,
    objective: Objective,
    /// The newest train request and whether it is this section's.
    asked: Option<u64>,
    next_request: u64,
}

impl Default for LatentPriorSection {
    fn default() -> Self {
        let d = PriorConfig::default();
        Self {
            from: SampleFrom::Normal,
            epochs: d.epochs,
            objective: d.objective,
            asked: None,
            next_request: 1,
        }
    }
}

impl LatentPriorSection {
    /// Whether the run's model takes a latent prior: an encoder, no class conditioning.
    pub fn applies(run: &RunRecord) -> bool {
        run.capabilities.encoder && !run.capabilities.conditional
    }

    /// Whether samples should come from the learned prior (chosen and present).
    pub fn use_prior(&self, run: &RunRecord) -> bool {
        self.from == SampleFrom::Learned && run.explore.prior.is_some()
    }

    /// Draws the section; `true` when the sample source changed (the caller redraws samples).
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) -> bool {
        ui.strong("Latent prior");
        let progress = run.explore.score_progress;
        let mine = progress.filter(|(r, _, _)| Some(*r) == self.asked);
        ui.horizontal_wrapped(|ui| {
            let free = progress.is_none() && run.has_model();
            let label =
                if run.explore.prior.is_some() { "Retrain latent prior" } else { "Train latent prior" };
            let button = ui.add_enabled(free, egui::Button::new(label)).on_hover_text(
                "Encode the training split with the current weights (frozen) and fit a small \
                 flow-matching or DDPM model to the codes: a prior that replaces N(0, I)",
            );
            if button.clicked() {
                let request = self.next_request;
                self.next_request += 1;
                self.asked = Some(request);
                let config =
                    PriorConfig { epochs: self.epochs, objective: self.objective, ..PriorConfig::default() };
                cx.actions.push(Action::Worker(Command::TrainPrior { request, config }));
            }
            let label = ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut self.epochs).range(1..=500)).labelled_by(label.id);
            egui::ComboBox::from_label("Objective").selected_text(objective_label(self.objective)).show_ui(
                ui,
                |ui| {
                    for o in [Objective::Flow, Objective::Ddpm] {
                        ui.selectable_value(&mut self.objective, o, objective_label(o));
                    }
                },
            );
        });
        match mine {
            Some((_, done, total)) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
                    ui.add(
                        egui::ProgressBar::new(frac)
                            .desired_width(160.0)
                            .text(format!("step {done}/{total}")),
                    );
                    if ui.button("Cancel").clicked() {
                        cx.actions.push(Action::Worker(Command::CancelScore));
                    }
                });
            }
            None if progress.is_some() => {
                ui.label(RichText::new("Another request is under way.").weak().small());
            }
            None => {}
        }
        let mut changed = false;
        match &run.explore.prior {
            Some(p) => {
                let m = &p.value.summary.meta;
                ui.label(
                    RichText::new(format!(
                        "{}, {} parameters, fitted at step {} to {} codes: {} epochs in {:.1} s, loss {:.3}",
                        objective_label(m.config.objective),
                        p.value.summary.param_count,
                        p.value.step,
                        m.train_latents,
                        m.config.epochs,
                        m.seconds,
                        m.final_loss
                    ))
                    .weak()
                    .small(),
                );
                if p.value.step != run.step {
                    ui.label(
                        RichText::new("The model has trained on since: retrain the prior for its new codes.")
                            .weak()
                            .small(),
                    );
                }
                ui.horizontal(|ui| {
                    ui.label("Sample from:");
                    changed |= ui.radio_value(&mut self.from, SampleFrom::Normal, "N(0, I)").changed();
                    changed |= ui.radio_value(&mut self.from, SampleFrom::Learned, "learned prior").changed();
                });
            }
            None => {
                ui.label(
                    RichText::new("Samples decode N(0, I) draws until a latent prior is trained.")
                        .weak()
                        .small(),
                );
            }
        }
        changed
    }
}

fn objective_label(o: Objective) -> &'static str {
    match o {
        Objective::Flow => "flow matching",
        Objective::Ddpm => "DDPM",
    }
}

/// The learned prior's samples projected onto the latent map (PCA of the test set's μ), to
/// show where it puts its mass over the encoded test set; `None` without a prior.
pub fn map_points(run: &RunRecord, pca: &Pca2, latent_dim: usize) -> Option<Vec<[f64; 2]>> {
    let z = &run.explore.prior.as_ref()?.value.summary.latents;
    if latent_dim == 0 || !z.len().is_multiple_of(latent_dim) {
        return None;
    }
    Some(z.chunks(latent_dim).map(|row| pca.project(row)).map(|p| [p[0] as f64, p[1] as f64]).collect())
}
