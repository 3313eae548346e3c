//! Control frames on the client-opened bidirectional stream: `u32` BE length, then the body.
//!
//! Body = `type: u8` followed by the fields of that type (see docs/PROTOCOL.md §3). Strings are
//! UTF-8 with a length prefix; `Signal` payloads are opaque to the relay (end-to-end messages).

use bytes::{Bytes, BytesMut};

use crate::wire::{Reader, put_long_bytes, put_short_bytes};
use crate::{DecodeError, PeerId};

/// Default and recommended maximum control frame body length.
pub const DEFAULT_MAX_CONTROL_FRAME: usize = 65_536;
/// Maximum room id length in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Maximum display name length in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 64;
/// Maximum error/GoAway message length in bytes (UTF-8).
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Maximum number of roster entries in a Welcome.
pub const MAX_ROSTER: usize = 1024;
/// Maximum access token length in bytes (ASCII).
pub const MAX_TOKEN_LEN: usize = 1024;

const T_HELLO: u8 = 0x01;
const T_WELCOME: u8 = 0x02;
const T_ERROR: u8 = 0x03;
const T_PEER_JOINED: u8 = 0x04;
const T_PEER_LEFT: u8 = 0x05;
const T_SIGNAL: u8 = 0x06;
const T_PING: u8 = 0x07;
const T_PONG: u8 = 0x08;
const T_GO_AWAY: u8 = 0x09;
const T_LEAVE: u8 = 0x0A;

/// Why the relay refused or ended something; also the QUIC application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnsupportedVersion,
    Malformed,
    FrameTooLarge,
    RoomFull,
    TooManyRooms,
    JoinTimeout,
    NotJoined,
    UnknownPeer,
    RateLimited,
    SlowConsumer,
    ShuttingDown,
    Internal,
    AlreadyJoined,
    BadRoomId,
    IdleTimeout,
    /// The relay's access control refused this client; the message starts with the reason
    /// ([`crate::access::DenyReason`]).
    AccessDenied,
    /// A code this implementation does not know (kept, not rejected, for forward compatibility).
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::UnsupportedVersion => 1,
            Self::Malformed => 2,
            Self::FrameTooLarge => 3,
            Self::RoomFull => 4,
            Self::TooManyRooms => 5,
            Self::JoinTimeout => 6,
            Self::NotJoined => 7,
            Self::UnknownPeer => 8,
            Self::RateLimited => 9,
            Self::SlowConsumer => 10,
            Self::ShuttingDown => 11,
            Self::Internal => 12,
            Self::AlreadyJoined => 13,
            Self::BadRoomId => 14,
            Self::IdleTimeout => 15,
            Self::AccessDenied => 16,
            Self::Other(v) => v,
        }
    }

    /// Parses a wire value (never fails: unknown values become `Other`).
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::UnsupportedVersion,
            2 => Self::Malformed,
            3 => Self::FrameTooLarge,
            4 => Self::RoomFull,
            5 => Self::TooManyRooms,
            6 => Self::JoinTimeout,
            7 => Self::NotJoined,
            8 => Self::UnknownPeer,
            9 => Self::RateLimited,
            10 => Self::SlowConsumer,
            11 => Self::ShuttingDown,
            12 => Self::Internal,
            13 => Self::AlreadyJoined,
            14 => Self::BadRoomId,
            15 => Self::IdleTimeout,
            16 => Self::AccessDenied,
            v => Self::Other(v),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::Malformed => "malformed frame",
            Self::FrameTooLarge => "frame too large",
            Self::RoomFull => "room full",
            Self::TooManyRooms => "too many rooms",
            Self::JoinTimeout => "join timeout",
            Self::NotJoined => "not joined",
            Self::UnknownPeer => "unknown peer",
            Self::RateLimited => "rate limited",
            Self::SlowConsumer => "slow consumer",
            Self::ShuttingDown => "relay shutting down",
            Self::Internal => "internal relay error",
            Self::AlreadyJoined => "already joined",
            Self::BadRoomId => "bad room id",
            Self::IdleTimeout => "idle timeout",
            Self::AccessDenied => "access denied",
            Self::Other(v) => return write!(f, "error code {v}"),
        };
        f.write_str(s)
    }
}

