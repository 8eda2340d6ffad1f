//! The Latent tab: one slider per latent dimension decoded live, a traversal grid of the
//! dimensions by KL, the KL per dimension, and a 2-D PCA map of the encoded test set. A GAN
//! has no encoder: its sliders move the noise and the rest is hidden.

use egui::{RichText, Vec2};
use egui_plot::{Bar, BarChart, Legend, Plot, PlotPoints, Points};

use super::{Tab, TabCtx};
use crate::app::actions::Action;
use crate::app::export_target::ExportTarget;
use crate::app::loader::SaveDialog;
use crate::app::run_view::RunRecord;
use crate::app::theme;
use crate::app::widgets::image_grid::image_grid;
use crate::engine::data::SplitKind;
use crate::engine::explore::{dims_by_kl, kl_per_dim, linspace, Pca2};
use crate::engine::export;
use crate::engine::models::Family;
use crate::engine::protocol::Command;

/// Channel of the live slider/map decode.
const LIVE: u32 = 0;
/// Channel of the traversal grid.
const TRAVERSAL: u32 = 1;
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
    /// Map points per label (`u32::MAX` = unlabelled).
    points: Vec<(u32, Vec<[f64; 2]>)>,
}

pub struct LatentTab {
    run: Option<u64>,
    z: Vec<f32>,
    request: u64,
    derived: Option<Derived>,
    /// The fixed-noise step the live image was last decoded after (it follows training).
    decoded_after: Option<u64>,
    /// The traversal GIF and the encoding CSV.
    export: ExportTarget,
}

