//! End-to-end encryption as the user sees it: the always-visible badge (everyone has the room
//! link, some could not prove it, or no room secret at all) and the panel with the whole room
//! security code (every group, how many members it covers, a warning when that is not the
//! people listed), your fingerprint and every person's name, tag, fingerprint, link proof,
//! key and code standing, and same-name / not-responding warnings.

use egui::{Color32, RichText, Role, Ui};

use vcall_engine::CallState;

use super::app::UiAction;
use super::members::{CodeCoverage, Member, members};
use super::widgets::{AMBER, GREEN, RED, filled_button, set_label};

/// The call's overall state of proof: who showed they have the room link (its secret). That
/// is membership, not identity: names prove nothing, the security code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    /// The link has no secret: nobody can prove anything.
    NoSecret,
    /// This many participants could not (yet) prove they have the room link.
    LinkUnproven(usize),
    /// Everyone present proved they have the room link.
    AllHaveTheLink,
}

impl SecurityLevel {
    /// Computes the level from the engine's state.
    pub fn of(state: &CallState) -> Self {
        if !state.security.room_secret {
            return Self::NoSecret;
        }
        match state.peers.iter().filter(|peer| !peer.verified).count() {
            0 => Self::AllHaveTheLink,
            unproven => Self::LinkUnproven(unproven),
        }
    }

    /// Badge text, its accessible name and colour.
    pub fn badge(self) -> (String, String, egui::Color32) {
        match self {
            Self::AllHaveTheLink => (
                "🔒 Encrypted · everyone has the room link".to_owned(),
                "End-to-end encryption: everyone has the room link".to_owned(),
                GREEN,
            ),
            Self::LinkUnproven(count) => {
                let who = if count == 1 {
                    "1 participant".to_owned()
                } else {
                    format!("{count} participants")
                };
                (
                    format!("⚠ Encrypted · {who} without proof of the link"),
                    format!("End-to-end encryption: {who} could not prove they have the room link"),
                    AMBER,
                )
            }
            Self::NoSecret => (
                "⚠ Encrypted · nobody can prove the link (it has no secret)".to_owned(),
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

/// The security panel's contents (scrolls, so nothing is cut off in a short window).
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
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| panel_body(ui, state));
}

fn panel_body(ui: &mut Ui, state: &CallState) {
    let members = members(state);
    let level = SecurityLevel::of(state);
    let (_, summary, colour) = level.badge();
    ui.label(RichText::new(summary).color(colour).strong());
    match level {
        SecurityLevel::AllHaveTheLink => {
            ui.label("Audio and video are encrypted on your device and only the people in this call can decrypt them; the relay cannot. Everyone here proved they have the room link (its secret). That proves they were given the link, not who they are: compare the security code below, out loud, to know who is here.");
        }
        SecurityLevel::LinkUnproven(_) => {
            ui.label(RichText::new("Someone in the call could not prove they have the room link (they may have a wrong or old link, or may not be who they claim). They get no keys from you: they cannot see or hear you. Ask them to rejoin with the right link.").color(AMBER));
        }
        SecurityLevel::NoSecret => {
            ui.label(RichText::new("This call's link has no secret (#k=…), so nobody can prove they have the link: media is still encrypted, but anyone who knows the room name can join. Start a new call to get a link with a secret.").color(RED));
        }
    }
    if members.iter().any(|m| m.same_name) {
        ui.add_space(6.0);
        let warning = ui.label(RichText::new("⚠ Some people here show the same name. Names are typed by each person and prove nothing: tell them apart by the fingerprint tag beside the name, and compare the security code.").color(AMBER));
        set_label(
            &warning,
            Role::Label,
            "Warning: some people show the same name",
        );
    }
    ui.add_space(10.0);
    security_code(ui, state, members.len());
    ui.add_space(10.0);
    ui.label(RichText::new("Your fingerprint").strong());
    let mine = ui.label(RichText::new(&state.security.my_fingerprint).monospace());
    set_label(
        &mine,
        Role::Label,
        &format!("Your fingerprint: {}", state.security.my_fingerprint),
    );
    ui.add_space(10.0);
    ui.label(RichText::new(format!("People in the call ({})", members.len())).strong());
    for member in &members {
        member_row(ui, member);
    }
    if members.len() == 1 {
        ui.label(RichText::new("Nobody else yet.").weak());
    }
}

/// The whole code, every group, with what it covers; a warning when it covers someone the
/// list does not show.
fn security_code(ui: &mut Ui, state: &CallState, listed_people: usize) {
    ui.label(RichText::new("Room security code").strong());
    let code = &state.security.room_security_code;
    let groups: Vec<&str> = code.split_whitespace().collect();
    if groups.is_empty() {
        ui.label(RichText::new("—").monospace().size(20.0));
        ui.label(
            RichText::new("No code yet: it appears once the keys are exchanged.")
                .small()
                .weak(),
        );
        return;
    }
    // All groups, three to a row: the code is never shortened or cut by the panel's width.
    let grid = egui::Grid::new("security-code-groups")
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            for (i, group) in groups.iter().enumerate() {
                ui.label(RichText::new(*group).monospace().size(20.0).strong());
                if i % 3 == 2 {
                    ui.end_row();
                }
            }
        });
    set_label(
        &grid.response,
        Role::Label,
        &format!("Room security code: {}", groups.join(" ")),
    );
    let count = groups.len();
    let instruction = ui.label(RichText::new(format!("Compare all {count} groups with every member, out loud or on another channel you trust. Every member must see the same {count} groups: one different digit anywhere means someone else is in the call.")));
    set_label(
        &instruction,
        Role::Label,
        &format!("Compare all {count} groups with every member"),
    );
    let coverage = CodeCoverage::of(state);
    if coverage.covered > 0 {
        let covered = coverage.covered;
        let text = if covered == 1 {
            "This code covers 1 member: you alone.".to_owned()
        } else {
            format!(
                "This code covers {covered} members: you and the {} marked “in the code” below.",
                covered - 1
            )
        };
        let line = ui.label(RichText::new(&text).small());
        set_label(&line, Role::Label, &text);
    }
    if !coverage.matches() {
        let text = format!(
            "⚠ The code covers {} members, but {} are listed as in the code here ({listed_people} people shown): someone you cannot see may hold your key. Do not trust this call: leave, and start a new one.",
            coverage.covered, coverage.listed
        );
        let warning = ui.label(RichText::new(&text).color(RED).strong());
        set_label(&warning, Role::Label, &text);
    }
}

