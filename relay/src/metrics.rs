//! Relay counters (lock-free atomics), their Prometheus text rendering, and a tiny HTTP
//! server for `/metrics` and `/healthz`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vcall_proto::ErrorCode;

/// Why a datagram (or one copy of it, for receiver-side reasons) was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Received before the sender's `Welcome` (per datagram).
    NotJoined,
    /// Unparseable header: bad version, kind or flags (per datagram).
    Malformed,
    /// Larger than the protocol's `MAX_DATAGRAM_SIZE` (per datagram).
    Oversized,
    /// Over the sender's datagram or byte rate (per datagram).
    RateLimited,
    /// Addressed to a peer that is not another member of the room (per datagram).
    UnknownTarget,
    /// The receiver's datagram send buffer is full (per receiver).
    Congested,
    /// A video fragment of an upper temporal layer, not sent to a receiver whose path is
    /// congested (per receiver).
    LayerShed,
    /// A base-layer video fragment, not sent to a receiver whose upper layers are shed because
    /// its queue already holds more video than its path lets out in two round trips (per
    /// receiver).
    VideoQueueBound,
    /// Larger than what the receiver's path or datagram limit allows (per receiver).
    TooLargeForPath,
    /// The receiver does not accept datagrams at all (per receiver).
    ReceiverUnsupported,
    /// The receiver's connection is already gone (per receiver).
    ReceiverGone,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 11] = [
        Self::NotJoined,
        Self::Malformed,
        Self::Oversized,
        Self::RateLimited,
        Self::UnknownTarget,
        Self::Congested,
        Self::LayerShed,
        Self::VideoQueueBound,
        Self::TooLargeForPath,
        Self::ReceiverUnsupported,
        Self::ReceiverGone,
    ];

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotJoined => "not_joined",
            Self::Malformed => "malformed",
            Self::Oversized => "oversized",
            Self::RateLimited => "rate_limited",
            Self::UnknownTarget => "unknown_target",
            Self::Congested => "congested",
            Self::LayerShed => "layer_shed",
            Self::VideoQueueBound => "video_queue_bound",
            Self::TooLargeForPath => "too_large_for_path",
            Self::ReceiverUnsupported => "receiver_unsupported",
            Self::ReceiverGone => "receiver_gone",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the relay refused something or disconnected a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The QUIC/TLS handshake failed (e.g. wrong ALPN).
    Handshake,
    UnsupportedVersion,
    Malformed,
    FrameTooLarge,
    RoomFull,
    TooManyRooms,
    JoinTimeout,
    NotJoined,
    UnknownPeer,
    RateLimited,
    SlowConsumer,
    AlreadyJoined,
    BadRoomId,
    /// The QUIC idle timeout expired (the client vanished without closing).
    IdleTimeout,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 14] = [
        Self::Handshake,
        Self::UnsupportedVersion,
        Self::Malformed,
        Self::FrameTooLarge,
        Self::RoomFull,
        Self::TooManyRooms,
        Self::JoinTimeout,
        Self::NotJoined,
        Self::UnknownPeer,
        Self::RateLimited,
        Self::SlowConsumer,
        Self::AlreadyJoined,
        Self::BadRoomId,
        Self::IdleTimeout,
    ];

    /// The reason matching a protocol error code, if it is one the relay sends.
    pub fn from_code(code: ErrorCode) -> Option<Self> {
        Some(match code {
            ErrorCode::UnsupportedVersion => Self::UnsupportedVersion,
            ErrorCode::Malformed => Self::Malformed,
            ErrorCode::FrameTooLarge => Self::FrameTooLarge,
            ErrorCode::RoomFull => Self::RoomFull,
            ErrorCode::TooManyRooms => Self::TooManyRooms,
            ErrorCode::JoinTimeout => Self::JoinTimeout,
            ErrorCode::NotJoined => Self::NotJoined,
            ErrorCode::UnknownPeer => Self::UnknownPeer,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::SlowConsumer => Self::SlowConsumer,
            ErrorCode::AlreadyJoined => Self::AlreadyJoined,
            ErrorCode::BadRoomId => Self::BadRoomId,
            ErrorCode::IdleTimeout => Self::IdleTimeout,
            ErrorCode::ShuttingDown | ErrorCode::Internal | ErrorCode::Other(_) => return None,
        })
    }

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Malformed => "malformed",
            Self::FrameTooLarge => "frame_too_large",
            Self::RoomFull => "room_full",
            Self::TooManyRooms => "too_many_rooms",
            Self::JoinTimeout => "join_timeout",
            Self::NotJoined => "not_joined",
            Self::UnknownPeer => "unknown_peer",
            Self::RateLimited => "rate_limited",
            Self::SlowConsumer => "slow_consumer",
            Self::AlreadyJoined => "already_joined",
            Self::BadRoomId => "bad_room_id",
            Self::IdleTimeout => "idle_timeout",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a message to or from the cluster was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterDrop {
    /// The queue towards NATS was full (NATS slow).
    QueueFull,
    /// The link to NATS was down.
    LinkDown,
    /// Bytes from NATS that are not a cluster message.
    Malformed,
    /// A message naming a peer its node does not own, or a sender its node never announced.
    Unverified,
}

