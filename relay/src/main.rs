//! `vcall-relay` binary: runs the relay from the command line (every flag also from env), and
//! `vcall-relay token issue|revoke|list|public-key` manages the operator's access tokens.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;
use vcall_relay::access::{TokenClaims, unix_now};
use vcall_relay::token_store::{self, TokenStore};
use vcall_relay::{
    AccessConfig, CertificateSource, ClusterConfig, Limits, NatsAuth, NatsTls, NodeId, Relay,
    RelayConfig, RelayIdentity,
};

/// A QUIC room relay for vcall: forwards end-to-end encrypted calls without decrypting them.
#[derive(Debug, Parser)]
#[command(name = "vcall-relay", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Who may join: anyone who reaches the relay, or only holders of an access token
    /// (`vcall-relay token issue`).
    #[arg(long, env = "VCALL_RELAY_ACCESS", value_enum, default_value_t = AccessMode::Open)]
    access: AccessMode,

    /// With --access token: the PASERK public key file (k4.public.…) tokens are verified with,
    /// e.g. the issuing relay's `token-public-key.paserk`. Default: the state directory's key
    /// (created on first use).
    #[arg(long, env = "VCALL_RELAY_TOKEN_PUBLIC_KEY")]
    token_public_key: Option<PathBuf>,

    /// Connections one source (IPv4 address, IPv6 /64) may hold open (0 = unlimited).
    #[arg(long, env = "VCALL_RELAY_MAX_CONNECTIONS_PER_SOURCE", default_value_t = Limits::default().max_connections_per_source)]
    max_connections_per_source: usize,

    /// New handshakes per second one source may start (0 = unlimited).
    #[arg(long, env = "VCALL_RELAY_HANDSHAKES_PER_SOURCE_PER_SEC", default_value_t = Limits::default().handshakes_per_source_per_sec)]
    handshakes_per_source_per_sec: u64,

    /// UDP address for QUIC.
    #[arg(long, env = "VCALL_RELAY_LISTEN", default_value = "0.0.0.0:4433")]
    listen: SocketAddr,

    /// PEM certificate chain (e.g. Let's Encrypt fullchain.pem); requires --key.
    #[arg(long, env = "VCALL_RELAY_CERT", requires = "key")]
    cert: Option<PathBuf>,

    /// PEM private key for --cert.
    #[arg(long, env = "VCALL_RELAY_KEY", requires = "cert")]
    key: Option<PathBuf>,

    /// Directory keeping the self-signed certificate across restarts (used without --cert).
    /// Default: the XDG data directory, e.g. ~/.local/share/vcall-relay.
    #[arg(long, env = "VCALL_RELAY_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// TCP address serving Prometheus /metrics and /healthz (disabled when absent).
    #[arg(long, env = "VCALL_RELAY_METRICS")]
    metrics: Option<SocketAddr>,

    /// Host name or address clients use to reach this relay, for the printed invite link.
    #[arg(long, env = "VCALL_RELAY_PUBLIC_HOST")]
    public_host: Option<String>,

    /// Rooms that may exist at once.
    #[arg(long, env = "VCALL_RELAY_MAX_ROOMS", default_value_t = Limits::default().max_rooms)]
    max_rooms: usize,

    /// Members one room may hold.
    #[arg(long, env = "VCALL_RELAY_MAX_PEERS_PER_ROOM", default_value_t = Limits::default().max_peers_per_room)]
    max_peers_per_room: usize,

    /// Largest control frame body accepted, in bytes.
    #[arg(long, env = "VCALL_RELAY_MAX_CONTROL_FRAME", default_value_t = Limits::default().max_control_frame)]
    max_control_frame: usize,

    /// Control frames queued per client before it is disconnected as a slow consumer.
    #[arg(long, env = "VCALL_RELAY_CONTROL_QUEUE", default_value_t = Limits::default().control_queue_frames)]
    control_queue: usize,

    /// Control frames per second per client (0 = unlimited); over it the client is disconnected.
    #[arg(long, env = "VCALL_RELAY_CONTROL_FRAMES_PER_SEC", default_value_t = Limits::default().control_frames_per_sec)]
    control_frames_per_sec: u64,

    /// Control bytes per second per client (0 = unlimited); over it the client is disconnected.
    #[arg(long, env = "VCALL_RELAY_CONTROL_BYTES_PER_SEC", default_value_t = Limits::default().control_bytes_per_sec)]
    control_bytes_per_sec: u64,

    /// Datagrams per second per client (0 = unlimited); excess is dropped and counted.
    #[arg(long, env = "VCALL_RELAY_DATAGRAMS_PER_SEC", default_value_t = Limits::default().datagrams_per_sec)]
    datagrams_per_sec: u64,

    /// Datagram bytes per second per client (0 = unlimited); excess is dropped and counted.
    #[arg(long, env = "VCALL_RELAY_DATAGRAM_BYTES_PER_SEC", default_value_t = Limits::default().datagram_bytes_per_sec)]
    datagram_bytes_per_sec: u64,

    /// Seconds from the QUIC handshake to a valid Hello.
    #[arg(long, env = "VCALL_RELAY_JOIN_TIMEOUT_SECS", default_value_t = Limits::default().join_timeout.as_secs())]
    join_timeout_secs: u64,

    /// QUIC idle timeout in seconds (clients send keep-alives more often).
    #[arg(long, env = "VCALL_RELAY_IDLE_TIMEOUT_SECS", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout_secs: u64,

    /// Milliseconds shutdown waits for clients to receive GoAway.
    #[arg(long, env = "VCALL_RELAY_SHUTDOWN_GRACE_MS", default_value_t = Limits::default().shutdown_grace.as_millis() as u64)]
    shutdown_grace_ms: u64,

    /// Bytes of datagrams queued towards one client before new ones to it are dropped.
    #[arg(long, env = "VCALL_RELAY_DATAGRAM_SEND_BUFFER", default_value_t = Limits::default().datagram_send_buffer)]
    datagram_send_buffer: usize,

    /// Join a cluster of relays sharing rooms through this NATS server (nats://host:4222,
    /// tls://host:4222; several comma-separated). Without it the relay stands alone.
    #[arg(long, env = "VCALL_RELAY_NATS")]
    nats: Option<String>,

    /// This relay's node id in the cluster, 1 to 4095, unique per relay (default: random).
    #[arg(long, env = "VCALL_RELAY_NODE_ID", requires = "nats")]
    node_id: Option<NodeId>,

    /// First token of the cluster's NATS subjects (clusters sharing one NATS pick different ones).
    #[arg(
        long,
        env = "VCALL_RELAY_NATS_SUBJECT_PREFIX",
        default_value = "vcall",
        requires = "nats"
    )]
    nats_subject_prefix: String,

    /// NATS user (with --nats-password).
    #[arg(long, env = "VCALL_RELAY_NATS_USER", requires = "nats_password")]
    nats_user: Option<String>,

    /// NATS password (with --nats-user); prefer the environment variable over the flag.
    #[arg(
        long,
        env = "VCALL_RELAY_NATS_PASSWORD",
        requires = "nats_user",
        hide_env_values = true
    )]
    nats_password: Option<String>,

    /// NATS token; prefer the environment variable over the flag.
    #[arg(long, env = "VCALL_RELAY_NATS_TOKEN", hide_env_values = true, conflicts_with_all = ["nats_user", "nats_nkey_file", "nats_creds"])]
    nats_token: Option<String>,

    /// File holding an nkey seed (SU...) to authenticate to NATS.
    #[arg(long, env = "VCALL_RELAY_NATS_NKEY_FILE", conflicts_with_all = ["nats_user", "nats_creds"])]
    nats_nkey_file: Option<PathBuf>,

    /// A NATS .creds file (user JWT and nkey seed).
    #[arg(long, env = "VCALL_RELAY_NATS_CREDS", conflicts_with = "nats_user")]
    nats_creds: Option<PathBuf>,

    /// Require TLS to NATS (implied by a tls:// URL).
    #[arg(long, env = "VCALL_RELAY_NATS_TLS")]
    nats_tls: bool,

    /// PEM root certificate(s) to trust for the NATS server.
    #[arg(long, env = "VCALL_RELAY_NATS_CA")]
    nats_ca: Option<PathBuf>,

    /// PEM client certificate for NATS servers that verify clients (with --nats-client-key).
    #[arg(
        long,
        env = "VCALL_RELAY_NATS_CLIENT_CERT",
        requires = "nats_client_key"
    )]
    nats_client_cert: Option<PathBuf>,

    /// PEM key of --nats-client-cert.
    #[arg(
        long,
        env = "VCALL_RELAY_NATS_CLIENT_KEY",
        requires = "nats_client_cert"
    )]
    nats_client_key: Option<PathBuf>,
}

