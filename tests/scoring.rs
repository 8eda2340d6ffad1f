//! Scoring: likelihoods against the training losses, the IWAE estimator against a closed form,
//! AUROC against hand-computed cases, and outlier detection with a VAE trained on the built-in
//! digits. Run with `--release`.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab::engine::config::{preset, RunConfig};
use genlab::engine::data::{builtin, DataSource, Dataset, ImageShape, SplitKind};
use genlab::engine::kernels::{reference, RowLoss};
use genlab::engine::models::{build_model, AdamConfig, Family, GenerativeModel, LossKey, ReconLoss};
use genlab::engine::scoring::{
    auroc, cb_log_norm, hold_out_classes, importance_weighted, recon_error, roc_curve, score_dataset,
    score_indices, write_per_sample_csv, Likelihood, ScoreOptions, ScoredSet,
};
use genlab::engine::session::TrainingSession;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MNIST: ImageShape = ImageShape::new(1, 28, 28);

fn digits() -> &'static Arc<Dataset> {
    static DATA: OnceLock<Arc<Dataset>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(builtin::load().expect("built-in digits")))
}

/// The mnist_vae preset trained for a few epochs, shared by the tests below (trained once).
fn trained_vae() -> &'static TrainingSession {
    static SESSION: OnceLock<TrainingSession> = OnceLock::new();
    SESSION.get_or_init(|| {
        let mut cfg = preset("mnist_vae", MNIST).unwrap();
        cfg.train.epochs = 6;
        cfg.train.eval_limit = 128;
        let mut s = TrainingSession::new(cfg, digits().clone()).unwrap();
        let t0 = Instant::now();
        let mut last = None;
        while !s.is_finished() {
            let r = s.step().unwrap();
            assert!(!r.diverged);
            if let Some(e) = r.epoch_end {
                last = Some(e.train.get(LossKey::Loss).unwrap());
            }
        }
        eprintln!(
            "trained mnist_vae: {} steps in {:.1} s, train loss {last:?}",
            s.step_count(),
            t0.elapsed().as_secs_f64()
        );
        s
    })
}

