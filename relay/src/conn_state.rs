//! One client connection's protocol rules, without I/O (docs/PROTOCOL.md §2, §3, §8).
//!
//! [`ConnState`] applies every per-connection rule: `Hello` first (`NotJoined` otherwise), the
//! version check, admission through [`Rooms`], one room per connection (`AlreadyJoined`), the
//! join deadline (`JoinTimeout`), the control-frame rate limits (`RateLimited`), signal routing
//! (`UnknownPeer`, non-fatal), `Ping`/`Pong`, `Leave`, and `PeerLeft` to the others exactly once,
//! and access control: the `Hello`'s token checked through [`Access`] (`AccessDenied` with its
//! reason), the tenant's seat given back on leave, and a revoked token's member cut.
//!
//! Like [`Rooms`], it is a plain struct with the time passed in, generic over the link type `L`
//! the shell uses to reach a peer. The shell (`connection.rs`) feeds it events (a decoded frame,
//! a decode error, a timeout, the end of the stream or connection), passing the relay's rooms,
//! then performs what it asks for:
//! - [`poll_outgoing`](ConnState::poll_outgoing): frames to queue, to this client or to others.
//!   They must be queued before the rooms passed to the call are released, so that a `Welcome`
//!   precedes every frame about its room;
//! - [`poll_event`](ConnState::poll_event): joined (start forwarding datagrams), left, closed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info};
use vcall_proto::control::RosterEntry;
use vcall_proto::{ControlFrame, DecodeError, DenyReason, ErrorCode, PROTOCOL_VERSION, PeerId};

use crate::access::{Access, Seat};

use crate::config::Limits;
use crate::fanout::FanoutReader;
use crate::metrics::{Metrics, RejectReason};
use crate::rate::TokenBucket;
use crate::rooms::{RoomId, Rooms};

/// Where a connection is in its life (PROTOCOL.md §2: Connected, Joined, Closed).
#[derive(Debug)]
enum Phase<L> {
    /// Handshake done; the client has not opened its control stream yet.
    AwaitingStream { deadline: Instant },
    /// The control stream is open; the next frame must be `Hello`. `link` is how the room will
    /// reach this client once it joins.
    AwaitingHello { deadline: Instant, link: L },
    /// Admitted into `room` as `peer`.
    Joined { room: RoomId, peer: PeerId },
    /// Ended; every further event is ignored.
    Closed,
}

/// A control frame to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing<L> {
    /// To this client.
    ToSelf(ControlFrame),
    /// One copy to each of these other members (never empty; encode once, share the bytes).
    ToPeers { frame: ControlFrame, links: Vec<L> },
}

/// Something the shell acts on besides queueing frames.
#[derive(Debug)]
pub(crate) enum ConnEvent<L> {
    /// This client was admitted: forward its datagrams to the room through `fanout`.
    Joined {
        peer: PeerId,
        room: RoomId,
        fanout: FanoutReader<L>,
        /// How many other members were told `PeerJoined`.
        others: usize,
        /// The tenant seat this member holds, in token mode.
        seat: Option<Seat>,
    },
    /// This client left its room (stop forwarding its datagrams).
    Left {
        peer: PeerId,
        room: RoomId,
        room_closed: bool,
    },
    /// The connection must end this way; always the last event.
    Closed(CloseReason),
}

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client sent `Leave` or finished its control stream: normal close (code 0).
    Left,
    /// The connection is already gone (closed by the client, timed out, or evicted);
    /// `idle_timeout` when QUIC's idle timer ended it.
    Lost { idle_timeout: bool },
    /// The relay is stopping: `GoAway`, and the others are not told `PeerLeft`.
    ShuttingDown,
    /// The client broke a rule: `Error{code}`, then close with `code`.
    Rejected { code: ErrorCode, message: String },
}

impl CloseReason {
    /// A rejection with this code and message.
    pub(crate) fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
        }
    }

    /// The last frame to send the client before closing, if any.
    pub(crate) fn final_frame(&self) -> Option<ControlFrame> {
        match self {
            Self::Left | Self::Lost { .. } => None,
            Self::ShuttingDown => Some(ControlFrame::GoAway {
                code: ErrorCode::ShuttingDown,
                message: SHUTTING_DOWN.into(),
            }),
            Self::Rejected { code, message } => Some(ControlFrame::Error {
                code: *code,
                message: message.clone(),
            }),
        }
    }

    /// The QUIC application close code (0 = normal close, else the error code of §8) and
    /// reason; `None` when the connection is already gone.
    pub(crate) fn quic_close(&self) -> Option<(u16, &str)> {
        match self {
            Self::Left => Some((0, "bye")),
            Self::Lost { .. } => None,
            Self::ShuttingDown => Some((ErrorCode::ShuttingDown.to_u16(), SHUTTING_DOWN)),
            Self::Rejected { code, message } => Some((code.to_u16(), message)),
        }
    }
}

/// The human part of an `AccessDenied` message (after `<reason>: `).
fn deny_detail(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::TokenRequired => "this relay admits only holders of an access token",
        DenyReason::TokenMalformed => "the access token is not a valid token of this relay",
        DenyReason::TokenBadSignature => "the access token was not issued by this relay's operator",
        DenyReason::TokenExpired => "the access token has expired",
        DenyReason::TokenRevoked => "the operator revoked this access token",
        DenyReason::QuotaRooms => "the token's tenant has all its rooms in use on this relay",
        DenyReason::QuotaMembers => "the token's tenant has all its members in this room",
    }
}

