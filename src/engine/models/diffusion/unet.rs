//! The pixel-space denoiser: a small U-Net (Ronneberger et al. 2015, as used by DDPM) with a
//! sinusoidal time embedding through an MLP, residual blocks (group norm, SiLU, 3×3 convs, the
//! time added between the convs), stride-2 3×3 convolutions down, nearest-neighbour ×2 and a
//! 3×3 convolution up, and skip connections concatenated on the way up. It has no layer over
//! all the pixels, so it takes any image whose sides the down-sampling divides.
//!
//! Levels with base channels `b` and `levels = [c₁, …, c_k]`:
//! ```text
//! x [B,C,H,W] → conv_in → res(b→b) ─────────────────────────────── s₀ ──┐
//!   → down → res(b→c₁) ─────────────────────────────── s₁ ──┐           │
//!   → …  → down → res(c_{k−1}→c_k) ── s_k ─┐                │           │
//!   → mid res(c_k→c_k) → cat s_k → res(2c_k→c_k) → up(c_k→c_{k−1}) → cat s_{k−1} → … → up(c₁→b)
//!   → cat s₀ → res(2b→b) → GN → SiLU → conv_out → [B,C,H,W]
//! ```
//! Weights live in the family's [`ParamSet`]; the convolutions go through [`Exec`] like every
//! other conv layer (the fused CPU op or candle's stock one).

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;

use crate::engine::data::ImageShape;
use crate::engine::error::Result;
use crate::engine::kernels::{Epilogue, Exec, Geometry, SideGrads};
use crate::engine::models::layers::{Linear, ParamSet};
use crate::engine::models::Activation;

/// Sinusoidal features of the time before the time MLP.
pub(crate) const SINUSOID_DIM: usize = 32;
/// The time is scaled to [0, 1000] before its sinusoids (DDPM's integer timesteps).
const TIME_SCALE: f64 = 1000.0;
/// At most this many groups per group norm (fewer when the channels do not divide).
const MAX_GROUPS: usize = 8;
const GN_EPS: f32 = 1e-5;

/// What decides the U-Net's layers.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetShape {
    pub input: ImageShape,
    /// Channels at full resolution.
    pub base: usize,
    /// Channels after each stride-2 down-sampling.
    pub levels: Vec<usize>,
    /// Width of the time embedding.
    pub time_dim: usize,
    /// Class labels of a class-conditional denoiser (0: unconditional).
    pub classes: usize,
    /// The fewest channels a group-norm group may have (see [`groups`]).
    pub group_channels: usize,
}

const K3: Geometry = Geometry { kernel: 3, stride: 1, pad: 1 };
const K3S2: Geometry = Geometry { kernel: 3, stride: 2, pad: 1 };
const K1: Geometry = Geometry { kernel: 1, stride: 1, pad: 0 };

/// Groups for `c` channels: the most, up to [`MAX_GROUPS`], that divide `c` and leave at
/// least `per_group` channels in each (1 group when none does).
pub fn groups(c: usize, per_group: usize) -> usize {
    (1..=MAX_GROUPS.min(c)).rev().find(|g| c.is_multiple_of(*g) && c / g >= per_group).unwrap_or(1)
}

struct Conv {
    w: Tensor,
    b: Tensor,
    geom: Geometry,
    sink: SideGrads,
    exec: Exec,
}

impl Conv {
    /// PyTorch's default initialisation (U(±1/√fan_in)); `zero` starts the weights at 0 (the
    /// output layer, so an untrained denoiser predicts 0).
    fn new(
        ps: &mut ParamSet,
        name: &str,
        cin: usize,
        cout: usize,
        geom: Geometry,
        zero: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let k = geom.kernel;
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let w = if zero {
            ps.constant(format!("{name}.weight"), &[cout, cin, k, k], 0.0)?
        } else {
            ps.uniform(format!("{name}.weight"), &[cout, cin, k, k], bound, rng)?
        };
        let b = if zero {
            ps.constant(format!("{name}.bias"), &[cout], 0.0)?
        } else {
            ps.uniform(format!("{name}.bias"), &[cout], bound, rng)?
        };
        Ok(Self { w, b, geom, sink: ps.side.clone(), exec: ps.exec.clone() })
    }

