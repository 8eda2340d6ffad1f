//! Building blocks: parameters drawn from a seeded generator, linear and (transposed)
//! convolution layers, batch norm, and the two network halves every model is made of:
//! [`Trunk`] (image → features) and [`Expand`] (latent → image logits).

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{Activation, Arch, NetConfig};
use crate::engine::data::ImageShape;
use crate::engine::kernels::{self, Epilogue, Exec};

/// Named trainable variables of one network (a GAN has two sets), on the device of its
/// [`Exec`], which every layer built from it computes with.
#[derive(Default)]
pub struct ParamSet {
    pub params: Vec<(String, Var)>,
    /// Where the fused layers of this network hand their parameter gradients
    /// ([`ParamSet::backward`] collects them).
    pub side: kernels::SideGrads,
    pub exec: Exec,
}

impl ParamSet {
    pub fn new(exec: Exec) -> Self {
        Self { exec, ..Self::default() }
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.params.iter().map(|(_, v)| v)
    }

    /// `loss.backward()` with the gradients the fused layers handed over added in.
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        self.side.clear();
        let mut grads = loss.backward()?;
        self.side.drain_into(self.vars(), &mut grads)?;
        Ok(grads)
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// A variable of `shape` with values drawn uniformly from ±`bound`.
    pub fn uniform(&mut self, name: String, shape: &[usize], bound: f64, rng: &mut StdRng) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect();
        self.push(name, Tensor::from_vec(vals, shape, &Device::Cpu)?)
    }

    /// A variable of `shape` filled with `value`.
    pub fn constant(&mut self, name: String, shape: &[usize], value: f32) -> Result<Tensor> {
        self.push(name, Tensor::full(value, shape, &Device::Cpu)?)
    }

    /// Values are drawn on the CPU, so a seed gives the same weights on every device.
    fn push(&mut self, name: String, t: Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(&self.exec.put(&t)?)?;
        let out = var.as_tensor().clone();
        self.params.push((name, var));
        Ok(out)
    }
}

/// Standard-normal noise of shape `[rows, cols]` from a seeded generator.
pub fn normal_tensor(rows: usize, cols: usize, scale: f32, rng: &mut StdRng) -> Result<Tensor> {
    let vals: Vec<f32> =
        (0..rows * cols).map(|_| scale * Distribution::<f32>::sample(&StandardNormal, rng)).collect();
    Tensor::from_vec(vals, (rows, cols), &Device::Cpu)
}

impl Activation {
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu => candle_nn::ops::leaky_relu(x, kernels::LEAKY_SLOPE as f64),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu_erf(),
            Activation::Silu => x.silu(),
        }
    }
}

/// The epilogue for `act` (`None`: no activation), or `None` when it cannot be fused.
fn fusable(act: Option<Activation>) -> Option<Epilogue> {
    match act {
        None => Some(Epilogue::Identity),
        Some(Activation::Relu) => Some(Epilogue::Relu),
        Some(Activation::LeakyRelu) => Some(Epilogue::LeakyRelu),
        Some(Activation::Tanh) => Some(Epilogue::Tanh),
        Some(Activation::Gelu | Activation::Silu) => None,
    }
}

/// `y = x Wᵀ + b`, PyTorch's layout and default initialisation (U(±1/√fan_in)).
pub struct Linear {
    w: Tensor,
    b: Tensor,
    sink: kernels::SideGrads,
    exec: Exec,
}

impl Linear {
    pub fn new(
        ps: &mut ParamSet,
        name: &str,
        fan_in: usize,
        fan_out: usize,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let w = ps.uniform(format!("{name}.weight"), &[fan_out, fan_in], bound, rng)?;
        let b = ps.uniform(format!("{name}.bias"), &[fan_out], bound, rng)?;
        Ok(Self { w, b, sink: ps.side.clone(), exec: ps.exec.clone() })
    }

    /// `[B, in] → [B, out]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, None)
    }

    /// `[B, in] → [B, out]` followed by `act`: one op ([`Exec::linear`]) where the activation
    /// allows it.
    pub fn forward_act(&self, x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        match fusable(act) {
            Some(epilogue) => self.exec.linear(x, &self.w, &self.b, epilogue, &self.sink),
            None => {
                let h = x.matmul(&self.w.t()?)?.broadcast_add(&self.b)?;
                match act {
                    Some(act) => act.apply(&h),
                    None => Ok(h),
                }
            }
        }
    }
}

