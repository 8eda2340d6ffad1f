//! GAN: a generator G(z) and a discriminator D(x), each with its own parameters and Adam.
//! D maximises log D(x) + log(1 − D(G(z))); G minimises log(1 − D(G(z))) (minimax) or
//! −log D(G(z)) (non-saturating, the default). All cross-entropies are computed from logits.
//! The family's configuration, presets, capabilities, counts and health rule live here too.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use serde::{Deserialize, Serialize};

use super::layers::{normal_tensor, Expand, Linear, ParamSet, Trunk};
use super::likelihood::{SampleScore, ScoreOptions, ScoreSetup};
use super::losses::softplus;
use super::optim::{grads_finite, Adam, AdamConfig};
use super::shapes::{conv_macs, expand_params, linear, mlp_macs, trunk_params};
use super::spec::{self, Part, PartRole};
use super::{
    collect_bn, collect_state, restore_bn, restore_state, scalar, Activation, AnomalyScore, Arch, Batch,
    Capabilities, Family, FamilyConfig, GenerativeModel, HealthMonitor, LiveHyper, LossKey, Losses,
    ModelConfig, NetConfig, Preset, ReconLoss, StepMacs, StepOutcome, MAX_WIDTH,
};
use crate::engine::data::ImageShape;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::Exec;

/// The generator's loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// −log D(G(z)): strong gradients early on (the default).
    NonSaturating,
    /// log(1 − D(G(z))): the original minimax objective.
    Minimax,
}

/// What the generator's output layer ends in, and so the range the discriminator sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanOutput {
    /// Pixels in (0, 1) straight from a sigmoid; D sees the data as it is. genlab's GANs before
    /// issue #15, kept for their checkpoints: on the digits the sigmoid's saturated background
    /// lets D win within a few epochs and G collapses to one image (PyTorch does the same).
    Sigmoid,
    /// tanh on data scaled to [−1, 1] (DCGAN's choice, the default): D sees 2x − 1, G's
    /// output is tanh and its pixels are (tanh + 1) / 2.
    Tanh,
}

impl GanOutput {
    /// What a GAN saved without this field had.
    fn legacy() -> Self {
        GanOutput::Sigmoid
    }
}

/// A GAN. MLP: `net.hidden` are the generator's widths from the noise outwards and
/// `disc_hidden` the discriminator's from the image inwards. Conv: `net.hidden` are the
/// discriminator's channels per stride-2 layer and the generator mirrors them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GanConfig {
    #[serde(flatten)]
    pub net: NetConfig,
    /// The MLP discriminator's widths (a conv discriminator uses `net.hidden`).
    pub disc_hidden: Vec<usize>,
    pub gan_loss: GanLoss,
    /// Batch norm in conv GANs (DCGAN).
    pub batch_norm: bool,
    /// Configurations saved before this field existed had a sigmoid output.
    #[serde(default = "GanOutput::legacy")]
    pub output: GanOutput,
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            disc_hidden: vec![512, 256],
            gan_loss: GanLoss::NonSaturating,
            batch_norm: false,
            output: GanOutput::Tanh,
        }
    }
}

/// The presets of this family (all with DCGAN's Adam: 2e-4, β₁ = 0.5).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mnist_mlp_gan",
        make: || {
            let net = NetConfig {
                hidden: vec![256, 512],
                latent_dim: 100,
                activation: Activation::LeakyRelu,
                ..NetConfig::default()
            };
            (ModelConfig::Gan(GanConfig { net, ..GanConfig::default() }), dcgan_adam())
        },
        epochs: MLP_GAN_EPOCHS,
    },
    Preset {
        name: "mnist_dcgan",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                hidden: vec![64, 128],
                latent_dim: 100,
                activation: Activation::LeakyRelu,
                ..NetConfig::default()
            };
            (ModelConfig::Gan(GanConfig { net, batch_norm: true, ..GanConfig::default() }), dcgan_adam())
        },
        epochs: DCGAN_EPOCHS,
    },
    // The DCGAN paper's 64×64 layout (Radford et al. 2016, Fig. 1); expects 3×64×64 images
    // (`--resize 64 --channels 3` for a folder of another size). D: convs 3 → 64 → 128 → 256 →
    // 512 (4×4, stride 2; batch norm on all but the first) → linear → 1. G: z (100) → linear →
    // 512×4×4 (batch norm) → transposed convs 256, 128, 64 (batch norm) → 3. Two departures:
    // One departure: genlab's net has one activation, so G uses D's LeakyReLU(0.2) where the
    // paper has ReLU. G ends in tanh on data scaled to [−1, 1], as in the paper. The paper's
    // batch size is 128, genlab's default.
    Preset {
        name: "dcgan64",
        make: || {
            let net = NetConfig {
                arch: Arch::Conv,
                input: ImageShape::new(3, 64, 64),
                hidden: vec![64, 128, 256, 512],
                latent_dim: 100,
                activation: Activation::LeakyRelu,
                classes: 0,
            };
            (ModelConfig::Gan(GanConfig { net, batch_norm: true, ..GanConfig::default() }), dcgan_adam())
        },
        epochs: 10,
    },
];

