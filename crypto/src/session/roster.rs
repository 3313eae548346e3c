//! The roster: who is in the room as this session knows them, each peer at one typed
//! [`PeerStage`] (listed by the relay, claiming a name without authenticating, or an accepted
//! member with its public keys and its [`Standing`]), plus when to re-announce ourselves for
//! each newcomer. Only peers the relay listed are ever entered. It also remembers, per
//! identity, the newest accepted announcement (after the peer left, so a relay cannot replay
//! it) and when a member of that identity last left (so leave/join cycling is rate-limited).

use std::collections::BTreeMap;

use vcall_proto::PeerId;

use super::Rejection;
use super::signals::ReadAnnouncement;
use crate::identity::{Fingerprint, PeerKeys};

/// How far a peer got in announcing itself. Each stage carries exactly what it has: a name
/// without keys is a claim, keys always come with the name of the announcement that gave them.
#[derive(Debug, Clone)]
pub(crate) enum PeerStage {
    /// The relay listed it (Welcome roster or `PeerJoined`); no announcement read.
    Listed,
    /// It sent a clear announcement in a room with a secret: shown with the name it claims,
    /// unverified, never given keys.
    Claimed { display_name: String },
    /// Its announcement was accepted: it may send us its keys, and receives ours while its
    /// standing is [`Standing::Recipient`]. Verified (a room member) exactly when the room has
    /// a secret, since then only announcements sealed under it are accepted.
    Member {
        display_name: String,
        keys: PeerKeys,
        standing: Standing,
        /// When its last announcement was accepted (liveness, besides its datagrams).
        announced_ms: u64,
    },
}

/// Whether an accepted member receives our keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// It receives our keys and is in the security code.
    Recipient,
    /// Its identity left less than `readd_interval_ms` ago: it receives our keys from
    /// `until_ms` on (leave/join cycling must not burn an epoch each time).
    Held { until_ms: u64 },
    /// Nothing authenticated came from it for the liveness timeout: treated as gone (we
    /// rekeyed without it) until a fresh datagram or announcement of it authenticates.
    Silent,
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
    /// The peer just became a member and receives our keys.
    NewMember,
    /// The peer just became a member, but its identity left too recently: our keys wait until
    /// the hold ends.
    NewHeld,
    /// A silent member announced itself: it receives our keys again.
    Returned,
    /// A known member re-announced (its name may have changed; its keys cannot).
    Again,
}

/// What the roster remembers of one identity (fingerprint), after its peer left too.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The newest accepted announcement timestamp.
    timestamp_ms: u64,
    /// When a peer of this identity that received our keys last left.
    left_ms: Option<u64>,
}

/// The timers and bounds this part needs (from [`super::SessionConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RosterConfig {
    pub(crate) secret_room: bool,
    pub(crate) notice_delay_ms: u64,
    pub(crate) reannounce_interval_ms: u64,
    /// At most this many peers are listed; the relay's further ids are ignored.
    pub(crate) max_peers: usize,
    /// An identity that left receives our keys again only this long after it left.
    pub(crate) readd_interval_ms: u64,
    /// Announcement freshness: what is remembered of an identity is dropped once it can
    /// matter no more (its timestamp is stale twice over and its hold is over).
    pub(crate) announce_freshness_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Roster {
    config: RosterConfig,
    peers: BTreeMap<PeerId, Entry>,
    seen: BTreeMap<Fingerprint, Seen>,
}

