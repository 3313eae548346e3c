//! The datagram path of one joined peer: read a datagram, apply the sender's rate limit, check
//! the header and stamp the sender, then hand one shared `Bytes` to every receiver listed in the
//! room's lock-free [`fanout`](crate::fanout) snapshot, shedding upper temporal layers for
//! congested receivers and bounding their queue of video ([`shedding`](crate::shedding)); in a
//! cluster, one copy also goes to the other relays when the room has members there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use quinn::{Connection, SendDatagramError};
use vcall_proto::datagram::{DatagramHeader, DatagramKind, stamp_sender};
use vcall_proto::{ControlFrame, DecodeError, ErrorCode, PeerId};

use crate::config::Limits;
use crate::fanout::{FanoutMember, FanoutReader};
use crate::link::PeerLink;
use crate::metrics::{DropReason, Metrics};
use crate::nats_link::RoomPublisher;
use crate::rate::{CountAndBytes, Throttle};
use crate::shedding::{PathSample, ReceiverPath};
use crate::writer::ControlQueue;

/// At most one "datagrams dropped: rate limited" notice per client per this interval.
const RATE_NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// Forwards one joined peer's datagrams to its room.
pub(crate) struct DatagramForwarder {
    connection: Connection,
    peer: PeerId,
    fanout: FanoutReader<PeerLink>,
    budget: CountAndBytes,
    notice: Throttle,
    /// The sender's own control queue, for the rate-limit notice.
    notices: ControlQueue,
    /// Every connection's datagram send buffer size (bytes), to tell how much is queued.
    send_buffer: usize,
    /// The room's subject in the cluster, when the relay is part of one.
    cluster: Option<RoomPublisher>,
    metrics: Arc<Metrics>,
    /// Bytes from this member counted for its tenant (token mode).
    tenant_bytes: Option<Counter>,
}

/// What a member's access token changes on its datagram path.
#[derive(Debug, Default)]
pub(crate) struct TenantPath {
    /// The token's per-member byte rate, when lower than the relay's.
    pub(crate) max_bytes_per_sec: Option<u64>,
    /// The tenant's byte counter.
    pub(crate) bytes: Option<Counter>,
}

impl DatagramForwarder {
    /// A forwarder for `peer`'s datagrams arriving on `connection`, under the datagram limits.
    pub(crate) fn new(
        connection: Connection,
        peer: PeerId,
        fanout: FanoutReader<PeerLink>,
        limits: &Limits,
        notices: ControlQueue,
        cluster: Option<RoomPublisher>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            connection,
            peer,
            fanout,
            budget: CountAndBytes::new(
                limits.datagrams_per_sec,
                limits.datagram_bytes_per_sec,
                Instant::now(),
            ),
            notice: Throttle::new(RATE_NOTICE_INTERVAL),
            notices,
            send_buffer: limits.datagram_send_buffer,
            cluster,
            metrics,
            tenant_bytes: None,
        }
    }

    /// Applies the member's token: its byte rate when lower than the relay's, and its
    /// tenant's byte counter.
    pub(crate) fn for_tenant(mut self, tenant: TenantPath, limits: &Limits) -> Self {
        let bytes_per_sec = match (limits.datagram_bytes_per_sec, tenant.max_bytes_per_sec) {
            (relay, Some(token)) if relay == 0 || token < relay => token,
            (relay, _) => relay,
        };
        self.budget = CountAndBytes::new(limits.datagrams_per_sec, bytes_per_sec, Instant::now());
        self.tenant_bytes = tenant.bytes;
        self
    }

    /// Forwards until the connection ends (or the task is aborted when the peer leaves).
    pub(crate) async fn run(mut self) {
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
                // Best effort: a full queue means the connection is being closed anyway.
                self.notices.offer(notice.to_bytes());
            }
            return;
        }
        if let Some(bytes) = &self.tenant_bytes {
            bytes.inc_by(len as u64);
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
            Ok(delivery) => {
                deliver_locally(
                    delivery.local,
                    me,
                    &header,
                    &stamped,
                    now,
                    self.send_buffer,
                    &self.metrics,
                );
                if delivery.to_cluster
                    && let Some(cluster) = &self.cluster
                {
                    cluster.datagram(&stamped);
                }
            }
            Err(_) => self
                .metrics
                .datagram_dropped(DropReason::UnknownTarget, len),
        }
    }
}

/// Hands one shared stamped datagram to every member in `members` but its sender, through
/// each receiver's layer gate (used for local senders and for datagrams from the cluster).
pub(crate) fn deliver_locally(
    members: &[FanoutMember<PeerLink>],
    sender: PeerId,
    header: &DatagramHeader,
    stamped: &Bytes,
    now: Instant,
    send_buffer: usize,
    metrics: &Metrics,
) {
    let len = stamped.len();
    for member in members.iter().filter(|m| m.peer != sender) {
        let link = &member.link;
        let verdict = match header.kind {
            DatagramKind::Video => link.layers.admit(
                header.layer,
                now,
                &QuicPath {
                    connection: &link.connection,
                    send_buffer,
                },
            ),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => send_copy(&link.connection, stamped.clone(), metrics),
            Err(reason) => metrics.datagram_dropped(reason, len),
        }
    }
}

/// A receiver's QUIC connection as the shedding policy reads it.
struct QuicPath<'a> {
    connection: &'a Connection,
    /// The datagram send buffer's size, to tell how much of it is in use.
    send_buffer: usize,
}

impl ReceiverPath for QuicPath<'_> {
    fn queued(&self) -> usize {
        self.send_buffer
            .saturating_sub(self.connection.datagram_send_buffer_space())
    }

    fn cwnd(&self) -> u64 {
        self.connection.stats().path.cwnd
    }

    fn stats(&self) -> PathSample {
        let path = self.connection.stats().path;
        PathSample {
            rtt: path.rtt,
            min_rtt: path.min_rtt,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
        }
    }
}

/// Sends one datagram copy to a receiver; congestion and path limits drop it (counted), never
/// fail.
fn send_copy(receiver: &Connection, datagram: Bytes, metrics: &Metrics) {
    let len = datagram.len();
    if receiver.datagram_send_buffer_space() < len {
        metrics.datagram_dropped(DropReason::Congested, len);
        return;
    }
    match receiver.send_datagram(datagram) {
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
