//! End-to-end encryption as the user sees it: the always-visible badge (verified, some
//! participants unverified, or no room secret at all) and the panel with the room security
//! code, your fingerprint and every participant's fingerprint and verified state.

use egui::{RichText, Role, Ui};

use vcall_engine::CallState;

use super::app::UiAction;
use super::widgets::{AMBER, GREEN, RED, filled_button, set_label};

/// The call's overall verification state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    /// The link has no secret: nobody can be authenticated.
    NoSecret,
    /// This many participants are not (yet) verified.
    Unverified(usize),
    /// Everyone present is verified by the room secret.
    Verified,
}

impl SecurityLevel {
    /// Computes the level from the engine's state.
    pub fn of(state: &CallState) -> Self {
        if !state.security.room_secret {
            return Self::NoSecret;
        }
        match state.peers.iter().filter(|peer| !peer.verified).count() {
            0 => Self::Verified,
            unverified => Self::Unverified(unverified),
        }
    }

    /// Badge text, its accessible name and colour.
    pub fn badge(self) -> (String, String, egui::Color32) {
        match self {
            Self::Verified => (
                "🔒 End-to-end encrypted".to_owned(),
                "End-to-end encryption: verified".to_owned(),
                GREEN,
            ),
            Self::Unverified(count) => {
                let who = if count == 1 {
                    "1 participant".to_owned()
                } else {
                    format!("{count} participants")
                };
                (
                    format!("⚠ Encrypted · {who} unverified"),
                    format!("End-to-end encryption: {who} unverified"),
                    AMBER,
                )
            }
            Self::NoSecret => (
                "⚠ Encrypted · cannot verify (link has no secret)".to_owned(),
                "End-to-end encryption: link has no secret".to_owned(),
                RED,
            ),
        }
    }
}

/// The always-visible badge; clicking it opens the security panel.
pub fn security_badge(ui: &mut Ui, state: &CallState, actions: &mut Vec<UiAction>) {
    let (text, label, colour) = SecurityLevel::of(state).badge();
    if filled_button(ui, &text, colour, &label)
        .on_hover_text("Security details (Ctrl+K)")
        .clicked()
    {
        actions.push(UiAction::ToggleSecurityPanel);
    }
}

/// The security panel's contents.
pub fn security_panel(ui: &mut Ui, state: &CallState, actions: &mut Vec<UiAction>) {
    ui.horizontal(|ui| {
        ui.heading("Security");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let close = ui.button("✖");
            set_label(&close, Role::Button, "Close security panel");
            if close.clicked() {
                actions.push(UiAction::ToggleSecurityPanel);
            }
        });
    });
    let level = SecurityLevel::of(state);
    let (_, summary, colour) = level.badge();
    ui.label(RichText::new(summary).color(colour).strong());
    match level {
        SecurityLevel::Verified => {
            ui.label("Audio and video are encrypted on your device and only the people in this call can decrypt them; the relay cannot. Everyone here proved they hold the room's secret.");
        }
        SecurityLevel::Unverified(_) => {
            ui.label(RichText::new("Someone in the call has not proved they hold the room's secret (they may have a wrong or old link, or may not be who they claim). They get no keys from you: they cannot see or hear you. Ask them to rejoin with the right link.").color(AMBER));
        }
        SecurityLevel::NoSecret => {
            ui.label(RichText::new("This call's link has no secret (#k=…), so nobody can be verified: media is still encrypted, but anyone who knows the room name can join. Start a new call to get a link with a secret.").color(RED));
        }
    }
    ui.add_space(10.0);
    ui.label(RichText::new("Room security code").strong());
    let code = if state.security.room_security_code.is_empty() {
        "—".to_owned()
    } else {
        state.security.room_security_code.clone()
    };
    let code_label = ui.label(RichText::new(&code).monospace().size(20.0));
    set_label(
        &code_label,
        Role::Label,
        &format!("Room security code: {code}"),
    );
    ui.label(RichText::new("Everyone in the call sees the same code. Read it out loud to compare: a different code means someone is listening in.").small().weak());
    ui.add_space(10.0);
    ui.label(RichText::new("Your fingerprint").strong());
    let mine = ui.label(RichText::new(&state.security.my_fingerprint).monospace());
    set_label(
        &mine,
        Role::Label,
        &format!("Your fingerprint: {}", state.security.my_fingerprint),
    );
    ui.add_space(10.0);
    ui.label(RichText::new("Participants").strong());
    if state.peers.is_empty() {
        ui.label(RichText::new("Nobody else yet.").weak());
    }
    for peer in &state.peers {
        let name = peer
            .name
            .clone()
            .unwrap_or_else(|| format!("Participant {}", peer.peer_id));
        ui.horizontal(|ui| {
            let (mark, colour, word) = if peer.verified {
                ("✔", GREEN, "verified")
            } else {
                ("⚠", AMBER, "unverified")
            };
            let row = ui.label(
                RichText::new(format!("{mark} {name}"))
                    .color(colour)
                    .strong(),
            );
            set_label(&row, Role::Label, &format!("{name}: {word}"));
        });
        let fingerprint = peer
            .fingerprint
            .clone()
            .unwrap_or_else(|| "no fingerprint yet".to_owned());
        ui.label(RichText::new(fingerprint).monospace().small());
        ui.add_space(4.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_engine::{PeerState, SecurityState};

    fn state(secret: bool, verified: &[bool]) -> CallState {
        CallState {
            security: SecurityState {
                room_secret: secret,
                ..SecurityState::default()
            },
            peers: verified
                .iter()
                .map(|&verified| PeerState {
                    verified,
                    ..PeerState::default()
                })
                .collect(),
            ..CallState::default()
        }
    }

    #[test]
    fn levels_follow_the_secret_and_the_peers() {
        assert_eq!(
            SecurityLevel::of(&state(true, &[])),
            SecurityLevel::Verified
        );
        assert_eq!(
            SecurityLevel::of(&state(true, &[true, true])),
            SecurityLevel::Verified
        );
        assert_eq!(
            SecurityLevel::of(&state(true, &[true, false])),
            SecurityLevel::Unverified(1)
        );
        assert_eq!(
            SecurityLevel::of(&state(false, &[true])),
            SecurityLevel::NoSecret
        );
        assert_eq!(
            SecurityLevel::Unverified(2).badge().1,
            "End-to-end encryption: 2 participants unverified"
        );
    }
}
