//! The scores checked against codes whose answer is known: the true factors (≈ 1), noise
//! (≈ 0, or chance for the FactorVAE score), and a rotation of the true factors (low: each
//! dimension mixes every factor).

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::*;

/// The full grid of `builtin:shapes`' factors: 3 × 4 × 8 × 8 × 8 rows.
fn grid() -> Factors {
    let sizes = vec![3, 4, 8, 8, 8];
    let n: usize = sizes.iter().product();
    let mut values = Vec::with_capacity(n * sizes.len());
    for i in 0..n {
        let mut rest = i;
        let mut row = vec![0u32; sizes.len()];
        for j in (0..sizes.len()).rev() {
            row[j] = (rest % sizes[j]) as u32;
            rest /= sizes[j];
        }
        values.extend(row);
    }
    Factors { names: ["shape", "scale", "rotation", "x", "y"].map(String::from).to_vec(), sizes, values }
}

/// The factors as codes (index values), then `extra` collapsed dimensions (constant 0).
fn true_codes(f: &Factors, extra: usize) -> (Vec<f32>, usize) {
    let d = f.k() + extra;
    let mut codes = Vec::with_capacity(f.len() * d);
    for i in 0..f.len() {
        codes.extend(f.of(i).iter().map(|&v| v as f32));
        codes.extend(std::iter::repeat_n(0.0, extra));
    }
    (codes, d)
}

fn noise(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Standardised factors turned by a random orthogonal matrix (Gram–Schmidt of a Gaussian one).
fn rotated_codes(f: &Factors, seed: u64) -> Vec<f32> {
    let k = f.k();
    let g = noise(k, k, seed);
    let mut q: Vec<Vec<f64>> = Vec::new();
    for r in 0..k {
        let mut v: Vec<f64> = g[r * k..(r + 1) * k].iter().map(|&x| x as f64).collect();
        for u in &q {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / norm).collect());
    }
    let z: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            let c: Vec<f64> = (0..f.len()).map(|i| f.of(i)[j] as f64).collect();
            let m = c.iter().sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c.len() as f64).sqrt();
            c.into_iter().map(|v| (v - m) / sd).collect()
        })
        .collect();
    let mut codes = Vec::with_capacity(f.len() * k);
    for i in 0..f.len() {
        for row in &q {
            codes.push(row.iter().zip(&z).map(|(w, zj)| w * zj[i]).sum::<f64>() as f32);
        }
    }
    codes
}

fn report(name: &str, r: &DisentanglementReport) {
    eprintln!(
        "{name}: MIG {:.3}, FactorVAE {:.3} (train {:.3}), DCI D {:.3} C {:.3}, active {}",
        r.mig,
        r.factor_vae.eval_accuracy,
        r.factor_vae.train_accuracy,
        r.dci.disentanglement,
        r.dci.completeness,
        r.active_units
    );
}

#[test]
fn mutual_information_matches_closed_forms() {
    let a: Vec<u32> = (0..8000).map(|i| (i % 8) as u32).collect();
    assert!((entropy(&a, 8) - 8f64.ln()).abs() < 1e-12);
    // b is a function of a (its parity): I(a; b) = H(b) = ln 2.
    let b: Vec<u32> = a.iter().map(|v| v % 2).collect();
    assert!((mutual_info(&a, 8, &b, 2) - 2f64.ln()).abs() < 1e-12);
    // Independent by construction (every pair equally often): I = 0.
    let c: Vec<u32> = (0..8000).map(|i| ((i / 8) % 4) as u32).collect();
    assert!(mutual_info(&a, 8, &c, 4).abs() < 1e-12);
    assert_eq!(discretize(&[0.0, 0.5, 1.0, 0.999], 2), vec![0, 1, 1, 1]);
    assert_eq!(discretize(&[3.0; 4], 20), vec![0; 4]);
}

#[test]
fn the_true_factors_score_one() {
    let f = grid();
    let (codes, d) = true_codes(&f, 5);
    let r = score_codes(&codes, d, &f, &ScoreOptions::default()).unwrap();
    report("true factors", &r);
    assert!(r.mig > 0.97, "MIG {}", r.mig);
    assert!(r.factor_vae.eval_accuracy > 0.99, "FactorVAE {:?}", r.factor_vae);
    assert!(r.dci.disentanglement > 0.97, "DCI {:?}", r.dci.disentanglement);
    assert!(r.dci.completeness > 0.97, "DCI completeness {:?}", r.dci.completeness);
    assert_eq!(r.active_units, 5);
    assert_eq!(r.factor_vae.active_dims, 5);
    let want: Vec<Option<usize>> = (0..5).map(Some).chain([None; 5]).collect();
    assert_eq!(r.captures, want);
    assert_eq!(r.captured_name(3), "x");
    // Flipped and rescaled, each dimension carries the same information.
    let flipped: Vec<f32> = codes.iter().map(|v| 5.0 - 3.0 * v).collect();
    let w = score_codes(&flipped, d, &f, &ScoreOptions::default()).unwrap();
    assert!((w.mig - r.mig).abs() < 1e-9, "flipped MIG {}", w.mig);
    assert!(w.dci.disentanglement > 0.97, "flipped DCI {}", w.dci.disentanglement);
}

