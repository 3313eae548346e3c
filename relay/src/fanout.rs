//! Published snapshots of a room's members, read by the datagram path without a lock.
//!
//! Joins and leaves are rare; datagrams are many. The room publishes an immutable
//! `Arc<[FanoutMember]>` into a [`FanoutCell`] and bumps a generation counter; each
//! connection keeps a [`FanoutReader`] that re-reads the snapshot (under the room's own small
//! mutex) only when the generation changed. In steady state a datagram costs one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vcall_proto::PeerId;

use crate::cluster::NodeId;

/// One receiver in a room snapshot: its id and whatever the shell needs to reach it.
#[derive(Debug, Clone)]
pub struct FanoutMember<L> {
    pub peer: PeerId,
    pub link: L,
}

/// A member of the room on another relay of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePeer {
    pub peer: PeerId,
    pub node: NodeId,
}

/// Who a datagram goes to: members of this relay, and whether it also crosses to the cluster
/// (once, however many members the other relays have).
#[derive(Debug)]
pub struct Delivery<'a, L> {
    pub local: &'a [FanoutMember<L>],
    pub to_cluster: bool,
}

/// One published list: this relay's members and the room's members on other relays, each
/// sorted by peer id.
#[derive(Debug)]
struct Snapshot<L> {
    local: Arc<[FanoutMember<L>]>,
    remote: Arc<[RemotePeer]>,
}

impl<L> Clone for Snapshot<L> {
    fn clone(&self) -> Self {
        Self {
            local: Arc::clone(&self.local),
            remote: Arc::clone(&self.remote),
        }
    }
}

/// The latest member list of one room, with a generation counter for cheap change detection.
#[derive(Debug)]
pub struct FanoutCell<L> {
    generation: AtomicU64,
    members: Mutex<Snapshot<L>>,
}

impl<L> FanoutCell<L> {
    /// A cell holding an empty member list.
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            members: Mutex::new(Snapshot {
                local: Arc::from(Vec::new()),
                remote: Arc::from(Vec::new()),
            }),
        }
    }

    /// Replaces the member list (sorted by peer id) of a room without remote members.
    pub fn publish(&self, members: Arc<[FanoutMember<L>]>) {
        self.publish_with_remote(members, Arc::from(Vec::new()));
    }

    /// Replaces both lists (each sorted by peer id) and makes readers pick them up.
    pub fn publish_with_remote(&self, local: Arc<[FanoutMember<L>]>, remote: Arc<[RemotePeer]>) {
        let mut slot = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Snapshot { local, remote };
        // Bumped while the lock is held, so a reader that sees the new generation and then
        // takes the lock finds at least this list.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current lists and their generation, read consistently.
    fn snapshot(&self) -> (u64, Snapshot<L>) {
        let slot = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), slot.clone())
    }
}

impl<L> Default for FanoutCell<L> {
    fn default() -> Self {
        Self::new()
    }
}

/// A connection's cached view of its room's members.
#[derive(Debug)]
pub struct FanoutReader<L> {
    cell: Arc<FanoutCell<L>>,
    seen_generation: u64,
    cached: Snapshot<L>,
}

impl<L> FanoutReader<L> {
    /// A reader that starts from the cell's current list.
    pub fn new(cell: Arc<FanoutCell<L>>) -> Self {
        let (seen_generation, cached) = cell.snapshot();
        Self {
            cell,
            seen_generation,
            cached,
        }
    }

    fn refresh(&mut self) {
        if self.cell.generation.load(Ordering::Acquire) != self.seen_generation {
            let (generation, snapshot) = self.cell.snapshot();
            self.seen_generation = generation;
            self.cached = snapshot;
        }
    }

    /// This relay's members of the room (the reader's own peer included), sorted by peer id.
    pub fn members(&mut self) -> &[FanoutMember<L>] {
        self.refresh();
        &self.cached.local
    }

    /// True when `peer` is a member of the room on relay `node` of the cluster.
    pub fn is_remote_member(&mut self, peer: PeerId, node: NodeId) -> bool {
        self.refresh();
        self.cached
            .remote
            .binary_search_by_key(&peer, |r| r.peer)
            .is_ok_and(|i| self.cached.remote[i].node == node)
    }

