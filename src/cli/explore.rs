//! `genlab traverse`, `encode` and `interpolate`: a checkpoint's latent space from the
//! command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use clap::Args;

use super::*;

#[derive(Args, Debug)]
pub struct TraverseArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `.gif`: one frame per value, each showing every chosen dimension; `.png`: a grid with
    /// one row per dimension and one column per value.
    #[arg(long)]
    pub out: PathBuf,
    /// Latent dimensions (default: the 8 with the highest KL on the test split).
    #[arg(long, value_delimiter = ',')]
    pub dims: Option<Vec<usize>>,
    /// Traverse around this test image's μ (default: the prior's mean, z = 0).
    #[arg(long)]
    pub image: Option<usize>,
    /// Values from −range to +range.
    #[arg(long, default_value_t = 3.0)]
    pub range: f32,
    #[arg(long, default_value_t = 11)]
    pub steps: usize,
    /// Dataset for the KL ordering and --image (default: the checkpoint's).
    #[arg(long)]
    pub data: Option<String>,
    /// Decode under this class (needed by a conditional model; --image is still encoded under
    /// its own label, so the traversal keeps its style as this class).
    #[arg(long)]
    pub class: Option<u32>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InterpolateArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Index of the first test image (for a GAN: the seed of the first noise vector).
    #[arg(long)]
    pub from: usize,
    /// Index of the second test image (GAN: the second seed).
    #[arg(long)]
    pub to: usize,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub data: Option<String>,
    /// Decode under this class (needed by a conditional model; the end images are encoded
    /// under their own labels).
    #[arg(long)]
    pub class: Option<u32>,
    #[arg(long)]
    pub force: bool,
}

/// The class to decode under: checked against the model; a conditional model needs one
/// (its default labels would change class at every image of a strip).
fn decode_class(
    model: &dyn crate::engine::models::GenerativeModel,
    class: Option<u32>,
) -> anyhow::Result<Option<u32>> {
    session::check_class(model, class)?;
    match (model.classes(), class) {
        (k @ 1.., None) => bail!("a conditional model needs --class (0 to {})", k - 1),
        _ => Ok(class),
    }
}

/// A checkpoint with the dataset it is explored on (converted to the model's shape).
struct Explorer {
    loaded: checkpoint::Loaded,
    data: Arc<Dataset>,
}

impl Explorer {
    fn open(dir: &Path, data: Option<&str>) -> anyhow::Result<Explorer> {
        let loaded = checkpoint::load(dir)?;
        let input = loaded.meta.config.model.input();
        let data = match data {
            Some(spec) => load_data(spec, &LoadArgs::default())?,
            None => load_checkpoint_data(&loaded.meta)?,
        };
        let data = if data.shape != input { Arc::new(data.converted_to(input)) } else { data };
        Ok(Explorer { loaded, data })
    }

    fn split(&self, kind: SplitKind) -> Vec<usize> {
        let t = &self.loaded.meta.config.train;
        self.data.split(t.test_fraction, t.seed).get(kind).to_vec()
    }

    fn encoding(&self, kind: SplitKind) -> anyhow::Result<crate::engine::session::Encoding> {
        let idx = self.split(kind);
        session::encode_indices(self.loaded.model.as_ref(), &self.data, &idx, kind)?
            .ok_or_else(|| anyhow!("a GAN has no encoder"))
    }

    /// μ of test image `i` (position within the test split).
    fn test_mu(&self, i: usize) -> anyhow::Result<Vec<f32>> {
        let test = self.split(SplitKind::Test);
        let &idx = test
            .get(i)
            .ok_or_else(|| anyhow!("test image {i} does not exist (the test split has {})", test.len()))?;
        let enc = session::encode_indices(self.loaded.model.as_ref(), &self.data, &[idx], SplitKind::Test)?
            .ok_or_else(|| anyhow!("a GAN has no encoder"))?;
        Ok(enc.mu)
    }
}

pub(super) fn traverse(a: TraverseArgs) -> anyhow::Result<()> {
    use crate::engine::{explore, export};
    export::check_target(&a.out, a.force)?;
    if a.steps < 2 || a.steps > 101 {
        bail!("--steps must be between 2 and 101");
    }
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let model = x.loaded.model.as_ref();
    let class = decode_class(model, a.class)?;
    let dim = model.latent_dim();
    let is_gan = !model.capabilities().encoder;
    let dims = match &a.dims {
        Some(d) => d.clone(),
        None if is_gan => (0..dim.min(8)).collect(),
        None => explore::dims_by_kl(&explore::kl_per_dim(&x.encoding(SplitKind::Test)?))
            .into_iter()
            .take(8)
            .collect(),
    };
    let base = match a.image {
        Some(i) => x.test_mu(i)?,
        None => vec![0.0; dim],
    };
    let values = explore::linspace(-a.range, a.range, a.steps);
    let grid = explore::traversal_class(model, &base, &dims, &values, class)?;
    let is_gif = a.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif"));
    if is_gif {
        // Frame k shows every dimension at values[k].
        let frames = export::traversal_frames(&grid, dims.len(), values.len());
        export::save_gif(&a.out, &frames, dims.len(), 120)?;
    } else {
        grid.save_grid_png(&a.out, values.len())?;
    }
    eprintln!(
        "wrote a traversal of dimensions {dims:?} over [{}, {}] to {}",
        -a.range,
        a.range,
        a.out.display()
    );
    Ok(())
}

pub(super) fn encode(a: EncodeArgs) -> anyhow::Result<()> {
    use crate::engine::export;
    export::check_target(&a.out, a.force)?;
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let kind = match a.split {
        SplitArg::Train => SplitKind::Train,
        SplitArg::Test => SplitKind::Test,
    };
    let enc = x.encoding(kind)?;
    export::save_encoding_csv(&a.out, &enc)?;
    eprintln!("wrote {} encodings ({} dimensions) to {}", enc.indices.len(), enc.dim, a.out.display());
    Ok(())
}

pub(super) fn interpolate(a: InterpolateArgs) -> anyhow::Result<()> {
    use crate::engine::{explore, export};
    export::check_target(&a.out, a.force)?;
    if a.steps < 2 || a.steps > 256 {
        bail!("--steps must be between 2 and 256");
    }
    let x = Explorer::open(&a.checkpoint, a.data.as_deref())?;
    let model = x.loaded.model.as_ref();
    let class = decode_class(model, a.class)?;
    let (za, zb) = if !model.capabilities().encoder {
        let dim = model.latent_dim();
        (explore::noise_vector(a.from as u64, dim), explore::noise_vector(a.to as u64, dim))
    } else {
        (x.test_mu(a.from)?, x.test_mu(a.to)?)
    };
    let strip = explore::interpolate_class(model, &za, &zb, a.steps, class)?;
    strip.save_grid_png(&a.out, a.steps)?;
    eprintln!("wrote {} steps from {} to {} to {}", a.steps, a.from, a.to, a.out.display());
    Ok(())
}
