//! One panel per file. Panels draw from borrowed state and push [`Action`]s; the central
//! tabs implement [`Tab`] and are listed in [`all_tabs`], so a new tab is one file plus one line.

pub mod architecture;
mod classes;
pub mod controls;
pub mod dataset;
pub mod latent;
mod latent_prior;
pub mod outliers;
pub mod sampler;
pub mod samples;
pub mod training;
mod training_quality;

use super::actions::Action;
use super::other_data::OtherData;
use super::run_view::RunView;
use super::state::PlotPrefs;
use super::textures::Textures;
use crate::engine::data::Dataset;
use crate::engine::protocol::QualitySchedule;

/// What a central tab may read and do.
pub struct TabCtx<'a> {
    pub run_view: &'a RunView,
    pub dataset: Option<&'a Dataset>,
    /// A second dataset loaded to be scored against the model.
    pub other: &'a OtherData,
    pub plot: &'a mut PlotPrefs,
    /// When the worker measures sample quality (the app tells the worker when it changes).
    pub quality: &'a mut QualitySchedule,
    pub textures: &'a mut Textures,
    pub actions: &'a mut Vec<Action>,
}

/// A tab of the central area.
pub trait Tab {
    /// The tab's name, shown on its button and persisted as the selection.
    fn title(&self) -> &'static str;
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>);
}

/// Every central tab, in display order.
pub fn all_tabs() -> Vec<Box<dyn Tab>> {
    vec![
        Box::new(training::TrainingTab::default()),
        Box::new(samples::SamplesTab::default()),
        Box::new(latent::LatentTab::default()),
        Box::new(outliers::OutliersTab::default()),
    ]
}
