//! Drives one client connection: accepts its control stream, decodes frames into its
//! [`ConnState`], queues the frames the state asks for, runs the datagram forwarder while the
//! client is joined, and closes the connection the way the state decided.
//!
//! Tasks per connection: this one (control stream reader), the [`ControlWriter`], and, once
//! joined, the [`DatagramForwarder`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, ConnectionError, RecvStream};
use tokio::task::JoinHandle;
use tracing::{debug, info};
use vcall_proto::{ControlDecoder, ErrorCode, PeerId};

use crate::conn_state::{CloseReason, ConnEvent, ConnState, Outgoing};
use crate::forwarder::{DatagramForwarder, TenantPath};
use crate::link::{PeerLink, application_code};
use crate::metrics::{DropReason, RejectReason};
use crate::rooms::{RoomId, Rooms};
use crate::server::{Shared, stopping};
use crate::shedding::LayerGate;
use crate::sources::SourceGuard;
use crate::writer::ControlWriter;

/// Largest piece read from a control stream at once.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing client gets to receive its last frames before the connection closes.
pub(crate) const ERROR_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs one client connection from handshake to close.
pub(crate) async fn serve_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    _source: SourceGuard,
) {
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
    let state = ConnState::new(
        Instant::now(),
        &shared.limits,
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.access),
    );
    let client = ClientConn {
        shared: Arc::clone(&shared),
        connection,
        remote,
        state,
        writer: None,
        forwarder: None,
        peer: None,
    };
    client.run().await;
    shared.metrics.connection_closed();
}

/// One client connection's I/O around its [`ConnState`].
struct ClientConn {
    shared: Arc<Shared>,
    connection: Connection,
    remote: SocketAddr,
    state: ConnState<PeerLink>,
    /// Writes this client's control stream; set once the client opens it.
    writer: Option<ControlWriter>,
    /// Forwards this client's datagrams while it is joined.
    forwarder: Option<JoinHandle<()>>,
    /// The peer id this client was given, for logs.
    peer: Option<PeerId>,
}

impl ClientConn {
    async fn run(mut self) {
        let reason = match self.accept_control_stream().await {
            Ok(recv) => self.read_control(recv).await,
            Err(reason) => reason,
        };
        self.finish(reason).await;
    }

