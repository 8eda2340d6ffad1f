//! The feature space sample quality is measured in. Inception weights cannot be downloaded
//! here, so genlab makes its own: for labelled data a small classifier (two stride-2 convs, a
//! 128-wide hidden layer, the class logits) trained on the dataset's labels, whose hidden layer
//! is the feature vector and whose softmax judges what a sample shows; for unlabelled data the
//! same network with fixed random weights, whose features still rank generators well (Naeem et
//! al., "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020, §4.2: an
//! untrained network's embedding tracks fidelity and diversity on data unlike ImageNet).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::engine::data::{Dataset, ImageShape};
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;
use crate::engine::models::layers::{Linear, ParamSet, Trunk};
use crate::engine::models::optim::{Adam, AdamConfig};
use crate::engine::models::{Activation, Arch, NetConfig};

/// Width of the feature vector.
pub const FEATURE_DIM: usize = 128;
/// Channels of the two stride-2 convolutions.
const CONVS: [usize; 2] = [32, 64];

/// What the features come from.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureKind {
    /// A classifier genlab trained on the dataset's labels, with its accuracy on the test split.
    Classifier { classes: usize, test_accuracy: f64 },
    /// Fixed random weights drawn from `seed`.
    Random { seed: u64 },
}

/// Features (and, for a classifier, class probabilities) of a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// `n × FEATURE_DIM`, row-major.
    pub features: Vec<f32>,
    /// `n × classes`, row-major (classifier only).
    pub probs: Option<Vec<f32>>,
    pub n: usize,
}

/// The network that maps images to features.
pub struct FeatureNet {
    pub kind: FeatureKind,
    /// The image shape it reads (the data's, or the nearest one its convolutions divide).
    pub input: ImageShape,
    params: ParamSet,
    trunk: Trunk,
    hidden: Linear,
    head: Option<Linear>,
}

/// The shape the network reads for images of `shape`: height and width rounded down to
/// multiples of 4 (its two stride-2 convolutions), at least 8.
pub fn feature_input(shape: ImageShape) -> ImageShape {
    let side = |n: usize| (n / 4 * 4).max(8);
    ImageShape::new(shape.channels, side(shape.height), side(shape.width))
}

impl FeatureNet {
    fn build(input: ImageShape, classes: Option<usize>, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ps = ParamSet::new(Exec::cpu());
        let net = NetConfig {
            arch: Arch::Conv,
            input,
            hidden: CONVS.to_vec(),
            latent_dim: FEATURE_DIM,
            activation: Activation::Relu,
            classes: 0,
        };
        let trunk = Trunk::new(&mut ps, "features", &net, &CONVS, false, &mut rng)?;
        let feat = Trunk::out_dim(Arch::Conv, input, &CONVS);
        let hidden = Linear::new(&mut ps, "features.hidden", feat, FEATURE_DIM, &mut rng)?;
        let head = match classes {
            Some(c) => Some(Linear::new(&mut ps, "features.head", FEATURE_DIM, c, &mut rng)?),
            None => None,
        };
        let kind = match classes {
            Some(classes) => FeatureKind::Classifier { classes, test_accuracy: 0.0 },
            None => FeatureKind::Random { seed },
        };
        Ok(Self { kind, input, params: ps, trunk, hidden, head })
    }

    /// The random-feature network for images of `shape`. Its weights are He-scaled (√6
    /// times the default U(±1/√fan_in) bound, variance 2/fan_in) so that the ReLU layers keep
    /// the activations' scale instead of shrinking them sixfold each.
    pub fn random(shape: ImageShape, seed: u64) -> Result<Self> {
        let net = Self::build(feature_input(shape), None, seed)?;
        for (name, var) in &net.params.params {
            if name.ends_with(".weight") {
                var.set(&(var.as_tensor() * 6f64.sqrt())?)?;
            }
        }
        Ok(net)
    }

