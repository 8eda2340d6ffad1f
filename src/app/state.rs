//! What survives a restart: preferences, the last dataset and the last configuration. Runtime
//! state (worker, textures, loaded data) lives in [`super::App`] and is never saved.

use serde::{Deserialize, Serialize};

use crate::engine::config::{LegacyRunConfig, RunConfig};
use crate::engine::data::{DataSource, LoadOptions};
use crate::engine::protocol::QualitySchedule;

/// How many datasets the recent list keeps.
pub const RECENT_MAX: usize = 8;

/// Dark or light look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThemeChoice {
    #[default]
    Dark,
    Light,
}

/// Loss-plot preferences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlotPrefs {
    /// EMA weight of the past, in [0, 0.999]; 0 = raw values.
    pub smoothing: f32,
    pub log_y: bool,
    /// Show the per-epoch train and test losses.
    pub show_epochs: bool,
}

impl Default for PlotPrefs {
    fn default() -> Self {
        Self { smoothing: 0.6, log_y: false, show_epochs: true }
    }
}

/// How the dataset panel loads images: "Resize to" and "Channels" (every source; what the
/// 64×64 presets need from a folder of photos of any size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadPrefs {
    /// Resize every image to `size`.
    pub resize: bool,
    /// Width and height, kept while `resize` is off.
    pub size: [usize; 2],
    /// 1 (grey) or 3 (RGB); `None`: as stored.
    pub channels: Option<usize>,
}

impl Default for LoadPrefs {
    fn default() -> Self {
        Self { resize: false, size: [64, 64], channels: None }
    }
}

impl LoadPrefs {
    pub fn options(&self) -> LoadOptions {
        let [w, h] = self.size;
        LoadOptions {
            resize: self.resize.then_some((h, w)),
            channels: self.channels,
            ..LoadOptions::default()
        }
    }
}

/// Everything the app persists (eframe storage, key [`eframe::APP_KEY`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub theme: ThemeChoice,
    pub plot: PlotPrefs,
    /// The configuration being edited (the last one used).
    #[serde(rename = "run_config")]
    pub config: RunConfig,
    /// The configuration as versions before the tagged model configuration saved it (under
    /// `config`): read once by [`Persisted::upgraded`], never written.
    #[serde(rename = "config", skip_serializing, deserialize_with = "present")]
    pub legacy_config: Option<LegacyRunConfig>,
    /// The dataset loaded last; opened again at start-up.
    pub last_dataset: Option<DataSource>,
    /// Most recent first, without duplicates.
    pub recent: Vec<DataSource>,
    /// Title of the selected central tab.
    pub tab: String,
    /// How datasets are loaded.
    pub load: LoadPrefs,
    /// When sample quality is measured during training (auto: within 10% of its time).
    pub quality: QualitySchedule,
}

/// A field that is there (RON writes an `Option` as `Some(..)`; the old field was no option).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LegacyRunConfig>, D::Error> {
    LegacyRunConfig::deserialize(d).map(Some)
}

impl Persisted {
    /// State as loaded, with a configuration saved by an older version moved into `config`.
    pub fn upgraded(mut self) -> Self {
        if let Some(old) = self.legacy_config.take() {
            self.config = old.into();
        }
        self
    }

    /// Records a successfully loaded dataset as the last one and at the top of the recent list.
    pub fn remember_dataset(&mut self, source: &DataSource) {
        self.last_dataset = Some(source.clone());
        self.recent.retain(|s| s != source);
        self.recent.insert(0, source.clone());
        self.recent.truncate(RECENT_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_list_is_deduplicated_and_bounded() {
        let mut p = Persisted::default();
        for i in 0..20 {
            p.remember_dataset(&DataSource::Path(format!("/d/{i}").into()));
        }
        p.remember_dataset(&DataSource::Path("/d/15".into()));
        assert_eq!(p.recent.len(), RECENT_MAX);
        assert_eq!(p.recent[0], DataSource::Path("/d/15".into()));
        assert_eq!(p.recent.iter().filter(|s| **s == DataSource::Path("/d/15".into())).count(), 1);
    }

    #[test]
    fn old_or_partial_state_still_loads() {
        let p: Persisted = serde_json::from_str(r#"{"theme":"Light","unknown":1}"#).unwrap();
        assert_eq!(p.theme, ThemeChoice::Light);
        assert_eq!(p.config, RunConfig::default());
    }
}