    /// `[B, Cin, H, W] → [B, Cout, H', W']`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.exec.conv2d_act(x, &self.w, &self.b, self.geom, Epilogue::Identity, &self.sink)?)
    }
}

struct GroupNorm {
    gamma: Tensor,
    beta: Tensor,
    groups: usize,
    exec: Exec,
}

impl GroupNorm {
    fn new(ps: &mut ParamSet, name: &str, c: usize, per_group: usize) -> Result<Self> {
        let gamma = ps.constant(format!("{name}.weight"), &[1, c, 1, 1], 1.0)?;
        let beta = ps.constant(format!("{name}.bias"), &[1, c, 1, 1], 0.0)?;
        Ok(Self { gamma, beta, groups: groups(c, per_group), exec: ps.exec.clone() })
    }

    /// `[B, C, H, W] → [B, C, H, W]` normalised per image and group, then SiLU.
    fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.exec.group_norm_silu(x, &self.gamma, &self.beta, self.groups, GN_EPS)?)
    }
}

/// GN → SiLU → conv → + time → GN → SiLU → conv, plus the input (1×1 conv when the channels
/// change).
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn new(
        ps: &mut ParamSet,
        name: &str,
        cin: usize,
        cout: usize,
        time_dim: usize,
        per_group: usize,
        rng: &mut StdRng,
    ) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(ps, &format!("{name}.norm1"), cin, per_group)?,
            conv1: Conv::new(ps, &format!("{name}.conv1"), cin, cout, K3, false, rng)?,
            time: Linear::new(ps, &format!("{name}.time"), time_dim, cout, rng)?,
            norm2: GroupNorm::new(ps, &format!("{name}.norm2"), cout, per_group)?,
            conv2: Conv::new(ps, &format!("{name}.conv2"), cout, cout, K3, false, rng)?,
            skip: if cin != cout {
                Some(Conv::new(ps, &format!("{name}.skip"), cin, cout, K1, false, rng)?)
            } else {
                None
            },
        })
    }

    /// `x: [B, Cin, H, W]`, `temb: [B, time_dim]` (already through SiLU) → `[B, Cout, H, W]`
    fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let t = self.time.forward(temb)?.unsqueeze(2)?.unsqueeze(3)?; // [B, Cout, 1, 1]
        let h = self.conv2.forward(&self.norm2.forward_silu(&h.broadcast_add(&t)?)?)?;
        let skip = match &self.skip {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok((h + skip)?)
    }

    fn params(cin: usize, cout: usize, time_dim: usize) -> u64 {
        let (cin, cout, td) = (cin as u64, cout as u64, time_dim as u64);
        let skip = if cin != cout { cin * cout + cout } else { 0 };
        2 * cin + 9 * cin * cout + cout + td * cout + cout + 2 * cout + 9 * cout * cout + cout + skip
    }

    fn macs(cin: usize, cout: usize, time_dim: usize, pixels: usize) -> u64 {
        let (cin, cout, hw) = (cin as u64, cout as u64, pixels as u64);
        let skip = if cin != cout { cin * cout * hw } else { 0 };
        9 * cin * cout * hw + 9 * cout * cout * hw + skip + time_dim as u64 * cout
    }
}

