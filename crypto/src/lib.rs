//! vcall end-to-end encryption: a sans-IO session state machine (see docs/SECURITY.md).
//!
//! - [`identity`]: RSA + Ed25519 session identities, fingerprints, the room security code.
//! - [`link`]: invite links, room secrets and the keys derived from them (room id, announce key).
//! - [`kdf`]: every key derivation and its label.
//! - [`media`]: sender keys, the ratchet, sealing/opening media bodies, the replay window.
//! - [`sender_auth`]: the signature trailer that attributes each sealed body to its sender.
//! - [`session`]: the handshake state machine (events in, actions out, time passed in).
//! - [`random`]: injectable randomness.
//!
//! How an engine drives it (all times are Unix milliseconds, passed in):
//!
//! ```no_run
//! use std::sync::Arc;
//! use vcall_crypto::{Action, Identity, InviteLink, OsRandom, Session, SessionConfig};
//! use vcall_proto::{DatagramHeader, DatagramKind, PeerId};
//! # fn now() -> u64 { 0 }
//! # fn send_signal(_to: PeerId, _p: Vec<u8>) {}
//! let link = InviteLink::parse("vcall://relay.example:4433/standup#k=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
//! // Both slow: run them on a worker thread before joining.
//! let identity = Arc::new(Identity::generate(2048).unwrap());
//! let room = link.room_keys().unwrap(); // Hello carries room.room_id()
//! let config = SessionConfig { display_name: "Alice".into(), ..Default::default() };
//! let mut s = Session::new(identity, room, config, Box::new(OsRandom::new()));
//! s.on_welcome(PeerId(1), &[PeerId(2)], now()); // Welcome { peer, roster }
//! // ... on PeerJoined / PeerLeft / Signal: s.on_peer_joined / on_peer_left / on_signal.
//! // ... when now() >= s.next_timeout(): s.on_tick(now()).
//! while let Some(action) = s.poll_action() {
//!     match action {
//!         Action::SendSignal { to, payload } => send_signal(to.to_wire(), payload),
//!         _ => { /* update UI state, write the handshake log */ }
//!     }
//! }
//! // Audio / heartbeat / feedback: datagram header, then the sealed body.
//! let mut d = Vec::new();
//! DatagramHeader::new(DatagramKind::Heartbeat, None).append(&mut d);
//! s.seal(DatagramKind::Heartbeat, None, b"heartbeat plaintext", &mut d).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod identity;
pub mod kdf;
pub mod link;
pub mod media;
pub mod random;
pub mod sender_auth;
pub mod session;

#[cfg(test)]
mod tests;

pub use identity::{
    DEFAULT_RSA_BITS, Fingerprint, Identity, IdentityError, PeerKeys, SecurityCode,
};
pub use link::{InviteLink, LinkError, MAX_ACCESS_TOKEN, RoomKeys, RoomSecret, check_access_token};
pub use media::{MediaKey, OpenError, ReplayWindow, SEAL_OVERHEAD, SealError, SenderSecret};
pub use random::{OsRandom, RandomSource, SeededRandom};
pub use session::{
    Action, AttributedAudio, AttributionStats, Fatal, HandshakeEvent, HandshakeEventKind, PeerInfo,
    Rejection, Session, SessionConfig,
};
pub use vcall_proto::e2ee::KeyId;
