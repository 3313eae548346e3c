//! The call toolbar: microphone and camera toggles (Ctrl+D, Ctrl+E), the device menu for
//! switching camera / microphone / speaker without leaving, statistics (Ctrl+I), security
//! (Ctrl+K), settings and Leave.

use egui::{Color32, Ui};

use vcall_engine::CallState;

use super::app::{UiAction, VcallApp};
use super::device_menu::device_list;
use super::jobs::DeviceSlot;
use super::widgets::{self, RED, filled_button, labeled_button};

/// Keyboard shortcuts and what they do.
pub const SHORTCUTS: [(&str, &str); 5] = [
    ("Ctrl+D", "Mute or unmute the microphone"),
    ("Ctrl+E", "Turn the camera off or on"),
    ("Ctrl+I", "Show or hide statistics"),
    ("Ctrl+K", "Show or hide security details"),
    ("Esc", "Close panels"),
];

impl VcallApp {
    /// Draws the toolbar.
    pub(crate) fn toolbar_ui(
        &mut self,
        ui: &mut Ui,
        state: &CallState,
        actions: &mut Vec<UiAction>,
    ) {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let toolbar_width = 620.0;
            ui.add_space(((ui.available_width() - toolbar_width) / 2.0).max(0.0));

            let (mic_text, mic_label, mic_fill) = if state.mic_muted {
                ("🔇 Unmute", "Unmute microphone", RED)
            } else {
                ("🎤 Mute", "Mute microphone", Color32::from_gray(70))
            };
            if filled_button(ui, mic_text, mic_fill, mic_label)
                .on_hover_text("Ctrl+D")
                .clicked()
            {
                actions.push(UiAction::ToggleMicrophone);
            }
            let level = self
                .local
                .microphone
                .as_ref()
                .map_or(0.0, |m| m.meter.display_level());
            if !state.mic_muted {
                widgets::level_meter(ui, level, "Microphone level");
            }

            let (camera_text, camera_label, camera_fill) = if state.camera_off {
                ("📷 Start video", "Turn camera on", RED)
            } else {
                ("📷 Stop video", "Turn camera off", Color32::from_gray(70))
            };
            if filled_button(ui, camera_text, camera_fill, camera_label)
                .on_hover_text("Ctrl+E")
                .clicked()
            {
                actions.push(UiAction::ToggleCamera);
            }

            let catalog = self.catalog.clone();
            let devices = ui.menu_button("Devices", |ui| {
                for slot in [
                    DeviceSlot::Camera,
                    DeviceSlot::Microphone,
                    DeviceSlot::Speaker,
                ] {
                    let current = self.choices.get(slot).clone();
                    ui.menu_button(super::device_menu::slot_name(slot), |ui| {
                        device_list(ui, slot, &current, catalog.as_ref(), actions);
                    });
                }
                ui.separator();
                if ui.button("Look for new devices").clicked() {
                    actions.push(UiAction::RescanDevices);
                }
            });
            widgets::set_label(&devices.response, egui::Role::Button, "Devices");

            let stats_label = if self.panels.stats {
                "Hide statistics"
            } else {
                "Show statistics"
            };
            if labeled_button(ui, "📊 Stats", stats_label)
                .on_hover_text("Ctrl+I")
                .clicked()
            {
                actions.push(UiAction::ToggleStats);
            }
            if labeled_button(ui, "🔒 Security", "Security details")
                .on_hover_text("Ctrl+K")
                .clicked()
            {
                actions.push(UiAction::ToggleSecurityPanel);
            }
            if labeled_button(ui, "⚙", "Settings")
                .on_hover_text("Settings")
                .clicked()
            {
                actions.push(UiAction::ToggleSettings);
            }
            ui.add_space(16.0);
            if filled_button(ui, "Leave", RED, "Leave call").clicked() {
                actions.push(UiAction::Leave);
            }
        });
        ui.add_space(6.0);
    }
}