    /// Trains a classifier on the labelled images at `train`, then measures its accuracy on
    /// `test`. `data` must already have the network's input shape ([`feature_input`]).
    pub fn train_classifier(
        data: &Dataset,
        train: &[usize],
        test: &[usize],
        epochs: usize,
        seed: u64,
    ) -> Result<Self> {
        let labels = data.labels.as_ref().ok_or_else(|| {
            EngineError::Config(format!("{} has no labels to train a classifier on", data.name))
        })?;
        let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        if classes < 2 || train.is_empty() {
            return Err(EngineError::Config(format!(
                "{}: a classifier needs two classes and training images",
                data.name
            )));
        }
        if data.shape != feature_input(data.shape) {
            return Err(EngineError::Config(format!(
                "a feature network reads {}, not {}",
                feature_input(data.shape),
                data.shape
            )));
        }
        let mut net = Self::build(data.shape, Some(classes), seed)?;
        let mut adam = Adam::new(AdamConfig::default(), &net.params)?;
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc1a5);
        let mut order = train.to_vec();
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            for idx in order.chunks(128) {
                let x = images(data, idx)?;
                let logits = net.logits(&x, true)?;
                let loss = cross_entropy(&logits, idx.iter().map(|&i| labels[i] as usize), classes)?;
                let grads = net.params.backward(&loss)?;
                adam.step(&net.params, &grads)?;
            }
        }
        let accuracy = net.accuracy(data, test)?;
        net.kind = FeatureKind::Classifier { classes, test_accuracy: accuracy };
        Ok(net)
    }

    /// The share of the images at `idx` whose most probable class is their label.
    pub fn accuracy(&self, data: &Dataset, idx: &[usize]) -> Result<f64> {
        let Some(labels) = &data.labels else { return Ok(0.0) };
        let e = self.embed(&data.gather(idx))?;
        let (Some(probs), FeatureKind::Classifier { classes, .. }) = (&e.probs, &self.kind) else {
            return Ok(0.0);
        };
        let right =
            idx.iter().zip(probs.chunks(*classes)).filter(|(&i, p)| argmax(p) == labels[i] as usize).count();
        Ok(right as f64 / idx.len().max(1) as f64)
    }

    /// `[B, C·H·W]` → the hidden features `[B, FEATURE_DIM]`.
    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.hidden.forward_act(&self.trunk.forward(x, train)?, Some(Activation::Relu))?)
    }

    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.features(x, train)?;
        match &self.head {
            Some(h) => Ok(h.forward(&f)?),
            None => Ok(f),
        }
    }

    /// Features (and class probabilities) of images of the network's input shape, row-major.
    pub fn embed(&self, pixels: &[f32]) -> Result<Embedding> {
        let d = self.input.len();
        if d == 0 || !pixels.len().is_multiple_of(d) {
            return Err(EngineError::Other(format!(
                "{} values are not whole images of {}",
                pixels.len(),
                self.input
            )));
        }
        let n = pixels.len() / d;
        let mut features = Vec::with_capacity(n * FEATURE_DIM);
        let mut probs = self.head.as_ref().map(|_| Vec::new());
        for chunk in pixels.chunks(256 * d) {
            let x = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
            let f = self.features(&x, false)?;
            if let (Some(head), Some(p)) = (&self.head, probs.as_mut()) {
                let sm = candle_nn::ops::softmax_last_dim(&head.forward(&f)?)?;
                p.extend(sm.flatten_all()?.to_vec1::<f32>()?);
            }
            features.extend(f.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Embedding { features, probs, n })
    }

    /// Number of classes (0 for random features).
    pub fn classes(&self) -> usize {
        match self.kind {
            FeatureKind::Classifier { classes, .. } => classes,
            FeatureKind::Random { .. } => 0,
        }
    }

    /// One line for the user: what the features are.
    pub fn describe(&self) -> String {
        match self.kind {
            FeatureKind::Classifier { classes, test_accuracy } => format!(
                "features of a {classes}-class classifier genlab trained on the data's labels ({:.1}% test accuracy)",
                100.0 * test_accuracy
            ),
            FeatureKind::Random { seed } => format!(
                "features of a fixed random network (seed {seed}): the data has no labels to train a classifier on"
            ),
        }
    }

    /// The weights and what they are, as named tensors.
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for (name, var) in &self.params.params {
            out.insert(name.clone(), var.as_tensor().copy()?);
        }
        let (classes, acc) = match self.kind {
            FeatureKind::Classifier { classes, test_accuracy } => (classes as f32, test_accuracy as f32),
            FeatureKind::Random { .. } => (0.0, 0.0),
        };
        let s = self.input;
        let meta = [classes, acc, s.channels as f32, s.height as f32, s.width as f32];
        out.insert("meta".into(), Tensor::new(&meta[..], &Device::Cpu)?);
        Ok(out)
    }

    /// Saves a classifier (safetensors).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes =
            safetensors::serialize(self.state()?.iter().map(|(k, v)| (k.clone(), TensorView(v))), None)
                .map_err(|e| EngineError::Other(format!("cannot serialise the classifier: {e}")))?;
        crate::engine::fsio::write_atomic(path, &bytes).map_err(|e| EngineError::io(path, e))
    }

    /// Loads what [`FeatureNet::save`] wrote; `path` names the file in errors.
    pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad =
            |why: String| EngineError::Other(format!("{}: not a genlab classifier ({why})", path.display()));
        let tensors =
            candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        let meta = tensors.get("meta").ok_or_else(|| bad("no `meta` tensor".into()))?;
        let m = meta.to_vec1::<f32>().map_err(|e| bad(e.to_string()))?;
        let &[classes, acc, c, h, w] = &m[..] else {
            return Err(bad(format!("`meta` has {} values", m.len())));
        };
        let input = ImageShape::new(c as usize, h as usize, w as usize);
        if input.is_empty() || input.len() > 1 << 24 || !(2.0..=10_000.0).contains(&classes) {
            return Err(bad(format!("meta {m:?}")));
        }
        let mut net = Self::build(input, Some(classes as usize), 0)?;
        for (name, var) in &net.params.params {
            let t = tensors.get(name).ok_or_else(|| bad(format!("`{name}` is missing")))?;
            if t.shape() != var.shape() {
                return Err(bad(format!("`{name}` has shape {:?}, expected {:?}", t.dims(), var.dims())));
            }
            var.set(t)?;
        }
        net.kind = FeatureKind::Classifier { classes: classes as usize, test_accuracy: acc as f64 };
        Ok(net)
    }
}

