//! Small shared widgets and colours: buttons with an explicit accessibility label (so screen
//! readers and kittest find them by name even when they show an icon), pills and the level
//! meter.

use egui::{Color32, CornerRadius, Response, RichText, Role, Sense, Ui, Vec2, WidgetInfo};

pub const GREEN: Color32 = Color32::from_rgb(46, 160, 67);
pub const AMBER: Color32 = Color32::from_rgb(210, 153, 34);
pub const RED: Color32 = Color32::from_rgb(218, 54, 51);
pub const TILE_BACKGROUND: Color32 = Color32::from_rgb(32, 33, 36);
/// The outline of a call tile without a picture.
pub const TILE_OUTLINE: Color32 = Color32::from_rgb(60, 62, 68);
/// Behind the call's tiles: the window's clear colour, so no full-window rectangle is drawn.
pub const CALL_BACKGROUND: Color32 = Color32::from_rgb(18, 18, 20);
pub const SPEAKING: Color32 = Color32::from_rgb(138, 180, 248);

/// A button showing `text` whose accessible name is `label`.
pub fn labeled_button(ui: &mut Ui, text: impl Into<egui::WidgetText>, label: &str) -> Response {
    let response = ui.add(egui::Button::new(text));
    set_label(&response, Role::Button, label);
    response
}

/// A filled (coloured) button whose accessible name is `label`.
pub fn filled_button(ui: &mut Ui, text: &str, fill: Color32, label: &str) -> Response {
    let response = ui.add(
        egui::Button::new(RichText::new(text).color(Color32::WHITE).strong())
            .fill(fill)
            .min_size(Vec2::new(0.0, 32.0)),
    );
    set_label(&response, Role::Button, label);
    response
}

/// Overrides the accessible name of a widget.
pub fn set_label(response: &Response, kind: Role, label: &str) {
    let enabled = response.enabled();
    response.widget_info(|| WidgetInfo::labeled(kind, enabled, label));
}

/// A small rounded label with a coloured background.
pub fn pill(ui: &mut Ui, text: &str, fill: Color32) -> Response {
    egui::Frame::new()
        .fill(fill)
        .corner_radius(CornerRadius::same(10))
        .inner_margin(egui::Margin::symmetric(8, 3))
        .show(ui, |ui| {
            ui.label(RichText::new(text).color(Color32::WHITE).strong())
        })
        .inner
}

/// A horizontal level meter (0.0..=1.0) with an accessible value.
pub fn level_meter(ui: &mut Ui, level: f32, label: &str) -> Response {
    let (rect, response) = ui.allocate_exact_size(Vec2::new(160.0, 8.0), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
    let mut filled = rect;
    filled.set_width(rect.width() * level.clamp(0.0, 1.0));
    painter.rect_filled(filled, 4.0, GREEN);
    response.widget_info(|| {
        let mut info = WidgetInfo::labeled(Role::ProgressIndicator, true, label);
        info.value = Some(f64::from(level));
        info
    });
    response
}

/// Up to two initials of a display name, for camera-off tiles.
pub fn initials(name: &str) -> String {
    let letters: String = name
        .split_whitespace()
        .filter_map(|word| word.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    if letters.is_empty() {
        "?".to_owned()
    } else {
        letters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("Jean-Luc de la Paz"), "JD");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("élodie"), "É");
    }
}
