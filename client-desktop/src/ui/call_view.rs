//! The call screen: a top bar (room, E2EE badge, invite link, duration), the responsive grid
//! of video tiles (self included; letterboxed video or initials, sanitized name with its
//! fingerprint tag, muted / camera-off / no-link-proof / same-name / not-responding badges, a
//! ring around whoever speaks, optional stats), the toolbar and the security panel.

use std::time::Duration;

use egui::text::{LayoutJob, TextFormat};
use egui::{
    Align2, Color32, FontId, Rect, RichText, Role, Sense, Stroke, StrokeKind, Ui, Vec2, pos2,
};
use vcall_engine::{CallPhase, CallState, Stream};

use super::app::{UiAction, VcallApp};
use super::lobby::redact;
use super::members::{Member, members};
use super::security_panel::{SecurityLevel, security_badge};
use super::stats_overlay::{peer_stats_text, self_stats_text};
use super::textures::physical_size;
use super::tile_grid::{layout, letterbox, letterbox_bars};
use super::widgets::{
    self, AMBER, GREEN, RED, SPEAKING, TILE_BACKGROUND, TILE_OUTLINE, labeled_button, set_label,
};

/// What one tile shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TileModel {
    /// Whose tile it is: name, tag and security standing.
    pub member: Member,
    pub mic_muted: bool,
    pub camera_off: bool,
    pub speaking: bool,
    pub stats: Option<String>,
}

impl TileModel {
    /// Whose picture it shows ([`Stream::Local`] for yourself).
    pub fn stream(&self) -> Stream {
        self.member.stream
    }

    /// The tile's accessible description, e.g.
    /// "Ada (you) · a1b2 c3d4: microphone muted, camera on".
    pub fn accessible_label(&self) -> String {
        let mut parts = vec![
            if self.mic_muted {
                "microphone muted"
            } else {
                "microphone on"
            },
            if self.camera_off {
                "camera off"
            } else {
                "camera on"
            },
        ];
        if !self.member.has_link {
            parts.push("could not prove they have the room link");
        }
        if self.member.same_name {
            parts.push("same name as another member");
        }
        if self.member.silent {
            parts.push("not responding");
        }
        if self.speaking {
            parts.push("speaking");
        }
        format!("{}: {}", self.member.name_with_tag(), parts.join(", "))
    }

    /// The name as shown ("Ada (you)" for yourself).
    pub fn display_name(&self) -> String {
        self.member.shown_name()
    }
}

/// The tiles of a call: yourself first, then everyone else in roster order.
pub fn tiles_for(
    state: &CallState,
    show_stats: bool,
    self_stats: Option<String>,
) -> Vec<TileModel> {
    let mut self_stats = if show_stats { self_stats } else { None };
    members(state)
        .into_iter()
        .map(|member| {
            let peer = match member.stream {
                Stream::Remote(id) => state.peers.iter().find(|p| p.peer_id == id),
                Stream::Local => None,
            };
            let (mic_muted, camera_off, speaking) = match peer {
                Some(p) => (p.mic_muted, p.camera_off, p.speaking),
                None => (state.mic_muted, state.camera_off, state.speaking),
            };
            TileModel {
                member,
                mic_muted,
                camera_off,
                speaking: speaking && !mic_muted,
                stats: match peer {
                    Some(p) => show_stats.then(|| peer_stats_text(&p.stats)),
                    None => self_stats.take(),
                },
            }
        })
        .collect()
}

/// The connection to the relay was lost and the call is reconnecting by itself: say so
/// above the tiles (which stay), with the attempt and why.
fn reconnecting_banner(ui: &mut Ui, attempt: u32, last_error: &str) {
    egui::Frame::new()
        .fill(Color32::from_rgb(90, 70, 10))
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(
                    RichText::new(format!("Reconnecting… (attempt {attempt})"))
                        .strong()
                        .color(Color32::WHITE),
                );
                ui.label(RichText::new(last_error).color(Color32::from_gray(220)));
            });
        });
    ui.add_space(6.0);
}

