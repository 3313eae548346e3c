//! The engine's observable state: what the UI draws and what the bot reports.

use vcall_proto::PeerId;

/// Why the relay could not be reached (a `Clone` summary of a [`ConnectError`](crate::connect::ConnectError)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    #[error("cannot resolve the relay address {address}")]
    Resolve { address: String },
    #[error("the relay's certificate does not match the link's fingerprint")]
    CertificateMismatch,
    #[error("the relay at {address} did not answer on UDP port {port} ({detail})")]
    Unreachable {
        address: String,
        port: u16,
        detail: String,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("cannot open a local UDP socket: {0}")]
    Socket(String),
}

/// Why a call ended, as data: the UI turns it into advice (ui/advice.rs), the bot into its
/// report. `Display` says what happened, not what to do.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub enum EndReason {
    /// The user left.
    #[default]
    #[error("you left the call")]
    Left,
    /// The invite link cannot be parsed or its secret is unusable.
    #[error("the invite link is not valid: {0}")]
    InvalidLink(String),
    /// The relay could not be resolved, did not answer, or failed TLS.
    #[error("{0}")]
    Connect(ConnectFailure),
    /// Connected, but the relay did not answer our Hello in time.
    #[error("the relay did not admit us within {seconds} s")]
    AdmitTimeout { seconds: u64 },
    /// The relay refused us or ended the call with an error frame.
    #[error("the relay refused: {code} ({message})")]
    RelayRefused {
        code: vcall_proto::control::ErrorCode,
        message: String,
    },
    /// The relay is shutting down (GoAway).
    #[error("the relay is shutting down: {code} ({message})")]
    RelayShutDown {
        code: vcall_proto::control::ErrorCode,
        message: String,
    },
    /// The connection dropped (or the relay closed it) during the call.
    #[error("lost the connection to the relay ({0})")]
    ConnectionLost(String),
    /// The relay broke the protocol (an invalid or unexpected frame).
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
    /// The end-to-end encryption session ended itself (e.g. its key epochs ran out): nothing
    /// more can be sent safely.
    #[error("the end-to-end encryption ended: {0}")]
    EncryptionEnded(String),
    /// A local problem: threads, runtime, key generation.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EndReason {
    /// Whether the call reconnects by itself after this (a lost connection, or a relay going
    /// down for a restart), rather than ending.
    pub fn is_reconnectable(&self) -> bool {
        matches!(self, Self::ConnectionLost(_) | Self::RelayShutDown { .. })
    }

    /// Why the relay denied access (`Error{AccessDenied}` naming a known reason), if it did.
    /// Never reconnected by itself: joining again with the same token would be refused again.
    pub fn access_denied(&self) -> Option<vcall_proto::DenyReason> {
        match self {
            Self::RelayRefused {
                code: vcall_proto::control::ErrorCode::AccessDenied,
                message,
            } => vcall_proto::DenyReason::from_message(message),
            _ => None,
        }
    }

    /// Whether the call ended because something went wrong (everything but [`EndReason::Left`]).
    pub fn is_error(&self) -> bool {
        !matches!(self, Self::Left)
    }
}

/// Where the call is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CallPhase {
    /// Generating the session identity, resolving and connecting to the relay.
    #[default]
    Connecting,
    /// Joined the room; media flowing as keys arrive.
    InCall,
    /// The connection to the relay was lost: reconnecting by itself (`attempt` from 1), with
    /// the call screen and its tiles kept; `last_error` is why the connection or the last
    /// attempt failed.
    Reconnecting { attempt: u32, last_error: String },
    /// The call ended, and why.
    Ended(EndReason),
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
    /// How many members (distinct fingerprints, ourselves included) the code covers.
    pub member_count: usize,
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
    /// Audio frames the peer sent since the first one that reached us.
    pub audio_frames_expected: u64,
    pub audio_frames_decoded: u64,
    /// Frames played without their packet: rebuilt with Opus FEC, or concealed.
    pub audio_frames_fec: u64,
    pub audio_frames_concealed: u64,
    pub audio_peak_hz: Option<f64>,
    pub latency_ms: LatencyStats,
    pub datagrams_lost: u64,
    pub decrypt_failures: u64,
    /// Bodies that arrived a second time (audio redundancy copies, path duplicates): dropped.
    pub duplicates: u64,
    /// Inter-frame gaps longer than max(3 × the mean frame interval, mean + 150 ms), as in
    /// WebRTC's statistics: how many, their total and the longest, in milliseconds.
    pub video_freeze_count: u64,
    pub video_freeze_ms_total: u64,
    pub video_max_freeze_ms: u64,
    /// NACK messages we sent this peer, and the fragments it resent to us that arrived.
    pub nacks_sent: u64,
    pub retransmissions: u64,
    /// Its frames rebuilt from repair (FEC) fragments.
    pub fec_recovered: u64,
    /// Its frames given up on (not recovered in time).
    pub video_frames_given_up: u64,
    /// The video playout delay now: how long its frames wait before decoding so that late
    /// (repaired) ones play on time, in milliseconds.
    pub video_playout_delay_ms: u64,
    /// One entry per second of the call (the last [`MAX_TIMELINE`] seconds).
    pub timeline: Vec<PeerSecond>,
}

