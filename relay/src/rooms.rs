//! Who is in which room and who receives what: the relay's decisions, without any I/O.
//!
//! [`Rooms`] admits peers (enforcing the room and peer limits), assigns peer ids, tells the
//! shell whom to notify on a join or a leave, routes signals, and publishes each room's member
//! list into a [`FanoutCell`] for the lock-free datagram path. It is generic over the link type
//! `L` the shell uses to reach a peer (a connection handle in the server, a plain value in tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use vcall_proto::control::{MAX_ROOM_ID_LEN, RosterEntry};
use vcall_proto::{ErrorCode, PeerId};

use crate::fanout::{FanoutCell, FanoutMember, FanoutReader};

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

#[derive(Debug)]
struct Member<L> {
    name: Option<String>,
    link: L,
}

#[derive(Debug)]
struct Room<L> {
    /// Keyed by peer id; ids are assigned in increasing order, so this is join order.
    members: BTreeMap<PeerId, Member<L>>,
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
        self.fanout.publish(list);
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
}

impl<L: Clone> Rooms<L> {
    /// No rooms yet.
    pub fn new(limits: RoomLimits) -> Self {
        Self {
            limits,
            rooms: HashMap::new(),
            room_of_peer: HashMap::new(),
            last_peer_id: 0,
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
            Some(existing) if existing.members.len() >= self.limits.max_peers_per_room => {
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
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            members: BTreeMap::new(),
            fanout: Arc::new(FanoutCell::new()),
        });
        let roster = entry
            .members
            .iter()
            .map(|(&peer, m)| RosterEntry {
                peer,
                name: m.name.clone(),
            })
            .collect();
        let notify = entry.links_except(peer);
        entry.members.insert(peer, Member { name, link });
        entry.publish();
        let fanout = FanoutReader::new(Arc::clone(&entry.fanout));
        self.room_of_peer.insert(peer, room);
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
        if room_closed {
            self.rooms.remove(&room_id);
        }
        Some(Left {
            room: room_id,
            notify,
            room_closed,
        })
    }

    /// Who receives a signal from `from` addressed `to` (`PeerId::NONE`: everyone else).
    pub fn signal_recipients(&self, from: PeerId, to: PeerId) -> Result<Vec<L>, RouteError> {
        let room = self
            .room_of_peer
            .get(&from)
            .and_then(|id| self.rooms.get(id))
            .ok_or(RouteError::NotJoined)?;
        if to == PeerId::NONE {
            return Ok(room.links_except(from));
        }
        match room.members.get(&to) {
            Some(member) if to != from => Ok(vec![member.link.clone()]),
            _ => Err(RouteError::UnknownPeer(to)),
        }
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

    /// The next unused, non-zero peer id (ids are not reused until the counter wraps).
    fn next_peer_id(&mut self) -> PeerId {
        loop {
            self.last_peer_id = self.last_peer_id.wrapping_add(1);
            let candidate = PeerId(self.last_peer_id);
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
            rooms.signal_recipients(a.peer, PeerId::NONE).unwrap(),
            vec!["bob", "carol"]
        );
        assert_eq!(
            rooms.signal_recipients(a.peer, c.peer).unwrap(),
            vec!["carol"]
        );
        assert_eq!(
            rooms.signal_recipients(a.peer, z.peer),
            Err(RouteError::UnknownPeer(z.peer)),
            "a peer in another room is unknown"
        );
        assert_eq!(
            rooms.signal_recipients(a.peer, a.peer),
            Err(RouteError::UnknownPeer(a.peer)),
            "a signal to oneself is refused"
        );
        assert!(
            rooms
                .signal_recipients(z.peer, PeerId::NONE)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            rooms.signal_recipients(PeerId(99), PeerId::NONE),
            Err(RouteError::NotJoined)
        );
        rooms.leave(b.peer);
        assert_eq!(
            rooms.signal_recipients(a.peer, b.peer).unwrap_err().code(),
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
        assert_eq!(to_carol.len(), 1);
        assert_eq!(to_carol[0].link, "carol");
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
}
