//! The relay's public shell: binds the QUIC endpoint (and the metrics listener), accepts
//! connections and spawns one task per connection (`connection.rs`), and shuts down gracefully
//! (`GoAway` to every client, then close).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use quinn::VarInt;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info};
use vcall_proto::{ALPN, ErrorCode};

use crate::access::{Access, AccessMode};
use crate::access_watch;
use crate::cert::{CertError, RelayIdentity};
use crate::config::{AccessConfig, Limits, RelayConfig};
use crate::connection::{ERROR_FLUSH_TIMEOUT, serve_connection};
use crate::http;
use crate::link::{PeerLink, application_code};
use crate::metrics::Metrics;
use crate::nats_link::{self, ClusterError, ClusterLink};
use crate::rooms::Rooms;
use crate::sources::{self, SharedSources, SourceTable};

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration rejected: {0}")]
    Quic(String),
    #[error("cannot listen for QUIC on {addr}: {source}")]
    BindQuic {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for metrics on {addr}: {source}")]
    BindMetrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Entry point of the embeddable relay.
pub struct Relay;

impl Relay {
    /// Loads the certificate, binds the QUIC endpoint (and the metrics listener, if
    /// configured) and starts serving in the background of the current tokio runtime.
    pub async fn bind(config: RelayConfig) -> Result<RelayHandle, RelayError> {
        let identity = RelayIdentity::load(&config.certificate)?;
        let fingerprint = identity.fingerprint.clone();
        let self_signed = identity.self_signed;
        let mut endpoint_config =
            quinn::EndpointConfig::new(Arc::new(stateless_reset_key(&identity)));
        // Connection ids a restarted relay still recognises as its own: without them it drops
        // the old connections' packets as invalid instead of answering with a stateless reset,
        // and clients only notice the restart by silence.
        let cid_key = connection_id_key(&identity);
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let server_config = quic_server_config(identity, &config.limits)?;
        let bind_error = |source| RelayError::BindQuic {
            addr: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_error)?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            bind_error(std::io::Error::other(
                "no async runtime for the QUIC endpoint",
            ))
        })?;
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(server_config), socket, runtime)
            .map_err(bind_error)?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| RelayError::BindQuic {
                addr: config.listen,
                source,
            })?;

        let metrics = Arc::new(Metrics::default());
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            Some(addr) => {
                let listener = http::bind(addr)
                    .await
                    .map_err(|source| RelayError::BindMetrics { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| RelayError::BindMetrics { addr, source })?;
                let task = tokio::spawn(http::serve(listener, Arc::clone(&metrics)));
                (Some(bound), Some(task))
            }
            None => (None, None),
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let room_limits = config.limits.room_limits();
        let (rooms, cluster, nats) = match &config.cluster {
            None => (Rooms::new(room_limits), None, None),
            Some(cluster) => {
                let client = nats_link::connect(cluster, Arc::clone(&metrics)).await?;
                let (link, queues) = ClusterLink::new(cluster, Arc::clone(&metrics));
                info!(node = %cluster.node, nats = %cluster.nats_url, "relay joins a cluster");
                (
                    Rooms::clustered(room_limits, cluster.node),
                    Some(link),
                    Some((client, queues)),
                )
            }
        };
        let (access, revocations) = match &config.access {
            AccessConfig::Open => (Arc::new(Access::open()), None),
            AccessConfig::Token {
                verifier,
                revocation_file,
            } => {
                let access = Arc::new(Access::new(AccessMode::Token(verifier.clone())));
                let revocations = revocation_file.as_ref().map(|file| {
                    access_watch::start(file.clone(), Arc::clone(&access), shutdown_rx.clone())
                });
                info!(revocation_file = ?revocation_file, "access: token holders only");
                (access, revocations)
            }
        };
        metrics.watch_access(Arc::clone(&access));
        let sources = Arc::new(Mutex::new(SourceTable::new(config.limits.source_limits())));
        let shared = Arc::new(Shared {
            rooms: Mutex::new(rooms),
            access,
            revocations,
            sources,
            cluster,
            limits: config.limits,
            metrics: Arc::clone(&metrics),
            shutdown: shutdown_rx,
        });
        let cluster_task =
            nats.map(|(client, queues)| nats_link::start(client, queues, Arc::clone(&shared)));
        let accept_task = tokio::spawn(accept_loop(endpoint, shared));
        info!(%local_addr, %fingerprint, "relay listening");
        Ok(RelayHandle {
            local_addr,
            fingerprint,
            self_signed,
            metrics,
            metrics_addr,
            shutdown_tx,
            accept_task: Some(accept_task),
            cluster_task,
            metrics_task,
        })
    }
}

/// A running relay. Dropping it starts a graceful shutdown in the background; call
/// [`shutdown`](Self::shutdown) to wait for it.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    fingerprint: String,
    self_signed: bool,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
    /// The cluster link's tasks (they end once the members' departures reached NATS).
    cluster_task: Option<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// The UDP address the relay listens on (with the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 of the certificate DER, 64 lowercase hex digits (the invite link's `fp`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// True when the certificate is self-signed (clients must pin its fingerprint).
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The relay's live counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The TCP address serving `/metrics` and `/healthz`, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Sends `GoAway` to every client, waits up to the configured grace period for them to
    /// receive it, closes every connection and the endpoint, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.cluster_task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
    }
}

