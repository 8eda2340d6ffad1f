//! The sample-quality metrics prove themselves on real data used as "generators": held-out
//! digits score like the floor, one repeated digit covers nothing, half the classes give half
//! the recall, and noise has no precision. (A widely used library shipped precision and recall
//! swapped for years: the half-the-classes case tells them apart.)
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::sync::OnceLock;

use genlab::engine::data::{builtin, Dataset, Split};
use genlab::engine::quality::features::FeatureKind;
use genlab::engine::quality::{feature_net, QualityContext, Scored};

const N: usize = 1000;

struct Fixture {
    data: Dataset,
    split: Split,
    ctx: QualityContext,
}

/// The built-in digits, the shipped classifier and the reference, built once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let data = builtin::load().unwrap();
        let split = data.split(0.2, 0);
        let net = feature_net(&data, &split, &mut |m| eprintln!("{m}")).unwrap();
        let ctx = QualityContext::new(&data, &split, net, N, 0).unwrap();
        Fixture { data, split, ctx }
    })
}

/// Test images not used by the floor: the second half of the test split.
fn test_images(f: &Fixture, keep: impl Fn(u32) -> bool) -> Vec<f32> {
    let labels = f.data.labels.as_ref().unwrap();
    let idx: Vec<usize> = f.split.test.iter().copied().filter(|&i| keep(labels[i])).take(N).collect();
    f.data.gather(&idx)
}

fn show(name: &str, s: &Scored) {
    let m = &s.metrics;
    let c = s.classes.as_ref().unwrap();
    eprintln!(
        "{name:>18}: FD {:8.2}  KID {:10.2}  P {:.3} R {:.3} D {:.3} C {:.3}  confident {:.3}  classes {}",
        m.fd, m.kid, m.precision, m.recall, m.density, m.coverage, c.confident, c.covered
    );
}

#[test]
fn the_classifier_is_good_enough_to_judge_digits() {
    let f = fixture();
    match f.ctx.net.kind {
        FeatureKind::Classifier { classes, test_accuracy } => {
            assert_eq!(classes, 10);
            assert!(test_accuracy > 0.95, "test accuracy {test_accuracy}");
            // The shipped weights are what they claim: measured again here.
            let measured = f.ctx.net.accuracy(&f.data, &f.split.test).unwrap();
            assert!((measured - test_accuracy).abs() < 1e-3, "{measured} vs {test_accuracy}");
        }
        FeatureKind::Random { .. } => panic!("labelled data gets a classifier"),
    }
}

/// Held-out real digits: precision and recall near 1, FD near the floor, all ten classes.
#[test]
fn real_test_images_score_like_the_floor() {
    let f = fixture();
    let s = f.ctx.score_pixels(&test_images(f, |_| true)).unwrap();
    show("test images", &s);
    show("floor", &f.ctx.floor);
    show("ceiling", &f.ctx.ceiling);
    let (m, floor) = (&s.metrics, &f.ctx.floor.metrics);
    assert!(m.precision > 0.8 && m.recall > 0.8, "{m:?}");
    assert!(m.coverage > 0.8 && m.density > 0.7, "{m:?}");
    assert!(m.fd < 2.0 * floor.fd + 1.0, "FD {} against the floor's {}", m.fd, floor.fd);
    assert!(
        m.fd < 0.02 * f.ctx.ceiling.metrics.fd,
        "FD {} against noise's {}",
        m.fd,
        f.ctx.ceiling.metrics.fd
    );
    assert_eq!(s.classes.as_ref().unwrap().covered, 10);
}

/// One image repeated: the samples are real (precision stays) but cover nothing.
#[test]
fn one_repeated_image_has_no_recall_or_coverage() {
    let f = fixture();
    let one = f.data.image(f.split.test[0]).to_vec();
    let s = f.ctx.score_pixels(&one.repeat(N)).unwrap();
    show("one image", &s);
    let m = &s.metrics;
    assert!(m.recall < 0.05 && m.coverage < 0.05, "{m:?}");
    assert!(m.fd > 10.0 * f.ctx.floor.metrics.fd, "{m:?}");
    assert_eq!(s.classes.as_ref().unwrap().covered, 1);
}