/// Default runs (measured in the README): the MLP GAN needs many more epochs than the
/// DCGAN, at a fraction of the cost per step; both take about a minute on 2 idle cores. The
/// DCGAN measured worse at 20 epochs than at 10 (D pulls ahead again).
const MLP_GAN_EPOCHS: usize = 150;
const DCGAN_EPOCHS: usize = 10;

fn dcgan_adam() -> AdamConfig {
    AdamConfig { lr: 2e-4, beta1: 0.5, ..AdamConfig::default() }
}

/// Consecutive steps with a discriminator loss under [`COLLAPSE_D_LOSS`] that raise a warning.
const COLLAPSE_STEPS: u32 = 200;
const COLLAPSE_D_LOSS: f64 = 0.01;

impl FamilyConfig for GanConfig {
    fn family(&self) -> Family {
        Family::Gan
    }

    fn net(&self) -> &NetConfig {
        &self.net
    }

    fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: Family::Gan,
            encoder: false,
            discriminator: true,
            conditional: false,
            latent_dim: self.net.latent_dim,
            latent_name: "noise",
            live: vec![LiveHyper::LearningRate],
            loss_keys: vec![LossKey::DLoss, LossKey::GLoss, LossKey::DReal, LossKey::DFake],
            headline: LossKey::DLoss,
            anomaly_scores: vec![AnomalyScore::NegDiscLogit],
            likelihood: false,
            variational: false,
        }
    }

    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(EngineError::Config(m));
        if let Some(i) = self.disc_hidden.iter().position(|&w| w == 0) {
            return err(format!("discriminator layer {} has width 0", i + 1));
        }
        if let Some(&w) = self.disc_hidden.iter().find(|&&w| w > MAX_WIDTH) {
            return err(format!("a layer of width {w} is over the limit of {MAX_WIDTH}"));
        }
        if self.net.arch == Arch::Mlp && self.disc_hidden.is_empty() {
            return err("the discriminator needs at least one hidden layer".into());
        }
        Ok(())
    }

    /// Generator (noise → image) and discriminator (image → D(x)).
    fn network(&self) -> Vec<Part> {
        let (g_widths, d_widths) = self.widths();
        let mut g = vec![spec::boxed("noise z", self.net.latent_dim.to_string())];
        g.extend(spec::expand(&self.net, &g_widths));
        let mut d = spec::trunk(&self.net, &d_widths, "fc");
        d.push(spec::boxed("D(x)", "1"));
        vec![
            Part { title: "Generator G", role: PartRole::Input, layers: g },
            Part { title: "Discriminator D", role: PartRole::Output, layers: d },
        ]
    }

    fn param_count(&self) -> u64 {
        let (g, d) = self.widths();
        let bn = self.uses_batch_norm();
        let (d_trunk, feat) = trunk_params(&self.net, &d, bn);
        expand_params(&self.net, &g, bn).saturating_add(d_trunk).saturating_add(linear(feat, 1))
    }

    fn build(&self, optim: &AdamConfig, seed: u64, exec: &Exec) -> Result<Box<dyn GenerativeModel>> {
        Ok(Box::new(Gan::new(self.clone(), *optim, seed, exec)?))
    }

    fn recon_loss(&self) -> Option<ReconLoss> {
        None
    }

    fn recon_loss_mut(&mut self) -> Option<&mut ReconLoss> {
        None
    }

    fn kl_weight(&self) -> Option<f64> {
        None
    }

    fn beta_mut(&mut self) -> Option<&mut f64> {
        None
    }

    /// A step runs G forward and backward once (through D), and D forward on real, on detached
    /// fake and again on fake for G's loss: D's backward twice with parameter gradients, once
    /// for the input gradient only (G's step). Layers fed by data skip their input gradient.
    fn step_macs(&self) -> StepMacs {
        let net = &self.net;
        let (g_widths, d_widths) = self.widths();
        let (d, l) = (net.input.len(), net.latent_dim as u64);
        let (g_macs, d_macs, e1, g1) = match net.arch {
            Arch::Mlp => {
                let g: Vec<usize> =
                    std::iter::once(net.latent_dim).chain(g_widths.iter().copied()).chain([d]).collect();
                let dd: Vec<usize> = std::iter::once(d).chain(d_widths.iter().copied()).chain([1]).collect();
                let e1 = (d * d_widths.first().copied().unwrap_or(1)) as u64;
                let g1 = l * g_widths.first().copied().unwrap_or(d) as u64;
                (mlp_macs(&g), mlp_macs(&dd), e1, g1)
            }
            Arch::Conv => {
                // D's stride-2 convs; G's transposed convs mirror them at the same cost.
                let (convs, feat) = conv_macs(net, &d_widths);
                let c0 = d_widths.first().copied().unwrap_or(net.input.channels);
                let e1 =
                    ((net.input.height / 2) * (net.input.width / 2) * c0 * net.input.channels * 16) as u64;
                // G: noise → the smallest feature map, then transposed convs mirroring D's.
                (feat * l + convs, convs + feat, e1, feat * l)
            }
        };
        StepMacs { forward: g_macs + d_macs, train_step: 3 * g_macs - g1 + 8 * d_macs - 2 * e1 }
    }
}

