//! Published snapshots of a room's members, read by the datagram path without a lock.
//!
//! Joins and leaves are rare; datagrams are many. The room publishes an immutable
//! `Arc<[FanoutMember]>` into a [`FanoutCell`] and bumps a generation counter; each
//! connection keeps a [`FanoutReader`] that re-reads the snapshot (under the room's own small
//! mutex) only when the generation changed. In steady state a datagram costs one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vcall_proto::PeerId;

/// One receiver in a room snapshot: its id and whatever the shell needs to reach it.
#[derive(Debug, Clone)]
pub struct FanoutMember<L> {
    pub peer: PeerId,
    pub link: L,
}

/// The latest member list of one room, with a generation counter for cheap change detection.
#[derive(Debug)]
pub struct FanoutCell<L> {
    generation: AtomicU64,
    members: Mutex<Arc<[FanoutMember<L>]>>,
}

impl<L> FanoutCell<L> {
    /// A cell holding an empty member list.
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            members: Mutex::new(Arc::from(Vec::new())),
        }
    }

    /// Replaces the member list (sorted by peer id) and makes readers pick it up.
    pub fn publish(&self, members: Arc<[FanoutMember<L>]>) {
        let mut slot = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = members;
        // Bumped while the lock is held, so a reader that sees the new generation and then
        // takes the lock finds at least this list.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current list and its generation, read consistently.
    fn snapshot(&self) -> (u64, Arc<[FanoutMember<L>]>) {
        let slot = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), Arc::clone(&slot))
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
    cached: Arc<[FanoutMember<L>]>,
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

    /// The room's members (every one, the reader's own peer included), sorted by peer id.
    pub fn members(&mut self) -> &[FanoutMember<L>] {
        if self.cell.generation.load(Ordering::Acquire) != self.seen_generation {
            let (generation, members) = self.cell.snapshot();
            self.seen_generation = generation;
            self.cached = members;
        }
        &self.cached
    }

    /// Who receives a datagram from `sender`: everyone else, or only `target` when set.
    ///
    /// Fails with [`NoSuchTarget`] when `target` is not another member of the room.
    pub fn recipients(
        &mut self,
        sender: PeerId,
        target: Option<PeerId>,
    ) -> Result<&[FanoutMember<L>], NoSuchTarget> {
        let members = self.members();
        match target {
            None => Ok(members),
            Some(target) if target == sender => Err(NoSuchTarget(target)),
            Some(target) => members
                .binary_search_by_key(&target, |m| m.peer)
                .map(|index| &members[index..=index])
                .map_err(|_| NoSuchTarget(target)),
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
        assert_eq!(peers(one), [3]);
        assert_eq!(one[0].link, 30);
        assert_eq!(
            reader.recipients(PeerId(1), Some(PeerId(9))).unwrap_err(),
            NoSuchTarget(PeerId(9))
        );
        assert_eq!(
            reader.recipients(PeerId(1), Some(PeerId(1))).unwrap_err(),
            NoSuchTarget(PeerId(1))
        );
        assert_eq!(
            peers(reader.recipients(PeerId(1), None).unwrap()),
            [1, 2, 3]
        );
    }
}