/// Whom a client's `Signal` is for: the typed meaning of [`ControlFrame::Signal`]'s `to`.
///
/// On the wire `to` is a [`PeerId`] and the reserved [`PeerId::NONE`] means "everyone else in
/// the room"; this type names that case instead of overloading the sentinel. It changes no
/// byte: convert at the codec boundary with [`Recipient::to_wire`] / [`Recipient::from_wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// Every other member of the room (the relay fans the signal out).
    All,
    /// One peer. `Peer(PeerId::NONE)` is never produced by [`Recipient::from_wire`] and is
    /// sent as [`Recipient::All`].
    Peer(PeerId),
}

impl Recipient {
    /// The `to` field of a `Signal`: `All` is [`PeerId::NONE`].
    pub fn to_wire(self) -> PeerId {
        match self {
            Self::All => PeerId::NONE,
            Self::Peer(peer) => peer,
        }
    }

    /// Reads a `Signal`'s `to` field: [`PeerId::NONE`] is `All`, any other id that peer.
    pub fn from_wire(to: PeerId) -> Self {
        if to == PeerId::NONE {
            Self::All
        } else {
            Self::Peer(to)
        }
    }
}

/// One member of a room as the relay knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub peer: PeerId,
    /// The clear display name from that peer's Hello, if it gave one.
    pub name: Option<String>,
}

/// A control-stream frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    /// Client → relay, first frame: join `room` (opaque bytes, 1..=64), presenting the relay
    /// operator's access `token` if the client has one (printable ASCII, 1..=1024 bytes).
    Hello {
        version: u8,
        room: Bytes,
        name: Option<String>,
        token: Option<String>,
    },
    /// Relay → client: joined; your peer id and who else is in the room.
    Welcome {
        peer: PeerId,
        roster: Vec<RosterEntry>,
    },
    /// Either direction: something was refused. Fatal when sent before Welcome.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Relay → client: a peer entered the room.
    PeerJoined(RosterEntry),
    /// Relay → client: a peer left the room.
    PeerLeft {
        peer: PeerId,
    },
    /// An opaque end-to-end message. Client → relay: `to` = one peer or `PeerId::NONE` for
    /// everyone else in the room (see [`Recipient`]), `from` = NONE. Relay → client: `from` =
    /// the true sender.
    Signal {
        to: PeerId,
        from: PeerId,
        payload: Bytes,
    },
    /// Either direction: liveness probe; answered with `Pong` carrying the same value.
    Ping(u64),
    Pong(u64),
    /// Relay → client: the relay is going away (shutdown); reconnect later or elsewhere.
    GoAway {
        code: ErrorCode,
        message: String,
    },
    /// Client → relay: leaving the room; the relay closes the connection.
    Leave,
}