/// `--access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AccessMode {
    /// Anyone who reaches the relay may host rooms.
    Open,
    /// Only holders of a valid, unrevoked access token.
    Token,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage access tokens (signed with the state directory's key; run on the issuing relay).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issue a token and print it with an example invite that carries it.
    Issue {
        /// How long the token is valid, e.g. 30d, 12h, 1w.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Duration,
        /// The tenant's name in logs and metrics (A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "default")]
        label: String,
        /// Rooms the tenant may have at once on one relay.
        #[arg(long)]
        max_rooms: Option<u32>,
        /// Members of the tenant one room may hold on one relay.
        #[arg(long)]
        max_members_per_room: Option<u32>,
        /// Datagram bandwidth each member may send, kilobits per second.
        #[arg(long)]
        max_kbps: Option<u32>,
    },
    /// Revoke a token by id: running relays refuse it and cut its members within a second.
    Revoke {
        /// The id `token issue` printed (32 hex digits).
        id: String,
        /// Revoke even if this state directory's ledger never issued it.
        #[arg(long)]
        force: bool,
    },
    /// List the issued tokens (ids, labels, expiries, quotas; never the tokens).
    List,
    /// Print the public key other relays verify with (--token-public-key).
    PublicKey,
}

impl Args {
    fn state_dir(&self) -> Result<PathBuf, String> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => directories::ProjectDirs::from("", "", "vcall-relay")
                .map(|dirs| dirs.data_dir().to_path_buf())
                .ok_or_else(|| "no home directory for the relay's state: pass --state-dir".into()),
        }
    }

    fn certificate(&self) -> Result<CertificateSource, String> {
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            return Ok(CertificateSource::PemFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        Ok(CertificateSource::SelfSigned {
            state_dir: self.state_dir()?,
        })
    }

    fn access(&self) -> Result<AccessConfig, String> {
        if self.access == AccessMode::Open {
            return Ok(AccessConfig::Open);
        }
        let store = TokenStore::new(self.state_dir()?);
        let verifier = match &self.token_public_key {
            Some(path) => token_store::read_verifier(path).map_err(|e| e.to_string())?,
            None => store.issuer().map_err(|e| e.to_string())?.verifier(),
        };
        Ok(AccessConfig::Token {
            verifier,
            revocation_file: Some(store.revocation_file()),
        })
    }

    fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        let Some(url) = &self.nats else {
            return Ok(None);
        };
        let node = match self.node_id {
            Some(node) => node,
            None => {
                let node = random_node_id()?;
                info!(%node, "no --node-id given: this relay is node {node} (pass --node-id to keep ids stable and unique)");
                node
            }
        };
        let auth = if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            NatsAuth::UserPassword {
                user: user.clone(),
                password: password.clone(),
            }
        } else if let Some(token) = &self.nats_token {
            NatsAuth::Token(token.clone())
        } else if let Some(path) = &self.nats_nkey_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the nkey seed file {}: {e}", path.display()))?;
            NatsAuth::NkeySeed(seed.trim().to_owned())
        } else if let Some(path) = &self.nats_creds {
            NatsAuth::CredentialsFile(path.clone())
        } else {
            NatsAuth::None
        };
        Ok(Some(ClusterConfig {
            nats_url: url.clone(),
            node,
            subject_prefix: self.nats_subject_prefix.clone(),
            auth,
            tls: NatsTls {
                required: self.nats_tls,
                ca_file: self.nats_ca.clone(),
                client_cert: self
                    .nats_client_cert
                    .clone()
                    .zip(self.nats_client_key.clone()),
            },
        }))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rooms: self.max_rooms,
            max_peers_per_room: self.max_peers_per_room,
            max_control_frame: self.max_control_frame,
            control_queue_frames: self.control_queue,
            control_frames_per_sec: self.control_frames_per_sec,
            control_bytes_per_sec: self.control_bytes_per_sec,
            datagrams_per_sec: self.datagrams_per_sec,
            datagram_bytes_per_sec: self.datagram_bytes_per_sec,
            join_timeout: Duration::from_secs(self.join_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            datagram_send_buffer: self.datagram_send_buffer,
            max_connections_per_source: self.max_connections_per_source,
            handshakes_per_source_per_sec: self.handshakes_per_source_per_sec,
        }
    }
}

