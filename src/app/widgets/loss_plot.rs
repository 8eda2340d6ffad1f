//! The live loss plot: every loss component per step (EMA-smoothed, decimated to the plot's
//! width), train and test per epoch, vertical markers where the learning rate or β changed or
//! the loss diverged, and other runs overlaid. Legend entries toggle series.

use std::collections::HashMap;

use egui_plot::{Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points, VLine};

use super::downsample::{downsample_minmax_by, ema_extend, Decimation, EmaState};
use crate::app::run_view::{MarkerKind, RunRecord};
use crate::app::state::PlotPrefs;
use crate::app::theme;
use crate::engine::models::LiveHyper;

/// What the loss plot keeps between frames, keyed by run and column: smoothed copies of the
/// series and their decimations, both extended as points arrive and rebuilt when a series is
/// cut (its revision changes) or the smoothing or the scale changes.
#[derive(Default)]
pub struct SmoothCache {
    entries: Smoothed,
    decimated: HashMap<(u64, usize), Decimation>,
}

/// Per (run, column): smoothing α bits, series revision, EMA state, smoothed values.
type Smoothed = HashMap<(u64, usize), (u32, u64, EmaState, Vec<f64>)>;

/// Brings the smoothed copy of `(run, col)` up to `ys`.
fn smooth(entries: &mut Smoothed, (run, col, revision): (u64, usize, u64), ys: &[f64], alpha: f32) {
    let fresh = || (alpha.to_bits(), revision, EmaState::default(), Vec::new());
    let e = entries.entry((run, col)).or_insert_with(fresh);
    if e.0 != alpha.to_bits() || e.1 != revision || e.3.len() > ys.len() {
        *e = fresh();
    }
    ema_extend(ys, alpha as f64, &mut e.2, &mut e.3);
}

impl SmoothCache {
    /// Forgets runs that are no longer drawn.
    pub fn retain_runs(&mut self, keep: &[u64]) {
        self.entries.retain(|(run, _), _| keep.contains(run));
        self.decimated.retain(|(run, _), _| keep.contains(run));
    }
}

fn to_y(v: f64, log: bool) -> f64 {
    if log {
        if v > 0.0 {
            v.log10()
        } else {
            f64::NAN
        }
    } else {
        v
    }
}

fn from_y(v: f64, log: bool) -> f64 {
    if log {
        10f64.powf(v)
    } else {
        v
    }
}

