//! What a run has to explore: the fixed-noise history, reconstructions, decodes, encodings and
//! scores, each stamped with the version of the event that brought it.

use std::collections::BTreeMap;

use super::*;

/// Memory the fixed-noise history of one run may take at most.
pub const HISTORY_BUDGET: usize = 64 * 1024 * 1024;
/// Grids the fixed-noise history keeps (thinning halves the older ones past it). Without this
/// cap a run of 28×28 digits (50 kB a grid) kept growing for 1,300 grids, 65,000 steps at the
/// default `sample_every`, before the byte budget stopped it; with it the history levels off
/// at 12.8 MB after 12,800 steps. Larger images still stop at [`HISTORY_BUDGET`].
pub const HISTORY_GRIDS: usize = 256;

/// The history's byte budget for grids of `grid_bytes` bytes each.
pub fn history_budget(grid_bytes: usize) -> usize {
    HISTORY_BUDGET.min(HISTORY_GRIDS.saturating_mul(grid_bytes.max(1)))
}

/// A value with the sequence number of the event that brought it (changes whenever it does;
/// texture caches key on it).
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

/// Test images and their reconstructions.
#[derive(Clone, Debug)]
pub struct Reconstructions {
    pub indices: Vec<usize>,
    pub originals: ImageBatch,
    pub reconstructions: ImageBatch,
}

/// The answer to one [`crate::engine::protocol::Command::ReconstructImages`].
#[derive(Clone, Debug)]
pub struct ImagesReconstructed {
    /// The request it answers.
    pub request: u64,
    pub originals: ImageBatch,
    pub reconstructions: ImageBatch,
}

/// Scored sets kept per run: the newest, by request number.
pub const SCORED_KEEP: usize = 8;

/// One answered [`Event::Scored`].
#[derive(Clone, Debug)]
pub struct Scored {
    /// Which set: a split ("test", "train") or another dataset's name.
    pub name: String,
    /// The run's step when the scores arrived (sets are comparable only at the same step).
    pub step: u64,
    pub set: ScoredSet,
}

/// The answer to one [`crate::engine::protocol::Command::ClassInterpolate`].
#[derive(Clone, Debug)]
pub struct ClassInterpolated {
    pub step: u64,
    pub a: u32,
    pub b: u32,
    /// Images per row (image `r · steps + s` is noise row `r` at blend `s / (steps − 1)`).
    pub steps: usize,
    pub images: ImageBatch,
}

/// The answer to one [`crate::engine::protocol::Command::SameStyle`].
#[derive(Clone, Debug)]
pub struct SameStyle {
    pub step: u64,
    pub indices: Vec<usize>,
    pub originals: ImageBatch,
    /// Images per row (image `i · classes + c` is image `i` as class `c`).
    pub classes: usize,
    pub images: ImageBatch,
}

/// What the exploring tabs (samples, latent space, outliers) receive for a run.
#[derive(Clone, Debug)]
pub struct Explore {
    /// Every fixed-noise grid, thinned to [`history_budget`].
    pub history: GridHistory,
    pub samples: Option<Versioned<ImageBatch>>,
    pub reconstructions: Option<Versioned<Reconstructions>>,
    /// The newest images reconstructed from their pixels (the Outliers tab's zoom window).
    pub images_reconstructed: Option<Versioned<ImagesReconstructed>>,
    /// The newest decoded batch per channel, with its request number.
    pub decoded: BTreeMap<u32, Versioned<(u64, ImageBatch)>>,
    pub encoded: Option<Versioned<Encoding>>,
    /// A score or hold-out request under way: (request, done, total).
    pub score_progress: Option<(u64, usize, usize)>,
    /// Answered score requests by request number (at most [`SCORED_KEEP`], the newest).
    pub scored: BTreeMap<u64, Versioned<Scored>>,
    pub hold_out: Option<Versioned<HoldOutReport>>,
    /// The memorisation view and the step it was measured at.
    pub nearest: Option<Versioned<(u64, NearestView)>>,
    /// Every class × noise grid of a conditional run, thinned like `history` (the same steps).
    pub class_history: GridHistory,
    /// Classes of a conditional run's class grids (columns).
    pub grid_classes: usize,
    pub class_interpolated: Option<Versioned<ClassInterpolated>>,
    pub same_style: Option<Versioned<SameStyle>>,
    /// The newest per-class agreement and the step it was measured at.
    pub conditioning: Option<Versioned<(u64, Conditioning)>>,
    /// The newest disentanglement scores and the step they were measured at.
    pub disentangled: Option<Versioned<(u64, crate::engine::disentangle::DisentanglementReport)>>,
    /// The newest β sweep's rows so far.
    pub sweep: Option<SweepState>,
    /// A model with a sampler: its newest denoising trajectory, forward-process image and
    /// loss per timestep bucket.
    pub sampler: SamplerViews,
    /// The run's latent prior, once one is trained or loaded with its checkpoint.
    pub prior: Option<Versioned<PriorView>>,
}

/// A trained latent prior: what the Samples and Latent tabs show of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorView {
    /// The training step of the model it was fitted to.
    pub step: u64,
    pub summary: crate::engine::protocol::PriorSummary,
}

/// A β sweep's answers (see `Command::Sweep`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepState {
    pub request: u64,
    /// Models in the sweep.
    pub total: usize,
    pub rows: Vec<crate::engine::sweep::SweepRow>,
    pub done: bool,
    pub cancelled: bool,
}

impl Default for Explore {
    fn default() -> Self {
        Self {
            history: GridHistory::new(HISTORY_BUDGET),
            samples: None,
            reconstructions: None,
            images_reconstructed: None,
            decoded: BTreeMap::new(),
            encoded: None,
            score_progress: None,
            scored: BTreeMap::new(),
            hold_out: None,
            nearest: None,
            class_history: GridHistory::new(HISTORY_BUDGET),
            grid_classes: 0,
            class_interpolated: None,
            same_style: None,
            conditioning: None,
            disentangled: None,
            sweep: None,
            sampler: SamplerViews::default(),
            prior: None,
        }
    }
}
