//! Relay counters and gauges (`prometheus-client` metrics: lock-free atomics, one per reason
//! label, so the datagram path never takes a lock) and their OpenMetrics text rendering.
//! `http.rs` serves them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vcall_proto::{DenyReason, ErrorCode};

use crate::access::Access;
use crate::sources::SourceRefusal;

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
    /// Refused or cut by access control (`vcall_relay_access_denied` says why).
    AccessDenied,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 15] = [
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
        Self::AccessDenied,
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
            ErrorCode::AccessDenied => Self::AccessDenied,
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
            Self::AccessDenied => "access_denied",
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

type GaugeU64 = Gauge<u64, AtomicU64>;
type LabelSet = [(&'static str, String); 1];
type ReasonLabel = [(&'static str, &'static str); 1];

/// A counter family labelled by `reason`, with one counter per reason fetched once, so that
/// counting never looks the label up.
#[derive(Debug)]
struct ByReason<const N: usize> {
    family: Family<ReasonLabel, Counter>,
    counters: [Counter; N],
}

impl<const N: usize> ByReason<N> {
    fn new(labels: [&'static str; N]) -> Self {
        let family = Family::<ReasonLabel, Counter>::default();
        let counters = labels.map(|label| family.get_or_create(&[("reason", label)]).clone());
        Self { family, counters }
    }
}

/// Every counter and gauge the relay exports.
#[derive(Debug)]
pub struct Metrics {
    connections_accepted: Counter,
    connections_open: GaugeU64,
    rooms: GaugeU64,
    peers: GaugeU64,
    joins: Counter,
    leaves: Counter,
    datagrams_received: Counter,
    datagram_bytes_received: Counter,
    datagrams_forwarded: Counter,
    datagram_bytes_forwarded: Counter,
    datagrams_dropped: ByReason<{ DropReason::ALL.len() }>,
    datagram_bytes_dropped: ByReason<{ DropReason::ALL.len() }>,
    control_frames_received: Counter,
    signals_forwarded: Counter,
    rejections: ByReason<{ RejectReason::ALL.len() }>,
    cluster_enabled: AtomicBool,
    cluster_connected: AtomicBool,
    cluster_connected_gauge: GaugeU64,
    cluster_messages_out: Counter,
    cluster_messages_in: Counter,
    cluster_dropped: ByReason<{ ClusterDrop::ALL.len() }>,
    remote_members: GaugeU64,
    access_denied: ByReason<{ DenyReason::ALL.len() }>,
    source_refused: ByReason<{ SourceRefusal::ALL.len() }>,
    /// Datagram bytes received from each tenant's members, by token label.
    tenant_bytes: Family<LabelSet, Counter>,
    /// The access policy whose per-label usage `/metrics` shows (token mode).
    access: OnceLock<Arc<Access>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let drop_labels = DropReason::ALL.map(DropReason::label);
        Self {
            connections_accepted: Counter::default(),
            connections_open: GaugeU64::default(),
            rooms: GaugeU64::default(),
            peers: GaugeU64::default(),
            joins: Counter::default(),
            leaves: Counter::default(),
            datagrams_received: Counter::default(),
            datagram_bytes_received: Counter::default(),
            datagrams_forwarded: Counter::default(),
            datagram_bytes_forwarded: Counter::default(),
            datagrams_dropped: ByReason::new(drop_labels),
            datagram_bytes_dropped: ByReason::new(drop_labels),
            control_frames_received: Counter::default(),
            signals_forwarded: Counter::default(),
            rejections: ByReason::new(RejectReason::ALL.map(RejectReason::label)),
            cluster_enabled: AtomicBool::new(false),
            cluster_connected: AtomicBool::new(false),
            cluster_connected_gauge: GaugeU64::default(),
            cluster_messages_out: Counter::default(),
            cluster_messages_in: Counter::default(),
            cluster_dropped: ByReason::new(ClusterDrop::ALL.map(ClusterDrop::label)),
            remote_members: GaugeU64::default(),
            access_denied: ByReason::new(DenyReason::ALL.map(DenyReason::as_str)),
            source_refused: ByReason::new(SourceRefusal::ALL.map(SourceRefusal::label)),
            tenant_bytes: Family::default(),
            access: OnceLock::new(),
        }
    }
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn set_occupancy(&self, rooms: usize, peers: usize) {
        self.rooms.set(rooms as u64);
        self.peers.set(peers as u64);
    }

    pub(crate) fn joined(&self) {
        self.joins.inc();
    }

    pub(crate) fn left(&self) {
        self.leaves.inc();
    }

    pub(crate) fn datagram_received(&self, len: usize) {
        self.datagrams_received.inc();
        self.datagram_bytes_received.inc_by(len as u64);
    }

    pub(crate) fn datagram_forwarded(&self, len: usize) {
        self.datagrams_forwarded.inc();
        self.datagram_bytes_forwarded.inc_by(len as u64);
    }

    pub(crate) fn datagram_dropped(&self, reason: DropReason, len: usize) {
        self.datagrams_dropped.counters[reason.index()].inc();
        self.datagram_bytes_dropped.counters[reason.index()].inc_by(len as u64);
    }

    pub(crate) fn control_frame_received(&self) {
        self.control_frames_received.inc();
    }

    pub(crate) fn signal_copies_queued(&self, copies: usize) {
        self.signals_forwarded.inc_by(copies as u64);
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejections.counters[reason.index()].inc();
    }

    pub(crate) fn access_denied(&self, reason: DenyReason) {
        self.access_denied.counters[reason as usize].inc();
    }

    pub(crate) fn source_refused(&self, reason: SourceRefusal) {
        self.source_refused.counters[reason.index()].inc();
    }

    /// The counter of datagram bytes from members of tenant `label` (fetched once per join;
    /// counting is then one atomic add).
    pub(crate) fn tenant_bytes(&self, label: &str) -> Counter {
        self.tenant_bytes
            .get_or_create(&[("label", label.to_owned())])
            .clone()
    }

    /// Shows this policy's per-label usage in `/metrics`.
    pub(crate) fn watch_access(&self, access: Arc<Access>) {
        let _ = self.access.set(access);
    }

    /// Refusals by access control for `reason`.
    pub fn access_denials(&self, reason: DenyReason) -> u64 {
        self.access_denied.counters[reason as usize].get()
    }

    /// Connections refused by a per-source limit for `reason`.
    pub fn source_refusals(&self, reason: SourceRefusal) -> u64 {
        self.source_refused.counters[reason.index()].get()
    }

    pub(crate) fn cluster_enabled(&self) {
        self.cluster_enabled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_cluster_connected(&self, connected: bool) {
        self.cluster_connected.store(connected, Ordering::Relaxed);
        self.cluster_connected_gauge.set(u64::from(connected));
    }

    pub(crate) fn cluster_message_out(&self) {
        self.cluster_messages_out.inc();
    }

    pub(crate) fn cluster_message_in(&self) {
        self.cluster_messages_in.inc();
    }

    pub(crate) fn cluster_dropped(&self, reason: ClusterDrop) {
        self.cluster_dropped.counters[reason.index()].inc();
    }

    pub(crate) fn set_remote_members(&self, count: usize) {
        self.remote_members.set(count as u64);
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
        self.cluster_dropped.counters[reason.index()].get()
    }

    /// Members of this relay's rooms that are on other relays.
    pub fn remote_members(&self) -> u64 {
        self.remote_members.get()
    }

    /// QUIC connections accepted since start (handshake not necessarily complete).
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.get()
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.get()
    }

    /// Rooms with at least one member now.
    pub fn rooms(&self) -> u64 {
        self.rooms.get()
    }

    /// Peers in a room now.
    pub fn peers(&self) -> u64 {
        self.peers.get()
    }

    /// Successful joins since start.
    pub fn joins(&self) -> u64 {
        self.joins.get()
    }

    /// Datagrams received from clients.
    pub fn datagrams_received(&self) -> u64 {
        self.datagrams_received.get()
    }

    /// Datagram copies handed to QUIC for receivers.
    pub fn datagrams_forwarded(&self) -> u64 {
        self.datagrams_forwarded.get()
    }

    /// Datagrams (or copies, for receiver-side reasons) dropped for `reason`.
    pub fn datagrams_dropped(&self, reason: DropReason) -> u64 {
        self.datagrams_dropped.counters[reason.index()].get()
    }

    /// Signal copies queued for receivers.
    pub fn signals_forwarded(&self) -> u64 {
        self.signals_forwarded.get()
    }

    /// Refusals and disconnections for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejections.counters[reason.index()].get()
    }

    /// The OpenMetrics text exposition (what Prometheus scrapes from `/metrics`). Counter
    /// names get their `_total` suffix from the encoder.
    pub fn render_prometheus(&self) -> String {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str, c: &Counter| {
            registry.register(name, help, c.clone());
        };
        counter(
            "vcall_relay_connections_accepted",
            "QUIC connections accepted.",
            &self.connections_accepted,
        );
        counter("vcall_relay_joins", "Successful joins.", &self.joins);
        counter(
            "vcall_relay_leaves",
            "Peers that left a room.",
            &self.leaves,
        );
        counter(
            "vcall_relay_datagrams_received",
            "Datagrams received from clients.",
            &self.datagrams_received,
        );
        counter(
            "vcall_relay_datagram_bytes_received",
            "Datagram bytes received from clients.",
            &self.datagram_bytes_received,
        );
        counter(
            "vcall_relay_datagrams_forwarded",
            "Datagram copies sent to receivers.",
            &self.datagrams_forwarded,
        );
        counter(
            "vcall_relay_datagram_bytes_forwarded",
            "Datagram bytes sent to receivers.",
            &self.datagram_bytes_forwarded,
        );
        counter(
            "vcall_relay_control_frames_received",
            "Control frames received from clients.",
            &self.control_frames_received,
        );
        counter(
            "vcall_relay_signals_forwarded",
            "Signal copies queued for receivers.",
            &self.signals_forwarded,
        );
        registry.register(
            "vcall_relay_connections",
            "Open connections.",
            self.connections_open.clone(),
        );
        registry.register(
            "vcall_relay_rooms",
            "Rooms with at least one peer.",
            self.rooms.clone(),
        );
        registry.register("vcall_relay_peers", "Peers in a room.", self.peers.clone());
        registry.register(
            "vcall_relay_datagrams_dropped",
            "Datagrams not forwarded, by reason (receiver-side reasons count each copy).",
            self.datagrams_dropped.family.clone(),
        );
        registry.register(
            "vcall_relay_datagram_bytes_dropped",
            "Datagram bytes not forwarded, by reason.",
            self.datagram_bytes_dropped.family.clone(),
        );
        registry.register(
            "vcall_relay_rejections",
            "Refused requests and disconnected clients, by reason.",
            self.rejections.family.clone(),
        );
        registry.register(
            "vcall_relay_source_refused",
            "Connections refused by a per-source limit, by reason.",
            self.source_refused.family.clone(),
        );
        if let Some(access) = self.access.get().filter(|a| a.is_token_mode()) {
            registry.register(
                "vcall_relay_access_denied",
                "Joins refused and members cut by access control, by reason.",
                self.access_denied.family.clone(),
            );
            let members = Family::<LabelSet, GaugeU64>::default();
            let rooms = Family::<LabelSet, GaugeU64>::default();
            for (label, usage) in access.usage_by_label() {
                let key = [("label", label)];
                members.get_or_create(&key).set(usage.members);
                rooms.get_or_create(&key).set(usage.rooms);
            }
            registry.register(
                "vcall_relay_tenant_members",
                "Members in a room now, by token label.",
                members,
            );
            registry.register(
                "vcall_relay_tenant_rooms",
                "Rooms with a member of the tenant now, by token label.",
                rooms,
            );
            registry.register(
                "vcall_relay_tenant_datagram_bytes",
                "Datagram bytes received from the tenant's members, by token label.",
                self.tenant_bytes.clone(),
            );
        }
        if self.cluster_link_up().is_some() {
            registry.register(
                "vcall_relay_cluster_connected",
                "1 while the link to the cluster (NATS) is up.",
                self.cluster_connected_gauge.clone(),
            );
            registry.register(
                "vcall_relay_cluster_messages_out",
                "Messages published to the cluster.",
                self.cluster_messages_out.clone(),
            );
            registry.register(
                "vcall_relay_cluster_messages_in",
                "Messages received from the cluster.",
                self.cluster_messages_in.clone(),
            );
            registry.register(
                "vcall_relay_remote_members",
                "Members of this relay's rooms that are on other relays.",
                self.remote_members.clone(),
            );
            registry.register(
                "vcall_relay_cluster_dropped",
                "Cluster messages dropped, by reason.",
                self.cluster_dropped.family.clone(),
            );
        }
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
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
        assert!(
            !text.contains("cluster"),
            "a relay of its own shows no cluster metrics"
        );
        m.cluster_enabled();
        m.set_cluster_connected(true);
        m.cluster_dropped(ClusterDrop::Unverified);
        let text = m.render_prometheus();
        assert!(text.contains("vcall_relay_cluster_connected 1\n"));
        assert!(text.contains("vcall_relay_cluster_dropped_total{reason=\"unverified\"} 1\n"));
        assert!(text.ends_with("# EOF\n"));
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
}
