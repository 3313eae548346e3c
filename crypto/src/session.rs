//! The E2EE handshake as a sans-IO state machine: feed it relay events, signals and time; drain
//! the actions it wants performed; seal and open media through it.
//!
//! Time is a `u64` of **Unix milliseconds** (wall clock) passed into every call that needs it:
//! announcements carry it and peers check its freshness, so it must be roughly synchronised
//! across peers (NTP). Timers use saturating arithmetic, so a clock step backwards only delays
//! them. The session never reads a clock, spawns a thread or touches a socket.
//!
//! Driving it (the engine):
//! - `Welcome { peer, roster }` → [`Session::on_welcome`]; start sealing a heartbeat every 1 s.
//! - `PeerJoined` → [`Session::on_peer_joined`]; `PeerLeft` → [`Session::on_peer_left`].
//! - `Signal { from, payload }` → [`Session::on_signal`].
//! - a media body → [`Session::open`]; outgoing media → [`Session::seal`] / [`Session::seal_in_place`].
//! - at [`Session::next_timeout`] (or every ~250 ms) → [`Session::on_tick`].
//! - after each of these, drain [`Session::poll_action`] until `None` and perform the actions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use vcall_proto::e2ee::{
    Announcement, AnnouncementEnvelope, E2eeSignal, EnvelopeMode, KeyAck, KeyId, KeyMessage,
    MAX_DISPLAY_NAME, NONCE_LEN, SealedHeader, decode_signal,
};
use vcall_proto::{DatagramKind, PeerId};

use crate::identity::{Fingerprint, Identity, PeerKeys, SecurityCode};
use crate::link::RoomKeys;
use crate::media::{MediaKey, OpenError, ReplayWindow, SealError, SenderSecret};
use crate::random::RandomSource;

/// Tunables; the defaults are what docs/SECURITY.md describes.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Shown to other members (truncated to 64 bytes at a character boundary).
    pub display_name: String,
    /// An announcement whose timestamp differs from our clock by more than this is rejected.
    pub announce_freshness_ms: u64,
    /// Minimum time between two re-announcements triggered by the same peer, and between two
    /// unsolicited resends of our key to the same peer.
    pub reannounce_interval_ms: u64,
    /// After `PeerJoined`, how long to wait for the newcomer's own announcement before
    /// re-announcing anyway.
    pub notice_delay_ms: u64,
    /// A new epoch is used once every member acked it, or after this long.
    pub rekey_switch_ms: u64,
    /// How long a receiver keeps a superseded key for packets in flight.
    pub old_key_grace_ms: u64,
    /// A new epoch (fresh random secret) this often.
    pub epoch_interval_ms: u64,
    /// Largest generation step a receiver takes on its own when a packet authenticates.
    pub max_ratchet_steps: u16,
    /// How long a key message from a not-yet-announced peer waits for its announcement.
    pub buffered_key_ttl_ms: u64,
    /// RSA decryptions allowed per peer per 10 s (after signature checks; a backstop).
    pub max_unwraps_per_10s: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            announce_freshness_ms: 60_000,
            reannounce_interval_ms: 2_000,
            notice_delay_ms: 500,
            rekey_switch_ms: 2_000,
            old_key_grace_ms: 10_000,
            epoch_interval_ms: 600_000,
            max_ratchet_steps: 8,
            buffered_key_ttl_ms: 10_000,
            max_unwraps_per_10s: 16,
        }
    }
}

/// Handshake log event kinds; names match vcall-bot's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeEventKind {
    SentPubkey,
    RecvPubkey,
    SentKey,
    RecvKey,
    ReannounceNewPeer,
    Rekey,
}

impl HandshakeEventKind {
    /// `sent_pubkey | recv_pubkey | sent_key | recv_key | reannounce_new_peer | rekey`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SentPubkey => "sent_pubkey",
            Self::RecvPubkey => "recv_pubkey",
            Self::SentKey => "sent_key",
            Self::RecvKey => "recv_key",
            Self::ReannounceNewPeer => "reannounce_new_peer",
            Self::Rekey => "rekey",
        }
    }
}

/// One handshake log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeEvent {
    pub kind: HandshakeEventKind,
    /// The other peer (`PeerId::NONE` for a broadcast or our own rekey).
    pub peer: PeerId,
    pub key: Option<KeyId>,
    pub at_ms: u64,
}