impl Roster {
    pub(crate) fn new(config: RosterConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            seen: BTreeMap::new(),
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

    /// The keys of `peer` if it is a member, whatever its standing (to check its signatures
    /// and to wrap to it).
    pub(crate) fn member_keys(&self, peer: PeerId) -> Option<&PeerKeys> {
        match self.stage(peer)? {
            PeerStage::Member { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// The standing of `peer` if it is a member.
    pub(crate) fn standing(&self, peer: PeerId) -> Option<Standing> {
        match self.stage(peer)? {
            PeerStage::Member { standing, .. } => Some(*standing),
            _ => None,
        }
    }

    /// `peer` receives our keys.
    pub(crate) fn is_recipient(&self, peer: PeerId) -> bool {
        self.standing(peer) == Some(Standing::Recipient)
    }

    /// Every member that receives our keys, ascending.
    pub(crate) fn recipients(&self) -> Vec<PeerId> {
        self.ids().filter(|p| self.is_recipient(*p)).collect()
    }

    /// The fingerprints of every member that receives our keys (the security code's).
    pub(crate) fn recipient_fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.peers.values().filter_map(|e| match &e.stage {
            PeerStage::Member {
                keys,
                standing: Standing::Recipient,
                ..
            } => Some(keys.fingerprint()),
            _ => None,
        })
    }

    /// Members whose liveness is watched (recipients and held ones) with when their last
    /// announcement was accepted.
    pub(crate) fn watched(&self) -> impl Iterator<Item = (PeerId, u64)> + '_ {
        self.peers.iter().filter_map(|(id, e)| match &e.stage {
            PeerStage::Member {
                standing: Standing::Recipient | Standing::Held { .. },
                announced_ms,
                ..
            } => Some((*id, *announced_ms)),
            _ => None,
        })
    }

    /// `(display name, fingerprint, verified, standing)` as the UI shows them.
    pub(crate) fn shown(&self, peer: PeerId) -> Option<Shown> {
        Some(match self.stage(peer)? {
            PeerStage::Listed => Shown::default(),
            PeerStage::Claimed { display_name } => Shown {
                display_name: Some(display_name.clone()),
                ..Shown::default()
            },
            PeerStage::Member {
                display_name,
                keys,
                standing,
                ..
            } => Shown {
                display_name: Some(display_name.clone()),
                fingerprint: Some(keys.fingerprint()),
                verified: self.config.secret_room,
                standing: Some(*standing),
            },
        })
    }

    // -----------------------------------------------------------------------------------------
    // Transitions

    /// Lists `peer` (at [`PeerStage::Listed`] unless already known). Returns whether it is
    /// listed (false: the roster is full).
    pub(crate) fn list(&mut self, peer: PeerId) -> bool {
        if self.peers.len() >= self.config.max_peers && !self.peers.contains_key(&peer) {
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
        let delay = self.config.notice_delay_ms;
        if let Some(e) = self.peers.get_mut(&peer)
            && !matches!(e.stage, PeerStage::Member { .. })
        {
            e.notice_at = Some(now_ms.saturating_add(delay));
        }
        true
    }

    /// Forgets `peer` (what is known of its identity stays remembered; if it received our
    /// keys, when it left). Returns whether it was listed.
    pub(crate) fn remove(&mut self, peer: PeerId, now_ms: u64) -> bool {
        let Some(e) = self.peers.remove(&peer) else {
            return false;
        };
        if let PeerStage::Member {
            keys,
            standing: Standing::Recipient,
            ..
        } = &e.stage
            && let Some(seen) = self.seen.get_mut(&keys.fingerprint())
        {
            seen.left_ms = Some(now_ms);
        }
        true
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
    /// keys. A peer the relay did not list is never made a member. A new member whose
    /// identity left less than `readd_interval_ms` ago is held until then; a silent member
    /// returns.
    pub(crate) fn accept(
        &mut self,
        peer: PeerId,
        a: ReadAnnouncement,
        now_ms: u64,
    ) -> Result<Accepted, Rejection> {
        let fingerprint = a.keys.fingerprint();
        let seen = self.seen.get(&fingerprint).copied();
        if seen.is_some_and(|s| a.timestamp_ms <= s.timestamp_ms) {
            return Err(Rejection::Replayed);
        }
        let hold_until = seen
            .and_then(|s| s.left_ms)
            .map(|t| t.saturating_add(self.config.readd_interval_ms))
            .filter(|until| now_ms < *until);
        let e = self.peers.get_mut(&peer).ok_or(Rejection::NotInRoster)?;
        let accepted = match &mut e.stage {
            PeerStage::Member { keys, .. } if keys.fingerprint() != fingerprint => {
                return Err(Rejection::IdentityChanged);
            }
            PeerStage::Member {
                display_name,
                standing,
                announced_ms,
                ..
            } => {
                *display_name = a.display_name;
                *announced_ms = now_ms;
                if *standing == Standing::Silent {
                    *standing = Standing::Recipient;
                    Accepted::Returned
                } else {
                    Accepted::Again
                }
            }
            stage @ (PeerStage::Listed | PeerStage::Claimed { .. }) => {
                let (standing, accepted) = match hold_until {
                    Some(until_ms) => (Standing::Held { until_ms }, Accepted::NewHeld),
                    None => (Standing::Recipient, Accepted::NewMember),
                };
                *stage = PeerStage::Member {
                    display_name: a.display_name,
                    keys: a.keys,
                    standing,
                    announced_ms: now_ms,
                };
                accepted
            }
        };
        self.seen.insert(
            fingerprint,
            Seen {
                timestamp_ms: a.timestamp_ms,
                left_ms: seen.and_then(|s| s.left_ms),
            },
        );
        self.prune_seen(now_ms);
        Ok(accepted)
    }

    /// Forgets identities that can matter no more: their newest announcement is older than
    /// twice the freshness window (any replay of it is stale) and their hold is over. Only
    /// when the map outgrows four rosters, so the cost is amortised.
    fn prune_seen(&mut self, now_ms: u64) {
        if self.seen.len() <= self.config.max_peers.saturating_mul(4) {
            return;
        }
        let (fresh, readd) = (
            self.config.announce_freshness_ms.saturating_mul(2),
            self.config.readd_interval_ms,
        );
        self.seen.retain(|_, s| {
            s.timestamp_ms.saturating_add(fresh) > now_ms
                || s.left_ms.is_some_and(|t| t.saturating_add(readd) > now_ms)
        });
    }

    /// `peer` (a recipient or held) sent nothing authenticated for the liveness timeout.
    /// Returns whether it was watched.
    pub(crate) fn set_silent(&mut self, peer: PeerId) -> bool {
        match self.peers.get_mut(&peer).map(|e| &mut e.stage) {
            Some(PeerStage::Member { standing, .. }) if *standing != Standing::Silent => {
                *standing = Standing::Silent;
                true
            }
            _ => false,
        }
    }

    /// A datagram of silent `peer` authenticated: it receives our keys again. Returns whether
    /// it was silent.
    pub(crate) fn revive(&mut self, peer: PeerId) -> bool {
        match self.peers.get_mut(&peer).map(|e| &mut e.stage) {
            Some(PeerStage::Member { standing, .. }) if *standing == Standing::Silent => {
                *standing = Standing::Recipient;
                true
            }
            _ => false,
        }
    }

    /// Held members whose hold is over become recipients; returns them, ascending.
    pub(crate) fn release_held(&mut self, now_ms: u64) -> Vec<PeerId> {
        let mut out = Vec::new();
        for (id, e) in &mut self.peers {
            if let PeerStage::Member { standing, .. } = &mut e.stage
                && let Standing::Held { until_ms } = *standing
                && until_ms <= now_ms
            {
                *standing = Standing::Recipient;
                out.push(*id);
            }
        }
        out
    }

    /// When the soonest hold ends.
    pub(crate) fn hold_timeout(&self) -> Option<u64> {
        self.peers
            .values()
            .filter_map(|e| match e.stage {
                PeerStage::Member {
                    standing: Standing::Held { until_ms },
                    ..
                } => Some(until_ms),
                _ => None,
            })
            .min()
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

    /// When [`Roster::due_reannouncements`] next has work, or a hold ends.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        let notice = self.peers.values().filter_map(|e| e.notice_at).min();
        super::soonest(notice, self.hold_timeout())
    }

    /// The peers we should re-announce for now, ascending. A peer re-announced for within
    /// `reannounce_interval_ms` is postponed to the end of that interval instead.
    pub(crate) fn due_reannouncements(&mut self, now_ms: u64) -> Vec<PeerId> {
        let interval = self.config.reannounce_interval_ms;
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

/// One peer as the UI shows it (see [`Roster::shown`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) display_name: Option<String>,
    pub(crate) fingerprint: Option<Fingerprint>,
    pub(crate) verified: bool,
    /// `None` unless a member.
    pub(crate) standing: Option<Standing>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::identity;

    fn config(secret_room: bool, max_peers: usize) -> RosterConfig {
        RosterConfig {
            secret_room,
            notice_delay_ms: 500,
            reannounce_interval_ms: 2_000,
            max_peers,
            readd_interval_ms: 10_000,
            announce_freshness_ms: 60_000,
        }
    }

    fn roster() -> Roster {
        Roster::new(config(true, 256))
    }

    fn shown(
        name: Option<&str>,
        fp: Option<Fingerprint>,
        verified: bool,
        standing: Option<Standing>,
    ) -> Option<Shown> {
        Some(Shown {
            display_name: name.map(str::to_string),
            fingerprint: fp,
            verified,
            standing,
        })
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
        assert_eq!(r.shown(P), shown(None, None, false, None));
        r.claim(P, "Mallory".into());
        assert!(
            matches!(r.stage(P), Some(PeerStage::Claimed { display_name }) if display_name == "Mallory")
        );
        assert!(r.member_keys(P).is_none() && r.recipients().is_empty());
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10), 0),
            Ok(Accepted::NewMember)
        );
        let fp = identity(0).fingerprint();
        let recipient = Some(Standing::Recipient);
        assert_eq!(r.shown(P), shown(Some("Alice"), Some(fp), true, recipient));
        assert_eq!(r.recipients(), vec![P]);
        assert_eq!(r.recipient_fingerprints().collect::<Vec<_>>(), vec![fp]);
        r.claim(P, "Eve".into());
        assert_eq!(r.shown(P).unwrap().display_name.as_deref(), Some("Alice"));
        // A later announcement renames; the keys stay.
        assert_eq!(
            r.accept(P, announcement(0, "Al", 11), 0),
            Ok(Accepted::Again)
        );
        assert_eq!(r.shown(P), shown(Some("Al"), Some(fp), true, recipient));
    }

    #[test]
    fn members_of_a_room_without_secret_are_not_verified() {
        let mut r = Roster::new(config(false, 256));
        let mut a = announcement(0, "Alice", 10);
        a.authenticated = false;
        r.list(P);
        assert_eq!(r.accept(P, a, 0), Ok(Accepted::NewMember));
        assert!(!r.shown(P).unwrap().verified);
        assert!(r.member_keys(P).is_some());
    }

    #[test]
    fn replays_and_key_changes_are_rejected_even_after_the_peer_left() {
        let mut r = roster();
        r.list(P);
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10), 0),
            Ok(Accepted::NewMember)
        );
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10), 0),
            Err(Rejection::Replayed)
        );
        assert_eq!(
            r.accept(P, announcement(1, "Alice", 11), 0),
            Err(Rejection::IdentityChanged)
        );
        assert!(r.remove(P, 0));
        assert!(!r.contains(P) && !r.remove(P, 0));
        // The same identity under another peer id: still a replay unless newer.
        let q = PeerId(8);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 9), 0),
            Err(Rejection::Replayed)
        );
        assert!(!r.contains(q), "a replay lists nobody");
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 12), 0),
            Err(Rejection::NotInRoster),
            "the relay has not listed it"
        );
        assert!(!r.contains(q), "nor does an unlisted peer's announcement");
        r.list(q);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 12), 10_000),
            Ok(Accepted::NewMember),
            "newer, and after the re-add interval"
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
            r.accept(P, announcement(0, "Alice", 10), 0),
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
        let mut r = Roster::new(config(true, 2));
        r.claim(P, "Mallory".into());
        assert!(!r.contains(P), "a claim lists nobody");
        assert!(r.list(PeerId(1)) && r.on_joined(PeerId(2), 0));
        assert!(!r.list(P) && !r.on_joined(P, 0), "full");
        assert!(!r.contains(P));
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10), 0),
            Err(Rejection::NotInRoster)
        );
        assert!(r.list(PeerId(1)), "a listed peer stays listed");
        assert!(r.remove(PeerId(1), 0));
        assert!(r.list(P), "room again once one left");
    }

    #[test]
    fn an_identity_that_left_is_held_back_and_a_silent_member_returns() {
        let mut r = roster();
        let q = PeerId(8);
        r.list(P);
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 10), 1_000),
            Ok(Accepted::NewMember)
        );
        assert_eq!(r.watched().collect::<Vec<_>>(), vec![(P, 1_000)]);
        // It leaves and comes back at once (another peer id, same identity): held 10 s.
        assert!(r.remove(P, 2_000));
        r.list(q);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 11), 2_500),
            Ok(Accepted::NewHeld)
        );
        assert!(!r.is_recipient(q) && r.recipients().is_empty());
        assert_eq!(r.standing(q), Some(Standing::Held { until_ms: 12_000 }));
        assert_eq!(r.poll_timeout(), Some(12_000));
        assert!(r.release_held(11_999).is_empty());
        // Leaving while held records nothing: the hold counts from the last recipient's leave.
        assert!(r.remove(q, 3_000));
        r.list(q);
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 12), 4_000),
            Ok(Accepted::NewHeld)
        );
        assert_eq!(r.release_held(12_000), vec![q]);
        assert!(r.is_recipient(q));
        assert_eq!(r.poll_timeout(), None);
        // Silent: no longer a recipient nor watched; only an announcement or a datagram (revive)
        // brings it back.
        assert!(r.set_silent(q) && !r.set_silent(q));
        assert!(!r.is_recipient(q) && r.watched().next().is_none());
        assert_eq!(
            r.accept(q, announcement(0, "Alice", 13), 20_000),
            Ok(Accepted::Returned)
        );
        assert!(r.is_recipient(q));
        assert_eq!(r.watched().collect::<Vec<_>>(), vec![(q, 20_000)]);
        assert!(r.set_silent(q) && r.revive(q) && !r.revive(q));
        assert!(r.is_recipient(q));
        // A silent member that leaves is not held when it comes back (it was rekeyed out
        // already); after the interval a recipient's leave is not held either.
        assert!(r.set_silent(q) && r.remove(q, 30_000));
        r.list(P);
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 14), 30_000),
            Ok(Accepted::NewMember)
        );
        assert!(r.remove(P, 31_000));
        r.list(P);
        assert_eq!(
            r.accept(P, announcement(0, "Alice", 15), 41_000),
            Ok(Accepted::NewMember)
        );
    }

    #[test]
    fn what_is_remembered_of_identities_is_bounded() {
        let mut r = Roster::new(config(true, 1));
        let keys = identity(0).public_keys();
        r.list(P);
        for i in 0..10u64 {
            r.seen.insert(
                Fingerprint::of(&i.to_be_bytes(), &[0; 32]),
                Seen {
                    timestamp_ms: i,
                    left_ms: (i == 3).then_some(200_000),
                },
            );
        }
        let a = ReadAnnouncement {
            display_name: "Alice".into(),
            keys,
            timestamp_ms: 200_000,
            authenticated: true,
        };
        assert_eq!(r.accept(P, a, 200_001), Ok(Accepted::NewMember));
        // Stale twice over: dropped; the one still held and the one just accepted stay.
        assert_eq!(r.seen.len(), 2);
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