    /// Who receives a datagram from `sender`: everyone else, or only `target` when set.
    /// `local` may include the sender itself (the caller skips it).
    ///
    /// Fails with [`NoSuchTarget`] when `target` is not another member of the room.
    pub fn recipients(
        &mut self,
        sender: PeerId,
        target: Option<PeerId>,
    ) -> Result<Delivery<'_, L>, NoSuchTarget> {
        self.refresh();
        let Snapshot { local, remote } = &self.cached;
        match target {
            None => Ok(Delivery {
                local,
                to_cluster: !remote.is_empty(),
            }),
            Some(target) if target == sender => Err(NoSuchTarget(target)),
            Some(target) => {
                if let Ok(index) = local.binary_search_by_key(&target, |m| m.peer) {
                    Ok(Delivery {
                        local: &local[index..=index],
                        to_cluster: false,
                    })
                } else if remote.binary_search_by_key(&target, |r| r.peer).is_ok() {
                    Ok(Delivery {
                        local: &[],
                        to_cluster: true,
                    })
                } else {
                    Err(NoSuchTarget(target))
                }
            }
        }
    }
}

/// An addressed datagram names a peer that is not another member of the sender's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer {0} is not another member of this room")]
pub struct NoSuchTarget(pub PeerId);

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ids: &[u32]) -> Arc<[FanoutMember<u32>]> {
        ids.iter()
            .map(|&id| FanoutMember {
                peer: PeerId(id),
                link: id * 10,
            })
            .collect()
    }

    fn peers(members: &[FanoutMember<u32>]) -> Vec<u32> {
        members.iter().map(|m| m.peer.0).collect()
    }

    #[test]
    fn reader_sees_every_published_list() {
        let cell = Arc::new(FanoutCell::new());
        let mut reader = FanoutReader::new(Arc::clone(&cell));
        assert!(reader.members().is_empty());
        cell.publish(list(&[1, 2]));
        assert_eq!(peers(reader.members()), [1, 2]);
        cell.publish(list(&[1, 2, 5]));
        assert_eq!(peers(reader.members()), [1, 2, 5]);
        cell.publish(list(&[2]));
        assert_eq!(peers(reader.members()), [2]);
    }

    #[test]
    fn reader_created_late_starts_from_the_current_list() {
        let cell = Arc::new(FanoutCell::new());
        cell.publish(list(&[3, 4]));
        let mut reader = FanoutReader::new(cell);
        assert_eq!(peers(reader.members()), [3, 4]);
    }

    #[test]
    fn addressed_recipients_are_exactly_the_target() {
        let cell = Arc::new(FanoutCell::new());
        cell.publish(list(&[1, 2, 3]));
        let mut reader = FanoutReader::new(cell);
        let one = reader.recipients(PeerId(1), Some(PeerId(3))).unwrap();
        assert_eq!(peers(one.local), [3]);
        assert_eq!(one.local[0].link, 30);
        assert!(!one.to_cluster);
        assert_eq!(
            reader.recipients(PeerId(1), Some(PeerId(9))).unwrap_err(),
            NoSuchTarget(PeerId(9))
        );
        assert_eq!(
            reader.recipients(PeerId(1), Some(PeerId(1))).unwrap_err(),
            NoSuchTarget(PeerId(1))
        );
        assert_eq!(
            peers(reader.recipients(PeerId(1), None).unwrap().local),
            [1, 2, 3]
        );
    }

    #[test]
    fn members_on_other_relays_are_reached_through_the_cluster_once() {
        let cell = Arc::new(FanoutCell::new());
        let node = NodeId::new(2).unwrap();
        let remote: Arc<[RemotePeer]> = [node.peer(1), node.peer(2)]
            .into_iter()
            .map(|peer| RemotePeer { peer, node })
            .collect();
        cell.publish_with_remote(list(&[1, 2]), remote);
        let mut reader = FanoutReader::new(cell);
        let all = reader.recipients(PeerId(1), None).unwrap();
        assert_eq!(peers(all.local), [1, 2]);
        assert!(all.to_cluster);
        let addressed = reader.recipients(PeerId(1), Some(node.peer(2))).unwrap();
        assert!(addressed.local.is_empty());
        assert!(addressed.to_cluster);
        let local = reader.recipients(PeerId(1), Some(PeerId(2))).unwrap();
        assert!(!local.to_cluster, "a local target does not cross");
        assert!(reader.is_remote_member(node.peer(1), node));
        assert!(
            !reader.is_remote_member(node.peer(1), NodeId::new(3).unwrap()),
            "a peer belongs to the node that announced it"
        );
        assert!(!reader.is_remote_member(PeerId(1), node));
    }
}
