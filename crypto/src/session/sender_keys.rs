//! Our own sender keys: the current key and its packet counter, the ratchet on join, the new
//! epoch on leave and every `epoch_interval_ms`, which peer was given which key, who acked the
//! pending epoch, and when to switch to it.

use std::collections::{BTreeMap, BTreeSet};

use vcall_proto::e2ee::{KeyId, MediaAad};
use vcall_proto::{DatagramKind, PeerId};

use crate::media::{MediaKey, SealError, SenderSecret};
use crate::random::RandomSource;

struct OwnKey {
    id: KeyId,
    secret: SenderSecret,
    media: MediaKey,
    /// Wrapped to at least one peer, or sealed at least one packet: a newcomer must get a
    /// ratcheted successor instead, or it could read what was sent before it joined.
    used: bool,
}

impl OwnKey {
    fn new(id: KeyId, secret: SenderSecret, room_id: &[u8]) -> Self {
        Self {
            media: MediaKey::derive(id, &secret, room_id),
            id,
            secret,
            used: false,
        }
    }

    fn random(id: KeyId, rng: &mut dyn RandomSource, room_id: &[u8]) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        Self::new(id, SenderSecret(secret), room_id)
    }

    fn ratchet(&mut self, room_id: &[u8]) -> bool {
        let Some(generation) = self.id.generation.checked_add(1) else {
            return false;
        };
        let id = KeyId::new(self.id.epoch, generation);
        *self = Self::new(id, self.secret.ratchet(room_id), room_id);
        true
    }
}

/// A new epoch sent out but not used yet: used once every member it was sent to acked, or at
/// `deadline_ms`.
struct PendingEpoch {
    key: OwnKey,
    deadline_ms: u64,
    awaiting: BTreeSet<PeerId>,
}

/// Which of our keys one peer was sent.
#[derive(Debug, Default, Clone, Copy)]
struct Given {
    /// The last current key sent (it may since have been superseded).
    current: Option<KeyId>,
    /// The last pending epoch key sent (kept while a later epoch is pending, so a leave still
    /// counts as "held our key"; cleared when we switch).
    pending: Option<KeyId>,
    last_sent_ms: Option<u64>,
}

/// The timers and bounds this part needs (from [`super::SessionConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenderKeysConfig {
    pub(crate) rekey_switch_ms: u64,
    pub(crate) epoch_interval_ms: u64,
    pub(crate) resend_interval_ms: u64,
    pub(crate) max_ratchet_steps: u16,
}

/// Ids of the keys to wrap to one peer, in this order (at most the current and the pending
/// one); [`SenderKeys::secret`] lends each one's secret.
pub(crate) type ToSend = [Option<KeyId>; 2];

pub(crate) struct SenderKeys {
    config: SenderKeysConfig,
    current: OwnKey,
    pending: Option<PendingEpoch>,
    next_epoch: u16,
    /// When the current epoch rotation period started; `None` until we joined.
    epoch_started_ms: Option<u64>,
    counter: u64,
    given: BTreeMap<PeerId, Given>,
}

impl SenderKeys {
    /// Key `(0, 0)` with a fresh random secret.
    pub(crate) fn new(
        config: SenderKeysConfig,
        rng: &mut dyn RandomSource,
        room_id: &[u8],
    ) -> Self {
        Self {
            config,
            current: OwnKey::random(KeyId::new(0, 0), rng, room_id),
            pending: None,
            next_epoch: 1,
            epoch_started_ms: None,
            counter: 0,
            given: BTreeMap::new(),
        }
    }

    /// We joined (or re-joined) at `now_ms`: the epoch rotation period starts.
    pub(crate) fn on_welcome(&mut self, now_ms: u64) {
        self.epoch_started_ms = Some(now_ms);
    }

    /// The key our outgoing media is sealed with now.
    pub(crate) fn current_id(&self) -> KeyId {
        self.current.id
    }

