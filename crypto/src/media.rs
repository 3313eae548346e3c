//! Sender keys and media sealing: HKDF-derived AES-256-GCM key + 96-bit salt per sender secret,
//! nonce = salt XOR counter, the generation ratchet, and the receiver's replay window.
//!
//! These are plain functions on key objects (no session state), cheap enough for the hot path:
//! no allocation beyond growing the caller's buffer by the 16-byte tag.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use vcall_proto::e2ee::{KeyId, MAX_COUNTER, MediaAad, SealedHeader, TAG_LEN};
use vcall_proto::{DatagramKind, PeerId};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{LABEL_MEDIA_KEY, LABEL_MEDIA_SALT, LABEL_RATCHET, hkdf};

/// Bytes a sealed body adds to its plaintext: the 10-byte sealed header and the 16-byte tag.
pub const SEAL_OVERHEAD: usize = SealedHeader::LEN + TAG_LEN;

/// Why sealing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not joined yet: no peer id to bind into the packet")]
    NotJoined,
    #[error("the 48-bit packet counter is exhausted; rejoin with a new session")]
    CounterExhausted,
    #[error("buffer does not hold the reserved sealed header")]
    BadBuffer,
    #[error("the E2EE session ended itself (see its fatal reason); nothing more is sealed")]
    SessionEnded,
}

/// Why a sealed body was rejected. None of these is fatal: drop the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not joined yet")]
    NotJoined,
    #[error("malformed sealed body")]
    Malformed,
    #[error("packet addressed to another peer")]
    NotForMe,
    #[error("no key {key} from peer {sender}")]
    UnknownKey { sender: PeerId, key: KeyId },
    #[error("replayed or too old (counter {counter})")]
    Replayed { counter: u64 },
    #[error("authentication failed")]
    Forged,
    #[error("sender {sender} is not a member whose signing key we hold")]
    NotAMember { sender: PeerId },
    #[error("the sender's signature does not verify: sealed by someone else holding its key")]
    BadSignature,
    #[error("audio held until its sender's batch signature arrives")]
    AwaitingSignature,
}

/// A 32-byte sender secret (what key messages wrap). Wiped on drop with `zeroize` (a volatile
/// write the compiler cannot remove). Neither `Clone` nor comparable: each secret lives in one
/// place (the session's key tables, session/sender_keys.rs and session/received_keys.rs) and is
/// lent out by reference, so there is no stray copy to forget.
pub struct SenderSecret(pub(crate) [u8; 32]);

impl SenderSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// One ratchet step: `HKDF("vcall/1 ratchet", secret, room id)`. One-way, so holding
    /// generation g + 1 reveals nothing about generation g.
    pub fn ratchet(&self, room_id: &[u8]) -> Self {
        Self(hkdf(LABEL_RATCHET, &self.0, room_id))
    }
}

impl Drop for SenderSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SenderSecret {}

impl fmt::Debug for SenderSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderSecret(..)")
    }
}

/// An AES-256-GCM key and its nonce salt, derived from one sender secret for one room. The salt
/// is wiped on drop; the AES key schedule lives in ring's `LessSafeKey`, which ring (0.17) does
/// not wipe (see docs/SECURITY.md, "Memory"). Not `Clone`, like the secret it comes from.
pub struct MediaKey {
    id: KeyId,
    key: LessSafeKey,
    salt: [u8; 12],
}

impl Drop for MediaKey {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaKey({})", self.id)
    }
}

