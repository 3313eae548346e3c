//! The quinn/tokio shell around [`Rooms`]: a QUIC endpoint, one task per connection (plus a
//! control-stream writer and, once joined, a datagram forwarder), and graceful shutdown.
//!
//! Per connection:
//! - the session task reads the control stream: `Hello` → join, then signals, pings, `Leave`;
//! - the writer task drains the connection's bounded control queue into its send stream (a
//!   client that stops reading fills the queue and is disconnected with `SlowConsumer`);
//! - the forwarder task reads datagrams, stamps the sender and hands one shared `Bytes` to
//!   every receiver's `send_datagram`, reading the room's members from a lock-free snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::{Connection, ConnectionError, RecvStream, SendDatagramError, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};
use vcall_proto::control::RosterEntry;
use vcall_proto::datagram::stamp_sender;
use vcall_proto::{
    ALPN, ControlDecoder, ControlFrame, DecodeError, ErrorCode, PROTOCOL_VERSION, PeerId,
};

use crate::cert::{CertError, RelayIdentity};
use crate::config::{Limits, RelayConfig};
use crate::fanout::FanoutReader;
use crate::metrics::{self, DropReason, Metrics, RejectReason};
use crate::rate::{CountAndBytes, Throttle, TokenBucket};
use crate::rooms::{RoomId, Rooms};

/// Largest piece read from a control stream at once.
const READ_CHUNK: usize = 16 * 1024;
/// How long a rejected client gets to receive its `Error` frame before the connection closes.
const ERROR_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one "datagrams dropped: rate limited" notice per client per this interval.
const RATE_NOTICE_INTERVAL: Duration = Duration::from_secs(5);

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
        let server_config = quic_server_config(identity, &config.limits)?;
        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(|source| {
            RelayError::BindQuic {
                addr: config.listen,
                source,
            }
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| RelayError::BindQuic {
                addr: config.listen,
                source,
            })?;

        let metrics = Arc::new(Metrics::default());
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            Some(addr) => {
                let listener = metrics::bind_http(addr)
                    .await
                    .map_err(|source| RelayError::BindMetrics { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| RelayError::BindMetrics { addr, source })?;
                let task = tokio::spawn(metrics::serve_http(listener, Arc::clone(&metrics)));
                (Some(bound), Some(task))
            }
            None => (None, None),
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            rooms: Mutex::new(Rooms::new(config.limits.room_limits())),
            limits: config.limits,
            metrics: Arc::clone(&metrics),
            shutdown: shutdown_rx,
        });
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
        .datagram_send_buffer_size(limits.datagram_send_buffer);
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// State shared by every connection task.
struct Shared {
    limits: Limits,
    /// Control plane only (join, leave, signals): never locked per datagram.
    rooms: Mutex<Rooms<PeerLink>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn rooms(&self) -> MutexGuard<'_, Rooms<PeerLink>> {
        // Room state stays consistent even if a holder panicked: every mutation is one call.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the relay reaches one joined peer.
#[derive(Clone)]
struct PeerLink {
    connection: Connection,
    outbox: mpsc::Sender<Bytes>,
    evicted: Arc<AtomicBool>,
}

impl PeerLink {
    /// Queues an encoded control frame; a full queue disconnects the peer (slow consumer).
    fn deliver(&self, frame: Bytes, metrics: &Metrics) -> bool {
        match self.outbox.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.evicted.swap(true, Ordering::AcqRel) {
                    metrics.rejected(RejectReason::SlowConsumer);
                    warn!(
                        remote = %self.connection.remote_address(),
                        "disconnecting slow consumer: control queue full"
                    );
                    close(
                        &self.connection,
                        ErrorCode::SlowConsumer,
                        "control queue full",
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends one datagram copy; congestion and path limits drop it (counted), never fail.
    fn send_datagram(&self, datagram: Bytes, metrics: &Metrics) {
        let len = datagram.len();
        if self.connection.datagram_send_buffer_space() < len {
            metrics.datagram_dropped(DropReason::Congested, len);
            return;
        }
        match self.connection.send_datagram(datagram) {
            Ok(()) => metrics.datagram_forwarded(len),
            Err(SendDatagramError::TooLarge) => {
                metrics.datagram_dropped(DropReason::TooLargeForPath, len)
            }
            Err(SendDatagramError::UnsupportedByPeer | SendDatagramError::Disabled) => {
                metrics.datagram_dropped(DropReason::ReceiverUnsupported, len)
            }
            Err(SendDatagramError::ConnectionLost(_)) => {
                metrics.datagram_dropped(DropReason::ReceiverGone, len)
            }
        }
    }
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

/// Closes a connection with a protocol error code as the QUIC application close code.
fn close(connection: &Connection, code: ErrorCode, reason: &str) {
    connection.close(
        VarInt::from_u32(u32::from(code.to_u16())),
        reason.as_bytes(),
    );
}

/// Closes a connection normally (QUIC application code 0).
fn close_normally(connection: &Connection) {
    connection.close(VarInt::from_u32(0), b"bye");
}

/// A short, non-reversible tag of a room id for logs (room ids may derive from secrets).
fn room_tag(room: &RoomId) -> String {
    crate::cert::fingerprint(room)[..8].to_owned()
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopping(&mut shutdown) => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(serve_connection(incoming, Arc::clone(&shared)));
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
        VarInt::from_u32(u32::from(ErrorCode::ShuttingDown.to_u16())),
        b"relay shutting down",
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    info!("relay stopped");
}

/// Runs one client connection from handshake to close.
async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            shared.metrics.rejected(RejectReason::Handshake);
            info!(%remote, %error, "handshake failed");
            return;
        }
    };
    shared.metrics.connection_opened();
    let mut session = Session {
        shared: Arc::clone(&shared),
        connection,
        remote,
        writer: None,
        link: None,
        joined: None,
    };
    session.run().await;
    shared.metrics.connection_closed();
}

/// What ended a session's main loop.
enum Ending {
    /// The client sent `Leave` or finished its control stream: normal close.
    Left,
    /// The connection is already closed (by the client, a timeout or an eviction).
    Lost(ConnectionError),
    /// The relay is shutting down.
    ShuttingDown,
    /// The client broke a rule: send `Error`, then close with this code.
    Rejected(ErrorCode, String),
}

/// The state of a joined peer.
struct Membership {
    peer: PeerId,
    room: RoomId,
    forwarder: JoinHandle<()>,
}

/// One connection's control-plane task.
struct Session {
    shared: Arc<Shared>,
    connection: Connection,
    remote: SocketAddr,
    writer: Option<ControlWriter>,
    /// How others (and this session) queue frames to this client; set with the writer.
    link: Option<PeerLink>,
    joined: Option<Membership>,
}

impl Session {
    async fn run(&mut self) {
        let join_deadline = tokio::time::Instant::now() + self.shared.limits.join_timeout;
        let ending = match self.accept_control_stream(join_deadline).await {
            Ok(recv) => self.read_control(recv, join_deadline).await,
            Err(ending) => ending,
        };
        self.finish(ending).await;
    }

