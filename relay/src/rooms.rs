//! Who is in which room and who receives what: the relay's decisions, without any I/O.
//!
//! [`Rooms`] admits peers (enforcing the room and peer limits), assigns peer ids, tells the
//! shell whom to notify on a join or a leave, routes signals, and publishes each room's member
//! list into a [`FanoutCell`] for the lock-free datagram path. It is generic over the link type
//! `L` the shell uses to reach a peer (a connection handle in the server, a plain value in tests).
//!
//! In a cluster ([`Rooms::clustered`]) a room may also have members on other relays: what the
//! other nodes say about a room comes in through `cluster_*` calls (with the time, for presence
//! expiry), and what they must hear queues up as [`ClusterOut`] for the shell to publish.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vcall_proto::control::{MAX_ROOM_ID_LEN, RosterEntry};
use vcall_proto::{ErrorCode, PeerId};

use crate::cluster::NodeId;
use crate::fanout::{FanoutCell, FanoutMember, FanoutReader, RemotePeer};

/// A node that has said nothing about a room for this long has its members removed from it
/// (nodes repeat their member lists every [`PRESENCE_INTERVAL`]).
pub const PRESENCE_EXPIRY: Duration = Duration::from_secs(3);
/// How often a clustered relay repeats its member list of each room it has members in.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

/// A room id as the client sent it: opaque bytes (often derived from the room's secret).
pub type RoomId = Bytes;

/// Room admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms that may exist at once.
    pub max_rooms: usize,
    /// Members one room may hold.
    pub max_peers_per_room: usize,
}

/// Why a peer was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("room is full ({max} peers)")]
    RoomFull { max: usize },
    #[error("the relay already hosts its maximum of {max} rooms")]
    TooManyRooms { max: usize },
    #[error("room id must be 1 to {MAX_ROOM_ID_LEN} bytes, got {len}")]
    BadRoomId { len: usize },
}

impl JoinError {
    /// The protocol error code sent to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::RoomFull { .. } => ErrorCode::RoomFull,
            Self::TooManyRooms { .. } => ErrorCode::TooManyRooms,
            Self::BadRoomId { .. } => ErrorCode::BadRoomId,
        }
    }
}

/// Why a signal cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the sender has not joined a room")]
    NotJoined,
    #[error("peer {0} is not another member of this room")]
    UnknownPeer(PeerId),
}

impl RouteError {
    /// The protocol error code sent to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJoined => ErrorCode::NotJoined,
            Self::UnknownPeer(_) => ErrorCode::UnknownPeer,
        }
    }
}

/// The outcome of a successful join.
#[derive(Debug)]
pub struct Joined<L> {
    /// The id assigned to the new peer.
    pub peer: PeerId,
    /// The other members, in join order (for the Welcome frame).
    pub roster: Vec<RosterEntry>,
    /// Links of the other members, to be told `PeerJoined`.
    pub notify: Vec<L>,
    /// The new peer's view of the room's member list, for forwarding its datagrams.
    pub fanout: FanoutReader<L>,
}

/// The outcome of a leave.
#[derive(Debug)]
pub struct Left<L> {
    /// The room that was left.
    pub room: RoomId,
    /// Links of the remaining members, to be told `PeerLeft`.
    pub notify: Vec<L>,
    /// True when the room became empty and was removed.
    pub room_closed: bool,
}

/// What the other relays of the cluster must hear, in order (drained by the shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOut {
    /// This relay has members in `room` now: listen to what the others say about it.
    Subscribe(RoomId),
    /// This relay's last member of `room` left: stop listening.
    Unsubscribe(RoomId),
    /// This relay's members of `room` (the full list; empty after the last one left).
    Members {
        room: RoomId,
        members: Vec<RosterEntry>,
    },
    /// A signal from this relay's client `from` to `to` (`PeerId::NONE`: everyone).
    Signal {
        room: RoomId,
        from: PeerId,
        to: PeerId,
        payload: Bytes,
    },
}

/// How a room's membership changed by what another node said (or by its silence).
#[derive(Debug, PartialEq, Eq)]
pub struct RemoteChange<L> {
    pub room: RoomId,
    /// Members that appeared, to announce with `PeerJoined`.
    pub joined: Vec<RosterEntry>,
    /// Members that are gone, to announce with `PeerLeft`.
    pub left: Vec<PeerId>,
    /// This relay's members of the room, to be told.
    pub notify: Vec<L>,
    /// The node was new to this room: answer with this relay's members at once, so that it
    /// need not wait for the next repetition.
    pub answer: bool,
}

