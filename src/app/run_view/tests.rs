//! The fold of events into runs, checked with plain events.

use super::*;
use crate::engine::data::{DataSource, ImageShape};
use crate::engine::models::Family;

fn started(run: u64, family: Family) -> Event {
    let mut config = RunConfig::default();
    config.model = config.model.with_family(family);
    Event::Started {
        run,
        capabilities: Box::new(config.model.capabilities()),
        config: Box::new(config),
        param_count: 1000,
        dataset: DatasetInfo {
            name: "d".into(),
            source: DataSource::Builtin,
            shape: ImageShape::new(1, 28, 28),
            train: 8000,
            test: 2000,
        },
        steps_per_epoch: 10,
        total_steps: 20,
        start_step: 0,
    }
}

fn metrics(run: u64, steps: std::ops::Range<u64>, lr: f64) -> Event {
    let steps = steps
        .map(|s| StepMetrics {
            step: s,
            epoch: (s as usize - 1) / 10,
            losses: Losses::of(&[
                (LossKey::Loss, 100.0 / s as f64),
                (LossKey::Recon, 90.0),
                (LossKey::Kl, 10.0),
            ]),
            learning_rate: lr,
            images_per_sec: 1000.0,
        })
        .collect();
    Event::Metrics { run, steps }
}

#[test]
fn fold_builds_history_markers_and_status() {
    let t = Instant::now();
    let mut v = RunView::default();
    assert_eq!(v.status(), Status::Idle);
    v.start_requested();
    assert_eq!(v.status(), Status::Starting);
    v.apply(started(1, Family::Vae), t);
    assert_eq!(v.status(), Status::Training);
    v.apply(metrics(1, 1..6, 1e-3), t);
    v.apply(Event::LearningRateChanged { run: 1, step: 5, lr: 1e-4 }, t);
    v.apply(metrics(1, 6..11, 1e-4), t);
    v.apply(
        Event::EpochEnded {
            run: 1,
            summary: EpochSummary { epoch: 0, train: Losses::of(&[(LossKey::Loss, 20.0)]), test: None },
        },
        t,
    );
    v.apply(Event::Paused { run: 1, step: 10 }, t);
    assert_eq!(v.status(), Status::Paused);

    let r = v.current().unwrap();
    assert_eq!(r.series.len(), 10);
    assert_eq!(r.series.keys, [LossKey::Loss, LossKey::Recon, LossKey::Kl]);
    assert_eq!(r.series.column(LossKey::Kl).unwrap()[3], 10.0);
    assert_eq!(r.step, 10);
    assert_eq!(r.learning_rate, 1e-4);
    assert_eq!(r.markers, vec![Marker { step: 5, kind: MarkerKind::LearningRate(1e-4) }]);
    assert_eq!(r.epochs[0].0, 10, "an epoch is placed at the last step seen");
    assert!((r.progress() - 0.5).abs() < 1e-6);
    assert!(r.eta().is_some());

    // Going back to step 7 forgets what came after it, and says so to the plot's caches.
    let revision = v.current().unwrap().series.revision;
    v.apply(Event::RewindPoints { run: 1, steps: vec![0, 7] }, t);
    v.apply(Event::Rewound { run: 1, step: 7 }, t);
    let r = v.current().unwrap();
    assert_eq!((r.series.len(), r.step, r.epochs.len()), (7, 7, 0));
    assert_eq!(r.series.revision, revision + 1);
    assert_eq!(r.series.learning_rates.len(), 7);
    assert_eq!(r.rewind_points, vec![0, 7]);
    assert_eq!(r.markers.len(), 1, "the lr change at step 5 stays");
    v.apply(metrics(1, 8..11, 1e-4), t);

    // Events of an unknown run are ignored; a stale run's events do not touch the new one.
    v.apply(metrics(9, 1..3, 1e-3), t);
    v.apply(Event::Finished { run: 1, step: 10, reason: FinishReason::Stopped }, t);
    assert_eq!(v.status(), Status::Finished(FinishReason::Stopped));
    v.apply(started(2, Family::Gan), t);
    v.apply(metrics(1, 11..13, 1e-4), t);
    assert_eq!(v.runs.len(), 2);
    assert_eq!(v.runs[0].series.len(), 12, "late metrics still land in their own run");
    assert_eq!(v.steps(), 0);
    assert_eq!(
        v.current().unwrap().series.keys,
        [LossKey::DLoss, LossKey::GLoss, LossKey::DReal, LossKey::DFake]
    );
}

#[test]
fn failures_and_errors_become_messages_once() {
    let t = Instant::now();
    let mut v = RunView::default();
    v.start_requested();
    v.apply(Event::Failed { run: Some(1), message: "bad config".into() }, t);
    assert_eq!(v.status(), Status::Idle);
    v.apply(Event::Error { message: "no run".into() }, t);
    let m = v.take_messages();
    assert_eq!(m.len(), 2);
    assert!(m[0].contains("bad config"));
    assert!(v.take_messages().is_empty());

    v.apply(started(2, Family::Vae), t);
    v.apply(Event::Diverged { run: 2, step: 3, message: "NaN".into() }, t);
    v.apply(Event::Paused { run: 2, step: 3 }, t);
    assert_eq!(v.current().unwrap().diverged.as_ref().unwrap().0, 3);
    v.apply(Event::Resumed { run: 2, step: 3 }, t);
    assert!(v.current().unwrap().diverged.is_none());
    v.apply(Event::Failed { run: Some(2), message: "panic".into() }, t);
    assert!(matches!(v.status(), Status::Failed(_)));
    assert!(v.active().is_none());
}

