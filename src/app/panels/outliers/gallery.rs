//! The Outliers tab's gallery: the most and least anomalous images of a scored set, and the
//! zoom window with an image's reconstruction and all its scores.

use super::*;

impl OutliersTab {
    /// The most and least likely images of the chosen scored set.
    pub(super) fn galleries(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let present: Vec<(SetKind, &Versioned<Scored>)> =
            SET_KINDS.iter().filter_map(|&k| self.scored(run, k).map(|s| (k, s))).collect();
        let Some(&(newest, _)) = present.iter().max_by_key(|(_, s)| s.version) else { return };
        let mut chosen = self.gallery.filter(|g| present.iter().any(|(k, _)| k == g)).unwrap_or(newest);
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let name = |k: SetKind| {
                present
                    .iter()
                    .find(|(p, _)| *p == k)
                    .map_or(String::new(), |(_, s)| display_name(k, &s.value.name))
            };
            egui::ComboBox::from_label("Gallery set").selected_text(name(chosen)).show_ui(ui, |ui| {
                for (k, _) in &present {
                    if ui.selectable_value(&mut chosen, *k, name(*k)).clicked() {
                        self.gallery = Some(*k);
                    }
                }
            });
            ui.label(RichText::new("click an image to see its reconstruction and scores").weak());
        });
        let Some((_, s)) = present.iter().find(|(k, _)| *k == chosen) else { return };
        let score = self.chosen(run);
        if self.ranked.as_ref().is_none_or(|r| r.version != s.version || r.score != score) {
            let loaded = match chosen {
                SetKind::Other => self.answered(run, chosen).and_then(|(i, _)| self.sent[i].data.clone()),
                _ => None,
            };
            let data = if chosen == SetKind::Other { loaded.as_deref() } else { cx.dataset };
            self.ranked = Some(rank(s.version, &s.value.set, data, score));
        }
        let Some(r) = &self.ranked else { return };
        let w = ui.available_width().min(700.0);
        let name = display_name(chosen, &s.value.name);
        let total = s.value.set.samples.len();
        let mut clicked = None;
        for (likely, part) in [(true, &r.likely), (false, &r.unlikely)] {
            let Some(row) = part else { continue };
            let (title, key, end) = if likely {
                (format!("Most likely {name} images (lowest score)"), "outliers_likely", "most likely")
            } else {
                (format!("Least likely {name} images (highest score)"), "outliers_unlikely", "least likely")
            };
            ui.strong(title);
            let size = Vec2::new(w, w / GALLERY as f32);
            let label = format!("Gallery: {end} {name} images");
            if let Some(i) =
                clickable_grid(ui, cx.textures, key, r.version, &row.batch, GALLERY, size, &label)
            {
                if let Some(item) = row.items.get(i) {
                    let rank = format!("{} {end} of {total} by {}", ordinal(i + 1), score.label());
                    clicked = Some((item.clone(), r.shape, rank));
                }
            }
            let txt: Vec<String> = row.items.iter().map(|it| format!("{:.1}", it.value)).collect();
            ui.label(RichText::new(format!("{end} scores: {}", txt.join(" · "))).weak().small());
        }
        if let Some((item, shape, rank)) = clicked {
            let title = match item.sample.label {
                Some(l) => format!("{name} image {} (label {l})", item.sample.index),
                None => format!("{name} image {}", item.sample.index),
            };
            let zoom = self.open_zoom(cx, run, &item, shape, title, rank);
            self.zoom = Some(zoom);
        }
    }

    /// A zoom window for `item`, asking the worker for its reconstruction (AE / VAE).
    pub(super) fn open_zoom(
        &mut self,
        cx: &mut TabCtx<'_>,
        run: &RunRecord,
        item: &RankedImage,
        shape: ImageShape,
        title: String,
        rank: String,
    ) -> Zoom {
        let input = run.config.model.input();
        // Converted exactly as scoring converted it, so the model sees the image it scored.
        let pixels =
            if shape == input { item.pixels.clone() } else { convert_image(&item.pixels, shape, input) };
        let request = (run.capabilities.encoder && run.has_model()).then(|| {
            self.request += 1;
            cx.actions.push(Action::Worker(Command::ReconstructImages {
                request: self.request,
                images: pixels.clone(),
            }));
            self.request
        });
        self.zooms += 1;
        Zoom {
            title,
            rank,
            sample: item.sample.clone(),
            image: ImageBatch::from_f32(&pixels, input),
            converted_from: (shape != input).then_some(shape),
            request,
            version: self.zooms,
        }
    }

    /// The image clicked in the gallery, its reconstruction and all its scores.
    pub(super) fn zoom_window(&mut self, ui: &mut egui::Ui, cx: &mut TabCtx<'_>, run: &RunRecord) {
        let Some(z) = &self.zoom else { return };
        let (family, encoder) = (run.config.model.family(), run.capabilities.encoder);
        let chosen = self.chosen(run);
        let answer = run.explore.images_reconstructed.as_ref().filter(|a| Some(a.value.request) == z.request);
        let mut open = true;
        // At the right, so the chooser and the gallery stay in view.
        let corner = ui.ctx().content_rect().right_top() + Vec2::new(-24.0, 80.0);
        egui::Window::new("Outlier zoom")
            .open(&mut open)
            .pivot(egui::Align2::RIGHT_TOP)
            .default_pos(corner)
            .resizable(false)
            .collapsible(false)
            .show(ui.ctx(), |ui| {
                ui.strong(&z.title);
                ui.label(RichText::new(&z.rank).weak());
                let size = 200.0;
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        single_image(ui, cx.textures, "outliers_zoom_image", z.version, &z.image, 0, size);
                        ui.label("image");
                    });
                    ui.vertical(|ui| match (encoder, z.request, answer) {
                        (false, _, _) => {
                            ui.label(
                                RichText::new(format!(
                                    "A {family} has no encoder: there is no reconstruction. Its score is {}.",
                                    chosen.label()
                                ))
                                .weak(),
                            );
                        }
                        (_, None, _) => {
                            ui.label(RichText::new("The model is gone: no reconstruction.").weak());
                        }
                        (_, Some(_), Some(a)) => {
                            let b = &a.value.reconstructions;
                            single_image(ui, cx.textures, "outliers_zoom_recon", a.version, b, 0, size);
                            ui.label("reconstruction");
                        }
                        (_, Some(_), None) => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label("Reconstructing…");
                            });
                        }
                    });
                });
                if let Some(from) = z.converted_from {
                    ui.label(
                        RichText::new(format!(
                            "converted from {from} to the model's {}, as it was scored",
                            z.image.shape
                        ))
                        .weak()
                        .small(),
                    );
                }
                egui::Grid::new("outliers_zoom_scores").num_columns(2).striped(true).show(ui, |ui| {
                    for &c in &run.capabilities.anomaly_scores {
                        let v = c.of(&z.sample);
                        if v.is_finite() {
                            let name = if c == chosen {
                                format!("{} (chosen)", c.label())
                            } else {
                                c.label().into()
                            };
                            ui.label(name);
                            ui.label(format!("{v:.3}"));
                            ui.end_row();
                        }
                    }
                    if let Some(kl) = z.sample.kl {
                        ui.label("KL to the prior (nats)");
                        ui.label(format!("{kl:.3}"));
                        ui.end_row();
                    }
                    if let Some(l) = z.sample.disc_logit {
                        ui.label("discriminator logit");
                        ui.label(format!("{l:.3}"));
                        ui.end_row();
                    }
                });
            });
        if !open {
            self.zoom = None;
        }
    }
}

