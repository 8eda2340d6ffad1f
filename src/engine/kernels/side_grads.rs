//! The side channel through which fused ops hand over their parameters' gradients.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, TensorId, Var};

/// Parameter gradients that fused ops hand over directly instead of through candle's
/// autograd, which would add each into a fresh zero tensor (a zero-fill and an extra pass over
/// every weight per step). Keyed by the parameter tensor's id; a parameter used twice in one
/// graph gets the sum. After `backward()`, [`SideGrads::drain_into`] moves them into the
/// gradient store so the optimiser sees one set.
#[derive(Clone, Default)]
pub struct SideGrads {
    grads: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<TensorId, Vec<f32>>>>,
    /// While set, nobody wants these parameters' gradients (a GAN's generator step goes back
    /// through the discriminator only for its input gradient): fused layers skip the weight
    /// and bias gradients instead of computing and discarding them.
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SideGrads {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<TensorId, Vec<f32>>> {
        self.grads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Freezes (or thaws) the parameters that hand their gradients here; see the field.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the parameters behind `sink` are frozen (no sink: never).
    pub(super) fn is_frozen(sink: Option<&SideGrads>) -> bool {
        sink.is_some_and(|s| s.frozen.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Hands over `grad` for `param`, or returns it as a tensor for candle when `param` is not
    /// a variable (or there is no sink).
    pub(super) fn give(sink: Option<&SideGrads>, param: &Tensor, grad: Vec<f32>) -> Result<Option<Tensor>> {
        match sink {
            Some(sink) if param.is_variable() => {
                let mut map = sink.lock();
                match map.get_mut(&param.id()) {
                    Some(sum) if sum.len() == grad.len() => {
                        sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g)
                    }
                    _ => {
                        map.insert(param.id(), grad);
                    }
                }
                Ok(None)
            }
            _ => Ok(Some(Tensor::from_vec(grad, param.shape(), param.device())?)),
        }
    }

    /// Forgets every gradient handed over (before a backward pass, or to discard one).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Moves the gradients of `vars` into `grads` (added to any already there).
    pub fn drain_into<'a>(&self, vars: impl Iterator<Item = &'a Var>, grads: &mut GradStore) -> Result<()> {
        let mut map = self.lock();
        for var in vars {
            let t = var.as_tensor();
            if let Some(g) = map.remove(&t.id()) {
                let g = Tensor::from_vec(g, t.shape(), t.device())?;
                let sum = match grads.get(t) {
                    Some(prev) => (prev + g)?,
                    None => g,
                };
                grads.insert(t, sum);
            }
        }
        map.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{max_diff, randn};
    use crate::engine::kernels::{linear, Epilogue};

    /// Through a sink, the parameter gradients leave candle's store and come back by
    /// `drain_into` equal to the plain path's, summed over two uses of the same layer.
    #[test]
    fn side_gradients_equal_the_autograd_ones() {
        let x = randn(&[6, 5], 1);
        let w = Var::from_tensor(&randn(&[4, 5], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[4], 3)).unwrap();
        let twice = |sink: Option<&SideGrads>| {
            let h = linear(&x, &w, &b, Epilogue::Tanh, sink).unwrap();
            let h2 = linear(&x.affine(0.5, 0.1).unwrap(), &w, &b, Epilogue::Relu, sink).unwrap();
            (h.sum_all().unwrap() + h2.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap()
        };
        let plain = twice(None);
        let sink = SideGrads::default();
        let mut side = twice(Some(&sink));
        assert!(side.get(&w).is_none() && side.get(&b).is_none());
        sink.drain_into([&w, &b].into_iter(), &mut side).unwrap();
        for v in [&w, &b] {
            assert!(max_diff(plain.get(v).unwrap(), side.get(v).unwrap()) < 1e-5);
        }
        assert!(sink.lock().is_empty());
    }

    #[test]
    fn a_frozen_layer_passes_its_input_gradient_and_skips_its_own() {
        let x = Var::from_tensor(&randn(&[6, 5], 1)).unwrap();
        let w = Var::from_tensor(&randn(&[4, 5], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[4], 3)).unwrap();
        let sink = SideGrads::default();
        let run = || {
            linear(&x, &w, &b, Epilogue::Tanh, Some(&sink)).unwrap().sum_all().unwrap().backward().unwrap()
        };
        let live = run();
        assert_eq!(sink.lock().len(), 2, "w and b handed over");
        sink.clear();
        sink.set_frozen(true);
        let frozen = run();
        sink.set_frozen(false);
        assert!(sink.lock().is_empty(), "a frozen layer hands over nothing");
        assert!(frozen.get(&w).is_none() && frozen.get(&b).is_none());
        assert!(max_diff(live.get(&x).unwrap(), frozen.get(&x).unwrap()) < 1e-6, "same input gradient");
    }
}
