//! The call engine: joins a call from an invite link and runs media, E2EE and the network.
//!
//! Shape (see docs/ARCHITECTURE.md): a tokio network task drives the vcall-crypto session and
//! the QUIC connection; video and audio codecs run on their own threads; the UI (or the bot)
//! talks to it only through a [`CallHandle`]: commands in, a state snapshot and the latest
//! decoded frames out, plus a wake-up callback when something changed.

mod audio;
mod config;
pub mod connect;
mod handle;
mod invite;
mod network;
mod run;
mod state;
mod stats;
mod video;

pub use config::{AudioInput, AudioOutput, CallConfig, VideoInput, VideoSettings};
pub use handle::{CallHandle, Command, RgbaFrame, VideoFrames, Waker};
pub use invite::{fresh_invite_link, random_room_name};
pub use run::redact_link;
pub use state::{
    CallPhase, CallState, EndReason, HandshakeEvent, LatencyStats, PeerState, PeerStats,
    SecurityState, SentStats,
};

/// What the codec threads hand to the network task.
pub(crate) enum ToNetwork {
    /// A video frame to seal in place, fragment and send: `SealedHeader::LEN` reserved bytes,
    /// then the plaintext (`VideoMeta` + H.264).
    Video { frame: Vec<u8> },
    /// An audio frame plaintext (`AudioMeta` + Opus) to seal and send.
    Audio { plain: Vec<u8> },
    /// The decoder of this peer's video needs a keyframe.
    KeyframeRequest { peer: vcall_proto::PeerId },
    /// Local voice activity for heartbeats and the self tile.
    LocalLevel { speaking: bool, level: u8 },
    /// A non-fatal problem to show the user.
    Error(String),
}

/// Wall-clock microseconds since the Unix epoch (capture timestamps; latency on one host).
pub(crate) fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Wall-clock milliseconds since the Unix epoch (the E2EE session's time base).
pub(crate) fn unix_ms() -> u64 {
    wall_clock_us() / 1000
}
