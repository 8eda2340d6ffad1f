//! The Latent tab: one slider per latent dimension decoded live, a traversal grid of the
//! dimensions by KL (around the prior's mean or a chosen test image), the KL per dimension, a
//! 2-D PCA map of the encoded test set (hover shows an image, click decodes a point) and an
//! A → B interpolation between two test images. A GAN has no encoder: its sliders and its
//! interpolation move the noise, and the rest is hidden.

use egui::{RichText, Vec2};
use egui_plot::{Bar, BarChart, Legend, Plot, PlotPoints, Points};

use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::export_target::ExportTarget;
use crate::app::loader::SaveDialog;
use crate::app::run_view::RunRecord;
use crate::app::theme;
use crate::app::widgets::image_grid::image_grid;
use crate::app::widgets::image_grid::single_image;
use crate::engine::data::{Dataset, ImageShape, SplitKind};
use crate::engine::explore::{
    dims_by_kl, kl_per_dim, line_rows, linspace, noise_vector, traversal_rows, Pca2,
};
use crate::engine::export;
use crate::engine::images::ImageBatch;
use crate::engine::protocol::Command;

/// Channel of the live slider/map decode.
const LIVE: u32 = 0;
/// Channel of the traversal grid.
const TRAVERSAL: u32 = 1;
/// Channel of the A → B interpolation strip.
const INTERP: u32 = 2;
/// Most decodes in an interpolation strip.
const INTERP_MAX_STEPS: usize = 16;
/// A hovered map point shows its image when the pointer is this close (share of the view).
const HOVER_REACH: f64 = 0.025;
/// Traversal columns (values in [-3, 3]) and most rows (dimensions by KL).
const TRAVERSAL_COLS: usize = 9;
const TRAVERSAL_ROWS: usize = 10;
/// At most this many points per label on the map.
const MAP_POINTS: usize = 4000;

/// Milliseconds per frame of the traversal GIF.
const GIF_FRAME_MS: u32 = 150;

/// What is derived from one encoding of the test set.
struct Derived {
    version: u64,
    kl: Vec<f64>,
    /// The traversal's dimensions, by decreasing KL (one row each).
    dims: Vec<usize>,
    rows: usize,
    pca: Pca2,
    /// Map points per label (`u32::MAX` = unlabelled), with the encoding row of each point.
    points: Vec<MapPoints>,
}

struct MapPoints {
    label: u32,
    xy: Vec<[f64; 2]>,
    rows: Vec<usize>,
}

/// The two ends of an interpolation: rows of the encoded test set (VAE, AE) or noise seeds
/// (GAN), and the number of decodes from one to the other.
#[derive(Clone, Copy, PartialEq)]
struct Ends {
    a: usize,
    b: usize,
    steps: usize,
}

pub struct LatentTab {
    run: Option<u64>,
    z: Vec<f32>,
    request: u64,
    derived: Option<Derived>,
    /// The fixed-noise step the live image was last decoded after (it follows training).
    decoded_after: Option<u64>,
    /// The traversal's centre: a row of the encoded test set, or `None` for the prior's mean.
    around: Option<usize>,
    ends: Ends,
    /// The ends the strip shown was asked for (`None`: not asked yet this run).
    interpolated: Option<Ends>,
    /// The traversal GIF and the encoding CSV.
    export: ExportTarget,
    /// The Disentanglement section (scores, matrix, β sweep).
    dis: disentangle::DisentangleView,
    /// The class the sliders' vector is decoded under (a conditional model; `None`: the
    /// model's default label, class 0 for one vector).
    class: Option<u32>,
}

impl Default for LatentTab {
    fn default() -> Self {
        Self {
            run: None,
            z: Vec::new(),
            request: 0,
            derived: None,
            decoded_after: None,
            around: None,
            ends: Ends { a: 0, b: 1, steps: 10 },
            interpolated: None,
            export: ExportTarget::new(
                "Export path",
                "/path/to/traversal.gif or encoding.csv",
                SaveDialog::File {
                    title: "Save the traversal (GIF) or the encoding (CSV)",
                    file_name: String::new(),
                    extensions: &["gif", "csv"],
                },
            ),
            dis: disentangle::DisentangleView::default(),
            class: None,
        }
    }
}