impl Linear {
    /// This layer's parameters computed with `exec`'s ops: a view that shares the variables
    /// (gradients from either land on the same parameters).
    pub fn on(&self, exec: &Exec) -> Self {
        Self { w: self.w.clone(), b: self.b.clone(), sink: self.sink.clone(), exec: exec.clone() }
    }

    /// `[B, in] → [B, out]` pixel values `σ(x Wᵀ + b)`.
    pub fn forward_sigmoid(&self, x: &Tensor) -> Result<Tensor> {
        self.exec.linear(x, &self.w, &self.b, Epilogue::Sigmoid, &self.sink)
    }
}

/// The ε of batch normalisation (PyTorch's default).
const EPS: f64 = 1e-5;

/// Batch normalisation over (N, H, W) per channel, with running statistics for evaluation.
pub struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
    running: Mutex<(Tensor, Tensor)>,
    exec: Exec,
}

impl BatchNorm {
    pub fn new(ps: &mut ParamSet, name: &str, channels: usize) -> Result<Self> {
        let gamma = ps.constant(format!("{name}.weight"), &[1, channels, 1, 1], 1.0)?;
        let beta = ps.constant(format!("{name}.bias"), &[1, channels, 1, 1], 0.0)?;
        let mean = Tensor::zeros((1, channels, 1, 1), DType::F32, ps.exec.device())?;
        let var = Tensor::ones((1, channels, 1, 1), DType::F32, ps.exec.device())?;
        Ok(Self { gamma, beta, running: Mutex::new((mean, var)), exec: ps.exec.clone() })
    }

    /// `[B, C, H, W] → [B, C, H, W]`; batch statistics when training (and the running ones are
    /// updated with momentum 0.1), running statistics otherwise.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, None)
    }

    /// [`BatchNorm::forward`] then `act`; in training one op ([`Exec::batch_norm_act`]) where
    /// the activation allows it.
    pub fn forward_act(&self, x: &Tensor, train: bool, act: Option<Activation>) -> Result<Tensor> {
        if let (true, Some(epilogue)) = (train, fusable(act)) {
            let (y, mean, var) =
                self.exec.batch_norm_act(x, &self.gamma, &self.beta, EPS as f32, epilogue)?;
            let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            r.0 = ((&r.0 * 0.9)? + (mean * 0.1)?)?;
            r.1 = ((&r.1 * 0.9)? + (var * 0.1)?)?;
            return Ok(y);
        }
        let (mean, var) = if train {
            let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            r.0 = ((&r.0 * 0.9)? + (mean.detach() * 0.1)?)?;
            r.1 = ((&r.1 * 0.9)? + (var.detach() * 0.1)?)?;
            (mean, var)
        } else {
            self.running.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let xhat = x.broadcast_sub(&mean)?.broadcast_div(&(var + EPS)?.sqrt()?)?;
        let y = xhat.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)?;
        match act {
            Some(act) => act.apply(&y),
            None => Ok(y),
        }
    }

    pub fn running_stats(&self) -> (Tensor, Tensor) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the running statistics (from a checkpoint, on any device).
    pub fn set_running_stats(&self, mean: Tensor, var: Tensor) -> Result<()> {
        let (mean, var) = (self.exec.put(&mean)?, self.exec.put(&var)?);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = (mean, var);
        Ok(())
    }
}

/// A 4×4, stride-2, padding-1 convolution (halves H and W), optionally batch-normalised.
pub struct ConvDown {
    w: Tensor,
    b: Tensor,
    bn: Option<BatchNorm>,
    sink: kernels::SideGrads,
    exec: Exec,
}

/// A 4×4, stride-2, padding-1 transposed convolution (doubles H and W).
pub struct ConvUp {
    w: Tensor,
    b: Tensor,
    bn: Option<BatchNorm>,
    sink: kernels::SideGrads,
    exec: Exec,
}

impl ConvDown {
    fn new(
        ps: &mut ParamSet,
        name: &str,
        cin: usize,
        cout: usize,
        bn: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * 16) as f64).sqrt();
        let w = ps.uniform(format!("{name}.weight"), &[cout, cin, 4, 4], bound, rng)?;
        let b = ps.uniform(format!("{name}.bias"), &[cout], bound, rng)?;
        let bn = if bn { Some(BatchNorm::new(ps, &format!("{name}.bn"), cout)?) } else { None };
        Ok(Self { w, b, bn, sink: ps.side.clone(), exec: ps.exec.clone() })
    }

    /// `[B, Cin, H, W] → [B, Cout, H/2, W/2]`, then batch norm and `act`.
    fn forward(&self, x: &Tensor, train: bool, act: Option<Activation>) -> Result<Tensor> {
        conv_block(x, train, act, self.bn.as_ref(), |x, e| {
            self.exec.conv2d_act(x, &self.w, &self.b, GEOM, e, &self.sink)
        })
    }
}