impl GanConfig {
    /// The network, decided once: generator and discriminator widths, each from its own input
    /// side. Building ([`Gan::new`]), the counts and the diagram all read it.
    fn widths(&self) -> (Vec<usize>, Vec<usize>) {
        match self.net.arch {
            Arch::Mlp => (self.net.hidden.clone(), self.disc_hidden.clone()),
            Arch::Conv => (self.net.hidden.iter().rev().copied().collect(), self.net.hidden.clone()),
        }
    }

    fn uses_batch_norm(&self) -> bool {
        self.batch_norm && self.net.arch == Arch::Conv
    }
}

/// The GAN's health rule: a discriminator loss that stays near zero means D wins every round
/// and G gets no useful gradient; the generator has probably collapsed.
struct CollapseRule {
    low_steps: u32,
}

impl HealthMonitor for CollapseRule {
    fn observe(&mut self, losses: &Losses) -> Option<String> {
        let low = losses.get(LossKey::DLoss).is_some_and(|d| d < COLLAPSE_D_LOSS);
        self.low_steps = if low { self.low_steps + 1 } else { 0 };
        (self.low_steps == COLLAPSE_STEPS).then(|| {
            format!(
                "the discriminator's loss has stayed under {COLLAPSE_D_LOSS} for {COLLAPSE_STEPS} steps: the generator has probably collapsed. Rewind to an earlier checkpoint or lower the learning rate."
            )
        })
    }
}

pub struct Gan {
    cfg: ModelConfig,
    gan: GanConfig,
    g_params: ParamSet,
    d_params: ParamSet,
    g_adam: Adam,
    d_adam: Adam,
    generator: Expand,
    d_trunk: Trunk,
    d_head: Linear,
}