impl Tab for LatentTab {
    fn title(&self) -> &'static str {
        "Latent space"
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>) {
        let Some(run) = cx.run_view.current() else {
            ui.label(RichText::new("No run yet. Train a model to explore its latent space.").weak());
            return;
        };
        let dim = run.config.model.latent_dim();
        if self.run != Some(run.id) || self.z.len() != dim {
            self.run = Some(run.id);
            // Zero noise is no typical start for a sampler: it gets a draw.
            self.z = if run.capabilities.latent_axes() { vec![0.0; dim] } else { normal_draws(run.id, dim) };
            self.derived = None;
            self.around = None;
            self.interpolated = None;
            let k = run.config.model.classes() as u32;
            self.class = (k > 0).then(|| self.class.unwrap_or(0).min(k - 1));
            self.decoded_after = run.fixed_noise.as_ref().map(|(s, _)| *s);
            self.decode_live(cx);
        }
        if self.derive(run) {
            self.request_traversal(run, cx);
        }
        // While training, everything decoded follows the newest weights.
        let step = run.fixed_noise.as_ref().map(|(s, _)| *s);
        if run.is_active() && step != self.decoded_after {
            self.decoded_after = step;
            self.decode_live(cx);
            self.request_traversal(run, cx);
            if let Some(ends) = self.interpolated {
                self.request_interpolation(run, cx, ends);
            }
        }
        if !run.has_model() {
            ended_note(ui);
        }
        let no_encoder = !run.capabilities.encoder;
        let avail = ui.available_size();
        let left_w = (avail.x * 0.42).clamp(260.0, 520.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(left_w);
                self.live(ui, cx, run, left_w, avail.y);
            });
            ui.separator();
            ui.vertical(|ui| {
                if no_encoder {
                    let what = if run.capabilities.latent_axes() {
                        format!("the sliders move its {} vector", run.capabilities.latent_name)
                    } else {
                        format!(
                            "its {} vector has the image's size ({} values), one per pixel, none of which \
                             means anything alone, so it has no sliders: Random draws a new one",
                            run.capabilities.latent_name,
                            run.config.model.latent_dim()
                        )
                    };
                    ui.label(
                        RichText::new(format!(
                            "A {} has no encoder: {what}; there is no traversal by KL and no map of \
                             encoded images.",
                            run.config.model.family(),
                        ))
                        .weak(),
                    );
                    ui.add_space(6.0);
                    self.interpolation(ui, cx, run);
                } else {
                    egui::ScrollArea::vertical().id_salt("latent_right").show(ui, |ui| {
                        self.explore(ui, cx, run);
                    });
                }
            });
        });
    }
}

impl LatentTab {
    fn next_request(&mut self) -> u64 {
        self.request += 1;
        self.request
    }

    fn decode_live(&mut self, cx: &mut TabCtx<'_>) {
        let request = self.next_request();
        let latents = self.z.clone();
        let cmd = match self.class {
            Some(class) => Command::DecodeClass { channel: LIVE, request, latents, class: Some(class) },
            None => Command::Decode { channel: LIVE, request, latents },
        };
        cx.actions.push(Action::Worker(cmd));
    }