impl ConvDown {
    /// See [`Linear::on`]; a layer with batch norm is refused (its running statistics would be
    /// updated by both views).
    fn on(&self, exec: &Exec) -> Result<Self> {
        if self.bn.is_some() {
            return Err(candle_core::Error::Msg("a second view of a batch-normalised layer".into()));
        }
        Ok(Self {
            w: self.w.clone(),
            b: self.b.clone(),
            bn: None,
            sink: self.sink.clone(),
            exec: exec.clone(),
        })
    }
}

impl ConvUp {
    fn new(
        ps: &mut ParamSet,
        name: &str,
        cin: usize,
        cout: usize,
        bn: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        // PyTorch computes a transposed conv's fan-in from the weight's second dimension.
        let bound = 1.0 / ((cout * 16) as f64).sqrt();
        let w = ps.uniform(format!("{name}.weight"), &[cin, cout, 4, 4], bound, rng)?;
        let b = ps.uniform(format!("{name}.bias"), &[cout], bound, rng)?;
        let bn = if bn { Some(BatchNorm::new(ps, &format!("{name}.bn"), cout)?) } else { None };
        Ok(Self { w, b, bn, sink: ps.side.clone(), exec: ps.exec.clone() })
    }

    /// `[B, Cin, H, W] → [B, Cout, 2H, 2W]`, then batch norm and `act`.
    fn forward(&self, x: &Tensor, train: bool, act: Option<Activation>) -> Result<Tensor> {
        conv_block(x, train, act, self.bn.as_ref(), |x, e| {
            self.exec.conv_transpose2d_act(x, &self.w, &self.b, GEOM, e, &self.sink)
        })
    }
}

/// Every conv layer here: 4×4 kernels, stride 2, padding 1.
const GEOM: kernels::Geometry = kernels::Geometry { kernel: 4, stride: 2, pad: 1 };

/// A convolution with its bias (`conv(x, epilogue)`), then batch norm and `act`. The activation
/// is part of the convolution's op when nothing comes between them and it can be.
fn conv_block(
    x: &Tensor,
    train: bool,
    act: Option<Activation>,
    bn: Option<&BatchNorm>,
    conv: impl Fn(&Tensor, Epilogue) -> Result<Tensor>,
) -> Result<Tensor> {
    let (epilogue, rest) = match (bn, fusable(act)) {
        (None, Some(e)) => (e, None),
        _ => (Epilogue::Identity, act),
    };
    let y = conv(x, epilogue)?;
    match (bn, rest) {
        (Some(bn), act) => bn.forward_act(&y, train, act),
        (None, Some(act)) => act.apply(&y),
        (None, None) => Ok(y),
    }
}

/// Image → features: an MLP (flattened pixels through hidden widths) or a stack of stride-2
/// convolutions (flattened at the end).
pub enum Trunk {
    Mlp { layers: Vec<Linear>, act: Activation },
    Conv { input: ImageShape, layers: Vec<ConvDown>, act: Activation },
}

impl Trunk {
    /// `batch_norm` applies to every conv layer but the first (DCGAN's discriminator).
    pub fn new(
        ps: &mut ParamSet,
        prefix: &str,
        cfg: &NetConfig,
        widths: &[usize],
        batch_norm: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let input = cfg.input;
        Ok(match cfg.arch {
            Arch::Mlp => {
                let mut layers = Vec::new();
                let mut fan_in = input.len();
                for (i, &w) in widths.iter().enumerate() {
                    layers.push(Linear::new(ps, &format!("{prefix}.fc{i}"), fan_in, w, rng)?);
                    fan_in = w;
                }
                Trunk::Mlp { layers, act: cfg.activation }
            }
            Arch::Conv => {
                let mut layers = Vec::new();
                let mut cin = input.channels;
                for (i, &c) in widths.iter().enumerate() {
                    let bn = batch_norm && i > 0;
                    layers.push(ConvDown::new(ps, &format!("{prefix}.conv{i}"), cin, c, bn, rng)?);
                    cin = c;
                }
                Trunk::Conv { input, layers, act: cfg.activation }
            }
        })
    }

