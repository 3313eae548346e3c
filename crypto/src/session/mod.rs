//! The E2EE handshake as a sans-IO state machine: feed it relay events, signals and time; drain
//! the actions it wants performed; seal and open media through it.
//!
//! Time is a `u64` of **Unix milliseconds** (wall clock) passed into every call that needs it:
//! announcements carry it and peers check its freshness, so it must be roughly synchronised
//! across peers (NTP). Timers use saturating arithmetic, so a clock step backwards only delays
//! them. The session never reads a clock, spawns a thread or touches a socket.
//!
//! Driving it (the engine):
//! - `Welcome { peer, roster }` → [`Session::on_welcome`]; start sealing a heartbeat every 1 s
//!   (peers treat 10 s without an authenticated datagram from us as our departure).
//! - `PeerJoined` → [`Session::on_peer_joined`]; `PeerLeft` → [`Session::on_peer_left`].
//! - `Signal { from, payload }` → [`Session::on_signal`].
//! - a media body → [`Session::open`]; outgoing media → [`Session::seal`] / [`Session::seal_in_place`].
//! - at [`Session::next_timeout`] (or every ~250 ms) → [`Session::on_tick`].
//! - after each of these, drain [`Session::poll_action`] until `None` and perform the actions;
//!   on [`Action::Fatal`] end the call with its reason.
//!
//! Membership (who receives our keys) is local policy: peers the relay listed, whose
//! announcement was accepted, that are live (an authenticated datagram or announcement within
//! `liveness_timeout_ms`) and not held back after a recent leave of their identity. Exactly
//! those have [`PeerInfo::member`] set and are covered by [`Session::security_code`].
//!
//! The session is a thin combinator over its parts, each with one job and its own timers:
//! - `roster`: who is in the room as we know them (only relay-listed ids), each at a typed
//!   stage and, for members, a standing (recipient, held, silent), and when to re-announce
//!   ourselves for them;
//! - `sender_keys`: our own keys (ratchet on join, new epoch on leave and periodically, acks,
//!   the switch);
//! - `received_keys`: the keys we hold from others, their replay windows, their retirement;
//! - `signals`: building and reading the announcement, key message and ack payloads.
//!
//! It routes each event to the parts, queues the resulting [`Action`]s, and its
//! [`Session::next_timeout`] is the soonest of the parts' own timeouts.

mod attribution;
mod received_keys;
mod roster;
mod sender_keys;
mod signals;

use std::collections::VecDeque;
use std::sync::Arc;

use vcall_proto::e2ee::{
    E2eeSignal, KeyAck, KeyId, KeyMessage, MAX_DISPLAY_NAME, MediaAad, SealedHeader, decode_signal,
};
use vcall_proto::{DatagramKind, PeerId, Recipient};

use crate::identity::{Fingerprint, Identity, SecurityCode};
use crate::link::RoomKeys;
use crate::media::{OpenError, SealError, SenderSecret};
use crate::random::RandomSource;
use crate::sender_auth::{self, AudioBatcher, Trailer};
use attribution::Attribution;
pub use attribution::{AttributedAudio, AttributionStats};
use received_keys::{Novelty, OpenMiss, ReceivedKeys, ReceivedKeysConfig};
use roster::{Accepted, Roster, RosterConfig, Standing};
use sender_keys::{SenderKeys, SenderKeysConfig};
use signals::OwnAnnouncement;

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
    /// RSA decryptions allowed over all peers together: a token bucket of this many, refilled
    /// at this many per 10 s (fake peer ids cannot multiply the per-peer budget).
    pub max_unwraps_global_per_10s: u32,
    /// At most this many peers are listed (Welcome roster and `PeerJoined`); the relay's
    /// further ids are ignored, and their signals dropped as from strangers.
    pub max_peers: usize,
    /// A member from which nothing authenticated (a datagram that opens, or an accepted
    /// announcement) came for this long is treated as gone: we rekey as on a leave and stop
    /// sending it keys ([`Action::PeerSilent`]). Heartbeats come every second.
    pub liveness_timeout_ms: u64,
    /// A member whose identity (fingerprint) received our keys and left less than this long
    /// ago receives our keys again only once this long passed since it left.
    pub readd_interval_ms: u64,
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
            max_unwraps_global_per_10s: 64,
            max_peers: 256,
            liveness_timeout_ms: 10_000,
            readd_interval_ms: 10_000,
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
    /// The other peer; `None` for a broadcast (our announcement) or our own rekey.
    pub peer: Option<PeerId>,
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
    #[error("signal from a peer the relay has not listed (Welcome roster or PeerJoined)")]
    NotInRoster,
}