/// A candle tensor as a safetensors view (f32, CPU).
struct TensorView<'a>(&'a Tensor);

impl safetensors::View for TensorView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.0.dims()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let v: Vec<f32> = self.0.flatten_all().and_then(|t| t.to_vec1()).unwrap_or_default();
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.0.elem_count() * 4
    }
}

/// The mean cross-entropy of `logits [B, C]` against the labels: −Σ onehot · log softmax,
/// written with a one-hot product (candle's gather-based loss needs a contiguous gradient in
/// its backward pass, which a fused layer's output does not promise).
fn cross_entropy(logits: &Tensor, labels: impl Iterator<Item = usize>, classes: usize) -> Result<Tensor> {
    let b = logits.dim(0)?;
    let mut onehot = vec![0f32; b * classes];
    for (row, l) in labels.enumerate() {
        if let Some(v) = onehot.get_mut(row * classes + l) {
            *v = 1.0;
        }
    }
    let onehot = Tensor::from_vec(onehot, (b, classes), &Device::Cpu)?;
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    Ok((logp * onehot)?.sum(1)?.mean(0)?.neg()?)
}

/// The images at `idx` as a `[n, D]` CPU tensor.
fn images(data: &Dataset, idx: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(data.gather(idx), (idx.len(), data.shape.len()), &Device::Cpu)?)
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) })
        .0
}
