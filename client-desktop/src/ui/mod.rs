//! The `vcall` desktop app (eframe/egui). State and actions live in [`app`]; each screen draws
//! from that state in its own module ([`lobby`], [`call_view`], [`toolbar`],
//! [`security_panel`], [`settings_window`]) and returns actions. The UI thread only draws and
//! sends commands: devices, the embedded relay and the call start on background threads
//! ([`jobs`]), decoded pictures arrive as textures updated in place ([`textures`]), and repaints
//! are requested by the engine when something changed.

pub mod advice;
pub mod app;
pub mod bench;
pub mod call_controller;
pub mod call_view;
pub mod device_menu;
pub mod embedded_relay;
pub mod frame_timer;
pub mod jobs;
pub mod launch;
pub mod lobby;
pub mod members;
pub mod names;
pub mod security_panel;
pub mod settings_window;
pub mod stats_overlay;
pub mod textures;
pub mod tile_grid;
pub mod toolbar;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::time::Instant;

use egui::{Key, KeyboardShortcut, Modifiers, RichText};

pub use app::{UiAction, VcallApp};
pub use launch::LaunchOptions;

/// Runs the app in a native window until it is closed.
pub fn run(options: LaunchOptions) -> eframe::Result {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("vcall")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([640.0, 480.0]),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "vcall",
        native,
        Box::new(move |cc| Ok(Box::new(VcallApp::new(&cc.egui_ctx, options)))),
    )
}

impl VcallApp {
    /// Draws one frame of the whole app (what `eframe::App::ui` calls; tests call it too).
    pub fn root_ui(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        self.update_state();
        let mut actions = Vec::new();
        self.shortcuts(ui.ctx(), &mut actions);
        if self.call.is_active() {
            self.call_ui(ui, &mut actions);
        } else {
            egui::Panel::top("lobby-top-bar").show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(RichText::new("vcall").strong().size(20.0));
                    ui.label(RichText::new("end-to-end encrypted calls").weak());
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if widgets::labeled_button(ui, "⚙ Settings", "Settings").clicked() {
                            actions.push(UiAction::ToggleSettings);
                        }
                    });
                });
            });
            egui::CentralPanel::default().show(ui, |ui| {
                ui.set_max_width(1100.0);
                self.lobby_ui(ui, &mut actions);
            });
        }
        self.settings_window(&ui.ctx().clone(), &mut actions);
        if let Some((message, _)) = &self.toast {
            egui::Area::new(egui::Id::unique("vcall-toast"))
                .anchor(egui::Align2::CENTER_BOTTOM, [0.0, -72.0])
                .show(ui.ctx(), |ui| {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.set_max_width(520.0);
                        ui.label(message.as_str());
                    });
                });
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
        for action in actions {
            self.apply(action);
        }
        self.frame_timer.record_ui(started.elapsed());
    }

    fn shortcuts(&mut self, ctx: &egui::Context, actions: &mut Vec<UiAction>) {
        let in_call = self.call.is_active();
        ctx.input_mut(|input| {
            let mut pressed =
                |key| input.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, key));
            if in_call {
                if pressed(Key::D) {
                    actions.push(UiAction::ToggleMicrophone);
                }
                if pressed(Key::E) {
                    actions.push(UiAction::ToggleCamera);
                }
                if pressed(Key::I) {
                    actions.push(UiAction::ToggleStats);
                }
                if pressed(Key::K) {
                    actions.push(UiAction::ToggleSecurityPanel);
                }
            }
            if input.consume_key(Modifiers::NONE, Key::Escape) {
                if self.panels.settings {
                    actions.push(UiAction::ToggleSettings);
                } else if self.panels.security {
                    actions.push(UiAction::ToggleSecurityPanel);
                }
            }
        });
    }
}

impl eframe::App for VcallApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.frame_timer.record_total(frame.info().cpu_usage);
        self.root_ui(ui);
    }

    /// Says goodbye to the call (so the others see us leave at once) before the window closes.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.leave_on_exit();
    }
}
