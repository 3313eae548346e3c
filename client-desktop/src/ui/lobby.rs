//! The lobby: your name, a live self-preview with camera / microphone / speaker pickers and a
//! mic level meter, "Start a call" (on the relay inside the app or the one from Settings),
//! "Join" with a pasted link, recent links, and why the last call ended.

use egui::{Align, Color32, Layout, RichText, Role, Sense, Ui, Vec2};
use vcall_engine::Stream;

use crate::devices::{CameraKind, MicrophoneKind};

use super::app::{RelayState, UiAction, VcallApp};
use super::device_menu::device_picker;
use super::jobs::DeviceSlot;
use super::textures::physical_size;
use super::tile_grid::{TILE_ASPECT, letterbox};
use super::widgets::{self, AMBER, RED, TILE_BACKGROUND, filled_button, labeled_button, set_label};

const BLUE: Color32 = Color32::from_rgb(26, 115, 232);

impl VcallApp {
    /// Draws the lobby.
    pub(crate) fn lobby_ui(&mut self, ui: &mut Ui, actions: &mut Vec<UiAction>) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.add_space(12.0);
            if let Some(ended) = self.lobby.ended.clone() {
                error_card(ui, &ended.title, &ended.detail, &ended.next_step, actions);
                ui.add_space(12.0);
            }
            let wide = ui.available_width() > 820.0;
            if wide {
                ui.columns(2, |columns| {
                    self.preview_column(&mut columns[0], actions);
                    self.join_column(&mut columns[1], actions);
                });
            } else {
                self.preview_column(ui, actions);
                ui.add_space(16.0);
                self.join_column(ui, actions);
            }
        });
    }

    fn preview_column(&mut self, ui: &mut Ui, actions: &mut Vec<UiAction>) {
        let width = ui.available_width().min(560.0);
        let (rect, response) =
            ui.allocate_exact_size(Vec2::new(width, width / TILE_ASPECT), Sense::hover());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 12.0, TILE_BACKGROUND);
        let camera_kind = self.local.camera_kind();
        let picture = self
            .textures
            .refresh(
                ui.ctx(),
                &self.preview_frames,
                Stream::Local,
                physical_size(ui.ctx(), rect),
            )
            .filter(|_| camera_kind != CameraKind::Off);
        let preview_label = match (&camera_kind, picture) {
            (CameraKind::Off, _) => {
                let initials = widgets::initials(&self.display_name());
                painter.circle_filled(rect.center(), rect.height() * 0.18, BLUE);
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    initials,
                    egui::FontId::proportional(rect.height() * 0.14),
                    Color32::WHITE,
                );
                "Self preview: camera off".to_owned()
            }
            (_, None) => {
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "Starting camera…",
                    egui::FontId::proportional(16.0),
                    Color32::LIGHT_GRAY,
                );
                "Self preview: starting".to_owned()
            }
            (kind, Some(picture)) => {
                let image_rect = letterbox(picture.size, rect);
                self.textures.paint(picture, &painter, image_rect);
                match kind {
                    CameraKind::TestPattern => "Self preview: test pattern".to_owned(),
                    CameraKind::Camera { name, .. } => format!("Self preview: {name}"),
                    CameraKind::Off => String::new(),
                }
            }
        };
        set_label(&response, Role::Image, &preview_label);
        ui.add_space(8.0);
        egui::Grid::new("lobby-devices")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let catalog = self.catalog.clone();
                ui.label("Camera");
                ui.horizontal(|ui| {
                    device_picker(
                        ui,
                        DeviceSlot::Camera,
                        &self.choices.camera,
                        catalog.as_ref(),
                        actions,
                    );
                    if let CameraKind::Camera { mode, .. } = self.local.camera_kind() {
                        ui.label(RichText::new(mode.to_string()).small().weak());
                    }
                });
                ui.end_row();
                ui.label("Microphone");
                ui.horizontal(|ui| {
                    device_picker(
                        ui,
                        DeviceSlot::Microphone,
                        &self.choices.microphone,
                        catalog.as_ref(),
                        actions,
                    );
                });
                ui.end_row();
                ui.label("");
                ui.horizontal(|ui| {
                    let level = self
                        .local
                        .microphone
                        .as_ref()
                        .map_or(0.0, |m| m.meter.display_level());
                    widgets::level_meter(ui, level, "Microphone level");
                    let kind = self.local.microphone_kind();
                    ui.label(
                        RichText::new(match kind {
                            MicrophoneKind::Off => "silent".to_owned(),
                            MicrophoneKind::Tone => "sending a test tone".to_owned(),
                            MicrophoneKind::Device(_) => "speak to test".to_owned(),
                        })
                        .small()
                        .weak(),
                    );
                    if kind != MicrophoneKind::Off {
                        ui.ctx()
                            .request_repaint_after(std::time::Duration::from_millis(50));
                    }
                });
                ui.end_row();
                ui.label("Speaker");
                ui.horizontal(|ui| {
                    device_picker(
                        ui,
                        DeviceSlot::Speaker,
                        &self.choices.speaker,
                        catalog.as_ref(),
                        actions,
                    )
                });
                ui.end_row();
            });
        for notice in self.local.notices() {
            ui.add_space(4.0);
            ui.label(RichText::new(format!("⚠ {notice}")).color(AMBER));
        }
        if self.local.busy() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Opening devices…");
            });
        }
    }

    fn join_column(&mut self, ui: &mut Ui, actions: &mut Vec<UiAction>) {
        ui.heading("Ready to talk?");
        ui.add_space(8.0);
        ui.label("Your name");
        let name = ui.add(
            egui::TextEdit::singleline(&mut self.lobby.name)
                .hint_text("How others see you")
                .desired_width(280.0),
        );
        set_label(&name, Role::TextInput, "Display name");
        ui.add_space(12.0);

        let starting = self.call.is_active() || matches!(self.relay, RelayState::Starting);
        ui.add_enabled_ui(!starting, |ui| {
            if filled_button(ui, "  Start a call  ", BLUE, "Start a call").clicked() {
                actions.push(UiAction::StartCall);
            }
        });
        let where_text = if self.settings.uses_embedded_relay() {
            match &self.relay {
                RelayState::Running(_, info) => format!(
                    "Hosted by this app on {} — reachable from this network only; the call ends when you quit vcall.",
                    info.public_addr
                ),
                RelayState::Failed(error) => format!("The relay inside the app could not start: {error}"),
                _ => "Hosted by this app — reachable from this network only; the call ends when you quit vcall. Set a relay in Settings to host on a server.".to_owned(),
            }
        } else {
            format!(
                "Hosted on the relay {} from Settings.",
                self.settings.relay_address
            )
        };
        ui.label(RichText::new(where_text).small().weak());
        if matches!(self.relay, RelayState::Starting) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Starting the relay…");
            });
        }
        ui.add_space(16.0);
        ui.separator();
        ui.add_space(8.0);
        ui.label("Join with an invite link");
        let mut join_now = false;
        ui.horizontal(|ui| {
            let field = ui.add(
                egui::TextEdit::singleline(&mut self.lobby.join_link)
                    .hint_text("vcall://host:port/room#k=…")
                    .desired_width(ui.available_width() - 70.0),
            );
            set_label(&field, Role::TextInput, "Invite link");
            if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                join_now = true;
            }
            let enabled = !self.lobby.join_link.trim().is_empty() && !self.call.is_active();
            if ui.add_enabled(enabled, egui::Button::new("Join")).clicked() {
                join_now = true;
            }
        });
        if join_now && !self.lobby.join_link.trim().is_empty() {
            actions.push(UiAction::Join(self.lobby.join_link.trim().to_owned()));
        }
        if let Some(error) = &self.lobby.form_error {
            ui.label(RichText::new(error).color(RED));
        }
        if !self.settings.recent_links.is_empty() {
            ui.add_space(12.0);
            ui.label(RichText::new("Recent calls").strong());
            ui.label(
                RichText::new("Saved without their secret: to rejoin, paste the full invite link (or add its #k=… / #p=… part).")
                    .small()
                    .weak(),
            );
            for link in self.settings.recent_links.clone() {
                let shown = short_link(&link);
                if ui
                    .link(&shown)
                    .on_hover_text(format!(
                        "{}\nPut this link in the join field",
                        redact(&link)
                    ))
                    .clicked()
                {
                    self.lobby.join_link = link;
                }
            }
        }
        if let Some(link) = self.last_link.clone() {
            ui.add_space(12.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("Last invite link: {}", short_link(&link))).small())
                    .on_hover_text(redact(&link));
                if labeled_button(ui, "Copy", "Copy invite link").clicked() {
                    actions.push(UiAction::CopyInviteLink);
                }
            });
        }
    }
}