/// Draws `run` with `overlays` faded behind it.
pub fn loss_plot(
    ui: &mut egui::Ui,
    run: &RunRecord,
    overlays: &[&RunRecord],
    prefs: &PlotPrefs,
    cache: &mut SmoothCache,
    height: f32,
) {
    let log = prefs.log_y;
    let alpha = prefs.smoothing.clamp(0.0, 0.999);
    // Roughly one bucket per two pixels: ≤ 4 points each.
    let columns = (ui.available_width() / 2.0).max(50.0) as usize;

    // Smooth outside the plot closure (it needs only borrowed, finished data). The curves
    // borrow their series: copying 10⁵-point histories every frame (and mapping them to the log
    // scale) had been a third of the UI thread's time with a long run; the log is applied to
    // the points the decimation visits instead.
    struct Curve<'a> {
        name: String,
        color: egui::Color32,
        faded: bool,
        key: (u64, usize),
        revision: u64,
        xs: &'a [f64],
        ys: &'a [f64],
    }
    let drawn = || overlays.iter().map(|r| (*r, true)).chain(std::iter::once((run, false)));
    let SmoothCache { entries, decimated } = cache;
    if alpha > 0.0 {
        for (r, _) in drawn() {
            for (col, raw) in r.series.values.iter().enumerate() {
                smooth(entries, (r.id, col, r.series.revision), raw, alpha);
            }
        }
    }
    let entries = &*entries;
    let mut curves: Vec<Curve> = Vec::new();
    for (r, faded) in drawn() {
        for (col, &key) in r.series.keys.iter().enumerate() {
            let name = key.id();
            let raw = &r.series.values[col];
            let ys = match entries.get(&(r.id, col)) {
                Some(e) if alpha > 0.0 => &e.3[..],
                _ => &raw[..],
            };
            // An overlaid run carries its final quality, to compare runs by more than losses.
            let fd = r
                .last_quality()
                .map_or(String::new(), |q| format!(", FD {:.1}", q.report.samples.metrics.fd));
            let label = if faded { format!("{name} (run {}{fd})", r.id) } else { name.to_string() };
            let color = theme::series_color(ui, key);
            curves.push(Curve {
                name: label,
                color: if faded { theme::faded(color) } else { color },
                faded,
                key: (r.id, col),
                // What the decimation of this curve depends on besides its growing points.
                revision: {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (r.series.revision, alpha.to_bits(), log).hash(&mut h);
                    h.finish()
                },
                xs: &r.series.steps,
                ys,
            });
        }
    }

    let hover_log = log;
    let plot = Plot::new(("loss_plot", run.id))
        .height(height)
        .legend(Legend::default().position(egui_plot::Corner::RightTop).follow_insertion_order(true))
        .x_axis_label("step")
        .y_axis_label(run.capabilities.loss_axis(log))
        .allow_scroll(false)
        .label_formatter(move |pos| {
            let (name, p) = match pos {
                egui_plot::HoverPosition::NearDataPoint { plot_name, position, .. } => {
                    (Some(*plot_name), *position)
                }
                egui_plot::HoverPosition::Elsewhere { position } => (None, *position),
            };
            let y = from_y(p.y, hover_log);
            Some(match name {
                Some(n) if !n.is_empty() => format!("{n}\nstep {:.0}\n{y:.4}", p.x),
                _ => format!("step {:.0}\n{y:.4}", p.x),
            })
        });
    let plot = if log {
        plot.y_axis_formatter(|mark, _| {
            let v = 10f64.powf(mark.value);
            if (1e-3..1e4).contains(&v) {
                format!("{}", (v * 1000.0).round() / 1000.0)
            } else {
                format!("{v:.0e}")
            }
        })
    } else {
        plot
    };

    let show_epochs = prefs.show_epochs;
    let colors: Vec<egui::Color32> = run.series.keys.iter().map(|&k| theme::series_color(ui, k)).collect();
    let marker_colors: Vec<egui::Color32> =
        run.markers.iter().map(|m| theme::marker_color(ui, &m.kind)).collect();
    let response = plot.show(ui, |plot_ui| {
        let bounds = plot_ui.plot_bounds();
        let range = if plot_ui.auto_bounds().x { None } else { Some((bounds.min()[0], bounds.max()[0])) };
        for c in &curves {
            // Whole series (a live run follows them) fold in only their new points per frame;
            // a zoomed range is decimated afresh.
            let pts = match range {
                None => decimated
                    .entry(c.key)
                    .or_default()
                    .update(c.revision, c.xs, c.ys, columns, |v| to_y(v, log)),
                Some(_) => downsample_minmax_by(c.xs, c.ys, range, columns, |v| to_y(v, log)),
            };
            let mut line = Line::new(c.name.clone(), PlotPoints::new(pts)).color(c.color);
            line = if c.faded { line.width(1.0).style(LineStyle::dashed_dense()) } else { line.width(1.5) };
            plot_ui.line(line);
        }
        if show_epochs {
            for (&key, &color) in run.series.keys.iter().zip(&colors) {
                let train: Vec<[f64; 2]> = run
                    .epochs
                    .iter()
                    .filter_map(|(s, e)| e.train.get(key).map(|v| [*s as f64, to_y(v, log)]))
                    .filter(|p| p[1].is_finite())
                    .collect();
                let test: Vec<[f64; 2]> = run
                    .epochs
                    .iter()
                    .filter_map(|(s, e)| e.test.and_then(|t| t.get(key)).map(|v| [*s as f64, to_y(v, log)]))
                    .filter(|p| p[1].is_finite())
                    .collect();
                if !train.is_empty() {
                    plot_ui.points(
                        Points::new("epoch mean (train)", train)
                            .shape(MarkerShape::Circle)
                            .radius(3.5)
                            .color(color),
                    );
                }
                if !test.is_empty() {
                    plot_ui.line(
                        Line::new("epoch end (test)", PlotPoints::new(test.clone()))
                            .color(color)
                            .style(LineStyle::dashed_loose())
                            .width(1.0),
                    );
                    plot_ui.points(
                        Points::new("epoch end (test)", test)
                            .shape(MarkerShape::Diamond)
                            .radius(4.5)
                            .filled(true)
                            .color(color),
                    );
                }
            }
        }
        for (m, &color) in run.markers.iter().zip(&marker_colors) {
            let name = match m.kind {
                MarkerKind::LearningRate(_) => "lr changed",
                MarkerKind::Beta(_) => "β changed",
                MarkerKind::Hyper(h, _) => h.label(),
                MarkerKind::Diverged => "diverged",
            };
            plot_ui.vline(VLine::new(name, m.step as f64).color(color).style(LineStyle::dashed_dense()));
        }
    });

    // Marker values are painted on top rather than added as plot items, which would pull the
    // auto-bounds upwards every frame.
    let frame = *response.transform.frame();
    let painter = ui.painter_at(frame);
    for (m, &color) in run.markers.iter().zip(&marker_colors) {
        let text = match m.kind {
            MarkerKind::LearningRate(lr) => format!("lr {lr:.1e}"),
            MarkerKind::Beta(b) => format!("β {b}"),
            MarkerKind::Hyper(h, v) => match h {
                LiveHyper::DiscSteps => format!("D:G {v}:1"),
                _ => format!("{} {v:.1e}", h.label()),
            },
            MarkerKind::Diverged => "diverged".to_string(),
        };
        let x = response.transform.position_from_point_x(m.step as f64);
        if frame.x_range().contains(x) {
            painter.text(
                egui::pos2(x + 3.0, frame.top() + 3.0),
                egui::Align2::LEFT_TOP,
                text,
                egui::FontId::proportional(11.0),
                color,
            );
        }
    }
}