    /// Size of the feature vector for an input of `input` through `widths`.
    pub fn out_dim(arch: Arch, input: ImageShape, widths: &[usize]) -> usize {
        match (arch, widths.last()) {
            (_, None) => input.len(),
            (Arch::Mlp, Some(&w)) => w,
            (Arch::Conv, Some(&c)) => {
                let s = 1 << widths.len();
                c * (input.height / s) * (input.width / s)
            }
        }
    }

    /// `[B, C·H·W] → [B, features]`
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Trunk::Mlp { layers, act } => {
                let mut h = x.clone();
                for l in layers {
                    h = l.forward_act(&h, Some(*act))?;
                }
                Ok(h)
            }
            Trunk::Conv { input, layers, act } => {
                let b = x.dim(0)?;
                let mut h = x.reshape((b, input.channels, input.height, input.width))?; // [B, C, H, W]
                for l in layers {
                    h = l.forward(&h, train, Some(*act))?;
                }
                h.flatten_from(1) // [B, C_last · H/2ᵏ · W/2ᵏ]
            }
        }
    }

    /// The same network computed with `exec`'s ops, sharing its parameters (see
    /// [`Linear::on`]); refused for a conv trunk with batch norm.
    pub fn on(&self, exec: &Exec) -> Result<Self> {
        Ok(match self {
            Trunk::Mlp { layers, act } => {
                Trunk::Mlp { layers: layers.iter().map(|l| l.on(exec)).collect(), act: *act }
            }
            Trunk::Conv { input, layers, act } => Trunk::Conv {
                input: *input,
                layers: layers.iter().map(|l| l.on(exec)).collect::<Result<_>>()?,
                act: *act,
            },
        })
    }

    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        match self {
            Trunk::Mlp { .. } => Vec::new(),
            Trunk::Conv { layers, .. } => layers.iter().filter_map(|l| l.bn.as_ref()).collect(),
        }
    }
}

/// What an [`Expand`]'s output layer ends in.
#[derive(Clone, Copy)]
enum Output {
    Logits,
    Sigmoid,
    Tanh,
}

/// Latent → image logits: an MLP (hidden widths, then the pixels) or a linear layer to the
/// smallest feature map followed by stride-2 transposed convolutions.
pub enum Expand {
    Mlp { layers: Vec<Linear>, act: Activation },
    Conv { fc: Linear, fc_bn: Option<BatchNorm>, start: ImageShape, layers: Vec<ConvUp>, act: Activation },
}

impl Expand {
    /// `widths` are the hidden widths (MLP) or channels (conv) from the latent side outwards;
    /// the last layer always produces the image. `batch_norm` normalises every layer but the
    /// last (DCGAN's generator).
    pub fn new(
        ps: &mut ParamSet,
        prefix: &str,
        cfg: &NetConfig,
        latent: usize,
        widths: &[usize],
        batch_norm: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let out = cfg.input;
        Ok(match cfg.arch {
            Arch::Mlp => {
                let mut layers = Vec::new();
                let mut fan_in = latent;
                for (i, &w) in widths.iter().chain(std::iter::once(&out.len())).enumerate() {
                    layers.push(Linear::new(ps, &format!("{prefix}.fc{i}"), fan_in, w, rng)?);
                    fan_in = w;
                }
                Expand::Mlp { layers, act: cfg.activation }
            }
            Arch::Conv => {
                let s = 1 << widths.len();
                let c0 = widths.first().copied().unwrap_or(out.channels);
                let start = ImageShape::new(c0, out.height / s, out.width / s);
                let fc = Linear::new(ps, &format!("{prefix}.fc"), latent, start.len(), rng)?;
                let fc_bn =
                    if batch_norm { Some(BatchNorm::new(ps, &format!("{prefix}.fc_bn"), c0)?) } else { None };
                let mut layers = Vec::new();
                let outs: Vec<usize> =
                    widths.iter().skip(1).copied().chain(std::iter::once(out.channels)).collect();
                let mut cin = c0;
                for (i, &c) in outs.iter().enumerate() {
                    let bn = batch_norm && i + 1 < outs.len();
                    layers.push(ConvUp::new(ps, &format!("{prefix}.deconv{i}"), cin, c, bn, rng)?);
                    cin = c;
                }
                Expand::Conv { fc, fc_bn, start, layers, act: cfg.activation }
            }
        })
    }

