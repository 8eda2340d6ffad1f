//! The Outliers tab's charts: the overlaid histogram of every scored set, the comparison of the
//! test set with another dataset (AUROC and ROC curve).

use super::*;

impl OutliersTab {
    /// The anomaly score of every scored set, overlaid on shared bins.
    pub(super) fn histogram(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        let sets: Vec<(SetKind, &Versioned<Scored>)> =
            SET_KINDS.iter().filter_map(|&k| self.scored(run, k).map(|s| (k, s))).collect();
        if sets.is_empty() {
            return;
        }
        let score = self.chosen(run);
        let key: Vec<u64> = sets.iter().map(|(_, s)| s.version).collect();
        if self.overlay.as_ref().is_none_or(|o| o.key != key || o.score != score) {
            self.overlay = Some(overlay(key, &sets, score));
        }
        for (_, s) in &sets {
            summary_line(ui, &s.value, score);
        }
        let Some(o) = &self.overlay else { return };
        ui.strong(format!("Histogram of {} (higher = less likely)", score.label()));
        let colors: Vec<_> = SET_KINDS.iter().map(|&k| theme::scored_set_color(ui, color_key(k))).collect();
        Plot::new("anomaly_histogram")
            .height(200.0)
            .allow_scroll(false)
            .legend(Legend::default())
            .x_axis_label(score.label())
            .y_axis_label("share of the set")
            .show(ui, |p| {
                for h in &o.sets {
                    let bars: Vec<Bar> =
                        h.bins.iter().map(|&(x, c)| Bar::new(x, c).width(o.bin_width)).collect();
                    let color = colors[SET_KINDS.iter().position(|k| *k == h.kind).unwrap_or(0)];
                    p.bar_chart(BarChart::new(h.name.clone(), bars).color(color));
                }
            });
    }

    /// AUROC and ROC of the test set (inliers) against the loaded set (outliers).
    pub(super) fn comparison(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        let (Some(test), Some(other)) = (self.scored(run, SetKind::Test), self.scored(run, SetKind::Other))
        else {
            return;
        };
        let score = self.chosen(run);
        let key = (test.version, other.version, score);
        if self.comparison.as_ref().is_none_or(|c| c.key != key) {
            let (inl, out) = (test.value.set.scores(score), other.value.set.scores(score));
            self.comparison = Some(Comparison { key, auroc: auroc(&inl, &out), roc: roc_curve(&inl, &out) });
        }
        let Some(c) = &self.comparison else { return };
        let (t, o) = (&test.value, &other.value);
        ui.add_space(4.0);
        match c.auroc {
            Some(a) => ui.label(
                RichText::new(format!(
                    "AUROC {a:.3}: test (inliers) vs {} (outliers), by {}",
                    o.name,
                    score.label()
                ))
                .heading(),
            ),
            None => ui.label("AUROC: one of the sets is empty"),
        };
        ui.label(
            RichText::new(
                "The chance that an image of the loaded set scores as more anomalous than a test image \
                 (1 = always, 0.5 = no better than chance).",
            )
            .weak(),
        );
        if t.step != o.step || t.set.k != o.set.k || t.set.likelihood != o.set.likelihood {
            ui.label(
                RichText::new(format!(
                    "Scored differently (test: step {}, K = {}; {}: step {}, K = {}): click Score it again \
                     to score both under the same model.",
                    t.step, t.set.k, o.name, o.step, o.set.k
                ))
                .color(theme::error_text(ui)),
            );
        }
        roc_plot(ui, "roc_test_vs_other", &c.roc);
    }
}

/// One line per scored set: its size, the score's mean and what it was scored with.
fn summary_line(ui: &mut egui::Ui, s: &Scored, score: AnomalyScore) {
    let set = &s.set;
    let stat = Stat::of(&set.scores(score));
    let lik = set.likelihood.map_or(String::new(), |l| format!(", {}", l.label()));
    let k = if set.k > 0 { format!(", K = {}", set.k) } else { String::new() };
    ui.label(format!(
        "{}: {} images scored at step {}{k}{lik}; {}{}",
        s.name,
        set.samples.len(),
        s.step,
        score.label(),
        stat.map_or(String::new(), |st| format!(" mean {:.2} ± {:.2}", st.mean, st.stderr)),
    ));
    if let Some(n) = &set.notice {
        ui.label(RichText::new(format!("{}: {n}", s.name)).weak().small());
    }
}

