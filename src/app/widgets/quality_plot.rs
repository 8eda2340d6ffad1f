//! The live sample-quality curves under the loss plot. The headline is the Fréchet distance:
//! one number that falls only when samples get both better and more varied, with the real
//! test images' FD drawn dashed as the floor a perfect generator would reach. Diversity gets a
//! plot of its own on a fixed [0, 1] axis: recall and coverage, which collapse drives to zero
//! while precision (also drawn, thinner) can stay high. The best step (lowest FD) is marked on
//! both; other runs' FD curves are overlaid faded with their final value.

use egui_plot::{Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points, VLine};

use crate::app::run_view::{QualityPoint, RunRecord};
use crate::app::theme;

/// A curve: its name, the figure it plots and its line width.
type Series = (&'static str, fn(&QualityPoint) -> f64, f32);

fn points(q: &[QualityPoint], f: impl Fn(&QualityPoint) -> f64) -> Vec<[f64; 2]> {
    q.iter().map(|p| [p.step as f64, f(p)]).filter(|p| p[1].is_finite()).collect()
}

/// Draws the FD plot and the diversity plot, each `height` high, x from 0 to the run's step.
pub fn quality_plots(ui: &mut egui::Ui, run: &RunRecord, overlays: &[&RunRecord], height: f32) {
    let q = &run.quality;
    let best = run.best_quality().map(|p| (p.step, p.report.samples.metrics.fd));
    let best_color = theme::best_marker(ui);
    let fd_color = theme::quality_color(ui, 0);
    let colors = [1, 2, 3].map(|k| theme::quality_color(ui, k));
    let x_max = run.step.max(q.last().map_or(1, |p| p.step)) as f64;
    let floor = q.last().map(|p| p.report.floor.metrics.fd);
    let faded: Vec<(String, Vec<[f64; 2]>)> = overlays
        .iter()
        .filter_map(|r| {
            let last = r.last_quality()?;
            let name = format!("FD (run {}, final {:.1})", r.id, last.report.samples.metrics.fd);
            Some((name, points(&r.quality, |p| p.report.samples.metrics.fd)))
        })
        .collect();
    Plot::new(("quality_fd", run.id))
        .height(height)
        .legend(Legend::default().position(egui_plot::Corner::RightTop).follow_insertion_order(true))
        .x_axis_label("step")
        .y_axis_label("FD (lower: better)")
        .include_x(0.0)
        .include_x(x_max)
        .include_y(0.0)
        .allow_scroll(false)
        .show(ui, |p| {
            for (name, pts) in faded {
                let line = Line::new(name, PlotPoints::new(pts))
                    .color(theme::faded(fd_color))
                    .width(1.0)
                    .style(LineStyle::dashed_dense());
                p.line(line);
            }
            let fd = points(q, |p| p.report.samples.metrics.fd);
            p.line(Line::new("FD", PlotPoints::new(fd.clone())).color(fd_color).width(1.5));
            p.points(Points::new("FD", fd).shape(MarkerShape::Circle).radius(2.5).color(fd_color));
            if let Some(floor) = floor {
                let line = Line::new(
                    "floor (real test images)",
                    PlotPoints::new(vec![[0.0, floor], [x_max, floor]]),
                )
                .color(fd_color)
                .width(1.0)
                .style(LineStyle::dashed_loose());
                p.line(line);
            }
            if let Some((step, fd)) = best {
                let name = format!("best: step {step}");
                p.vline(
                    VLine::new(name.clone(), step as f64).color(best_color).style(LineStyle::dashed_dense()),
                );
                let marker = Points::new(name, vec![[step as f64, fd]])
                    .shape(MarkerShape::Diamond)
                    .radius(6.0)
                    .filled(true);
                p.points(marker.color(best_color));
            }
        });
    Plot::new(("quality_diversity", run.id))
        .height(height)
        .legend(Legend::default().position(egui_plot::Corner::RightBottom).follow_insertion_order(true))
        .x_axis_label("step")
        .y_axis_label("share (higher: better)")
        .include_x(0.0)
        .include_x(x_max)
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |p| {
            let series: [Series; 3] = [
                ("recall", |p| p.report.samples.metrics.recall, 1.5),
                ("coverage", |p| p.report.samples.metrics.coverage, 1.5),
                ("precision", |p| p.report.samples.metrics.precision, 1.0),
            ];
            for ((name, f, width), color) in series.into_iter().zip(colors) {
                p.line(Line::new(name, PlotPoints::new(points(q, f))).color(color).width(width));
            }
            if let Some((step, _)) = best {
                let name = format!("best: step {step}");
                p.vline(VLine::new(name, step as f64).color(best_color).style(LineStyle::dashed_dense()));
            }
        });
}
