//! How the relay reaches one client: [`PeerLink`], the handle the rooms hold for each member
//! (its control queue, its QUIC connection and its layer gate), and closing a connection with
//! an error code.

use std::sync::Arc;

use bytes::Bytes;
use quinn::{Connection, VarInt};
use vcall_proto::ErrorCode;

use crate::metrics::Metrics;
use crate::shedding::LayerGate;
use crate::writer::ControlQueue;

/// How the relay reaches one joined peer: control frames through its queue, datagrams through
/// its connection.
#[derive(Clone)]
pub(crate) struct PeerLink {
    pub(crate) connection: Connection,
    pub(crate) control: ControlQueue,
    /// Which temporal layers of video this receiver's path takes now.
    pub(crate) layers: Arc<LayerGate>,
}

impl PeerLink {
    /// Queues an encoded control frame; a full queue disconnects the peer (slow consumer).
    pub(crate) fn deliver(&self, frame: Bytes, metrics: &Metrics) -> bool {
        self.control.deliver(frame, &self.connection, metrics)
    }
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

/// The QUIC application close code for a protocol error code (PROTOCOL.md §2: 0 = normal).
pub(crate) fn application_code(code: u16) -> VarInt {
    VarInt::from_u32(u32::from(code))
}

/// Closes a connection with a protocol error code as the QUIC application close code.
pub(crate) fn close_with_code(connection: &Connection, code: ErrorCode, reason: &str) {
    connection.close(application_code(code.to_u16()), reason.as_bytes());
}
