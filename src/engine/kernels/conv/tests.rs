//! The convolutions against candle's stock ops.

use super::*;
use crate::engine::kernels::testing::{max_abs_diff, max_rel_diff, rand_tensor, Case, CASES};
use crate::engine::kernels::LEAKY_SLOPE;
use candle_core::{Device, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn conv2d_matches_candle() {
    let mut rng = StdRng::seed_from_u64(3);
    for case in CASES {
        let Case { batch: b, cin, cout, h, w, k, s, p } = case;
        let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
        let wt = Var::from_tensor(&rand_tensor(&[cout, cin, k, k], &mut rng)).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
        let ours = conv2d(&x, &wt, Some(&bias), s, p).unwrap();
        let theirs = x
            .conv2d(&wt, p, s, 1, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
            .unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {case:?}");

        // A random linear functional of the output, so every output position matters.
        let probe = rand_tensor(ours.dims(), &mut rng);
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
            let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {case:?}");
        }
    }
}

#[test]
fn conv_transpose2d_matches_candle() {
    let mut rng = StdRng::seed_from_u64(4);
    for case in CASES {
        let Case { batch: b, cin, cout, h, w, k, s, p } = case;
        let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
        let wt = Var::from_tensor(&rand_tensor(&[cin, cout, k, k], &mut rng)).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
        let ours = conv_transpose2d(&x, &wt, Some(&bias), s, p).unwrap();
        let theirs = x
            .conv_transpose2d(&wt, p, 0, s, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
            .unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {case:?}");

        let probe = rand_tensor(ours.dims(), &mut rng);
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
            let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {case:?}");
        }
    }
}

/// The fused ops ([`conv2d_act`], [`conv_transpose2d_act`]) against candle's stock
/// convolutions plus bias and activation, forward and all three gradients, for every
/// epilogue; with a plain-data input, no input gradient is formed.
#[test]
fn fused_convs_match_candle() {
    let mut rng = StdRng::seed_from_u64(6);
    let stock_act = |t: Tensor, e: Epilogue| match e {
        Epilogue::Identity => t,
        Epilogue::Relu => t.relu().unwrap(),
        Epilogue::LeakyRelu => candle_nn::ops::leaky_relu(&t, LEAKY_SLOPE as f64).unwrap(),
        Epilogue::Tanh => t.tanh().unwrap(),
        Epilogue::Sigmoid => candle_nn::ops::sigmoid(&t).unwrap(),
    };
    for e in [Epilogue::Identity, Epilogue::Relu, Epilogue::LeakyRelu, Epilogue::Tanh, Epilogue::Sigmoid] {
        for case in CASES {
            let Case { batch: b, cin, cout, h, w, k, s, p } = case;
            let geom = Geometry { kernel: k, stride: s, pad: p };
            for transpose in [false, true] {
                let x = Var::from_tensor(&rand_tensor(&[b, cin, h, w], &mut rng)).unwrap();
                let wshape = if transpose { [cin, cout, k, k] } else { [cout, cin, k, k] };
                let wt = Var::from_tensor(&rand_tensor(&wshape, &mut rng)).unwrap();
                let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
                let (ours, conv) = if transpose {
                    (
                        conv_transpose2d_act(&x, &wt, &bias, geom, e, None).unwrap(),
                        x.conv_transpose2d(&wt, p, 0, s, 1).unwrap(),
                    )
                } else {
                    (conv2d_act(&x, &wt, &bias, geom, e, None).unwrap(), x.conv2d(&wt, p, s, 1, 1).unwrap())
                };
                let theirs =
                    stock_act(conv.broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap(), e);
                let what = format!("{e:?}, transpose {transpose}, {case:?}");
                assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {what}");
                let probe = rand_tensor(ours.dims(), &mut rng);
                let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
                    let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                    assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, {what}");
                }
                let data = x.as_tensor().detach();
                let y = if transpose {
                    conv_transpose2d_act(&data, &wt, &bias, geom, e, None).unwrap()
                } else {
                    conv2d_act(&data, &wt, &bias, geom, e, None).unwrap()
                };
                let g = y.sum_all().unwrap().backward().unwrap();
                assert!(g.get(&data).is_none() && g.get(&wt).is_some(), "{what}");
            }
        }
    }
}

/// Batches spanning several chunks of [`CHUNK_VALUES`], the last one partial, cut into one
/// part per thread of pools of 1, 2 and 3 threads ([`Split`]): the fused convs against
/// candle's stock ones, forward and all three gradients.
#[test]
fn fused_convs_over_several_chunks_and_parts_match_candle() {
    let mut rng = StdRng::seed_from_u64(7);
    let geom = Geometry { kernel: 4, stride: 2, pad: 1 };
    // 16 channels × 4×4 kernel × 14×14 positions = 50176 column values an image: 5 a chunk.
    let (b, cin, cout) = (11, 16, 16);
    let per_image = cin * 16 * 14 * 14;
    assert!(chunk_images(per_image, b) < b);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let sp = pool.install(|| Split::new(per_image, b));
        assert_eq!(sp.parts, threads, "{sp:?}");
        assert!(sp.per_part * sp.parts >= b && sp.nb <= sp.per_part, "{sp:?}");
        if threads < 3 {
            assert!(sp.nb < sp.per_part, "several chunks a part: {sp:?}");
        }
        pool.install(|| several_chunks_case(geom, (b, cin, cout), threads, &mut rng));
    }
}