    fn live(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32, height: f32) {
        let what = run.capabilities.latent_name;
        ui.strong(format!("Decoded {what} vector"));
        let size = (width - 8.0).min(height * 0.45).max(120.0);
        match run.explore.decoded.get(&LIVE) {
            Some(d) => {
                image_grid(ui, cx.textures, "latent_live", d.version, &d.value.1, 1, Vec2::splat(size));
            }
            None => {
                ui.allocate_space(Vec2::splat(size));
            }
        }
        if run.capabilities.conditional {
            let k = run.config.model.classes();
            let picked = ui.horizontal(|ui| {
                super::classes::class_picker(ui, "latent_class", cx.dataset, k, None, &mut self.class)
            });
            if picked.inner {
                self.decode_live(cx);
            }
        }
        ui.horizontal(|ui| {
            if run.capabilities.latent_axes() && ui.button("Reset to 0").clicked() {
                self.z.iter_mut().for_each(|v| *v = 0.0);
                self.decode_live(cx);
            }
            if ui.button("Random").clicked() {
                let seed = self.request.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ run.id;
                self.z = normal_draws(seed, self.z.len());
                self.decode_live(cx);
            }
        });
        if !run.capabilities.latent_axes() {
            return;
        }
        let order: Vec<usize> = match &self.derived {
            Some(d) => dims_by_kl(&d.kl),
            None => (0..self.z.len()).collect(),
        };
        let mut changed = false;
        egui::ScrollArea::vertical().id_salt("latent_sliders").show(ui, |ui| {
            egui::Grid::new("latent_slider_grid").num_columns(3).spacing([8.0, 2.0]).show(ui, |ui| {
                for i in order {
                    let Some(v) = self.z.get_mut(i) else { continue };
                    let label = ui.label(format!("z{i}"));
                    changed |= ui
                        .add(egui::Slider::new(v, -3.0..=3.0).fixed_decimals(2))
                        .labelled_by(label.id)
                        .changed();
                    match self.derived.as_ref().and_then(|d| d.kl.get(i)) {
                        Some(k) => ui.label(RichText::new(format!("KL {k:.2}")).weak().small()),
                        None => ui.label(""),
                    };
                    ui.end_row();
                }
            });
        });
        if changed {
            self.decode_live(cx);
        }
    }

    /// Recomputes KL, traversal rows and map when a new encoding arrives; true if it did.
    fn derive(&mut self, run: &RunRecord) -> bool {
        let Some(enc) = &run.explore.encoded else { return false };
        if self.derived.as_ref().is_some_and(|d| d.version == enc.version) {
            return false;
        }
        let enc_v = &enc.value;
        let dim = enc_v.dim.max(1);
        let kl = kl_per_dim(enc_v);
        let dims = dims_by_kl(&kl);
        let rows = dims.len().min(TRAVERSAL_ROWS);
        let pca = Pca2::fit(&enc_v.mu, dim);
        let n = enc_v.mu.len() / dim;
        let stride = (n / MAP_POINTS).max(1);
        let mut points: Vec<MapPoints> = Vec::new();
        for (i, mu) in enc_v.mu.chunks_exact(dim).enumerate().step_by(stride) {
            let label = enc_v.labels.get(i).copied().unwrap_or(u32::MAX);
            let p = pca.project(mu);
            let at = match points.iter().position(|m| m.label == label) {
                Some(at) => at,
                None => {
                    points.push(MapPoints { label, xy: Vec::new(), rows: Vec::new() });
                    points.len() - 1
                }
            };
            points[at].xy.push([p[0] as f64, p[1] as f64]);
            points[at].rows.push(i);
        }
        points.sort_by_key(|m| m.label);
        let dims = dims.into_iter().take(rows).collect();
        self.derived = Some(Derived { version: enc.version, kl, dims, rows, pca, points });
        if self.around.is_some_and(|r| r >= n) {
            self.around = None;
        }
        true
    }

    /// Asks for the traversal grid: the rows by KL, each moving one dimension from −3 to 3
    /// around the prior's mean or the chosen test image's μ.
    fn request_traversal(&mut self, run: &RunRecord, cx: &mut TabCtx<'_>) {
        let (Some(d), Some(enc)) = (&self.derived, &run.explore.encoded) else { return };
        let dim = enc.value.dim;
        let base = self.around.and_then(|r| test_mu(run, r)).unwrap_or_else(|| vec![0.0; dim]);
        let latents = traversal_rows(&base, &d.dims, &linspace(-3.0, 3.0, TRAVERSAL_COLS));
        let request = self.next_request();
        cx.actions.push(Action::Worker(Command::Decode { channel: TRAVERSAL, request, latents }));
    }

    /// Asks for the strip of decodes from end A to end B: the μ of two encoded test images,
    /// or for a GAN the noise vectors of two seeds (as `genlab interpolate` draws them).
    fn request_interpolation(&mut self, run: &RunRecord, cx: &mut TabCtx<'_>, ends: Ends) {
        let dim = run.config.model.latent_dim();
        let (za, zb) = if !run.capabilities.encoder {
            (noise_vector(ends.a as u64, dim), noise_vector(ends.b as u64, dim))
        } else {
            match (test_mu(run, ends.a), test_mu(run, ends.b)) {
                (Some(a), Some(b)) => (a, b),
                _ => return,
            }
        };
        self.interpolated = Some(ends);
        let request = self.next_request();
        let latents = line_rows(&za, &zb, ends.steps);
        cx.actions.push(Action::Worker(Command::Decode { channel: INTERP, request, latents }));
    }

