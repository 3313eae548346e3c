//! Other peers' sender keys that we hold: installing them (with the checks that keep RSA
//! decryptions rare), opening media under them with one replay window per key, stepping a
//! sender's ratchet forward by ourselves, retiring superseded keys after a grace time, and
//! holding key messages that arrive before their sender's announcement.

use std::collections::BTreeMap;

use vcall_proto::e2ee::{KeyId, SealedHeader};
use vcall_proto::{DatagramKind, PeerId};

use super::Rejection;
use crate::media::{MediaKey, OpenError, ReplayWindow, SenderSecret};

/// At most this many key messages wait per peer for its announcement (the oldest goes first).
const MAX_BUFFERED_PER_PEER: usize = 4;
/// At most this many keys are held per peer (the oldest goes first).
const MAX_RECV_KEYS_PER_PEER: usize = 16;
/// The period of the RSA decryption budget.
const UNWRAP_WINDOW_MS: u64 = 10_000;

/// The timers and bounds this part needs (from [`super::SessionConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReceivedKeysConfig {
    pub(crate) old_key_grace_ms: u64,
    /// The sender's switch timeout: an older epoch stays usable this long plus the grace time.
    pub(crate) rekey_switch_ms: u64,
    pub(crate) max_ratchet_steps: u16,
    pub(crate) buffered_key_ttl_ms: u64,
    pub(crate) max_unwraps_per_10s: u32,
    /// RSA decryptions allowed over all peers together: a token bucket of this many, refilled
    /// at this many per 10 s.
    pub(crate) max_unwraps_global_per_10s: u32,
}

/// The RSA decryption budget over all peers: a token bucket holding up to
/// `max_unwraps_global_per_10s` tokens, refilled continuously at that many per
/// [`UNWRAP_WINDOW_MS`]. Levels are in token-milliseconds (one token = `UNWRAP_WINDOW_MS`).
#[derive(Debug)]
struct UnwrapBucket {
    level: u64,
    last_ms: Option<u64>,
}

impl UnwrapBucket {
    fn refill(&mut self, per_window: u32, now_ms: u64) {
        let cap = u64::from(per_window) * UNWRAP_WINDOW_MS;
        let elapsed = self.last_ms.map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(u64::from(per_window)))
            .min(cap);
        // A clock stepping backwards restarts the refill from there (no tokens for it).
        self.last_ms = Some(now_ms);
    }

    fn has_token(&self) -> bool {
        self.level >= UNWRAP_WINDOW_MS
    }

    fn take(&mut self) {
        self.level = self.level.saturating_sub(UNWRAP_WINDOW_MS);
    }
}

struct RecvKey {
    secret: SenderSecret,
    media: MediaKey,
    window: ReplayWindow,
    retire_at: Option<u64>,
}

impl RecvKey {
    fn new(secret: SenderSecret, media: MediaKey, window: ReplayWindow) -> Self {
        Self {
            secret,
            media,
            window,
            retire_at: None,
        }
    }
}

/// What we hold from one peer.
#[derive(Default)]
struct FromPeer {
    keys: BTreeMap<KeyId, RecvKey>,
    /// The newest epoch ever installed (kept when its keys are retired).
    max_epoch: Option<u16>,
    /// Key messages waiting for the peer's announcement, with when they arrived.
    buffered: Vec<(Vec<u8>, u64)>,
    unwrap_window_start: u64,
    unwraps_in_window: u32,
    /// When a body from it last authenticated (liveness).
    last_opened_ms: Option<u64>,
    /// The session treats it as gone: the next body that authenticates reports it back.
    silent: bool,
}

impl FromPeer {
    /// Every key older than `newest` retires `grace` from now (unless already due earlier).
    fn retire_older(&mut self, newest: KeyId, now_ms: u64, grace: u64) {
        let until = now_ms.saturating_add(grace);
        for (id, k) in self.keys.iter_mut() {
            if *id < newest && k.retire_at.is_none() {
                k.retire_at = Some(until);
            }
        }
    }

    fn limit_keys(&mut self) {
        while self.keys.len() > MAX_RECV_KEYS_PER_PEER {
            if self.keys.pop_first().is_none() {
                break;
            }
        }
    }