/// Why another node's member list was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClusterRefusal {
    #[error("node {node} listed peer {peer}, which is not one of its ids")]
    ForeignPeer { node: NodeId, peer: PeerId },
}

#[derive(Debug)]
struct Member<L> {
    name: Option<String>,
    link: L,
}

#[derive(Debug)]
struct RemoteMember {
    node: NodeId,
    name: Option<String>,
}

#[derive(Debug)]
struct Room<L> {
    /// Keyed by peer id; ids are assigned in increasing order, so this is join order.
    members: BTreeMap<PeerId, Member<L>>,
    /// Members on other relays of the cluster.
    remote: BTreeMap<PeerId, RemoteMember>,
    /// When each other node last spoke about this room.
    nodes_heard: HashMap<NodeId, Instant>,
    fanout: Arc<FanoutCell<L>>,
}

impl<L: Clone> Room<L> {
    fn publish(&self) {
        let list: Arc<[FanoutMember<L>]> = self
            .members
            .iter()
            .map(|(&peer, m)| FanoutMember {
                peer,
                link: m.link.clone(),
            })
            .collect();
        let remote: Arc<[RemotePeer]> = self
            .remote
            .iter()
            .map(|(&peer, m)| RemotePeer { peer, node: m.node })
            .collect();
        self.fanout.publish_with_remote(list, remote);
    }

    fn all_links(&self) -> Vec<L> {
        self.members.values().map(|m| m.link.clone()).collect()
    }

    fn local_roster(&self) -> Vec<RosterEntry> {
        self.members
            .iter()
            .map(|(&peer, m)| RosterEntry {
                peer,
                name: m.name.clone(),
            })
            .collect()
    }

    fn size(&self) -> usize {
        self.members.len() + self.remote.len()
    }

    /// Removes every member of `node`; the ids removed.
    fn forget_node(&mut self, node: NodeId) -> Vec<PeerId> {
        self.nodes_heard.remove(&node);
        let gone: Vec<PeerId> = self
            .remote
            .iter()
            .filter(|(_, m)| m.node == node)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in &gone {
            self.remote.remove(peer);
        }
        gone
    }

    fn links_except(&self, peer: PeerId) -> Vec<L> {
        self.members
            .iter()
            .filter(|(id, _)| **id != peer)
            .map(|(_, m)| m.link.clone())
            .collect()
    }
}

/// Every room on the relay.
#[derive(Debug)]
pub struct Rooms<L> {
    limits: RoomLimits,
    rooms: HashMap<RoomId, Room<L>>,
    room_of_peer: HashMap<PeerId, RoomId>,
    last_peer_id: u32,
    /// This relay's node id when it is part of a cluster (it prefixes every peer id).
    node: Option<NodeId>,
    cluster_out: VecDeque<ClusterOut>,
}

impl<L: Clone> Rooms<L> {
    /// No rooms yet, on a relay of its own.
    pub fn new(limits: RoomLimits) -> Self {
        Self {
            limits,
            rooms: HashMap::new(),
            room_of_peer: HashMap::new(),
            last_peer_id: 0,
            node: None,
            cluster_out: VecDeque::new(),
        }
    }

    /// No rooms yet, on relay `node` of a cluster: peer ids carry the node's prefix and every
    /// change the other relays must hear queues up for [`poll_cluster`](Self::poll_cluster).
    pub fn clustered(limits: RoomLimits, node: NodeId) -> Self {
        Self {
            node: Some(node),
            ..Self::new(limits)
        }
    }

    /// This relay's node id, if clustered.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// The next message for the other relays.
    pub fn poll_cluster(&mut self) -> Option<ClusterOut> {
        self.cluster_out.pop_front()
    }

    fn tell_cluster(&mut self, out: ClusterOut) {
        if self.node.is_some() {
            self.cluster_out.push_back(out);
        }
    }

