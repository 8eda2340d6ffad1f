//! Stateless views over borrowed data.

pub mod bars;
pub mod downsample;
pub mod histogram;
pub mod image_grid;
pub mod loss_plot;
pub mod network_diagram;
pub mod notices;
pub mod quality_plot;
