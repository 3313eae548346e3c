//! The roster: who is in the room as this session knows them, each peer at one typed
//! [`PeerStage`] (listed by the relay, claiming a name without authenticating, or an accepted
//! member with its public keys), plus when to re-announce ourselves for each newcomer. It also
//! remembers the newest accepted announcement per identity, after the peer left, so a relay
//! cannot replay it.

use std::collections::BTreeMap;

use vcall_proto::PeerId;

use super::Rejection;
use super::signals::ReadAnnouncement;
use crate::identity::{Fingerprint, PeerKeys};

/// How far a peer got in announcing itself. Each stage carries exactly what it has: a name
/// without keys is a claim, keys always come with the name of the announcement that gave them.
#[derive(Debug, Clone)]
pub(crate) enum PeerStage {
    /// The relay reported it (roster, join, or a key message from it); no announcement read.
    Listed,
    /// It sent a clear announcement in a room with a secret: shown with the name it claims,
    /// unverified, never given keys.
    Claimed { display_name: String },
    /// Its announcement was accepted: it may receive our keys and send us theirs. Verified
    /// (a room member) exactly when the room has a secret, since then only announcements
    /// sealed under it are accepted.
    Member {
        display_name: String,
        keys: PeerKeys,
    },
}

#[derive(Debug)]
struct Entry {
    stage: PeerStage,
    /// When to re-announce ourselves so this peer answers (it is new, or sent media under a key
    /// we lack).
    notice_at: Option<u64>,
    /// When we last re-announced for it (rate limit).
    last_reannounce_ms: Option<u64>,
}

impl Entry {
    fn new() -> Self {
        Self {
            stage: PeerStage::Listed,
            notice_at: None,
            last_reannounce_ms: None,
        }
    }
}

/// What accepting an announcement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// The peer just became a member (first accepted announcement).
    NewMember,
    /// A known member re-announced (its name may have changed; its keys cannot).
    Again,
}

#[derive(Debug)]
pub(crate) struct Roster {
    peers: BTreeMap<PeerId, Entry>,
    /// Newest accepted announcement timestamp per identity, kept after the peer leaves.
    seen_announcements: BTreeMap<Fingerprint, u64>,
    secret_room: bool,
    notice_delay_ms: u64,
    reannounce_interval_ms: u64,
    /// At most this many peers are listed; the relay's further ids are ignored.
    max_peers: usize,
}

