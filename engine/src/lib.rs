//! The call engine: joins a call from an invite link and runs media, E2EE and the network.
//!
//! Shape (see docs/ARCHITECTURE.md): [`core::CallCore`] is the sans-IO protocol core (keys,
//! roster, reassembly, keyframe policy, mute gating, state); `driver` is its thin tokio/quinn
//! shell; video and audio codecs run on their own threads; the UI (or the bot) talks to it
//! only through a [`CallHandle`]: commands in, state snapshots and the latest decoded frames
//! out, plus a wake-up callback when something changed. [`sim`] runs cores through an
//! in-memory network for tests and benchmarks.
#![forbid(unsafe_code)]

mod audio;
pub mod bot;
mod config;
pub mod connect;
pub mod core;
mod driver;
mod handle;
mod invite;
mod picture_out;
mod run;
pub mod sim;
mod state;
mod stats;
mod video_recv;
mod video_send;
pub use video_send::REPLAY_FRAMES;

pub use config::{AudioInput, AudioOutput, CallConfig, SourceError, VideoInput, VideoSettings};
pub use handle::{
    CallHandle, Command, DetachedCall, LeftCall, ReleasedDevices, VideoFrames, VideoPicture, Wake,
    Waker,
};
pub use invite::{fresh_invite_link, fresh_invite_link_with_token, random_room_name};
pub use picture_out::{PictureOut, downscale_factor};
pub use run::redact_link;
pub use state::{
    CallPhase, CallState, ConnectFailure, EndReason, HandshakeLogEntry, LatencyStats,
    MAX_HANDSHAKE_LOG, MAX_TIMELINE, PeerSecond, PeerState, PeerStats, SecurityState, SentSecond,
    SentStats, Stream,
};

/// Wall-clock microseconds since the Unix epoch (capture timestamps; latency on one host).
pub(crate) fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
