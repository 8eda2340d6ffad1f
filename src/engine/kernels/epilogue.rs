//! What follows the affine map in a fused op (linear, convolution, batch norm): the activation
//! applied in the op's last pass, and its derivative read back from the op's output.

use super::fastmath;

/// The leaky ReLU's slope for negative inputs (the models' `Activation::LeakyRelu`).
pub const LEAKY_SLOPE: f32 = 0.2;

/// What follows the affine map in a fused layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    Identity,
    Relu,
    LeakyRelu,
    Tanh,
    /// `σ(v)`: pixel values from logits (a GAN generator's output layer).
    Sigmoid,
}

impl Epilogue {
    #[inline(always)]
    pub(super) fn apply(self, v: f32) -> f32 {
        match self {
            Epilogue::Identity => v,
            Epilogue::Relu => v.max(0.0),
            Epilogue::LeakyRelu => {
                if v > 0.0 {
                    v
                } else {
                    LEAKY_SLOPE * v
                }
            }
            Epilogue::Tanh => v.tanh(),
            Epilogue::Sigmoid => fastmath::sigmoid(v),
        }
    }

    /// The derivative at the pre-activation whose output is `y`, times `g`.
    #[inline(always)]
    pub(super) fn grad(self, y: f32, g: f32) -> f32 {
        match self {
            Epilogue::Identity => g,
            Epilogue::Relu => {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            Epilogue::LeakyRelu => {
                if y > 0.0 {
                    g
                } else {
                    LEAKY_SLOPE * g
                }
            }
            Epilogue::Tanh => g * (1.0 - y * y),
            Epilogue::Sigmoid => g * y * (1.0 - y),
        }
    }

    /// `dst[i] = act(pre(src[i]))` for every `i`. The match on the activation is outside the
    /// loop (each arm calls [`Epilogue::apply`] on a constant) so that each arm vectorises:
    /// `apply` per element on a variable compiled to a scalar loop through a jump table (~10%
    /// of a DCGAN step).
    #[inline(always)]
    pub(super) fn map(self, dst: &mut [f32], src: &[f32], pre: impl Fn(f32) -> f32) {
        let n = dst.len().min(src.len());
        let (dst, src) = (&mut dst[..n], &src[..n]);
        macro_rules! each {
            ($e:expr) => {
                (0..n).for_each(|i| dst[i] = $e.apply(pre(src[i])))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
    }

    /// `v = act(pre(v))` for every `v` of `vs` (see [`Epilogue::map`]).
    #[inline(always)]
    pub(super) fn map_in_place(self, vs: &mut [f32], pre: impl Fn(f32) -> f32) {
        macro_rules! each {
            ($e:expr) => {
                vs.iter_mut().for_each(|v| *v = $e.apply(pre(*v)))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
    }

    /// `dst[i] = grad(y[i], g[i])` for every `i` (see [`Epilogue::grad`], [`Epilogue::map`]);
    /// returns `Σ dst`.
    #[inline(always)]
    pub(super) fn grad_into(self, dst: &mut [f32], y: &[f32], g: &[f32]) -> f32 {
        let n = dst.len().min(y.len()).min(g.len());
        let (dst, y, g) = (&mut dst[..n], &y[..n], &g[..n]);
        macro_rules! each {
            ($e:expr) => {
                (0..n).for_each(|i| dst[i] = $e.grad(y[i], g[i]))
            };
        }
        match self {
            Epilogue::Identity => each!(Epilogue::Identity),
            Epilogue::Relu => each!(Epilogue::Relu),
            Epilogue::LeakyRelu => each!(Epilogue::LeakyRelu),
            Epilogue::Tanh => each!(Epilogue::Tanh),
            Epilogue::Sigmoid => each!(Epilogue::Sigmoid),
        }
        fastmath::sum(dst)
    }
}