impl VcallApp {
    /// Draws the whole call screen.
    pub(crate) fn call_ui(&mut self, ui: &mut Ui, actions: &mut Vec<UiAction>) {
        let Some(call) = self.call.active() else {
            return;
        };
        let state = std::sync::Arc::clone(&call.state);
        let (link, hosted_here, elapsed) =
            (call.link.clone(), call.hosted_here, call.started.elapsed());
        let connecting = call.handle.is_none() || state.phase == CallPhase::Connecting;

        // The bars have no fill of their own either: the window's clear colour is their
        // background (each filled bar was another 5 % of the window to shade per repaint).
        let bar_frame = egui::Frame::side_top_panel(ui.style()).fill(Color32::TRANSPARENT);
        egui::Panel::top("call-top-bar")
            .frame(bar_frame)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new(if state.room.is_empty() {
                            "Call".to_owned()
                        } else {
                            state.room.clone()
                        })
                        .strong(),
                    );
                    ui.label(RichText::new(format_duration(elapsed)).weak());
                    security_badge(ui, &state, actions);
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if labeled_button(ui, "🔗 Copy invite link", "Copy invite link")
                            .on_hover_text(redact(&link))
                            .clicked()
                        {
                            actions.push(UiAction::CopyInviteLink);
                        }
                        let people = state.peers.len() + 1;
                        ui.label(format!("{people} in call"));
                    });
                });
            });
        egui::Panel::bottom("call-toolbar")
            .frame(bar_frame)
            .show(ui, |ui| {
                self.toolbar_ui(ui, &state, actions);
            });
        if self.panels.security {
            egui::Panel::right("security-panel")
                .default_size(340.0)
                .show(ui, |ui| {
                    super::security_panel::security_panel(ui, &state, actions);
                });
        }
        egui::CentralPanel::default()
            // No fill: the window is cleared to CALL_BACKGROUND (`App::clear_color`); a
            // full-window rectangle costs a software GL a third of a repaint.
            .frame(egui::Frame::new().inner_margin(12.0))
            .show(ui, |ui| {
                if connecting {
                    ui.vertical_centered(|ui| {
                        ui.add_space(ui.available_height() / 3.0);
                        ui.spinner();
                        ui.label(RichText::new("Connecting to the call…").size(18.0).color(Color32::WHITE));
                        ui.label(RichText::new(redact(&link)).weak());
                    });
                    return;
                }
                if let CallPhase::Reconnecting { attempt, last_error } = &state.phase {
                    reconnecting_banner(ui, *attempt, last_error);
                }
                if state.peers.is_empty() {
                    invite_banner(ui, &link, hosted_here, actions);
                }
                if SecurityLevel::of(&state) == SecurityLevel::NoSecret {
                    ui.label(
                        RichText::new("⚠ This link has no secret: nobody in this call can be verified, and anyone who knows the room name can join. Start a new call for a link with a secret.")
                            .color(RED),
                    );
                }
                let self_stats = self_stats_text(&state, &self.frame_timer);
                let tiles = tiles_for(&state, self.panels.stats, Some(self_stats));
                let area = ui.available_rect_before_wrap();
                let rects = layout(tiles.len(), area);
                for (tile, rect) in tiles.iter().zip(rects) {
                    self.draw_tile(ui, tile, rect);
                }
                ui.allocate_rect(area, Sense::hover());
            });
        // Keep the duration and stats fresh without repainting continuously.
        ui.ctx().request_repaint_after(Duration::from_secs(1));
    }

    fn draw_tile(&mut self, ui: &mut Ui, tile: &TileModel, rect: Rect) {
        let id = ui.scope_id().with(("tile", tile.stream()));
        let response = ui.interact(rect, id, Sense::hover());
        set_label(&response, Role::Group, &tile.accessible_label());
        let painter = ui.painter_at(rect);

        let picture = if tile.camera_off {
            None
        } else {
            self.call
                .active()
                .and_then(|call| call.frames().cloned())
                .and_then(|frames| {
                    self.textures.refresh(
                        ui.ctx(),
                        &frames,
                        tile.stream(),
                        physical_size(ui.ctx(), rect),
                    )
                })
        };
        let image_rect = picture
            .as_ref()
            .map(|picture| letterbox(picture.size, rect.shrink(1.0)));
        // Every pixel filled costs a software GL per repaint, so a tile with a picture fills
        // only the bars its picture leaves, and a tile without one is an outline (with the
        // avatar) on the call's background.
        match image_rect {
            Some(image) => {
                for bar in letterbox_bars(rect, image) {
                    painter.rect_filled(bar, 0.0, TILE_BACKGROUND);
                }
            }
            None => {
                painter.rect_stroke(
                    rect.shrink(1.0),
                    10.0,
                    egui::Stroke::new(1.5, TILE_OUTLINE),
                    egui::StrokeKind::Inside,
                );
            }
        }
        match picture.zip(image_rect) {
            Some((picture, image_rect)) => self.textures.paint(picture, &painter, image_rect),
            None => {
                let radius = (rect.height() * 0.2).min(rect.width() * 0.2);
                painter.circle_filled(rect.center(), radius, avatar_colour(&tile.member.name));
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    widgets::initials(&tile.member.name),
                    FontId::proportional(radius * 0.8),
                    Color32::WHITE,
                );
            }
        }

        // Name (bottom left) with the muted icon and the fingerprint tag.
        let mut job = LayoutJob::default();
        let muted = if tile.mic_muted { "🔇 " } else { "" };
        job.append(
            &format!("{muted}{}", tile.display_name()),
            0.0,
            TextFormat::simple(FontId::proportional(14.0), Color32::WHITE),
        );
        if let Some(tag) = &tile.member.tag {
            job.append(
                tag,
                8.0,
                TextFormat::simple(FontId::monospace(12.0), Color32::from_gray(190)),
            );
        }
        let galley = painter.layout_job(job);
        let name_rect = Rect::from_min_size(
            pos2(
                rect.left() + 8.0,
                rect.bottom() - 8.0 - galley.size().y - 6.0,
            ),
            galley.size() + Vec2::new(12.0, 6.0),
        );
        painter.rect_filled(name_rect, 6.0, Color32::from_black_alpha(160));
        painter.galley(name_rect.min + Vec2::new(6.0, 3.0), galley, Color32::WHITE);

        // Badges (top right; the security ones rightmost, so a narrow tile keeps them).
        let mut badges: Vec<(&str, Color32)> = Vec::new();
        if tile.member.same_name {
            badges.push(("⚠ Same name as another member", AMBER));
        }
        if !tile.member.has_link {
            badges.push(("⚠ No proof of the room link", AMBER));
        }
        if tile.member.silent {
            badges.push(("⏸ Not responding", Color32::from_gray(90)));
        }
        if tile.mic_muted {
            badges.push(("Muted", RED));
        }
        if tile.camera_off {
            badges.push(("Camera off", Color32::from_gray(90)));
        }
        let mut right = rect.right() - 8.0;
        for (text, colour) in badges {
            let galley =
                painter.layout_no_wrap(text.to_owned(), FontId::proportional(12.0), Color32::WHITE);
            let size = galley.size() + Vec2::new(12.0, 6.0);
            let badge = Rect::from_min_size(pos2(right - size.x, rect.top() + 8.0), size);
            painter.rect_filled(badge, 8.0, colour);
            painter.galley(badge.min + Vec2::new(6.0, 3.0), galley, Color32::WHITE);
            right = badge.left() - 6.0;
        }

        if let Some(stats) = &tile.stats {
            let galley = painter.layout(
                stats.clone(),
                FontId::monospace(11.0),
                Color32::WHITE,
                rect.width() - 24.0,
            );
            let stats_rect = Rect::from_min_size(
                rect.min + Vec2::new(8.0, 8.0),
                galley.size() + Vec2::new(10.0, 8.0),
            );
            painter.rect_filled(stats_rect, 6.0, Color32::from_black_alpha(170));
            painter.galley(stats_rect.min + Vec2::new(5.0, 4.0), galley, Color32::WHITE);
        }

        if tile.speaking {
            painter.rect_stroke(
                rect.shrink(1.5),
                10.0,
                Stroke::new(3.0, SPEAKING),
                StrokeKind::Inside,
            );
        }
    }
}