#[test]
fn noise_scores_nothing() {
    let f = grid();
    let codes = noise(f.len(), 10, 1);
    let r = score_codes(&codes, 10, &f, &ScoreOptions::default()).unwrap();
    report("noise", &r);
    assert!(r.mig < 0.02, "MIG {}", r.mig);
    // Chance is about 1/5 (five factors); the majority vote adds a little on ten dimensions.
    assert!(r.factor_vae.eval_accuracy < 0.3, "FactorVAE {:?}", r.factor_vae);
    assert!(r.dci.disentanglement < 0.1, "DCI {}", r.dci.disentanglement);
    assert_eq!(r.active_units, 10);
}

#[test]
fn rotated_factors_score_low() {
    let f = grid();
    let codes = rotated_codes(&f, 2);
    let r = score_codes(&codes, 5, &f, &ScoreOptions::default()).unwrap();
    report("rotated factors", &r);
    assert!(r.mig < 0.25, "MIG {}", r.mig);
    assert!(r.dci.disentanglement < 0.3, "DCI {}", r.dci.disentanglement);
    // The FactorVAE score only asks which dimension varies least when a factor is fixed, and
    // under a generic rotation that is still mostly one dimension per factor (measured 0.86):
    // it is lower than the true factors' 1.0, not low. Kim & Mnih's majority vote is built to
    // accept codes that are not axis-aligned one-to-one; MIG and DCI are the ones that drop.
    assert!(r.factor_vae.eval_accuracy < 0.92, "FactorVAE {:?}", r.factor_vae);
}

/// Pairs of factors turned by 45°: fixing either factor of a pair shrinks both of its
/// dimensions equally, so the vote between them is a coin toss and the FactorVAE score drops
/// to about 1/5 · 1 + 4/5 · 1/2 = 0.6.
#[test]
fn pairwise_45_degree_rotations_defeat_the_factor_vae_score() {
    let f = grid();
    let k = f.k();
    let z: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            let c: Vec<f64> = (0..f.len()).map(|i| f.of(i)[j] as f64).collect();
            let m = c.iter().sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c.len() as f64).sqrt();
            c.into_iter().map(|v| (v - m) / sd).collect()
        })
        .collect();
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let mut codes = Vec::with_capacity(f.len() * k);
    let [s, sc, r, x, y] = [&z[0], &z[1], &z[2], &z[3], &z[4]];
    for i in 0..f.len() {
        let (s, sc, r, x, y) = (s[i], sc[i], r[i], x[i], y[i]);
        codes.extend([s, h * (sc + r), h * (sc - r), h * (x + y), h * (x - y)].map(|v| v as f32));
    }
    let r = score_codes(&codes, k, &f, &ScoreOptions::default()).unwrap();
    report("45° pairs", &r);
    assert!(r.factor_vae.eval_accuracy < 0.7, "FactorVAE {:?}", r.factor_vae);
    assert!(r.mig < 0.3, "MIG {}", r.mig);
    // Each pair dimension splits its importance over two of five factors: D = 1/5 · 1 +
    // 4/5 · (1 − log₅ 2) = 0.66.
    assert!((r.dci.disentanglement - 0.655).abs() < 0.03, "DCI {}", r.dci.disentanglement);
}

#[test]
fn a_dataset_without_factors_is_named_in_the_error() {
    let d = crate::engine::data::Dataset::new(
        "plain",
        crate::engine::data::DataSource::Builtin,
        crate::engine::data::ImageShape::new(1, 2, 2),
        vec![0.0; 8],
        None,
    )
    .unwrap();
    let cfg = crate::engine::config::preset("mnist_vae", d.shape).unwrap();
    let model =
        crate::engine::models::build_model(&cfg.model, &cfg.optim, 0, &crate::engine::kernels::Exec::cpu())
            .unwrap();
    let e = score_model(model.as_ref(), &d, &ScoreOptions::default()).unwrap_err().to_string();
    assert!(e.contains("plain has no ground-truth factors"), "{e}");
}
