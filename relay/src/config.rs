//! Relay configuration: where to listen, which certificate, and every limit with its default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use vcall_proto::control::DEFAULT_MAX_CONTROL_FRAME;

use crate::access::TokenVerifier;
use crate::cluster::NodeId;
use crate::rooms::RoomLimits;
use crate::sources::SourceLimits;

/// The UDP port a relay listens on by default.
pub const DEFAULT_PORT: u16 = 4433;

/// Where the relay's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// A self-signed certificate generated on first start and kept in `state_dir`, so its
    /// fingerprint (what invite links pin) survives restarts.
    SelfSigned { state_dir: PathBuf },
    /// A certificate chain and private key in PEM files (e.g. from Let's Encrypt).
    PemFiles { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate made for this process only (tests, an embedded relay).
    Ephemeral,
}

/// Per-connection and per-relay limits. Rates of 0 mean unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rooms that may exist at once.
    pub max_rooms: usize,
    /// Members one room may hold.
    pub max_peers_per_room: usize,
    /// Largest control frame body accepted from a client, in bytes.
    pub max_control_frame: usize,
    /// Control frames queued for one client before it is disconnected as a slow consumer.
    pub control_queue_frames: usize,
    /// Control frames per second one client may send (one second's worth as burst); over it,
    /// the client is disconnected with `RateLimited`.
    pub control_frames_per_sec: u64,
    /// Control bytes per second one client may send (same burst and consequence).
    pub control_bytes_per_sec: u64,
    /// Datagrams per second one client may send; excess datagrams are dropped and counted.
    pub datagrams_per_sec: u64,
    /// Datagram bytes per second one client may send; excess datagrams are dropped and counted.
    pub datagram_bytes_per_sec: u64,
    /// Time from the QUIC handshake to a valid `Hello` before the connection is closed.
    pub join_timeout: Duration,
    /// QUIC idle timeout; clients keep the connection alive with QUIC keep-alives.
    pub idle_timeout: Duration,
    /// How long shutdown waits for clients to receive `GoAway` before closing.
    pub shutdown_grace: Duration,
    /// Bytes of datagrams queued towards one client before new ones to it are dropped.
    pub datagram_send_buffer: usize,
    /// Connections one source (IPv4 address, IPv6 /64) may hold open; 0 = unlimited.
    pub max_connections_per_source: usize,
    /// New handshakes per second one source may start (one second's worth as burst);
    /// 0 = unlimited.
    pub handshakes_per_source_per_sec: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rooms: 1000,
            max_peers_per_room: 16,
            max_control_frame: DEFAULT_MAX_CONTROL_FRAME,
            control_queue_frames: 256,
            control_frames_per_sec: 200,
            control_bytes_per_sec: 1_000_000,
            datagrams_per_sec: 3000,
            datagram_bytes_per_sec: 3_000_000,
            join_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
            datagram_send_buffer: 256 * 1024,
            max_connections_per_source: 64,
            handshakes_per_source_per_sec: 20,
        }
    }
}

impl Limits {
    /// The part of the limits the room logic enforces.
    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            max_rooms: self.max_rooms,
            max_peers_per_room: self.max_peers_per_room,
        }
    }

    /// The part of the limits applied per source address.
    pub fn source_limits(&self) -> SourceLimits {
        SourceLimits {
            max_connections: self.max_connections_per_source,
            handshakes_per_sec: self.handshakes_per_source_per_sec,
        }
    }
}

/// Who may use the relay.
#[derive(Debug, Clone, Default)]
pub enum AccessConfig {
    /// Anyone who reaches it (the default: self-hosting, the app's embedded relay).
    #[default]
    Open,
    /// Only holders of an access token that `verifier` accepts and whose id is not listed in
    /// `revocation_file` (one id per line, reloaded within a second of a change).
    Token {
        verifier: TokenVerifier,
        revocation_file: Option<PathBuf>,
    },
}

/// How a relay authenticates to NATS.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// No credentials (a nats-server on a private network, or credentials in the URL).
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// An nkey seed (`SU...`).
    NkeySeed(String),
    /// A `.creds` file (a user JWT and its nkey seed, from `nsc`).
    CredentialsFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::NkeySeed(_) => f.write_str("NkeySeed(<redacted>)"),
            Self::CredentialsFile(path) => write!(f, "CredentialsFile({})", path.display()),
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Refuse a server that does not speak TLS (also implied by a `tls://` URL).
    pub required: bool,
    /// Extra root certificates (PEM) to trust for the NATS server.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Membership of a cluster of relays that share rooms through NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated (`nats://host:4222`, `tls://...`).
    pub nats_url: String,
    /// This relay's node id, unique in the cluster: it prefixes every peer id it assigns.
    pub node: NodeId,
    /// First token of every subject this cluster uses (several clusters may share one NATS).
    pub subject_prefix: String,
    pub auth: NatsAuth,
    pub tls: NatsTls,
}

impl ClusterConfig {
    /// A cluster member reaching NATS at `nats_url` without credentials or TLS options.
    pub fn new(nats_url: impl Into<String>, node: NodeId) -> Self {
        Self {
            nats_url: nats_url.into(),
            node,
            subject_prefix: "vcall".into(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}

/// Everything needed to start a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// UDP address for QUIC (port 0 picks a free port; see `RelayHandle::local_addr`).
    pub listen: SocketAddr,
    /// The TLS certificate.
    pub certificate: CertificateSource,
    /// TCP address for Prometheus `/metrics` and `/healthz`; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Limits.
    pub limits: Limits,
    /// The cluster this relay is part of; `None`: a relay of its own.
    pub cluster: Option<ClusterConfig>,
    /// Who may join.
    pub access: AccessConfig,
}

impl Default for RelayConfig {
    /// `0.0.0.0:4433`, an ephemeral certificate, no metrics endpoint, default limits.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            certificate: CertificateSource::Ephemeral,
            metrics_listen: None,
            limits: Limits::default(),
            cluster: None,
            access: AccessConfig::Open,
        }
    }
}

impl RelayConfig {
    /// A relay on a free loopback port with an ephemeral certificate (tests, embedding).
    /// Every client shares the loopback address, so the per-source limits are off.
    pub fn loopback() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            limits: Limits {
                max_connections_per_source: 0,
                handshakes_per_source_per_sec: 0,
                ..Limits::default()
            },
            ..Self::default()
        }
    }
}