/// `vcall://host:port/room`: a link without fingerprint and secret, short enough for a list.
pub fn short_link(link: &str) -> String {
    let end = link.find(['?', '#']).unwrap_or(link.len());
    link[..end].to_owned()
}

/// A link without its secret fragment, safe to show on screen.
pub fn redact(link: &str) -> String {
    match link.split_once('#') {
        Some((visible, _)) => format!("{visible}#…"),
        None => link.to_owned(),
    }
}

/// A red-bordered card: what went wrong and what to do next.
pub fn error_card(
    ui: &mut Ui,
    title: &str,
    detail: &str,
    next_step: &str,
    actions: &mut Vec<UiAction>,
) {
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, RED))
        .inner_margin(12.0)
        .show(ui, |ui| {
            ui.with_layout(Layout::top_down(Align::Min), |ui| {
                let heading = ui.label(RichText::new(title).strong().size(18.0).color(RED));
                set_label(&heading, Role::Label, title);
                if !detail.is_empty() {
                    ui.label(detail);
                }
                ui.label(RichText::new(next_step).italics());
                if labeled_button(ui, "OK", "Dismiss error").clicked() {
                    actions.push(UiAction::DismissError);
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_secret() {
        assert_eq!(
            redact("vcall://h:1/r?fp=ab#k=SECRET"),
            "vcall://h:1/r?fp=ab#…"
        );
        assert_eq!(redact("vcall://h:1/r"), "vcall://h:1/r");
        assert_eq!(short_link("vcall://h:1/r?fp=ab#k=SECRET"), "vcall://h:1/r");
        assert_eq!(short_link("vcall://h:1/r#k=SECRET"), "vcall://h:1/r");
    }
}