/// Why a signal was rejected (every rejection is also reported as [`Action::Rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not joined yet")]
    NotJoined,
    #[error("malformed message")]
    Malformed,
    #[error("signal from ourselves or from nobody")]
    BadSender,
    #[error("announcement does not authenticate under the room secret")]
    Unauthenticated,
    #[error("announcement names another peer id than its sender")]
    PeerIdMismatch,
    #[error("announcement timestamp outside the freshness window")]
    Stale,
    #[error("announcement replayed (timestamp not newer than the last one)")]
    Replayed,
    #[error("peer's public keys changed within its session")]
    IdentityChanged,
    #[error("invalid public keys in the announcement")]
    BadKeys,
    #[error("message addressed to another peer")]
    NotForMe,
    #[error("message for another room")]
    WrongRoom,
    #[error("signature does not verify")]
    BadSignature,
    #[error("key message from a peer that is not a verified room member")]
    UnverifiedPeer,
    #[error("key older than one we hold")]
    StaleKey,
    #[error("too many key decryptions from this peer")]
    RateLimited,
    #[error("key unwrap failed")]
    UnwrapFailed,
}

/// What the session asks the engine to do or tells it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `Signal { to, payload }` on the control stream (`to == PeerId::NONE`: everyone).
    SendSignal { to: PeerId, payload: Vec<u8> },
    /// We can now open media from `peer` under `key`.
    KeyInstalled { peer: PeerId, key: KeyId },
    /// A key of `peer` was dropped.
    KeyRetired { peer: PeerId, key: KeyId },
    /// Our outgoing media now uses `key`.
    SenderKeyChanged { key: KeyId },
    /// A peer's roster entry changed (verification, name, keys) or it was removed: re-read
    /// [`Session::peers`] / [`Session::security_code`].
    PeerChanged { peer: PeerId },
    /// A handshake log line (for vcall-bot's report).
    Log(HandshakeEvent),
    /// A signal was rejected (a security event worth logging).
    Rejected { peer: PeerId, reason: Rejection },
}

/// What the UI shows for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    /// From its announcement (authenticated only when `verified`).
    pub display_name: Option<String>,
    /// From both its public keys.
    pub fingerprint: Option<Fingerprint>,
    /// Its announcement authenticated under the room secret: a verified *room member*
    /// (membership, not identity: compare fingerprints / the security code for that).
    pub verified: bool,
    /// We hold at least one of its sender keys.
    pub key_received: bool,
    /// It was sent our current sender key, or an earlier generation of it within the
    /// receiver's ratchet bound (from which it steps forward by itself).
    pub key_sent: bool,
}

struct OwnKey {
    id: KeyId,
    secret: SenderSecret,
    media: MediaKey,
    /// Wrapped to at least one peer (so a newcomer must get a ratcheted successor instead).
    given: bool,
}

impl OwnKey {
    fn new(id: KeyId, secret: SenderSecret, room_id: &[u8]) -> Self {
        Self {
            media: MediaKey::derive(id, &secret, room_id),
            id,
            secret,
            given: false,
        }
    }

    fn ratchet(&mut self, room_id: &[u8]) -> bool {
        let Some(generation) = self.id.generation.checked_add(1) else {
            return false;
        };
        let id = KeyId::new(self.id.epoch, generation);
        *self = Self::new(id, self.secret.ratchet(room_id), room_id);
        true
    }
}

struct PendingEpoch {
    key: OwnKey,
    deadline_ms: u64,
    awaiting: BTreeSet<PeerId>,
}

struct RecvKey {
    secret: SenderSecret,
    media: MediaKey,
    window: ReplayWindow,
    retire_at: Option<u64>,
}

#[derive(Default)]
struct Peer {
    display_name: Option<String>,
    keys: Option<PeerKeys>,
    verified: bool,
    /// May receive our keys and send us theirs.
    eligible: bool,
    sent: Option<KeyId>,
    sent_pending: Option<KeyId>,
    last_sent_ms: Option<u64>,
    recv: BTreeMap<KeyId, RecvKey>,
    max_epoch: Option<u16>,
    buffered: Vec<(Vec<u8>, u64)>,
    notice_at: Option<u64>,
    last_reannounce_ms: Option<u64>,
    unwrap_window_start: u64,
    unwraps_in_window: u32,
}

const MAX_BUFFERED_PER_PEER: usize = 4;
const MAX_RECV_KEYS_PER_PEER: usize = 16;

/// One member's E2EE state for one room. See the module docs for how to drive it.
pub struct Session {
    identity: Arc<Identity>,
    room: RoomKeys,
    config: SessionConfig,
    rng: Box<dyn RandomSource>,
    me: Option<PeerId>,
    peers: BTreeMap<PeerId, Peer>,
    current: OwnKey,
    pending: Option<PendingEpoch>,
    next_epoch: u16,
    epoch_started_ms: u64,
    counter: u64,
    actions: VecDeque<Action>,
    /// Newest accepted announcement timestamp per identity, kept after the peer leaves, so a
    /// relay cannot replay a departed peer's announcement within the freshness window.
    seen_announcements: BTreeMap<Fingerprint, u64>,
    last_announce_ts: u64,
}

