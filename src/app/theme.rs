//! The only place with colours.
// clippy.toml refuses colour constructors everywhere else so that every colour is named here.
#![allow(clippy::disallowed_methods, reason = "the theme is where colours are made")]

use egui::Color32;

use super::state::ThemeChoice;
use crate::engine::models::spec::PartRole;
use crate::engine::models::LossKey;

pub fn apply(ctx: &egui::Context, theme: ThemeChoice) {
    ctx.set_theme(match theme {
        ThemeChoice::Dark => egui::Theme::Dark,
        ThemeChoice::Light => egui::Theme::Light,
    });
}

/// The veil over the window while files are dragged over it.
pub const DROP_OVERLAY_FILL: Color32 = Color32::from_black_alpha(180);
/// The text on that veil.
pub const DROP_OVERLAY_TEXT: Color32 = Color32::WHITE;

fn dark(ui: &egui::Ui) -> bool {
    ui.visuals().dark_mode
}

/// The colour of a loss component, the same in every run.
pub fn series_color(ui: &egui::Ui, key: LossKey) -> Color32 {
    let d = dark(ui);
    let pick = |dark: (u8, u8, u8), light: (u8, u8, u8)| {
        let (r, g, b) = if d { dark } else { light };
        Color32::from_rgb(r, g, b)
    };
    match key {
        LossKey::Loss | LossKey::DLoss => pick((100, 170, 255), (20, 90, 200)),
        LossKey::Recon | LossKey::GLoss => pick((255, 170, 60), (200, 100, 0)),
        LossKey::Kl | LossKey::DReal => pick((110, 220, 120), (20, 140, 40)),
        LossKey::DFake => pick((235, 110, 200), (170, 30, 140)),
        LossKey::WEstimate => pick((235, 110, 200), (170, 30, 140)),
        LossKey::GradPenalty => pick((110, 220, 120), (20, 140, 40)),
    }
}

/// A faded version of a colour, for overlaid runs.
pub fn faded(c: Color32) -> Color32 {
    c.gamma_multiply(0.45)
}

pub fn error_fill(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(90, 30, 30)
    } else {
        Color32::from_rgb(255, 225, 225)
    }
}

pub fn warning_fill(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(85, 70, 20)
    } else {
        Color32::from_rgb(255, 243, 205)
    }
}

pub fn info_fill(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(30, 55, 85)
    } else {
        Color32::from_rgb(220, 235, 255)
    }
}

pub fn error_text(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(255, 140, 140)
    } else {
        Color32::from_rgb(170, 20, 20)
    }
}

pub fn ok_text(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(130, 220, 140)
    } else {
        Color32::from_rgb(20, 120, 40)
    }
}

/// Fill of a network-diagram box by part: encoder / generator, latent, decoder / discriminator.
pub fn diagram_fill(ui: &egui::Ui, role: PartRole) -> Color32 {
    let d = dark(ui);
    match (role, d) {
        (PartRole::Input, true) => Color32::from_rgb(35, 60, 95),
        (PartRole::Input, false) => Color32::from_rgb(215, 230, 250),
        (PartRole::Latent, true) => Color32::from_rgb(85, 55, 100),
        (PartRole::Latent, false) => Color32::from_rgb(235, 220, 245),
        (PartRole::Output, true) => Color32::from_rgb(40, 80, 55),
        (PartRole::Output, false) => Color32::from_rgb(215, 240, 220),
    }
}

/// Bars of the label histogram.
pub fn bar_color(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(100, 150, 220)
    } else {
        Color32::from_rgb(60, 110, 190)
    }
}

/// The scored sets overlaid in the Outliers tab's histogram: "train", "test", or any other
/// name (a loaded dataset).
pub fn scored_set_color(ui: &egui::Ui, set: &str) -> Color32 {
    match set {
        "test" => bar_color(ui),
        "train" => series_color(ui, LossKey::Kl),
        _ => series_color(ui, LossKey::Recon),
    }
}

/// Vertical markers in the loss plot.
pub fn marker_color(ui: &egui::Ui, kind: &super::run_view::MarkerKind) -> Color32 {
    use super::run_view::MarkerKind;
    match kind {
        MarkerKind::LearningRate(_) => series_color(ui, LossKey::Kl),
        MarkerKind::Beta(_) => series_color(ui, LossKey::DFake),
        MarkerKind::Hyper(..) => series_color(ui, LossKey::GradPenalty),
        MarkerKind::Diverged => error_text(ui),
    }
}

/// A distinct colour per class label (grey for unlabelled, `u32::MAX`).
pub fn label_color(label: u32) -> Color32 {
    if label == u32::MAX {
        return Color32::GRAY;
    }
    let hue = (label as f32 * 0.618_034).fract();
    egui::ecolor::Hsva::new(hue, 0.75, 0.9, 1.0).into()
}

/// The sample-quality curves: 0 FD, 1 recall, 2 coverage, 3 precision.
pub fn quality_color(ui: &egui::Ui, which: usize) -> Color32 {
    let (dark, light) = match which {
        0 => ((240, 200, 80), (170, 120, 0)),
        1 => ((110, 200, 255), (0, 110, 190)),
        2 => ((150, 230, 140), (30, 140, 50)),
        _ => ((200, 160, 255), (110, 60, 190)),
    };
    let (r, g, b) = if ui.visuals().dark_mode { dark } else { light };
    Color32::from_rgb(r, g, b)
}

/// The best step (lowest FD) on the quality plots.
pub fn best_marker(ui: &egui::Ui) -> Color32 {
    if dark(ui) {
        Color32::from_rgb(255, 110, 110)
    } else {
        Color32::from_rgb(200, 30, 30)
    }
}

/// A heat-map cell for a share `t` in [0, 1]: the panel's background at 0 to a warm colour at 1.
pub fn heat_color(ui: &egui::Ui, t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let (lo, hi) = if dark(ui) { ((35, 38, 48), (250, 180, 60)) } else { ((245, 245, 248), (200, 70, 20)) };
    let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * t).round() as u8;
    Color32::from_rgb(mix(lo.0, hi.0), mix(lo.1, hi.1), mix(lo.2, hi.2))
}

/// Text on a [`heat_color`] cell, readable on it.
pub fn heat_text(ui: &egui::Ui, t: f32) -> Color32 {
    match (dark(ui), t > 0.55) {
        (true, true) => Color32::BLACK,
        (true, false) => Color32::from_gray(220),
        (false, true) => Color32::WHITE,
        (false, false) => Color32::from_gray(40),
    }
}

/// The β sweep's plots: one point per run, and the line through the means per β.
pub fn sweep_points(ui: &egui::Ui) -> Color32 {
    faded(bar_color(ui))
}

pub fn sweep_mean(ui: &egui::Ui) -> Color32 {
    series_color(ui, LossKey::Recon)
}

/// The latent prior's samples on the latent map, over the test set's coloured classes.
pub fn prior_points(ui: &egui::Ui) -> Color32 {
    ui.visuals().strong_text_color()
}