impl ControlFrame {
    /// Appends the length prefix and body to `out`.
    ///
    /// Strings longer than the protocol limits are truncated at a UTF-8 boundary; payloads
    /// are the caller's responsibility (the decoder on the other side enforces its limit).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Self::Hello {
                version,
                room,
                name,
                token,
            } => {
                out.push(T_HELLO);
                out.push(*version);
                put_short_bytes(out, &room[..room.len().min(MAX_ROOM_ID_LEN)]);
                put_opt_name(out, name.as_deref());
                let token = token.as_deref().unwrap_or("");
                // A token is never truncated (a cut token is just invalid): too long is empty.
                let token = if token.len() <= MAX_TOKEN_LEN {
                    token
                } else {
                    ""
                };
                put_long_bytes(out, token.as_bytes());
            }
            Self::Welcome { peer, roster } => {
                out.push(T_WELCOME);
                out.extend_from_slice(&peer.0.to_be_bytes());
                let n = roster.len().min(MAX_ROSTER);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for e in &roster[..n] {
                    put_entry(out, e);
                }
            }
            Self::Error { code, message } => {
                out.push(T_ERROR);
                put_code_message(out, *code, message);
            }
            Self::PeerJoined(e) => {
                out.push(T_PEER_JOINED);
                put_entry(out, e);
            }
            Self::PeerLeft { peer } => {
                out.push(T_PEER_LEFT);
                out.extend_from_slice(&peer.0.to_be_bytes());
            }
            Self::Signal { to, from, payload } => {
                out.push(T_SIGNAL);
                out.extend_from_slice(&to.0.to_be_bytes());
                out.extend_from_slice(&from.0.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Self::Ping(v) => {
                out.push(T_PING);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Self::Pong(v) => {
                out.push(T_PONG);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Self::GoAway { code, message } => {
                out.push(T_GO_AWAY);
                put_code_message(out, *code, message);
            }
            Self::Leave => out.push(T_LEAVE),
        }
        let body_len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&body_len.to_be_bytes());
    }

    /// The encoded frame (length prefix included) as shareable bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }

    /// Decodes one frame body (without its length prefix). `Signal` payloads borrow `body`.
    pub fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(&body);
        let frame = match r.u8()? {
            T_HELLO => {
                let version = r.u8()?;
                let room = r.short_bytes()?;
                if room.is_empty() || room.len() > MAX_ROOM_ID_LEN {
                    return Err(DecodeError::Invalid {
                        what: "room id",
                        why: "must be 1 to 64 bytes",
                    });
                }
                let room = body.slice_ref(room);
                let name = get_opt_name(&mut r)?;
                // Versions before 5 end here; the relay answers them `UnsupportedVersion`.
                let token = if r.remaining() == 0 {
                    None
                } else {
                    get_token(&mut r)?
                };
                Self::Hello {
                    version,
                    room,
                    name,
                    token,
                }
            }
            T_WELCOME => {
                let peer = get_peer(&mut r, "welcome peer id")?;
                let n = r.u16()? as usize;
                if n > MAX_ROSTER {
                    return Err(DecodeError::TooLarge {
                        len: n,
                        max: MAX_ROSTER,
                    });
                }
                let mut roster = Vec::with_capacity(n.min(r.remaining() / 5));
                for _ in 0..n {
                    roster.push(get_entry(&mut r)?);
                }
                Self::Welcome { peer, roster }
            }
            T_ERROR => {
                let (code, message) = get_code_message(&mut r)?;
                Self::Error { code, message }
            }
            T_PEER_JOINED => Self::PeerJoined(get_entry(&mut r)?),
            T_PEER_LEFT => Self::PeerLeft {
                peer: get_peer(&mut r, "peer id")?,
            },
            T_SIGNAL => {
                let to = PeerId(r.u32()?);
                let from = PeerId(r.u32()?);
                let payload = body.slice_ref(r.rest());
                Self::Signal { to, from, payload }
            }
            T_PING => Self::Ping(r.u64()?),
            T_PONG => Self::Pong(r.u64()?),
            T_GO_AWAY => {
                let (code, message) = get_code_message(&mut r)?;
                Self::GoAway { code, message }
            }
            T_LEAVE => Self::Leave,
            value => {
                return Err(DecodeError::UnknownKind {
                    what: "control frame type",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(frame)
    }
}

fn put_opt_name(out: &mut Vec<u8>, name: Option<&str>) {
    match name {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            put_short_bytes(out, truncate_utf8(n, MAX_NAME_LEN).as_bytes());
        }
    }
}

fn get_opt_name(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let name = r.short_str("display name")?;
            if name.len() > MAX_NAME_LEN {
                return Err(DecodeError::TooLarge {
                    len: name.len(),
                    max: MAX_NAME_LEN,
                });
            }
            Ok(Some(name.to_owned()))
        }
        _ => Err(DecodeError::Invalid {
            what: "name presence flag",
            why: "must be 0 or 1",
        }),
    }
}

fn get_token(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    let token = r.long_str("access token")?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(DecodeError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DecodeError::Invalid {
            what: "access token",
            why: "must be printable ASCII",
        });
    }
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

fn put_entry(out: &mut Vec<u8>, e: &RosterEntry) {
    out.extend_from_slice(&e.peer.0.to_be_bytes());
    put_opt_name(out, e.name.as_deref());
}

fn get_entry(r: &mut Reader<'_>) -> Result<RosterEntry, DecodeError> {
    let peer = get_peer(r, "roster peer id")?;
    let name = get_opt_name(r)?;
    Ok(RosterEntry { peer, name })
}

fn get_peer(r: &mut Reader<'_>, what: &'static str) -> Result<PeerId, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::Invalid {
            what,
            why: "peer id 0 is reserved",
        }),
        v => Ok(PeerId(v)),
    }
}

fn put_code_message(out: &mut Vec<u8>, code: ErrorCode, message: &str) {
    out.extend_from_slice(&code.to_u16().to_be_bytes());
    put_long_bytes(out, truncate_utf8(message, MAX_MESSAGE_LEN).as_bytes());
}

