//! Parameter and multiply-add counts of the two network halves every family is made of (see
//! [`super::layers::Trunk`] and [`super::layers::Expand`]), from their shapes alone, so that a
//! configuration can be counted without building it. Counts saturate: any configuration, even
//! one [`super::ModelConfig::validate`] refuses, gets an answer.

use super::{Arch, NetConfig};

fn mul(a: usize, b: usize) -> u64 {
    (a as u64).saturating_mul(b as u64)
}

/// A linear layer: weights and biases.
pub fn linear(fan_in: usize, fan_out: usize) -> u64 {
    mul(fan_in, fan_out).saturating_add(fan_out as u64)
}

/// A 4×4 (transposed) convolution with biases.
fn conv(cin: usize, cout: usize) -> u64 {
    mul(cin, cout).saturating_mul(16).saturating_add(cout as u64)
}

/// Batch norm's γ and β.
fn bn(c: usize) -> u64 {
    2 * c as u64
}

/// Parameters of linear layers from `from` through `widths`.
fn chain(from: usize, widths: &[usize]) -> u64 {
    let mut total = 0u64;
    let mut fan_in = from;
    for &w in widths {
        total = total.saturating_add(linear(fan_in, w));
        fan_in = w;
    }
    total
}

/// The feature map size after `k` stride-2 layers.
fn reduced(net: &NetConfig, k: usize) -> (usize, usize) {
    let k = k.min(usize::BITS as usize - 1);
    (net.input.height >> k, net.input.width >> k)
}

/// Image → features through `widths` (MLP widths or conv channels; batch norm on every conv
/// layer but the first): (parameters, feature count).
pub fn trunk_params(net: &NetConfig, widths: &[usize], batch_norm: bool) -> (u64, usize) {
    let d = net.input.len();
    match net.arch {
        Arch::Mlp => (chain(d, widths), widths.last().copied().unwrap_or(d)),
        Arch::Conv => {
            let mut total = 0u64;
            let mut cin = net.input.channels;
            for (i, &c) in widths.iter().enumerate() {
                total = total.saturating_add(conv(cin, c));
                if batch_norm && i > 0 {
                    total = total.saturating_add(bn(c));
                }
                cin = c;
            }
            let (h, w) = reduced(net, widths.len());
            let feat = widths.last().map_or(d, |&c| c.saturating_mul(h).saturating_mul(w));
            (total, feat)
        }
    }
}

/// Latent → image through `widths` (from the latent side outwards; batch norm on every layer
/// but the last): parameters.
pub fn expand_params(net: &NetConfig, widths: &[usize], batch_norm: bool) -> u64 {
    let (d, l) = (net.input.len(), net.latent_dim);
    match net.arch {
        Arch::Mlp => {
            let outs: Vec<usize> = widths.iter().copied().chain([d]).collect();
            chain(l, &outs)
        }
        Arch::Conv => {
            let (h, w) = reduced(net, widths.len());
            let c0 = widths.first().copied().unwrap_or(net.input.channels);
            let start = c0.saturating_mul(h).saturating_mul(w);
            let mut total = linear(l, start);
            if batch_norm {
                total = total.saturating_add(bn(c0));
            }
            let outs: Vec<usize> = widths.iter().skip(1).copied().chain([net.input.channels]).collect();
            let mut cin = c0;
            for (i, &c) in outs.iter().enumerate() {
                total = total.saturating_add(conv(cin, c));
                if batch_norm && i + 1 < outs.len() {
                    total = total.saturating_add(bn(c));
                }
                cin = c;
            }
            total
        }
    }
}

/// Multiply-adds of a chain of linear layers through `dims` (first = input size).
pub fn mlp_macs(dims: &[usize]) -> u64 {
    dims.windows(2).map(|w| mul(w[0], w[1])).sum()
}

/// Multiply-adds of the stride-2 convs through `channels` and the feature count they leave.
/// A transposed conv mirroring them costs the same.
pub fn conv_macs(net: &NetConfig, channels: &[usize]) -> (u64, u64) {
    let (mut h, mut w, mut c) = (net.input.height, net.input.width, net.input.channels);
    let mut macs = 0u64;
    for &co in channels {
        h /= 2;
        w /= 2;
        macs += (h * w * co * c * 16) as u64;
        c = co;
    }
    (macs, (h * w * c) as u64)
}