    fn explore(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        ui.horizontal(|ui| {
            if ui.button("Encode test set").clicked() {
                cx.actions.push(Action::Worker(Command::Encode { split: SplitKind::Test }));
            }
            ui.label(
                RichText::new("Encodes every test image; the traversal, KL and map below follow from it.")
                    .weak()
                    .small(),
            );
        });
        ui.add_space(4.0);
        self.disentanglement(ui, cx, run);
        if self.derived.is_none() {
            return;
        }
        self.export_ui(ui, run);
        let width = ui.available_width();

        ui.add_space(6.0);
        ui.strong("Traversal: each row moves one dimension from −3 to 3 (rows by KL)");
        let n = run.explore.encoded.as_ref().map_or(1, |e| e.value.indices.len());
        let mut around = self.around;
        ui.horizontal(|ui| {
            let mut on_image = around.is_some();
            ui.label("Around");
            ui.radio_value(&mut on_image, false, "the prior's mean (0)");
            ui.radio_value(&mut on_image, true, "test image");
            let mut row = around.unwrap_or(0);
            let label = ui.label("#");
            ui.add_enabled(on_image, egui::DragValue::new(&mut row).range(0..=n.saturating_sub(1)))
                .labelled_by(label.id);
            if on_image {
                test_thumbnail(ui, cx, run, row, "latent_around", 28.0);
            }
            around = on_image.then_some(row);
        });
        if around != self.around {
            self.around = around;
            self.request_traversal(run, cx);
        }
        let Some(d) = &self.derived else { return };
        if let Some(t) = run.explore.decoded.get(&TRAVERSAL) {
            let h = (28.0 * d.rows as f32 * 2.0).min(480.0);
            // Each row is labelled with its dimension and, once scored, the factor it captures.
            ui.horizontal_top(|ui| {
                ui.allocate_exact_size(Vec2::new(disentangle::TRAVERSAL_LABEL_W, 1.0), egui::Sense::hover());
                let grid = image_grid(
                    ui,
                    cx.textures,
                    "latent_traversal",
                    t.version,
                    &t.value.1,
                    TRAVERSAL_COLS,
                    Vec2::new(width - disentangle::TRAVERSAL_LABEL_W - 8.0, h),
                );
                let report = run.explore.disentangled.as_ref().map(|r| &r.value.1);
                let shown = (t.value.1.len() / TRAVERSAL_COLS).min(d.dims.len());
                disentangle::row_labels(ui, grid.rect, &d.dims[..shown], report);
            });
        }

        ui.add_space(6.0);
        ui.strong("KL per dimension (nats; near 0 = unused)");
        let bars: Vec<Bar> =
            d.kl.iter().enumerate().map(|(i, &k)| Bar::new(i as f64, k).name(format!("z{i}"))).collect();
        let color = theme::bar_color(ui);
        Plot::new("kl_per_dim")
            .height(140.0)
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .show(ui, |p| p.bar_chart(BarChart::new("KL", bars).color(color)));

        ui.add_space(6.0);
        let ex = d.pca.explained;
        let latent_dim = d.kl.len();
        let (x_name, y_name) = if latent_dim > 2 {
            (format!("PC 1 ({:.0}% of the variance)", ex[0] * 100.0), format!("PC 2 ({:.0}%)", ex[1] * 100.0))
        } else {
            ("z0".to_string(), if latent_dim == 2 { "z1".to_string() } else { String::new() })
        };
        if latent_dim > 2 {
            ui.strong(format!(
                "Map of the test set's μ (PCA: {:.0}% + {:.0}% of the variance). Click to decode a point.",
                ex[0] * 100.0,
                ex[1] * 100.0
            ));
        } else {
            ui.strong("Map of the test set's μ. Click to decode a point.");
        }
        let data = cx.dataset;
        let prior_xy = super::latent_prior::map_points(run, &d.pca, latent_dim);
        let prior_color = theme::prior_points(ui);
        let resp = Plot::new("latent_map")
            .height(360.0)
            .data_aspect(1.0)
            .allow_scroll(false)
            .x_axis_label(x_name)
            .y_axis_label(y_name)
            .legend(Legend::default())
            .show(ui, |p| {
                for m in &d.points {
                    let name = if m.label == u32::MAX {
                        "unlabelled".to_string()
                    } else {
                        data.map_or_else(|| m.label.to_string(), |ds| ds.class_name(m.label))
                    };
                    p.points(
                        Points::new(name, PlotPoints::new(m.xy.clone()))
                            .radius(1.5)
                            .color(theme::label_color(m.label)),
                    );
                }
                if let Some(xy) = &prior_xy {
                    p.points(
                        Points::new("learned prior", PlotPoints::new(xy.clone()))
                            .shape(egui_plot::MarkerShape::Cross)
                            .radius(2.5)
                            .color(prior_color),
                    );
                }
                let at = p.pointer_coordinate();
                let b = p.plot_bounds();
                let hovered = at.and_then(|at| nearest_point(&d.points, [at.x, at.y], b.width(), b.height()));
                (p.response().clicked().then_some(at).flatten(), hovered)
            });
        let (clicked, hovered) = resp.inner;
        if let Some(row) = hovered {
            resp.response.on_hover_ui_at_pointer(|ui| {
                test_thumbnail(ui, cx, run, row, "latent_hover", 84.0);
                let label = run.explore.encoded.as_ref().and_then(|e| e.value.labels.get(row).copied());
                match (label, cx.dataset) {
                    (Some(l), Some(ds)) => ui.label(format!("test image #{row} · {}", ds.class_name(l))),
                    _ => ui.label(format!("test image #{row}")),
                };
            });
        }
        if let Some(at) = clicked {
            let z = d.pca.unproject([at.x as f32, at.y as f32]);
            if z.len() == self.z.len() {
                self.z = z;
                self.decode_live(cx);
            }
        }

        ui.add_space(6.0);
        self.interpolation(ui, cx, run);
    }

