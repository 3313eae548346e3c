//! The `vcall` desktop app (eframe/egui). State and actions live in [`app`]; each screen draws
//! from that state in its own module ([`lobby`], [`call_view`], [`toolbar`],
//! [`security_panel`], [`settings_window`]) and returns actions. The UI thread only draws and
//! sends commands: devices, the embedded relay and the call start on background threads
//! ([`jobs`]), decoded pictures arrive as textures updated in place ([`textures`]), and repaints
//! are asked for through one pacer ([`repaint`]) when something changed.

pub mod advice;
pub mod app;
pub mod bench;
pub mod call_controller;
pub mod call_view;
pub mod device_menu;
pub mod embedded_relay;
pub mod frame_timer;
pub mod i420_gl;
pub mod jobs;
pub mod launch;
pub mod lobby;
pub mod members;
pub mod names;
pub mod repaint;
pub mod screenshot;
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
    eframe::run_native(
        "vcall",
        native_options("vcall"),
        Box::new(move |cc| Ok(Box::new(VcallApp::for_window(cc, options)))),
    )
}

/// The window of the app (and of its UI bench).
pub(crate) fn native_options(title: &str) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(title)
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([640.0, 480.0]),
        // Dithering adds shader work to every pixel of every repaint (a software GL feels it)
        // for gradients this UI does not have.
        dithering: false,
        ..eframe::NativeOptions::default()
    }
}

/// What `--print-ui-stats` counted at its last line.
pub(crate) struct UiStatsMark {
    at: Instant,
    uploads: u64,
    streams: Vec<(vcall_engine::Stream, u64)>,
}

impl VcallApp {
    /// Draws one frame of the whole app (what `eframe::App::ui` calls; tests call it too).
    pub fn root_ui(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        self.pacer
            .painted(self.panels.stats && self.call.is_active());
        self.frame_timer.record_paint(started);
        self.textures.start_pass();
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
        self.print_ui_stats(started);
        if let Some(request) = &self.options.screenshot
            && self
                .screenshot
                .step(request, ui.ctx(), self.textures.drawn(), started)
        {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// With `--print-ui-stats`: one line of the UI's figures every so often, on stderr: repaints
    /// and uploads per second, the UI's time per pass, each stream's drawn frame rate and each
    /// peer's capture→display latency (p95).
    fn print_ui_stats(&mut self, now: Instant) {
        let Some(every) = self.options.print_ui_stats else {
            return;
        };
        let uploads = self.textures.uploads();
        let streams = self.textures.uploads_by_stream();
        let mark = self.ui_stats_printed.get_or_insert_with(|| UiStatsMark {
            at: now,
            uploads,
            streams: streams.clone(),
        });
        let elapsed = now.saturating_duration_since(mark.at);
        if elapsed < every {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let mut shown: Vec<String> = streams
            .iter()
            .map(|(stream, count)| {
                let before = mark
                    .streams
                    .iter()
                    .find(|(s, _)| s == stream)
                    .map_or(0, |(_, c)| *c);
                let name = match stream {
                    vcall_engine::Stream::Local => "self".to_owned(),
                    vcall_engine::Stream::Remote(peer) => peer.to_string(),
                };
                format!(
                    "{name}={:.1}",
                    count.saturating_sub(before) as f64 / seconds
                )
            })
            .collect();
        shown.sort();
        let latency: Vec<String> = self
            .call
            .state()
            .map(|state| {
                state
                    .peers
                    .iter()
                    .map(|p| format!("{}={:.0}", p.peer_id, p.stats.latency_ms.p95))
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "vcall ui: {} repaints/s, {:.1} uploads/s, ui() {}; shown fps: {}; latency p95 ms: {}",
            self.frame_timer.repaints_per_second(),
            (uploads - mark.uploads) as f64 / seconds,
            self.frame_timer.ui_summary(),
            shown.join(" "),
            latency.join(" ")
        );
        *mark = UiStatsMark {
            at: now,
            uploads,
            streams,
        };
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
    /// The call's background is the clear colour (see `call_view`).
    fn clear_color(&self, _visuals: &egui::Visuals) -> [f32; 4] {
        widgets::CALL_BACKGROUND.to_normalized_gamma_f32()
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.frame_timer.record_total(frame.info().cpu_usage);
        self.root_ui(ui);
    }

    /// Says goodbye to the call (so the others see us leave at once) before the window closes.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.leave_on_exit();
    }
}