/// Runs `vcall-relay token …`; its output goes to stdout.
fn run_token_command(args: &Args, command: &TokenCommand) -> Result<(), String> {
    let store = TokenStore::new(args.state_dir()?);
    match command {
        TokenCommand::Issue {
            expires,
            label,
            max_rooms,
            max_members_per_room,
            max_kbps,
        } => {
            let claims = TokenClaims {
                max_rooms: *max_rooms,
                max_members_per_room: *max_members_per_room,
                max_kbps: *max_kbps,
                ..TokenClaims::new(label, *expires).map_err(|e| e.to_string())?
            };
            let token = store.issue(&claims).map_err(|e| e.to_string())?;
            let host = invite_host(args.public_host.as_deref(), args.listen);
            let fingerprint = match args.certificate()? {
                source @ CertificateSource::SelfSigned { .. } => Some(
                    RelayIdentity::load(&source)
                        .map_err(|e| e.to_string())?
                        .fingerprint,
                ),
                _ => None,
            };
            println!("token id: {}", claims.id);
            println!("label: {}", claims.label);
            println!("expires: {}", format_expiry(claims.expires));
            println!("{}", quota_summary(&claims));
            println!("token: {token}");
            println!(
                "example invite: {}",
                invite_with_token(
                    &example_invite(&host, args.listen.port(), fingerprint.as_deref()),
                    &token
                )
            );
            println!("revoke with: vcall-relay token revoke {}", claims.id);
        }
        TokenCommand::Revoke { id, force } => {
            store.revoke(id, *force).map_err(|e| e.to_string())?;
            println!(
                "revoked {id} (in {}; running relays apply it within a second)",
                store.revocation_file().display()
            );
        }
        TokenCommand::List => {
            let revoked = store.revoked().map_err(|e| e.to_string())?;
            let now = unix_now();
            for claims in store.issued().map_err(|e| e.to_string())? {
                let state = if revoked.contains(&claims.id) {
                    "revoked"
                } else if claims.expires <= now {
                    "expired"
                } else {
                    "valid"
                };
                println!(
                    "{} {:<7} label={} expires={} {}",
                    claims.id,
                    state,
                    claims.label,
                    format_expiry(claims.expires),
                    quota_summary(&claims)
                );
            }
        }
        TokenCommand::PublicKey => {
            let issuer = store.issuer().map_err(|e| e.to_string())?;
            println!("{}", issuer.verifier().public_paserk());
        }
    }
    Ok(())
}