    /// `[B, latent] → [B, C·H·W]` logits (apply a sigmoid for pixel values).
    pub fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_out(z, train, Output::Logits)
    }

    /// `[B, latent] → [B, C·H·W]` pixel values in (0, 1): the sigmoid of
    /// [`Expand::forward`], fused into an MLP's output layer.
    pub fn forward_pixels(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_out(z, train, Output::Sigmoid)
    }

    /// `[B, latent] → [B, C·H·W]` values in (−1, 1): the tanh of [`Expand::forward`], fused
    /// into the output layer (a GAN's generator on data scaled to [−1, 1]).
    pub fn forward_tanh(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_out(z, train, Output::Tanh)
    }

    fn forward_out(&self, z: &Tensor, train: bool, out: Output) -> Result<Tensor> {
        match self {
            Expand::Mlp { layers, act } => Self::forward_mlp(layers, *act, z, out),
            Expand::Conv { fc, fc_bn, start, layers, act } => {
                let b = z.dim(0)?;
                let shape = (b, start.channels, start.height, start.width); // [B, C0, H/2ᵏ, W/2ᵏ]
                let mut h = match fc_bn {
                    Some(bn) => bn.forward_act(&fc.forward(z)?.reshape(shape)?, train, Some(*act))?,
                    None => fc.forward_act(z, Some(*act))?.reshape(shape)?,
                };
                // The sigmoid stays candle's own op after the last conv, as it always was.
                let last_act = match out {
                    Output::Tanh => Some(Activation::Tanh),
                    Output::Logits | Output::Sigmoid => None,
                };
                let last = layers.len() - 1;
                for (i, l) in layers.iter().enumerate() {
                    h = l.forward(&h, train, if i < last { Some(*act) } else { last_act })?;
                }
                let h = h.flatten_from(1)?; // [B, C·H·W]
                match out {
                    Output::Sigmoid => candle_nn::ops::sigmoid(&h),
                    Output::Logits | Output::Tanh => Ok(h),
                }
            }
        }
    }

    /// An MLP's layers with `act` between them, and `out` on the output layer.
    fn forward_mlp(layers: &[Linear], act: Activation, z: &Tensor, out: Output) -> Result<Tensor> {
        let mut h = z.clone();
        let last = layers.len() - 1;
        for (i, l) in layers.iter().enumerate() {
            h = match (i < last, out) {
                (true, _) => l.forward_act(&h, Some(act))?,
                (false, Output::Sigmoid) => l.forward_sigmoid(&h)?,
                (false, Output::Tanh) => l.forward_act(&h, Some(Activation::Tanh))?,
                (false, Output::Logits) => l.forward_act(&h, None)?,
            };
        }
        Ok(h)
    }

    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        match self {
            Expand::Mlp { .. } => Vec::new(),
            Expand::Conv { fc_bn, layers, .. } => {
                fc_bn.iter().chain(layers.iter().filter_map(|l| l.bn.as_ref())).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::engine::models::{Arch, NetConfig};

    /// The fused sigmoid output of an MLP generator equals the stock sigmoid of its logits, in
    /// value and in the gradients it sends back to the weights and the latent.
    #[test]
    fn pixels_equal_the_sigmoid_of_the_logits() {
        let cfg = NetConfig { arch: Arch::Mlp, ..NetConfig::default() };
        let mut rng = StdRng::seed_from_u64(3);
        let mut ps = ParamSet::default();
        let net = Expand::new(&mut ps, "g", &cfg, 10, &[64, 128], false, &mut rng).expect("net");
        let z = Var::from_tensor(&normal_tensor(9, 10, 1.0, &mut rng).expect("z")).expect("var");
        let up = normal_tensor(9, cfg.input.len(), 1.0, &mut rng).expect("up");
        let grads_of =
            |y: &Tensor| ps.backward(&(y * &up).and_then(|t| t.sum_all()).expect("loss")).expect("grads");
        let fused = net.forward_pixels(z.as_tensor(), true).expect("fused");
        let g1 = grads_of(&fused);
        let stock = candle_nn::ops::sigmoid(&net.forward(z.as_tensor(), true).expect("logits")).expect("σ");
        let g2 = grads_of(&stock);
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b).and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar()).expect("diff")
        };
        assert!(max_diff(&fused, &stock) < 1e-6);
        for t in ps.vars().map(|v| v.as_tensor()).chain([z.as_tensor()]) {
            let (a, b) = (g1.get(t).expect("fused grad"), g2.get(t).expect("stock grad"));
            assert!(max_diff(a, b) < 1e-5, "gradient of a {:?} tensor", t.dims());
        }
    }
}
