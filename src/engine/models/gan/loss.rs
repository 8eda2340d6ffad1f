//! The GAN's objectives on the discriminator's (critic's) raw outputs, WGAN-GP's gradient
//! penalty, and the health rule that fits each objective.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::super::losses::softplus;
use super::super::{HealthMonitor, LossKey, Losses, NoHealthRule};
use crate::engine::error::{EngineError, Result};

/// The GAN's objective: the generator's loss and the discriminator's that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// G: −log D(G(z)), strong gradients early on (the default). D: cross-entropy.
    NonSaturating,
    /// G: log(1 − D(G(z))), the original minimax objective. D: cross-entropy.
    Minimax,
    /// D: relu(1 − D(x)) + relu(1 + D(G(z))); G: −D(G(z)) (Lim & Ye 2017; SAGAN, BigGAN).
    Hinge,
    /// Wasserstein with gradient penalty (Gulrajani et al. 2017). The critic D has no sigmoid;
    /// D: D(G(z)) − D(x) + λ (‖∇ₓD(x̂)‖₂ − 1)² on random interpolates x̂; G: −D(G(z)).
    WganGp,
}

impl GanLoss {
    pub const ALL: [GanLoss; 4] = [GanLoss::NonSaturating, GanLoss::Minimax, GanLoss::Hinge, GanLoss::WganGp];

    pub fn label(self) -> &'static str {
        match self {
            GanLoss::NonSaturating => "non-saturating",
            GanLoss::Minimax => "minimax",
            GanLoss::Hinge => "hinge",
            GanLoss::WganGp => "WGAN-GP",
        }
    }

    /// The discriminator's output is a probability's logit (cross-entropy objectives).
    pub fn probabilistic(self) -> bool {
        matches!(self, GanLoss::NonSaturating | GanLoss::Minimax)
    }

    /// The objective differentiates D's input gradient again (the gradient penalty).
    pub fn second_order(self) -> bool {
        self == GanLoss::WganGp
    }

    /// The components a step reports, in plot order.
    pub fn loss_keys(self) -> Vec<LossKey> {
        match self {
            GanLoss::NonSaturating | GanLoss::Minimax => {
                vec![LossKey::DLoss, LossKey::GLoss, LossKey::DReal, LossKey::DFake]
            }
            GanLoss::Hinge => vec![LossKey::DLoss, LossKey::GLoss, LossKey::WEstimate],
            GanLoss::WganGp => vec![LossKey::DLoss, LossKey::GLoss, LossKey::WEstimate, LossKey::GradPenalty],
        }
    }

    /// G's loss from D's outputs on generated images `[B]`, a scalar.
    pub fn g_loss(self, fake: &Tensor) -> Result<Tensor> {
        Ok(match self {
            GanLoss::NonSaturating => softplus(&fake.neg()?)?.mean(0)?, // −log σ(l)
            GanLoss::Minimax => softplus(fake)?.neg()?.mean(0)?,        // log(1 − σ(l))
            GanLoss::Hinge | GanLoss::WganGp => fake.mean(0)?.neg()?,
        })
    }

    /// D's loss from its outputs on real and generated images (each `[B]`), a scalar, without
    /// the gradient penalty. `real_label` is the cross-entropy's target for real images (one-
    /// sided label smoothing below 1; the other objectives ignore it).
    pub fn d_loss(self, real: &Tensor, fake: &Tensor, real_label: f64) -> Result<Tensor> {
        Ok(match self {
            GanLoss::NonSaturating | GanLoss::Minimax => {
                // −t log σ(r) − (1 − t) log(1 − σ(r)) − log(1 − σ(f))
                let on_real = if real_label == 1.0 {
                    softplus(&real.neg()?)?
                } else {
                    ((softplus(&real.neg()?)? * real_label)? + (softplus(real)? * (1.0 - real_label))?)?
                };
                (on_real.mean(0)? + softplus(fake)?.mean(0)?)?
            }
            GanLoss::Hinge => ((real.neg()? + 1.0)?.relu()?.mean(0)? + (fake + 1.0)?.relu()?.mean(0)?)?,
            GanLoss::WganGp => (fake.mean(0)? - real.mean(0)?)?,
        })
    }
}

/// WGAN-GP's penalty E[(‖∇ₓ critic(x̂)‖₂ − 1)²] over the rows of `x_hat` `[B, D]`, a scalar that
/// stays differentiable with respect to the critic's parameters. `critic` maps `[B, D]` to
/// `[B]` and must be built from candle's stock ops (see
/// [`crate::engine::kernels::Exec::twice_differentiable`]): the input gradient comes from a
/// backward pass that keeps its graph.
pub fn gradient_penalty(x_hat: &Tensor, critic: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let x_hat = Var::from_tensor(&x_hat.detach())?;
    let grad = candle_core::backprop::with_grad_graph(|| -> Result<Tensor> {
        // Each row's output depends on its own row only, so the sum's gradient is per row.
        let grads = critic(x_hat.as_tensor())?.sum_all()?.backward()?;
        grads
            .get(x_hat.as_tensor())
            .cloned()
            .ok_or_else(|| EngineError::Config("the critic's output does not depend on its input".into()))
    })?;
    // ‖∇‖ per row [B]; the epsilon keeps the square root's gradient finite at 0.
    let norm = (grad.sqr()?.sum(1)? + 1e-12)?.sqrt()?;
    Ok((norm - 1.0)?.sqr()?.mean(0)?)
}

/// Consecutive steps with a discriminator loss under [`COLLAPSE_D_LOSS`] that raise a warning.
const COLLAPSE_STEPS: u32 = 200;
const COLLAPSE_D_LOSS: f64 = 0.01;

/// The health rule of the cross-entropy objectives: a discriminator loss that stays near zero
/// means D wins every round and G gets no useful gradient; the generator has probably
/// collapsed. A hinge D at loss 0 still passes G a linear gradient, and a critic's loss is
/// not bounded below, so neither has this rule (the quality curve's recall flags collapse for
/// every objective).
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

/// The health rule for `loss`.
pub fn health_monitor(loss: GanLoss) -> Box<dyn HealthMonitor> {
    if loss.probabilistic() {
        Box::new(CollapseRule { low_steps: 0 })
    } else {
        Box::new(NoHealthRule)
    }
}