fn get_code_message(r: &mut Reader<'_>) -> Result<(ErrorCode, String), DecodeError> {
    let code = ErrorCode::from_u16(r.u16()?);
    let message = r.long_str("message")?;
    if message.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge {
            len: message.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    Ok((code, message.to_owned()))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary (how
/// encoders shorten names and messages).
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Incremental decoder of the control stream: push received bytes, pull whole frames.
///
/// After it returns an error the stream is unusable (the peer must be disconnected).
#[derive(Debug)]
pub struct ControlDecoder {
    buf: BytesMut,
    max_frame_len: usize,
}

impl ControlDecoder {
    /// A decoder that rejects frames whose body exceeds `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<ControlFrame>, DecodeError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_frame_len {
            return Err(DecodeError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if len == 0 {
            return Err(DecodeError::Invalid {
                what: "control frame",
                why: "empty body",
            });
        }
        if self.buf.len() < 4 + len {
            self.buf.reserve(4 + len - self.buf.len());
            return Ok(None);
        }
        let _ = self.buf.split_to(4);
        let body = self.buf.split_to(len).freeze();
        ControlFrame::decode(body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_round_trips_through_the_wire_id() {
        assert_eq!(Recipient::All.to_wire(), PeerId::NONE);
        assert_eq!(Recipient::from_wire(PeerId::NONE), Recipient::All);
        for id in [1, 2, 7, u32::MAX] {
            let r = Recipient::Peer(PeerId(id));
            assert_eq!(r.to_wire(), PeerId(id));
            assert_eq!(Recipient::from_wire(r.to_wire()), r);
        }
        // The sentinel as a "peer" is sent as everyone, as the wire has always meant.
        assert_eq!(
            Recipient::from_wire(Recipient::Peer(PeerId::NONE).to_wire()),
            Recipient::All
        );
    }

    fn samples() -> Vec<ControlFrame> {
        vec![
            ControlFrame::Hello {
                version: 5,
                room: Bytes::from_static(b"room-1"),
                name: Some("Alice".into()),
                token: None,
            },
            ControlFrame::Hello {
                version: 5,
                room: Bytes::from(vec![0xAB; 32]),
                name: None,
                token: Some("v4.public.eyJhIjoxfQ-sig_".into()),
            },
            ControlFrame::Welcome {
                peer: PeerId(7),
                roster: vec![
                    RosterEntry {
                        peer: PeerId(3),
                        name: Some("Bob".into()),
                    },
                    RosterEntry {
                        peer: PeerId(5),
                        name: None,
                    },
                ],
            },
            ControlFrame::Welcome {
                peer: PeerId(1),
                roster: vec![],
            },
            ControlFrame::Error {
                code: ErrorCode::RoomFull,
                message: "room is full (8 peers)".into(),
            },
            ControlFrame::PeerJoined(RosterEntry {
                peer: PeerId(9),
                name: Some("Zoë".into()),
            }),
            ControlFrame::PeerLeft { peer: PeerId(9) },
            ControlFrame::Signal {
                to: PeerId::NONE,
                from: PeerId(4),
                payload: Bytes::from_static(b"\x01opaque"),
            },
            ControlFrame::Signal {
                to: PeerId(2),
                from: PeerId::NONE,
                payload: Bytes::new(),
            },
            ControlFrame::Ping(42),
            ControlFrame::Pong(u64::MAX),
            ControlFrame::GoAway {
                code: ErrorCode::ShuttingDown,
                message: "restarting".into(),
            },
            ControlFrame::Error {
                code: ErrorCode::Other(999),
                message: String::new(),
            },
            ControlFrame::Leave,
        ]
    }

    #[test]
    fn every_frame_round_trips_through_the_stream_decoder() {
        let mut stream = Vec::new();
        for f in samples() {
            f.encode(&mut stream);
        }
        let mut dec = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
        let mut got = Vec::new();
        // Feed one byte at a time: frames must come out whole and in order.
        for b in &stream {
            dec.push(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, samples());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn exact_bytes_of_a_hello() {
        let f = ControlFrame::Hello {
            version: 5,
            room: Bytes::from_static(b"ab"),
            name: Some("Al".into()),
            token: Some("t1".into()),
        };
        assert_eq!(
            f.to_bytes().as_ref(),
            &[
                0, 0, 0, 13, 0x01, 5, 2, b'a', b'b', 1, 2, b'A', b'l', 0, 2, b't', b'1'
            ]
        );
        let without = ControlFrame::Hello {
            version: 5,
            room: Bytes::from_static(b"ab"),
            name: None,
            token: None,
        };
        assert_eq!(
            without.to_bytes().as_ref(),
            &[0, 0, 0, 8, 0x01, 5, 2, b'a', b'b', 0, 0, 0]
        );
    }

    #[test]
    fn a_hello_of_an_older_version_without_a_token_field_still_decodes() {
        // So that the relay can answer it `UnsupportedVersion` instead of `Malformed`.
        let f = ControlFrame::decode(Bytes::from_static(&[0x01, 4, 1, b'a', 0])).unwrap();
        assert_eq!(
            f,
            ControlFrame::Hello {
                version: 4,
                room: Bytes::from_static(b"a"),
                name: None,
                token: None,
            }
        );
    }

    #[test]
    fn a_token_is_never_truncated_and_must_be_printable_ascii() {
        let long = ControlFrame::Hello {
            version: 5,
            room: Bytes::from_static(b"a"),
            name: None,
            token: Some("x".repeat(MAX_TOKEN_LEN + 1)),
        };
        let ControlFrame::Hello { token, .. } =
            ControlFrame::decode(long.to_bytes().slice(4..)).unwrap()
        else {
            panic!("wrong frame")
        };
        assert_eq!(token, None, "an overlong token is sent as none, not cut");
        for bad in [&b"t k"[..], b"t\nk", &[0xc3, 0xa9]] {
            let mut body = vec![0x01, 5, 1, b'a', 0, 0, bad.len() as u8];
            body.extend_from_slice(bad);
            assert!(ControlFrame::decode(Bytes::from(body)).is_err());
        }
    }

    #[test]
    fn oversized_length_prefix_is_rejected_before_buffering() {
        let mut dec = ControlDecoder::new(1000);
        dec.push(&1001u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(DecodeError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn malformed_bodies_get_typed_errors() {
        let bad: &[(&[u8], &str)] = &[
            (&[0x7F], "unknown type"),
            (&[T_HELLO, 1, 0, 0], "empty room"),
            (&[T_HELLO, 1, 2, b'a'], "truncated room"),
            (&[T_HELLO, 1, 1, b'a', 2], "bad name flag"),
            (&[T_HELLO, 1, 1, b'a', 1, 2, 0xff, 0xfe], "non-UTF-8 name"),
            (&[T_HELLO, 5, 1, b'a', 0, 0], "truncated token length"),
            (&[T_HELLO, 5, 1, b'a', 0, 0, 3, b'a'], "truncated token"),
            (&[T_WELCOME, 0, 0, 0, 0, 0, 0], "peer id 0"),
            (&[T_WELCOME, 0, 0, 0, 1, 0, 5], "roster shorter than count"),
            (&[T_PEER_LEFT, 0, 0, 1], "truncated peer"),
            (&[T_PING, 0, 0, 0, 0, 0, 0, 0, 1, 9], "trailing bytes"),
            (&[T_SIGNAL, 0, 0, 0], "truncated signal"),
            (&[T_LEAVE, 0], "trailing after leave"),
        ];
        for (body, why) in bad {
            assert!(
                ControlFrame::decode(Bytes::copy_from_slice(body)).is_err(),
                "{why} must be rejected"
            );
        }
        let mut dec = ControlDecoder::new(100);
        dec.push(&[0, 0, 0, 0]);
        assert!(dec.next_frame().is_err(), "empty frame must be rejected");
    }

    #[test]
    fn error_codes_round_trip_including_unknown() {
        for v in 0..=40u16 {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
    }

    #[test]
    fn overlong_names_are_truncated_at_a_char_boundary() {
        let long = "é".repeat(40); // 80 bytes
        let f = ControlFrame::PeerJoined(RosterEntry {
            peer: PeerId(1),
            name: Some(long),
        });
        let mut dec = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
        dec.push(&f.to_bytes());
        let ControlFrame::PeerJoined(e) = dec.next_frame().unwrap().unwrap() else {
            panic!("wrong frame")
        };
        assert_eq!(e.name.unwrap(), "é".repeat(32));
    }
}