/// An expiry as an RFC 3339 UTC time.
fn format_expiry(unix: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `max_rooms=2 max_members_per_room=- max_kbps=-`.
fn quota_summary(claims: &TokenClaims) -> String {
    let show = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "max_rooms={} max_members_per_room={} max_kbps={}",
        show(claims.max_rooms),
        show(claims.max_members_per_room),
        show(claims.max_kbps)
    )
}

/// The invite with `t=TOKEN` in its query (the relay reads it; it is not a room secret).
fn invite_with_token(invite: &str, token: &str) -> String {
    let separator = if invite.contains('?') { '&' } else { '?' };
    format!("{invite}{separator}t={token}")
}

/// A random node id (collisions are logged by the relays that see them).
fn random_node_id() -> Result<NodeId, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 2];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for a node id: pass --node-id".to_owned())?;
    let n = u16::from_be_bytes(bytes) % vcall_relay::cluster::MAX_NODE_ID + 1;
    NodeId::new(n).ok_or_else(|| "node id out of range".to_owned())
}

/// `vcall://HOST:PORT/ROOM[?fp=HEX]`: an example invite without any secret (clients add theirs
/// after `#`, and it never reaches the relay).
fn example_invite(host: &str, port: u16, fingerprint: Option<&str>) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match fingerprint {
        Some(fp) => format!("vcall://{host}:{port}/my-room?fp={fp}"),
        None => format!("vcall://{host}:{port}/my-room"),
    }
}

/// The host to print in the invite: `--public-host`, else the listen address (loopback when
/// listening on every interface).
fn invite_host(public_host: Option<&str>, listen: SocketAddr) -> String {
    match (public_host, listen.ip()) {
        (Some(host), _) => host.to_owned(),
        (None, IpAddr::V4(ip)) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        (None, IpAddr::V6(ip)) if ip.is_unspecified() => "::1".to_owned(),
        (None, ip) => ip.to_string(),
    }
}

