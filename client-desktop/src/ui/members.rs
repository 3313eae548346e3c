//! Who is in the call as the UI shows them, built once from the engine's state for the tiles
//! and the security panel alike: you first, then every peer in roster order, each with a
//! sanitized name, a fingerprint tag, a same-name warning, whether it proved it has the room
//! link, holds our key, is covered by the security code or has gone silent; and whether the
//! code covers exactly the people listed.

use std::collections::BTreeSet;

use vcall_engine::{CallState, Stream};

use super::names::{SELF_MARKER, duplicate_flags, fingerprint_tag, name_or_guest};

/// One person in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub stream: Stream,
    pub is_self: bool,
    /// Sanitized (never containing [`SELF_MARKER`]), or "Guest <tag>".
    pub name: String,
    /// The first bytes of its fingerprint ("a1b2 c3d4"), once known.
    pub tag: Option<String>,
    /// The whole fingerprint (hex), once known.
    pub fingerprint: Option<String>,
    /// Another member (or you) shows the same name.
    pub same_name: bool,
    /// It proved it has the room link (its announcement authenticated under the room secret);
    /// always true for yourself.
    pub has_link: bool,
    /// It was sent our sender key.
    pub holds_our_key: bool,
    /// It is covered by the security code (and receives our keys).
    pub in_code: bool,
    /// Nothing authenticated came from it for a while: treated as gone.
    pub silent: bool,
}

impl Member {
    /// The name as shown: "Ada (you)" for yourself.
    pub fn shown_name(&self) -> String {
        if self.is_self {
            format!("{} {SELF_MARKER}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The shown name with its tag: "Ada (you) · a1b2 c3d4".
    pub fn name_with_tag(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{} · {tag}", self.shown_name()),
            None => self.shown_name(),
        }
    }
}

/// Everyone in the call: you first, then the peers in the order of `state.peers`.
pub fn members(state: &CallState) -> Vec<Member> {
    let my_fingerprint = Some(state.security.my_fingerprint.clone()).filter(|f| !f.is_empty());
    let my_tag = my_fingerprint.as_deref().and_then(fingerprint_tag);
    let mut list = vec![Member {
        stream: Stream::Local,
        is_self: true,
        name: name_or_guest(Some(&state.my_name), my_tag.as_deref().unwrap_or("")),
        tag: my_tag,
        fingerprint: my_fingerprint,
        same_name: false,
        has_link: true,
        holds_our_key: true,
        in_code: true,
        silent: false,
    }];
    list.extend(state.peers.iter().map(|peer| {
        let tag = peer.fingerprint.as_deref().and_then(fingerprint_tag);
        let fallback = tag.clone().unwrap_or_else(|| format!("#{}", peer.peer_id));
        Member {
            stream: Stream::Remote(peer.peer_id),
            is_self: false,
            name: name_or_guest(peer.name.as_deref(), &fallback),
            tag,
            fingerprint: peer.fingerprint.clone(),
            same_name: false,
            has_link: peer.verified,
            holds_our_key: peer.key_sent,
            in_code: peer.member,
            silent: peer.silent,
        }
    }));
    let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    let flags = duplicate_flags(&names);
    for (member, same) in list.iter_mut().zip(flags) {
        member.same_name = same;
    }
    list
}

/// How many members the security code covers, against how many the UI lists as covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeCoverage {
    /// From the E2EE session: distinct fingerprints in the code, you included.
    pub covered: usize,
    /// Distinct fingerprints of you and the listed peers marked as in the code.
    pub listed: usize,
}

impl CodeCoverage {
    pub fn of(state: &CallState) -> Self {
        let listed: BTreeSet<&str> = std::iter::once(state.security.my_fingerprint.as_str())
            .chain(
                state
                    .peers
                    .iter()
                    .filter(|p| p.member)
                    .filter_map(|p| p.fingerprint.as_deref()),
            )
            .collect();
        Self {
            covered: state.security.member_count,
            listed: listed.len(),
        }
    }

    /// The code covers exactly the people listed (also true before the first code exists).
    pub fn matches(self) -> bool {
        self.covered == 0 || self.covered == self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_engine::{PeerState, SecurityState};
    use vcall_proto::PeerId;

    fn peer(id: u32, name: &str, fingerprint: &str) -> PeerState {
        PeerState {
            peer_id: PeerId(id),
            name: Some(name.into()),
            fingerprint: Some(fingerprint.into()),
            verified: true,
            key_sent: true,
            member: true,
            ..PeerState::default()
        }
    }

    fn call(peers: Vec<PeerState>, member_count: usize) -> CallState {
        CallState {
            my_name: "Ada".into(),
            security: SecurityState {
                room_secret: true,
                my_fingerprint: "00112233".repeat(8),
                member_count,
                ..SecurityState::default()
            },
            peers,
            ..CallState::default()
        }
    }

    #[test]
    fn members_carry_sanitized_names_tags_and_same_name_flags() {
        let state = call(
            vec![
                peer(2, "Bob", "aaaa1111"),
                peer(3, "\u{202E}ADA (you)", "bbbb2222"),
                PeerState {
                    peer_id: PeerId(4),
                    name: Some("\u{200B}".into()),
                    ..PeerState::default()
                },
            ],
            3,
        );
        let list = members(&state);
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].shown_name(), "Ada (you)");
        assert_eq!(list[0].name_with_tag(), "Ada (you) · 0011 2233");
        assert_eq!(list[1].name_with_tag(), "Bob · aaaa 1111");
        assert_eq!(list[2].shown_name(), "ADA");
        assert_eq!(list[3].name, "Guest #4");
        assert_eq!(
            list.iter().map(|m| m.same_name).collect::<Vec<_>>(),
            vec![true, false, true, false]
        );
        assert!(!list[3].has_link && !list[3].in_code && !list[3].holds_our_key);
    }

    #[test]
    fn the_code_covers_exactly_the_listed_members_or_says_not() {
        let two = vec![peer(2, "Bob", "aaaa1111"), peer(3, "Cy", "bbbb2222")];
        assert!(CodeCoverage::of(&call(two.clone(), 3)).matches());
        // Someone not listed as in the code is counted by the session: flagged.
        let hidden = CodeCoverage::of(&call(two.clone(), 4));
        assert_eq!(
            hidden,
            CodeCoverage {
                covered: 4,
                listed: 3
            }
        );
        assert!(!hidden.matches());
        // A peer out of the code (silent) is not listed as covered.
        let mut silent = two;
        silent[1].member = false;
        silent[1].silent = true;
        assert!(CodeCoverage::of(&call(silent.clone(), 2)).matches());
        assert!(!CodeCoverage::of(&call(silent, 3)).matches());
        assert!(CodeCoverage::of(&call(Vec::new(), 0)).matches());
    }
}