/// The ranked ends of a scored set by `score`, with the images of `data` (the set it scored).
fn rank(version: u64, set: &ScoredSet, data: Option<&Dataset>, score: AnomalyScore) -> Ranked {
    let mut order: Vec<(f64, &SampleScore)> =
        set.samples.iter().map(|s| (score.of(s), s)).filter(|(v, _)| v.is_finite()).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let row = |items: Vec<(f64, &SampleScore)>| -> Option<GalleryRow> {
        let d = data?;
        let items: Vec<RankedImage> = items
            .into_iter()
            .filter(|(_, s)| s.index < d.len())
            .map(|(value, s)| RankedImage { value, sample: s.clone(), pixels: d.image(s.index).to_vec() })
            .collect();
        if items.is_empty() {
            return None;
        }
        let values: Vec<f32> = items.iter().flat_map(|it| it.pixels.iter().copied()).collect();
        Some(GalleryRow { batch: ImageBatch::from_f32(&values, d.shape), items })
    };
    let likely = row(order.iter().take(GALLERY).copied().collect());
    let unlikely = row(order.iter().rev().take(GALLERY).copied().collect());
    let shape = data.map_or(ImageShape::new(1, 1, 1), |d| d.shape);
    Ranked { version, score, shape, likely, unlikely }
}

/// "1st", "2nd", "3rd", "4th", …
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