impl Gan {
    pub fn new(gan: GanConfig, optim: AdamConfig, seed: u64, exec: &Exec) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gp = ParamSet::new(exec.clone());
        let mut dp = ParamSet::new(exec.clone());
        let bn = gan.uses_batch_norm();
        let (g_widths, d_widths) = gan.widths();
        let net = &gan.net;
        let generator = Expand::new(&mut gp, "generator", net, net.latent_dim, &g_widths, bn, &mut rng)?;
        let d_trunk = Trunk::new(&mut dp, "discriminator", net, &d_widths, bn, &mut rng)?;
        let feat = Trunk::out_dim(net.arch, net.input, &d_widths);
        let d_head = Linear::new(&mut dp, "discriminator.out", feat, 1, &mut rng)?;
        let g_adam = Adam::new(optim, &gp)?;
        let d_adam = Adam::new(optim, &dp)?;
        let cfg = ModelConfig::Gan(gan.clone());
        Ok(Self { cfg, gan, g_params: gp, d_params: dp, g_adam, d_adam, generator, d_trunk, d_head })
    }

    /// Pixels `[B, D]` in [0, 1] → what D and G's output work in: 2x − 1 for a tanh GAN.
    fn to_d_space(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.gan.output {
            GanOutput::Sigmoid => x.clone(),
            GanOutput::Tanh => x.affine(2.0, -1.0)?,
        })
    }

    /// `[B, latent] → [B, D]` the generator's output in D's space (see [`Self::to_d_space`]).
    fn generate(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match self.gan.output {
            GanOutput::Sigmoid => self.generator.forward_pixels(z, train)?,
            GanOutput::Tanh => self.generator.forward_tanh(z, train)?,
        })
    }

    /// `[B, D] → [B]` logits.
    fn d_logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.d_head.forward(&self.d_trunk.forward(x, train)?)?.squeeze(1)?)
    }

    /// `b` noise vectors on the model's device.
    fn noise(&self, b: usize, rng: &mut StdRng) -> Result<Tensor> {
        Ok(self.exec().put(&normal_tensor(b, self.gan.net.latent_dim, 1.0, rng)?)?)
    }

    fn exec(&self) -> &Exec {
        &self.g_params.exec
    }

    fn g_loss(&self, fake_logits: &Tensor) -> Result<Tensor> {
        Ok(match self.gan.gan_loss {
            GanLoss::NonSaturating => softplus(&fake_logits.neg()?)?.mean(0)?, // −log σ(l)
            GanLoss::Minimax => softplus(fake_logits)?.neg()?.mean(0)?,        // log(1 − σ(l))
        })
    }

    /// D loss = −log σ(l_real) − log(1 − σ(l_fake)), mean over the batch.
    fn d_loss(real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        Ok((softplus(&real.neg()?)?.mean(0)? + softplus(fake)?.mean(0)?)?)
    }

    fn bns(&self) -> (Vec<&super::layers::BatchNorm>, Vec<&super::layers::BatchNorm>) {
        (self.generator.batch_norms(), self.d_trunk.batch_norms())
    }
}

fn mean_sigmoid(l: &Tensor) -> Result<f64> {
    scalar(&candle_nn::ops::sigmoid(l)?.mean(0)?)
}

impl GenerativeModel for Gan {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn param_count(&self) -> usize {
        self.g_params.count() + self.d_params.count()
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutcome> {
        let x = &self.to_d_space(&self.exec().put(&batch.x)?)?;
        let (b, _) = x.dims2()?;
        let z = self.noise(b, rng)?;
        let fake = self.generate(&z, true)?; // [B, D]

        // Discriminator step on real and (detached) fake images.
        let real_l = self.d_logits(x, true)?;
        let fake_l = self.d_logits(&fake.detach(), true)?;
        let d_loss = Self::d_loss(&real_l, &fake_l)?;
        let mut losses = Losses::of(&[
            (LossKey::DLoss, scalar(&d_loss)?),
            (LossKey::DReal, mean_sigmoid(&real_l)?),
            (LossKey::DFake, mean_sigmoid(&fake_l)?),
        ]);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        let d_grads = self.d_params.backward(&d_loss)?;
        if !grads_finite(&self.d_params, &d_grads)? {
            return Ok(StepOutcome::NonFinite(losses));
        }

        // Generator step against the updated discriminator (as in the DCGAN reference). A
        // non-finite generator loss or gradient leaves the generator untouched; the
        // discriminator's finite update stands.
        self.d_adam.step(&self.d_params, &d_grads)?;
        let g_logits = self.d_logits(&fake, true)?;
        let g_loss = self.g_loss(&g_logits)?;
        losses.set(LossKey::GLoss, scalar(&g_loss)?);
        if !losses.is_finite() {
            return Ok(StepOutcome::NonFinite(losses));
        }
        // D's parameter gradients are not wanted here: its fused layers skip them.
        self.d_params.side.set_frozen(true);
        let g_grads = self.g_params.backward(&g_loss);
        self.d_params.side.set_frozen(false);
        let g_grads = g_grads?;
        self.d_params.side.clear(); // what unfused layers (conv) still handed over
        if !grads_finite(&self.g_params, &g_grads)? {
            return Ok(StepOutcome::NonFinite(losses));
        }
        self.g_adam.step(&self.g_params, &g_grads)?;
        Ok(StepOutcome::Applied(losses))
    }