impl ClusterDrop {
    /// Every reason, in label order.
    pub const ALL: [ClusterDrop; 4] = [
        Self::QueueFull,
        Self::LinkDown,
        Self::Malformed,
        Self::Unverified,
    ];

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::LinkDown => "link_down",
            Self::Malformed => "malformed",
            Self::Unverified => "unverified",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter and gauge the relay exports.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_accepted: Counter,
    connections_open: AtomicU64,
    rooms: AtomicU64,
    peers: AtomicU64,
    joins: Counter,
    leaves: Counter,
    datagrams_received: Counter,
    datagram_bytes_received: Counter,
    datagrams_forwarded: Counter,
    datagram_bytes_forwarded: Counter,
    datagrams_dropped: [Counter; DropReason::ALL.len()],
    datagram_bytes_dropped: [Counter; DropReason::ALL.len()],
    control_frames_received: Counter,
    signals_forwarded: Counter,
    rejections: [Counter; RejectReason::ALL.len()],
    cluster_enabled: AtomicBool,
    cluster_connected: AtomicBool,
    cluster_messages_out: Counter,
    cluster_messages_in: Counter,
    cluster_dropped: [Counter; ClusterDrop::ALL.len()],
    remote_members: AtomicU64,
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_accepted.add(1);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn set_occupancy(&self, rooms: usize, peers: usize) {
        self.rooms.store(rooms as u64, Ordering::Relaxed);
        self.peers.store(peers as u64, Ordering::Relaxed);
    }

    pub(crate) fn joined(&self) {
        self.joins.add(1);
    }

    pub(crate) fn left(&self) {
        self.leaves.add(1);
    }

    pub(crate) fn datagram_received(&self, len: usize) {
        self.datagrams_received.add(1);
        self.datagram_bytes_received.add(len as u64);
    }

    pub(crate) fn datagram_forwarded(&self, len: usize) {
        self.datagrams_forwarded.add(1);
        self.datagram_bytes_forwarded.add(len as u64);
    }

    pub(crate) fn datagram_dropped(&self, reason: DropReason, len: usize) {
        self.datagrams_dropped[reason.index()].add(1);
        self.datagram_bytes_dropped[reason.index()].add(len as u64);
    }

    pub(crate) fn control_frame_received(&self) {
        self.control_frames_received.add(1);
    }

    pub(crate) fn signal_copies_queued(&self, copies: usize) {
        self.signals_forwarded.add(copies as u64);
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejections[reason.index()].add(1);
    }

