//! A small bar chart of real values (NaN bars are left empty), each named below.

use egui::{Align2, FontId, Rect, Sense, Stroke, Vec2};

use crate::app::theme;

/// Bars for `values` from zero up to the largest, named by `names`; hovering one shows
/// `hover(i)`. `label` is the chart's accessible name.
pub fn value_bars(
    ui: &mut egui::Ui,
    values: &[f64],
    names: &[String],
    height: f32,
    label: &str,
    hover: impl Fn(usize) -> String,
) -> egui::Response {
    // Floored, and a pixel short, as in the label histogram (a resizable panel must not grow).
    let width = (ui.available_width() - 1.0).floor().max(60.0);
    let label_h = 14.0;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height + label_h), Sense::hover());
    let label = label.to_string();
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
    if values.is_empty() {
        return response;
    }
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let slot = rect.width() / values.len() as f32;
    let gap = (slot * 0.15).min(3.0);
    let painter = ui.painter_at(rect);
    let color = theme::bar_color(ui);
    let text_color = ui.visuals().weak_text_color();
    let hover_x = response.hover_pos().map(|p| p.x);
    let mut hovered = None;
    for (i, &v) in values.iter().enumerate() {
        let x0 = rect.left() + i as f32 * slot;
        let is_hovered = hover_x.is_some_and(|x| x >= x0 && x < x0 + slot);
        if is_hovered {
            hovered = Some(i);
        }
        if v.is_finite() && v > 0.0 {
            let bar_h = height * (v / max) as f32;
            let bar = Rect::from_min_max(
                egui::pos2(x0 + gap / 2.0, rect.top() + height - bar_h),
                egui::pos2(x0 + slot - gap / 2.0, rect.top() + height),
            );
            painter.rect_filled(bar, 1.0, if is_hovered { color.gamma_multiply(1.4) } else { color });
        }
        if let Some(name) = names.get(i) {
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
        Some(i) => response.on_hover_text(hover(i)),
        None => response,
    }
}
