//! What goes in and out of the call core: the clock mapping, local media and codec events
//! handed in, commands, and the outputs the shell performs (datagrams, control frames, frames
//! to decode or play, codec instructions, published state); plus construction and counters.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vcall_proto::PeerId;
use vcall_proto::control::{ControlFrame, RosterEntry};
use vcall_proto::e2ee::SealedHeader;
use vcall_proto::media::{AudioMeta, VideoMeta};

use crate::state::CallState;

/// Maps the core's monotonic time to the wall clock where the protocol needs it (the E2EE
/// session's Unix-ms time base, heartbeat timestamps), from one reading taken at start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_us: u64,
}

impl Clock {
    /// `origin_unix_us` is the wall clock (µs since the Unix epoch) at `origin`.
    pub fn new(origin: Instant, origin_unix_us: u64) -> Self {
        Self {
            origin,
            origin_unix_us,
        }
    }

    pub fn unix_us(&self, now: Instant) -> u64 {
        self.origin_unix_us + now.saturating_duration_since(self.origin).as_micros() as u64
    }

    pub fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_us(now) / 1000
    }

    /// The instant of a Unix-ms time (times before the origin map to the origin).
    pub fn instant_of_unix_ms(&self, unix_ms: u64) -> Instant {
        let origin_ms = self.origin_unix_us / 1000;
        self.origin + Duration::from_millis(unix_ms.saturating_sub(origin_ms))
    }
}

/// What the driver or a codec thread hands in from our own capture side.
pub enum LocalMedia {
    /// An encoded video frame: `frame` starts with `SealedHeader::LEN` reserved bytes, then
    /// the plaintext (`meta` encoded, then the H.264 access unit), so it is sealed in place.
    Video { meta: VideoMeta, frame: Vec<u8> },
    /// An audio frame plaintext (`AudioMeta` + Opus).
    Audio { plain: Vec<u8> },
}

impl LocalMedia {
    /// A video frame in the layout the core seals in place: `SealedHeader::LEN` reserved
    /// bytes, `meta`, the access unit, with room for the tag (one allocation).
    pub fn video(meta: VideoMeta, access_unit: &[u8]) -> Self {
        let mut frame = Vec::with_capacity(
            SealedHeader::LEN
                + VideoMeta::LEN
                + access_unit.len()
                + vcall_crypto::SEAL_OVERHEAD
                + vcall_crypto::sender_auth::MAX_TRAILER_LEN,
        );
        frame.extend_from_slice(&[0; SealedHeader::LEN]);
        meta.append(&mut frame);
        frame.extend_from_slice(access_unit);
        Self::Video { meta, frame }
    }

    /// An audio frame: `meta`, then the Opus packet.
    pub fn audio(meta: AudioMeta, opus: &[u8]) -> Self {
        let mut plain = Vec::with_capacity(AudioMeta::LEN + opus.len());
        meta.append(&mut plain);
        plain.extend_from_slice(opus);
        Self::Audio { plain }
    }
}

/// What the codec threads report (statistics and needs), as events.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A remote peer's frame was decoded.
    VideoDecoded {
        peer: PeerId,
        width: u32,
        height: u32,
        latency_ms: f32,
        /// PSNR against the regenerated test pattern, for the sampled frames.
        psnr_db: Option<f64>,
    },
    /// Our decoder of `peer`'s video cannot go on without a keyframe.
    DecoderNeedsKeyframe { peer: PeerId },
    /// One 20 ms frame of `peer`'s audio was played from real data.
    AudioPlayed { peer: PeerId },
    /// One 20 ms frame of `peer`'s audio was played without its packet: rebuilt from the next
    /// packet's Opus FEC data (`fec`), or concealed.
    AudioRepaired { peer: PeerId, fec: bool },
    /// The dominant frequency of `peer`'s last second of audio.
    AudioPeak { peer: PeerId, hz: Option<f64> },
    /// Our voice activity (for heartbeats and the self tile).
    LocalLevel { speaking: bool, level: u8 },
    /// Our encoder sent a frame of this size.
    VideoEncoded { width: u32, height: u32 },
    /// A non-fatal problem to show the user.
    Warning(String),
}