impl Session {
    /// A session for one room. `identity` was generated ahead of time (worker thread);
    /// `rng` is [`crate::OsRandom`] in production.
    pub fn new(
        identity: Arc<Identity>,
        room: RoomKeys,
        mut config: SessionConfig,
        mut rng: Box<dyn RandomSource>,
    ) -> Self {
        truncate_name(&mut config.display_name);
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let current = OwnKey::new(KeyId::new(0, 0), SenderSecret(secret), room.room_id());
        Self {
            identity,
            room,
            config,
            rng,
            me: None,
            peers: BTreeMap::new(),
            current,
            pending: None,
            next_epoch: 1,
            epoch_started_ms: 0,
            counter: 0,
            actions: VecDeque::new(),
            seen_announcements: BTreeMap::new(),
            last_announce_ts: 0,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Queries

    /// Our relay-assigned peer id, once joined.
    pub fn my_peer_id(&self) -> Option<PeerId> {
        self.me
    }

    pub fn my_fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    pub fn room(&self) -> &RoomKeys {
        &self.room
    }

    /// The key our outgoing media is sealed with now.
    pub fn sender_key_id(&self) -> KeyId {
        self.current.id
    }

    /// The room security code: over our fingerprint and those of every peer that may hold our
    /// keys (verified members; every announced peer in a room without secret). Identical for
    /// every member once all have authenticated each other.
    pub fn security_code(&self) -> SecurityCode {
        let mut fps = vec![self.identity.fingerprint()];
        fps.extend(
            self.peers
                .values()
                .filter(|p| p.eligible)
                .filter_map(|p| p.keys.as_ref().map(PeerKeys::fingerprint)),
        );
        SecurityCode::of(&fps)
    }

    /// Every peer in the room as we know it, sorted by peer id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peers.keys().filter_map(|id| self.peer(*id)).collect()
    }

    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(&id)?;
        Some(PeerInfo {
            peer: id,
            display_name: p.display_name.clone(),
            fingerprint: p.keys.as_ref().map(PeerKeys::fingerprint),
            verified: p.verified,
            key_received: !p.recv.is_empty(),
            key_sent: [p.sent, p.sent_pending].into_iter().flatten().any(|k| {
                k.epoch == self.current.id.epoch
                    && k.generation <= self.current.id.generation
                    && self.current.id.generation - k.generation <= self.config.max_ratchet_steps
            }),
        })
    }

    /// Next action to perform, if any. Drain after every call into the session.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::on_tick`] next has work (Unix ms), if ever.
    pub fn next_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut at = |x: u64| t = Some(t.map_or(x, |t| t.min(x)));
        if self.me.is_some() {
            at(self
                .epoch_started_ms
                .saturating_add(self.config.epoch_interval_ms));
        }
        if let Some(p) = &self.pending {
            at(p.deadline_ms);
        }
        for p in self.peers.values() {
            if let Some(n) = p.notice_at {
                at(n);
            }
            for k in p.recv.values() {
                if let Some(r) = k.retire_at {
                    at(r);
                }
            }
            for (_, received) in &p.buffered {
                at(received.saturating_add(self.config.buffered_key_ttl_ms));
            }
        }
        t
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// The relay's `Welcome`: our peer id and who is already in the room. Broadcasts our
    /// announcement. Start sealing heartbeats after this.
    pub fn on_welcome(&mut self, me: PeerId, roster: &[PeerId], now_ms: u64) {
        self.me = Some(me);
        self.epoch_started_ms = now_ms;
        for &p in roster {
            if p != me && p != PeerId::NONE {
                self.peers.entry(p).or_default();
                self.push(Action::PeerChanged { peer: p });
            }
        }
        self.announce(now_ms);
        self.log(HandshakeEventKind::SentPubkey, PeerId::NONE, None, now_ms);
    }

    /// The relay's `PeerJoined`. We re-announce once its own announcement reaches us (or after
    /// `notice_delay_ms` if it does not).
    pub fn on_peer_joined(&mut self, peer: PeerId, now_ms: u64) {
        if Some(peer) == self.me || peer == PeerId::NONE {
            return;
        }
        let delay = self.config.notice_delay_ms;
        let p = self.peers.entry(peer).or_default();
        if p.keys.is_none() {
            p.notice_at = Some(now_ms.saturating_add(delay));
        }
        self.push(Action::PeerChanged { peer });
    }

