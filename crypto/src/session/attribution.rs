//! The receiver's side of batched audio signatures: audio packets that opened but are not yet
//! vouched for by their sender's batch signature wait here (bounded, for a short time), and the
//! digests a verified batch vouched for are remembered so that a packet arriving after its
//! batch is attributed at once. Nothing here plays or records a packet that was not attributed.

use std::collections::{BTreeMap, VecDeque};

use vcall_proto::PeerId;
use vcall_proto::e2ee::KeyId;

use crate::sender_auth::{DIGEST_LEN, MAX_BATCH_LEN};

/// An audio packet waits at most this long for a batch that vouches for it.
pub(crate) const HOLD_MS: u64 = 500;
/// At most this many audio packets wait per sender (the oldest gives way).
const MAX_HELD_PER_PEER: usize = 2 * MAX_BATCH_LEN;
/// Vouched-for digests remembered per sender.
const MAX_VERIFIED_PER_PEER: usize = 2 * MAX_BATCH_LEN;

/// An audio packet from `sender` that its batch signature attributed: its app bytes (the audio
/// plaintext, trailer removed). Hand the buffer back with [`super::Session::recycle`].
#[derive(Debug)]
pub struct AttributedAudio {
    pub sender: PeerId,
    pub plaintext: Vec<u8>,
    pub(crate) key: KeyId,
    pub(crate) counter: u64,
}

/// Counts of what attribution did, for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionStats {
    /// Audio packets that had to wait for their batch signature.
    pub audio_held: u64,
    /// Held audio packets a batch then vouched for.
    pub audio_released: u64,
    /// Held audio packets no batch vouched for in time (dropped, never played).
    pub audio_unattributed: u64,
    /// Bodies that opened but whose signature did not verify (sealed by another member).
    pub bad_signatures: u64,
}

#[derive(Debug, Default)]
struct FromPeer {
    verified: VecDeque<[u8; DIGEST_LEN]>,
    held: VecDeque<Held>,
}

#[derive(Debug)]
struct Held {
    digest: [u8; DIGEST_LEN],
    at_ms: u64,
    audio: AttributedAudio,
}

#[derive(Debug, Default)]
pub(crate) struct Attribution {
    peers: BTreeMap<PeerId, FromPeer>,
    ready: VecDeque<AttributedAudio>,
    pool: Vec<Vec<u8>>,
    pub(crate) stats: AttributionStats,
}