/// Only digits 0–4: five classes covered and about half the recall, precision still high.
#[test]
fn half_the_classes_give_half_the_recall() {
    let f = fixture();
    let s = f.ctx.score_pixels(&test_images(f, |l| l < 5)).unwrap();
    show("digits 0-4", &s);
    let m = &s.metrics;
    assert_eq!(s.classes.as_ref().unwrap().covered, 5);
    assert!((0.3..0.7).contains(&m.recall), "recall {}", m.recall);
    assert!((0.3..0.7).contains(&m.coverage), "coverage {}", m.coverage);
    assert!(m.precision > 0.8, "precision {}", m.precision);
}

/// Uniform noise: no precision, nothing covered.
#[test]
fn noise_has_no_precision() {
    let f = fixture();
    let m = &f.ctx.ceiling.metrics;
    assert!(m.precision < 0.1 && m.recall < 0.05 && m.coverage < 0.05, "{m:?}");
}

/// Without labels the features come from a fixed random network, and the metrics still
/// order the cases: real < half the classes < one image, and real < noise.
#[test]
fn random_features_still_rank_the_cases() {
    let f = fixture();
    let mut unlabelled = f.data.clone();
    unlabelled.labels = None;
    let net = feature_net(&unlabelled, &f.split, &mut |_| {}).unwrap();
    assert!(matches!(net.kind, FeatureKind::Random { .. }));
    let ctx = QualityContext::new(&unlabelled, &f.split, net, N, 0).unwrap();
    let real = ctx.score_pixels(&test_images(f, |_| true)).unwrap().metrics;
    let half = ctx.score_pixels(&test_images(f, |l| l < 5)).unwrap().metrics;
    let one = ctx.score_pixels(&f.data.image(f.split.test[0]).repeat(N)).unwrap().metrics;
    let noise = ctx.ceiling.metrics;
    eprintln!(
        "random features: FD real {:.2} half {:.2} one {:.2} noise {:.2}",
        real.fd, half.fd, one.fd, noise.fd
    );
    assert!(real.fd < half.fd && half.fd < one.fd && real.fd < 0.1 * noise.fd);
    assert!(noise.precision < 0.1 && real.precision > 0.8);
    assert!(real.recall > half.recall && half.recall > one.recall);
    assert!(ctx.floor.classes.is_none());
}

/// Training images used as "samples" are copies: every one sits at distance 0 from its
/// nearest training image; held-out images sit where the scale says (about 5% closer than the
/// 5th percentile).
#[test]
fn memorisation_finds_copies_and_not_new_images() {
    use genlab::engine::quality::memorisation::memorisation;
    let f = fixture();
    let copies: Vec<usize> = f.split.train.iter().copied().step_by(16).take(300).collect();
    let m = memorisation(&f.ctx, &f.data, &f.split, &f.data.gather(&copies), 1000).unwrap();
    eprintln!(
        "copies: share closer {:.3}, test p5 {:.3}, median {:.3}",
        m.share_closer, m.test_p5, m.test_median
    );
    assert!(m.share_closer > 0.99, "{}", m.share_closer);
    // Zero up to the rounding of ‖a‖² + ‖b‖² − 2a·b in f32.
    let worst = m.pairs.iter().map(|p| p.distance).fold(0.0, f32::max);
    assert!(worst < 0.05 * m.test_p5, "a copy at distance {worst}");
    // Itself, or an identical twin in the data.
    let itself = m.pairs.iter().filter(|p| copies[p.sample] == p.train).count();
    assert!(itself >= copies.len() * 95 / 100, "{itself} of {} found themselves", copies.len());
    let fresh: Vec<usize> = f.split.test.iter().copied().skip(1000).take(500).collect();
    let m = memorisation(&f.ctx, &f.data, &f.split, &f.data.gather(&fresh), 1000).unwrap();
    eprintln!("held-out: share closer {:.3}", m.share_closer);
    assert!(m.share_closer < 0.15, "{}", m.share_closer);
}