    fn lacks_epoch(&self, epoch: u16) -> bool {
        self.keys.is_empty() || self.max_epoch.is_some_and(|e| epoch > e)
    }
}

/// Is a key message's key worth decrypting?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Novelty {
    /// We lack it: decrypt (within the budget) and install.
    New,
    /// We hold it or a newer generation of its epoch (a resend or a replay): just re-ack.
    Duplicate,
}

/// An opened body recorded as its sender's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The body was under a newer generation we stepped to and installed.
    pub(crate) installed: Option<KeyId>,
    /// The sender was marked silent: this body authenticated, so it is back.
    pub(crate) revived: bool,
}

/// Why a sealed body was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMiss {
    /// Under a key we hold (or stepped to), but rejected.
    Rejected(OpenError),
    /// Under no key we hold or can step to. `lacks_epoch`: we hold nothing of the sender's,
    /// nothing of that epoch, or only generations of it too far behind to step to (so it
    /// should send us its key).
    NoKey { lacks_epoch: bool },
}

pub(crate) struct ReceivedKeys {
    config: ReceivedKeysConfig,
    peers: BTreeMap<PeerId, FromPeer>,
    global_unwraps: UnwrapBucket,
}

impl ReceivedKeys {
    pub(crate) fn new(config: ReceivedKeysConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            global_unwraps: UnwrapBucket {
                level: 0,
                last_ms: None,
            },
        }
    }

    /// We hold at least one key of `peer`.
    pub(crate) fn holds_any(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| !p.keys.is_empty())
    }

    /// When a body from `peer` last authenticated.
    pub(crate) fn last_opened(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(&peer).and_then(|p| p.last_opened_ms)
    }

    /// Marks `peer` silent (or not): while silent, the next body of it that authenticates is
    /// reported as [`Committed::revived`]. Only for listed peers (the caller's check).
    pub(crate) fn set_silent(&mut self, peer: PeerId, silent: bool) {
        self.peers.entry(peer).or_default().silent = silent;
    }

    /// Forgets `peer`; returns the ids of the keys we held from it, ascending.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) -> impl Iterator<Item = KeyId> {
        self.peers
            .remove(&peer)
            .into_iter()
            .flat_map(|p| p.keys.into_keys())
    }

    // -----------------------------------------------------------------------------------------
    // Key messages

    /// Keeps a key message from a peer whose announcement has not reached us (bounded).
    pub(crate) fn buffer(&mut self, peer: PeerId, payload: &[u8], now_ms: u64) {
        let p = self.peers.entry(peer).or_default();
        if p.buffered.len() >= MAX_BUFFERED_PER_PEER {
            p.buffered.remove(0);
        }
        p.buffered.push((payload.to_vec(), now_ms));
    }

    /// The key messages buffered for `peer`, oldest first, removed.
    pub(crate) fn take_buffered(&mut self, peer: PeerId) -> Vec<(Vec<u8>, u64)> {
        self.peers
            .get_mut(&peer)
            .map(|p| std::mem::take(&mut p.buffered))
            .unwrap_or_default()
    }

    /// Judges a (signature-checked) key message's key id before any RSA work.
    pub(crate) fn novelty(&self, peer: PeerId, key: KeyId) -> Result<Novelty, Rejection> {
        let Some(p) = self.peers.get(&peer) else {
            return Ok(Novelty::New);
        };
        if p.max_epoch.is_some_and(|e| key.epoch < e) {
            return Err(Rejection::StaleKey);
        }
        let same_or_newer = p
            .keys
            .range(key..=KeyId::new(key.epoch, u16::MAX))
            .next()
            .is_some();
        Ok(if same_or_newer {
            Novelty::Duplicate
        } else {
            Novelty::New
        })
    }

    /// Spends one RSA decryption of `peer`'s budget (`max_unwraps_per_10s`) and one of the
    /// global budget (`max_unwraps_global_per_10s`); neither is spent unless both allow it.
    pub(crate) fn charge_unwrap(&mut self, peer: PeerId, now_ms: u64) -> Result<(), Rejection> {
        self.global_unwraps
            .refill(self.config.max_unwraps_global_per_10s, now_ms);
        let p = self.peers.entry(peer).or_default();
        if now_ms >= p.unwrap_window_start.saturating_add(UNWRAP_WINDOW_MS)
            || now_ms < p.unwrap_window_start
        {
            p.unwrap_window_start = now_ms;
            p.unwraps_in_window = 0;
        }
        if p.unwraps_in_window >= self.config.max_unwraps_per_10s
            || !self.global_unwraps.has_token()
        {
            return Err(Rejection::RateLimited);
        }
        p.unwraps_in_window += 1;
        self.global_unwraps.take();
        Ok(())
    }

    /// Installs `peer`'s key `id`. Older generations of its epoch retire after the grace time;
    /// older epochs (when `id` opens a newer one) once the sender had time to switch, plus the
    /// grace time. Returns whether it is the first key we hold from `peer`.
    pub(crate) fn install(
        &mut self,
        peer: PeerId,
        id: KeyId,
        secret: SenderSecret,
        room_id: &[u8],
        now_ms: u64,
    ) -> bool {
        let grace = self.config.old_key_grace_ms;
        let switch = self.config.rekey_switch_ms;
        let media = MediaKey::derive(id, &secret, room_id);
        let p = self.peers.entry(peer).or_default();
        let first = p.keys.is_empty();
        let newer_epoch = p.max_epoch.is_some_and(|e| id.epoch > e);
        p.keys
            .insert(id, RecvKey::new(secret, media, ReplayWindow::new()));
        p.max_epoch = Some(p.max_epoch.map_or(id.epoch, |e| e.max(id.epoch)));
        for (k_id, k) in p.keys.iter_mut() {
            let until = if k_id.epoch == id.epoch && k_id.generation < id.generation {
                Some(now_ms.saturating_add(grace))
            } else if k_id.epoch < id.epoch && newer_epoch {
                Some(now_ms.saturating_add(switch).saturating_add(grace))
            } else {
                None
            };
            if let Some(u) = until {
                k.retire_at = Some(k.retire_at.map_or(u, |t| t.min(u)));
            }
        }
        p.limit_keys();
        first
    }

    // -----------------------------------------------------------------------------------------
    // Media

    /// Opens `body` (its sealed header already parsed into `header`) from `sender` in place,
    /// checking (not advancing) the key's replay window. A body under generation `g + n` of an
    /// epoch we hold at `g`, `n <= max_ratchet_steps`, opens under the stepped key. Nothing is
    /// recorded: the body is not yet attributed to its sender (a member holding the sender's
    /// key could have sealed it). Once the session has checked the sender's signature it calls
    /// [`ReceivedKeys::commit`]. Allocation-free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open<'a>(
        &self,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
        header: &SealedHeader,
        body: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenMiss> {
        let Some(p) = self.peers.get(&sender) else {
            return Err(OpenMiss::NoKey { lacks_epoch: true });
        };
        if let Some(k) = p.keys.get(&header.key_id) {
            if !k.window.check(header.counter) {
                return Err(OpenMiss::Rejected(OpenError::Replayed {
                    counter: header.counter,
                }));
            }
            return k
                .media
                .open_in_place(header, sender, kind, target, room_id, body)
                .map_err(OpenMiss::Rejected);
        }
        if let Some(secret) = self.stepped_secret(p, header.key_id, room_id) {
            let media = MediaKey::derive(header.key_id, &secret, room_id);
            return media
                .open_in_place(header, sender, kind, target, room_id, body)
                .map_err(OpenMiss::Rejected);
        }
        // Asking for the key: we hold nothing of that epoch, or only generations too far
        // behind to step to (many newcomers between two of its packets), not a newer one.
        let key = header.key_id;
        let behind = !p
            .keys
            .range(key..=KeyId::new(key.epoch, u16::MAX))
            .any(|_| true);
        Err(OpenMiss::NoKey {
            lacks_epoch: p.lacks_epoch(key.epoch) || behind,
        })
    }

    /// The secret of `key` stepped forward from the newest generation of its epoch we hold,
    /// when it is within `max_ratchet_steps` (and we do not hold `key` itself).
    fn stepped_secret(&self, p: &FromPeer, key: KeyId, room_id: &[u8]) -> Option<SenderSecret> {
        let (base_id, base) = p.keys.range(KeyId::new(key.epoch, 0)..key).next_back()?;
        let steps = key.generation - base_id.generation;
        if steps > self.config.max_ratchet_steps {
            return None;
        }
        let mut secret = base.secret.ratchet(room_id);
        for _ in 1..steps {
            secret = secret.ratchet(room_id);
        }
        Some(secret)
    }

    /// Records a body that [`ReceivedKeys::open`] opened and the session attributed to its
    /// sender: advances the replay window (refusing a counter accepted meanwhile), installs a
    /// stepped-to generation, retires older epochs once a newer one is in use, and counts as
    /// the sender's liveness.
    pub(crate) fn commit(
        &mut self,
        sender: PeerId,
        key: KeyId,
        counter: u64,
        room_id: &[u8],
        now_ms: u64,
    ) -> Result<Committed, OpenError> {
        let grace = self.config.old_key_grace_ms;
        let stepped = match self.peers.get(&sender) {
            None => return Err(OpenError::UnknownKey { sender, key }),
            Some(p) if p.keys.contains_key(&key) => None,
            Some(p) => Some(
                self.stepped_secret(p, key, room_id)
                    .ok_or(OpenError::UnknownKey { sender, key })?,
            ),
        };
        let p = self.peers.get_mut(&sender).expect("checked above");
        let installed = match stepped {
            None => {
                let k = p.keys.get_mut(&key).expect("checked above");
                if !k.window.check(counter) {
                    return Err(OpenError::Replayed { counter });
                }
                k.window.accept(counter);
                if p.keys.keys().any(|id| id.epoch < key.epoch) {
                    p.retire_older(key, now_ms, grace);
                }
                None
            }
            Some(secret) => {
                let media = MediaKey::derive(key, &secret, room_id);
                let mut window = ReplayWindow::new();
                window.accept(counter);
                p.keys.insert(key, RecvKey::new(secret, media, window));
                p.retire_older(key, now_ms, grace);
                p.limit_keys();
                Some(key)
            }
        };
        p.last_opened_ms = Some(now_ms);
        let revived = std::mem::take(&mut p.silent);
        Ok(Committed { installed, revived })
    }

    // -----------------------------------------------------------------------------------------
    // Timers

    /// The soonest key retirement or buffered key message expiry.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        let ttl = self.config.buffered_key_ttl_ms;
        self.peers
            .values()
            .flat_map(|p| {
                let retire = p.keys.values().filter_map(|k| k.retire_at);
                let expire = p.buffered.iter().map(move |(_, t)| t.saturating_add(ttl));
                retire.chain(expire)
            })
            .min()
    }

    /// Drops expired buffered key messages and retires due keys; calls `retired` for each key
    /// dropped, by peer then key, ascending.
    pub(crate) fn on_tick(&mut self, now_ms: u64, mut retired: impl FnMut(PeerId, KeyId)) {
        let ttl = self.config.buffered_key_ttl_ms;
        for (id, p) in &mut self.peers {
            p.buffered.retain(|(_, t)| t.saturating_add(ttl) > now_ms);
            p.keys.retain(|k, r| {
                let keep = r.retire_at.is_none_or(|t| t > now_ms);
                if !keep {
                    retired(*id, *k);
                }
                keep
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn secret(&self, peer: PeerId, key: KeyId) -> Option<&SenderSecret> {
        Some(&self.peers.get(&peer)?.keys.get(&key)?.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &[u8] = b"room id";
    const P: PeerId = PeerId(3);
    const ME: PeerId = PeerId(1);

    fn config() -> ReceivedKeysConfig {
        ReceivedKeysConfig {
            old_key_grace_ms: 10_000,
            rekey_switch_ms: 2_000,
            max_ratchet_steps: 8,
            buffered_key_ttl_ms: 10_000,
            max_unwraps_per_10s: 16,
            max_unwraps_global_per_10s: 64,
        }
    }

    fn secret(b: u8) -> SenderSecret {
        SenderSecret([b; 32])
    }

    fn sealed(secret: &SenderSecret, id: KeyId, counter: u64) -> (SealedHeader, Vec<u8>) {
        let mut buf = vec![0u8; SealedHeader::LEN];
        buf.extend_from_slice(b"hello");
        MediaKey::derive(id, secret, ROOM)
            .seal_in_place(counter, P, DatagramKind::Audio, Some(ME), ROOM, &mut buf, 0)
            .unwrap();
        (SealedHeader::decode(&buf).unwrap(), buf)
    }

    fn retired(r: &mut ReceivedKeys, now: u64) -> Vec<(PeerId, KeyId)> {
        let mut out = Vec::new();
        r.on_tick(now, |p, k| out.push((p, k)));
        out
    }

    #[test]
    fn novelty_rejects_older_epochs_and_spots_duplicates() {
        let mut r = ReceivedKeys::new(config());
        assert_eq!(r.novelty(P, KeyId::new(1, 0)), Ok(Novelty::New));
        assert!(r.install(P, KeyId::new(1, 2), secret(1), ROOM, 0));
        assert!(r.holds_any(P));
        assert_eq!(r.novelty(P, KeyId::new(0, 9)), Err(Rejection::StaleKey));
        assert_eq!(r.novelty(P, KeyId::new(1, 1)), Ok(Novelty::Duplicate));
        assert_eq!(r.novelty(P, KeyId::new(1, 2)), Ok(Novelty::Duplicate));
        assert_eq!(r.novelty(P, KeyId::new(1, 3)), Ok(Novelty::New));
        assert_eq!(r.novelty(P, KeyId::new(2, 0)), Ok(Novelty::New));
        assert!(!r.install(P, KeyId::new(2, 0), secret(2), ROOM, 0));
    }

    #[test]
    fn superseded_keys_retire_after_the_grace_time() {
        let mut r = ReceivedKeys::new(config());
        assert_eq!(r.poll_timeout(), None);
        r.install(P, KeyId::new(0, 0), secret(1), ROOM, 1_000);
        assert_eq!(r.poll_timeout(), None, "the newest key never retires");
        r.install(P, KeyId::new(0, 1), secret(2), ROOM, 2_000);
        assert_eq!(r.poll_timeout(), Some(12_000));
        // A newer epoch: the older one stays until the sender switched, plus the grace time;
        // a retirement already due earlier stays as it is.
        r.install(P, KeyId::new(1, 0), secret(3), ROOM, 5_000);
        assert_eq!(r.poll_timeout(), Some(12_000));
        assert!(retired(&mut r, 11_999).is_empty());
        assert_eq!(retired(&mut r, 12_000), vec![(P, KeyId::new(0, 0))]);
        assert_eq!(r.poll_timeout(), Some(17_000));
        assert_eq!(retired(&mut r, 17_000), vec![(P, KeyId::new(0, 1))]);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.remove_peer(P).collect::<Vec<_>>(), vec![KeyId::new(1, 0)]);
        assert!(!r.holds_any(P));
    }

    #[test]
    fn buffered_key_messages_are_bounded_and_expire() {
        let mut r = ReceivedKeys::new(config());
        for i in 0..6u8 {
            r.buffer(P, &[i], 1_000 + u64::from(i));
        }
        assert_eq!(
            r.poll_timeout(),
            Some(11_002),
            "the two oldest were dropped"
        );
        retired(&mut r, 11_003);
        assert_eq!(r.poll_timeout(), Some(11_004));
        let left = r.take_buffered(P);
        assert_eq!(left, vec![(vec![4], 1_004), (vec![5], 1_005)]);
        assert!(r.take_buffered(P).is_empty() && r.take_buffered(PeerId(9)).is_empty());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn the_unwrap_budget_refills_every_ten_seconds() {
        let mut r = ReceivedKeys::new(config());
        for _ in 0..16 {
            assert_eq!(r.charge_unwrap(P, 50_000), Ok(()));
        }
        assert_eq!(r.charge_unwrap(P, 59_999), Err(Rejection::RateLimited));
        assert_eq!(r.charge_unwrap(P, 60_000), Ok(()));
        // A clock stepping backwards restarts the window rather than locking the peer out.
        for _ in 0..15 {
            r.charge_unwrap(P, 60_000).unwrap();
        }
        assert_eq!(r.charge_unwrap(P, 1), Ok(()));
    }

    #[test]
    fn the_global_unwrap_budget_bounds_every_peer_together_and_refills_steadily() {
        let mut r = ReceivedKeys::new(config());
        let now = 1_000_000;
        // 64 distinct peers each spend one: the bucket is empty, whatever the peer.
        for i in 0..64 {
            assert_eq!(r.charge_unwrap(PeerId(100 + i), now), Ok(()), "{i}");
        }
        assert_eq!(
            r.charge_unwrap(PeerId(500), now),
            Err(Rejection::RateLimited)
        );
        assert_eq!(r.charge_unwrap(P, now + 156), Err(Rejection::RateLimited));
        // 64 per 10 s: one token every 156.25 ms.
        assert_eq!(r.charge_unwrap(P, now + 157), Ok(()));
        assert_eq!(r.charge_unwrap(P, now + 157), Err(Rejection::RateLimited));
        // A refused attempt spends neither budget: P still has 15 of its own.
        for i in 0..15u64 {
            assert_eq!(r.charge_unwrap(P, now + 1_000 + 200 * i), Ok(()));
        }
        assert_eq!(
            r.charge_unwrap(P, now + 9_000),
            Err(Rejection::RateLimited),
            "P's own budget"
        );
        // After a quiet while the bucket is full again, never fuller.
        let later = now + 3_600_000;
        for i in 0..64 {
            assert_eq!(r.charge_unwrap(PeerId(1_000 + i), later), Ok(()));
        }
        assert_eq!(
            r.charge_unwrap(PeerId(2_000), later),
            Err(Rejection::RateLimited)
        );
        // A clock stepping backwards gives no tokens.
        assert_eq!(
            r.charge_unwrap(PeerId(2_001), 5),
            Err(Rejection::RateLimited)
        );
    }

    /// Opens then commits (what the session does once the sender's signature checks out).
    fn open_commit(
        r: &mut ReceivedKeys,
        (h, mut b): (SealedHeader, Vec<u8>),
        now: u64,
    ) -> Result<(Vec<u8>, Committed), OpenMiss> {
        let plain = r
            .open(P, DatagramKind::Audio, Some(ME), ROOM, &h, &mut b)?
            .to_vec();
        let c = r
            .commit(P, h.key_id, h.counter, ROOM, now)
            .map_err(OpenMiss::Rejected)?;
        Ok((plain, c))
    }

    #[test]
    fn media_opens_once_steps_forward_within_bounds_and_reports_missing_keys() {
        let mut r = ReceivedKeys::new(config());
        let open = |r: &mut ReceivedKeys, sealed| {
            open_commit(r, sealed, 0).map(|(plain, c)| (plain, c.installed))
        };
        let s0 = secret(7);
        let k0 = KeyId::new(0, 0);
        assert_eq!(
            open(&mut r, sealed(&s0, k0, 0)),
            Err(OpenMiss::NoKey { lacks_epoch: true })
        );
        r.install(P, k0, secret(7), ROOM, 0);
        assert_eq!(
            open(&mut r, sealed(&s0, k0, 5)),
            Ok((b"hello".to_vec(), None))
        );
        assert_eq!(
            open(&mut r, sealed(&s0, k0, 5)),
            Err(OpenMiss::Rejected(OpenError::Replayed { counter: 5 }))
        );
        // Generation 8 steps forward by itself, generation 9 beyond it does not.
        let mut s = secret(7);
        for _ in 0..8 {
            s = s.ratchet(ROOM);
        }
        let k8 = KeyId::new(0, 8);
        // Opening alone records nothing: the key is installed only on commit.
        let (h, mut b) = sealed(&s, k8, 6);
        assert!(
            r.open(P, DatagramKind::Audio, Some(ME), ROOM, &h, &mut b)
                .is_ok()
        );
        assert!(r.secret(P, k8).is_none());
        assert_eq!(
            open(&mut r, sealed(&s, k8, 6)),
            Ok((b"hello".to_vec(), Some(k8)))
        );
        assert!(r.secret(P, k8).is_some());
        assert_eq!(r.poll_timeout(), Some(10_000), "generation 0 retires");
        // Beyond reach: we ask for the key (the session re-announces), as when lacking the
        // epoch.
        let s17 = (0..9).fold(s, |s, _| s.ratchet(ROOM));
        assert_eq!(
            open(&mut r, sealed(&s17, KeyId::new(0, 17), 7)),
            Err(OpenMiss::NoKey { lacks_epoch: true })
        );

        // A forged body under a generation in reach is rejected, nothing installed.
        let (h, mut b) = sealed(&secret(9), KeyId::new(0, 9), 8);
        assert_eq!(
            r.open(P, DatagramKind::Audio, Some(ME), ROOM, &h, &mut b)
                .err(),
            Some(OpenMiss::Rejected(OpenError::Forged))
        );
        assert!(r.secret(P, KeyId::new(0, 9)).is_none());
        assert_eq!(
            open(&mut r, sealed(&secret(1), KeyId::new(1, 0), 9)),
            Err(OpenMiss::NoKey { lacks_epoch: true })
        );
    }

    #[test]
    fn an_uncommitted_body_leaves_the_replay_window_alone_and_a_second_commit_is_a_replay() {
        let mut r = ReceivedKeys::new(config());
        let s0 = secret(7);
        let k0 = KeyId::new(0, 0);
        r.install(P, k0, secret(7), ROOM, 0);
        // A body far ahead that is opened but never committed (its signature failed) does not
        // push the window: the sender's next real counters still open.
        let (h, mut b) = sealed(&s0, k0, 1 << 40);
        assert!(
            r.open(P, DatagramKind::Audio, Some(ME), ROOM, &h, &mut b)
                .is_ok()
        );
        assert!(open_commit(&mut r, sealed(&s0, k0, 3), 0).is_ok());
        assert_eq!(
            r.commit(P, k0, 3, ROOM, 0),
            Err(OpenError::Replayed { counter: 3 })
        );
        assert_eq!(
            r.commit(PeerId(99), k0, 4, ROOM, 0),
            Err(OpenError::UnknownKey {
                sender: PeerId(99),
                key: k0
            })
        );
    }

    #[test]
    fn an_authenticated_body_is_liveness_and_reports_a_silent_sender_back() {
        let mut r = ReceivedKeys::new(config());
        let s0 = secret(7);
        let k0 = KeyId::new(0, 0);
        r.install(P, k0, secret(7), ROOM, 0);
        assert_eq!(r.last_opened(P), None);
        let (_, c) = open_commit(&mut r, sealed(&s0, k0, 1), 5_000).unwrap();
        assert!(!c.revived);
        assert_eq!(r.last_opened(P), Some(5_000));
        r.set_silent(P, true);
        // A replay or a forgery is no sign of life.
        assert!(open_commit(&mut r, sealed(&s0, k0, 1), 6_000).is_err());
        assert!(open_commit(&mut r, sealed(&secret(8), k0, 2), 6_000).is_err());
        assert_eq!(r.last_opened(P), Some(5_000));
        let (_, c) = open_commit(&mut r, sealed(&s0, k0, 3), 7_000).unwrap();
        assert!(c.revived);
        assert_eq!(r.last_opened(P), Some(7_000));
        let (_, c) = open_commit(&mut r, sealed(&s0, k0, 4), 8_000).unwrap();
        assert!(!c.revived, "reported once");
    }

    #[test]
    fn at_most_sixteen_keys_are_held_per_peer() {
        let mut r = ReceivedKeys::new(config());
        for e in 0..20u16 {
            r.install(P, KeyId::new(e, 0), secret(e as u8), ROOM, 0);
        }
        let held: Vec<KeyId> = r.remove_peer(P).collect();
        assert_eq!(held.len(), 16);
        assert_eq!(held[0], KeyId::new(4, 0));
    }
}