/// What the session asks the engine to do or tells it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `Signal { to, payload }` on the control stream (`to.to_wire()` is the frame's
    /// `to`: [`Recipient::All`] is everyone else in the room).
    SendSignal { to: Recipient, payload: Vec<u8> },
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
    /// Nothing authenticated came from `peer` for [`SessionConfig::liveness_timeout_ms`]: it
    /// is treated as gone (we rekeyed without it and send it no keys) until a fresh datagram
    /// or announcement of it authenticates. [`PeerInfo::silent`] is set.
    PeerSilent { peer: PeerId },
    /// The session cannot go on securely: end the call with this reason. Sealing fails from
    /// now on and no key is sent to anyone.
    Fatal(Fatal),
}

/// Why a session ended itself (see [`Action::Fatal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error(
        "all 65,535 key epochs of this session are used: it can no longer rekey after a member \
         leaves; rejoin the call (a new session starts from epoch 0)"
    )]
    EpochsExhausted,
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
    /// It receives our keys and is in [`Session::security_code`]: listed by the relay,
    /// authenticated (every announced peer in a room without secret), not silent, not held
    /// back after a recent leave of its identity.
    pub member: bool,
    /// Nothing authenticated came from it for the liveness timeout: treated as gone.
    pub silent: bool,
}

/// One member's E2EE state for one room. See the module docs for how to drive it.
pub struct Session {
    identity: Arc<Identity>,
    room: RoomKeys,
    config: SessionConfig,
    rng: Box<dyn RandomSource>,
    me: Option<PeerId>,
    roster: Roster,
    sender: SenderKeys,
    received: ReceivedKeys,
    announcement: OwnAnnouncement,
    actions: VecDeque<Action>,
    /// Signals dropped because their sender is not in the roster.
    strangers: u64,
    /// Set once the session ended itself (see [`Action::Fatal`]).
    fatal: Option<Fatal>,
    /// Digests of our last audio packets, for the next batch signature.
    audio_batch: AudioBatcher,
    /// Audio waiting for its sender's batch signature, and what batches vouched for.
    attribution: Attribution,
}