/// A ROC curve with the chance diagonal.
pub(super) fn roc_plot(ui: &mut egui::Ui, id: &str, roc: &[RocPoint]) {
    let color = theme::series_color(ui, crate::engine::models::LossKey::Loss);
    let pts: Vec<[f64; 2]> = roc.iter().map(|p| [p.fpr, p.tpr]).collect();
    Plot::new(id)
        .height(260.0)
        .width(300.0)
        .data_aspect(1.0)
        .legend(Legend::default().position(Corner::RightBottom))
        .x_axis_label("false positive rate")
        .y_axis_label("true positive rate")
        .show(ui, |p| {
            p.line(Line::new("ROC", PlotPoints::new(pts)).color(color));
            p.line(Line::new("chance", PlotPoints::new(vec![[0.0, 0.0], [1.0, 1.0]])));
        });
}

/// Histograms of `sets`' anomaly scores on shared bins, each normalised to its set's size.
fn overlay(key: Vec<u64>, sets: &[(SetKind, &Versioned<Scored>)], score: AnomalyScore) -> Overlay {
    let finite = |s: &Scored| s.set.scores(score).into_iter().filter(|v| v.is_finite()).collect::<Vec<_>>();
    let values: Vec<(SetKind, String, Vec<f64>)> =
        sets.iter().map(|(k, s)| (*k, display_name(*k, &s.value.name), finite(&s.value))).collect();
    let all = values.iter().flat_map(|(_, _, v)| v.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let bin_width = ((hi - lo) / BINS as f64).max(1e-9);
    let sets = values
        .into_iter()
        .map(|(kind, name, v)| {
            let mut counts = vec![0usize; BINS];
            for x in &v {
                counts[(((x - lo) / bin_width) as usize).min(BINS - 1)] += 1;
            }
            let n = v.len().max(1) as f64;
            let bins = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (lo + (i as f64 + 0.5) * bin_width, c as f64 / n))
                .collect();
            SetHistogram { kind, name, bins }
        })
        .collect();
    Overlay { key, score, bin_width, sets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scoring::SampleScore;

    fn scored(version: u64, name: &str, values: &[f64]) -> Versioned<Scored> {
        let samples = values
            .iter()
            .enumerate()
            .map(|(index, &v)| SampleScore {
                index,
                label: None,
                recon: Some(v),
                kl: None,
                neg_elbo: None,
                neg_log_px: None,
                bits_per_dim: None,
                disc_logit: None,
            })
            .collect();
        let set = ScoredSet {
            family: crate::engine::models::Family::Autoencoder,
            anomaly_scores: Vec::new(),
            likelihood: None,
            k: 0,
            dims: 4,
            notice: None,
            samples,
        };
        Versioned { version, value: Scored { name: name.into(), step: 1, set } }
    }

    #[test]
    fn overlay_shares_bins_and_normalises_each_set() {
        let (a, b) = (scored(1, "test", &[0.0, 1.0, 1.0, 2.0]), scored(2, "test", &[10.0, f64::NAN]));
        let o = overlay(vec![1, 2], &[(SetKind::Test, &a), (SetKind::Other, &b)], AnomalyScore::Recon);
        assert_eq!(o.sets.len(), 2);
        assert_eq!(o.sets[1].name, "test (loaded)", "a loaded set named like a split is told apart");
        assert!((o.bin_width - 10.0 / BINS as f64).abs() < 1e-12, "bins span both sets");
        for h in &o.sets {
            assert_eq!(h.bins.len(), BINS);
            assert!((h.bins.iter().map(|b| b.1).sum::<f64>() - 1.0).abs() < 1e-12, "shares sum to 1");
            assert_eq!(h.bins[0].0, o.sets[0].bins[0].0, "the same bin centres");
        }
        assert_eq!(o.sets[1].bins[BINS - 1].1, 1.0, "the maximum falls in the last bin, NaN is left out");
    }
}