    pub(crate) fn cluster_enabled(&self) {
        self.cluster_enabled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_cluster_connected(&self, connected: bool) {
        self.cluster_connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn cluster_message_out(&self) {
        self.cluster_messages_out.add(1);
    }

    pub(crate) fn cluster_message_in(&self) {
        self.cluster_messages_in.add(1);
    }

    pub(crate) fn cluster_dropped(&self, reason: ClusterDrop) {
        self.cluster_dropped[reason.index()].add(1);
    }

    pub(crate) fn set_remote_members(&self, count: usize) {
        self.remote_members.store(count as u64, Ordering::Relaxed);
    }

    /// `None` on a relay of its own; in a cluster, whether its NATS link is up.
    pub fn cluster_link_up(&self) -> Option<bool> {
        self.cluster_enabled
            .load(Ordering::Relaxed)
            .then(|| self.cluster_connected.load(Ordering::Relaxed))
    }

    /// Messages published to the cluster.
    pub fn cluster_messages_out(&self) -> u64 {
        self.cluster_messages_out.get()
    }

    /// Messages received from the cluster.
    pub fn cluster_messages_in(&self) -> u64 {
        self.cluster_messages_in.get()
    }

    /// Cluster messages dropped for `reason`.
    pub fn cluster_drops(&self, reason: ClusterDrop) -> u64 {
        self.cluster_dropped[reason.index()].get()
    }

    /// Members of this relay's rooms that are on other relays.
    pub fn remote_members(&self) -> u64 {
        self.remote_members.load(Ordering::Relaxed)
    }

    /// QUIC connections accepted since start (handshake not necessarily complete).
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.get()
    }

    /// Connections currently open.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Rooms currently existing.
    pub fn rooms(&self) -> u64 {
        self.rooms.load(Ordering::Relaxed)
    }

    /// Peers currently in a room.
    pub fn peers(&self) -> u64 {
        self.peers.load(Ordering::Relaxed)
    }

    /// Successful joins since start.
    pub fn joins(&self) -> u64 {
        self.joins.get()
    }

    /// Datagrams received from clients.
    pub fn datagrams_received(&self) -> u64 {
        self.datagrams_received.get()
    }

    /// Datagram copies handed to QUIC for a receiver.
    pub fn datagrams_forwarded(&self) -> u64 {
        self.datagrams_forwarded.get()
    }

    /// Datagrams (or copies, for receiver-side reasons) dropped for `reason`.
    pub fn datagrams_dropped(&self, reason: DropReason) -> u64 {
        self.datagrams_dropped[reason.index()].get()
    }

    /// Signal copies queued for receivers.
    pub fn signals_forwarded(&self) -> u64 {
        self.signals_forwarded.get()
    }

    /// Refusals and disconnections for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejections[reason.index()].get()
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut single = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        single(
            "vcall_relay_connections_accepted_total",
            "counter",
            "QUIC connections accepted.",
            self.connections_accepted(),
        );
        single(
            "vcall_relay_connections",
            "gauge",
            "Open connections.",
            self.connections_open(),
        );
        single(
            "vcall_relay_rooms",
            "gauge",
            "Rooms with at least one peer.",
            self.rooms(),
        );
        single(
            "vcall_relay_peers",
            "gauge",
            "Peers in a room.",
            self.peers(),
        );
        single(
            "vcall_relay_joins_total",
            "counter",
            "Successful joins.",
            self.joins(),
        );
        single(
            "vcall_relay_leaves_total",
            "counter",
            "Peers that left a room.",
            self.leaves.get(),
        );
        single(
            "vcall_relay_datagrams_received_total",
            "counter",
            "Datagrams received from clients.",
            self.datagrams_received(),
        );
        single(
            "vcall_relay_datagram_bytes_received_total",
            "counter",
            "Datagram bytes received from clients.",
            self.datagram_bytes_received.get(),
        );
        single(
            "vcall_relay_datagrams_forwarded_total",
            "counter",
            "Datagram copies sent to receivers.",
            self.datagrams_forwarded(),
        );
        single(
            "vcall_relay_datagram_bytes_forwarded_total",
            "counter",
            "Datagram bytes sent to receivers.",
            self.datagram_bytes_forwarded.get(),
        );
        single(
            "vcall_relay_control_frames_received_total",
            "counter",
            "Control frames received from clients.",
            self.control_frames_received.get(),
        );
        single(
            "vcall_relay_signals_forwarded_total",
            "counter",
            "Signal copies queued for receivers.",
            self.signals_forwarded(),
        );
        if let Some(up) = self.cluster_link_up() {
            single(
                "vcall_relay_cluster_connected",
                "gauge",
                "1 while the link to the cluster (NATS) is up.",
                u64::from(up),
            );
            single(
                "vcall_relay_cluster_messages_out_total",
                "counter",
                "Messages published to the cluster.",
                self.cluster_messages_out(),
            );
            single(
                "vcall_relay_cluster_messages_in_total",
                "counter",
                "Messages received from the cluster.",
                self.cluster_messages_in(),
            );
            single(
                "vcall_relay_remote_members",
                "gauge",
                "Members of this relay's rooms that are on other relays.",
                self.remote_members(),
            );
        }
        let mut labelled = |name: &str, help: &str, rows: &mut dyn Iterator<Item = (&str, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, value) in rows {
                let _ = writeln!(out, "{name}{{reason=\"{label}\"}} {value}");
            }
        };
        labelled(
            "vcall_relay_datagrams_dropped_total",
            "Datagrams not forwarded, by reason (receiver-side reasons count each copy).",
            &mut DropReason::ALL
                .iter()
                .map(|r| (r.label(), self.datagrams_dropped(*r))),
        );
        labelled(
            "vcall_relay_datagram_bytes_dropped_total",
            "Datagram bytes not forwarded, by reason.",
            &mut DropReason::ALL
                .iter()
                .map(|r| (r.label(), self.datagram_bytes_dropped[r.index()].get())),
        );
        labelled(
            "vcall_relay_rejections_total",
            "Refused requests and disconnected clients, by reason.",
            &mut RejectReason::ALL
                .iter()
                .map(|r| (r.label(), self.rejections(*r))),
        );
        if self.cluster_link_up().is_some() {
            labelled(
                "vcall_relay_cluster_dropped_total",
                "Cluster messages dropped, by reason.",
                &mut ClusterDrop::ALL
                    .iter()
                    .map(|r| (r.label(), self.cluster_drops(*r))),
            );
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is aborted.
pub(crate) async fn serve_http(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Transient accept errors (e.g. out of file descriptors): back off briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
        });
    }
}