impl Attribution {
    /// A verified batch already vouched for this digest of `peer`'s.
    pub(crate) fn is_vouched(&self, peer: PeerId, digest: &[u8; DIGEST_LEN]) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.verified.contains(digest))
    }

    /// Keeps a copy of an audio packet's app bytes until a batch vouches for it.
    pub(crate) fn hold(
        &mut self,
        sender: PeerId,
        key: KeyId,
        counter: u64,
        digest: [u8; DIGEST_LEN],
        app: &[u8],
        now_ms: u64,
    ) {
        self.expire(now_ms);
        let mut plaintext = self.pool.pop().unwrap_or_default();
        plaintext.clear();
        plaintext.extend_from_slice(app);
        let p = self.peers.entry(sender).or_default();
        if p.held.iter().any(|h| h.digest == digest) {
            self.pool.push(plaintext);
            return;
        }
        if p.held.len() == MAX_HELD_PER_PEER
            && let Some(old) = p.held.pop_front()
        {
            self.stats.audio_unattributed += 1;
            self.pool.push(old.audio.plaintext);
        }
        p.held.push_back(Held {
            digest,
            at_ms: now_ms,
            audio: AttributedAudio {
                sender,
                plaintext,
                key,
                counter,
            },
        });
        self.stats.audio_held += 1;
    }

    /// A verified batch of `peer` vouched for `digests` (`n * DIGEST_LEN` bytes): remember
    /// them and move every held packet among them to the ready queue.
    pub(crate) fn vouch(&mut self, peer: PeerId, digests: &[u8]) {
        let p = self.peers.entry(peer).or_default();
        for d in digests.chunks_exact(DIGEST_LEN) {
            let d: [u8; DIGEST_LEN] = d.try_into().expect("chunk of DIGEST_LEN");
            if !p.verified.contains(&d) {
                if p.verified.len() == MAX_VERIFIED_PER_PEER {
                    p.verified.pop_front();
                }
                p.verified.push_back(d);
            }
        }
        let mut i = 0;
        while i < p.held.len() {
            if p.verified.contains(&p.held[i].digest) {
                let h = p.held.remove(i).expect("index in range");
                self.ready.push_back(h.audio);
                self.stats.audio_released += 1;
            } else {
                i += 1;
            }
        }
    }

    /// The next attributed packet (the session still records it with its key).
    pub(crate) fn next_ready(&mut self) -> Option<AttributedAudio> {
        self.ready.pop_front()
    }

    /// Takes back a buffer handed out.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < 4 * MAX_HELD_PER_PEER {
            self.pool.push(buf);
        }
    }

    /// Drops held packets that waited longer than [`HOLD_MS`].
    pub(crate) fn expire(&mut self, now_ms: u64) {
        for p in self.peers.values_mut() {
            while p
                .held
                .front()
                .is_some_and(|h| now_ms.saturating_sub(h.at_ms) > HOLD_MS)
            {
                let h = p.held.pop_front().expect("front exists");
                self.stats.audio_unattributed += 1;
                if self.pool.len() < 4 * MAX_HELD_PER_PEER {
                    self.pool.push(h.audio.plaintext);
                }
            }
        }
    }

    /// When the oldest held packet expires.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.peers
            .values()
            .filter_map(|p| p.held.front().map(|h| h.at_ms + HOLD_MS + 1))
            .min()
    }

    /// Forgets `peer` (it left): what it had waiting is dropped.
    pub(crate) fn remove(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.remove(&peer) {
            self.stats.audio_unattributed += p.held.len() as u64;
        }
        self.ready.retain(|a| a.sender != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PeerId = PeerId(5);

    fn d(b: u8) -> [u8; DIGEST_LEN] {
        [b; DIGEST_LEN]
    }

    #[test]
    fn held_audio_is_released_by_a_batch_that_lists_it_and_only_then() {
        let mut a = Attribution::default();
        let k = KeyId::new(0, 0);
        a.hold(P, k, 1, d(1), b"one", 0);
        a.hold(P, k, 2, d(2), b"two", 10);
        a.hold(P, k, 2, d(2), b"two", 11); // a duplicate waits once
        a.hold(PeerId(6), k, 3, d(3), b"other", 10);
        a.vouch(P, &[d(9), d(2)].concat());
        let r = a.next_ready().unwrap();
        assert_eq!((r.sender, r.counter, &r.plaintext[..]), (P, 2, &b"two"[..]));
        assert!(a.next_ready().is_none(), "one is not listed");
        // Another peer's digest listed in P's batch attributes nothing of the other peer.
        a.vouch(P, &d(3));
        assert!(a.next_ready().is_none());
        assert!(a.is_vouched(P, &d(9)) && !a.is_vouched(PeerId(6), &d(3)));
        // Unvouched packets expire and are counted.
        assert_eq!(a.poll_timeout(), Some(HOLD_MS + 1));
        a.expire(HOLD_MS + 11);
        assert_eq!(a.stats.audio_unattributed, 2);
        assert_eq!(a.stats.audio_held, 3);
        assert_eq!(a.stats.audio_released, 1);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn holding_is_bounded_per_peer() {
        let mut a = Attribution::default();
        for i in 0..(MAX_HELD_PER_PEER as u64 + 5) {
            a.hold(P, KeyId::new(0, 0), i, d(i as u8), b"x", 0);
        }
        assert_eq!(a.stats.audio_unattributed, 5);
        a.remove(P);
        assert_eq!(a.stats.audio_unattributed, 5 + MAX_HELD_PER_PEER as u64);
    }
}