/// One person: name, tag, what they proved, whether they hold our key and are in the code,
/// warnings, and the whole fingerprint.
fn member_row(ui: &mut Ui, member: &Member) {
    let (mark, colour) = match (member.is_self, member.has_link) {
        (true, _) => ("✔", Color32::GRAY),
        (false, true) => ("✔", GREEN),
        (false, false) => ("⚠", AMBER),
    };
    let name = member.name_with_tag();
    let mut facts: Vec<&str> = Vec::new();
    if !member.is_self {
        facts.push(if member.has_link {
            "has the room link"
        } else {
            "could not prove they have the room link"
        });
        facts.push(if member.holds_our_key {
            "holds your key"
        } else {
            "does not hold your key"
        });
        facts.push(if member.in_code {
            "in the code"
        } else {
            "not in the code"
        });
    }
    if member.silent {
        facts.push("not responding");
    }
    if member.same_name {
        facts.push("same name as another member");
    }
    let row = ui.label(
        RichText::new(format!("{mark} {name}"))
            .color(colour)
            .strong(),
    );
    let label = if facts.is_empty() {
        name.clone()
    } else {
        format!("{name}: {}", facts.join(", "))
    };
    set_label(&row, Role::Label, &label);
    if !facts.is_empty() {
        ui.label(RichText::new(facts.join(" · ")).small());
    }
    if member.same_name {
        ui.label(
            RichText::new("⚠ Same name as another member: check the tag and the security code")
                .small()
                .color(AMBER),
        );
    }
    if member.silent {
        ui.label(
            RichText::new("⏸ Nothing came from them for a while: treated as gone, they get no new keys until they are heard again")
                .small()
                .weak(),
        );
    }
    if member.holds_our_key && !member.in_code && !member.silent && !member.is_self {
        ui.label(
            RichText::new("⚠ Was sent your key but is not in the code yet")
                .small()
                .color(AMBER),
        );
    }
    let fingerprint = member
        .fingerprint
        .clone()
        .unwrap_or_else(|| "no fingerprint yet".to_owned());
    ui.label(RichText::new(fingerprint).monospace().small());
    ui.add_space(4.0);
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
            SecurityLevel::AllHaveTheLink
        );
        assert_eq!(
            SecurityLevel::of(&state(true, &[true, true])),
            SecurityLevel::AllHaveTheLink
        );
        assert_eq!(
            SecurityLevel::of(&state(true, &[true, false])),
            SecurityLevel::LinkUnproven(1)
        );
        assert_eq!(
            SecurityLevel::of(&state(false, &[true])),
            SecurityLevel::NoSecret
        );
        assert_eq!(
            SecurityLevel::LinkUnproven(2).badge().1,
            "End-to-end encryption: 2 participants could not prove they have the room link"
        );
    }
}
