//! One client connection's protocol rules, without I/O (docs/PROTOCOL.md §2, §3, §8).
//!
//! [`ConnState`] applies every per-connection rule: `Hello` first (`NotJoined` otherwise), the
//! version check, admission through [`Rooms`], one room per connection (`AlreadyJoined`), the
//! join deadline (`JoinTimeout`), the control-frame rate limits (`RateLimited`), signal routing
//! (`UnknownPeer`, non-fatal), `Ping`/`Pong`, `Leave`, and `PeerLeft` to the others exactly once.
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

use tracing::debug;
use vcall_proto::control::RosterEntry;
use vcall_proto::{ControlFrame, DecodeError, ErrorCode, PROTOCOL_VERSION, PeerId};

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
}

impl<L: Clone> ConnState<L> {
    /// A connection whose QUIC handshake completed at `now`, under `limits`.
    pub(crate) fn new(now: Instant, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            phase: Phase::AwaitingStream {
                deadline: now + limits.join_timeout,
            },
            frame_budget: TokenBucket::per_second(limits.control_frames_per_sec, now),
            byte_budget: TokenBucket::per_second(limits.control_bytes_per_sec, now),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            metrics,
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
                } => {
                    let link = link.clone();
                    self.join(version, room, name, link, rooms);
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
        let joined = match rooms.join(room.clone(), name.clone(), link) {
            Ok(joined) => joined,
            Err(error) => {
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
        self.events.push_back(ConnEvent::Joined {
            peer,
            room,
            fanout: joined.fanout,
            others,
        });
    }

    /// Applies a frame from a joined client.
    fn handle_member_frame(&mut self, me: PeerId, frame: ControlFrame, rooms: &mut Rooms<L>) {
        match frame {
            ControlFrame::Signal { to, payload, .. } => match rooms.signal_recipients(me, to) {
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
            },
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