fn score(model: &dyn GenerativeModel, data: &Dataset, idx: &[usize], opts: &ScoreOptions) -> ScoredSet {
    score_indices(model, data, idx, opts, &mut |_, _| true).unwrap().unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

// ---------------------------------------------------------------------------------------------
// AUROC and ROC

#[test]
fn auroc_matches_hand_computed_cases() {
    assert_eq!(auroc(&[1.0, 2.0, 3.0], &[4.0, 5.0]), Some(1.0));
    assert_eq!(auroc(&[4.0, 5.0], &[1.0, 2.0, 3.0]), Some(0.0));
    // Pairs (in, out): (1,2) 1, (1,3) 1, (2,2) ½, (2,3) 1 → 3.5 / 4.
    assert_eq!(auroc(&[1.0, 2.0], &[2.0, 3.0]), Some(0.875));
    // Everything tied: every pair counts ½.
    assert_eq!(auroc(&[7.0; 3], &[7.0; 5]), Some(0.5));
    // scikit-learn's example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] → 0.75.
    assert_eq!(auroc(&[0.1, 0.4], &[0.35, 0.8]), Some(0.75));
    // Ties across sets plus a clear win: in {1, 2, 2}, out {2, 3}:
    // out=2: beats 1 (1) and ties two 2s (½ + ½) → 2; out=3: beats all 3 → 3. 5 / 6.
    assert!((auroc(&[1.0, 2.0, 2.0], &[2.0, 3.0]).unwrap() - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(auroc(&[], &[1.0]), None);
    assert_eq!(auroc(&[1.0], &[]), None);
}

#[test]
fn roc_curve_has_the_expected_points_and_area() {
    let roc = roc_curve(&[0.1, 0.4], &[0.35, 0.8]);
    let pts: Vec<(f64, f64)> = roc.iter().map(|p| (p.fpr, p.tpr)).collect();
    assert_eq!(pts, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    assert_eq!(roc[1].threshold, 0.8);
    assert_eq!(roc[4].threshold, 0.1);

    // With ties the curve takes a diagonal step, and the trapezoid area equals the AUROC.
    let mut rng = StdRng::seed_from_u64(3);
    let inl: Vec<f64> = (0..300).map(|_| rng.random_range(0..20) as f64).collect();
    let out: Vec<f64> = (0..200).map(|_| rng.random_range(5..30) as f64).collect();
    let roc = roc_curve(&inl, &out);
    let area: f64 = roc.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum();
    let a = auroc(&inl, &out).unwrap();
    assert!((area - a).abs() < 1e-12, "area {area} vs auroc {a}");
    assert!(a > 0.5 && a < 1.0);
    assert_eq!(roc.last().map(|p| (p.fpr, p.tpr)), Some((1.0, 1.0)));
    assert!(roc.windows(2).all(|w| w[1].fpr >= w[0].fpr && w[1].tpr >= w[0].tpr));
}

// ---------------------------------------------------------------------------------------------
// Likelihoods

#[test]
fn likelihoods_match_the_training_losses() {
    let mut rng = StdRng::seed_from_u64(1);
    let (b, d) = (5, 40);
    let x: Vec<f32> = (0..b * d).map(|_| rng.random::<f32>()).collect();
    let l: Vec<f32> = (0..b * d).map(|_| rng.random_range(-8.0..8.0f32)).collect();
    let xt = Tensor::from_slice(&x, (b, d), &Device::Cpu).unwrap();
    let lt = Tensor::from_slice(&l, (b, d), &Device::Cpu).unwrap();
    let bce = reference::row_loss(&lt, &xt, RowLoss::BceWithLogits).unwrap().to_vec1::<f32>().unwrap();
    let se = reference::row_loss(&lt, &xt, RowLoss::SquaredError).unwrap().to_vec1::<f32>().unwrap();
    for i in 0..b {
        let (xi, li) = (&x[i * d..(i + 1) * d], &l[i * d..(i + 1) * d]);
        let bern = Likelihood::Bernoulli.log_prob(xi, li);
        assert!((bern + bce[i] as f64).abs() < 1e-3, "{bern} vs −{}", bce[i]);
        assert!((recon_error(ReconLoss::Bce, xi, li) - bce[i] as f64).abs() < 1e-3);
        let gauss = Likelihood::Gaussian.log_prob(xi, li);
        let want = -(se[i] as f64) - 0.5 * d as f64 * std::f64::consts::PI.ln();
        assert!((gauss - want).abs() < 1e-3, "{gauss} vs {want}");
        assert!((recon_error(ReconLoss::Mse, xi, li) - se[i] as f64).abs() < 1e-4);
        // The continuous Bernoulli adds Σ log C ≥ D ln 2 > 0 to the Bernoulli term.
        let cb = Likelihood::ContinuousBernoulli.log_prob(xi, li);
        let extra: f64 = li.iter().map(|&l| cb_log_norm(l as f64)).sum();
        assert!((cb - bern - extra).abs() < 1e-9);
        assert!(extra >= d as f64 * std::f64::consts::LN_2);
    }
    // The Gaussian with variance ½ is the normalised density N(x; x̂, ½) per pixel.
    let (xv, lv) = (0.3f32, 0.7f32);
    let xhat = 1.0 / (1.0 + (-(lv as f64)).exp());
    let normal =
        (-((xv as f64 - xhat).powi(2)) / (2.0 * 0.5)).exp() / (2.0 * std::f64::consts::PI * 0.5).sqrt();
    assert!((Likelihood::Gaussian.log_prob(&[xv], &[lv]) - normal.ln()).abs() < 1e-9);
}

#[test]
fn continuous_bernoulli_normaliser_is_stable_and_normalises() {
    let ln2 = std::f64::consts::LN_2;
    assert_eq!(cb_log_norm(0.0), ln2);
    // Against the defining λ form away from ½ (λ = σ(l)).
    let lambda_form = |lam: f64| (2.0 * (1.0 - 2.0 * lam).atanh() / (1.0 - 2.0 * lam)).ln();
    // (Further out the λ form is the inaccurate one: 1 − 2λ rounds towards 1 and atanh blows
    // up; there C ≈ |l|, checked below.)
    for l in [-9.0f64, -6.0, -1.0, -0.3, -0.05, 0.02, 0.2, 1.5, 9.0] {
        let lam = 1.0 / (1.0 + (-l).exp());
        let (got, want) = (cb_log_norm(l), lambda_form(lam));
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "l = {l}: {got} vs {want}");
    }
    for l in [-30.0f64, 40.0, 700.0, -1e6] {
        assert!((cb_log_norm(l) - l.abs().ln()).abs() < 1e-12, "l = {l}");
    }
    // Continuous across the Taylor / direct switch and symmetric in l.
    for l in [0.019_999, 0.02, 0.020_001, 1e-6, 1e-300] {
        assert!((cb_log_norm(l) - cb_log_norm(-l)).abs() < 1e-15);
    }
    // At the switch (|l| = 0.02) the series agrees with the direct formula, still accurate there.
    for l in [0.015f64, 0.019_999_999, 0.020_000_001, -0.019_999_999] {
        let u = 0.5 * l.abs();
        let direct = ln2 + (u / u.tanh()).ln();
        assert!((cb_log_norm(l) - direct).abs() < 1e-14, "l = {l}: {} vs {direct}", cb_log_norm(l));
    }
    // Close to ½ the λ form loses its digits; the logit form still sits on the series.
    let near = cb_log_norm(1e-7);
    assert!((near - ln2).abs() < 1e-14 && near >= ln2);
    // A proper density: ∫₀¹ C(λ) λ^x (1−λ)^(1−x) dx = 1 (Simpson's rule).
    for l in [-4.0f64, -0.5, 0.0, 0.001, 3.0] {
        let n = 2000;
        let f = |x: f64| Likelihood::ContinuousBernoulli.log_prob(&[x as f32], &[l as f32]).exp();
        let h = 1.0 / n as f64;
        let s: f64 = (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * f(i as f64 * h)
            })
            .sum::<f64>()
            * h
            / 3.0;
        assert!((s - 1.0).abs() < 1e-4, "l = {l}: integral {s}");
    }
}

// ---------------------------------------------------------------------------------------------
// The IWAE core against a linear-Gaussian model with a known marginal

/// x = W z + b + noise, z ~ N(0, I₂), noise ~ N(0, s² I₃): p(x) = N(b, W Wᵀ + s² I).
struct LinearGaussian {
    w: [[f64; 2]; 3],
    b: [f64; 3],
    s2: f64,
}

// Small dense linear algebra reads best with explicit indices.
#[allow(clippy::needless_range_loop)]
impl LinearGaussian {
    fn log_lik(&self, x: &[f64; 3], z: &[f32]) -> f64 {
        (0..3)
            .map(|d| {
                let m = self.w[d][0] * z[0] as f64 + self.w[d][1] * z[1] as f64 + self.b[d];
                -0.5 * ((x[d] - m).powi(2) / self.s2 + (2.0 * std::f64::consts::PI * self.s2).ln())
            })
            .sum()
    }

    /// Exact log N(x; b, W Wᵀ + s² I) through a Cholesky factor.
    fn log_marginal(&self, x: &[f64; 3]) -> f64 {
        let mut c = [[0.0f64; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] = self.w[i][0] * self.w[j][0] + self.w[i][1] * self.w[j][1];
            }
            c[i][i] += self.s2;
        }
        let mut l = [[0.0f64; 3]; 3];
        for i in 0..3 {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
                l[i][j] = if i == j { (c[i][i] - s).sqrt() } else { (c[i][j] - s) / l[j][j] };
            }
        }
        let r: Vec<f64> = (0..3).map(|d| x[d] - self.b[d]).collect();
        let mut y = [0.0f64; 3];
        for i in 0..3 {
            y[i] = (r[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
        }
        let quad: f64 = y.iter().map(|v| v * v).sum();
        let logdet: f64 = 2.0 * (0..3).map(|i| l[i][i].ln()).sum::<f64>();
        -0.5 * (quad + logdet + 3.0 * (2.0 * std::f64::consts::PI).ln())
    }

    /// The exact posterior's mean and the diagonal of its covariance:
    /// S = (I + WᵀW / s²)⁻¹, m = S Wᵀ (x − b) / s².
    fn posterior(&self, x: &[f64; 3]) -> ([f64; 2], [f64; 2]) {
        let mut a = [[0.0f64; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                a[i][j] = (0..3).map(|d| self.w[d][i] * self.w[d][j]).sum::<f64>() / self.s2;
            }
            a[i][i] += 1.0;
        }
        let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
        let s = [[a[1][1] / det, -a[0][1] / det], [-a[1][0] / det, a[0][0] / det]];
        let v: Vec<f64> = (0..2)
            .map(|i| (0..3).map(|d| self.w[d][i] * (x[d] - self.b[d])).sum::<f64>() / self.s2)
            .collect();
        let m = [s[0][0] * v[0] + s[0][1] * v[1], s[1][0] * v[0] + s[1][1] * v[1]];
        (m, [s[0][0], s[1][1]])
    }
}

#[test]
fn iwae_recovers_a_linear_gaussian_marginal() {
    let model = LinearGaussian { w: [[1.0, 0.5], [-0.3, 0.8], [0.6, -1.2]], b: [0.2, -0.1, 0.5], s2: 0.3 };
    let xs: Vec<[f64; 3]> = vec![[0.0, 0.0, 0.0], [1.5, -0.7, 2.0], [-2.0, 1.0, -1.0], [0.3, 0.3, 3.5]];
    // q: the exact posterior mean with a diagonal variance `scale`× the posterior's marginal
    // variances, its mean moved by `shift` (a mean-field q cannot hold the correlation).
    let q = |scale: f64, shift: f64| -> (Vec<f32>, Vec<f32>) {
        let (mut mu, mut logvar) = (Vec::new(), Vec::new());
        for x in &xs {
            let (m, v) = model.posterior(x);
            mu.extend(m.iter().map(|&m| (m + shift) as f32));
            logvar.extend(v.iter().map(|&v| (scale * v).ln() as f32));
        }
        (mu, logvar)
    };
    let run = |(mu, logvar): &(Vec<f32>, Vec<f32>), k: usize, seed: u64| {
        let mut rng = StdRng::seed_from_u64(seed);
        importance_weighted(mu, logvar, 2, k, 4096, &mut rng, |items, z| {
            Ok(items.iter().enumerate().map(|(r, &i)| model.log_lik(&xs[i], &z[r * 2..r * 2 + 2])).collect())
        })
        .unwrap()
    };
    // Wider than the posterior keeps the weights tame: at large K the estimate is exact.
    let good = q(1.5, 0.0);
    let big = run(&good, 20_000, 11);
    for (x, e) in xs.iter().zip(&big) {
        let exact = model.log_marginal(x);
        eprintln!("x = {x:?}: exact {exact:.4}, IWAE(20000) {:.4}, ELBO {:.4}", e.log_px, e.mean_log_w);
        assert!((e.log_px - exact).abs() < 0.05, "IWAE {} vs exact {exact}", e.log_px);
        // The ELBO sits below log p(x) by KL(q ‖ p(z|x)) > 0 (q is not the posterior).
        assert!(e.mean_log_w < exact - 1e-3, "ELBO {} vs exact {exact}", e.mean_log_w);
    }
    // With a poor q (off-centre and too narrow) the bound is loose at K = 1 and, averaged over
    // seeds, rises towards log p(x) as K grows.
    let poor = q(0.5, 0.8);
    let avg = |k: usize| -> Vec<f64> {
        let runs: Vec<_> = (0..300).map(|s| run(&poor, k, 1000 + s)).collect();
        (0..xs.len()).map(|i| runs.iter().map(|r| r[i].log_px).sum::<f64>() / runs.len() as f64).collect()
    };
    let (k1, k8, k64) = (avg(1), avg(8), avg(64));
    for (i, x) in xs.iter().enumerate() {
        let exact = model.log_marginal(x);
        eprintln!(
            "poor q, x = {x:?}: K=1 {:.4}, K=8 {:.4}, K=64 {:.4}, exact {exact:.4}",
            k1[i], k8[i], k64[i]
        );
        assert!(
            k1[i] < k8[i] && k8[i] < k64[i] && k64[i] < exact + 0.02,
            "{} {} {} {exact}",
            k1[i],
            k8[i],
            k64[i]
        );
        assert!(k1[i] < exact - 0.3, "a poor q should leave a clear gap at K = 1");
    }
}

#[test]
fn iwae_chunking_does_not_change_the_estimate() {
    // The same draws in one pass or in passes of 7 rows give the same numbers.
    let mu = vec![0.1f32, -0.2, 0.5, 0.0, 1.0, 2.0];
    let logvar = vec![-1.0f32, 0.0, 0.3, -0.5, 0.0, -2.0];
    let lik = |items: &[usize], z: &[f32]| -> genlab::engine::Result<Vec<f64>> {
        Ok(items
            .iter()
            .enumerate()
            .map(|(r, &i)| -(z[r * 2] as f64 - i as f64).powi(2) - z[r * 2 + 1] as f64)
            .collect())
    };
    let a = importance_weighted(&mu, &logvar, 2, 10, 10_000, &mut StdRng::seed_from_u64(5), lik).unwrap();
    let b = importance_weighted(&mu, &logvar, 2, 10, 7, &mut StdRng::seed_from_u64(5), lik).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    assert!(importance_weighted(&mu, &logvar, 4, 0, 7, &mut StdRng::seed_from_u64(5), lik).is_err());
}

// ---------------------------------------------------------------------------------------------
// A VAE trained on the built-in digits

#[test]
fn iwae_bounds_hold_on_a_trained_vae() {
    let s = trained_vae();
    let model = s.model();
    let data = digits();
    let idx: Vec<usize> = s.split().test.iter().copied().take(300).collect();
    let d = data.shape.len();

    // Per image and exactly: log p̂_K(x) ≥ the mean of the K single-draw ELBOs it is built from.
    let x = data.gather(&idx);
    let xt = Tensor::from_slice(&x, (idx.len(), d), &Device::Cpu).unwrap();
    let (mu, lv) = model.encode(&xt).unwrap().unwrap();
    let (mu, lv) = (
        mu.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        lv.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let latent = model.latent_dim();
    let mut rng = StdRng::seed_from_u64(9);
    let est = importance_weighted(&mu, &lv, latent, 16, 2048, &mut rng, |items, z| {
        let zt = Tensor::from_slice(z, (items.len(), latent), &Device::Cpu).unwrap();
        let logits = model.decode_logits(&zt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        Ok(items
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                Likelihood::Bernoulli.log_prob(&x[i * d..(i + 1) * d], &logits[r * d..(r + 1) * d])
            })
            .collect())
    })
    .unwrap();
    for e in &est {
        assert!(e.log_px >= e.mean_log_w - 1e-9, "IWAE {} below the mean ELBO {}", e.log_px, e.mean_log_w);
        assert!(e.log_px.is_finite());
    }

    // Over the set: −log p̂ falls (in expectation) as K grows, and stays below −ELBO.
    let by_k: Vec<(usize, f64, f64)> = [1usize, 4, 16, 64]
        .iter()
        .map(|&k| {
            let set = score(model, data, &idx, &ScoreOptions { k, ..ScoreOptions::default() });
            let iw: Vec<f64> = set.samples.iter().map(|s| s.neg_log_px.unwrap()).collect();
            let elbo: Vec<f64> = set.samples.iter().map(|s| s.neg_elbo.unwrap()).collect();
            (k, mean(&iw), mean(&elbo))
        })
        .collect();
    eprintln!("K, mean −log p̂, mean −ELBO: {by_k:?}");
    for w in by_k.windows(2) {
        assert!(w[1].1 <= w[0].1 + 0.05, "K = {} gave {} but K = {} gave {}", w[1].0, w[1].1, w[0].0, w[0].1);
    }
    for &(k, iw, elbo) in &by_k {
        assert!(iw <= elbo + 0.05, "K = {k}: IWAE {iw} above −ELBO {elbo}");
    }
    assert!(by_k[3].1 < by_k[0].1 - 1.0, "K = 64 should tighten the bound by over a nat: {by_k:?}");
    // −ELBO with β = 1 matches the training loss's evaluation (a single draw per image).
    let eval = genlab::engine::session::evaluate_indices(model, data, &idx, 128, 0).unwrap().unwrap();
    assert!(
        (by_k[3].2 - eval.get(LossKey::Loss).unwrap()).abs() < 1.0,
        "−ELBO {} vs evaluated loss {}",
        by_k[3].2,
        eval.get(LossKey::Loss).unwrap()
    );
    // Bits per dimension is the same number in other units.
    let set = score(model, data, &idx[..10], &ScoreOptions::default());
    for s in &set.samples {
        let bpd = s.neg_log_px.unwrap() / (d as f64 * std::f64::consts::LN_2);
        assert!((s.bits_per_dim.unwrap() - bpd).abs() < 1e-12);
    }
}

/// With K = 1 the IWAE estimate is log w = log p(x|z) + log p(z) − log q(z|x) for a single
/// z ~ q(z|x): a one-draw ELBO, with the KL estimated from that draw rather than in closed form.
/// Averaged over many independent seeds it must match −ELBO = E_q[−log p(x|z)] + KL (closed
/// form) computed with many draws, within a few standard errors. A wrong log q or log p(z)
/// term (a missing ½ log σ², a sign) shifts the first by a constant and fails this.
#[test]
fn k1_iwae_equals_the_elbo_in_expectation() {
    let data = digits();
    let mut cfg = preset("mnist_vae", MNIST).unwrap();
    cfg.model.net_mut().hidden = vec![64];
    cfg.model.net_mut().latent_dim = 8;
    let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
    for _ in 0..150 {
        assert!(!s.step().unwrap().diverged);
    }
    let model = s.model();
    let idx: Vec<usize> = s.split().test.iter().copied().take(6).collect();
    let t0 = Instant::now();

    // Per image: one K = 1 estimate per seed, and one −ELBO (K = 64 draws) per seed.
    let (seeds_k1, seeds_elbo) = (4000u64, 100u64);
    let per_seed = |k: usize, seeds: u64, pick: fn(&genlab::engine::scoring::SampleScore) -> f64| {
        let mut v = vec![Vec::new(); idx.len()];
        for seed in 0..seeds {
            let set =
                score(model, data, &idx, &ScoreOptions { k, seed: 7_000 + seed, ..ScoreOptions::default() });
            for (i, x) in set.samples.iter().enumerate() {
                v[i].push(pick(x));
            }
        }
        v
    };
    let k1 = per_seed(1, seeds_k1, |x| x.neg_log_px.unwrap());
    let elbo = per_seed(64, seeds_elbo, |x| x.neg_elbo.unwrap());
    let stat = |v: &[f64]| {
        let m = mean(v);
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (m, (var / v.len() as f64).sqrt())
    };
    for i in 0..idx.len() {
        let ((m1, se1), (me, see)) = (stat(&k1[i]), stat(&elbo[i]));
        let se = (se1 * se1 + see * see).sqrt();
        let z = (m1 - me) / se;
        eprintln!("image {}: K=1 mean {m1:.3} ± {se1:.3}, −ELBO {me:.3} ± {see:.3}, z = {z:.2}", idx[i]);
        assert!(se1 > 0.0 && see > 0.0, "the draws vary");
        // 4.5 standard errors: a false alarm has odds of about 1 in 150,000 per image.
        assert!(z.abs() < 4.5, "image {}: K = 1 IWAE {m1} vs −ELBO {me} (se {se}, z {z})", idx[i]);
        assert!(se < 0.5, "too few draws to tell anything: se {se}");
    }
    // Not a tautology: a single K = 1 draw is not its own −ELBO, the estimates only agree on
    // average.
    let one = score(model, data, &idx, &ScoreOptions { k: 1, seed: 3, ..ScoreOptions::default() });
    assert!(one.samples.iter().any(|x| (x.neg_log_px.unwrap() - x.neg_elbo.unwrap()).abs() > 1e-3));
    eprintln!("{} K=1 and {} K=64 scorings in {:.1} s", seeds_k1, seeds_elbo, t0.elapsed().as_secs_f64());
}

#[test]
fn trained_vae_flags_noise_and_inverted_digits() {
    let s = trained_vae();
    let data = digits();
    let test = s.split().get(SplitKind::Test).to_vec();
    let opts = ScoreOptions { k: 64, ..ScoreOptions::default() };
    let t0 = Instant::now();
    let inliers = score(s.model(), data, &test, &opts);
    let secs = t0.elapsed().as_secs_f64();

    let mut rng = StdRng::seed_from_u64(21);
    let d = MNIST.len();
    let noise: Vec<f32> = (0..test.len() * d).map(|_| rng.random::<f32>()).collect();
    let noise = Dataset::new("noise", DataSource::Builtin, MNIST, noise, None).unwrap();
    let inverted: Vec<f32> = data.gather(&test).iter().map(|v| 1.0 - v).collect();
    let inverted = Dataset::new("inverted", DataSource::Builtin, MNIST, inverted, None).unwrap();
    let noise = score_dataset(s.model(), &noise, &opts, &mut |_, _| true).unwrap().unwrap();
    let inverted = score_dataset(s.model(), &inverted, &opts, &mut |_, _| true).unwrap().unwrap();

    let summary = inliers.summary();
    eprintln!("digits ({} images, K = 64, {secs:.1} s): {summary:?}", test.len());
    eprintln!("noise: {:?}", noise.summary());
    eprintln!("inverted: {:?}", inverted.summary());
    let a_noise = auroc(&inliers.anomaly_scores(), &noise.anomaly_scores()).unwrap();
    let a_inv = auroc(&inliers.anomaly_scores(), &inverted.anomaly_scores()).unwrap();
    eprintln!("AUROC digits vs noise {a_noise:.5}, vs inverted {a_inv:.5}");
    assert!(a_noise >= 0.99, "noise AUROC {a_noise}");
    assert!(a_inv >= 0.99, "inverted AUROC {a_inv}");

    // The summary reports every VAE score with a standard error; digits cost ~100 nats.
    let names: Vec<&str> = summary.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["recon", "kl_nats", "elbo_nats", "iwae_nats", "bits_per_dim"]);
    let iw = summary[3].1;
    assert!(iw.mean > 50.0 && iw.mean < 160.0, "{iw:?}");
    assert!(iw.stderr > 0.0 && iw.stderr < 2.0, "{iw:?}");
    assert_eq!(inliers.k, 64);
    assert_eq!(inliers.samples[0].label, data.labels.as_ref().map(|l| l[test[0]]));
}

#[test]
fn scoring_converts_shapes_and_can_be_cancelled() {
    let s = trained_vae();
    let data = digits();
    // A 14×14 RGB copy of a few digits: converted back to 1×28×28 with a notice.
    let small = data.converted_to(ImageShape::new(3, 14, 14));
    let idx: Vec<usize> = (8000..8040).collect();
    let opts = ScoreOptions { k: 8, ..ScoreOptions::default() };
    let set = score(s.model(), &small, &idx, &opts);
    assert!(set.notice.as_deref().is_some_and(|n| n.contains("3×14×14")), "{:?}", set.notice);
    assert_eq!(set.samples.len(), 40);
    assert!(set.samples.iter().all(|s| s.neg_log_px.is_some_and(f64::is_finite)));
    assert!(score(s.model(), data, &idx, &opts).notice.is_none());

    // Cancelling after the first batch returns None; the callback saw (done, total).
    let opts = ScoreOptions { k: 64, max_rows: 640, ..ScoreOptions::default() };
    let mut calls = Vec::new();
    let r = score_indices(s.model(), data, &idx, &opts, &mut |d, t| {
        calls.push((d, t));
        false
    })
    .unwrap();
    assert!(r.is_none());
    assert_eq!(calls, vec![(10, 40)]);
    assert!(score_indices(s.model(), data, &[99_999], &opts, &mut |_, _| true).is_err());

    // Per-sample CSV: a header and one row per image.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.csv");
    let set = score(s.model(), data, &idx[..5], &ScoreOptions { k: 4, ..ScoreOptions::default() });
    write_per_sample_csv(&path, &[("test", &set), ("again", &set)]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "index,label,set,recon,kl_nats,elbo_nats,iwae_nats,bits_per_dim,anomaly");
    assert_eq!(lines.len(), 11);
    assert!(lines[1].starts_with(&format!("8000,{},test,", data.labels.as_ref().unwrap()[8000])));
}

// ---------------------------------------------------------------------------------------------
// Autoencoders and GANs

#[test]
fn autoencoder_scores_are_its_training_loss() {
    let data = digits();
    for loss in [ReconLoss::Mse, ReconLoss::Bce] {
        let mut cfg = preset("mnist_ae", MNIST).unwrap();
        *cfg.model.recon_loss_mut().unwrap() = loss;
        let mut s = TrainingSession::new(cfg, data.clone()).unwrap();
        for _ in 0..20 {
            s.step().unwrap();
        }
        let idx: Vec<usize> = s.split().test.iter().copied().take(300).collect();
        let set = score(s.model(), data, &idx, &ScoreOptions::default());
        assert_eq!(set.k, 0);
        assert!(set.samples.iter().all(|x| x.neg_log_px.is_none() && x.recon.is_some()));
        let eval = genlab::engine::session::evaluate_indices(s.model(), data, &idx, 100, 0).unwrap().unwrap();
        let m = mean(&set.anomaly_scores());
        assert!(
            (m - eval.get(LossKey::Loss).unwrap()).abs() < 1e-3 * eval.get(LossKey::Loss).unwrap().max(1.0),
            "{loss:?}: {m} vs {}",
            eval.get(LossKey::Loss).unwrap()
        );
    }
}

#[test]
fn gan_scores_are_discriminator_logits() {
    let data = digits();
    let cfg = preset("mnist_mlp_gan", MNIST).unwrap();
    let model =
        build_model(&cfg.model, &AdamConfig::default(), 4, &genlab::engine::kernels::Exec::cpu()).unwrap();
    let idx: Vec<usize> = (0..50).collect();
    let set = score(model.as_ref(), data, &idx, &ScoreOptions::default());
    assert_eq!(set.family, Family::Gan);
    assert_eq!(set.anomaly_name(), "-disc_logit");
    let x = Tensor::from_vec(data.gather(&idx[..3]), (3, MNIST.len()), &Device::Cpu).unwrap();
    let logits = model.discriminate(&x).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (s, l) in set.samples.iter().zip(logits) {
        assert!((s.disc_logit.unwrap() - l as f64).abs() < 1e-6);
        assert_eq!(s.anomaly(), -s.disc_logit.unwrap());
        assert!(s.neg_log_px.is_none() && s.recon.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// The hold-out-classes experiment

#[test]
fn hold_out_one_class_runs_end_to_end() {
    let data = digits();
    let mut cfg: RunConfig = preset("mnist_vae", MNIST).unwrap();
    cfg.train.epochs = 1;
    let inliers: Vec<u32> = (0..10).filter(|&d| d != 1).collect();
    let mut calls = 0usize;
    let t0 = Instant::now();
    let report = hold_out_classes(
        cfg,
        data,
        &inliers,
        40,
        &ScoreOptions { k: 4, ..ScoreOptions::default() },
        &mut |d, t| {
            calls += 1;
            assert!(d <= t);
            true
        },
    )
    .unwrap()
    .unwrap();
    eprintln!(
        "hold out digit 1: {} train images, {} steps, loss {:.1}, AUROC {:.3}, per class {:?} ({:.1} s)",
        report.train_images,
        report.steps,
        report.final_loss,
        report.auroc,
        report.per_class_auroc,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(report.steps, 40);
    assert!(report.train_images > 6000 && report.train_images < 8000);
    assert_eq!(report.scores.samples.len(), 2000);
    // The ones are the digits with the least ink, and a likelihood model rates them *more* likely
    // than the digits it was trained on even when it never saw one: 0.122–0.168 over training
    // seeds 1–6 at these settings. A score with its sign flipped, or inliers and outliers swapped,
    // gives one minus that.
    assert!(report.auroc < 0.3, "held-out ones should look more likely, not less: {}", report.auroc);
    assert_eq!(report.per_class_auroc.len(), 1);
    assert_eq!(report.per_class_auroc[0].0, 1);
    assert!((report.per_class_auroc[0].1 - report.auroc).abs() < 1e-12);
    assert!(report.final_loss.is_finite());
    assert!(calls > 40);
    assert_eq!(report.roc.last().map(|p| (p.fpr, p.tpr)), Some((1.0, 1.0)));

    // Nonsense requests are refused with a message, not a panic.
    let cfg = preset("mnist_vae", MNIST).unwrap();
    let all: Vec<u32> = (0..10).collect();
    assert!(hold_out_classes(cfg.clone(), data, &all, 1, &ScoreOptions::default(), &mut |_, _| true).is_err());
    assert!(hold_out_classes(cfg.clone(), data, &[], 1, &ScoreOptions::default(), &mut |_, _| true).is_err());
    assert!(hold_out_classes(cfg, data, &[42], 1, &ScoreOptions::default(), &mut |_, _| true).is_err());
}

/// The hold-out experiment takes the steps asked for even when they run past the epochs of the
/// configuration (the subset it trains on is smaller than the data those epochs were set for).
#[test]
fn hold_out_takes_the_steps_asked_for_past_the_configured_epochs() {
    let shape = ImageShape::new(1, 4, 4);
    let n = 80;
    let images: Vec<f32> = (0..n * 16).map(|i| ((i * 7 + i / 16) % 11) as f32 / 10.0).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let data = Dataset::new("two classes", DataSource::Builtin, shape, images, Some(labels)).unwrap();
    let mut cfg: RunConfig = preset("mnist_vae", shape).unwrap();
    cfg.model.net_mut().hidden = vec![4];
    cfg.model.net_mut().latent_dim = 2;
    cfg.train.batch_size = 16;
    cfg.train.epochs = 1; // about 32 label-0 training images: 2 steps an epoch
    let report = hold_out_classes(
        cfg,
        &data,
        &[0],
        9,
        &ScoreOptions { k: 2, ..ScoreOptions::default() },
        &mut |_, _| true,
    )
    .unwrap()
    .unwrap();
    assert_eq!(report.steps, 9);
}