    /// Waits for the client's control stream, dropping early datagrams, until the join
    /// deadline. `Err` once the connection has ended.
    async fn accept_control_stream(&mut self) -> Result<RecvStream, CloseReason> {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                _ = stopping(&mut shutdown) => return Err(self.close(CloseReason::ShuttingDown)),
                _ = until(self.state.poll_timeout()) => {
                    if let Some(reason) = self.step(|state, rooms| state.handle_timeout(Instant::now(), rooms)) {
                        return Err(reason);
                    }
                }
                stream = self.connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let writer = ControlWriter::spawn(send, self.shared.limits.control_queue_frames);
                        self.state.control_stream_opened(PeerLink {
                            connection: self.connection.clone(),
                            control: writer.queue().clone(),
                            layers: Arc::new(LayerGate::new(Instant::now())),
                        });
                        self.writer = Some(writer);
                        return Ok(recv);
                    }
                    Err(error) => return Err(self.lost(error)),
                },
                datagram = self.connection.read_datagram() => match datagram {
                    Ok(d) => self.shared.metrics.datagram_dropped(DropReason::NotJoined, d.len()),
                    Err(error) => return Err(self.lost(error)),
                },
            }
        }
    }

    /// Reads and handles control frames until the connection ends.
    async fn read_control(&mut self, mut recv: RecvStream) -> CloseReason {
        let mut decoder = ControlDecoder::new(self.shared.limits.max_control_frame);
        let mut shutdown = self.shared.shutdown.clone();
        let mut revocations = self.shared.revocations.clone();
        loop {
            let joined = self.state.is_joined();
            let watch_revocations = revocations.is_some() && self.state.holds_token();
            tokio::select! {
                _ = stopping(&mut shutdown) => return self.close(CloseReason::ShuttingDown),
                _ = revocation_changed(&mut revocations), if watch_revocations => {
                    if let Some(reason) = self.step(|state, rooms| state.handle_revocations(rooms)) {
                        return reason;
                    }
                }
                _ = until(self.state.poll_timeout()) => {
                    if let Some(reason) = self.step(|state, rooms| state.handle_timeout(Instant::now(), rooms)) {
                        return reason;
                    }
                }
                // Before the join the forwarder does not run: read (and drop) datagrams here.
                datagram = self.connection.read_datagram(), if !joined => match datagram {
                    Ok(d) => self.shared.metrics.datagram_dropped(DropReason::NotJoined, d.len()),
                    Err(error) => return self.lost(error),
                },
                chunk = recv.read_chunk(READ_CHUNK, true) => {
                    let chunk = match chunk {
                        Ok(Some(chunk)) => chunk.bytes,
                        Ok(None) | Err(quinn::ReadError::Reset(_)) => return self.close(CloseReason::Left),
                        Err(quinn::ReadError::ConnectionLost(error)) => return self.lost(error),
                        Err(error) => {
                            let message = format!("control stream: {error}");
                            return self.close(CloseReason::rejected(ErrorCode::Malformed, message));
                        }
                    };
                    decoder.push(&chunk);
                    if let Some(reason) = self.handle_buffered_frames(&mut decoder) {
                        return reason;
                    }
                    // Let the writers of the peers this chunk was fanned out to drain their
                    // queues before the next chunk (a chunk can hold many small frames).
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Handles every complete frame in `decoder`; `Some` once the connection is closing.
    fn handle_buffered_frames(&mut self, decoder: &mut ControlDecoder) -> Option<CloseReason> {
        loop {
            let buffered = decoder.buffered();
            let closed = match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let wire_len = buffered - decoder.buffered();
                    self.step(|state, rooms| {
                        state.handle_frame(Instant::now(), frame, wire_len, rooms)
                    })
                }
                Ok(None) => return None,
                Err(error) => self.step(|state, rooms| state.handle_decode_error(&error, rooms)),
            };
            if closed.is_some() {
                return closed;
            }
        }
    }

    /// Feeds one event to the state with the rooms locked, queues the frames it asks for
    /// before unlocking (so a `Welcome` precedes every frame about its room), then acts on
    /// its events. Returns the close reason once the state has closed.
    fn step(
        &mut self,
        event: impl FnOnce(&mut ConnState<PeerLink>, &mut Rooms<PeerLink>),
    ) -> Option<CloseReason> {
        {
            let metrics = &self.shared.metrics;
            let mut rooms = self.shared.rooms();
            event(&mut self.state, &mut rooms);
            if let Some(cluster) = &self.shared.cluster {
                cluster.take_from(&mut rooms);
            }
            while let Some(outgoing) = self.state.poll_outgoing() {
                match outgoing {
                    Outgoing::ToSelf(frame) => {
                        if let Some(writer) = &self.writer {
                            writer
                                .queue()
                                .deliver(frame.to_bytes(), &self.connection, metrics);
                        }
                    }
                    Outgoing::ToPeers { frame, links } => {
                        let frame = frame.to_bytes();
                        for link in &links {
                            link.deliver(frame.clone(), metrics);
                        }
                    }
                }
            }
        }
        let mut closed = None;
        while let Some(event) = self.state.poll_event() {
            match event {
                ConnEvent::Joined {
                    peer,
                    room,
                    fanout,
                    others,
                    seat,
                } => {
                    let label = seat.as_ref().map_or("-", |s| s.label.as_str());
                    info!(%peer, room = %room_tag(&room), remote = %self.remote, others, label, "peer joined");
                    let tenant =
                        seat.as_ref()
                            .map_or_else(TenantPath::default, |seat| TenantPath {
                                max_bytes_per_sec: seat.max_bytes_per_sec,
                                bytes: Some(self.shared.metrics.tenant_bytes(&seat.label)),
                            });
                    self.peer = Some(peer);
                    if let Some(writer) = &self.writer {
                        let forwarder = DatagramForwarder::new(
                            self.connection.clone(),
                            peer,
                            fanout,
                            &self.shared.limits,
                            writer.queue().clone(),
                            self.shared
                                .cluster
                                .as_ref()
                                .map(|c| c.room_publisher(&room)),
                            Arc::clone(&self.shared.metrics),
                        )
                        .for_tenant(tenant, &self.shared.limits);
                        self.forwarder = Some(tokio::spawn(forwarder.run()));
                    }
                }
                ConnEvent::Left {
                    peer,
                    room,
                    room_closed,
                } => {
                    self.stop_forwarding();
                    debug!(%peer, room = %room_tag(&room), closed = room_closed, "left room");
                }
                ConnEvent::Closed(reason) => closed = Some(reason),
            }
        }
        closed
    }

    /// Ends the connection for a reason seen by this shell (stream end, shutdown, ...).
    fn close(&mut self, reason: CloseReason) -> CloseReason {
        let requested = reason.clone();
        self.step(move |state, rooms| state.close(requested, rooms))
            .unwrap_or(reason)
    }

    /// Ends a connection that is already gone.
    fn lost(&mut self, error: ConnectionError) -> CloseReason {
        info!(peer = ?self.state.peer(), remote = %self.remote, %error, "connection ended");
        let idle_timeout = matches!(error, ConnectionError::TimedOut);
        self.close(CloseReason::Lost { idle_timeout })
    }

    fn stop_forwarding(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            forwarder.abort();
        }
    }

    /// Sends the last frame (`Error` or `GoAway`), waits for the client to receive what is
    /// queued, and closes the connection with the reason's code.
    async fn finish(&mut self, reason: CloseReason) {
        self.stop_forwarding();
        match &reason {
            CloseReason::Left => {
                if let Some(peer) = self.peer {
                    info!(%peer, remote = %self.remote, "peer left");
                }
            }
            CloseReason::Rejected { code, message } => {
                info!(peer = ?self.peer, remote = %self.remote, %code, %message, "closing connection");
            }
            CloseReason::Lost { .. } | CloseReason::ShuttingDown => {}
        }
        let patience = match reason {
            // Nobody to flush to.
            CloseReason::Lost { .. } => None,
            CloseReason::ShuttingDown => Some(self.shared.limits.shutdown_grace),
            CloseReason::Left | CloseReason::Rejected { .. } => Some(ERROR_FLUSH_TIMEOUT),
        };
        if let (Some(writer), Some(patience)) = (self.writer.take(), patience) {
            if let Some(frame) = reason.final_frame() {
                writer.queue().offer(frame.to_bytes());
            }
            writer.finish(patience).await;
        }
        if let Some((code, message)) = reason.quic_close() {
            self.connection
                .close(application_code(code), message.as_bytes());
        }
    }
}

/// Completes when the revocation list changes; never without a watcher (or once it is gone).
async fn revocation_changed(revocations: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match revocations {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *revocations = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Completes at `deadline`; never when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A short, non-reversible tag of a room id for logs (room ids may derive from secrets).
fn room_tag(room: &RoomId) -> String {
    crate::cert::fingerprint(room)[..8].to_owned()
}