/// The key behind QUIC stateless resets, derived from the certificate's private key: a relay
/// restarted with the same certificate (the same state directory, or the same PEM files) can
/// reset its previous process's connections, so clients notice a restart at once instead of
/// after their liveness timeout. Without the private key nobody can forge those resets.
/// The key of the relay's connection ids (derived from the persisted key, like the reset key),
/// so that after a restart it still recognises them and resets their connections at once.
fn connection_id_key(identity: &RelayIdentity) -> u64 {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"vcall relay connection id key v1");
    context.update(identity.key.secret_der());
    let digest = context.finish();
    u64::from_le_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"))
}

fn stateless_reset_key(identity: &RelayIdentity) -> ring::hmac::Key {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"vcall relay stateless reset key v1");
    context.update(identity.key.secret_der());
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, context.finish().as_ref())
}

/// Builds the QUIC server configuration: TLS 1.3 with ring, ALPN `vcall/1`, datagrams on.
fn quic_server_config(
    identity: RelayIdentity,
    limits: &Limits,
) -> Result<quinn::ServerConfig, RelayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| RelayError::Quic(e.to_string()))?;

    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout)
        .map_err(|e| RelayError::Quic(format!("idle timeout: {e}")))?;
    transport
        .max_idle_timeout(Some(idle))
        // One client-opened control stream; the relay never opens streams.
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_send_buffer_size(limits.datagram_send_buffer)
        // BBR: forwarding media must not collapse on random loss the way Cubic does.
        .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// State shared by every connection task.
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    /// Control plane only (join, leave, control frames): never locked per datagram.
    rooms: Mutex<Rooms<PeerLink>>,
    /// The link to the other relays, when clustered.
    pub(crate) cluster: Option<ClusterLink>,
    /// Who may join.
    pub(crate) access: Arc<Access>,
    /// Changes whenever the revocation list does (token mode with a revocation file).
    pub(crate) revocations: Option<watch::Receiver<u64>>,
    /// Open connections and handshake budgets per source address.
    sources: SharedSources,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn rooms(&self) -> MutexGuard<'_, Rooms<PeerLink>> {
        // Room state stays consistent even if a holder panicked: every mutation is one call.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopping(&mut shutdown) => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let remote = incoming.remote_address();
                    match sources::admit(&shared.sources, remote.ip(), std::time::Instant::now()) {
                        Ok(guard) => {
                            connections.spawn(serve_connection(incoming, Arc::clone(&shared), guard));
                        }
                        Err(reason) => {
                            shared.metrics.source_refused(reason);
                            debug!(%remote, reason = reason.label(), "connection refused: per-source limit");
                            incoming.refuse();
                        }
                    }
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!(
        connections = connections.len(),
        "relay shutting down: sending GoAway"
    );
    endpoint.set_server_config(None);
    let drain = async { while connections.join_next().await.is_some() {} };
    let patience = shared.limits.shutdown_grace + ERROR_FLUSH_TIMEOUT;
    if tokio::time::timeout(patience, drain).await.is_err() {
        connections.abort_all();
    }
    endpoint.close(
        application_code(ErrorCode::ShuttingDown.to_u16()),
        b"relay shutting down",
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    info!("relay stopped");
}

/// Completes once the relay is shutting down (or its handle is gone).
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is dropped here, never held across an await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertificateSource;

    fn reset_tag(identity: &RelayIdentity) -> Vec<u8> {
        ring::hmac::sign(&stateless_reset_key(identity), b"connection id")
            .as_ref()
            .to_vec()
    }

    #[test]
    fn a_restart_with_the_same_state_dir_keeps_the_reset_and_connection_id_keys_and_another_does_not()
     {
        let dir = tempfile::tempdir().unwrap();
        let source = CertificateSource::SelfSigned {
            state_dir: dir.path().to_owned(),
        };
        let first = RelayIdentity::load(&source).unwrap();
        let restarted = RelayIdentity::load(&source).unwrap();
        assert_eq!(reset_tag(&first), reset_tag(&restarted));
        let other = RelayIdentity::load(&CertificateSource::Ephemeral).unwrap();
        assert_ne!(reset_tag(&first), reset_tag(&other));
        // Its connection ids too: the restarted relay recognises the old ones (and resets
        // their connections), another relay does not.
        use quinn::ConnectionIdGenerator as _;
        let mut before =
            quinn_proto::HashedConnectionIdGenerator::from_key(connection_id_key(&first));
        let cid = before.generate_cid();
        let after =
            quinn_proto::HashedConnectionIdGenerator::from_key(connection_id_key(&restarted));
        assert!(after.validate(&cid).is_ok());
        let stranger =
            quinn_proto::HashedConnectionIdGenerator::from_key(connection_id_key(&other));
        assert!(stranger.validate(&cid).is_err());
    }
}