/// SIGTERM or Ctrl-C, installed before the ready line so a stop right after it is graceful.
struct StopSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn received(self) {
        #[cfg(unix)]
        if let Some(mut terminate) = self.terminate {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::Token(command)) = &args.command {
        return match run_token_command(&args, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                error!("{message}");
                ExitCode::FAILURE
            }
        };
    }
    let certificate = match args.certificate() {
        Ok(certificate) => certificate,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match args.cluster() {
        Ok(cluster) => cluster,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let access = match args.access() {
        Ok(access) => access,
        Err(message) => {
            error!("cannot set up token access: {message}");
            return ExitCode::FAILURE;
        }
    };
    let token_mode = matches!(access, AccessConfig::Token { .. });
    let config = RelayConfig {
        listen: args.listen,
        certificate,
        metrics_listen: args.metrics,
        limits: args.limits(),
        cluster,
        access,
    };
    let stop = StopSignal::install();
    let relay = match Relay::bind(config).await {
        Ok(relay) => relay,
        Err(err) => {
            error!("cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = relay.local_addr();
    println!(
        "vcall-relay ready listen={addr} fingerprint={}",
        relay.fingerprint()
    );
    let host = invite_host(args.public_host.as_deref(), addr);
    let pinned = relay.is_self_signed().then(|| relay.fingerprint());
    println!(
        "example invite: {}",
        example_invite(&host, addr.port(), pinned)
    );
    if token_mode {
        info!(
            "access: token holders only; issue tokens with `vcall-relay token issue --expires 30d`"
        );
    }
    if args.public_host.is_none() && addr.ip().is_unspecified() {
        info!("pass --public-host to print an invite link with this server's public address");
    }
    if let Some(metrics) = relay.metrics_addr() {
        info!(%metrics, "serving /metrics and /healthz");
    }
    stop.received().await;
    info!("stop signal received");
    relay.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_carries_the_fingerprint_only_for_self_signed_certificates() {
        assert_eq!(
            example_invite("relay.example.org", 4433, Some("ab12")),
            "vcall://relay.example.org:4433/my-room?fp=ab12"
        );
        assert_eq!(
            example_invite("relay.example.org", 443, None),
            "vcall://relay.example.org:443/my-room"
        );
        assert_eq!(
            example_invite("::1", 4433, None),
            "vcall://[::1]:4433/my-room"
        );
    }

    #[test]
    fn invite_host_prefers_the_public_host_then_a_reachable_listen_address() {
        let any: SocketAddr = "0.0.0.0:4433".parse().unwrap();
        let one: SocketAddr = "192.0.2.7:4433".parse().unwrap();
        assert_eq!(
            invite_host(Some("relay.example.org"), any),
            "relay.example.org"
        );
        assert_eq!(invite_host(None, any), "127.0.0.1");
        assert_eq!(invite_host(None, one), "192.0.2.7");
    }

    #[test]
    fn every_flag_parses_and_has_an_env_var() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        for arg in Args::command().get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(
                env.as_deref()
                    .is_some_and(|e| e.starts_with("VCALL_RELAY_")),
                "--{} needs a VCALL_RELAY_* env var",
                arg.get_id()
            );
        }
        let args =
            Args::try_parse_from(["vcall-relay", "--listen", "127.0.0.1:0", "--max-rooms", "3"])
                .unwrap();
        assert_eq!(args.limits().max_rooms, 3);
        assert!(
            Args::try_parse_from(["vcall-relay", "--cert", "c.pem"]).is_err(),
            "--cert needs --key"
        );
        assert_eq!(args.access, AccessMode::Open);
        let token = Args::try_parse_from(["vcall-relay", "--access", "token"]).unwrap();
        assert_eq!(token.access, AccessMode::Token);
        assert!(Args::try_parse_from(["vcall-relay", "--access", "closed"]).is_err());
    }

    #[test]
    fn token_subcommands_parse_with_durations() {
        let args = Args::try_parse_from([
            "vcall-relay",
            "--state-dir",
            "/tmp/x",
            "token",
            "issue",
            "--expires",
            "30d",
            "--label",
            "team-a",
            "--max-rooms",
            "2",
        ])
        .unwrap();
        let Some(Command::Token(TokenCommand::Issue {
            expires, max_rooms, ..
        })) = args.command
        else {
            panic!("not an issue command: {args:?}");
        };
        assert_eq!(expires, Duration::from_secs(30 * 86_400));
        assert_eq!(max_rooms, Some(2));
        assert!(
            Args::try_parse_from(["vcall-relay", "token", "issue", "--expires", "soon"]).is_err()
        );
        assert!(Args::try_parse_from(["vcall-relay", "token", "issue"]).is_err());
    }

    #[test]
    fn the_token_goes_in_the_invite_query() {
        assert_eq!(
            invite_with_token("vcall://h:4433/my-room?fp=ab", "v4.public.x"),
            "vcall://h:4433/my-room?fp=ab&t=v4.public.x"
        );
        assert_eq!(
            invite_with_token("vcall://h:443/my-room", "v4.public.x"),
            "vcall://h:443/my-room?t=v4.public.x"
        );
        assert_eq!(format_expiry(0), "1970-01-01T00:00:00Z");
    }
}