impl Roster {
    pub(crate) fn new(
        secret_room: bool,
        notice_delay_ms: u64,
        reannounce_interval_ms: u64,
        max_peers: usize,
    ) -> Self {
        Self {
            peers: BTreeMap::new(),
            seen_announcements: BTreeMap::new(),
            secret_room,
            notice_delay_ms,
            reannounce_interval_ms,
            max_peers,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Queries

    /// The relay listed `peer` (Welcome roster or `PeerJoined`) and it has not left.
    pub(crate) fn contains(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    pub(crate) fn stage(&self, peer: PeerId) -> Option<&PeerStage> {
        self.peers.get(&peer).map(|e| &e.stage)
    }

    /// Every peer, ascending.
    pub(crate) fn ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// The keys of `peer` if it is a member (may receive our keys and send us theirs).
    pub(crate) fn member_keys(&self, peer: PeerId) -> Option<&PeerKeys> {
        match self.stage(peer)? {
            PeerStage::Member { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// Every member, ascending.
    pub(crate) fn members(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| matches!(e.stage, PeerStage::Member { .. }))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The fingerprints of every member (those that may hold our keys).
    pub(crate) fn member_fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.peers.values().filter_map(|e| match &e.stage {
            PeerStage::Member { keys, .. } => Some(keys.fingerprint()),
            _ => None,
        })
    }

    /// `(display name, fingerprint, verified)` as the UI shows them.
    pub(crate) fn shown(
        &self,
        peer: PeerId,
    ) -> Option<(Option<String>, Option<Fingerprint>, bool)> {
        Some(match self.stage(peer)? {
            PeerStage::Listed => (None, None, false),
            PeerStage::Claimed { display_name } => (Some(display_name.clone()), None, false),
            PeerStage::Member { display_name, keys } => (
                Some(display_name.clone()),
                Some(keys.fingerprint()),
                self.secret_room,
            ),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Transitions

    /// Lists `peer` (at [`PeerStage::Listed`] unless already known). Returns whether it is
    /// listed (false: the roster is full).
    pub(crate) fn list(&mut self, peer: PeerId) -> bool {
        if self.peers.len() >= self.max_peers && !self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.entry(peer).or_insert_with(Entry::new);
        true
    }

    /// The relay says `peer` joined: lists it and, unless it is already a member, re-announces
    /// after `notice_delay_ms` in case its own announcement never reaches us. Returns whether
    /// it is listed (false: the roster is full).
    pub(crate) fn on_joined(&mut self, peer: PeerId, now_ms: u64) -> bool {
        if !self.list(peer) {
            return false;
        }
        let delay = self.notice_delay_ms;
        if let Some(e) = self.peers.get_mut(&peer)
            && !matches!(e.stage, PeerStage::Member { .. })
        {
            e.notice_at = Some(now_ms.saturating_add(delay));
        }
        true
    }

    /// Forgets `peer` (its announcement timestamp stays remembered).
    pub(crate) fn remove(&mut self, peer: PeerId) -> bool {
        self.peers.remove(&peer).is_some()
    }

    /// A clear announcement in a room with a secret: shows listed `peer` with the name it
    /// claims, unless it is already a member (a claim never demotes or renames one).
    pub(crate) fn claim(&mut self, peer: PeerId, display_name: String) {
        if let Some(e) = self.peers.get_mut(&peer)
            && !matches!(e.stage, PeerStage::Member { .. })
        {
            e.stage = PeerStage::Claimed { display_name };
        }
    }

    /// An announcement that authenticated (or any, without a room secret): makes listed `peer`
    /// a member, unless it replays one we accepted from that identity or changes a member's
    /// keys. A peer the relay did not list is never made a member.
    pub(crate) fn accept(
        &mut self,
        peer: PeerId,
        a: ReadAnnouncement,
    ) -> Result<Accepted, Rejection> {
        let fingerprint = a.keys.fingerprint();
        if self
            .seen_announcements
            .get(&fingerprint)
            .is_some_and(|t| a.timestamp_ms <= *t)
        {
            return Err(Rejection::Replayed);
        }
        let e = self.peers.get_mut(&peer).ok_or(Rejection::NotInRoster)?;
        let accepted = match &mut e.stage {
            PeerStage::Member { keys, .. } if keys.fingerprint() != fingerprint => {
                return Err(Rejection::IdentityChanged);
            }
            PeerStage::Member { display_name, .. } => {
                *display_name = a.display_name;
                Accepted::Again
            }
            stage @ (PeerStage::Listed | PeerStage::Claimed { .. }) => {
                *stage = PeerStage::Member {
                    display_name: a.display_name,
                    keys: a.keys,
                };
                Accepted::NewMember
            }
        };
        self.seen_announcements.insert(fingerprint, a.timestamp_ms);
        Ok(accepted)
    }

    // -----------------------------------------------------------------------------------------
    // Re-announcement timers

    /// Re-announce for `peer` at `at_ms` (replacing any earlier plan).
    pub(crate) fn notice_at(&mut self, peer: PeerId, at_ms: u64) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.notice_at = Some(at_ms);
        }
    }

    /// Re-announce for `peer` no later than `now_ms` (media came under a key we lack).
    pub(crate) fn notice_soon(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.notice_at = Some(e.notice_at.map_or(now_ms, |t| t.min(now_ms)));
        }
    }

    /// When [`Roster::due_reannouncements`] next has work.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.peers.values().filter_map(|e| e.notice_at).min()
    }

    /// The peers we should re-announce for now, ascending. A peer re-announced for within
    /// `reannounce_interval_ms` is postponed to the end of that interval instead.
    pub(crate) fn due_reannouncements(&mut self, now_ms: u64) -> Vec<PeerId> {
        let interval = self.reannounce_interval_ms;
        let mut due = Vec::new();
        for (id, e) in &mut self.peers {
            if e.notice_at.is_none_or(|t| t > now_ms) {
                continue;
            }
            e.notice_at = None;
            match e.last_reannounce_ms {
                Some(t) if now_ms < t.saturating_add(interval) => {
                    e.notice_at = Some(t.saturating_add(interval));
                }
                _ => {
                    e.last_reannounce_ms = Some(now_ms);
                    due.push(*id);
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::identity;

    fn roster() -> Roster {
        Roster::new(true, 500, 2_000, 256)
    }

    fn announcement(i: usize, name: &str, ts: u64) -> ReadAnnouncement {
        ReadAnnouncement {
            display_name: name.into(),
            keys: identity(i).public_keys(),
            timestamp_ms: ts,
            authenticated: true,
        }
    }

    const P: PeerId = PeerId(7);

    #[test]
    fn a_peer_goes_listed_claimed_member_and_a_claim_never_demotes_it() {
        let mut r = roster();
        r.list(P);
        assert!(matches!(r.stage(P), Some(PeerStage::Listed)));
        assert_eq!(r.shown(P), Some((None, None, false)));
        r.claim(P, "Mallory".into());
        assert!(
            matches!(r.stage(P), Some(PeerStage::Claimed { display_name }) if display_name == "Mallory")
        );
        assert!(r.member_keys(P).is_none() && r.members().is_empty());
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10)),
            Ok(Accepted::NewMember)
        );
        let fp = identity(0).fingerprint();
        assert_eq!(r.shown(P), Some((Some("Alice".into()), Some(fp), true)));
        assert_eq!(r.members(), vec![P]);
        assert_eq!(r.member_fingerprints().collect::<Vec<_>>(), vec![fp]);
        r.claim(P, "Eve".into());
        assert_eq!(r.shown(P).unwrap().0.as_deref(), Some("Alice"));
        // A later announcement renames; the keys stay.
        assert_eq!(r.accept(P, announcement(0, "Al", 11)), Ok(Accepted::Again));
        assert_eq!(r.shown(P), Some((Some("Al".into()), Some(fp), true)));
    }

    #[test]
    fn members_of_a_room_without_secret_are_not_verified() {
        let mut r = Roster::new(false, 500, 2_000, 256);
        let mut a = announcement(0, "Alice", 10);
        a.authenticated = false;
        r.list(P);
        assert_eq!(r.accept(P, a), Ok(Accepted::NewMember));
        assert!(!r.shown(P).unwrap().2);
        assert!(r.member_keys(P).is_some());
    }

    #[test]
    fn replays_and_key_changes_are_rejected_even_after_the_peer_left() {
        let mut r = roster();
        r.list(P);
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10)),
            Ok(Accepted::NewMember)
        );
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10)),
            Err(Rejection::Replayed)
        );
        assert_eq!(
            r.accept(P, announcement(1, "Alice", 11)),
            Err(Rejection::IdentityChanged)
        );
        assert!(r.remove(P));
        assert!(!r.contains(P) && !r.remove(P));
        // The same identity under another peer id: still a replay unless newer.
        let q = PeerId(8);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 9)),
            Err(Rejection::Replayed)
        );
        assert!(!r.contains(q), "a replay lists nobody");
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 12)),
            Err(Rejection::NotInRoster),
            "the relay has not listed it"
        );
        assert!(!r.contains(q), "nor does an unlisted peer's announcement");
        r.list(q);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 12)),
            Ok(Accepted::NewMember)
        );
    }

    #[test]
    fn a_newcomer_is_noticed_after_the_delay_and_reannouncements_are_rate_limited() {
        let mut r = roster();
        assert_eq!(r.poll_timeout(), None);
        r.on_joined(P, 1_000);
        assert_eq!(r.poll_timeout(), Some(1_500));
        assert!(r.due_reannouncements(1_499).is_empty());
        assert_eq!(r.due_reannouncements(1_500), vec![P]);
        assert_eq!(r.poll_timeout(), None);
        // Due again within the interval: postponed to its end.
        r.notice_soon(P, 2_000);
        assert_eq!(r.poll_timeout(), Some(2_000));
        assert!(r.due_reannouncements(2_000).is_empty());
        assert_eq!(r.poll_timeout(), Some(3_500));
        assert_eq!(r.due_reannouncements(3_500), vec![P]);
        // notice_soon never delays a planned notice; notice_at replaces it.
        r.notice_at(P, 9_000);
        r.notice_soon(P, 10_000);
        assert_eq!(r.poll_timeout(), Some(9_000));
        r.notice_at(P, 10_000);
        assert_eq!(r.poll_timeout(), Some(10_000));
        // A member is not noticed on a (repeated) join; unknown peers are ignored.
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10)),
            Ok(Accepted::NewMember)
        );
        r.due_reannouncements(10_000);
        r.on_joined(P, 20_000);
        assert_eq!(r.poll_timeout(), None);
        r.notice_soon(PeerId(99), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn only_listed_peers_are_claimed_or_accepted_and_the_roster_is_capped() {
        let mut r = Roster::new(true, 500, 2_000, 2);
        r.claim(P, "Mallory".into());
        assert!(!r.contains(P), "a claim lists nobody");
        assert!(r.list(PeerId(1)) && r.on_joined(PeerId(2), 0));
        assert!(!r.list(P) && !r.on_joined(P, 0), "full");
        assert!(!r.contains(P));
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10)),
            Err(Rejection::NotInRoster)
        );
        assert!(r.list(PeerId(1)), "a listed peer stays listed");
        assert!(r.remove(PeerId(1)));
        assert!(r.list(P), "room again once one left");
    }

    #[test]
    fn the_soonest_notice_of_any_peer_is_the_timeout() {
        let mut r = roster();
        r.on_joined(PeerId(1), 5_000);
        r.on_joined(PeerId(2), 1_000);
        r.on_joined(PeerId(3), 3_000);
        assert_eq!(r.poll_timeout(), Some(1_500));
        assert_eq!(r.due_reannouncements(3_500), vec![PeerId(2), PeerId(3)]);
        assert_eq!(r.poll_timeout(), Some(5_500));
    }
}
