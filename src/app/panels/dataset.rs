//! The dataset panel: open a file or folder (file dialog, typed path, drag and drop, recent
//! list, the built-in MNIST), loading progress with Cancel, and what was loaded: counts, image
//! size, label histogram, a preview grid and the train/test split.

use std::path::PathBuf;
use std::sync::Arc;

use egui::{RichText, Vec2};

use crate::app::actions::Action;
use crate::app::loader::LoadJob;
use crate::app::state::LoadPrefs;
use crate::app::textures::Textures;
use crate::app::widgets::histogram::label_histogram;
use crate::app::widgets::image_grid::image_grid;
use crate::engine::data::{DataSource, Dataset, SyntheticSet};
use crate::engine::images::ImageBatch;

/// Images in the preview grid.
const PREVIEW: usize = 64;

/// A loaded dataset with what the panel shows about it, computed once.
pub struct LoadedDataset {
    pub data: Arc<Dataset>,
    /// Bumped on every load (texture versions).
    pub version: u64,
    histogram: Vec<usize>,
    class_names: Vec<String>,
    preview: ImageBatch,
}

impl LoadedDataset {
    pub fn new(data: Dataset, version: u64) -> Self {
        let histogram = data.label_histogram();
        let class_names = (0..histogram.len()).map(|i| data.class_name(i as u32)).collect();
        // Evenly spaced images show more of the data than the first few.
        let n = data.len();
        let picks: Vec<usize> = (0..PREVIEW.min(n)).map(|i| i * n / PREVIEW.min(n).max(1)).collect();
        let preview = ImageBatch::from_f32(&data.gather(&picks), data.shape);
        Self { data: Arc::new(data), version, histogram, class_names, preview }
    }
}

pub struct DatasetCtx<'a> {
    pub dataset: Option<&'a LoadedDataset>,
    pub loading: Option<&'a LoadJob>,
    pub dialog_open: bool,
    pub recent: &'a [DataSource],
    /// How the next load decodes images (edited here).
    pub load: &'a mut LoadPrefs,
    /// Train and test image counts under the configured split.
    pub split: Option<(usize, usize)>,
    /// The configuration's test share (edited here).
    pub test_fraction: &'a mut f64,
    /// Training runs: the split cannot change.
    pub locked: bool,
    pub textures: &'a mut Textures,
    pub actions: &'a mut Vec<Action>,
}

#[derive(Default)]
pub struct DatasetPanel {
    /// The typed path.
    pub path: String,
}

impl DatasetPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: DatasetCtx<'_>) {
        let DatasetCtx {
            dataset,
            loading,
            dialog_open,
            recent,
            load,
            split,
            test_fraction,
            locked,
            textures,
            actions,
        } = cx;
        ui.heading("Dataset");
        let idle = loading.is_none() && !locked;
        if locked {
            ui.label(RichText::new("Stop the run to load another dataset.").weak().small());
        }
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(idle, egui::Button::new("Built-in MNIST"))
                .on_hover_text("10,000 MNIST digits")
                .clicked()
            {
                actions.push(Action::Load(DataSource::Builtin));
            }
            if ui
                .add_enabled(idle, egui::Button::new("Shapes"))
                .on_hover_text(
                    "6,144 generated 32×32 sprites with known factors: shape, scale, rotation, x, y \
                     (for the disentanglement scores)",
                )
                .clicked()
            {
                actions.push(Action::Load(DataSource::Synthetic(SyntheticSet::Shapes)));
            }
            let open = ui
                .add_enabled(idle && !dialog_open, egui::Button::new("Open…"))
                .on_hover_text("An IDX file (raw or .gz) or a CSV file");
            if open.clicked() {
                actions.push(Action::OpenFileDialog);
            }
            let folder = ui
                .add_enabled(idle && !dialog_open, egui::Button::new("Open folder…"))
                .on_hover_text("A folder of images (one subfolder per class, or flat)");
            if folder.clicked() {
                actions.push(Action::OpenFolderDialog);
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Path");
            // Right to left: the Load button first, then the field takes exactly what is left.
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let load = ui.add_enabled(idle && !self.path.trim().is_empty(), egui::Button::new("Load"));
                let field = egui::TextEdit::singleline(&mut self.path)
                    .hint_text("/path/to/file.csv, an IDX file or a folder")
                    .desired_width((ui.available_width() - 2.0).floor().max(40.0));
                let response = ui.add_enabled(idle, field).labelled_by(label.id);
                let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if load.clicked() || (enter && !self.path.trim().is_empty()) {
                    actions.push(Action::Load(DataSource::parse(self.path.trim())));
                }
            });
        });
        ui.label(RichText::new("You can also drop a file or folder onto the window.").weak().small());
        ui.add_enabled_ui(idle, |ui| load_options_ui(ui, load));

        if let Some(job) = loading {
            loading_ui(ui, job, actions);
        }
        if !recent.is_empty() {
            egui::CollapsingHeader::new("Recent").default_open(false).show(ui, |ui| {
                for src in recent {
                    let text = match src {
                        DataSource::Path(p) => short_path(p),
                        other => other.title(),
                    };
                    let b = ui.add_enabled(idle, egui::Button::new(text).truncate());
                    if b.on_hover_text(src.to_string()).clicked() {
                        actions.push(Action::Load(src.clone()));
                    }
                }
            });
        }
        ui.separator();
        match dataset {
            Some(d) => loaded_ui(ui, d, split, test_fraction, locked, textures),
            None if loading.is_none() => {
                ui.label(RichText::new("No dataset loaded.").weak());
            }
            None => {}
        }
    }
}