/// The message of the relay's `GoAway` and of its shutdown close.
const SHUTTING_DOWN: &str = "relay shutting down";

/// The protocol state of one client connection.
#[derive(Debug)]
pub(crate) struct ConnState<L> {
    phase: Phase<L>,
    frame_budget: TokenBucket,
    byte_budget: TokenBucket,
    outgoing: VecDeque<Outgoing<L>>,
    events: VecDeque<ConnEvent<L>>,
    metrics: Arc<Metrics>,
    access: Arc<Access>,
    /// The tenant seat taken at join (token mode), given back when leaving.
    seat: Option<Seat>,
}

impl<L: Clone> ConnState<L> {
    /// A connection whose QUIC handshake completed at `now`, under `limits`.
    pub(crate) fn new(
        now: Instant,
        limits: &Limits,
        metrics: Arc<Metrics>,
        access: Arc<Access>,
    ) -> Self {
        Self {
            phase: Phase::AwaitingStream {
                deadline: now + limits.join_timeout,
            },
            frame_budget: TokenBucket::per_second(limits.control_frames_per_sec, now),
            byte_budget: TokenBucket::per_second(limits.control_bytes_per_sec, now),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            metrics,
            access,
            seat: None,
        }
    }

    /// The client opened its control stream; `link` reaches it. Ignored unless awaited.
    pub(crate) fn control_stream_opened(&mut self, link: L) {
        if let Phase::AwaitingStream { deadline } = self.phase {
            self.phase = Phase::AwaitingHello { deadline, link };
        }
    }

