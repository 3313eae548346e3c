//! vcall end-to-end encryption: a sans-IO session state machine (see docs/SECURITY.md).
//!
//! - [`identity`]: RSA + Ed25519 session identities, fingerprints, the room security code.
//! - [`link`]: invite links, room secrets and the keys derived from them (room id, announce key).
//! - [`kdf`]: every key derivation and its label.
//! - [`media`]: sender keys, the ratchet, sealing/opening media bodies, the replay window.
//! - [`session`]: the handshake state machine (events in, actions out, time passed in).
//! - [`random`]: injectable randomness.

pub mod identity;
pub mod kdf;
pub mod link;
pub mod media;
pub mod random;
pub mod session;

#[cfg(test)]
mod tests;

pub use identity::{
    DEFAULT_RSA_BITS, Fingerprint, Identity, IdentityError, PeerKeys, SecurityCode,
};
pub use link::{InviteLink, LinkError, RoomKeys, RoomSecret};
pub use media::{MediaKey, OpenError, ReplayWindow, SEAL_OVERHEAD, SealError, SenderSecret};
pub use random::{OsRandom, RandomSource, SeededRandom};
pub use session::{
    Action, HandshakeEvent, HandshakeEventKind, PeerInfo, Rejection, Session, SessionConfig,
};
pub use vcall_proto::e2ee::KeyId;
