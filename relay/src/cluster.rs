//! The relays' cluster protocol, without I/O: node ids (which prefix every peer id a clustered
//! relay assigns), the NATS subject of a room, and the messages relays exchange about a room
//! (their members, signals, media datagrams). The NATS shell (`nats_link`) only moves these
//! bytes; docs/RELAY.md describes them for operators.
//!
//! Message layout (all integers big-endian), on subject `<prefix>.room.<32 hex>`:
//! `version (1) · kind (1) · node (2) · body`, where the body is
//! - `Members` (1): `count (2)` then per member `peer (4) · has_name (1) · [len (1) · utf-8]`:
//!   the full list of the sending node's members in the room (empty once its last one left);
//! - `Signal` (2): `from (4) · to (4) · payload`: a client's signal (`to` 0 = everyone);
//! - `Datagram` (3): a client's media datagram, its sender already stamped by its relay.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use vcall_proto::PeerId;
use vcall_proto::control::{MAX_NAME_LEN, RosterEntry, truncate_utf8};

/// The version byte of every cluster message.
pub const CLUSTER_VERSION: u8 = 1;
/// Bits of a peer id below the node id: a node assigns up to 2^20 ids before it wraps.
pub const NODE_SHIFT: u32 = 20;
/// Largest node id (12 bits: the top of a 32-bit peer id).
pub const MAX_NODE_ID: u16 = 4095;
/// Members one `Members` message may list.
pub const MAX_MEMBERS_PER_MESSAGE: usize = 4096;

const KIND_MEMBERS: u8 = 1;
const KIND_SIGNAL: u8 = 2;
const KIND_DATAGRAM: u8 = 3;
const HEADER_LEN: usize = 4;

/// One relay of a cluster: 1 to [`MAX_NODE_ID`], unique within the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u16);

/// A node id outside 1..=4095.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node id must be a number from 1 to {MAX_NODE_ID}, got {0:?}")]
pub struct BadNodeId(pub String);