    /// Applies one decoded control frame, `wire_len` bytes on the stream (length prefix
    /// included), received at `now`.
    pub(crate) fn handle_frame(
        &mut self,
        now: Instant,
        frame: ControlFrame,
        wire_len: usize,
        rooms: &mut Rooms<L>,
    ) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        if !self.frame_budget.try_take(1, now) || !self.byte_budget.try_take(wire_len as u64, now) {
            return self.close(
                CloseReason::rejected(ErrorCode::RateLimited, "too many control frames"),
                rooms,
            );
        }
        self.metrics.control_frame_received();
        match &self.phase {
            Phase::AwaitingStream { .. } => self.close(
                CloseReason::rejected(ErrorCode::Internal, "control frame before the stream"),
                rooms,
            ),
            Phase::AwaitingHello { link, .. } => match frame {
                ControlFrame::Hello {
                    version,
                    room,
                    name,
                    token,
                } => {
                    let link = link.clone();
                    self.join(version, room, name, token, link, rooms);
                }
                _ => self.close(
                    CloseReason::rejected(ErrorCode::NotJoined, "the first frame must be Hello"),
                    rooms,
                ),
            },
            &Phase::Joined { peer, .. } => self.handle_member_frame(peer, frame, rooms),
            Phase::Closed => {}
        }
    }

    /// The control stream held bytes that do not decode: reject with the matching code.
    pub(crate) fn handle_decode_error(&mut self, error: &DecodeError, rooms: &mut Rooms<L>) {
        let code = match error {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::Invalid {
                what: "room id", ..
            } => ErrorCode::BadRoomId,
            _ => ErrorCode::Malformed,
        };
        self.close(CloseReason::rejected(code, error.to_string()), rooms);
    }

    /// Enforces the join deadline at `now` (see [`poll_timeout`](Self::poll_timeout)).
    pub(crate) fn handle_timeout(&mut self, now: Instant, rooms: &mut Rooms<L>) {
        let missing = match self.phase {
            Phase::AwaitingStream { deadline } if now >= deadline => "no control stream in time",
            Phase::AwaitingHello { deadline, .. } if now >= deadline => "no Hello in time",
            _ => return,
        };
        self.close(
            CloseReason::rejected(ErrorCode::JoinTimeout, missing),
            rooms,
        );
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called: the join deadline
    /// until the client has joined, then never.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingStream { deadline } | Phase::AwaitingHello { deadline, .. } => {
                Some(deadline)
            }
            Phase::Joined { .. } | Phase::Closed => None,
        }
    }

    /// Ends the connection: leaves the room (telling the others `PeerLeft`, unless the relay
    /// is shutting down), counts a rejection, and emits [`ConnEvent::Closed`]. Ignored once
    /// closed, so the others are told at most once.
    pub(crate) fn close(&mut self, reason: CloseReason, rooms: &mut Rooms<L>) {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Closed => return,
            Phase::Joined { room, peer } => {
                let tell_others = reason != CloseReason::ShuttingDown;
                self.leave(room, peer, tell_others, rooms);
            }
            Phase::AwaitingStream { .. } | Phase::AwaitingHello { .. } => {}
        }
        let rejection = match &reason {
            CloseReason::Rejected { code, .. } => RejectReason::from_code(*code),
            CloseReason::Lost { idle_timeout: true } => Some(RejectReason::IdleTimeout),
            _ => None,
        };
        if let Some(rejection) = rejection {
            self.metrics.rejected(rejection);
        }
        self.events.push_back(ConnEvent::Closed(reason));
    }

    /// The revocation list changed: a member whose token is now revoked is cut with
    /// `AccessDenied` (`token-revoked`).
    pub(crate) fn handle_revocations(&mut self, rooms: &mut Rooms<L>) {
        let Some(seat) = &self.seat else { return };
        if !self.access.is_revoked(&seat.token_id) {
            return;
        }
        info!(label = %seat.label, reason = %DenyReason::TokenRevoked, "access denied: cutting a member");
        self.metrics.access_denied(DenyReason::TokenRevoked);
        let message = DenyReason::TokenRevoked.message(deny_detail(DenyReason::TokenRevoked));
        self.close(
            CloseReason::rejected(ErrorCode::AccessDenied, message),
            rooms,
        );
    }

    /// True while joined with a token (its connection must watch revocations).
    pub(crate) fn holds_token(&self) -> bool {
        self.seat.is_some()
    }

    /// The next frame to queue, if any (queue it before releasing the rooms).
    pub(crate) fn poll_outgoing(&mut self) -> Option<Outgoing<L>> {
        self.outgoing.pop_front()
    }

    /// The next event to act on, if any.
    pub(crate) fn poll_event(&mut self) -> Option<ConnEvent<L>> {
        self.events.pop_front()
    }

    /// This client's peer id while it is joined.
    pub(crate) fn peer(&self) -> Option<PeerId> {
        match self.phase {
            Phase::Joined { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// True while the client is in a room (its datagrams go to the forwarder).
    pub(crate) fn is_joined(&self) -> bool {
        matches!(self.phase, Phase::Joined { .. })
    }

    /// Handles `Hello`: version check, admission, `Welcome`, `PeerJoined` to the others.
    fn join(
        &mut self,
        version: u8,
        room: RoomId,
        name: Option<String>,
        token: Option<String>,
        link: L,
        rooms: &mut Rooms<L>,
    ) {
        if version != PROTOCOL_VERSION {
            let message = format!(
                "protocol version {version} is not supported; this relay speaks {PROTOCOL_VERSION}"
            );
            return self.close(
                CloseReason::rejected(ErrorCode::UnsupportedVersion, message),
                rooms,
            );
        }
        let seat = match self.access.admit(token.as_deref(), &room) {
            Ok(seat) => seat,
            Err((reason, label)) => {
                info!(label = label.as_deref().unwrap_or("-"), %reason, "access denied");
                self.metrics.access_denied(reason);
                let message = reason.message(deny_detail(reason));
                return self.close(
                    CloseReason::rejected(ErrorCode::AccessDenied, message),
                    rooms,
                );
            }
        };
        let joined = match rooms.join(room.clone(), name.clone(), link) {
            Ok(joined) => joined,
            Err(error) => {
                if let Some(seat) = &seat {
                    self.access.leave(seat);
                }
                return self.close(
                    CloseReason::rejected(error.code(), error.to_string()),
                    rooms,
                );
            }
        };
        let peer = joined.peer;
        self.phase = Phase::Joined {
            room: room.clone(),
            peer,
        };
        self.outgoing
            .push_back(Outgoing::ToSelf(ControlFrame::Welcome {
                peer,
                roster: joined.roster,
            }));
        let others = joined.notify.len();
        self.send_to_peers(
            ControlFrame::PeerJoined(RosterEntry { peer, name }),
            joined.notify,
        );
        self.metrics.joined();
        self.metrics
            .set_occupancy(rooms.room_count(), rooms.peer_count());
        self.seat.clone_from(&seat);
        self.events.push_back(ConnEvent::Joined {
            peer,
            room,
            fanout: joined.fanout,
            others,
            seat,
        });
    }

    /// Applies a frame from a joined client.
    fn handle_member_frame(&mut self, me: PeerId, frame: ControlFrame, rooms: &mut Rooms<L>) {
        match frame {
            ControlFrame::Signal { to, payload, .. } => {
                match rooms.route_signal(me, to, &payload) {
                    Ok(links) => {
                        self.metrics.signal_copies_queued(links.len());
                        let stamped = ControlFrame::Signal {
                            to,
                            from: me,
                            payload,
                        };
                        self.send_to_peers(stamped, links);
                    }
                    Err(error) => {
                        debug!(peer = %me, %error, "signal refused");
                        self.refuse(error.code(), error.to_string());
                    }
                }
            }
            ControlFrame::Ping(value) => {
                self.outgoing
                    .push_back(Outgoing::ToSelf(ControlFrame::Pong(value)));
            }
            ControlFrame::Pong(_) => {}
            ControlFrame::Error { code, message } => {
                debug!(peer = %me, %code, %message, "client reported an error");
            }
            ControlFrame::Hello { .. } => self.close(
                CloseReason::rejected(
                    ErrorCode::AlreadyJoined,
                    "already joined: one room per connection",
                ),
                rooms,
            ),
            ControlFrame::Leave => self.close(CloseReason::Left, rooms),
            ControlFrame::Welcome { .. }
            | ControlFrame::PeerJoined(_)
            | ControlFrame::PeerLeft { .. }
            | ControlFrame::GoAway { .. } => self.close(
                CloseReason::rejected(
                    ErrorCode::Malformed,
                    "relay-to-client frame sent by a client",
                ),
                rooms,
            ),
        }
    }

    /// Sends this client a non-fatal `Error` and counts the refusal.
    fn refuse(&mut self, code: ErrorCode, message: String) {
        if let Some(reason) = RejectReason::from_code(code) {
            self.metrics.rejected(reason);
        }
        self.outgoing
            .push_back(Outgoing::ToSelf(ControlFrame::Error { code, message }));
    }

    /// Queues `frame` for `links`, if there are any.
    fn send_to_peers(&mut self, frame: ControlFrame, links: Vec<L>) {
        if !links.is_empty() {
            self.outgoing.push_back(Outgoing::ToPeers { frame, links });
        }
    }

    /// Removes `peer` from `room`, telling the remaining members when `tell_others`.
    fn leave(&mut self, room: RoomId, peer: PeerId, tell_others: bool, rooms: &mut Rooms<L>) {
        if let Some(seat) = self.seat.take() {
            self.access.leave(&seat);
        }
        let Some(left) = rooms.leave(peer) else {
            return;
        };
        if tell_others {
            self.send_to_peers(ControlFrame::PeerLeft { peer }, left.notify);
        }
        self.metrics.left();
        self.metrics
            .set_occupancy(rooms.room_count(), rooms.peer_count());
        self.events.push_back(ConnEvent::Left {
            peer,
            room,
            room_closed: left.room_closed,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use vcall_proto::ControlDecoder;

    use super::*;

    /// Links are plain labels in these tests.
    type Link = &'static str;

    const ROOM: &str = "room";

    /// A relay's rooms and counters, and the start of time.
    struct Relay {
        limits: Limits,
        rooms: Rooms<Link>,
        metrics: Arc<Metrics>,
        access: Arc<Access>,
        t0: Instant,
    }

    impl Relay {
        fn new() -> Self {
            Self::with(Limits {
                max_rooms: 2,
                max_peers_per_room: 3,
                ..Limits::default()
            })
        }

        fn with(limits: Limits) -> Self {
            Self {
                rooms: Rooms::new(limits.room_limits()),
                limits,
                metrics: Arc::new(Metrics::default()),
                access: Arc::new(Access::open()),
                t0: Instant::now(),
            }
        }

        /// A connection whose handshake completed at `t0`, without a control stream yet.
        fn handshake(&self) -> ConnState<Link> {
            ConnState::new(
                self.t0,
                &self.limits,
                Arc::clone(&self.metrics),
                Arc::clone(&self.access),
            )
        }

        /// A connection that has opened its control stream, reachable as `link`.
        fn open(&self, link: Link) -> ConnState<Link> {
            let mut conn = self.handshake();
            conn.control_stream_opened(link);
            conn
        }

        /// A connection admitted into `room` as `link` (its Welcome and events drained).
        fn join(&mut self, link: Link, room: &'static str) -> (ConnState<Link>, PeerId) {
            let mut conn = self.open(link);
            self.feed(&mut conn, hello(room, Some(link)));
            let peer = conn.peer().expect("admitted");
            drain_outgoing(&mut conn);
            drain_events(&mut conn);
            (conn, peer)
        }

        /// Hands `frame` to `conn` at `t0`, as it arrived on the wire.
        fn feed(&mut self, conn: &mut ConnState<Link>, frame: ControlFrame) {
            self.feed_at(self.t0, conn, frame);
        }

        fn feed_at(&mut self, now: Instant, conn: &mut ConnState<Link>, frame: ControlFrame) {
            let wire_len = frame.to_bytes().len();
            conn.handle_frame(now, frame, wire_len, &mut self.rooms);
        }

        fn rejections(&self, reason: RejectReason) -> u64 {
            self.metrics.rejections(reason)
        }
    }

    fn hello(room: &'static str, name: Option<&str>) -> ControlFrame {
        ControlFrame::Hello {
            version: PROTOCOL_VERSION,
            room: Bytes::from_static(room.as_bytes()),
            name: name.map(str::to_owned),
            token: None,
        }
    }

    fn signal(to: PeerId, payload: &'static [u8]) -> ControlFrame {
        ControlFrame::Signal {
            to,
            from: PeerId::NONE,
            payload: Bytes::from_static(payload),
        }
    }

    fn drain_outgoing(conn: &mut ConnState<Link>) -> Vec<Outgoing<Link>> {
        std::iter::from_fn(|| conn.poll_outgoing()).collect()
    }

    fn drain_events(conn: &mut ConnState<Link>) -> Vec<ConnEvent<Link>> {
        std::iter::from_fn(|| conn.poll_event()).collect()
    }

    /// The reason of the last event, which must be `Closed`.
    fn closed_with(conn: &mut ConnState<Link>) -> CloseReason {
        match drain_events(conn).pop() {
            Some(ConnEvent::Closed(reason)) => reason,
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    fn rejected_code(reason: &CloseReason) -> Option<ErrorCode> {
        match reason {
            CloseReason::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn hello_is_answered_with_welcome_and_announced_to_the_others() {
        let mut relay = Relay::new();
        let mut alice = relay.open("alice");
        assert!(!alice.is_joined());
        relay.feed(&mut alice, hello(ROOM, Some("alice")));
        let alice_id = alice.peer().unwrap();
        assert_eq!(
            drain_outgoing(&mut alice),
            vec![Outgoing::ToSelf(ControlFrame::Welcome {
                peer: alice_id,
                roster: vec![]
            })],
            "alone: nobody to announce to"
        );
        assert!(matches!(
            drain_events(&mut alice).as_slice(),
            [ConnEvent::Joined { peer, others: 0, .. }] if *peer == alice_id
        ));

        let mut bob = relay.open("bob");
        relay.feed(&mut bob, hello(ROOM, None));
        let bob_id = bob.peer().unwrap();
        assert_ne!(bob_id, alice_id);
        assert_eq!(
            drain_outgoing(&mut bob),
            vec![
                Outgoing::ToSelf(ControlFrame::Welcome {
                    peer: bob_id,
                    roster: vec![RosterEntry {
                        peer: alice_id,
                        name: Some("alice".into())
                    }]
                }),
                Outgoing::ToPeers {
                    frame: ControlFrame::PeerJoined(RosterEntry {
                        peer: bob_id,
                        name: None
                    }),
                    links: vec!["alice"]
                },
            ],
            "the Welcome comes first, then the others hear of the newcomer"
        );
        let events = drain_events(&mut bob);
        let [ConnEvent::Joined { room, others, .. }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!((room.as_ref(), *others), (ROOM.as_bytes(), 1));
        assert!(bob.is_joined());
        assert_eq!(relay.metrics.joins(), 2);
        assert_eq!((relay.metrics.rooms(), relay.metrics.peers()), (1, 2));
    }

    #[test]
    fn frames_before_hello_close_with_not_joined() {
        let mut relay = Relay::new();
        let early = [
            signal(PeerId::NONE, b"too early"),
            ControlFrame::Ping(1),
            ControlFrame::Pong(1),
            ControlFrame::Leave,
            ControlFrame::Error {
                code: ErrorCode::Internal,
                message: "x".into(),
            },
            ControlFrame::PeerLeft { peer: PeerId(1) },
        ];
        let count = early.len() as u64;
        for frame in early {
            let mut conn = relay.open("early");
            relay.feed(&mut conn, frame.clone());
            let reason = closed_with(&mut conn);
            assert_eq!(
                reason,
                CloseReason::rejected(ErrorCode::NotJoined, "the first frame must be Hello"),
                "{frame:?}"
            );
            assert!(drain_outgoing(&mut conn).is_empty());
        }
        assert_eq!(relay.rejections(RejectReason::NotJoined), count);
        assert_eq!(relay.rooms.peer_count(), 0);
    }

    #[test]
    fn an_unsupported_version_closes_before_admission() {
        let mut relay = Relay::new();
        let mut conn = relay.open("future");
        let frame = ControlFrame::Hello {
            version: PROTOCOL_VERSION + 1,
            room: Bytes::from_static(b"r"),
            name: None,
            token: None,
        };
        relay.feed(&mut conn, frame);
        let reason = closed_with(&mut conn);
        assert_eq!(rejected_code(&reason), Some(ErrorCode::UnsupportedVersion));
        assert_eq!(
            reason.final_frame(),
            Some(ControlFrame::Error {
                code: ErrorCode::UnsupportedVersion,
                message: format!(
                    "protocol version {} is not supported; this relay speaks {PROTOCOL_VERSION}",
                    PROTOCOL_VERSION + 1
                ),
            })
        );
        assert_eq!(relay.rooms.peer_count(), 0);
        assert_eq!(relay.rejections(RejectReason::UnsupportedVersion), 1);
    }

    #[test]
    fn room_limits_close_with_their_codes() {
        let mut relay = Relay::new();
        for who in ["a1", "a2", "a3"] {
            relay.join(who, "a");
        }
        relay.join("b1", "b");
        let attempts = [
            ("a", ErrorCode::RoomFull, RejectReason::RoomFull),
            ("c", ErrorCode::TooManyRooms, RejectReason::TooManyRooms),
            ("", ErrorCode::BadRoomId, RejectReason::BadRoomId),
        ];
        for (room, code, counted) in attempts {
            let mut conn = relay.open("late");
            relay.feed(&mut conn, hello(room, None));
            assert_eq!(
                rejected_code(&closed_with(&mut conn)),
                Some(code),
                "{room:?}"
            );
            assert!(
                drain_outgoing(&mut conn).is_empty(),
                "no Welcome, nobody told"
            );
            assert!(!conn.is_joined());
            assert_eq!(relay.rejections(counted), 1);
        }
        assert_eq!(relay.rooms.peer_count(), 4, "rejections admit nobody");
    }

    #[test]
    fn a_second_hello_closes_with_already_joined_and_tells_the_others() {
        let mut relay = Relay::new();
        let (_alice, _) = relay.join("alice", ROOM);
        let (mut bob, bob_id) = relay.join("bob", ROOM);
        relay.feed(&mut bob, hello("elsewhere", None));
        assert_eq!(
            drain_outgoing(&mut bob),
            vec![Outgoing::ToPeers {
                frame: ControlFrame::PeerLeft { peer: bob_id },
                links: vec!["alice"]
            }]
        );
        let events = drain_events(&mut bob);
        assert!(
            matches!(
                events.as_slice(),
                [ConnEvent::Left { peer, room_closed: false, .. }, ConnEvent::Closed(CloseReason::Rejected { code: ErrorCode::AlreadyJoined, .. })]
                    if *peer == bob_id
            ),
            "{events:?}"
        );
        assert_eq!(relay.rooms.peer_count(), 1, "bob left its room");
        assert_eq!(relay.rejections(RejectReason::AlreadyJoined), 1);
    }

    #[test]
    fn relay_to_client_frames_from_a_client_are_malformed() {
        let mut relay = Relay::new();
        let frames = [
            ControlFrame::Welcome {
                peer: PeerId(1),
                roster: vec![],
            },
            ControlFrame::PeerJoined(RosterEntry {
                peer: PeerId(1),
                name: None,
            }),
            ControlFrame::PeerLeft { peer: PeerId(1) },
            ControlFrame::GoAway {
                code: ErrorCode::ShuttingDown,
                message: "bye".into(),
            },
        ];
        for frame in frames {
            let (mut conn, _) = relay.join("confused", ROOM);
            relay.feed(&mut conn, frame.clone());
            assert_eq!(
                closed_with(&mut conn),
                CloseReason::rejected(
                    ErrorCode::Malformed,
                    "relay-to-client frame sent by a client"
                ),
                "{frame:?}"
            );
            assert_eq!(relay.rooms.peer_count(), 0);
        }
        assert_eq!(relay.rejections(RejectReason::Malformed), 4);
    }

    #[test]
    fn signals_are_stamped_with_the_sender_and_routed_within_the_room() {
        let mut relay = Relay::new();
        let (mut alice, alice_id) = relay.join("alice", ROOM);
        let (_bob, bob_id) = relay.join("bob", ROOM);
        let (_carol, _) = relay.join("carol", ROOM);
        let (_zed, _) = relay.join("zed", "other");

        relay.feed(&mut alice, signal(PeerId::NONE, b"all"));
        relay.feed(&mut alice, signal(bob_id, b"bob only"));
        assert_eq!(
            drain_outgoing(&mut alice),
            vec![
                Outgoing::ToPeers {
                    frame: ControlFrame::Signal {
                        to: PeerId::NONE,
                        from: alice_id,
                        payload: Bytes::from_static(b"all")
                    },
                    links: vec!["bob", "carol"]
                },
                Outgoing::ToPeers {
                    frame: ControlFrame::Signal {
                        to: bob_id,
                        from: alice_id,
                        payload: Bytes::from_static(b"bob only")
                    },
                    links: vec!["bob"]
                },
            ]
        );
        assert_eq!(relay.metrics.signals_forwarded(), 3);
        assert!(drain_events(&mut alice).is_empty(), "still joined");
    }

    #[test]
    fn unroutable_signals_are_refused_with_unknown_peer_but_not_fatal() {
        let mut relay = Relay::new();
        let (mut alice, alice_id) = relay.join("alice", ROOM);
        let (_zed, zed_id) = relay.join("zed", "other");
        for to in [zed_id, PeerId(4242), alice_id] {
            relay.feed(&mut alice, signal(to, b"?"));
            let out = drain_outgoing(&mut alice);
            assert!(
                matches!(
                    out.as_slice(),
                    [Outgoing::ToSelf(ControlFrame::Error {
                        code: ErrorCode::UnknownPeer,
                        ..
                    })]
                ),
                "{to}: {out:?}"
            );
        }
        assert!(drain_events(&mut alice).is_empty());
        assert!(alice.is_joined(), "refusals keep the connection open");
        assert_eq!(relay.rejections(RejectReason::UnknownPeer), 3);

        // Alone in the room, a broadcast has nobody to reach: nothing queued, no error.
        relay.feed(&mut alice, signal(PeerId::NONE, b"anyone?"));
        assert!(drain_outgoing(&mut alice).is_empty());
    }

    #[test]
    fn ping_is_answered_with_pong_and_pongs_and_client_errors_are_ignored() {
        let mut relay = Relay::new();
        let (mut alice, _) = relay.join("alice", ROOM);
        relay.feed(&mut alice, ControlFrame::Ping(7));
        relay.feed(&mut alice, ControlFrame::Pong(8));
        let report = ControlFrame::Error {
            code: ErrorCode::Other(999),
            message: "client-side trouble".into(),
        };
        relay.feed(&mut alice, report);
        assert_eq!(
            drain_outgoing(&mut alice),
            vec![Outgoing::ToSelf(ControlFrame::Pong(7))]
        );
        assert!(drain_events(&mut alice).is_empty());
        assert!(alice.is_joined());
    }

    #[test]
    fn leave_tells_the_others_once_and_closes_normally() {
        let mut relay = Relay::new();
        let (_alice, _) = relay.join("alice", ROOM);
        let (mut bob, bob_id) = relay.join("bob", ROOM);
        relay.feed(&mut bob, ControlFrame::Leave);
        assert_eq!(
            drain_outgoing(&mut bob),
            vec![Outgoing::ToPeers {
                frame: ControlFrame::PeerLeft { peer: bob_id },
                links: vec!["alice"]
            }]
        );
        let events = drain_events(&mut bob);
        assert!(matches!(
            events.as_slice(),
            [ConnEvent::Left { .. }, ConnEvent::Closed(CloseReason::Left)]
        ));
        assert_eq!(bob.peer(), None);
        assert_eq!((relay.metrics.rooms(), relay.metrics.peers()), (1, 1));

        // Closed is final: later frames, a stream end or a lost connection change nothing.
        relay.feed(&mut bob, ControlFrame::Ping(1));
        bob.close(CloseReason::Left, &mut relay.rooms);
        bob.close(CloseReason::Lost { idle_timeout: true }, &mut relay.rooms);
        assert!(drain_outgoing(&mut bob).is_empty(), "PeerLeft only once");
        assert!(drain_events(&mut bob).is_empty());
        assert_eq!(relay.rejections(RejectReason::IdleTimeout), 0);
    }

    #[test]
    fn the_last_member_leaving_closes_the_room() {
        let mut relay = Relay::new();
        let (mut alice, _) = relay.join("alice", ROOM);
        alice.close(CloseReason::Left, &mut relay.rooms);
        assert!(drain_outgoing(&mut alice).is_empty(), "nobody to tell");
        assert!(matches!(
            drain_events(&mut alice).as_slice(),
            [
                ConnEvent::Left {
                    room_closed: true,
                    ..
                },
                ConnEvent::Closed(CloseReason::Left)
            ]
        ));
        assert_eq!(relay.rooms.room_count(), 0);
    }

    #[test]
    fn the_join_deadline_closes_a_connection_without_stream_or_hello() {
        let relay = Relay::with(Limits {
            join_timeout: Duration::from_secs(10),
            ..Limits::default()
        });
        let mut rooms = Rooms::new(relay.limits.room_limits());
        let deadline = relay.t0 + Duration::from_secs(10);
        let just_before = deadline - Duration::from_millis(1);

        let mut no_stream = relay.handshake();
        assert_eq!(no_stream.poll_timeout(), Some(deadline));
        no_stream.handle_timeout(just_before, &mut rooms);
        assert!(drain_events(&mut no_stream).is_empty(), "not yet");
        no_stream.handle_timeout(deadline, &mut rooms);
        assert_eq!(
            closed_with(&mut no_stream),
            CloseReason::rejected(ErrorCode::JoinTimeout, "no control stream in time")
        );
        assert_eq!(no_stream.poll_timeout(), None);

        // Opening the stream does not extend the deadline.
        let mut silent = relay.open("silent");
        assert_eq!(silent.poll_timeout(), Some(deadline));
        silent.handle_timeout(deadline + Duration::from_secs(1), &mut rooms);
        assert_eq!(
            closed_with(&mut silent),
            CloseReason::rejected(ErrorCode::JoinTimeout, "no Hello in time")
        );
        assert_eq!(relay.rejections(RejectReason::JoinTimeout), 2);

        // Joined in time: no deadline any more.
        let mut prompt = relay.open("prompt");
        let hello = hello(ROOM, None);
        let wire_len = hello.to_bytes().len();
        prompt.handle_frame(just_before, hello, wire_len, &mut rooms);
        assert!(prompt.is_joined());
        assert_eq!(prompt.poll_timeout(), None);
        prompt.handle_timeout(deadline + Duration::from_secs(60), &mut rooms);
        assert!(
            !drain_events(&mut prompt)
                .iter()
                .any(|e| matches!(e, ConnEvent::Closed(_)))
        );
    }

    #[test]
    fn too_many_control_frames_close_with_rate_limited() {
        let mut relay = Relay::with(Limits {
            control_frames_per_sec: 3,
            ..Limits::default()
        });
        let (mut alice, _) = relay.join("alice", ROOM); // the Hello spends one frame
        let t0 = relay.t0;
        relay.feed_at(t0, &mut alice, ControlFrame::Ping(1));
        relay.feed_at(t0, &mut alice, ControlFrame::Ping(2));
        assert_eq!(drain_outgoing(&mut alice).len(), 2);
        // A second later the bucket has refilled.
        let later = t0 + Duration::from_secs(1);
        for nonce in 3..6 {
            relay.feed_at(later, &mut alice, ControlFrame::Ping(nonce));
        }
        assert_eq!(drain_outgoing(&mut alice).len(), 3);
        assert!(drain_events(&mut alice).is_empty());

        relay.feed_at(later, &mut alice, ControlFrame::Ping(6));
        assert_eq!(
            closed_with(&mut alice),
            CloseReason::rejected(ErrorCode::RateLimited, "too many control frames")
        );
        assert!(
            drain_outgoing(&mut alice).is_empty(),
            "the over-limit Ping is not answered"
        );
        assert_eq!(relay.rejections(RejectReason::RateLimited), 1);
        assert_eq!(relay.rooms.peer_count(), 0);
    }

    #[test]
    fn too_many_control_bytes_close_with_rate_limited() {
        let mut relay = Relay::with(Limits {
            control_bytes_per_sec: 100,
            ..Limits::default()
        });
        let mut conn = relay.open("bulky");
        let big = ControlFrame::Hello {
            version: PROTOCOL_VERSION,
            room: Bytes::from_static(b"r"),
            name: None,
            token: None,
        };
        let t0 = relay.t0;
        conn.handle_frame(t0, big, 101, &mut relay.rooms);
        assert_eq!(
            rejected_code(&closed_with(&mut conn)),
            Some(ErrorCode::RateLimited),
            "the frame's wire length counts, before any rule"
        );
        assert_eq!(relay.rooms.peer_count(), 0);
    }

    #[test]
    fn decode_errors_close_with_their_codes() {
        let mut relay = Relay::new();
        let max_frame = 64;
        let cases: [(&[u8], ErrorCode, RejectReason); 3] = [
            // A length prefix over the limit.
            (
                &[0, 0, 1, 0],
                ErrorCode::FrameTooLarge,
                RejectReason::FrameTooLarge,
            ),
            // An unknown frame type.
            (
                &[0, 0, 0, 1, 0x7F],
                ErrorCode::Malformed,
                RejectReason::Malformed,
            ),
            // Hello with an empty room id.
            (
                &[0, 0, 0, 4, 0x01, 1, 0, 0],
                ErrorCode::BadRoomId,
                RejectReason::BadRoomId,
            ),
        ];
        for (bytes, code, counted) in cases {
            let mut decoder = ControlDecoder::new(max_frame);
            decoder.push(bytes);
            let error = decoder.next_frame().expect_err("undecodable");
            let (mut alice, _) = relay.join("alice", ROOM);
            let (mut bob, bob_id) = relay.join("bob", ROOM);
            drain_outgoing(&mut alice);
            bob.handle_decode_error(&error, &mut relay.rooms);
            assert_eq!(
                closed_with(&mut bob),
                CloseReason::rejected(code, error.to_string())
            );
            assert_eq!(
                drain_outgoing(&mut bob),
                vec![Outgoing::ToPeers {
                    frame: ControlFrame::PeerLeft { peer: bob_id },
                    links: vec!["alice"]
                }],
                "a joined offender's room is told"
            );
            assert_eq!(relay.rejections(counted), 1);
            alice.close(CloseReason::Left, &mut relay.rooms);
        }
    }

    #[test]
    fn shutdown_says_go_away_and_does_not_tell_the_others() {
        let mut relay = Relay::new();
        let (_alice, _) = relay.join("alice", ROOM);
        let (mut bob, _) = relay.join("bob", ROOM);
        bob.close(CloseReason::ShuttingDown, &mut relay.rooms);
        assert!(
            drain_outgoing(&mut bob).is_empty(),
            "no PeerLeft while stopping"
        );
        assert!(matches!(
            drain_events(&mut bob).as_slice(),
            [
                ConnEvent::Left { .. },
                ConnEvent::Closed(CloseReason::ShuttingDown)
            ]
        ));
        assert_eq!(relay.metrics.peers(), 1, "occupancy still follows");
    }

    #[test]
    fn a_lost_connection_tells_the_others_and_counts_idle_timeouts() {
        let mut relay = Relay::new();
        let (_alice, _) = relay.join("alice", ROOM);
        let (mut bob, bob_id) = relay.join("bob", ROOM);
        bob.close(CloseReason::Lost { idle_timeout: true }, &mut relay.rooms);
        assert_eq!(
            drain_outgoing(&mut bob),
            vec![Outgoing::ToPeers {
                frame: ControlFrame::PeerLeft { peer: bob_id },
                links: vec!["alice"]
            }]
        );
        assert_eq!(
            closed_with(&mut bob),
            CloseReason::Lost { idle_timeout: true }
        );
        assert_eq!(relay.rejections(RejectReason::IdleTimeout), 1);

        let mut gone = relay.open("gone");
        gone.close(
            CloseReason::Lost {
                idle_timeout: false,
            },
            &mut relay.rooms,
        );
        assert_eq!(
            closed_with(&mut gone),
            CloseReason::Lost {
                idle_timeout: false
            }
        );
        assert_eq!(relay.rejections(RejectReason::IdleTimeout), 1);
    }

    #[test]
    fn a_frame_before_the_control_stream_is_an_internal_error() {
        let mut relay = Relay::new();
        let mut conn = relay.handshake();
        relay.feed(&mut conn, hello(ROOM, None));
        assert_eq!(
            rejected_code(&closed_with(&mut conn)),
            Some(ErrorCode::Internal)
        );
        assert_eq!(relay.rooms.peer_count(), 0);
    }

    #[test]
    fn close_reasons_choose_the_last_frame_and_the_quic_close_code() {
        let rejected = CloseReason::rejected(ErrorCode::RoomFull, "room is full (3 peers)");
        assert_eq!(
            rejected.final_frame(),
            Some(ControlFrame::Error {
                code: ErrorCode::RoomFull,
                message: "room is full (3 peers)".into()
            })
        );
        assert_eq!(rejected.quic_close(), Some((4, "room is full (3 peers)")));

        let shutdown = CloseReason::ShuttingDown;
        assert_eq!(
            shutdown.final_frame(),
            Some(ControlFrame::GoAway {
                code: ErrorCode::ShuttingDown,
                message: "relay shutting down".into()
            })
        );
        assert_eq!(shutdown.quic_close(), Some((11, "relay shutting down")));

        assert_eq!(CloseReason::Left.final_frame(), None);
        assert_eq!(CloseReason::Left.quic_close(), Some((0, "bye")));
        let lost = CloseReason::Lost { idle_timeout: true };
        assert_eq!((lost.final_frame(), lost.quic_close()), (None, None));
    }
}