    /// Waits for the client's control stream, dropping early datagrams, until `deadline`.
    async fn accept_control_stream(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<RecvStream, Ending> {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                _ = stopping(&mut shutdown) => return Err(Ending::ShuttingDown),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Ending::Rejected(ErrorCode::JoinTimeout, "no control stream in time".into()));
                }
                stream = self.connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let writer = ControlWriter::spawn(send, self.shared.limits.control_queue_frames);
                        self.link = Some(PeerLink {
                            connection: self.connection.clone(),
                            outbox: writer.outbox.clone(),
                            evicted: Arc::new(AtomicBool::new(false)),
                        });
                        self.writer = Some(writer);
                        return Ok(recv);
                    }
                    Err(error) => return Err(Ending::Lost(error)),
                },
                datagram = self.connection.read_datagram() => match datagram {
                    Ok(d) => self.shared.metrics.datagram_dropped(DropReason::NotJoined, d.len()),
                    Err(error) => return Err(Ending::Lost(error)),
                },
            }
        }
    }

    /// Reads and handles control frames until the session ends.
    async fn read_control(
        &mut self,
        mut recv: RecvStream,
        join_deadline: tokio::time::Instant,
    ) -> Ending {
        let limits = &self.shared.limits;
        let mut decoder = ControlDecoder::new(limits.max_control_frame);
        let now = Instant::now();
        let mut frame_budget = TokenBucket::per_second(limits.control_frames_per_sec, now);
        let mut byte_budget = TokenBucket::per_second(limits.control_bytes_per_sec, now);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let joined = self.joined.is_some();
            tokio::select! {
                _ = stopping(&mut shutdown) => return Ending::ShuttingDown,
                _ = tokio::time::sleep_until(join_deadline), if !joined => {
                    return Ending::Rejected(ErrorCode::JoinTimeout, "no Hello in time".into());
                }
                // Before the join the forwarder does not run: read (and drop) datagrams here.
                datagram = self.connection.read_datagram(), if !joined => match datagram {
                    Ok(d) => self.shared.metrics.datagram_dropped(DropReason::NotJoined, d.len()),
                    Err(error) => return Ending::Lost(error),
                },
                chunk = recv.read_chunk(READ_CHUNK, true) => {
                    let chunk = match chunk {
                        Ok(Some(chunk)) => chunk.bytes,
                        Ok(None) | Err(quinn::ReadError::Reset(_)) => return Ending::Left,
                        Err(quinn::ReadError::ConnectionLost(error)) => return Ending::Lost(error),
                        Err(error) => {
                            return Ending::Rejected(ErrorCode::Malformed, format!("control stream: {error}"));
                        }
                    };
                    decoder.push(&chunk);
                    loop {
                        let buffered = decoder.buffered();
                        let frame = match decoder.next_frame() {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(error) => return rejection_for(&error),
                        };
                        let now = Instant::now();
                        let frame_len = (buffered - decoder.buffered()) as u64;
                        if !frame_budget.try_take(1, now) || !byte_budget.try_take(frame_len, now) {
                            return Ending::Rejected(ErrorCode::RateLimited, "too many control frames".into());
                        }
                        self.shared.metrics.control_frame_received();
                        if let Some(ending) = self.handle_frame(frame) {
                            return ending;
                        }
                    }
                    // Let the writers of the peers this chunk was fanned out to drain their
                    // queues before the next chunk (a chunk can hold many small frames).
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Applies one control frame; `Some` ends the session.
    fn handle_frame(&mut self, frame: ControlFrame) -> Option<Ending> {
        let Some(membership) = &self.joined else {
            return match frame {
                ControlFrame::Hello {
                    version,
                    room,
                    name,
                } => self.join(version, room, name),
                _ => Some(Ending::Rejected(
                    ErrorCode::NotJoined,
                    "the first frame must be Hello".into(),
                )),
            };
        };
        let me = membership.peer;
        match frame {
            ControlFrame::Signal { to, payload, .. } => {
                let routed = self.shared.rooms().signal_recipients(me, to);
                match routed {
                    Ok(recipients) => {
                        let frame = ControlFrame::Signal {
                            to,
                            from: me,
                            payload,
                        }
                        .to_bytes();
                        for link in &recipients {
                            link.deliver(frame.clone(), &self.shared.metrics);
                        }
                        self.shared.metrics.signal_copies_queued(recipients.len());
                    }
                    Err(error) => {
                        debug!(peer = %me, %error, "signal refused");
                        self.refuse(error.code(), &error.to_string());
                    }
                }
                None
            }
            ControlFrame::Ping(value) => {
                self.send_own(ControlFrame::Pong(value));
                None
            }
            ControlFrame::Pong(_) => None,
            ControlFrame::Error { code, message } => {
                debug!(peer = %me, %code, %message, "client reported an error");
                None
            }
            ControlFrame::Hello { .. } => Some(Ending::Rejected(
                ErrorCode::AlreadyJoined,
                "already joined: one room per connection".into(),
            )),
            ControlFrame::Leave => Some(Ending::Left),
            ControlFrame::Welcome { .. }
            | ControlFrame::PeerJoined(_)
            | ControlFrame::PeerLeft { .. }
            | ControlFrame::GoAway { .. } => Some(Ending::Rejected(
                ErrorCode::Malformed,
                "relay-to-client frame sent by a client".into(),
            )),
        }
    }

    /// Handles `Hello`: version check, admission, Welcome, PeerJoined to the others.
    fn join(&mut self, version: u8, room: Bytes, name: Option<String>) -> Option<Ending> {
        if version != PROTOCOL_VERSION {
            return Some(Ending::Rejected(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported; this relay speaks {PROTOCOL_VERSION}"
                ),
            ));
        }
        let link = self.link.as_ref()?;
        let metrics = &self.shared.metrics;
        let mut rooms = self.shared.rooms();
        let joined = match rooms.join(room.clone(), name.clone(), link.clone()) {
            Ok(joined) => joined,
            Err(error) => return Some(Ending::Rejected(error.code(), error.to_string())),
        };
        // Queued under the rooms lock, so the Welcome precedes any frame about this room.
        let welcome = ControlFrame::Welcome {
            peer: joined.peer,
            roster: joined.roster,
        };
        link.deliver(welcome.to_bytes(), metrics);
        let announcement = ControlFrame::PeerJoined(RosterEntry {
            peer: joined.peer,
            name,
        })
        .to_bytes();
        for other in &joined.notify {
            other.deliver(announcement.clone(), metrics);
        }
        metrics.joined();
        metrics.set_occupancy(rooms.room_count(), rooms.peer_count());
        drop(rooms);

        info!(
            peer = %joined.peer,
            room = %room_tag(&room),
            remote = %self.remote,
            others = joined.notify.len(),
            "peer joined"
        );
        let forwarder = DatagramForwarder {
            connection: self.connection.clone(),
            peer: joined.peer,
            fanout: joined.fanout,
            budget: CountAndBytes::new(
                self.shared.limits.datagrams_per_sec,
                self.shared.limits.datagram_bytes_per_sec,
                Instant::now(),
            ),
            notice: Throttle::new(RATE_NOTICE_INTERVAL),
            outbox: link.outbox.clone(),
            metrics: Arc::clone(metrics),
        };
        self.joined = Some(Membership {
            peer: joined.peer,
            room,
            forwarder: tokio::spawn(forwarder.run()),
        });
        None
    }

    /// Sends a non-fatal `Error` frame to this client and counts the refusal.
    fn refuse(&self, code: ErrorCode, message: &str) {
        if let Some(reason) = RejectReason::from_code(code) {
            self.shared.metrics.rejected(reason);
        }
        self.send_own(ControlFrame::Error {
            code,
            message: message.to_owned(),
        });
    }

    /// Queues a frame for this client (subject to the slow-consumer rule).
    fn send_own(&self, frame: ControlFrame) {
        if let Some(link) = &self.link {
            link.deliver(frame.to_bytes(), &self.shared.metrics);
        }
    }

    /// Leaves the room (telling the others unless the relay is stopping) and closes.
    async fn finish(&mut self, ending: Ending) {
        let shutting_down = matches!(ending, Ending::ShuttingDown);
        let left = self.leave_room(!shutting_down);
        let writer = self.writer.take();
        match ending {
            Ending::Left => {
                if let Some(writer) = writer {
                    writer.finish(ERROR_FLUSH_TIMEOUT).await;
                }
                close_normally(&self.connection);
                if let Some(peer) = left {
                    info!(%peer, remote = %self.remote, "peer left");
                }
            }
            Ending::Lost(error) => {
                if matches!(error, ConnectionError::TimedOut) {
                    self.shared.metrics.rejected(RejectReason::IdleTimeout);
                }
                info!(peer = ?left, remote = %self.remote, %error, "connection ended");
            }
            Ending::ShuttingDown => {
                if let Some(writer) = writer {
                    let _ = writer.outbox.try_send(
                        ControlFrame::GoAway {
                            code: ErrorCode::ShuttingDown,
                            message: "relay shutting down".into(),
                        }
                        .to_bytes(),
                    );
                    writer.finish(self.shared.limits.shutdown_grace).await;
                }
                close(
                    &self.connection,
                    ErrorCode::ShuttingDown,
                    "relay shutting down",
                );
            }
            Ending::Rejected(code, message) => {
                if let Some(reason) = RejectReason::from_code(code) {
                    self.shared.metrics.rejected(reason);
                }
                info!(peer = ?left, remote = %self.remote, %code, %message, "closing connection");
                if let Some(writer) = writer {
                    let _ = writer.outbox.try_send(
                        ControlFrame::Error {
                            code,
                            message: message.clone(),
                        }
                        .to_bytes(),
                    );
                    writer.finish(ERROR_FLUSH_TIMEOUT).await;
                }
                close(&self.connection, code, &message);
            }
        }
    }

    /// Removes this peer from its room; returns its id if it was joined.
    fn leave_room(&mut self, notify: bool) -> Option<PeerId> {
        let membership = self.joined.take()?;
        membership.forwarder.abort();
        let metrics = &self.shared.metrics;
        let mut rooms = self.shared.rooms();
        if let Some(left) = rooms.leave(membership.peer) {
            if notify {
                let frame = ControlFrame::PeerLeft {
                    peer: membership.peer,
                }
                .to_bytes();
                for other in &left.notify {
                    other.deliver(frame.clone(), metrics);
                }
            }
            metrics.left();
            metrics.set_occupancy(rooms.room_count(), rooms.peer_count());
            debug!(peer = %membership.peer, room = %room_tag(&membership.room), closed = left.room_closed, "left room");
        }
        Some(membership.peer)
    }
}

/// Completes once the relay is shutting down (or its handle is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is dropped here, never held across an await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Maps a control-stream decode error to the error sent to the client.
fn rejection_for(error: &DecodeError) -> Ending {
    let code = match error {
        DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        DecodeError::Invalid {
            what: "room id", ..
        } => ErrorCode::BadRoomId,
        _ => ErrorCode::Malformed,
    };
    Ending::Rejected(code, error.to_string())
}

/// The writer side of a control stream: a bounded queue drained by its own task.
struct ControlWriter {
    outbox: mpsc::Sender<Bytes>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ControlWriter {
    fn spawn(send: SendStream, capacity: usize) -> Self {
        let (outbox, frames) = mpsc::channel(capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_frames(send, frames, stopped));
        Self { outbox, stop, task }
    }

    /// Writes what is queued, finishes the stream and waits (up to `patience`) until the
    /// client has acknowledged it.
    async fn finish(self, patience: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(patience, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn write_frames(
    mut send: SendStream,
    mut frames: mpsc::Receiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if send.write_chunk(frame).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    while let Ok(frame) = frames.try_recv() {
        if send.write_chunk(frame).await.is_err() {
            return;
        }
    }
    if send.finish().is_ok() {
        let _ = send.stopped().await;
    }
}

/// Forwards one joined peer's datagrams to its room.
struct DatagramForwarder {
    connection: Connection,
    peer: PeerId,
    fanout: FanoutReader<PeerLink>,
    budget: CountAndBytes,
    notice: Throttle,
    outbox: mpsc::Sender<Bytes>,
    metrics: Arc<Metrics>,
}

impl DatagramForwarder {
    async fn run(mut self) {
        while let Ok(datagram) = self.connection.read_datagram().await {
            self.forward(datagram);
        }
    }

    fn forward(&mut self, datagram: Bytes) {
        let len = datagram.len();
        self.metrics.datagram_received(len);
        let now = Instant::now();
        if !self.budget.admit(len, now) {
            self.metrics.datagram_dropped(DropReason::RateLimited, len);
            if self.notice.fire(now) {
                let notice = ControlFrame::Error {
                    code: ErrorCode::RateLimited,
                    message: "datagram rate limit exceeded: dropping datagrams".into(),
                };
                // Best effort: a full queue means the session is being closed anyway.
                let _ = self.outbox.try_send(notice.to_bytes());
            }
            return;
        }
        // One copy per received datagram (to stamp the sender), none per receiver.
        let mut stamped = BytesMut::from(&datagram[..]);
        let header = match stamp_sender(&mut stamped, self.peer) {
            Ok(header) => header,
            Err(DecodeError::TooLarge { .. }) => {
                self.metrics.datagram_dropped(DropReason::Oversized, len);
                return;
            }
            Err(_) => {
                self.metrics.datagram_dropped(DropReason::Malformed, len);
                return;
            }
        };
        let stamped = stamped.freeze();
        let me = self.peer;
        match self.fanout.recipients(me, header.target) {
            Ok(members) => {
                for member in members.iter().filter(|m| m.peer != me) {
                    member.link.send_datagram(stamped.clone(), &self.metrics);
                }
            }
            Err(_) => self
                .metrics
                .datagram_dropped(DropReason::UnknownTarget, len),
        }
    }
}