    /// The A → B strip: two test images (or, for a GAN, two noise seeds) and the decodes on
    /// the straight line between their latent vectors, both ends included.
    fn interpolation(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let gan = !run.capabilities.encoder;
        ui.strong(if gan {
            "Interpolation: the generator's noise from seed A to seed B"
        } else {
            "Interpolation: from test image A's μ to test image B's μ"
        });
        let last = if gan {
            u32::MAX as usize
        } else {
            run.explore.encoded.as_ref().map_or(0, |e| e.value.indices.len().saturating_sub(1))
        };
        let what = if gan { "Seed" } else { "Test image" };
        let mut ends = self.ends;
        let mut go = false;
        ui.horizontal(|ui| {
            for (end, name) in [(&mut ends.a, "A"), (&mut ends.b, "B")] {
                let label = ui.label(format!("{what} {name}"));
                ui.add(egui::DragValue::new(end).range(0..=last)).labelled_by(label.id);
                if !gan {
                    test_thumbnail(ui, cx, run, *end, &format!("latent_end_{name}"), 28.0);
                }
            }
            let label = ui.label("Steps");
            ui.add(egui::DragValue::new(&mut ends.steps).range(2..=INTERP_MAX_STEPS)).labelled_by(label.id);
            go = ui.button("Interpolate").clicked();
        });
        ends.a = ends.a.min(last);
        ends.b = ends.b.min(last);
        let changed = ends != self.ends;
        self.ends = ends;
        if go || (changed && self.interpolated.is_some()) {
            self.request_interpolation(run, cx, ends);
        }
        match (self.interpolated, run.explore.decoded.get(&INTERP)) {
            (Some(asked), Some(strip)) => {
                let width = ui.available_width();
                let cols = strip.value.1.len().max(1);
                let cell = (width / cols as f32).clamp(16.0, 84.0);
                image_grid(
                    ui,
                    cx.textures,
                    "latent_interp",
                    strip.version,
                    &strip.value.1,
                    cols,
                    Vec2::new(width, cell),
                );
                ui.label(
                    RichText::new(format!(
                        "{} decodes from {what} {} to {what} {}",
                        asked.steps, asked.a, asked.b
                    ))
                    .weak()
                    .small(),
                );
            }
            _ => {
                ui.label(RichText::new("Pick A and B, then Interpolate.").weak().small());
            }
        }
    }
}