    /// The relay's `PeerLeft`. Forgets the peer and, if it held our key, starts a new epoch.
    pub fn on_peer_left(&mut self, peer: PeerId, now_ms: u64) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        for id in p.recv.keys() {
            self.push(Action::KeyRetired { peer, key: *id });
        }
        self.push(Action::PeerChanged { peer });
        if let Some(pending) = &mut self.pending {
            pending.awaiting.remove(&peer);
        }
        if p.sent.is_some() || p.sent_pending.is_some() {
            self.start_epoch(now_ms);
        } else {
            self.maybe_switch(now_ms);
        }
    }

    /// A `Signal` from the relay (`from` as stamped by the relay).
    pub fn on_signal(
        &mut self,
        from: PeerId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let r = self.handle_signal(from, payload, now_ms);
        if let Err(reason) = r {
            self.push(Action::Rejected { peer: from, reason });
        }
        r
    }

    /// Timers: newcomer notices, epoch switch and rotation, key retirement, buffer expiry.
    pub fn on_tick(&mut self, now_ms: u64) {
        if self.me.is_none() {
            return;
        }
        // Newcomers that never announced themselves: re-announce so they answer.
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.notice_at.is_some_and(|t| t <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        // One announcement serves every newcomer due now (rate-limited per newcomer).
        let interval = self.config.reannounce_interval_ms;
        let mut announce_for = Vec::new();
        for id in due {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            p.notice_at = None;
            match p.last_reannounce_ms {
                Some(t) if now_ms < t.saturating_add(interval) => {
                    p.notice_at = Some(t.saturating_add(interval));
                }
                _ => {
                    p.last_reannounce_ms = Some(now_ms);
                    announce_for.push(id);
                }
            }
        }
        if !announce_for.is_empty() {
            self.announce(now_ms);
            for id in announce_for {
                self.log(HandshakeEventKind::ReannounceNewPeer, id, None, now_ms);
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.deadline_ms <= now_ms)
        {
            self.switch_epoch();
        }
        if self.pending.is_none()
            && now_ms
                >= self
                    .epoch_started_ms
                    .saturating_add(self.config.epoch_interval_ms)
        {
            self.start_epoch(now_ms);
        }
        let ttl = self.config.buffered_key_ttl_ms;
        let mut retired = Vec::new();
        for (id, p) in &mut self.peers {
            p.buffered.retain(|(_, t)| t.saturating_add(ttl) > now_ms);
            p.recv.retain(|k, r| {
                let keep = r.retire_at.is_none_or(|t| t > now_ms);
                if !keep {
                    retired.push((*id, *k));
                }
                keep
            });
        }
        for (peer, key) in retired {
            self.push(Action::KeyRetired { peer, key });
            self.push(Action::PeerChanged { peer });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Media

    /// Seals `plaintext` as a body of `kind` and appends it (sealed header, ciphertext, tag) to
    /// `out`, after whatever `out` already holds (e.g. the datagram header). `target` must be
    /// the datagram header's target (`None` for broadcast; always `None` for video frames).
    pub fn seal(
        &mut self,
        kind: DatagramKind,
        target: Option<PeerId>,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let start = out.len();
        out.reserve(crate::media::SEAL_OVERHEAD + plaintext.len());
        out.extend_from_slice(&[0u8; SealedHeader::LEN]);
        out.extend_from_slice(plaintext);
        let r = self.seal_in_place(kind, target, out, start);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Seals in place: `buf[start..start + SealedHeader::LEN]` is reserved (any content), the
    /// plaintext follows to the end of `buf`; the tag is appended. The video path encodes a
    /// frame after 10 reserved bytes and seals it here without copying.
    pub fn seal_in_place(
        &mut self,
        kind: DatagramKind,
        target: Option<PeerId>,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), SealError> {
        let me = self.me.ok_or(SealError::NotJoined)?;
        let counter = self.counter;
        self.current.media.seal_in_place(
            counter,
            me,
            kind,
            target,
            self.room.room_id(),
            buf,
            start,
        )?;
        self.counter += 1;
        Ok(())
    }

    /// Opens a sealed body from `sender` (the relay-stamped datagram sender) of `kind` with the
    /// datagram's `target`, in place; returns the plaintext (a sub-slice of `body`). For video,
    /// `body` is the reassembled frame. Checks replay. A body under a key we lack makes us
    /// re-announce (rate-limited) so the sender sends us its key.
    pub fn open<'a>(
        &mut self,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        body: &'a mut [u8],
        now_ms: u64,
    ) -> Result<&'a mut [u8], OpenError> {
        let me = self.me.ok_or(OpenError::NotJoined)?;
        if sender == me || sender == PeerId::NONE {
            return Err(OpenError::Malformed);
        }
        if target.is_some_and(|t| t != me) {
            return Err(OpenError::NotForMe);
        }
        let header = SealedHeader::decode(body).map_err(|_| OpenError::Malformed)?;
        let room_id = self.room.room_id();
        let Some(peer) = self.peers.get_mut(&sender) else {
            // Not in our roster: the relay has not announced it; nothing to do.
            return Err(OpenError::UnknownKey {
                sender,
                key: header.key_id,
            });
        };
        if let Some(k) = peer.recv.get_mut(&header.key_id) {
            if !k.window.check(header.counter) {
                return Err(OpenError::Replayed {
                    counter: header.counter,
                });
            }
            let pt = k
                .media
                .open_in_place(&header, sender, kind, target, room_id, body)?;
            k.window.accept(header.counter);
            let epoch_switched = peer.recv.keys().any(|id| id.epoch < header.key_id.epoch);
            if epoch_switched {
                retire_older(peer, header.key_id, now_ms, self.config.old_key_grace_ms);
            }
            return Ok(pt);
        }
        // A newer generation of an epoch we hold: step forward if it authenticates.
        let base = peer
            .recv
            .range(KeyId::new(header.key_id.epoch, 0)..header.key_id)
            .next_back()
            .map(|(id, k)| (*id, k.secret.clone()));
        if let Some((base_id, mut secret)) = base {
            let steps = header.key_id.generation - base_id.generation;
            if steps <= self.config.max_ratchet_steps {
                for _ in 0..steps {
                    secret = secret.ratchet(room_id);
                }
                let media = MediaKey::derive(header.key_id, &secret, room_id);
                let pt = media.open_in_place(&header, sender, kind, target, room_id, body)?;
                let mut window = ReplayWindow::new();
                window.accept(header.counter);
                peer.recv.insert(
                    header.key_id,
                    RecvKey {
                        secret,
                        media,
                        window,
                        retire_at: None,
                    },
                );
                retire_older(peer, header.key_id, now_ms, self.config.old_key_grace_ms);
                limit_keys(peer);
                self.actions.push_back(Action::KeyInstalled {
                    peer: sender,
                    key: header.key_id,
                });
                return Ok(pt);
            }
        }
        let lacks_all =
            peer.recv.is_empty() || peer.max_epoch.is_some_and(|e| header.key_id.epoch > e);
        if lacks_all {
            self.notice_unknown_key(sender, now_ms);
        }
        Err(OpenError::UnknownKey {
            sender,
            key: header.key_id,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn log(&mut self, kind: HandshakeEventKind, peer: PeerId, key: Option<KeyId>, at_ms: u64) {
        self.push(Action::Log(HandshakeEvent {
            kind,
            peer,
            key,
            at_ms,
        }));
    }

    fn eligible_peers(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.eligible && p.keys.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Builds and broadcasts our announcement (sealed under the room's announce key if any).
    fn announce(&mut self, now_ms: u64) {
        let Some(me) = self.me else { return };
        // Strictly increasing, so receivers never take a re-announcement for a replay.
        let ts = now_ms.max(self.last_announce_ts.saturating_add(1));
        self.last_announce_ts = ts;
        let mut plain = Vec::with_capacity(400);
        Announcement {
            peer: me,
            timestamp_ms: ts,
            display_name: &self.config.display_name,
            rsa_public_key: self.identity.rsa_public_der(),
            ed25519_public_key: *self.identity.ed25519_public(),
        }
        .encode(&mut plain);
        let payload = match self.room.announce_key() {
            None => {
                let mut p = Vec::with_capacity(2 + plain.len());
                AnnouncementEnvelope::put_header(EnvelopeMode::Clear, &mut p);
                p.extend_from_slice(&plain);
                p
            }
            Some(k) => {
                let mut nonce = [0u8; NONCE_LEN];
                self.rng.fill(&mut nonce);
                let mode = EnvelopeMode::Sealed { nonce };
                let aad = AnnouncementEnvelope::aad(mode, self.room.room_id());
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key"));
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut plain,
                )
                .expect("announcement fits AES-GCM limits");
                let mut p = Vec::with_capacity(14 + plain.len());
                AnnouncementEnvelope::put_header(mode, &mut p);
                p.extend_from_slice(&plain);
                p
            }
        };
        self.push(Action::SendSignal {
            to: PeerId::NONE,
            payload,
        });
    }

    /// Media arrived from `peer` (in our roster) under a key we lack: re-announce at the next
    /// tick (rate-limited), so it sends us its key. Peers known to be unverified are ignored.
    fn notice_unknown_key(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&peer)
            && (p.keys.is_none() || p.eligible)
        {
            p.notice_at = Some(p.notice_at.map_or(now_ms, |t| t.min(now_ms)));
        }
    }

    fn handle_signal(
        &mut self,
        from: PeerId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let me = self.me.ok_or(Rejection::NotJoined)?;
        if from == me || from == PeerId::NONE {
            return Err(Rejection::BadSender);
        }
        match decode_signal(payload).map_err(|_| Rejection::Malformed)? {
            E2eeSignal::Announcement(env) => self.handle_announcement(from, env, now_ms),
            E2eeSignal::Key(_) => self.handle_key(from, payload, now_ms),
            E2eeSignal::Ack(ack) => self.handle_ack(me, from, ack, now_ms),
        }
    }

    fn handle_announcement(
        &mut self,
        from: PeerId,
        env: AnnouncementEnvelope<'_>,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let secret_room = self.room.has_secret();
        let mut opened;
        let (plain, authenticated): (&[u8], bool) = match (env.mode, self.room.announce_key()) {
            (EnvelopeMode::Clear, _) => (env.body, false),
            (EnvelopeMode::Sealed { nonce }, Some(k)) => {
                let aad = AnnouncementEnvelope::aad(env.mode, self.room.room_id());
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key"));
                opened = env.body.to_vec();
                match key.open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut opened,
                ) {
                    Ok(pt) => (&*pt, true),
                    Err(_) => return Err(Rejection::Unauthenticated),
                }
            }
            (EnvelopeMode::Sealed { .. }, None) => return Err(Rejection::Unauthenticated),
        };
        let a = Announcement::decode(plain).map_err(|_| Rejection::Malformed)?;
        if a.peer != from {
            return Err(Rejection::PeerIdMismatch);
        }
        if now_ms.abs_diff(a.timestamp_ms) > self.config.announce_freshness_ms {
            return Err(Rejection::Stale);
        }
        let keys = PeerKeys::parse(a.rsa_public_key, &a.ed25519_public_key)
            .map_err(|_| Rejection::BadKeys)?;
        if secret_room && !authenticated {
            // A clear announcement in a secret room: shown, unverified, never given keys.
            let p = self.peers.entry(from).or_default();
            if p.keys.is_none() {
                p.display_name = Some(a.display_name.to_string());
            }
            self.push(Action::PeerChanged { peer: from });
            return Err(Rejection::Unauthenticated);
        }
        if self
            .seen_announcements
            .get(&keys.fingerprint())
            .is_some_and(|t| a.timestamp_ms <= *t)
        {
            return Err(Rejection::Replayed);
        }
        let p = self.peers.entry(from).or_default();
        if let Some(old) = &p.keys
            && old.fingerprint() != keys.fingerprint()
        {
            return Err(Rejection::IdentityChanged);
        }
        let newly = p.keys.is_none();
        self.seen_announcements
            .insert(keys.fingerprint(), a.timestamp_ms);
        let p = self.peers.get_mut(&from).expect("inserted above");
        p.display_name = Some(a.display_name.to_string());
        p.verified = authenticated;
        p.eligible = true;
        if newly {
            p.keys = Some(keys);
        }
        self.log(HandshakeEventKind::RecvPubkey, from, None, now_ms);
        if newly {
            self.push(Action::PeerChanged { peer: from });
            // Ratchet on join: the newcomer must not read what we sent before it joined.
            if self.current.given {
                self.ratchet_own(now_ms);
            }
        }
        self.send_keys_to(from, newly, now_ms);
        if newly {
            // "Alice notices that Bob is a new peer and sends the RSA pub key message again":
            // due now, performed by the next on_tick (after this signal's actions are sent).
            if let Some(p) = self.peers.get_mut(&from) {
                p.notice_at = Some(now_ms);
            }
            let buffered = self
                .peers
                .get_mut(&from)
                .map(|p| std::mem::take(&mut p.buffered))
                .unwrap_or_default();
            for (msg, _) in buffered {
                if let Err(reason) = self.handle_key(from, &msg, now_ms) {
                    self.push(Action::Rejected { peer: from, reason });
                }
            }
        }
        Ok(())
    }

    fn ratchet_own(&mut self, now_ms: u64) {
        let room_id = self.room.room_id().to_vec();
        if self.current.ratchet(&room_id) {
            self.push(Action::SenderKeyChanged {
                key: self.current.id,
            });
            self.log(
                HandshakeEventKind::Rekey,
                PeerId::NONE,
                Some(self.current.id),
                now_ms,
            );
        }
        if let Some(p) = &mut self.pending {
            p.key.ratchet(&room_id);
            p.key.given = true;
        }
    }

    /// Sends `peer` our current key (and the pending epoch's) unless it already has them; with
    /// `force_resend` or after `reannounce_interval_ms`, sends again anyway.
    fn send_keys_to(&mut self, peer: PeerId, force: bool, now_ms: u64) {
        let interval = self.config.reannounce_interval_ms;
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if !p.eligible || p.keys.is_none() {
            return;
        }
        let stale = p
            .last_sent_ms
            .is_none_or(|t| now_ms >= t.saturating_add(interval));
        let send_current = force || p.sent != Some(self.current.id) || stale;
        let pending_id = self.pending.as_ref().map(|x| x.key.id);
        let send_pending =
            pending_id.is_some_and(|id| force || p.sent_pending != Some(id) || stale);
        if send_current {
            let (id, secret) = (self.current.id, self.current.secret.clone());
            self.current.given = true;
            self.send_key(peer, id, &secret, now_ms);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.sent = Some(id);
            }
        }
        if send_pending && let Some(pending) = &mut self.pending {
            pending.key.given = true;
            let (id, secret) = (pending.key.id, pending.key.secret.clone());
            self.send_key(peer, id, &secret, now_ms);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.sent_pending = Some(id);
            }
        }
    }

    fn send_key(&mut self, peer: PeerId, id: KeyId, secret: &SenderSecret, now_ms: u64) {
        let Some(me) = self.me else { return };
        let Some(keys) = self.peers.get(&peer).and_then(|p| p.keys.clone()) else {
            return;
        };
        let wrapped = keys.wrap_secret(secret.as_bytes(), self.rng.as_mut());
        let mut msg = KeyMessage {
            sender: me,
            recipient: peer,
            room_id: self.room.room_id(),
            key_id: id,
            wrapped: &wrapped,
            signature: [0; 64],
        };
        msg.signature = self.identity.sign(&msg.signed_bytes());
        let mut payload = Vec::with_capacity(400);
        msg.encode(&mut payload);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_sent_ms = Some(now_ms);
        }
        self.push(Action::SendSignal { to: peer, payload });
        self.log(HandshakeEventKind::SentKey, peer, Some(id), now_ms);
    }

    fn handle_key(&mut self, from: PeerId, payload: &[u8], now_ms: u64) -> Result<(), Rejection> {
        let me = self.me.ok_or(Rejection::NotJoined)?;
        let m = KeyMessage::decode(payload).map_err(|_| Rejection::Malformed)?;
        if m.sender != from {
            return Err(Rejection::BadSender);
        }
        if m.recipient != me {
            return Err(Rejection::NotForMe);
        }
        if m.room_id != self.room.room_id() {
            return Err(Rejection::WrongRoom);
        }
        let p = self.peers.entry(from).or_default();
        let Some(keys) = p.keys.clone() else {
            // Its announcement has not reached us yet: keep the message (bounded) until it does.
            if p.buffered.len() >= MAX_BUFFERED_PER_PEER {
                p.buffered.remove(0);
            }
            p.buffered.push((payload.to_vec(), now_ms));
            return Ok(());
        };
        if !p.eligible {
            return Err(Rejection::UnverifiedPeer);
        }
        // Signature before any RSA decryption (RUSTSEC-2023-0071 containment).
        if !keys.verify(&m.signed_bytes(), &m.signature) {
            return Err(Rejection::BadSignature);
        }
        if p.max_epoch.is_some_and(|e| m.key_id.epoch < e) {
            return Err(Rejection::StaleKey);
        }
        let have_same_or_newer = p
            .recv
            .range(
                KeyId::new(m.key_id.epoch, m.key_id.generation)
                    ..=KeyId::new(m.key_id.epoch, u16::MAX),
            )
            .next()
            .is_some();
        if have_same_or_newer {
            // Duplicate (a resend or a replay): nothing to decrypt; re-ack cheaply.
            self.send_ack(from, m.key_id);
            return Ok(());
        }
        let window = 10_000;
        if now_ms >= p.unwrap_window_start.saturating_add(window) || now_ms < p.unwrap_window_start
        {
            p.unwrap_window_start = now_ms;
            p.unwraps_in_window = 0;
        }
        if p.unwraps_in_window >= self.config.max_unwraps_per_10s {
            return Err(Rejection::RateLimited);
        }
        p.unwraps_in_window += 1;
        let secret = self
            .identity
            .unwrap_secret(m.wrapped, self.rng.as_mut())
            .ok_or(Rejection::UnwrapFailed)?;
        let secret = SenderSecret(secret);
        let room_id = self.room.room_id();
        let media = MediaKey::derive(m.key_id, &secret, room_id);
        let grace = self.config.old_key_grace_ms;
        let switch = self.config.rekey_switch_ms;
        let p = self.peers.get_mut(&from).expect("peer exists");
        let first = p.recv.is_empty();
        let newer_epoch = p.max_epoch.is_some_and(|e| m.key_id.epoch > e);
        p.recv.insert(
            m.key_id,
            RecvKey {
                secret,
                media,
                window: ReplayWindow::new(),
                retire_at: None,
            },
        );
        p.max_epoch = Some(
            p.max_epoch
                .map_or(m.key_id.epoch, |e| e.max(m.key_id.epoch)),
        );
        // Older generations of the same epoch are superseded now; older epochs once the sender
        // switches (at the latest after its switch timeout).
        for (id, k) in p.recv.iter_mut() {
            let until = if id.epoch == m.key_id.epoch && id.generation < m.key_id.generation {
                Some(now_ms.saturating_add(grace))
            } else if id.epoch < m.key_id.epoch && newer_epoch {
                Some(now_ms.saturating_add(switch).saturating_add(grace))
            } else {
                None
            };
            if let Some(u) = until {
                k.retire_at = Some(k.retire_at.map_or(u, |t| t.min(u)));
            }
        }
        limit_keys(p);
        self.push(Action::KeyInstalled {
            peer: from,
            key: m.key_id,
        });
        if first {
            self.push(Action::PeerChanged { peer: from });
        }
        self.log(HandshakeEventKind::RecvKey, from, Some(m.key_id), now_ms);
        self.send_ack(from, m.key_id);
        Ok(())
    }

    fn send_ack(&mut self, to: PeerId, key_id: KeyId) {
        let Some(me) = self.me else { return };
        let mut ack = KeyAck {
            sender: me,
            recipient: to,
            room_id: self.room.room_id(),
            key_id,
            signature: [0; 64],
        };
        ack.signature = self.identity.sign(&ack.signed_bytes());
        let mut payload = Vec::with_capacity(120);
        ack.encode(&mut payload);
        self.push(Action::SendSignal { to, payload });
    }

    fn handle_ack(
        &mut self,
        me: PeerId,
        from: PeerId,
        ack: KeyAck<'_>,
        _now_ms: u64,
    ) -> Result<(), Rejection> {
        if ack.sender != from {
            return Err(Rejection::BadSender);
        }
        if ack.recipient != me {
            return Err(Rejection::NotForMe);
        }
        if ack.room_id != self.room.room_id() {
            return Err(Rejection::WrongRoom);
        }
        let keys = self
            .peers
            .get(&from)
            .and_then(|p| if p.eligible { p.keys.clone() } else { None })
            .ok_or(Rejection::UnverifiedPeer)?;
        if !keys.verify(&ack.signed_bytes(), &ack.signature) {
            return Err(Rejection::BadSignature);
        }
        if let Some(p) = &mut self.pending
            && ack.key_id.epoch == p.key.id.epoch
            && ack.key_id.generation <= p.key.id.generation
        {
            p.awaiting.remove(&from);
        }
        self.maybe_switch(_now_ms);
        Ok(())
    }

    fn maybe_switch(&mut self, _now_ms: u64) {
        if self.pending.as_ref().is_some_and(|p| p.awaiting.is_empty()) {
            self.switch_epoch();
        }
    }

    /// Starts a new epoch with a fresh random secret, sent to every eligible peer.
    fn start_epoch(&mut self, now_ms: u64) {
        if self.me.is_none() {
            return;
        }
        self.epoch_started_ms = now_ms;
        let Some(next) = self.next_epoch.checked_add(1) else {
            // Epoch ids exhausted (65535 rekeys): keep the current key (documented limit).
            return;
        };
        let epoch = self.next_epoch;
        self.next_epoch = next;
        let mut secret = [0u8; 32];
        self.rng.fill(&mut secret);
        let key = OwnKey::new(
            KeyId::new(epoch, 0),
            SenderSecret(secret),
            self.room.room_id(),
        );
        let id = key.id;
        let peers = self.eligible_peers();
        self.pending = Some(PendingEpoch {
            key,
            deadline_ms: now_ms.saturating_add(self.config.rekey_switch_ms),
            awaiting: peers.iter().copied().collect(),
        });
        self.log(HandshakeEventKind::Rekey, PeerId::NONE, Some(id), now_ms);
        for peer in peers {
            self.send_keys_to(peer, false, now_ms);
        }
        self.maybe_switch(now_ms);
    }

    fn switch_epoch(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let id = p.key.id;
        self.current = p.key;
        for peer in self.peers.values_mut() {
            if peer.sent_pending == Some(id) {
                peer.sent = Some(id);
            }
            peer.sent_pending = None;
        }
        self.push(Action::SenderKeyChanged { key: id });
    }

    // -----------------------------------------------------------------------------------------
    // Test hooks

    /// A short check value of the key `peer` holds under `key` (tests compare it across peers).
    #[cfg(test)]
    pub(crate) fn key_check(&self, peer: PeerId, key: KeyId) -> Option<[u8; 8]> {
        let k = self.peers.get(&peer)?.recv.get(&key)?;
        let h = crate::kdf::sha256(&[b"check", k.secret.as_bytes()]);
        Some(h[..8].try_into().unwrap())
    }

    #[cfg(test)]
    pub(crate) fn own_key_check(&self) -> (KeyId, [u8; 8]) {
        let h = crate::kdf::sha256(&[b"check", self.current.secret.as_bytes()]);
        (self.current.id, h[..8].try_into().unwrap())
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, counter: u64) {
        self.counter = counter;
    }

    /// Steps our sender key forward as if a newcomer had authenticated.
    #[cfg(test)]
    pub(crate) fn test_ratchet(&mut self, now_ms: u64) {
        self.ratchet_own(now_ms);
    }
}

fn retire_older(peer: &mut Peer, newest: KeyId, now_ms: u64, grace: u64) {
    let until = now_ms.saturating_add(grace);
    for (id, k) in peer.recv.iter_mut() {
        if *id < newest && k.retire_at.is_none() {
            k.retire_at = Some(until);
        }
    }
}

fn limit_keys(peer: &mut Peer) {
    while peer.recv.len() > MAX_RECV_KEYS_PER_PEER {
        let oldest = *peer.recv.keys().next().expect("non-empty");
        peer.recv.remove(&oldest);
    }
}

fn truncate_name(name: &mut String) {
    if name.len() > MAX_DISPLAY_NAME {
        let mut end = MAX_DISPLAY_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
}