/// Reads one request head (up to 4 KiB) and answers it; the connection is then closed.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render_prometheus(),
        ),
        (b"GET", b"/healthz") => match metrics.cluster_link_up() {
            // Local rooms go on, but new members here would not meet those elsewhere: a load
            // balancer should send them to a relay whose cluster link is up.
            Some(false) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "cluster link down\n".to_owned(),
            ),
            Some(true) => (
                "200 OK",
                "text/plain; charset=utf-8",
                "ok (cluster link up)\n".to_owned(),
            ),
            None => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned()),
        },
        (b"GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the metrics listener (separately from serving, so bind errors reach the caller).
pub(crate) async fn bind_http(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_slot_and_label() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }

    #[test]
    fn rendering_shows_counters_with_reason_labels() {
        let m = Metrics::default();
        m.connection_opened();
        m.datagram_received(1100);
        m.datagram_forwarded(1100);
        m.datagram_forwarded(1100);
        m.datagram_dropped(DropReason::Congested, 1100);
        m.rejected(RejectReason::RoomFull);
        let text = m.render_prometheus();
        assert!(text.contains("vcall_relay_connections 1\n"));
        assert!(text.contains("vcall_relay_datagrams_forwarded_total 2\n"));
        assert!(text.contains("vcall_relay_datagram_bytes_forwarded_total 2200\n"));
        assert!(text.contains("vcall_relay_datagrams_dropped_total{reason=\"congested\"} 1\n"));
        assert!(text.contains("vcall_relay_datagrams_dropped_total{reason=\"not_joined\"} 0\n"));
        assert!(text.contains("vcall_relay_rejections_total{reason=\"room_full\"} 1\n"));
        assert!(text.contains("# TYPE vcall_relay_rooms gauge\n"));
    }

    #[test]
    fn error_codes_map_to_reasons() {
        assert_eq!(
            RejectReason::from_code(ErrorCode::SlowConsumer),
            Some(RejectReason::SlowConsumer)
        );
        assert_eq!(RejectReason::from_code(ErrorCode::ShuttingDown), None);
        assert_eq!(RejectReason::from_code(ErrorCode::Other(77)), None);
    }

    #[tokio::test]
    async fn http_endpoint_serves_metrics_and_health() {
        let listener = bind_http("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.joined();
        let server = tokio::spawn(serve_http(listener, Arc::clone(&metrics)));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).await.unwrap();
            response
        };
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(health.ends_with("\r\n\r\nok\n"));
        let scrape = get("/metrics").await;
        assert!(scrape.contains("vcall_relay_joins_total 1\n"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