    /// Seals under the current key with the next counter (see [`MediaKey::seal_in_place_with`];
    /// `trailer` appends the signature trailer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seal_in_place(
        &mut self,
        me: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
        trailer: impl FnOnce(&MediaAad, &mut Vec<u8>),
    ) -> Result<(), SealError> {
        self.current.media.seal_in_place_with(
            self.counter,
            me,
            kind,
            target,
            room_id,
            buf,
            start,
            trailer,
        )?;
        self.counter += 1;
        self.current.used = true;
        Ok(())
    }

    /// `peer` was sent our current key, or an earlier generation of it within the receiver's
    /// ratchet bound (from which it steps forward by itself).
    pub(crate) fn key_sent_to(&self, peer: PeerId) -> bool {
        let Some(g) = self.given.get(&peer) else {
            return false;
        };
        let cur = self.current.id;
        [g.current, g.pending].into_iter().flatten().any(|k| {
            k.epoch == cur.epoch
                && k.generation <= cur.generation
                && cur.generation - k.generation <= self.config.max_ratchet_steps
        })
    }

    /// A newcomer is about to get our keys: does the current key need a step first (it was
    /// given to anyone or sealed anything)?
    pub(crate) fn needs_join_ratchet(&self) -> bool {
        self.current.used
    }

    /// A newcomer authenticated: if our current key was given to anyone or sealed anything,
    /// step it (and the pending epoch's) one generation, so the newcomer cannot read what was
    /// sent before. Returns the new current key id if the current key stepped.
    #[cfg(test)]
    pub(crate) fn ratchet_on_join(&mut self, room_id: &[u8]) -> Option<KeyId> {
        if !self.needs_join_ratchet() {
            return None;
        }
        self.ratchet(room_id)
    }

    /// Steps the current key (and the pending one, which counts as given from now on) one
    /// generation. Returns the new current id unless its generations are exhausted.
    pub(crate) fn ratchet(&mut self, room_id: &[u8]) -> Option<KeyId> {
        let stepped = self.current.ratchet(room_id).then_some(self.current.id);
        if let Some(p) = &mut self.pending {
            p.key.ratchet(room_id);
            p.key.used = true;
        }
        stepped
    }

    /// Which keys to wrap to `peer` now: each of the current and pending keys it was not sent
    /// yet; all of them with `force` or once `resend_interval_ms` passed since the last send.
    /// Records them as sent to `peer` at `now_ms`.
    pub(crate) fn take_keys_to_send(&mut self, peer: PeerId, force: bool, now_ms: u64) -> ToSend {
        let interval = self.config.resend_interval_ms;
        let g = self.given.entry(peer).or_default();
        let stale = g
            .last_sent_ms
            .is_none_or(|t| now_ms >= t.saturating_add(interval));
        let mut out: ToSend = [None, None];
        if force || g.current != Some(self.current.id) || stale {
            self.current.used = true;
            g.current = Some(self.current.id);
            out[0] = Some(self.current.id);
        }
        if let Some(pending) = &mut self.pending
            && (force || g.pending != Some(pending.key.id) || stale)
        {
            pending.key.used = true;
            g.pending = Some(pending.key.id);
            out[1] = Some(pending.key.id);
        }
        if out.iter().any(Option::is_some) {
            g.last_sent_ms = Some(now_ms);
        }
        out
    }

    /// The secret of our key `id`, if it is the current or the pending key (what
    /// [`SenderKeys::take_keys_to_send`] names), lent for wrapping.
    pub(crate) fn secret(&self, id: KeyId) -> Option<&SenderSecret> {
        if self.current.id == id {
            return Some(&self.current.secret);
        }
        self.pending
            .as_ref()
            .filter(|p| p.key.id == id)
            .map(|p| &p.key.secret)
    }

    /// Starts a new epoch with a fresh random secret, awaiting acks from `members` (to whom the
    /// caller then sends it). Returns its id, or `None` when epoch ids are exhausted (after
    /// 65,534 new epochs, ids 1..=65534; epoch 65535 is never used): the current key stays
    /// and the session ends itself (`Fatal::EpochsExhausted`). Either way the rotation period
    /// restarts.
    pub(crate) fn start_epoch(
        &mut self,
        members: &[PeerId],
        rng: &mut dyn RandomSource,
        room_id: &[u8],
        now_ms: u64,
    ) -> Option<KeyId> {
        self.epoch_started_ms = Some(now_ms);
        let next = self.next_epoch.checked_add(1)?;
        let epoch = self.next_epoch;
        self.next_epoch = next;
        let key = OwnKey::random(KeyId::new(epoch, 0), rng, room_id);
        let id = key.id;
        self.pending = Some(PendingEpoch {
            key,
            deadline_ms: now_ms.saturating_add(self.config.rekey_switch_ms),
            awaiting: members.iter().copied().collect(),
        });
        Some(id)
    }

    /// `peer` acked our key `key_id`: if that is (a generation up to) the pending epoch's key,
    /// it no longer holds up the switch. Returns the new key id if we switched.
    pub(crate) fn on_ack(&mut self, peer: PeerId, key_id: KeyId) -> Option<KeyId> {
        if let Some(p) = &mut self.pending
            && key_id.epoch == p.key.id.epoch
            && key_id.generation <= p.key.id.generation
        {
            p.awaiting.remove(&peer);
        }
        self.switch_if_all_acked()
    }

    /// `peer` left. Returns whether it was ever sent a key of ours that may still be in use
    /// (then the caller starts a new epoch; otherwise it calls
    /// [`SenderKeys::switch_if_all_acked`]).
    pub(crate) fn on_peer_left(&mut self, peer: PeerId) -> bool {
        if let Some(pending) = &mut self.pending {
            pending.awaiting.remove(&peer);
        }
        self.given
            .remove(&peer)
            .is_some_and(|g| g.current.is_some() || g.pending.is_some())
    }

    /// Switches to the pending epoch if nobody has yet to ack it. Returns the new key id.
    pub(crate) fn switch_if_all_acked(&mut self) -> Option<KeyId> {
        if self.pending.as_ref().is_some_and(|p| p.awaiting.is_empty()) {
            return self.switch();
        }
        None
    }

    /// Switches to the pending epoch now, acked or not. Returns the new key id.
    pub(crate) fn switch_now(&mut self) -> Option<KeyId> {
        self.switch()
    }

    /// Timer: switches to the pending epoch at its deadline. Returns the new key id.
    pub(crate) fn switch_if_due(&mut self, now_ms: u64) -> Option<KeyId> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.deadline_ms <= now_ms)
        {
            return self.switch();
        }
        None
    }

    /// Timer: time for a periodic new epoch (none is pending and the period is over).
    pub(crate) fn rotation_due(&self, now_ms: u64) -> bool {
        self.pending.is_none() && self.rotation_at().is_some_and(|t| now_ms >= t)
    }

    fn rotation_at(&self) -> Option<u64> {
        self.epoch_started_ms
            .map(|t| t.saturating_add(self.config.epoch_interval_ms))
    }

    /// The soonest of the epoch rotation (once joined) and the pending switch deadline.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        let deadline = self.pending.as_ref().map(|p| p.deadline_ms);
        super::soonest(self.rotation_at(), deadline)
    }

    fn switch(&mut self) -> Option<KeyId> {
        let p = self.pending.take()?;
        let id = p.key.id;
        self.current = p.key;
        for g in self.given.values_mut() {
            if g.pending == Some(id) {
                g.current = Some(id);
            }
            g.pending = None;
        }
        Some(id)
    }

    #[cfg(test)]
    pub(crate) fn current_secret(&self) -> &SenderSecret {
        &self.current.secret
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, counter: u64) {
        self.counter = counter;
    }

    #[cfg(test)]
    pub(crate) fn exhaust_generations(&mut self, room_id: &[u8]) {
        let id = KeyId::new(self.current.id.epoch, u16::MAX);
        self.current.id = id;
        self.current.media = MediaKey::derive(id, &self.current.secret, room_id);
    }

    #[cfg(test)]
    pub(crate) fn set_next_epoch(&mut self, epoch: u16) {
        self.next_epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    const ROOM: &[u8] = b"room id";
    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    fn keys() -> (SenderKeys, SeededRandom) {
        let mut rng = SeededRandom::new(b"sender keys");
        let config = SenderKeysConfig {
            rekey_switch_ms: 2_000,
            epoch_interval_ms: 600_000,
            resend_interval_ms: 2_000,
            max_ratchet_steps: 8,
        };
        (SenderKeys::new(config, &mut rng, ROOM), rng)
    }

    fn ids(t: &ToSend) -> Vec<KeyId> {
        t.iter().flatten().copied().collect()
    }

    #[test]
    fn no_timeout_before_joining_then_the_rotation_period() {
        let (mut k, _) = keys();
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.rotation_due(u64::MAX));
        k.on_welcome(1_000);
        assert_eq!(k.poll_timeout(), Some(601_000));
        assert!(!k.rotation_due(600_999));
        assert!(k.rotation_due(601_000));
    }

    #[test]
    fn a_new_epoch_switches_when_all_acked_or_at_the_deadline() {
        let (mut k, mut rng) = keys();
        k.on_welcome(0);
        let e1 = k.start_epoch(&[A, B], &mut rng, ROOM, 10_000).unwrap();
        assert_eq!(e1, KeyId::new(1, 0));
        assert_eq!(k.current_id(), KeyId::new(0, 0));
        assert_eq!(k.poll_timeout(), Some(12_000), "deadline before rotation");
        assert!(!k.rotation_due(700_000), "no rotation while pending");
        assert_eq!(k.on_ack(A, e1), None);
        assert_eq!(
            k.on_ack(B, KeyId::new(0, 0)),
            None,
            "an ack of another epoch"
        );
        assert_eq!(k.on_ack(B, e1), Some(e1));
        assert_eq!(k.current_id(), e1);
        assert_eq!(k.poll_timeout(), Some(610_000));
        // Without acks: at the deadline.
        let e2 = k.start_epoch(&[A], &mut rng, ROOM, 20_000).unwrap();
        assert_eq!(k.switch_if_due(21_999), None);
        assert_eq!(k.switch_if_due(22_000), Some(e2));
        assert_eq!(k.switch_if_due(30_000), None);
        // Nobody to wait for: the caller switches at once.
        let e3 = k.start_epoch(&[], &mut rng, ROOM, 30_000).unwrap();
        assert_eq!(k.switch_if_all_acked(), Some(e3));
    }

    #[test]
    fn keys_are_sent_once_then_again_when_forced_or_stale() {
        let (mut k, mut rng) = keys();
        k.on_welcome(0);
        assert!(!k.key_sent_to(A));
        assert_eq!(
            ids(&k.take_keys_to_send(A, false, 0)),
            vec![KeyId::new(0, 0)]
        );
        assert!(k.key_sent_to(A));
        assert!(ids(&k.take_keys_to_send(A, false, 1_999)).is_empty());
        assert_eq!(ids(&k.take_keys_to_send(A, true, 1_999)).len(), 1);
        assert_eq!(ids(&k.take_keys_to_send(A, false, 3_999)).len(), 1, "stale");
        let e1 = k.start_epoch(&[A], &mut rng, ROOM, 4_000).unwrap();
        assert_eq!(ids(&k.take_keys_to_send(A, false, 4_000)), vec![e1]);
        assert_eq!(k.on_ack(A, e1), Some(e1));
        assert!(
            k.key_sent_to(A),
            "the pending key it got is the current one now"
        );
        assert!(ids(&k.take_keys_to_send(A, false, 4_001)).is_empty());
    }

    #[test]
    fn the_secrets_of_the_current_and_pending_keys_are_lent_by_id() {
        let (mut k, mut rng) = keys();
        k.on_welcome(0);
        let e0 = k.current_id();
        let own = |k: &SenderKeys, id| k.secret(id).map(|s| *s.as_bytes());
        assert_eq!(own(&k, e0), Some(*k.current_secret().as_bytes()));
        assert_eq!(own(&k, KeyId::new(1, 0)), None, "no such key yet");
        let e1 = k.start_epoch(&[A], &mut rng, ROOM, 1_000).unwrap();
        let sent = k.take_keys_to_send(A, false, 1_000);
        assert_eq!(sent, [Some(e0), Some(e1)]);
        let pending = own(&k, e1).expect("the pending key is lent too");
        assert_ne!(Some(pending), own(&k, e0));
        assert_eq!(k.on_ack(A, e1), Some(e1));
        assert_eq!(own(&k, e1), Some(pending), "now the current key");
        assert_eq!(own(&k, e0), None, "the superseded key is gone");
        assert_eq!(own(&k, KeyId::new(1, 1)), None, "another generation");
    }

    #[test]
    fn the_ratchet_on_join_steps_only_a_used_key_and_bounds_key_sent() {
        let (mut k, _) = keys();
        k.on_welcome(0);
        assert_eq!(
            k.ratchet_on_join(ROOM),
            None,
            "never given nor sealed with: no step"
        );
        let mut buf = vec![0u8; vcall_proto::e2ee::SealedHeader::LEN];
        k.seal_in_place(A, DatagramKind::Audio, None, ROOM, &mut buf, 0, |_, _| {})
            .unwrap();
        assert_eq!(
            k.ratchet_on_join(ROOM),
            Some(KeyId::new(0, 1)),
            "sealed with while alone: a newcomer must not read it"
        );
        k.take_keys_to_send(A, false, 0);
        assert_eq!(k.ratchet_on_join(ROOM), Some(KeyId::new(0, 2)), "given");
        assert_eq!(
            k.ratchet_on_join(ROOM),
            None,
            "the successor was given to nobody yet"
        );
        for g in 3..=9 {
            assert_eq!(k.ratchet(ROOM), Some(KeyId::new(0, g)));
            assert!(
                k.key_sent_to(A),
                "generation {g} is within A's ratchet bound (it holds 1)"
            );
        }
        assert_eq!(k.ratchet(ROOM), Some(KeyId::new(0, 10)));
        assert!(!k.key_sent_to(A));
        // Generations run out without panicking: the key stays.
        k.current.id = KeyId::new(0, u16::MAX);
        assert_eq!(k.ratchet(ROOM), None);
        assert_eq!(k.current_id(), KeyId::new(0, u16::MAX));
    }

    #[test]
    fn a_leaver_that_held_our_key_asks_for_a_new_epoch() {
        let (mut k, mut rng) = keys();
        k.on_welcome(0);
        k.take_keys_to_send(A, false, 0);
        let e1 = k.start_epoch(&[A, B], &mut rng, ROOM, 1_000).unwrap();
        assert!(!k.on_peer_left(B), "B never got a key");
        assert_eq!(k.switch_if_all_acked(), None, "A has yet to ack");
        assert!(k.on_peer_left(A));
        assert_eq!(k.switch_if_all_acked(), Some(e1));
        assert!(!k.on_peer_left(A), "forgotten");
    }

    #[test]
    fn epoch_ids_run_out_without_panicking() {
        let (mut k, mut rng) = keys();
        k.next_epoch = u16::MAX;
        assert_eq!(k.start_epoch(&[], &mut rng, ROOM, 5), None);
        assert_eq!(
            k.poll_timeout(),
            Some(600_005),
            "the period restarts anyway"
        );
    }
}