impl NodeId {
    /// `Some` for 1..=4095.
    pub fn new(id: u16) -> Option<Self> {
        (1..=MAX_NODE_ID).contains(&id).then_some(Self(id))
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The node whose prefix `peer` carries (`None` for ids of an unclustered relay).
    pub fn of_peer(peer: PeerId) -> Option<Self> {
        u16::try_from(peer.0 >> NODE_SHIFT).ok().and_then(Self::new)
    }

    /// The peer id this node assigns for its `counter`th client (`counter` below 2^20).
    pub fn peer(self, counter: u32) -> PeerId {
        PeerId((u32::from(self.0) << NODE_SHIFT) | (counter & ((1 << NODE_SHIFT) - 1)))
    }
}

impl FromStr for NodeId {
    type Err = BadNodeId;
    fn from_str(s: &str) -> Result<Self, BadNodeId> {
        s.trim()
            .parse::<u16>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| BadNodeId(s.to_owned()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The NATS subject carrying everything about `room`: derived from the (already opaque) room
/// id by SHA-256, so NATS and its operators never see the id itself.
pub fn room_subject(prefix: &str, room: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, room);
    let mut subject = String::with_capacity(prefix.len() + 6 + 32);
    subject.push_str(prefix);
    subject.push_str(".room.");
    for byte in &digest.as_ref()[..16] {
        subject.push_str(&format!("{byte:02x}"));
    }
    subject
}

/// What one relay tells the others about a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMessage {
    /// Every member `node` has in the room now.
    Members {
        node: NodeId,
        members: Vec<RosterEntry>,
    },
    /// A signal from `node`'s client `from`, to `to` (`PeerId::NONE`: everyone).
    Signal {
        node: NodeId,
        from: PeerId,
        to: PeerId,
        payload: Bytes,
    },
    /// A media datagram from one of `node`'s clients (its header names the sender).
    Datagram { node: NodeId, datagram: Bytes },
}

/// Why bytes from NATS are not a cluster message (they are dropped and counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterDecodeError {
    #[error("message shorter than its header or body")]
    Truncated,
    #[error("cluster message version {0} (this relay speaks {CLUSTER_VERSION})")]
    Version(u8),
    #[error("unknown cluster message kind {0}")]
    Kind(u8),
    #[error("node id {0} out of range")]
    Node(u16),
    #[error("{0} members in one message (at most {MAX_MEMBERS_PER_MESSAGE})")]
    TooManyMembers(usize),
    #[error("a member name is not valid UTF-8 or is longer than {MAX_NAME_LEN} bytes")]
    BadName,
    #[error("{0} bytes after the last member")]
    Trailing(usize),
}

impl ClusterMessage {
    /// The node that sent the message.
    pub fn node(&self) -> NodeId {
        match self {
            Self::Members { node, .. }
            | Self::Signal { node, .. }
            | Self::Datagram { node, .. } => *node,
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        let header = |out: &mut BytesMut, kind: u8, node: NodeId| {
            out.put_u8(CLUSTER_VERSION);
            out.put_u8(kind);
            out.put_u16(node.0);
        };
        match self {
            Self::Members { node, members } => {
                out.reserve(HEADER_LEN + 2 + members.len() * 16);
                header(&mut out, KIND_MEMBERS, *node);
                let members = &members[..members.len().min(MAX_MEMBERS_PER_MESSAGE)];
                out.put_u16(members.len() as u16);
                for member in members {
                    out.put_u32(member.peer.0);
                    match &member.name {
                        Some(name) => {
                            let name = truncate_utf8(name, MAX_NAME_LEN);
                            out.put_u8(1);
                            out.put_u8(name.len() as u8);
                            out.put_slice(name.as_bytes());
                        }
                        None => out.put_u8(0),
                    }
                }
            }
            Self::Signal {
                node,
                from,
                to,
                payload,
            } => {
                out.reserve(HEADER_LEN + 8 + payload.len());
                header(&mut out, KIND_SIGNAL, *node);
                out.put_u32(from.0);
                out.put_u32(to.0);
                out.put_slice(payload);
            }
            Self::Datagram { node, datagram } => {
                out.reserve(HEADER_LEN + datagram.len());
                header(&mut out, KIND_DATAGRAM, *node);
                out.put_slice(datagram);
            }
        }
        out.freeze()
    }

    /// Parses one message; payloads share `bytes` (no copy).
    pub fn decode(bytes: &Bytes) -> Result<Self, ClusterDecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(ClusterDecodeError::Truncated);
        }
        if bytes[0] != CLUSTER_VERSION {
            return Err(ClusterDecodeError::Version(bytes[0]));
        }
        let raw_node = u16::from_be_bytes([bytes[2], bytes[3]]);
        let node = NodeId::new(raw_node).ok_or(ClusterDecodeError::Node(raw_node))?;
        let body = bytes.slice(HEADER_LEN..);
        match bytes[1] {
            KIND_MEMBERS => decode_members(node, &body),
            KIND_SIGNAL => {
                if body.len() < 8 {
                    return Err(ClusterDecodeError::Truncated);
                }
                Ok(Self::Signal {
                    node,
                    from: PeerId(u32::from_be_bytes(body[0..4].try_into().expect("4 bytes"))),
                    to: PeerId(u32::from_be_bytes(body[4..8].try_into().expect("4 bytes"))),
                    payload: body.slice(8..),
                })
            }
            KIND_DATAGRAM => Ok(Self::Datagram {
                node,
                datagram: body,
            }),
            kind => Err(ClusterDecodeError::Kind(kind)),
        }
    }
}

