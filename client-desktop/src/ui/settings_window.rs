//! The settings window: display name, devices, the relay calls are hosted on (the one inside
//! the app, or a server such as a VPS with its certificate fingerprint), recent links and the
//! keyboard shortcuts. Changes are saved in the background to a file only you can read.

use egui::{RichText, Role};

use super::app::{UiAction, VcallApp};
use super::device_menu::{device_picker, slot_name};
use super::jobs::DeviceSlot;
use super::toolbar::SHORTCUTS;
use super::widgets::{labeled_button, set_label};

impl VcallApp {
    /// Draws the settings window when open.
    pub(crate) fn settings_window(&mut self, ctx: &egui::Context, actions: &mut Vec<UiAction>) {
        let mut open = self.panels.settings;
        let mut changed = false;
        egui::Window::new("Settings")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label(RichText::new("Your name").strong());
                let name = ui.text_edit_singleline(&mut self.settings.display_name);
                set_label(&name, Role::TextInput, "Display name");
                if name.lost_focus() {
                    self.lobby.name = self.settings.display_name.clone();
                    changed = true;
                }
                ui.add_space(8.0);
                ui.label(RichText::new("Devices").strong());
                let catalog = self.catalog.clone();
                egui::Grid::new("settings-devices").num_columns(2).show(ui, |ui| {
                    for slot in [DeviceSlot::Camera, DeviceSlot::Microphone, DeviceSlot::Speaker] {
                        ui.label(slot_name(slot));
                        let current = self.choices.get(slot).clone();
                        device_picker(ui, slot, &current, catalog.as_ref(), actions);
                        ui.end_row();
                    }
                });
                ui.add_space(8.0);
                ui.label(RichText::new("Relay for new calls").strong());
                ui.label(RichText::new("Leave empty to host calls inside this app (this network only). For calls over the internet, enter your relay, e.g. relay.example.org:4433.").small().weak());
                let address = ui.add(egui::TextEdit::singleline(&mut self.settings.relay_address).hint_text("inside this app"));
                set_label(&address, Role::TextInput, "Relay address");
                ui.label(RichText::new("Certificate fingerprint (only for a self-signed relay certificate; printed by vcall-relay at start)").small().weak());
                let fingerprint = ui.add(egui::TextEdit::singleline(&mut self.settings.relay_fingerprint).hint_text("64 hex digits"));
                set_label(&fingerprint, Role::TextInput, "Relay fingerprint");
                ui.label(RichText::new("Access token (only for a relay that requires one; from its operator, or the t= part of an invite link it made)").small().weak());
                let token = ui.add(egui::TextEdit::singleline(&mut self.settings.relay_token).password(true).hint_text("none"));
                set_label(&token, Role::TextInput, "Relay access token");
                changed |= address.lost_focus() || fingerprint.lost_focus() || token.lost_focus();
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    ui.label(format!("{} recent links saved", self.settings.recent_links.len()));
                    if labeled_button(ui, "Forget", "Forget recent links").clicked() {
                        actions.push(UiAction::ForgetRecentLinks);
                    }
                });
                ui.add_space(8.0);
                ui.label(RichText::new("Keyboard shortcuts").strong());
                egui::Grid::new("settings-shortcuts").num_columns(2).show(ui, |ui| {
                    for (keys, what) in SHORTCUTS {
                        ui.label(RichText::new(keys).monospace());
                        ui.label(what);
                        ui.end_row();
                    }
                });
            });
        if changed {
            actions.push(UiAction::SaveSettings);
        }
        if open != self.panels.settings {
            self.panels.settings = open;
            actions.push(UiAction::SaveSettings);
        }
    }
}