/// Commands the core itself acts on (device switches go straight to the codec threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreCommand {
    SetMicMuted(bool),
    SetCameraOff(bool),
    Leave,
}

/// A decrypted video frame for the decoder: `frame[access_unit]` is the H.264 access unit.
#[derive(Debug)]
pub struct VideoToDecode {
    pub peer: PeerId,
    pub meta: VideoMeta,
    pub frame: Vec<u8>,
    pub access_unit: Range<usize>,
}

impl VideoToDecode {
    /// The H.264 access unit (Annex B).
    pub fn access_unit(&self) -> &[u8] {
        &self.frame[self.access_unit.clone()]
    }
}

/// A decrypted audio frame for the jitter buffer.
#[derive(Debug)]
pub struct AudioToPlay {
    pub peer: PeerId,
    pub meta: AudioMeta,
    pub opus: Vec<u8>,
}

/// What the core asks the driver to do.
pub enum Output {
    /// Send this QUIC datagram.
    Datagram(Bytes),
    /// Write this frame on the control stream.
    Control(ControlFrame),
    /// Hand this frame to the video decoder.
    Decode(VideoToDecode),
    /// Hand this frame to the audio thread.
    Play(AudioToPlay),
    /// Our encoder should produce a keyframe now.
    ForceKeyframe,
    /// Our audio encoder should expect this much packet loss (percent), for Opus in-band FEC.
    ExpectedAudioLoss(u8),
    /// Our video encoder's new target: bitrate, and whether to send the base layer only.
    VideoTarget(super::VideoTarget),
    /// A peer left: the codec threads drop its decoder, jitter buffer and recorders.
    PeerLeft(PeerId),
    /// The call's state changed: show this snapshot. [`Change`] says whether anything but
    /// the periodic statistics changed.
    Publish(Arc<CallState>, Change),
}

/// What a published snapshot changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Something people see in the call: phase, roster, mute, speaking, security, errors.
    State,
    /// Only the periodic statistics (rates, counters, latency), refreshed every stats interval:
    /// a UI showing no statistics need not repaint for it.
    StatsOnly,
}

/// What the core is constructed with.
pub struct CoreConfig {
    pub me: PeerId,
    pub roster: Vec<RosterEntry>,
    pub mic_muted: bool,
    pub camera_off: bool,
    /// The video bitrate the encoder is configured for: rate control never goes above it.
    pub max_video_kbps: u32,
    /// The state the call starts from (relay, room, names, link...).
    pub initial_state: CallState,
}

/// Counters of what the core refused or dropped (for tests, stats and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreCounters {
    /// Audio frames not sent because the microphone is muted.
    pub audio_gated: u64,
    /// Video frames not sent because the camera is off.
    pub video_gated: u64,
    /// Datagrams that could not be parsed, or came from ourselves or nobody.
    pub datagrams_malformed: u64,
    /// Datagrams from a sender the relay has not announced.
    pub datagrams_from_strangers: u64,
    /// Video frames dropped because they came before the sender's first keyframe.
    pub frames_before_keyframe: u64,
    /// Sealed bodies we could not seal (no key yet) or that were too large for the path.
    pub not_sent: u64,
    /// E2EE messages the session rejected.
    pub signals_rejected: u64,
    /// Frames not decoded because a lost frame of a lower temporal layer they refer to was
    /// given up on (PROTOCOL.md §5).
    pub video_frames_skipped: u64,
    /// Upper-layer video frames not sent because our own send queue stood (rate control).
    pub video_shed_at_source: u64,
    /// Receiver reports sent and received (feedback type 2).
    pub reports_sent: u64,
    pub reports_received: u64,
    /// Feedback bodies that opened but did not decode (absurd reports, bad NACKs...): ignored.
    pub feedback_malformed: u64,
}