fn decode_members(node: NodeId, body: &[u8]) -> Result<ClusterMessage, ClusterDecodeError> {
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], ClusterDecodeError> {
        if rest.len() < n {
            return Err(ClusterDecodeError::Truncated);
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = usize::from(u16::from_be_bytes(take(2)?.try_into().expect("2 bytes")));
    if count > MAX_MEMBERS_PER_MESSAGE {
        return Err(ClusterDecodeError::TooManyMembers(count));
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let peer = PeerId(u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")));
        let name = match take(1)?[0] {
            0 => None,
            1 => {
                let len = usize::from(take(1)?[0]);
                if len > MAX_NAME_LEN {
                    return Err(ClusterDecodeError::BadName);
                }
                let name =
                    std::str::from_utf8(take(len)?).map_err(|_| ClusterDecodeError::BadName)?;
                Some(name.to_owned())
            }
            _ => return Err(ClusterDecodeError::BadName),
        };
        members.push(RosterEntry { peer, name });
    }
    if !rest.is_empty() {
        return Err(ClusterDecodeError::Trailing(rest.len()));
    }
    Ok(ClusterMessage::Members { node, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u16) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn node_ids_are_1_to_4095_and_prefix_the_peer_ids_they_assign() {
        assert_eq!(NodeId::new(0), None);
        assert_eq!(NodeId::new(4096), None);
        assert_eq!("17".parse::<NodeId>().unwrap().get(), 17);
        assert!("0".parse::<NodeId>().is_err());
        assert!("relay-a".parse::<NodeId>().is_err());
        let peer = node(3).peer(5);
        assert_eq!(peer, PeerId((3 << 20) | 5));
        assert_eq!(NodeId::of_peer(peer), Some(node(3)));
        assert_eq!(
            NodeId::of_peer(PeerId(7)),
            None,
            "an unclustered relay's ids"
        );
        assert_eq!(
            node(4095).peer(u32::MAX),
            PeerId(u32::MAX),
            "the counter is masked"
        );
    }

    #[test]
    fn a_room_subject_hides_the_room_id_and_differs_per_room() {
        let a = room_subject("vcall", b"room-a");
        assert!(a.starts_with("vcall.room."));
        assert_eq!(a.len(), "vcall.room.".len() + 32);
        assert!(!a.contains("room-a"));
        assert_ne!(a, room_subject("vcall", b"room-b"));
        assert_eq!(a, room_subject("vcall", b"room-a"));
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            ClusterMessage::Members {
                node: node(2),
                members: vec![
                    RosterEntry {
                        peer: node(2).peer(1),
                        name: Some("Bob ✓".into()),
                    },
                    RosterEntry {
                        peer: node(2).peer(9),
                        name: None,
                    },
                ],
            },
            ClusterMessage::Members {
                node: node(2),
                members: vec![],
            },
            ClusterMessage::Signal {
                node: node(1),
                from: node(1).peer(4),
                to: PeerId::NONE,
                payload: Bytes::from_static(b"pubkey"),
            },
            ClusterMessage::Datagram {
                node: node(4095),
                datagram: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
            },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(ClusterMessage::decode(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_their_reason() {
        let good = ClusterMessage::Members {
            node: node(2),
            members: vec![RosterEntry {
                peer: node(2).peer(1),
                name: Some("bob".into()),
            }],
        }
        .encode();
        let decode = |b: &[u8]| ClusterMessage::decode(&Bytes::copy_from_slice(b));
        assert_eq!(decode(&good[..3]), Err(ClusterDecodeError::Truncated));
        assert_eq!(
            decode(&good[..good.len() - 1]),
            Err(ClusterDecodeError::Truncated)
        );
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(ClusterDecodeError::Trailing(1)));
        let mut version = good.to_vec();
        version[0] = 9;
        assert_eq!(decode(&version), Err(ClusterDecodeError::Version(9)));
        let mut kind = good.to_vec();
        kind[1] = 77;
        assert_eq!(decode(&kind), Err(ClusterDecodeError::Kind(77)));
        assert_eq!(
            decode(&[1, 1, 0, 0, 0, 0]),
            Err(ClusterDecodeError::Node(0))
        );
        let mut bad_utf8 = good.to_vec();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(decode(&bad_utf8), Err(ClusterDecodeError::BadName));
        assert_eq!(
            decode(&[1, 1, 0, 1, 0xff, 0xff]),
            Err(ClusterDecodeError::TooManyMembers(65535))
        );
        assert_eq!(
            decode(&[1, 2, 0, 1, 0, 0, 0]),
            Err(ClusterDecodeError::Truncated),
            "a signal without its addresses"
        );
    }
}