impl Default for LatentTab {
    fn default() -> Self {
        Self {
            run: None,
            z: Vec::new(),
            request: 0,
            derived: None,
            decoded_after: None,
            export: ExportTarget::new(
                "Export path",
                "/path/to/traversal.gif or encoding.csv",
                SaveDialog::File {
                    title: "Save the traversal (GIF) or the encoding (CSV)",
                    file_name: String::new(),
                    extensions: &["gif", "csv"],
                },
            ),
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
        let dim = run.config.model.latent_dim;
        if self.run != Some(run.id) || self.z.len() != dim {
            self.run = Some(run.id);
            self.z = vec![0.0; dim];
            self.derived = None;
            self.decoded_after = run.fixed_noise.as_ref().map(|(s, _)| *s);
            self.decode_live(cx);
        }
        let step = run.fixed_noise.as_ref().map(|(s, _)| *s);
        if run.is_active() && step != self.decoded_after {
            self.decoded_after = step;
            self.decode_live(cx);
        }
        if !run.has_model() {
            ended_note(ui);
        }
        let gan = run.config.model.family == Family::Gan;
        self.derive(run, cx);
        let avail = ui.available_size();
        let left_w = (avail.x * 0.42).clamp(260.0, 520.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(left_w);
                self.live(ui, cx, run, left_w, avail.y);
            });
            ui.separator();
            ui.vertical(|ui| {
                if gan {
                    ui.label(
                        RichText::new(
                            "A GAN has no encoder: the sliders move its noise vector; there is no \
                             traversal by KL and no map of encoded images.",
                        )
                        .weak(),
                    );
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
        cx.actions.push(Action::Worker(Command::Decode { channel: LIVE, request, latents: self.z.clone() }));
    }

    fn live(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord, width: f32, height: f32) {
        let what = if run.config.model.family == Family::Gan { "noise" } else { "latent" };
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
        ui.horizontal(|ui| {
            if ui.button("Reset to 0").clicked() {
                self.z.iter_mut().for_each(|v| *v = 0.0);
                self.decode_live(cx);
            }
            if ui.button("Random").clicked() {
                let seed = self.request.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ run.id;
                self.z = normal_draws(seed, self.z.len());
                self.decode_live(cx);
            }
        });
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

    /// Recomputes KL, traversal and map when a new encoding arrives.
    fn derive(&mut self, run: &RunRecord, cx: &mut TabCtx<'_>) {
        let Some(enc) = &run.explore.encoded else { return };
        if self.derived.as_ref().is_some_and(|d| d.version == enc.version) {
            return;
        }
        let enc_v = &enc.value;
        let dim = enc_v.dim.max(1);
        let kl = kl_per_dim(enc_v);
        let dims = dims_by_kl(&kl);
        let rows = dims.len().min(TRAVERSAL_ROWS);
        let values = linspace(-3.0, 3.0, TRAVERSAL_COLS);
        let mut latents = Vec::with_capacity(rows * TRAVERSAL_COLS * dim);
        for &d in dims.iter().take(rows) {
            for &v in &values {
                let mut z = vec![0.0f32; dim];
                z[d] = v;
                latents.extend(z);
            }
        }
        let request = self.next_request();
        cx.actions.push(Action::Worker(Command::Decode { channel: TRAVERSAL, request, latents }));
        let pca = Pca2::fit(&enc_v.mu, dim);
        let n = enc_v.mu.len() / dim;
        let stride = (n / MAP_POINTS).max(1);
        let mut points: Vec<(u32, Vec<[f64; 2]>)> = Vec::new();
        for (i, mu) in enc_v.mu.chunks_exact(dim).enumerate().step_by(stride) {
            let label = enc_v.labels.get(i).copied().unwrap_or(u32::MAX);
            let p = pca.project(mu);
            let at = match points.iter().position(|(l, _)| *l == label) {
                Some(at) => at,
                None => {
                    points.push((label, Vec::new()));
                    points.len() - 1
                }
            };
            points[at].1.push([p[0] as f64, p[1] as f64]);
        }
        points.sort_by_key(|(l, _)| *l);
        let dims = dims.into_iter().take(rows).collect();
        self.derived = Some(Derived { version: enc.version, kl, dims, rows, pca, points });
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
        if self.derived.is_none() {
            return;
        }
        self.export_ui(ui, run);
        let Some(d) = &self.derived else { return };
        let width = ui.available_width();

        ui.add_space(6.0);
        ui.strong("Traversal: each row moves one dimension from −3 to 3 (rows by KL)");
        if let Some(t) = run.explore.decoded.get(&TRAVERSAL) {
            let h = (28.0 * d.rows as f32 * 2.0).min(480.0);
            image_grid(
                ui,
                cx.textures,
                "latent_traversal",
                t.version,
                &t.value.1,
                TRAVERSAL_COLS,
                Vec2::new(width, h),
            );
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
        ui.strong(format!(
            "Map of the test set's μ (PCA: {:.0}% + {:.0}% of the variance). Click to decode a point.",
            ex[0] * 100.0,
            ex[1] * 100.0
        ));
        let data = cx.dataset;
        let resp =
            Plot::new("latent_map").height(360.0).data_aspect(1.0).legend(Legend::default()).show(ui, |p| {
                for (label, pts) in &d.points {
                    let name = if *label == u32::MAX {
                        "unlabelled".to_string()
                    } else {
                        data.map_or_else(|| label.to_string(), |ds| ds.class_name(*label))
                    };
                    p.points(
                        Points::new(name, PlotPoints::new(pts.clone()))
                            .radius(1.5)
                            .color(theme::label_color(*label)),
                    );
                }
                if p.response().clicked() {
                    p.pointer_coordinate()
                } else {
                    None
                }
            });
        if let Some(at) = resp.inner {
            let z = d.pca.unproject([at.x as f32, at.y as f32]);
            if z.len() == self.z.len() {
                self.z = z;
                self.decode_live(cx);
            }
        }
    }
}

impl LatentTab {
    /// Saves the traversal shown as an animated GIF (one frame per value, every dimension side
    /// by side, as `genlab traverse` does) or the test set's encoding as CSV.
    fn export_ui(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        ui.add_space(6.0);
        ui.strong("Export");
        self.export.path_ui(ui, "traversal.gif", "Overwrite an existing file");
        let busy = self.export.is_busy();
        // The traversal decoded for the current encoding (rows × values), if it has arrived.
        let rows = self.derived.as_ref().map_or(0, |d| d.rows);
        let traversal = run
            .explore
            .decoded
            .get(&TRAVERSAL)
            .map(|t| &t.value.1)
            .filter(|t| rows > 0 && t.len() == rows * TRAVERSAL_COLS);
        ui.horizontal(|ui| {
            let gif = ui
                .add_enabled(!busy && traversal.is_some(), egui::Button::new("Save traversal GIF"))
                .on_hover_text("One frame per value from −3 to 3; the traversal's dimensions side by side");
            if let (true, Some(t), Some(d)) = (gif.clicked(), traversal, &self.derived) {
                let frames = export::traversal_frames(t, rows, TRAVERSAL_COLS);
                let dims = d.dims.clone();
                self.start_export(ui.ctx(), move |path| {
                    export::save_gif(path, &frames, dims.len(), GIF_FRAME_MS).map_err(|e| e.to_string())?;
                    Ok(format!("Saved {} ({} frames, dimensions {dims:?})", path.display(), frames.len()))
                });
            }
            let csv = ui
                .add_enabled(!busy && run.explore.encoded.is_some(), egui::Button::new("Save encoding CSV"))
                .on_hover_text("index, label, μ and log σ² of every test image");
            if let (true, Some(enc)) = (csv.clicked(), &run.explore.encoded) {
                let enc = enc.value.clone();
                self.start_export(ui.ctx(), move |path| {
                    export::save_encoding_csv(path, &enc).map_err(|e| e.to_string())?;
                    Ok(format!(
                        "Saved {} ({} images, {} dimensions)",
                        path.display(),
                        enc.indices.len(),
                        enc.dim
                    ))
                });
            }
        });
        self.export.message_ui(ui);
    }

    fn start_export(
        &mut self,
        ctx: &egui::Context,
        write: impl FnOnce(&std::path::Path) -> Result<String, String> + Send + 'static,
    ) {
        let Some(path) = self.export.target() else { return };
        if let Err(e) = export::check_target(&path, self.export.overwrite) {
            self.export.message = Some(Err(e.to_string()));
            return;
        }
        self.export.start(ctx, path, write);
    }
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