#[test]
fn exploring_events_are_folded_per_run() {
    use crate::engine::data::ImageShape;
    use crate::engine::scoring::ScoredSet;
    let t = Instant::now();
    let mut v = RunView::default();
    v.apply(started(1, Family::Vae), t);
    let grid = |x: u8| ImageBatch { shape: ImageShape::new(1, 2, 2), pixels: vec![x; 8] };
    v.apply(Event::FixedNoise { run: 1, step: 50, images: grid(1), seconds: 0.01 }, t);
    v.apply(Event::FixedNoise { run: 1, step: 100, images: grid(2), seconds: 0.01 }, t);
    v.apply(Event::Decoded { run: 1, channel: 0, request: 3, images: grid(3) }, t);
    let (originals, reconstructions) = (grid(5), grid(6));
    v.apply(Event::ImagesReconstructed { run: 1, request: 7, originals, reconstructions }, t);
    let rec = v.current().unwrap().explore.images_reconstructed.as_ref().expect("its own slot");
    assert_eq!((rec.value.request, rec.value.reconstructions.pixels[0]), (7, 6));
    assert!(v.current().unwrap().explore.reconstructions.is_none(), "not the Samples tab's grid");
    v.apply(Event::ScoreProgress { run: 1, request: 1, done: 10, total: 20 }, t);
    let ex = &v.current().unwrap().explore;
    assert_eq!(ex.history.steps(), vec![50, 100]);
    assert_eq!(ex.history.at_step(70).unwrap().1.pixels[0], 1);
    assert_eq!(ex.decoded[&0].value.0, 3);
    assert_eq!(ex.score_progress, Some((1, 10, 20)));
    let set = ScoredSet {
        family: Family::Vae,
        anomaly_scores: Vec::new(),
        likelihood: None,
        k: 1,
        dims: 4,
        notice: None,
        samples: Vec::new(),
    };
    v.apply(Event::Scored { run: 1, request: 1, name: "test".into(), set: Box::new(set) }, t);
    let ex = &v.current().unwrap().explore;
    assert!(ex.score_progress.is_none());
    assert_eq!(ex.scored[&1].value.name, "test");
    let set = ex.scored[&1].value.set.clone();
    for request in 2..20 {
        let set = set.clone();
        v.apply(Event::Scored { run: 1, request, name: "x".into(), set: Box::new(set) }, t);
    }
    let ex = &v.current().unwrap().explore;
    assert_eq!(ex.scored.len(), SCORED_KEEP, "only the newest score sets are kept");
    assert!(ex.scored.contains_key(&19) && !ex.scored.contains_key(&1));
    v.apply(Event::ScoreProgress { run: 1, request: 20, done: 1, total: 20 }, t);
    v.apply(Event::Error { message: "scoring x failed".into() }, t);
    assert!(v.current().unwrap().explore.score_progress.is_none(), "a failed score ends the wait");
    let first = v.current().unwrap().explore.decoded[&0].version;

    // A long run's history stops at HISTORY_GRIDS grids (small images) however many come.
    for k in 3..2_000u64 {
        v.apply(Event::FixedNoise { run: 1, step: 50 * k, images: grid(k as u8), seconds: 0.01 }, t);
    }
    let h = &v.current().unwrap().explore.history;
    assert!(h.len() <= HISTORY_GRIDS && h.len() > HISTORY_GRIDS / 2, "{} grids", h.len());
    assert_eq!(h.steps().first(), Some(&50), "the first grid stays");
    assert_eq!(h.steps().last(), Some(&(50 * 1_999)), "the newest grid stays");
    assert_eq!(history_budget(50_176), HISTORY_GRIDS * 50_176);
    assert_eq!(history_budget(3 * 64 * 64 * 64), HISTORY_BUDGET, "large grids: the byte budget");
    v.apply(Event::Decoded { run: 1, channel: 0, request: 4, images: grid(4) }, t);
    assert!(v.current().unwrap().explore.decoded[&0].version > first, "new data, new version");
}

#[test]
fn rewinding_drops_the_grids_logged_after_the_step() {
    use crate::engine::data::ImageShape;
    let t = Instant::now();
    let mut v = RunView::default();
    v.apply(started(1, Family::Vae), t);
    let grid = |x: u8| ImageBatch { shape: ImageShape::new(1, 2, 2), pixels: vec![x; 4] };
    for step in [0, 5, 10, 15] {
        v.apply(Event::FixedNoise { run: 1, step, images: grid(step as u8), seconds: 0.01 }, t);
    }
    v.apply(Event::Rewound { run: 1, step: 7 }, t);
    let r = v.current().unwrap();
    assert_eq!(r.explore.history.steps(), vec![0, 5]);
    assert!(r.fixed_noise.is_none(), "the grid of step 15 came after the rewind point");
    v.apply(Event::FixedNoise { run: 1, step: 7, images: grid(77), seconds: 0.01 }, t);
    assert_eq!(v.current().unwrap().explore.history.steps(), vec![0, 5, 7]);
}

#[test]
fn metrics_csv_has_a_row_per_step_with_epoch_lr_and_rate() {
    let t = Instant::now();
    let mut v = RunView::default();
    v.apply(started(1, Family::Vae), t);
    v.apply(metrics(1, 1..13, 1e-3), t);
    let csv = v.current().unwrap().series.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,epoch,loss,recon,kl,lr,images_per_sec");
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[1], "1,0,100,90,10,0.001,1000");
    assert!(lines[12].starts_with("12,1,"), "{}", lines[12]);
}
