//! A small bar chart of image counts per label.

use egui::{Align2, FontId, Rect, Sense, Stroke, Vec2};

use crate::app::theme;

/// Bars for `counts`, labelled with `names` when there are few enough classes to read them.
pub fn label_histogram(ui: &mut egui::Ui, counts: &[usize], names: &[String], height: f32) -> egui::Response {
    // Floored, and a pixel short: rounding a full-width allocation up would widen a resizable
    // panel a little every frame.
    let width = (ui.available_width() - 1.0).floor().max(60.0);
    let show_names = counts.len() <= 26;
    let label_h = if show_names { 14.0 } else { 0.0 };
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height + label_h), Sense::hover());
    if counts.is_empty() {
        return response;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f32;
    let n = counts.len() as f32;
    let slot = rect.width() / n;
    let gap = (slot * 0.15).min(3.0);
    let painter = ui.painter_at(rect);
    let color = theme::bar_color(ui);
    let text_color = ui.visuals().weak_text_color();
    let hover_x = response.hover_pos().map(|p| p.x);
    let mut hovered = None;
    for (i, &c) in counts.iter().enumerate() {
        let x0 = rect.left() + i as f32 * slot;
        let bar_h = height * c as f32 / max;
        let bar = Rect::from_min_max(
            egui::pos2(x0 + gap / 2.0, rect.top() + height - bar_h),
            egui::pos2(x0 + slot - gap / 2.0, rect.top() + height),
        );
        let is_hovered = hover_x.is_some_and(|x| x >= x0 && x < x0 + slot);
        if is_hovered {
            hovered = Some(i);
        }
        painter.rect_filled(bar, 1.0, if is_hovered { color.gamma_multiply(1.4) } else { color });
        if show_names {
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            painter.text(
                egui::pos2(x0 + slot / 2.0, rect.top() + height + 1.0),
                Align2::CENTER_TOP,
                name,
                FontId::proportional(10.0),
                text_color,
            );
        }
    }
    painter.line_segment(
        [egui::pos2(rect.left(), rect.top() + height), egui::pos2(rect.right(), rect.top() + height)],
        Stroke::new(1.0, text_color),
    );
    match hovered {
        Some(i) => {
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            response.on_hover_text(format!("label {name}: {} images", counts[i]))
        }
        None => response,
    }
}
