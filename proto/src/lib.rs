//! vcall wire format: every byte that crosses the network, as pure codecs (no I/O).
//!
//! - [`access`]: why a relay refuses access (`AccessDenied` reasons and their advice).
//! - [`control`]: length-prefixed control frames on the client-opened bidirectional stream.
//! - [`datagram`]: the clear datagram header the relay reads and stamps.
//! - [`fragment`]: splitting sealed video frames into datagrams and reassembling them.
//! - [`media`]: the plaintexts carried inside end-to-end encryption (video, audio, heartbeat, feedback).
//! - [`e2ee`]: the end-to-end encryption messages (announcements, key messages, sealed-packet header, AAD).
//!
//! Every decoder is total: malformed input yields a [`DecodeError`], never a panic.
//! `docs/PROTOCOL.md` specifies the same bytes for third-party implementers.

#![forbid(unsafe_code)]

pub mod access;
pub mod control;
pub mod datagram;
pub mod e2ee;
pub mod error;
pub mod fragment;
pub mod media;
pub mod repair;
mod wire;

pub use access::DenyReason;
pub use control::{ControlDecoder, ControlFrame, ErrorCode, Recipient};
pub use datagram::{DatagramHeader, DatagramKind};
pub use error::DecodeError;
pub use fragment::{FragmentHeader, Reassembler};

/// QUIC ALPN protocol identifier of this protocol version.
pub const ALPN: &[u8] = b"vcall/1";

/// Protocol version carried in `Hello` and in every datagram header.
pub const PROTOCOL_VERSION: u8 = 5;

/// Largest datagram any vcall endpoint sends or forwards, header included.
///
/// Chosen below what every QUIC path guarantees (a 1200-byte UDP packet leaves about 1150
/// bytes for datagram data in quinn), because a sender cannot know the MTU of the relay's
/// paths to each receiver.
pub const MAX_DATAGRAM_SIZE: usize = 1100;

/// A peer's identity within one relay, assigned by the relay at join. `0` is never assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub u32);

impl PeerId {
    /// The reserved id: "nobody" in a datagram sender field sent by a client, "everyone" as a
    /// Signal target (typed as [`Recipient::All`]). Above the codecs, prefer
    /// `Option<PeerId>` for "nobody" and [`Recipient`] for a Signal target.
    pub const NONE: PeerId = PeerId(0);
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
