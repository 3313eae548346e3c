//! The engine's observable state: what the UI draws and what the bot reports.

use vcall_proto::PeerId;

/// Why a call ended, for the UI to pick its advice (the sentence says the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndReason {
    /// The user left.
    #[default]
    Left,
    /// The invite link cannot be parsed or its secret is unusable.
    InvalidLink,
    /// The relay could not be resolved or did not answer.
    Unreachable,
    /// The relay's certificate does not match the link's fingerprint.
    CertificateMismatch,
    /// The room is full.
    RoomFull,
    /// The relay refused for another reason (capacity, version, rate limits...).
    RelayRefused,
    /// The relay is shutting down (GoAway).
    RelayShutDown,
    /// The connection dropped during the call.
    ConnectionLost,
    /// A local problem (threads, codecs) or a protocol violation.
    Internal,
}

/// Where the call is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CallPhase {
    /// Generating the session identity, resolving and connecting to the relay.
    #[default]
    Connecting,
    /// Joined the room; media flowing as keys arrive.
    InCall,
    /// The call ended; `reason` is a human sentence saying why and what to do next
    /// (empty for a normal leave), `kind` the same as a value.
    Ended {
        reason: String,
        error: bool,
        kind: EndReason,
    },
}

/// End-to-end security as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityState {
    /// The link carried a room secret (`#k=` or `#p=`); without it nobody can be verified.
    pub room_secret: bool,
    /// This session's fingerprint (from its public keys), for people to compare.
    pub my_fingerprint: String,
    /// Identical for every member that sees the same set of members.
    pub room_security_code: String,
}

/// Capture→decoded latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyStats {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// Media statistics about one remote peer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerStats {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub bitrate_in_kbps: f64,
    pub rtt_ms: f64,
    pub video_frames_expected: u64,
    pub video_frames_received: u64,
    pub video_frames_decoded: u64,
    pub video_psnr_db: Option<f64>,
    pub audio_frames_decoded: u64,
    pub audio_peak_hz: Option<f64>,
    pub latency_ms: LatencyStats,
    pub datagrams_lost: u64,
    pub decrypt_failures: u64,
}

/// One remote peer as this client knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerState {
    pub peer_id: PeerId,
    /// From its authenticated announcement (or its clear Hello name when unverified).
    pub name: Option<String>,
    pub fingerprint: Option<String>,
    /// Its announcement authenticated under the room secret.
    pub verified: bool,
    pub key_received: bool,
    pub key_sent: bool,
    pub mic_muted: bool,
    pub camera_off: bool,
    pub speaking: bool,
    pub stats: PeerStats,
}

/// What this client sent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SentStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub datagrams: u64,
    pub bytes: u64,
    pub bitrate_out_kbps: u64,
    /// Size and rate of the video being sent (0 when the camera is off).
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

/// One entry of the key-exchange log (names match the bot report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeEvent {
    pub t_ms: u64,
    /// `sent_pubkey | recv_pubkey | sent_key | recv_key | reannounce_new_peer | rekey`
    pub event: String,
    pub peer: Option<PeerId>,
}

/// A consistent snapshot of the call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallState {
    pub phase: CallPhase,
    /// The relay address and room name from the link (never the secret).
    pub relay: String,
    pub room: String,
    /// The link with its secret fragment removed, safe to log.
    pub redacted_link: String,
    pub my_peer_id: Option<PeerId>,
    pub my_name: String,
    pub mic_muted: bool,
    pub camera_off: bool,
    /// Our own voice activity, for the speaking highlight on the self tile.
    pub speaking: bool,
    pub security: SecurityState,
    pub peers: Vec<PeerState>,
    /// Peers who left during the call, with their last statistics (most recent last; bounded).
    pub departed: Vec<PeerState>,
    pub sent: SentStats,
    pub handshake_log: Vec<HandshakeEvent>,
    /// Non-fatal problems worth telling the user (and fatal ones before `Ended`).
    pub errors: Vec<String>,
}