/// The sooner of two optional deadlines.
pub(crate) fn soonest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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
        let sender = SenderKeys::new(
            SenderKeysConfig {
                rekey_switch_ms: config.rekey_switch_ms,
                epoch_interval_ms: config.epoch_interval_ms,
                resend_interval_ms: config.reannounce_interval_ms,
                max_ratchet_steps: config.max_ratchet_steps,
            },
            rng.as_mut(),
            room.room_id(),
        );
        let received = ReceivedKeys::new(ReceivedKeysConfig {
            old_key_grace_ms: config.old_key_grace_ms,
            rekey_switch_ms: config.rekey_switch_ms,
            max_ratchet_steps: config.max_ratchet_steps,
            buffered_key_ttl_ms: config.buffered_key_ttl_ms,
            max_unwraps_per_10s: config.max_unwraps_per_10s,
            max_unwraps_global_per_10s: config.max_unwraps_global_per_10s,
        });
        let roster = Roster::new(RosterConfig {
            secret_room: room.has_secret(),
            notice_delay_ms: config.notice_delay_ms,
            reannounce_interval_ms: config.reannounce_interval_ms,
            max_peers: config.max_peers,
            readd_interval_ms: config.readd_interval_ms,
            announce_freshness_ms: config.announce_freshness_ms,
        });
        Self {
            identity,
            room,
            config,
            rng,
            me: None,
            roster,
            sender,
            received,
            announcement: OwnAnnouncement::default(),
            actions: VecDeque::new(),
            strangers: 0,
            fatal: None,
            audio_batch: AudioBatcher::default(),
            attribution: Attribution::default(),
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

    /// Starts over as the same member after the connection to the relay was lost: the same
    /// identity (so the same fingerprint), room keys, settings and randomness; none of the
    /// old connection's peers, keys, counters or epochs. `on_welcome` comes next.
    pub fn renew(&mut self) {
        let identity = Arc::clone(&self.identity);
        let room = self.room.take();
        let config = self.config.clone();
        let rng = std::mem::replace(&mut self.rng, Box::new(crate::random::OsRandom::new()));
        *self = Session::new(identity, room, config, rng);
    }

    /// The key our outgoing media is sealed with now.
    pub fn sender_key_id(&self) -> KeyId {
        self.sender.current_id()
    }

    /// The room security code: over our fingerprint and those of exactly the peers listed by
    /// [`Session::peers`] with `member` set (those we give our keys: listed by the relay and
    /// authenticated; in a room without secret, every listed peer that announced itself).
    /// Identical for every member once all have authenticated each other. Show
    /// [`Session::member_count`] beside it.
    pub fn security_code(&self) -> SecurityCode {
        SecurityCode::of(&self.code_fingerprints())
    }

    /// How many members (distinct fingerprints, ourselves included) the security code covers.
    pub fn member_count(&self) -> usize {
        self.code_fingerprints().len()
    }

    /// Our fingerprint and every member's, sorted ascending, deduplicated.
    fn code_fingerprints(&self) -> Vec<Fingerprint> {
        let mut fps = vec![self.identity.fingerprint()];
        fps.extend(self.roster.recipient_fingerprints());
        fps.sort();
        fps.dedup();
        fps
    }

    /// Signals dropped because their sender is not in the roster (the relay never listed it,
    /// it left, or the roster was full): a relay forwarding a member it hides shows up here.
    pub fn signals_from_strangers(&self) -> u64 {
        self.strangers
    }

    /// Why the session ended itself, if it did (see [`Action::Fatal`]).
    pub fn fatal(&self) -> Option<Fatal> {
        self.fatal
    }

    /// Every peer in the room as we know it, sorted by peer id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.roster.ids().filter_map(|id| self.peer(id)).collect()
    }

    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        let shown = self.roster.shown(id)?;
        Some(PeerInfo {
            peer: id,
            display_name: shown.display_name,
            fingerprint: shown.fingerprint,
            verified: shown.verified,
            key_received: self.received.holds_any(id),
            key_sent: self.sender.key_sent_to(id),
            member: shown.standing == Some(Standing::Recipient),
            silent: shown.standing == Some(Standing::Silent),
        })
    }

    /// Next action to perform, if any. Drain after every call into the session.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::on_tick`] next has work (Unix ms), if ever: the soonest of the
    /// roster's, our sender keys' and the received keys' timers, and of the members' liveness
    /// deadlines.
    pub fn next_timeout(&self) -> Option<u64> {
        if self.fatal.is_some() {
            // The session ended itself: nothing is due any more.
            return None;
        }
        [
            self.roster.poll_timeout(),
            self.sender.poll_timeout(),
            self.received.poll_timeout(),
            self.attribution.poll_timeout(),
            self.liveness_timeout(),
        ]
        .into_iter()
        .fold(None, soonest)
    }

    /// When watched member `peer` (last announced at `announced_ms`) is due to go silent.
    fn silent_at(&self, peer: PeerId, announced_ms: u64) -> u64 {
        let last = self
            .received
            .last_opened(peer)
            .map_or(announced_ms, |t| t.max(announced_ms));
        last.saturating_add(self.config.liveness_timeout_ms)
    }

    /// The soonest liveness deadline of a watched member (once joined).
    fn liveness_timeout(&self) -> Option<u64> {
        self.me?;
        self.roster
            .watched()
            .map(|(peer, announced)| self.silent_at(peer, announced))
            .min()
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// The relay's `Welcome`: our peer id and who is already in the room. Broadcasts our
    /// announcement. Start sealing heartbeats after this.
    pub fn on_welcome(&mut self, me: PeerId, roster: &[PeerId], now_ms: u64) {
        self.me = Some(me);
        self.sender.on_welcome(now_ms);
        for &p in roster {
            if p != me && p != PeerId::NONE && self.roster.list(p) {
                self.push(Action::PeerChanged { peer: p });
            }
        }
        self.announce(now_ms);
        self.log(HandshakeEventKind::SentPubkey, None, None, now_ms);
    }

    /// The relay's `PeerJoined`. We re-announce once its own announcement reaches us (or after
    /// `notice_delay_ms` if it does not).
    pub fn on_peer_joined(&mut self, peer: PeerId, now_ms: u64) {
        if Some(peer) == self.me || peer == PeerId::NONE {
            return;
        }
        if self.roster.on_joined(peer, now_ms) {
            self.push(Action::PeerChanged { peer });
        }
    }

    /// The relay's `PeerLeft`. Forgets the peer and, if it held our key, starts a new epoch.
    pub fn on_peer_left(&mut self, peer: PeerId, now_ms: u64) {
        if !self.roster.remove(peer, now_ms) {
            return;
        }
        for key in self.received.remove_peer(peer) {
            self.actions.push_back(Action::KeyRetired { peer, key });
        }
        self.attribution.remove(peer);
        self.push(Action::PeerChanged { peer });
        if self.sender.on_peer_left(peer) {
            self.start_epoch(now_ms);
        } else {
            self.switch_if_all_acked();
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

    /// Timers: newcomer notices, liveness (silent members), the end of re-add holds, epoch
    /// switch and rotation, key retirement, buffer expiry. Nothing once the session ended
    /// itself ([`Action::Fatal`]).
    pub fn on_tick(&mut self, now_ms: u64) {
        if self.me.is_none() || self.fatal.is_some() {
            return;
        }
        // Newcomers that never announced themselves: one announcement serves every newcomer
        // due now (rate-limited per newcomer).
        let announce_for = self.roster.due_reannouncements(now_ms);
        if !announce_for.is_empty() {
            self.announce(now_ms);
            for id in announce_for {
                self.log(
                    HandshakeEventKind::ReannounceNewPeer,
                    Some(id),
                    None,
                    now_ms,
                );
            }
        }
        self.check_liveness(now_ms);
        self.attribution.expire(now_ms);
        for peer in self.roster.release_held(now_ms) {
            // Its hold after a recent leave is over: a newcomer like any other.
            self.push(Action::PeerChanged { peer });
            self.ratchet_for_newcomer(now_ms);
            self.send_keys_to(peer, true, now_ms);
        }
        if let Some(key) = self.sender.switch_if_due(now_ms) {
            self.push(Action::SenderKeyChanged { key });
        }
        if self.sender.rotation_due(now_ms) {
            self.start_epoch(now_ms);
        }
        let actions = &mut self.actions;
        self.received.on_tick(now_ms, |peer, key| {
            actions.push_back(Action::KeyRetired { peer, key });
            actions.push_back(Action::PeerChanged { peer });
        });
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
        out.reserve(crate::media::SEAL_OVERHEAD + sender_auth::MAX_TRAILER_LEN + plaintext.len());
        out.extend_from_slice(&[0u8; SealedHeader::LEN]);
        out.extend_from_slice(plaintext);
        let r = self.seal_in_place(kind, target, out, start);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Seals in place: `buf[start..start + SealedHeader::LEN]` is reserved (any content), the
    /// plaintext follows to the end of `buf`; our signature trailer (see [`crate::sender_auth`]:
    /// up to [`sender_auth::MAX_TRAILER_LEN`] bytes) and the tag are appended. The video path
    /// encodes a frame after 10 reserved bytes and seals it here without copying.
    pub fn seal_in_place(
        &mut self,
        kind: DatagramKind,
        target: Option<PeerId>,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), SealError> {
        let me = self.me.ok_or(SealError::NotJoined)?;
        if self.fatal.is_some() {
            // The session ended itself (Action::Fatal): nothing more is sealed.
            return Err(SealError::SessionEnded);
        }
        let identity = &self.identity;
        let batch = &mut self.audio_batch;
        let app_start = start + SealedHeader::LEN;
        self.sender.seal_in_place(
            me,
            kind,
            target,
            self.room.room_id(),
            buf,
            start,
            |aad, buf| sender_auth::append_trailer(kind, aad, app_start, buf, identity, batch),
        )
    }

    /// Opens a sealed body from `sender` (the relay-stamped datagram sender) of `kind` with the
    /// datagram's `target`, in place; returns the app plaintext (a sub-slice of `body`, the
    /// signature trailer removed). For video, `body` is the reassembled frame. A body is
    /// returned (and its counter recorded) only once it is attributed to `sender` by its
    /// signature: video, heartbeats and feedback carry their own; an audio packet without one
    /// is held ([`OpenError::AwaitingSignature`]) until a batch signature vouches for it, then
    /// comes out of [`Session::take_attributed`] — drain that after every audio body. A body
    /// under a key we lack makes us re-announce (rate-limited) so the sender sends us its key.
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
        let plain = match self
            .received
            .open(sender, kind, target, room_id, &header, body)
        {
            Ok(plain) => plain,
            Err(OpenMiss::Rejected(e)) => return Err(e),
            Err(OpenMiss::NoKey { lacks_epoch }) => {
                // Not in our roster: the relay has not announced it; nothing to do. Otherwise,
                // lacking its key (or epoch): re-announce at the next tick so it sends it.
                if lacks_epoch {
                    self.roster.notice_soon(sender, now_ms);
                }
                return Err(OpenError::UnknownKey {
                    sender,
                    key: header.key_id,
                });
            }
        };
        let Some(keys) = self.roster.member_keys(sender) else {
            return Err(OpenError::NotAMember { sender });
        };
        let (app, trailer) = sender_auth::split(kind, plain)?;
        let aad = MediaAad::new(&header, sender, kind, target, room_id);
        let digest = sender_auth::content_digest(&aad, app);
        let vouched = match trailer {
            Trailer::Signature(sig) => sender_auth::verify_packet(keys, &digest, sig),
            Trailer::Batch { digests, signature } => {
                let ok = sender_auth::verify_batch(keys, &digest, digests, signature);
                if ok {
                    self.attribution.vouch(sender, digests);
                }
                ok
            }
            Trailer::None => {
                let short = sender_auth::short_digest(&digest);
                if !self.attribution.is_vouched(sender, &short) {
                    self.attribution.hold(
                        sender,
                        header.key_id,
                        header.counter,
                        short,
                        app,
                        now_ms,
                    );
                    return Err(OpenError::AwaitingSignature);
                }
                true
            }
        };
        if !vouched {
            self.attribution.stats.bad_signatures += 1;
            return Err(OpenError::BadSignature);
        }
        self.commit(sender, header.key_id, header.counter, now_ms)?;
        Ok(app)
    }

    /// The next held audio packet that a batch signature has since attributed to its sender
    /// (after [`Session::open`] of an audio body). Its counter is recorded now; a packet whose
    /// counter was recorded meanwhile (a duplicate) is skipped. Give the buffer back with
    /// [`Session::recycle`].
    pub fn take_attributed(&mut self, now_ms: u64) -> Option<AttributedAudio> {
        while let Some(audio) = self.attribution.next_ready() {
            match self.commit(audio.sender, audio.key, audio.counter, now_ms) {
                Ok(()) => return Some(audio),
                Err(_) => self.attribution.recycle(audio.plaintext),
            }
        }
        None
    }

    /// Takes back the buffer of an [`AttributedAudio`] (so holding audio does not allocate).
    pub fn recycle(&mut self, audio: AttributedAudio) {
        self.attribution.recycle(audio.plaintext);
    }

    /// What sender attribution did so far.
    pub fn attribution_stats(&self) -> AttributionStats {
        self.attribution.stats
    }

    /// Records an attributed body: its counter, a stepped-to key, the sender's liveness.
    fn commit(
        &mut self,
        sender: PeerId,
        key: KeyId,
        counter: u64,
        now_ms: u64,
    ) -> Result<(), OpenError> {
        let c = self
            .received
            .commit(sender, key, counter, self.room.room_id(), now_ms)?;
        if let Some(key) = c.installed {
            self.actions
                .push_back(Action::KeyInstalled { peer: sender, key });
        }
        if c.revived {
            self.peer_returned(sender, now_ms);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn log(
        &mut self,
        kind: HandshakeEventKind,
        peer: Option<PeerId>,
        key: Option<KeyId>,
        at_ms: u64,
    ) {
        self.push(Action::Log(HandshakeEvent {
            kind,
            peer,
            key,
            at_ms,
        }));
    }

    /// Broadcasts our announcement (sealed under the room's announce key if any).
    fn announce(&mut self, now_ms: u64) {
        let Some(me) = self.me else { return };
        let payload = self.announcement.build(
            me,
            &self.config.display_name,
            &self.identity,
            &self.room,
            self.rng.as_mut(),
            now_ms,
        );
        self.push(Action::SendSignal {
            to: Recipient::All,
            payload,
        });
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
        // Only peers the relay listed may become members (and so receive keys): a relay that
        // forwards someone's signals without telling us it joined gets nothing for them.
        if !self.roster.contains(from) {
            self.strangers = self.strangers.saturating_add(1);
            return Err(Rejection::NotInRoster);
        }
        match decode_signal(payload).map_err(|_| Rejection::Malformed)? {
            E2eeSignal::Announcement(env) => {
                let a = signals::read_announcement(
                    &self.room,
                    env,
                    from,
                    now_ms,
                    self.config.announce_freshness_ms,
                )?;
                self.handle_announcement(from, a, now_ms)
            }
            E2eeSignal::Key(_) => self.handle_key_message(from, payload, now_ms),
            E2eeSignal::Ack(ack) => self.handle_ack(me, from, ack),
        }
    }

    fn handle_announcement(
        &mut self,
        from: PeerId,
        a: signals::ReadAnnouncement,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        if self.room.has_secret() && !a.authenticated {
            // A clear announcement in a secret room: shown, unverified, never given keys.
            self.roster.claim(from, a.display_name);
            self.push(Action::PeerChanged { peer: from });
            return Err(Rejection::Unauthenticated);
        }
        let accepted = self.roster.accept(from, a, now_ms)?;
        self.log(HandshakeEventKind::RecvPubkey, Some(from), None, now_ms);
        let newly = matches!(accepted, Accepted::NewMember | Accepted::NewHeld);
        match accepted {
            Accepted::NewMember => {
                self.push(Action::PeerChanged { peer: from });
                self.ratchet_for_newcomer(now_ms);
                self.send_keys_to(from, true, now_ms);
            }
            // Its identity left too recently: our keys wait for the hold (on_tick).
            Accepted::NewHeld => self.push(Action::PeerChanged { peer: from }),
            Accepted::Returned => self.peer_returned(from, now_ms),
            Accepted::Again => self.send_keys_to(from, false, now_ms),
        }
        if newly {
            // "Alice notices that Bob is a new peer and sends the RSA pub key message again":
            // due now, performed by the next on_tick (after this signal's actions are sent).
            self.roster.notice_at(from, now_ms);
            for (msg, _) in self.received.take_buffered(from) {
                if let Err(reason) = self.handle_key_message(from, &msg, now_ms) {
                    self.push(Action::Rejected { peer: from, reason });
                }
            }
        }
        Ok(())
    }

    /// Before a newcomer gets our keys: if the current key was given to anyone or sealed
    /// anything, step it one generation (the newcomer must not read what we sent before it
    /// joined); if its generations are exhausted, use a fresh epoch at once instead.
    fn ratchet_for_newcomer(&mut self, now_ms: u64) {
        if !self.sender.needs_join_ratchet() {
            return;
        }
        match self.sender.ratchet(self.room.room_id()) {
            Some(key) => self.sender_key_stepped(key, now_ms),
            None => self.start_epoch_with(now_ms, true),
        }
    }

    /// Our current key stepped (a ratchet): tell the engine and log it.
    fn sender_key_stepped(&mut self, key: KeyId, now_ms: u64) {
        self.push(Action::SenderKeyChanged { key });
        self.log(HandshakeEventKind::Rekey, None, Some(key), now_ms);
    }

    /// A silent member sent something that authenticated (a datagram or an announcement):
    /// it receives our keys again, as a newcomer would (after a ratchet).
    fn peer_returned(&mut self, peer: PeerId, now_ms: u64) {
        self.roster.revive(peer);
        self.received.set_silent(peer, false);
        self.push(Action::PeerChanged { peer });
        self.ratchet_for_newcomer(now_ms);
        self.send_keys_to(peer, true, now_ms);
        // It may have taken us for gone too: our announcement brings us back there.
        self.roster.notice_soon(peer, now_ms);
    }

    /// Liveness: every recipient (or held member) from which nothing authenticated came for
    /// `liveness_timeout_ms` is treated as gone, exactly as on a leave (one new epoch for all
    /// of them, if any held our key) except that its entry and the keys we hold from it stay,
    /// so that its next authenticated datagram or announcement brings it back.
    fn check_liveness(&mut self, now_ms: u64) {
        let silent: Vec<PeerId> = self
            .roster
            .watched()
            .filter(|(peer, announced)| self.silent_at(*peer, *announced) <= now_ms)
            .map(|(peer, _)| peer)
            .collect();
        if silent.is_empty() {
            return;
        }
        let mut held_our_key = false;
        for peer in silent {
            self.roster.set_silent(peer);
            self.received.set_silent(peer, true);
            held_our_key |= self.sender.on_peer_left(peer);
            self.push(Action::PeerSilent { peer });
            self.push(Action::PeerChanged { peer });
        }
        if held_our_key {
            self.start_epoch(now_ms);
        } else {
            self.switch_if_all_acked();
        }
    }

    /// Sends recipient `peer` our current key (and the pending epoch's) unless it already has
    /// them; with `force` or after `reannounce_interval_ms`, sends again anyway. Nothing for a
    /// peer that is not a recipient (not listed, not authenticated, silent or held), nor once
    /// the session ended itself.
    fn send_keys_to(&mut self, peer: PeerId, force: bool, now_ms: u64) {
        let Some(me) = self.me else { return };
        if !self.roster.is_recipient(peer) || self.fatal.is_some() {
            return;
        }
        for id in self
            .sender
            .take_keys_to_send(peer, force, now_ms)
            .into_iter()
            .flatten()
        {
            self.send_key(me, peer, id, now_ms);
        }
    }

    /// Wraps our key `id` (current or pending) to `peer`. The secret is borrowed from the
    /// sender's key table (a field borrow disjoint from the roster's and the generator's), never
    /// copied.
    fn send_key(&mut self, me: PeerId, peer: PeerId, id: KeyId, now_ms: u64) {
        let Some(keys) = self.roster.member_keys(peer) else {
            return;
        };
        let Some(secret) = self.sender.secret(id) else {
            return;
        };
        let payload = signals::key_message(
            me,
            peer,
            keys,
            id,
            secret,
            &self.identity,
            &self.room,
            self.rng.as_mut(),
        );
        self.push(Action::SendSignal {
            to: Recipient::Peer(peer),
            payload,
        });
        self.log(HandshakeEventKind::SentKey, Some(peer), Some(id), now_ms);
    }

    /// A key message from `from` (directly, or buffered until its announcement came).
    fn handle_key_message(
        &mut self,
        from: PeerId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let me = self.me.ok_or(Rejection::NotJoined)?;
        let m = KeyMessage::decode(payload).map_err(|_| Rejection::Malformed)?;
        signals::check_addressing(m.sender, m.recipient, m.room_id, from, me, &self.room)?;
        if !self.roster.contains(from) {
            return Err(Rejection::NotInRoster);
        }
        let Some(keys) = self.roster.member_keys(from) else {
            // Its announcement has not reached us yet: keep the message (bounded) until it does.
            self.received.buffer(from, payload, now_ms);
            return Ok(());
        };
        // Signature before any RSA decryption (RUSTSEC-2023-0071 containment).
        if !keys.verify(&m.signed_bytes(), &m.signature) {
            return Err(Rejection::BadSignature);
        }
        if self.received.novelty(from, m.key_id)? == Novelty::Duplicate {
            // A resend or a replay: nothing to decrypt; re-ack cheaply.
            self.send_ack(me, from, m.key_id);
            return Ok(());
        }
        self.received.charge_unwrap(from, now_ms)?;
        let secret = self
            .identity
            .unwrap_secret(m.wrapped, self.rng.as_mut())
            .ok_or(Rejection::UnwrapFailed)?;
        let first = self.received.install(
            from,
            m.key_id,
            SenderSecret(secret),
            self.room.room_id(),
            now_ms,
        );
        self.push(Action::KeyInstalled {
            peer: from,
            key: m.key_id,
        });
        if first {
            self.push(Action::PeerChanged { peer: from });
        }
        self.log(
            HandshakeEventKind::RecvKey,
            Some(from),
            Some(m.key_id),
            now_ms,
        );
        self.send_ack(me, from, m.key_id);
        Ok(())
    }

    fn send_ack(&mut self, me: PeerId, to: PeerId, key_id: KeyId) {
        let payload = signals::key_ack(me, to, key_id, &self.identity, &self.room);
        self.push(Action::SendSignal {
            to: Recipient::Peer(to),
            payload,
        });
    }

    fn handle_ack(&mut self, me: PeerId, from: PeerId, ack: KeyAck<'_>) -> Result<(), Rejection> {
        signals::check_addressing(ack.sender, ack.recipient, ack.room_id, from, me, &self.room)?;
        let keys = self
            .roster
            .member_keys(from)
            .ok_or(Rejection::UnverifiedPeer)?;
        if !keys.verify(&ack.signed_bytes(), &ack.signature) {
            return Err(Rejection::BadSignature);
        }
        if let Some(key) = self.sender.on_ack(from, ack.key_id) {
            self.push(Action::SenderKeyChanged { key });
        }
        Ok(())
    }

    fn switch_if_all_acked(&mut self) {
        if let Some(key) = self.sender.switch_if_all_acked() {
            self.push(Action::SenderKeyChanged { key });
        }
    }

    /// Starts a new epoch with a fresh random secret, sent to every recipient. When epoch ids
    /// are exhausted the session ends itself ([`Fatal::EpochsExhausted`]) rather than go on
    /// under a key a departed member holds.
    fn start_epoch(&mut self, now_ms: u64) {
        self.start_epoch_with(now_ms, false);
    }

    /// [`Session::start_epoch`]; with `at_once`, the new epoch is used before it is sent, so
    /// that nobody is sent the current key with it (a newcomer must not get a used key).
    fn start_epoch_with(&mut self, now_ms: u64, at_once: bool) {
        if self.me.is_none() || self.fatal.is_some() {
            return;
        }
        let members = self.roster.recipients();
        let Some(id) =
            self.sender
                .start_epoch(&members, self.rng.as_mut(), self.room.room_id(), now_ms)
        else {
            self.fatal = Some(Fatal::EpochsExhausted);
            self.push(Action::Fatal(Fatal::EpochsExhausted));
            return;
        };
        self.log(HandshakeEventKind::Rekey, None, Some(id), now_ms);
        if at_once && let Some(key) = self.sender.switch_now() {
            self.push(Action::SenderKeyChanged { key });
        }
        for peer in members {
            self.send_keys_to(peer, false, now_ms);
        }
        self.switch_if_all_acked();
    }

    // -----------------------------------------------------------------------------------------
    // Test hooks

    /// A short check value of the key `peer` holds under `key` (tests compare it across peers).
    #[cfg(test)]
    pub(crate) fn key_check(&self, peer: PeerId, key: KeyId) -> Option<[u8; 8]> {
        let secret = self.received.secret(peer, key)?;
        let h = crate::kdf::sha256(&[b"check", secret.as_bytes()]);
        h[..8].try_into().ok()
    }

    /// `peer`'s sender secret we hold (what any member could misuse).
    #[cfg(test)]
    pub(crate) fn held_secret(&self, peer: PeerId, key: KeyId) -> Option<&SenderSecret> {
        self.received.secret(peer, key)
    }

    #[cfg(test)]
    pub(crate) fn own_key_check(&self) -> (KeyId, [u8; 8]) {
        let h = crate::kdf::sha256(&[b"check", self.sender.current_secret().as_bytes()]);
        (self.sender.current_id(), h[..8].try_into().unwrap())
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, counter: u64) {
        self.sender.set_counter(counter);
    }

    /// Pretends the current key is at the last generation (its secret unchanged), so the next
    /// ratchet finds the generations exhausted.
    #[cfg(test)]
    pub(crate) fn exhaust_generations(&mut self) {
        self.sender.exhaust_generations(self.room.room_id());
    }

    /// The next new epoch will be `epoch` (to reach the end of the epoch space quickly).
    #[cfg(test)]
    pub(crate) fn set_next_epoch(&mut self, epoch: u16) {
        self.sender.set_next_epoch(epoch);
    }

    /// Steps our sender key forward as if a newcomer had authenticated.
    #[cfg(test)]
    pub(crate) fn test_ratchet(&mut self, now_ms: u64) {
        if let Some(key) = self.sender.ratchet(self.room.room_id()) {
            self.sender_key_stepped(key, now_ms);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::tests::{T0, identity, secret_room};

    fn session() -> Session {
        Session::new(
            identity(0),
            secret_room("unit"),
            SessionConfig::default(),
            Box::new(SeededRandom::new(b"unit")),
        )
    }

    fn drain(s: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    #[test]
    fn soonest_ignores_missing_deadlines() {
        assert_eq!(soonest(None, None), None);
        assert_eq!(soonest(Some(3), None), Some(3));
        assert_eq!(soonest(None, Some(4)), Some(4));
        assert_eq!(soonest(Some(5), Some(4)), Some(4));
    }

    #[test]
    fn the_timeout_is_the_soonest_of_the_parts_and_ticks_route_to_them() {
        let mut s = session();
        assert_eq!(s.next_timeout(), None);
        // Before Welcome a join is noted but ticks do nothing.
        let p = PeerId(5);
        s.on_peer_joined(p, T0);
        assert_eq!(s.next_timeout(), Some(T0 + 500), "the roster's notice");
        s.on_tick(T0 + 500);
        assert_eq!(drain(&mut s), vec![Action::PeerChanged { peer: p }]);
        // Welcome: the announcement is a broadcast; its log line names nobody.
        s.on_welcome(PeerId(1), &[PeerId::NONE, PeerId(1)], T0 + 100);
        let a = drain(&mut s);
        assert!(matches!(
            &a[0],
            Action::SendSignal {
                to: Recipient::All,
                ..
            }
        ));
        assert!(matches!(
            &a[1],
            Action::Log(HandshakeEvent {
                kind: HandshakeEventKind::SentPubkey,
                peer: None,
                key: None,
                ..
            })
        ));
        assert_eq!(a.len(), 2, "neither NONE nor ourselves are listed");
        assert_eq!(s.next_timeout(), Some(T0 + 500));
        s.on_tick(T0 + 500);
        let a = drain(&mut s);
        assert!(matches!(
            &a[0],
            Action::SendSignal {
                to: Recipient::All,
                ..
            }
        ));
        assert!(matches!(&a[1], Action::Log(HandshakeEvent {
            kind: HandshakeEventKind::ReannounceNewPeer, peer: Some(q), ..
        }) if *q == p));
        // Only our sender keys' rotation is left.
        assert_eq!(s.next_timeout(), Some(T0 + 100 + 600_000));
        s.on_tick(T0 + 100 + 600_000);
        let a = drain(&mut s);
        assert!(matches!(&a[0], Action::Log(HandshakeEvent {
            kind: HandshakeEventKind::Rekey, peer: None, key: Some(k), ..
        }) if *k == KeyId::new(1, 0)));
        assert_eq!(
            a[1],
            Action::SenderKeyChanged {
                key: KeyId::new(1, 0)
            },
            "no member to await"
        );
        assert_eq!(s.next_timeout(), Some(T0 + 100 + 1_200_000));
        // A leaver that never held our key changes nothing but the roster.
        s.on_peer_left(p, T0 + 700_000);
        assert_eq!(drain(&mut s), vec![Action::PeerChanged { peer: p }]);
        s.on_peer_left(p, T0 + 700_000);
        assert!(drain(&mut s).is_empty());
    }
}