impl MediaKey {
    /// key = HKDF("vcall/1 media key", secret, room id), 32 bytes;
    /// salt = HKDF("vcall/1 media salt", secret, room id), 12 bytes.
    pub fn derive(id: KeyId, secret: &SenderSecret, room_id: &[u8]) -> Self {
        let k: Zeroizing<[u8; 32]> = Zeroizing::new(hkdf(LABEL_MEDIA_KEY, &secret.0, room_id));
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k[..]).expect("32-byte key"));
        Self {
            id,
            key,
            salt: hkdf(LABEL_MEDIA_SALT, &secret.0, room_id),
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn nonce(&self, counter: u64) -> Nonce {
        let mut n = self.salt;
        for (b, c) in n[4..].iter_mut().zip(counter.to_be_bytes()) {
            *b ^= c;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Seals in place. `buf[start..start + 10]` is reserved for the sealed header (its content
    /// is overwritten), the plaintext is `buf[start + 10..]`; on return the header is written,
    /// the plaintext encrypted and the 16-byte tag appended. `buf[..start]` (e.g. a datagram
    /// header) is left alone. The caller guarantees `counter` is unique for this key.
    #[allow(clippy::too_many_arguments)]
    pub fn seal_in_place(
        &self,
        counter: u64,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), SealError> {
        self.seal_in_place_with(
            counter,
            sender,
            kind,
            target,
            room_id,
            buf,
            start,
            |_, _| {},
        )
    }

    /// [`MediaKey::seal_in_place`], calling `trailer` with the packet's AAD just before
    /// encrypting, so it can append to the plaintext what depends on the AAD (the sender's
    /// signature trailer, see [`crate::sender_auth`]).
    #[allow(clippy::too_many_arguments)]
    pub fn seal_in_place_with(
        &self,
        counter: u64,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
        trailer: impl FnOnce(&MediaAad, &mut Vec<u8>),
    ) -> Result<(), SealError> {
        if counter > MAX_COUNTER {
            return Err(SealError::CounterExhausted);
        }
        if buf.len() < start + SealedHeader::LEN {
            return Err(SealError::BadBuffer);
        }
        let header = SealedHeader {
            key_id: self.id,
            counter,
        };
        buf[start..start + SealedHeader::LEN].copy_from_slice(&header.to_bytes());
        let aad = MediaAad::new(&header, sender, kind, target, room_id);
        trailer(&aad, buf);
        let tag: Tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(counter),
                Aad::from(aad.as_bytes()),
                &mut buf[start + SealedHeader::LEN..],
            )
            .map_err(|_| SealError::BadBuffer)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a sealed body in place (header already parsed from it) and returns the plaintext,
    /// a sub-slice of `body`. Does not check replay: see [`ReplayWindow`].
    pub fn open_in_place<'a>(
        &self,
        header: &SealedHeader,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
        body: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenError> {
        if body.len() < SEAL_OVERHEAD || header.key_id != self.id {
            return Err(OpenError::Malformed);
        }
        let aad = MediaAad::new(header, sender, kind, target, room_id);
        self.key
            .open_in_place(
                self.nonce(header.counter),
                Aad::from(aad.as_bytes()),
                &mut body[SealedHeader::LEN..],
            )
            .map_err(|_| OpenError::Forged)
    }
}

/// Number of counters a receiver remembers behind the highest one it accepted, per sender key.
pub const REPLAY_WINDOW: u64 = 2048;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// A sliding-window replay filter over 48-bit counters (RFC 4303 style, 2048 wide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest accepted counter + 1 (0 = nothing accepted yet).
    top: u64,
    /// Bit `c % REPLAY_WINDOW` set when counter `c` (within the window) was accepted.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `counter` would be accepted (new and not too old). Does not record it.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.top {
            return true;
        }
        if self.top - counter > REPLAY_WINDOW {
            return false;
        }
        let i = (counter % REPLAY_WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) == 0
    }

    /// Records `counter` as seen; call only after the packet authenticated and `check` passed.
    pub fn accept(&mut self, counter: u64) {
        if counter >= self.top {
            let advance = counter + 1 - self.top;
            if advance >= REPLAY_WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.top..=counter {
                    let i = (c % REPLAY_WINDOW) as usize;
                    self.bits[i / 64] &= !(1 << (i % 64));
                }
            }
            self.top = counter + 1;
        }
        let i = (counter % REPLAY_WINDOW) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// Highest accepted counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: KeyId, byte: u8) -> MediaKey {
        MediaKey::derive(id, &SenderSecret([byte; 32]), b"room")
    }

    #[test]
    fn seal_open_round_trip_behind_a_datagram_header() {
        let k = key(KeyId::new(1, 2), 7);
        let mut buf = vec![0xD0; 7]; // pretend datagram header
        buf.extend_from_slice(&[0; SealedHeader::LEN]);
        buf.extend_from_slice(b"hello media");
        k.seal_in_place(
            5,
            PeerId(3),
            DatagramKind::Audio,
            None,
            b"room",
            &mut buf,
            7,
        )
        .unwrap();
        assert_eq!(buf.len(), 7 + SEAL_OVERHEAD + 11);
        assert_eq!(&buf[..7], &[0xD0; 7]);
        let body = &mut buf[7..];
        let h = SealedHeader::decode(body).unwrap();
        assert_eq!((h.key_id, h.counter), (KeyId::new(1, 2), 5));
        let mut copy = body.to_vec();
        let pt = k
            .open_in_place(&h, PeerId(3), DatagramKind::Audio, None, b"room", body)
            .unwrap();
        assert_eq!(pt, b"hello media");
        // Any change to the AAD inputs fails.
        for (s, kind, t, r) in [
            (PeerId(4), DatagramKind::Audio, None, &b"room"[..]),
            (PeerId(3), DatagramKind::Heartbeat, None, b"room"),
            (PeerId(3), DatagramKind::Audio, Some(PeerId(9)), b"room"),
            (PeerId(3), DatagramKind::Audio, None, b"moor"),
        ] {
            let mut c = copy.clone();
            assert_eq!(
                k.open_in_place(&h, s, kind, t, r, &mut c).err(),
                Some(OpenError::Forged)
            );
        }
        copy[SEAL_OVERHEAD] ^= 1;
        assert!(
            k.open_in_place(&h, PeerId(3), DatagramKind::Audio, None, b"room", &mut copy)
                .is_err()
        );
    }

    #[test]
    fn nonce_is_salt_xor_counter_and_counter_is_bounded() {
        let k = key(KeyId::default(), 1);
        let n0 = k.nonce(0);
        assert_eq!(n0.as_ref(), &k.salt);
        let n = k.nonce(0x0102);
        assert_eq!(n.as_ref()[10] ^ k.salt[10], 1);
        assert_eq!(n.as_ref()[11] ^ k.salt[11], 2);
        let mut buf = vec![0; SealedHeader::LEN];
        assert_eq!(
            k.seal_in_place(
                MAX_COUNTER + 1,
                PeerId(1),
                DatagramKind::Video,
                None,
                b"r",
                &mut buf,
                0
            ),
            Err(SealError::CounterExhausted)
        );
        let mut short = vec![0; 3];
        assert_eq!(
            k.seal_in_place(0, PeerId(1), DatagramKind::Video, None, b"r", &mut short, 0),
            Err(SealError::BadBuffer)
        );
    }

    #[test]
    fn ratchet_is_deterministic_one_way_and_room_bound() {
        let s = SenderSecret([9; 32]);
        let step = |room: &[u8]| *s.ratchet(room).as_bytes();
        assert_eq!(step(b"a"), step(b"a"));
        assert_ne!(step(b"a"), step(b"b"));
        assert_ne!(step(b"a"), *s.as_bytes());
    }

    #[test]
    fn replay_window_basics() {
        let mut w = ReplayWindow::new();
        assert!(w.check(0));
        w.accept(0);
        assert!(!w.check(0));
        w.accept(5000);
        assert!(!w.check(5000));
        assert!(w.check(4999));
        assert!(w.check(5000 - REPLAY_WINDOW + 1));
        assert!(!w.check(5000 - REPLAY_WINDOW));
        assert_eq!(w.highest(), Some(5000));
    }

    proptest! {
        /// Against a model (a set of seen counters): accept iff never seen and within the window
        /// behind the highest accepted counter.
        #[test]
        fn replay_window_matches_a_model(ops in proptest::collection::vec(0u64..6000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut top: Option<u64> = None;
            for c in ops {
                let fresh = !seen.contains(&c);
                let in_window = match top { None => true, Some(t) => c + REPLAY_WINDOW > t };
                let want = fresh && in_window;
                prop_assert_eq!(w.check(c), want, "counter {}", c);
                if want {
                    w.accept(c);
                    seen.insert(c);
                    top = Some(top.map_or(c, |t| t.max(c)));
                }
                prop_assert!(!w.check(c));
            }
        }

        #[test]
        fn replay_window_accepts_any_permutation_within_the_window(seed in any::<u64>(), n in 1usize..2048) {
            let mut cs: Vec<u64> = (0..n as u64).collect();
            let mut s = seed | 1;
            for i in (1..cs.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                cs.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut w = ReplayWindow::new();
            for c in &cs {
                prop_assert!(w.check(*c));
                w.accept(*c);
            }
            for c in &cs {
                prop_assert!(!w.check(*c));
            }
        }
    }
}