/// Shown while you are alone: the link to share, and where the call is hosted.
fn invite_banner(ui: &mut Ui, link: &str, hosted_here: bool, actions: &mut Vec<UiAction>) {
    egui::Frame::new()
        .fill(Color32::from_rgb(40, 42, 48))
        .corner_radius(8.0)
        .inner_margin(10.0)
        .show(ui, |ui| {
            ui.label(RichText::new("You're the only one here. Share this invite link:").color(Color32::WHITE).strong());
            ui.horizontal(|ui| {
                let shown = ui.label(RichText::new(link).monospace().color(Color32::LIGHT_GRAY));
                set_label(&shown, Role::Label, &format!("Invite link: {link}"));
                if labeled_button(ui, "Copy", "Copy this invite link").clicked() {
                    actions.push(UiAction::CopyInviteLink);
                }
            });
            let hint = if hosted_here {
                "This call is hosted by your app: people on this network can join; it ends when you quit vcall. The link holds the room's secret — send it privately."
            } else {
                "The link holds the room's secret — send it privately."
            };
            ui.label(RichText::new(hint).small().color(Color32::GRAY));
        });
    ui.add_space(8.0);
}

/// A stable colour per name for camera-off avatars.
fn avatar_colour(name: &str) -> Color32 {
    const PALETTE: [Color32; 6] = [
        Color32::from_rgb(26, 115, 232),
        Color32::from_rgb(0, 137, 123),
        Color32::from_rgb(142, 36, 170),
        Color32::from_rgb(230, 81, 0),
        Color32::from_rgb(84, 110, 122),
        GREEN,
    ];
    let hash = name.bytes().fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    PALETTE[hash % PALETTE.len()]
}