    fn evaluate(&self, batch: &Batch, rng: &mut StdRng) -> Result<Losses> {
        let x = &self.to_d_space(&self.exec().put(&batch.x)?)?;
        let (b, _) = x.dims2()?;
        let z = self.noise(b, rng)?;
        let fake = self.generate(&z, false)?.detach();
        let real_l = self.d_logits(&x.detach(), false)?;
        let fake_l = self.d_logits(&fake, false)?;
        Ok(Losses::of(&[
            (LossKey::DLoss, scalar(&Self::d_loss(&real_l, &fake_l)?)?),
            (LossKey::GLoss, scalar(&self.g_loss(&fake_l)?)?),
            (LossKey::DReal, mean_sigmoid(&real_l)?),
            (LossKey::DFake, mean_sigmoid(&fake_l)?),
        ]))
    }

    fn encode(&self, _x: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    /// Pixels in [0, 1]: the sigmoid, or (tanh + 1) / 2, of the generator's last layer.
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let z = self.exec().put(z)?;
        Ok(match self.gan.output {
            GanOutput::Sigmoid => candle_nn::ops::sigmoid(&self.generator.forward(&z, false)?)?,
            GanOutput::Tanh => self.generator.forward_tanh(&z, false)?.affine(0.5, 0.5)?,
        }
        .detach())
    }

    /// Logits whose sigmoid are [`Self::decode`]'s pixels: (tanh(a) + 1) / 2 = σ(2a).
    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let a = self.generator.forward(&self.exec().put(z)?, false)?.detach();
        Ok(match self.gan.output {
            GanOutput::Sigmoid => a,
            GanOutput::Tanh => (a * 2.0)?,
        })
    }

    fn discriminate(&self, x: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.d_logits(&self.to_d_space(&self.exec().put(x)?)?, false)?.detach()))
    }

    fn learning_rate(&self) -> f64 {
        self.g_adam.config.lr
    }

    fn score_setup(&self, _opts: &ScoreOptions) -> Result<ScoreSetup> {
        Ok(ScoreSetup { likelihood: None, k: 0, batch: 256, max_rows: 0 })
    }

    /// The discriminator's logit of each image (not a density; see [`crate::engine::scoring`]).
    fn score_batch(
        &self,
        x: &[f32],
        _setup: &ScoreSetup,
        _rng: &mut StdRng,
        out: &mut [SampleScore],
    ) -> Result<()> {
        let xt = Tensor::from_slice(x, (out.len(), self.gan.net.input.len()), self.exec().device())?;
        let logits =
            self.d_logits(&self.to_d_space(&xt)?, false)?.detach().flatten_all()?.to_vec1::<f32>()?;
        for (s, l) in out.iter_mut().zip(logits) {
            s.disc_logit = Some(l as f64);
        }
        Ok(())
    }

    fn health_monitor(&self) -> Box<dyn HealthMonitor> {
        Box::new(CollapseRule { low_steps: 0 })
    }

    fn set_hyper(&mut self, hyper: LiveHyper, value: f64) -> Result<()> {
        match hyper {
            LiveHyper::LearningRate => {
                self.g_adam.config.lr = value;
                self.d_adam.config.lr = value;
                Ok(())
            }
            LiveHyper::Beta => Err(super::not_live(Family::Gan, hyper)),
        }
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        collect_state(&self.g_params, &self.g_adam, &mut out)?;
        collect_state(&self.d_params, &self.d_adam, &mut out)?;
        let (g, d) = self.bns();
        collect_bn("generator", &g, &mut out)?;
        collect_bn("discriminator", &d, &mut out)?;
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        restore_state(&self.g_params, &mut self.g_adam, state)?;
        restore_state(&self.d_params, &mut self.d_adam, state)?;
        let (g, d) = self.bns();
        restore_bn("generator", &g, state)?;
        restore_bn("discriminator", &d, state)
    }

    fn optimizer_steps(&self) -> Vec<u64> {
        vec![self.g_adam.step, self.d_adam.step]
    }

    fn set_optimizer_steps(&mut self, steps: &[u64]) {
        if let [g, d] = steps {
            self.g_adam.step = *g;
            self.d_adam.step = *d;
        }
    }
}
