//! A tiny sweep on `builtin:shapes2`: its rows, what β does to the KL, cancellation, the CSV
//! and the figure.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::engine::config::preset;
use crate::engine::data::{self, DataSource, LoadOptions};
use crate::engine::disentangle::factor_vae::FactorVaeOptions;

fn shapes2() -> Arc<Dataset> {
    Arc::new(data::load(&DataSource::parse("builtin:shapes2"), &LoadOptions::default()).expect("shapes2"))
}

fn plan(data: &Dataset, betas: &[f64], steps: u64) -> SweepPlan {
    let mut base = preset("shapes_vae", data.shape).expect("preset");
    base.train.batch_size = 64;
    SweepPlan {
        base,
        betas: betas.to_vec(),
        seeds: vec![7],
        max_steps: Some(steps),
        score: ScoreOptions {
            points: 1000,
            factor_vae: FactorVaeOptions {
                train_votes: 300,
                eval_votes: 200,
                variance_points: 1000,
                ..Default::default()
            },
            ..ScoreOptions::default()
        },
    }
}

#[test]
fn a_tiny_sweep_gives_one_row_per_beta_and_beta_lowers_the_kl() {
    let data = shapes2();
    let plan = plan(&data, &[0.25, 16.0], 60);
    let mut events = Vec::new();
    let out = run_sweep(&plan, data, &AtomicBool::new(false), &mut |p| events.push(p)).expect("sweep");
    assert!(!out.cancelled);
    assert_eq!(out.rows.len(), 2);
    for (row, beta) in out.rows.iter().zip([0.25, 16.0]) {
        assert_eq!((row.beta, row.seed, row.steps, row.latent_dim), (beta, 7, 60, 10));
        assert!(!row.diverged);
        for v in [row.mig, row.factor_vae, row.dci_disentanglement, row.recon, row.kl, row.seconds] {
            assert!(v.is_finite(), "{row:?}");
        }
        assert!((0.0..=1.0).contains(&row.mig) && row.active_units <= 10, "{row:?}");
    }
    // β weighs the KL term: sixty-four times the weight must buy a clearly smaller KL, paid
    // for in reconstruction.
    let (lo, hi) = (&out.rows[0], &out.rows[1]);
    assert!(hi.kl < 0.5 * lo.kl, "KL at β=16 {} vs β=0.25 {}", hi.kl, lo.kl);
    assert!(hi.recon > lo.recon, "recon at β=16 {} vs β=0.25 {}", hi.recon, lo.recon);
    let steps = events.iter().filter(|e| matches!(e, SweepProgress::Step { .. })).count();
    assert_eq!(steps, 120);
    assert!(matches!(events[0], SweepProgress::RunStarted { index: 0, total: 2, .. }));
    assert!(matches!(events.last(), Some(SweepProgress::RunFinished { index: 1, .. })));

    let csv = to_csv(&out.rows);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("16,7,60,"), "{}", lines[2]);
    let summary = summarise(&out.rows);
    assert_eq!(summary.len(), 2);
    assert_eq!((summary[0].runs, summary[0].mig.sd), (1, 0.0));
    assert!(summary_table(&summary).lines().count() == 3);
    let svg = plot::svg(&out.rows, "test");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(">MIG<") && svg.contains(">active units<"));
}

#[test]
fn cancel_stops_the_sweep_at_the_next_step() {
    let data = shapes2();
    let plan = plan(&data, &[1.0, 4.0], 50);
    let cancel = AtomicBool::new(false);
    let mut steps = 0;
    let out = run_sweep(&plan, data, &cancel, &mut |p| {
        if let SweepProgress::Step { step, .. } = p {
            steps += 1;
            if step == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    })
    .expect("sweep");
    assert!(out.cancelled);
    assert!(out.rows.is_empty());
    assert_eq!(steps, 3);
}

#[test]
fn a_sweep_refuses_data_without_factors_and_a_family_without_beta() {
    let data = shapes2();
    let mut p = plan(&data, &[1.0], 1);
    p.base.model = p.base.model.with_family(Family::Autoencoder);
    let err = run_sweep(&p, data.clone(), &AtomicBool::new(false), &mut |_| {}).expect_err("AE");
    assert!(err.to_string().contains("VAE or β-VAE"), "{err}");
    let mut plain = (*data).clone();
    plain.factors = None;
    let p = plan(&data, &[1.0], 1);
    let err = run_sweep(&p, Arc::new(plain), &AtomicBool::new(false), &mut |_| {}).expect_err("no factors");
    assert!(err.to_string().contains("no ground-truth factors"), "{err}");
    let mut p = plan(&data, &[-1.0], 1);
    p.seeds = vec![0];
    assert!(p.validate().is_err());
}