/// `m:ss` or `h:mm:ss`.
pub fn format_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_engine::PeerState;
    use vcall_proto::PeerId;

    #[test]
    fn tiles_put_yourself_first_with_badges_from_the_state() {
        let state = CallState {
            my_name: "Ada".into(),
            mic_muted: true,
            peers: vec![PeerState {
                peer_id: PeerId(3),
                name: Some("Bob".into()),
                verified: false,
                camera_off: true,
                speaking: true,
                ..PeerState::default()
            }],
            ..CallState::default()
        };
        let tiles = tiles_for(&state, false, None);
        assert_eq!(tiles.len(), 2);
        assert_eq!(tiles[0].display_name(), "Ada (you)");
        assert_eq!(
            tiles[0].accessible_label(),
            "Ada (you): microphone muted, camera on"
        );
        assert_eq!(
            tiles[1].accessible_label(),
            "Bob: microphone on, camera off, could not prove they have the room link, speaking"
        );
        assert!(tiles.iter().all(|t| t.stats.is_none()));
    }

    #[test]
    fn tiles_show_sanitized_names_tags_and_same_name_warnings() {
        let state = CallState {
            my_name: "Ada".into(),
            security: vcall_engine::SecurityState {
                my_fingerprint: "0a0b0c0d".repeat(8),
                ..Default::default()
            },
            peers: vec![
                PeerState {
                    peer_id: PeerId(3),
                    name: Some("\u{2067}ada\u{2069} (you)".into()),
                    fingerprint: Some("f1f2f3f4".repeat(8)),
                    verified: true,
                    silent: true,
                    ..PeerState::default()
                },
                PeerState {
                    peer_id: PeerId(4),
                    name: Some("Bob".into()),
                    verified: true,
                    ..PeerState::default()
                },
            ],
            ..CallState::default()
        };
        let tiles = tiles_for(&state, false, None);
        assert_eq!(
            tiles[0].accessible_label(),
            "Ada (you) · 0a0b 0c0d: microphone on, camera on, same name as another member"
        );
        assert_eq!(
            tiles[1].accessible_label(),
            "ada · f1f2 f3f4: microphone on, camera on, same name as another member, not responding"
        );
        assert_eq!(tiles[2].accessible_label(), "Bob: microphone on, camera on");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_duration(Duration::from_secs(65)), "1:05");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1:02:05");
    }
}