/// The denoiser: `(x_t, t, class) → ε̂ or v̂`, images flattened `[B, C·H·W]` in and out.
pub struct UNet {
    shape: UNetShape,
    time_in: Linear,
    time_out: Linear,
    /// `[classes + 1, time_dim]`: the last row is "no class".
    class_emb: Option<Tensor>,
    conv_in: Conv,
    res_in: ResBlock,
    downs: Vec<(Conv, ResBlock)>,
    mid: ResBlock,
    /// From the deepest level up: the block after the skip joins, then the up-sampling conv.
    ups: Vec<(ResBlock, Conv)>,
    res_out: ResBlock,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl UNet {
    pub fn new(ps: &mut ParamSet, s: &UNetShape, rng: &mut StdRng) -> Result<Self> {
        let (b, td) = (s.base, s.time_dim);
        let time_in = Linear::new(ps, "time.fc0", SINUSOID_DIM, td, rng)?;
        let time_out = Linear::new(ps, "time.fc1", td, td, rng)?;
        let class_emb = if s.classes > 0 {
            Some(ps.uniform("class_emb".into(), &[s.classes + 1, td], 1.0, rng)?)
        } else {
            None
        };
        let conv_in = Conv::new(ps, "conv_in", s.input.channels, b, K3, false, rng)?;
        let res_in = ResBlock::new(ps, "res_in", b, b, td, s.group_channels, rng)?;
        let mut downs = Vec::new();
        let mut c = b;
        for (i, &ci) in s.levels.iter().enumerate() {
            let down = Conv::new(ps, &format!("down{i}.conv"), c, c, K3S2, false, rng)?;
            downs.push((down, ResBlock::new(ps, &format!("down{i}.res"), c, ci, td, s.group_channels, rng)?));
            c = ci;
        }
        let mid = ResBlock::new(ps, "mid", c, c, td, s.group_channels, rng)?;
        let mut ups = Vec::new();
        for i in (0..s.levels.len()).rev() {
            let ci = s.levels[i];
            let below = if i == 0 { b } else { s.levels[i - 1] };
            let res = ResBlock::new(ps, &format!("up{i}.res"), 2 * ci, ci, td, s.group_channels, rng)?;
            ups.push((res, Conv::new(ps, &format!("up{i}.conv"), ci, below, K3, false, rng)?));
        }
        let res_out = ResBlock::new(ps, "res_out", 2 * b, b, td, s.group_channels, rng)?;
        let norm_out = GroupNorm::new(ps, "norm_out", b, s.group_channels)?;
        let conv_out = Conv::new(ps, "conv_out", b, s.input.channels, K3, true, rng)?;
        Ok(Self {
            shape: s.clone(),
            time_in,
            time_out,
            class_emb,
            conv_in,
            res_in,
            downs,
            mid,
            ups,
            res_out,
            norm_out,
            conv_out,
        })
    }

    /// `x: [B, C·H·W]`, `t: [B]` times in [0, 1], `class: [B]` u32 labels (the value
    /// `classes` is "no class"; `None`: "no class" for every row) → `[B, C·H·W]`. An
    /// unconditional net ignores `class`.
    pub fn forward(&self, x: &Tensor, t: &[f64], class: Option<&Tensor>) -> Result<Tensor> {
        let term = match &self.class_emb {
            Some(table) => {
                let ids = match class {
                    Some(y) => y.to_dtype(DType::U32)?.to_device(x.device())?,
                    None => Tensor::full(self.shape.classes as u32, x.dim(0)?, x.device())?,
                };
                Some(table.index_select(&ids, 0)?) // [B, time_dim]
            }
            None => None,
        };
        self.forward_with(x, t, term.as_ref())
    }

    /// [`Self::forward`] under a blend of the class embeddings: `weights: [B, classes + 1]`
    /// (f32, the last column "no class"; a one-hot row is that label) → `[B, C·H·W]`.
    /// `None` for an unconditional net.
    pub fn forward_blend(&self, x: &Tensor, t: &[f64], weights: &Tensor) -> Result<Option<Tensor>> {
        let Some(table) = &self.class_emb else { return Ok(None) };
        let term = weights.to_dtype(DType::F32)?.to_device(x.device())?.matmul(table)?; // [B, time_dim]
        Ok(Some(self.forward_with(x, t, Some(&term))?))
    }

    /// Classes of a conditional net (0: unconditional).
    pub fn classes(&self) -> usize {
        if self.class_emb.is_some() {
            self.shape.classes
        } else {
            0
        }
    }

    /// The network with `class_term: [B, time_dim]` added to the time embedding (the class's
    /// embedding row, or a blend of rows).
    fn forward_with(&self, x: &Tensor, t: &[f64], class_term: Option<&Tensor>) -> Result<Tensor> {
        let s = &self.shape.input;
        let bsz = x.dim(0)?;
        let mut temb =
            self.time_out.forward(&self.time_in.forward_act(&sinusoids(t, x)?, Some(Activation::Silu))?)?;
        if let Some(term) = class_term {
            temb = (temb + term)?;
        }
        let temb = temb.silu()?; // [B, time_dim]
        let h = x.reshape((bsz, s.channels, s.height, s.width))?; // [B, C, H, W]
        let mut h = self.res_in.forward(&self.conv_in.forward(&h)?, &temb)?; // [B, b, H, W]
        let mut skips = vec![h.clone()];
        for (down, res) in &self.downs {
            h = res.forward(&down.forward(&h)?, &temb)?; // [B, cᵢ, H/2ⁱ, W/2ⁱ]
            skips.push(h.clone());
        }
        h = self.mid.forward(&h, &temb)?;
        for (res, up) in &self.ups {
            let skip = skips.pop().unwrap_or_else(|| h.clone());
            h = res.forward(&Tensor::cat(&[&h, &skip], 1)?, &temb)?;
            h = up.forward(&up.exec.upsample_nearest2x(&h)?)?; // [B, c_{i−1}, 2h, 2w]
        }
        let skip = skips.pop().unwrap_or_else(|| h.clone());
        h = self.res_out.forward(&Tensor::cat(&[&h, &skip], 1)?, &temb)?;
        let out = self.conv_out.forward(&self.norm_out.forward_silu(&h)?)?; // [B, C, H, W]
        Ok(out.flatten_from(1)?)
    }
}

/// `[B, SINUSOID_DIM]`: sin and cos of 1000·t at frequencies 10000^(−k/16).
pub(crate) fn sinusoids(t: &[f64], like: &Tensor) -> Result<Tensor> {
    let half = SINUSOID_DIM / 2;
    let mut v = Vec::with_capacity(t.len() * SINUSOID_DIM);
    for &t in t {
        let arg = |k: usize| t * TIME_SCALE * 10000f64.powf(-(k as f64) / half as f64);
        v.extend((0..half).map(|k| arg(k).sin() as f32));
        v.extend((0..half).map(|k| arg(k).cos() as f32));
    }
    Ok(Tensor::from_vec(v, (t.len(), SINUSOID_DIM), like.device())?)
}

impl UNetShape {
    /// Trainable parameters, from the same layout [`UNet::new`] builds.
    pub fn param_count(&self) -> u64 {
        let (c_img, b, td) = (self.input.channels as u64, self.base as u64, self.time_dim as u64);
        let lin = |i: u64, o: u64| i * o + o;
        let conv3 = |i: u64, o: u64| 9 * i * o + o;
        let mut n = lin(SINUSOID_DIM as u64, td) + lin(td, td);
        if self.classes > 0 {
            n += (self.classes as u64 + 1) * td;
        }
        n += conv3(c_img, b) + ResBlock::params(self.base, self.base, self.time_dim);
        let mut c = self.base;
        for &ci in &self.levels {
            n += conv3(c as u64, c as u64) + ResBlock::params(c, ci, self.time_dim);
            c = ci;
        }
        n += ResBlock::params(c, c, self.time_dim);
        for (i, &ci) in self.levels.iter().enumerate() {
            let below = if i == 0 { self.base } else { self.levels[i - 1] };
            n += ResBlock::params(2 * ci, ci, self.time_dim) + conv3(ci as u64, below as u64);
        }
        n + ResBlock::params(2 * self.base, self.base, self.time_dim) + 2 * b + conv3(b, c_img)
    }

    /// Multiply-adds of one forward pass for one image (convolutions and linear layers).
    pub fn forward_macs(&self) -> u64 {
        let px = |k: usize| (self.input.height >> k) * (self.input.width >> k);
        let conv3 = |i: usize, o: usize, k: usize| (9 * i * o * px(k)) as u64;
        let td = self.time_dim;
        let mut n = (SINUSOID_DIM * td + td * td) as u64;
        n += conv3(self.input.channels, self.base, 0) + ResBlock::macs(self.base, self.base, td, px(0));
        let mut c = self.base;
        for (i, &ci) in self.levels.iter().enumerate() {
            n += conv3(c, c, i + 1) + ResBlock::macs(c, ci, td, px(i + 1));
            c = ci;
        }
        n += ResBlock::macs(c, c, td, px(self.levels.len()));
        for (i, &ci) in self.levels.iter().enumerate() {
            let below = if i == 0 { self.base } else { self.levels[i - 1] };
            n += ResBlock::macs(2 * ci, ci, td, px(i + 1)) + conv3(ci, below, i);
        }
        n + ResBlock::macs(2 * self.base, self.base, td, px(0)) + conv3(self.base, self.input.channels, 0)
    }
}