    /// Admits a new peer into `room` (created on first join), reachable through `link`.
    pub fn join(
        &mut self,
        room: RoomId,
        name: Option<String>,
        link: L,
    ) -> Result<Joined<L>, JoinError> {
        if room.is_empty() || room.len() > MAX_ROOM_ID_LEN {
            return Err(JoinError::BadRoomId { len: room.len() });
        }
        match self.rooms.get(&room) {
            Some(existing) if existing.size() >= self.limits.max_peers_per_room => {
                return Err(JoinError::RoomFull {
                    max: self.limits.max_peers_per_room,
                });
            }
            None if self.rooms.len() >= self.limits.max_rooms => {
                return Err(JoinError::TooManyRooms {
                    max: self.limits.max_rooms,
                });
            }
            None if self.limits.max_peers_per_room == 0 => {
                return Err(JoinError::RoomFull { max: 0 });
            }
            _ => {}
        }
        let peer = self.next_peer_id();
        let new_room = !self.rooms.contains_key(&room);
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            members: BTreeMap::new(),
            remote: BTreeMap::new(),
            nodes_heard: HashMap::new(),
            fanout: Arc::new(FanoutCell::new()),
        });
        let mut roster = entry.local_roster();
        roster.extend(entry.remote.iter().map(|(&peer, m)| RosterEntry {
            peer,
            name: m.name.clone(),
        }));
        roster.sort_by_key(|e| e.peer);
        let notify = entry.links_except(peer);
        entry.members.insert(peer, Member { name, link });
        entry.publish();
        let fanout = FanoutReader::new(Arc::clone(&entry.fanout));
        let members = entry.local_roster();
        self.room_of_peer.insert(peer, room.clone());
        if new_room {
            self.tell_cluster(ClusterOut::Subscribe(room.clone()));
        }
        self.tell_cluster(ClusterOut::Members { room, members });
        Ok(Joined {
            peer,
            roster,
            notify,
            fanout,
        })
    }

    /// Removes `peer` from its room; `None` if it was not in one.
    pub fn leave(&mut self, peer: PeerId) -> Option<Left<L>> {
        let room_id = self.room_of_peer.remove(&peer)?;
        let room = self.rooms.get_mut(&room_id)?;
        room.members.remove(&peer);
        room.publish();
        let notify = room.links_except(peer);
        let room_closed = room.members.is_empty();
        let members = room.local_roster();
        if room_closed {
            self.rooms.remove(&room_id);
        }
        self.tell_cluster(ClusterOut::Members {
            room: room_id.clone(),
            members,
        });
        if room_closed {
            self.tell_cluster(ClusterOut::Unsubscribe(room_id.clone()));
        }
        Some(Left {
            room: room_id,
            notify,
            room_closed,
        })
    }

    /// Who on this relay receives a signal from `from` addressed `to` (`PeerId::NONE`:
    /// everyone else). In a cluster, a signal for everyone, or for a member on another relay,
    /// also queues for the cluster.
    pub fn route_signal(
        &mut self,
        from: PeerId,
        to: PeerId,
        payload: &Bytes,
    ) -> Result<Vec<L>, RouteError> {
        let room_id = self.room_of_peer.get(&from).ok_or(RouteError::NotJoined)?;
        let room = self.rooms.get(room_id).ok_or(RouteError::NotJoined)?;
        let (links, cross) = if to == PeerId::NONE {
            (room.links_except(from), true)
        } else if to == from {
            return Err(RouteError::UnknownPeer(to));
        } else if let Some(member) = room.members.get(&to) {
            (vec![member.link.clone()], false)
        } else if room.remote.contains_key(&to) {
            (Vec::new(), true)
        } else {
            return Err(RouteError::UnknownPeer(to));
        };
        if cross {
            let room = room_id.clone();
            self.tell_cluster(ClusterOut::Signal {
                room,
                from,
                to,
                payload: payload.clone(),
            });
        }
        Ok(links)
    }

    /// Applies another node's member list of `room`: members that appeared or vanished.
    /// `None` when nothing changed for this relay (it has no members there, or the message is
    /// this relay's own).
    pub fn cluster_members(
        &mut self,
        room_id: &RoomId,
        node: NodeId,
        members: &[RosterEntry],
        now: Instant,
    ) -> Result<Option<RemoteChange<L>>, ClusterRefusal> {
        if self.node == Some(node) {
            return Ok(None);
        }
        if let Some(entry) = members
            .iter()
            .find(|m| NodeId::of_peer(m.peer) != Some(node))
        {
            return Err(ClusterRefusal::ForeignPeer {
                node,
                peer: entry.peer,
            });
        }
        let max = self.limits.max_peers_per_room;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return Ok(None);
        };
        let answer = !room.nodes_heard.contains_key(&node);
        let left: Vec<PeerId> = room
            .remote
            .iter()
            .filter(|(peer, m)| m.node == node && !members.iter().any(|e| e.peer == **peer))
            .map(|(&peer, _)| peer)
            .collect();
        for peer in &left {
            room.remote.remove(peer);
        }
        let mut joined = Vec::new();
        for entry in members {
            if room.remote.contains_key(&entry.peer) {
                continue;
            }
            if room.size() >= max {
                // The room is full: members beyond the limit stay unknown here.
                break;
            }
            room.remote.insert(
                entry.peer,
                RemoteMember {
                    node,
                    name: entry.name.clone(),
                },
            );
            joined.push(entry.clone());
        }
        if members.is_empty() {
            room.nodes_heard.remove(&node);
        } else {
            room.nodes_heard.insert(node, now);
        }
        if !joined.is_empty() || !left.is_empty() {
            room.publish();
        }
        if joined.is_empty() && left.is_empty() && !answer {
            return Ok(None);
        }
        Ok(Some(RemoteChange {
            room: room_id.clone(),
            joined,
            left,
            notify: room.all_links(),
            answer: answer && !members.is_empty(),
        }))
    }

    /// Who on this relay receives a signal that `node`'s client `from` sent in `room_id` to
    /// `to`. Empty when `from` is not a member `node` announced there, or `to` is not here.
    pub fn cluster_signal(
        &self,
        room_id: &RoomId,
        node: NodeId,
        from: PeerId,
        to: PeerId,
    ) -> Vec<L> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        if room.remote.get(&from).is_none_or(|m| m.node != node) {
            return Vec::new();
        }
        if to == PeerId::NONE {
            return room.all_links();
        }
        room.members
            .get(&to)
            .map(|m| vec![m.link.clone()])
            .unwrap_or_default()
    }

    /// Removes the members of nodes that have been silent about a room for
    /// [`PRESENCE_EXPIRY`] (a relay that died or lost its link to the cluster).
    pub fn expire_nodes(&mut self, now: Instant) -> Vec<RemoteChange<L>> {
        let mut changes = Vec::new();
        for (room_id, room) in &mut self.rooms {
            let silent: Vec<NodeId> = room
                .nodes_heard
                .iter()
                .filter(|(_, heard)| now.saturating_duration_since(**heard) >= PRESENCE_EXPIRY)
                .map(|(&node, _)| node)
                .collect();
            if silent.is_empty() {
                continue;
            }
            let mut left = Vec::new();
            for node in silent {
                left.extend(room.forget_node(node));
            }
            room.publish();
            if !left.is_empty() {
                changes.push(RemoteChange {
                    room: room_id.clone(),
                    joined: Vec::new(),
                    left,
                    notify: room.all_links(),
                    answer: false,
                });
            }
        }
        changes
    }

    /// This relay's members of every room it has members in (the periodic presence).
    pub fn local_member_lists(&self) -> Vec<(RoomId, Vec<RosterEntry>)> {
        self.rooms
            .iter()
            .map(|(id, room)| (id.clone(), room.local_roster()))
            .collect()
    }

    /// This relay's members of `room`.
    pub fn local_members(&self, room: &RoomId) -> Vec<RosterEntry> {
        self.rooms
            .get(room)
            .map(Room::local_roster)
            .unwrap_or_default()
    }

    /// A reader of `room`'s member lists, for datagrams arriving from the cluster.
    pub fn fanout_of(&self, room: &RoomId) -> Option<FanoutReader<L>> {
        self.rooms
            .get(room)
            .map(|r| FanoutReader::new(Arc::clone(&r.fanout)))
    }

    /// Members of all rooms that are on other relays.
    pub fn remote_member_count(&self) -> usize {
        self.rooms.values().map(|r| r.remote.len()).sum()
    }

    /// The room `peer` is in.
    pub fn room_of(&self, peer: PeerId) -> Option<&RoomId> {
        self.room_of_peer.get(&peer)
    }

    /// Rooms that currently exist (every one has at least one member).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Peers currently in a room.
    pub fn peer_count(&self) -> usize {
        self.room_of_peer.len()
    }

    /// The admission limits in force.
    pub fn limits(&self) -> RoomLimits {
        self.limits
    }

    /// The next unused, non-zero peer id (ids are not reused until the counter wraps); in a
    /// cluster, carrying this node's prefix.
    fn next_peer_id(&mut self) -> PeerId {
        loop {
            self.last_peer_id = self.last_peer_id.wrapping_add(1);
            let candidate = match self.node {
                None => PeerId(self.last_peer_id),
                Some(_) if self.last_peer_id & ((1 << crate::cluster::NODE_SHIFT) - 1) == 0 => {
                    continue;
                }
                Some(node) => node.peer(self.last_peer_id),
            };
            if candidate != PeerId::NONE && !self.room_of_peer.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RoomLimits = RoomLimits {
        max_rooms: 2,
        max_peers_per_room: 3,
    };

    fn room(name: &'static str) -> RoomId {
        Bytes::from_static(name.as_bytes())
    }

    /// Links are plain labels in these tests.
    fn join(
        rooms: &mut Rooms<&'static str>,
        r: &'static str,
        who: &'static str,
    ) -> Joined<&'static str> {
        rooms.join(room(r), Some(who.to_owned()), who).unwrap()
    }

    #[test]
    fn joins_assign_fresh_ids_and_announce_to_the_others() {
        let mut rooms = Rooms::new(LIMITS);
        let alice = join(&mut rooms, "a", "alice");
        assert_eq!(alice.peer, PeerId(1));
        assert!(alice.roster.is_empty());
        assert!(alice.notify.is_empty());

        let bob = join(&mut rooms, "a", "bob");
        assert_eq!(bob.peer, PeerId(2));
        assert_eq!(
            bob.roster,
            vec![RosterEntry {
                peer: PeerId(1),
                name: Some("alice".into())
            }]
        );
        assert_eq!(bob.notify, vec!["alice"]);

        let anon = rooms.join(room("a"), None, "anon").unwrap();
        assert_eq!(anon.roster.len(), 2);
        assert_eq!(anon.notify, vec!["alice", "bob"]);
        assert_eq!(rooms.peer_count(), 3);
        assert_eq!(rooms.room_count(), 1);
    }

    #[test]
    fn limits_reject_with_the_right_code() {
        let mut rooms = Rooms::new(LIMITS);
        for who in ["a1", "a2", "a3"] {
            join(&mut rooms, "a", who);
        }
        let full = rooms.join(room("a"), None, "a4").unwrap_err();
        assert_eq!(full, JoinError::RoomFull { max: 3 });
        assert_eq!(full.code(), ErrorCode::RoomFull);

        join(&mut rooms, "b", "b1");
        let too_many = rooms.join(room("c"), None, "c1").unwrap_err();
        assert_eq!(too_many.code(), ErrorCode::TooManyRooms);

        let bad = rooms.join(Bytes::new(), None, "x").unwrap_err();
        assert_eq!(bad.code(), ErrorCode::BadRoomId);
        let bad = rooms.join(Bytes::from(vec![7; 65]), None, "x").unwrap_err();
        assert_eq!(bad, JoinError::BadRoomId { len: 65 });
        assert_eq!(rooms.peer_count(), 4, "rejections admit nobody");
    }

    #[test]
    fn leaving_notifies_the_rest_and_frees_the_room() {
        let mut rooms = Rooms::new(LIMITS);
        let a = join(&mut rooms, "a", "alice");
        let b = join(&mut rooms, "a", "bob");
        join(&mut rooms, "b", "zed");

        let left = rooms.leave(a.peer).unwrap();
        assert_eq!(left.room, room("a"));
        assert_eq!(left.notify, vec!["bob"]);
        assert!(!left.room_closed);
        assert!(rooms.leave(a.peer).is_none(), "leaving twice is a no-op");

        let left = rooms.leave(b.peer).unwrap();
        assert!(left.room_closed);
        assert!(left.notify.is_empty());
        assert_eq!(rooms.room_count(), 1);
        // The freed room slot can be used by a new room.
        join(&mut rooms, "c", "carol");
        assert_eq!(rooms.room_count(), 2);
    }

    #[test]
    fn signals_route_within_the_room_only() {
        let mut rooms = Rooms::new(LIMITS);
        let a = join(&mut rooms, "a", "alice");
        let b = join(&mut rooms, "a", "bob");
        let c = join(&mut rooms, "a", "carol");
        let z = join(&mut rooms, "b", "zed");

        assert_eq!(
            rooms
                .route_signal(a.peer, PeerId::NONE, &Bytes::new())
                .unwrap(),
            vec!["bob", "carol"]
        );
        assert_eq!(
            rooms.route_signal(a.peer, c.peer, &Bytes::new()).unwrap(),
            vec!["carol"]
        );
        assert_eq!(
            rooms.route_signal(a.peer, z.peer, &Bytes::new()),
            Err(RouteError::UnknownPeer(z.peer)),
            "a peer in another room is unknown"
        );
        assert_eq!(
            rooms.route_signal(a.peer, a.peer, &Bytes::new()),
            Err(RouteError::UnknownPeer(a.peer)),
            "a signal to oneself is refused"
        );
        assert!(
            rooms
                .route_signal(z.peer, PeerId::NONE, &Bytes::new())
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            rooms.route_signal(PeerId(99), PeerId::NONE, &Bytes::new()),
            Err(RouteError::NotJoined)
        );
        rooms.leave(b.peer);
        assert_eq!(
            rooms
                .route_signal(a.peer, b.peer, &Bytes::new())
                .unwrap_err()
                .code(),
            ErrorCode::UnknownPeer
        );
    }

    #[test]
    fn datagram_fanout_follows_membership() {
        let mut rooms = Rooms::new(LIMITS);
        let mut a = join(&mut rooms, "a", "alice");
        let b = join(&mut rooms, "a", "bob");
        let _z = join(&mut rooms, "b", "zed");
        let links = |r: &mut FanoutReader<&'static str>| -> Vec<&'static str> {
            r.members().iter().map(|m| m.link).collect()
        };
        assert_eq!(
            links(&mut a.fanout),
            vec!["alice", "bob"],
            "room b is never in a's list"
        );
        let c = join(&mut rooms, "a", "carol");
        assert_eq!(links(&mut a.fanout), vec!["alice", "bob", "carol"]);
        let to_carol = a.fanout.recipients(a.peer, Some(c.peer)).unwrap();
        assert_eq!(to_carol.local.len(), 1);
        assert_eq!(to_carol.local[0].link, "carol");
        rooms.leave(b.peer);
        assert_eq!(links(&mut a.fanout), vec!["alice", "carol"]);
        assert!(a.fanout.recipients(a.peer, Some(b.peer)).is_err());
    }

    #[test]
    fn peer_ids_are_never_zero_nor_reused_while_in_use() {
        let mut rooms: Rooms<u8> = Rooms::new(RoomLimits {
            max_rooms: 10,
            max_peers_per_room: 10,
        });
        rooms.last_peer_id = u32::MAX - 1;
        let first = rooms.join(room("a"), None, 0).unwrap().peer;
        assert_eq!(first, PeerId(u32::MAX));
        let wrapped = rooms.join(room("a"), None, 0).unwrap().peer;
        assert_eq!(wrapped, PeerId(1), "0 is skipped on wrap-around");
        rooms.last_peer_id = u32::MAX - 1;
        let next = rooms.join(room("a"), None, 0).unwrap().peer;
        assert_eq!(next, PeerId(2), "ids in use are skipped");
        assert_eq!(rooms.room_of(next), Some(&room("a")));
    }

    fn node(n: u16) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn drain(rooms: &mut Rooms<&'static str>) -> Vec<ClusterOut> {
        std::iter::from_fn(|| rooms.poll_cluster()).collect()
    }

    /// Hands every `Members` message `from` queued to `to`, as the NATS shell would.
    fn deliver_members(
        from: &mut Rooms<&'static str>,
        to: &mut Rooms<&'static str>,
        now: Instant,
    ) -> Vec<RemoteChange<&'static str>> {
        let sender = from.node().unwrap();
        drain(from)
            .into_iter()
            .filter_map(|out| match out {
                ClusterOut::Members { room, members } => {
                    to.cluster_members(&room, sender, &members, now).unwrap()
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_relay_on_its_own_tells_no_cluster() {
        let mut rooms = Rooms::new(LIMITS);
        let a = join(&mut rooms, "a", "alice");
        join(&mut rooms, "a", "bob");
        rooms
            .route_signal(a.peer, PeerId::NONE, &Bytes::new())
            .unwrap();
        rooms.leave(a.peer);
        assert_eq!(rooms.poll_cluster(), None);
    }

    #[test]
    fn clustered_peer_ids_carry_the_node_prefix() {
        let mut rooms = Rooms::clustered(LIMITS, node(7));
        let a = join(&mut rooms, "a", "alice");
        let b = join(&mut rooms, "a", "bob");
        assert_eq!(a.peer, node(7).peer(1));
        assert_eq!(b.peer, node(7).peer(2));
        assert_eq!(NodeId::of_peer(b.peer), Some(node(7)));
    }

    #[test]
    fn members_on_two_relays_see_one_room_and_reach_each_other() {
        let t0 = Instant::now();
        let mut one = Rooms::clustered(LIMITS, node(1));
        let mut two = Rooms::clustered(LIMITS, node(2));
        let alice = join(&mut one, "a", "alice");
        assert_eq!(
            drain(&mut one),
            vec![
                ClusterOut::Subscribe(room("a")),
                ClusterOut::Members {
                    room: room("a"),
                    members: vec![RosterEntry {
                        peer: alice.peer,
                        name: Some("alice".into())
                    }]
                }
            ]
        );
        let bob = join(&mut two, "a", "bob");
        assert!(bob.roster.is_empty(), "relay 2 has not heard of alice yet");
        // Relay 2's list reaches relay 1: alice is told bob joined, and relay 1 answers.
        let changes = deliver_members(&mut two, &mut one, t0);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].joined[0].peer, bob.peer);
        assert_eq!(changes[0].notify, vec!["alice"]);
        assert!(changes[0].answer, "a node new to the room gets an answer");
        one.tell_cluster(ClusterOut::Members {
            room: room("a"),
            members: one.local_members(&room("a")),
        });
        let changes = deliver_members(&mut one, &mut two, t0);
        assert_eq!(changes[0].joined[0].peer, alice.peer);
        assert_eq!(changes[0].notify, vec!["bob"]);

        // A third member on relay 1 is welcomed with both, and relay 2 hears of it.
        let casey = join(&mut one, "a", "casey");
        let roster: Vec<PeerId> = casey.roster.iter().map(|e| e.peer).collect();
        assert_eq!(roster, vec![alice.peer, bob.peer]);
        assert_eq!(
            casey.notify,
            vec!["alice"],
            "local members are told by this relay"
        );
        let changes = deliver_members(&mut one, &mut two, t0);
        assert_eq!(changes[0].joined[0].peer, casey.peer);
        assert!(!changes[0].answer, "a known node gets no answer");

        // Signals: addressed to a member on the other relay, and for everyone.
        let payload = Bytes::from_static(b"wrapped key");
        assert!(
            two.route_signal(bob.peer, alice.peer, &payload)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            drain(&mut two),
            vec![ClusterOut::Signal {
                room: room("a"),
                from: bob.peer,
                to: alice.peer,
                payload: payload.clone()
            }]
        );
        assert_eq!(
            one.cluster_signal(&room("a"), node(2), bob.peer, alice.peer),
            vec!["alice"]
        );
        assert_eq!(
            one.cluster_signal(&room("a"), node(2), bob.peer, PeerId::NONE),
            vec!["alice", "casey"]
        );
        assert_eq!(
            one.route_signal(alice.peer, PeerId::NONE, &payload)
                .unwrap(),
            vec!["casey"]
        );
        assert!(matches!(
            drain(&mut one).as_slice(),
            [ClusterOut::Signal {
                to: PeerId::NONE,
                ..
            }]
        ));
        // Datagrams: relay 1's fanout knows bob is on node 2.
        let mut fanout = one.fanout_of(&room("a")).unwrap();
        assert!(fanout.is_remote_member(bob.peer, node(2)));
        assert!(fanout.recipients(alice.peer, None).unwrap().to_cluster);

        // Bob leaves: relay 2 says so at once, and stops listening to the room.
        two.leave(bob.peer);
        let outs = drain(&mut two);
        assert_eq!(
            outs,
            vec![
                ClusterOut::Members {
                    room: room("a"),
                    members: vec![]
                },
                ClusterOut::Unsubscribe(room("a"))
            ]
        );
        let ClusterOut::Members { members, .. } = &outs[0] else {
            unreachable!()
        };
        let change = one
            .cluster_members(&room("a"), node(2), members, t0)
            .unwrap()
            .unwrap();
        assert_eq!(change.left, vec![bob.peer]);
        assert_eq!(change.notify, vec!["alice", "casey"]);
        assert!(!change.answer);
        assert!(!fanout.recipients(alice.peer, None).unwrap().to_cluster);
    }

    #[test]
    fn a_node_speaks_only_for_its_own_peers() {
        let t0 = Instant::now();
        let mut one = Rooms::clustered(LIMITS, node(1));
        let alice = join(&mut one, "a", "alice");
        let forged = [RosterEntry {
            peer: alice.peer,
            name: None,
        }];
        assert_eq!(
            one.cluster_members(&room("a"), node(2), &forged, t0),
            Err(ClusterRefusal::ForeignPeer {
                node: node(2),
                peer: alice.peer
            })
        );
        let unclustered = [RosterEntry {
            peer: PeerId(5),
            name: None,
        }];
        assert!(
            one.cluster_members(&room("a"), node(2), &unclustered, t0)
                .is_err()
        );
        // A signal from a peer node 2 never announced reaches nobody.
        assert!(
            one.cluster_signal(&room("a"), node(2), node(2).peer(1), PeerId::NONE)
                .is_empty()
        );
        // Its own echo, and rooms it has no members in, change nothing.
        let own = [RosterEntry {
            peer: node(1).peer(50),
            name: None,
        }];
        assert_eq!(one.cluster_members(&room("a"), node(1), &own, t0), Ok(None));
        let elsewhere = [RosterEntry {
            peer: node(2).peer(1),
            name: None,
        }];
        assert_eq!(
            one.cluster_members(&room("zz"), node(2), &elsewhere, t0),
            Ok(None)
        );
    }

    #[test]
    fn a_silent_node_has_its_members_removed_after_the_expiry() {
        let t0 = Instant::now();
        let mut one = Rooms::clustered(LIMITS, node(1));
        join(&mut one, "a", "alice");
        let bob = [RosterEntry {
            peer: node(2).peer(1),
            name: Some("bob".into()),
        }];
        one.cluster_members(&room("a"), node(2), &bob, t0).unwrap();
        // Repeating the same list is no change, and keeps the node alive.
        let later = t0 + PRESENCE_INTERVAL * 2;
        assert_eq!(
            one.cluster_members(&room("a"), node(2), &bob, later),
            Ok(None)
        );
        assert!(one.expire_nodes(later + PRESENCE_EXPIRY / 2).is_empty());
        let changes = one.expire_nodes(later + PRESENCE_EXPIRY);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].left, vec![bob[0].peer]);
        assert_eq!(changes[0].notify, vec!["alice"]);
        assert_eq!(one.remote_member_count(), 0);
        // When the node comes back, it is new again (and gets an answer).
        let back = one
            .cluster_members(&room("a"), node(2), &bob, later + PRESENCE_EXPIRY)
            .unwrap()
            .unwrap();
        assert!(back.answer);
        assert_eq!(back.joined.len(), 1);
    }

    #[test]
    fn the_room_limit_counts_members_on_every_relay() {
        let t0 = Instant::now();
        let mut one = Rooms::clustered(LIMITS, node(1));
        join(&mut one, "a", "alice");
        let others: Vec<RosterEntry> = (1..=5)
            .map(|i| RosterEntry {
                peer: node(2).peer(i),
                name: None,
            })
            .collect();
        let change = one
            .cluster_members(&room("a"), node(2), &others, t0)
            .unwrap()
            .unwrap();
        assert_eq!(change.joined.len(), 2, "3 members at most, alice included");
        let full = one.join(room("a"), None, "dan").unwrap_err();
        assert_eq!(full, JoinError::RoomFull { max: 3 });
    }
}