fn loaded_ui(
    ui: &mut egui::Ui,
    d: &LoadedDataset,
    split: Option<(usize, usize)>,
    test_fraction: &mut f64,
    locked: bool,
    textures: &mut Textures,
) {
    let data = &d.data;
    ui.label(RichText::new(&data.name).strong());
    let (train, test) = split.unwrap_or((data.len(), 0));
    ui.label(format!("{} images · {train} train / {test} test", data.len()));
    let s = data.shape;
    let channels = match s.channels {
        1 => "1 channel (grey)".to_string(),
        3 => "3 channels (RGB)".to_string(),
        c => format!("{c} channels"),
    };
    ui.label(format!("{}×{} pixels, {channels}", s.width, s.height));

    let fixed = data.fixed_split.is_some();
    ui.horizontal(|ui| {
        let label = ui.label("Test share");
        let mut pct = *test_fraction * 100.0;
        let slider = egui::Slider::new(&mut pct, 0.0..=50.0).suffix(" %").fixed_decimals(0);
        let r = ui.add_enabled(!fixed && !locked, slider).labelled_by(label.id);
        let r = if fixed {
            r.on_disabled_hover_text("This dataset comes with its own train/test split")
        } else {
            r
        };
        if r.changed() {
            *test_fraction = (pct / 100.0).clamp(0.0, 0.95);
        }
    });
    if fixed {
        ui.label(RichText::new("Fixed split from the data").weak().small());
    }

    if !d.histogram.is_empty() {
        ui.label(RichText::new("Images per label").small());
        label_histogram(ui, &d.histogram, &d.class_names, 48.0);
    } else {
        ui.label(RichText::new("No labels").weak().small());
    }
    ui.label(RichText::new("Preview").small());
    let w = ui.available_width().min(320.0);
    image_grid(ui, textures, "dataset_preview", d.version, &d.preview, 8, Vec2::splat(w));
}

/// "Resize to" and "Channels": applied to the next load, whatever the source.
fn load_options_ui(ui: &mut egui::Ui, load: &mut LoadPrefs) {
    ui.horizontal(|ui| {
        ui.checkbox(&mut load.resize, "Resize to")
            .on_hover_text("Every image to this size as it loads (dcgan64 and conv_vae64 expect 64×64)");
        ui.add_enabled_ui(load.resize, |ui| {
            let [w, h] = &mut load.size;
            size_field(ui, w, "Width");
            ui.label("×");
            size_field(ui, h, "Height");
        });
        ui.separator();
        let label = ui.label("Channels");
        let text = |c: Option<usize>| match c {
            None => "as stored",
            Some(1) => "1 (grey)",
            Some(_) => "3 (RGB)",
        };
        egui::ComboBox::from_id_salt("load_channels")
            .selected_text(text(load.channels))
            .show_ui(ui, |ui| {
                for c in [None, Some(1), Some(3)] {
                    ui.selectable_value(&mut load.channels, c, text(c));
                }
            })
            .response
            .labelled_by(label.id);
    });
}

/// A side in pixels, named for screen readers (the row shows only "64 × 64").
fn size_field(ui: &mut egui::Ui, value: &mut usize, name: &str) {
    let r = ui.add(egui::DragValue::new(value).range(1..=4096));
    ui.ctx().accesskit_node_builder(r.id, |node| node.set_label(name));
}

fn loading_ui(ui: &mut egui::Ui, job: &LoadJob, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.spinner();
        let what = match &job.source {
            DataSource::Builtin => "the built-in MNIST".to_string(),
            DataSource::Path(p) => short_path(p),
            DataSource::Synthetic(set) => set.title().to_string(),
        };
        ui.label(format!("Loading {what}…"));
    });
    ui.horizontal(|ui| {
        if let Some((done, total)) = job.progress {
            let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
            ui.add(egui::ProgressBar::new(frac).desired_width(160.0).text(format!("{done}/{total}")));
        }
        let label = if job.is_cancelling() { "Cancelling…" } else { "Cancel" };
        if ui.add_enabled(!job.is_cancelling(), egui::Button::new(label)).clicked() {
            actions.push(Action::CancelLoad);
        }
    });
}

/// The last two components of a path ("mnist/train.csv").
pub fn short_path(p: &std::path::Path) -> String {
    let parts: Vec<String> =
        p.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let s: PathBuf = parts.iter().rev().collect();
    s.display().to_string()
}