/// Most seconds kept in a timeline.
pub const MAX_TIMELINE: usize = 900;

/// One second of a peer's video as we received it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerSecond {
    /// Seconds since the call started (this second is `t_s .. t_s + 1`).
    pub t_s: u64,
    /// Frames decoded.
    pub frames: u32,
    /// Video kbit/s received.
    pub kbps: f64,
    /// p95 of capture→decoded latency of the frames decoded (none decoded: `None`).
    pub latency_p95_ms: Option<f64>,
    /// The longest gap between two decoded frames that ended in this second.
    pub max_gap_ms: u64,
}

/// One second of our own video sending.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SentSecond {
    pub t_s: u64,
    /// The encoder's target bitrate at the end of the second.
    pub target_kbps: u32,
    /// Temporal layers sent (1: base only).
    pub layers: u8,
    /// The loss receivers report that repair and audio copies are sized for (percent).
    pub loss_percent: f32,
    /// Audio datagrams sent per audio frame now (1, or 2–3 with redundancy).
    pub audio_copies: u8,
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
    /// It receives our keys and is covered by the security code.
    pub member: bool,
    /// Nothing authenticated came from it for the liveness timeout: treated as gone.
    pub silent: bool,
    pub mic_muted: bool,
    pub camera_off: bool,
    pub speaking: bool,
    pub stats: PeerStats,
}

/// What this client sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SentStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Audio datagrams sent a second time (redundancy while receivers report loss).
    pub audio_repeats: u64,
    pub datagrams: u64,
    pub bytes: u64,
    pub bitrate_out_kbps: u64,
    /// Size and rate of the video being sent (0 when the camera is off).
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// The fraction of our video fragments receivers asked us to resend (smoothed): the loss
    /// they see, which sets how many repair fragments our frames carry.
    pub loss_reported: f64,
    /// NACKs received, fragments resent in answer, and requested fragments refused.
    pub nacks_received: u64,
    pub retransmissions: u64,
    pub retransmissions_refused: u64,
    /// The video rate control's target (kbit/s) and whether only the base temporal layer
    /// (half the frame rate) is sent.
    pub target_kbps: u32,
    pub base_layer_only: bool,
    /// Times rate control lowered the target.
    pub rate_decreases: u64,
    /// One entry per second (the last [`MAX_TIMELINE`] seconds).
    pub timeline: Vec<SentSecond>,
}

/// One entry of the key-exchange log (names match the bot report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLogEntry {
    pub t_ms: u64,
    /// `sent_pubkey | recv_pubkey | sent_key | recv_key | reannounce_new_peer | rekey`
    pub event: String,
    pub peer: Option<PeerId>,
}

/// Most entries kept in [`CallState::handshake_log`].
pub const MAX_HANDSHAKE_LOG: usize = 512;

/// Which picture stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Our own camera (the self view).
    Local,
    /// A remote peer's video.
    Remote(PeerId),
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
    /// The key-exchange log, oldest first, at most [`MAX_HANDSHAKE_LOG`] entries (the oldest
    /// are dropped first).
    pub handshake_log: Vec<HandshakeLogEntry>,
    /// Non-fatal problems worth telling the user (and fatal ones before `Ended`).
    pub errors: Vec<String>,
    /// Times the call reconnected to the relay by itself after losing the connection.
    pub reconnects: u32,
    /// The longest time without remote video across a reconnect: from the last frame decoded
    /// before the connection was lost to the first one after rejoining (ms; 0 if none).
    pub reconnect_video_gap_ms: u64,
}
