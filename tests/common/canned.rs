//! Canned worker events for a recording app ([`genlab::app::App::recording`]): a run of any
//! configuration, as the worker would report it, without training anything.

use egui_kittest::Harness;
use genlab::app::App;
use genlab::engine::config::RunConfig;
use genlab::engine::data::{self, DataSource, SplitKind};
use genlab::engine::images::ImageBatch;
use genlab::engine::models::Losses;
use genlab::engine::protocol::{Command, DatasetInfo, Event, StepMetrics};
use genlab::engine::scoring::{SampleScore, ScoredSet};
use genlab::engine::session::{Encoding, EpochSummary};

/// Steps per epoch of a canned run.
pub const STEPS_PER_EPOCH: u64 = 10;
/// The steps the canned fixed-noise grids come after.
pub const GRID_STEPS: [u64; 2] = [5, 10];

/// A recording app (no worker) with the built-in data loaded, in a 1440 × 900 harness.
pub fn recording() -> Harness<'static, App> {
    let data = data::builtin::load().expect("the built-in data loads");
    Harness::builder()
        .with_size(egui::vec2(1440.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.show(ui), App::recording(data))
}

/// The commands sent since the last call.
pub fn sent(h: &mut Harness<'_, App>) -> Vec<Command> {
    h.state_mut().recorder().expect("a recording app").take_sent()
}

/// Delivers `events` as if the worker had sent them, and lets the app settle.
pub fn feed(h: &mut Harness<'_, App>, events: impl IntoIterator<Item = Event>) {
    h.state_mut().recorder().expect("a recording app").feed(events);
    h.run();
}

/// The worker's answer to starting run `run` with `config` on the built-in data.
pub fn started(run: u64, config: &RunConfig) -> Event {
    Event::Started {
        run,
        config: Box::new(config.clone()),
        param_count: config.model.param_count_from_shapes() as usize,
        capabilities: Box::new(config.model.capabilities()),
        dataset: DatasetInfo {
            name: data::builtin::NAME.into(),
            source: DataSource::Builtin,
            shape: config.model.input(),
            train: 8000,
            test: 2000,
        },
        steps_per_epoch: STEPS_PER_EPOCH,
        total_steps: STEPS_PER_EPOCH * config.train.epochs as u64,
        start_step: 0,
    }
}

/// Losses with every component the configuration's family reports.
pub fn losses(config: &RunConfig, scale: f64) -> Losses {
    let keys = config.model.capabilities().loss_keys;
    let pairs: Vec<_> = keys.iter().enumerate().map(|(i, &k)| (k, scale * (1.0 + i as f64 * 0.1))).collect();
    Losses::of(&pairs)
}

/// `n` grey images of the configuration's input shape.
pub fn images(config: &RunConfig, n: usize) -> ImageBatch {
    let shape = config.model.input();
    ImageBatch { shape, pixels: (0..n * shape.len()).map(|i| (i % 251) as u8).collect() }
}

/// A first epoch of run `run`, trained and paused: metrics, the epoch's summary, fixed-noise
/// grids, samples, live decodes, and, for a model with an encoder, reconstructions and the test
/// set's encoding.
pub fn trained(run: u64, config: &RunConfig) -> Vec<Event> {
    let steps = (1..=STEPS_PER_EPOCH)
        .map(|step| StepMetrics {
            step,
            epoch: 0,
            losses: losses(config, 100.0 / step as f64),
            learning_rate: config.optim.lr,
            images_per_sec: 1000.0,
        })
        .collect();
    let mut events = vec![
        started(run, config),
        Event::Metrics { run, steps },
        Event::EpochEnded {
            run,
            summary: EpochSummary { epoch: 0, train: losses(config, 10.0), test: Some(losses(config, 11.0)) },
        },
    ];
    for step in GRID_STEPS {
        events.push(Event::FixedNoise { run, step, images: images(config, 64), seconds: 0.02 });
    }
    events.push(Event::Samples { run, images: images(config, 64) });
    events.push(Event::Decoded { run, channel: 0, request: 1, images: images(config, 1) });
    if config.model.capabilities().encoder {
        let indices: Vec<usize> = (8000..8010).collect();
        events.push(Event::Reconstructions {
            run,
            indices,
            originals: images(config, 10),
            reconstructions: images(config, 10),
        });
        events.push(Event::Encoded { run, encoding: encoding(config, 200) });
    }
    events.push(Event::RewindPoints { run, steps: vec![STEPS_PER_EPOCH] });
    events.push(Event::Paused { run, step: STEPS_PER_EPOCH });
    events
}

/// An encoding of `n` test images spread over the latent space, labelled 0–9.
pub fn encoding(config: &RunConfig, n: usize) -> Encoding {
    let dim = config.model.latent_dim();
    let mu = (0..n * dim).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    Encoding {
        split: SplitKind::Test,
        dim,
        indices: (8000..8000 + n).collect(),
        mu,
        logvar: vec![-1.0; n * dim],
        labels: (0..n as u32).map(|i| i % 10).collect(),
    }
}

/// The scores of `n` test images under a model of `config`, every score its family offers
/// filled in and spread out (so that histograms have bins).
pub fn scored_set(config: &RunConfig, n: usize) -> ScoredSet {
    let caps = config.model.capabilities();
    let samples = (0..n)
        .map(|i| {
            let v = 50.0 + (i * 37 % 101) as f64;
            let mut s = SampleScore::new(8000 + i, Some((i % 10) as u32));
            s.recon = Some(v);
            s.kl = Some(v / 10.0);
            s.neg_elbo = Some(v * 1.1);
            s.neg_log_px = Some(v * 1.05);
            s.bits_per_dim = Some(v / 543.0);
            s.disc_logit = Some(v / 50.0 - 2.0);
            s
        })
        .collect();
    ScoredSet {
        family: caps.family,
        anomaly_scores: caps.anomaly_scores,
        likelihood: None,
        k: 0,
        dims: config.model.input().len(),
        notice: None,
        samples,
    }
}