/// μ of row `row` of the run's encoded test set.
fn test_mu(run: &RunRecord, row: usize) -> Option<Vec<f32>> {
    let enc = &run.explore.encoded.as_ref()?.value;
    enc.mu.get(row * enc.dim..(row + 1) * enc.dim).map(<[f32]>::to_vec)
}

/// The image of row `row` of the encoded test set, from the loaded dataset when it is the
/// one the run was trained on (same shape and size).
fn test_image(run: &RunRecord, data: Option<&Dataset>, row: usize) -> Option<ImageBatch> {
    let data = data?;
    let shape: ImageShape = run.dataset.shape;
    let index = *run.explore.encoded.as_ref()?.value.indices.get(row)?;
    let fits = data.shape == shape && data.len() == run.dataset.train + run.dataset.test;
    (fits && index < data.len()).then(|| ImageBatch::from_f32(data.image(index), shape))
}

/// A small picture of test image `row`, or nothing when the data is not at hand.
fn test_thumbnail(ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, row: usize, key: &str, size: f32) {
    if let Some(img) = test_image(run, cx.dataset, row) {
        let version =
            run.explore.encoded.as_ref().map_or(0, |e| e.version) ^ ((row as u64) << 24) ^ (run.id << 48);
        single_image(ui, cx.textures, key, version, &img, 0, size);
    }
}

/// The encoding row of the map point nearest `at`, if it lies within [`HOVER_REACH`] of the
/// view (distances scaled by the view's width and height).
fn nearest_point(points: &[MapPoints], at: [f64; 2], width: f64, height: f64) -> Option<usize> {
    let (sx, sy) = (width.max(1e-12), height.max(1e-12));
    let mut best: Option<(f64, usize)> = None;
    for m in points {
        for (p, &row) in m.xy.iter().zip(&m.rows) {
            let d = ((p[0] - at[0]) / sx).powi(2) + ((p[1] - at[1]) / sy).powi(2);
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, row));
            }
        }
    }
    best.filter(|(d, _)| *d <= HOVER_REACH * HOVER_REACH).map(|(_, row)| row)
}

/// The worker drops a run's model when the run fails or a new one replaces it.
pub fn ended_note(ui: &mut egui::Ui) {
    ui.label(
        RichText::new("This run failed and its model is gone: what is shown stays, but new requests need a model. Train again to explore.")
            .color(theme::error_text(ui)),
    );
}

/// `n` standard normal draws from a small seeded generator (Box–Muller).
fn normal_draws(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).clamp(-3.0, 3.0) as f32
        })
        .collect()
}

mod disentangle;
mod exports;
mod sweep;

#[cfg(test)]
mod tests {
    use super::{nearest_point, MapPoints};

    #[test]
    fn hover_finds_the_nearest_point_within_reach_only() {
        let points = vec![
            MapPoints { label: 0, xy: vec![[0.0, 0.0], [1.0, 1.0]], rows: vec![10, 11] },
            MapPoints { label: 1, xy: vec![[0.9, 1.0]], rows: vec![20] },
        ];
        // A 10 × 10 view: reach is 2.5% of it, 0.25 units.
        assert_eq!(nearest_point(&points, [0.96, 1.0], 10.0, 10.0), Some(11));
        assert_eq!(nearest_point(&points, [0.91, 1.0], 10.0, 10.0), Some(20));
        assert_eq!(nearest_point(&points, [0.1, 0.1], 10.0, 10.0), Some(10));
        assert_eq!(nearest_point(&points, [5.0, 5.0], 10.0, 10.0), None, "nothing near");
        // Zoomed in to a 1 × 1 view the same offset is out of reach.
        assert_eq!(nearest_point(&points, [0.2, 0.2], 1.0, 1.0), None);
        assert_eq!(nearest_point(&[], [0.0, 0.0], 1.0, 1.0), None);
    }
}