fn several_chunks_case(
    geom: Geometry,
    (b, cin, cout): (usize, usize, usize),
    threads: usize,
    rng: &mut StdRng,
) {
    for transpose in [false, true] {
        let (h, wshape) = if transpose { (14, [cin, cout, 4, 4]) } else { (28, [cout, cin, 4, 4]) };
        let x = Var::from_tensor(&rand_tensor(&[b, cin, h, h], rng)).unwrap();
        let wt = Var::from_tensor(&rand_tensor(&wshape, rng)).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&[cout], rng)).unwrap();
        let (ours, conv) = if transpose {
            (
                conv_transpose2d_act(&x, &wt, &bias, geom, Epilogue::LeakyRelu, None).unwrap(),
                x.conv_transpose2d(&wt, 1, 0, 2, 1).unwrap(),
            )
        } else {
            (
                conv2d_act(&x, &wt, &bias, geom, Epilogue::LeakyRelu, None).unwrap(),
                x.conv2d(&wt, 1, 2, 1, 1).unwrap(),
            )
        };
        let theirs = candle_nn::ops::leaky_relu(
            &conv.broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap(),
            LEAKY_SLOPE as f64,
        )
        .unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, transpose {transpose}, {threads} threads");
        let probe = rand_tensor(ours.dims(), rng);
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bias)] {
            let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(max_rel_diff(ga, gb) < 1e-3, "{name} gradient, transpose {transpose}, {threads} threads");
        }
    }
}

/// The direct 3×3 stride-1 path (where the CPU has AVX-512; im2col + gemm elsewhere) at the
/// U-Net's 28×28 × 16 channels, over several chunks and parts in pools of 1, 2 and 3 threads:
/// forward and all three gradients against candle's stock conv, and with a plain-data input
/// (no input gradient) the weight gradient alone.
#[test]
fn fused_3x3_stride_1_matches_candle_over_parts() {
    let mut rng = StdRng::seed_from_u64(8);
    let geom = Geometry { kernel: 3, stride: 1, pad: 1 };
    let (b, cin, cout, h) = (11, 16, 13, 28);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for track in [true, false] {
            let xt = rand_tensor(&[b, cin, h, h], &mut rng);
            let x = Var::from_tensor(&xt).unwrap();
            let xin = if track { x.as_tensor().clone() } else { xt.clone() };
            let wt = Var::from_tensor(&rand_tensor(&[cout, cin, 3, 3], &mut rng)).unwrap();
            let bias = Var::from_tensor(&rand_tensor(&[cout], &mut rng)).unwrap();
            let ours = pool.install(|| conv2d_act(&xin, &wt, &bias, geom, Epilogue::Tanh, None)).unwrap();
            let theirs = xin
                .conv2d(&wt, 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let theirs = theirs.tanh().unwrap();
            assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward, {threads} threads");
            let probe = rand_tensor(ours.dims(), &mut rng);
            let g_ours = pool.install(|| (ours * &probe).unwrap().sum_all().unwrap().backward()).unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(g_ours.get(&x).is_some(), track, "an input gradient only for a variable");
            let mut vars = vec![("weight", &wt), ("bias", &bias)];
            if track {
                vars.push(("input", &x));
            }
            for (name, v) in vars {
                let (ga, gb) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(
                    max_rel_diff(ga, gb) < 1e-3,
                    "{name} gradient, {threads} threads, input tracked {track}"
                );
            }
        }
    }
}

#[test]
fn large_inputs_take_the_parallel_path_and_agree() {
    // Big enough for `for_each_chunk` to use rayon (when the pool has two threads or more).
    let mut rng = StdRng::seed_from_u64(5);
    let x = rand_tensor(&[64, 8, 14, 14], &mut rng);
    let w = rand_tensor(&[8, 4, 4, 4], &mut rng);
    let ours = conv_transpose2d(&x, &w, None, 2, 1).unwrap();
    let theirs = x.conv_transpose2d(&w, 1, 0, 2, 1).unwrap();
    assert!(max_abs_diff(&ours, &theirs) < 1e-4);
    let w = rand_tensor(&[16, 8, 4, 4], &mut rng);
    let ours = conv2d(&x, &w, None, 2, 1).unwrap();
    let theirs = x.conv2d(&w, 1, 2, 1, 1).unwrap();
    assert!(max_abs_diff(&ours, &theirs) < 1e-4);
}

#[test]
fn mismatched_shapes_are_errors() {
    let x = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(&x, &w, None, 2, 1).is_err());
    assert!(conv_transpose2d(&x, &w, None, 2, 1).is_err());
    let g = Geometry { kernel: 4, stride: 2, pad: 1 };
    let cols = Tensor::zeros((16, 10), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(fold(&cols, (8, 8), g).is_err());
    let cols = Tensor::zeros((15, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(fold(&cols, (8, 8), g).is_err());
}
