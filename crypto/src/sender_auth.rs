//! Sender authenticity inside sealed media: the signature trailer at the end of every sealed
//! plaintext, its digests and signed messages, and the sender's audio batching.
//!
//! Every member holds every sender's AES key, so a body that opens proves only that *a member*
//! sealed it. The trailer proves it was the sender: its Ed25519 key (from the announcement the
//! session accepted) signs each video frame, heartbeat and feedback body, and signs audio in
//! batches (a signature over the digests of the last [`BATCH_WINDOW`] audio packets, carried by
//! every [`BATCH_EVERY`]th one). The layout, inside the AEAD (docs/PROTOCOL.md §7.4):
//!
//! ```text
//! plaintext = app bytes || trailer
//! trailer   = 0x00                                  audio, no signature in this packet
//!           | signature(64) || 0x01                 video, heartbeat, feedback
//!           | digest(12) * n || n(u8) || signature(64) || 0x02   audio batch, 1 <= n <= 10 (we send 6)
//! content digest = SHA-256("vcall/2 content" || media AAD || app bytes)
//! 0x01 signs "vcall/2 packet signature" || content digest (32 bytes)
//! 0x02 signs "vcall/2 audio batch" || the n digests, oldest first; a digest is the first
//!      12 bytes of a content digest, and the last one is this packet's own
//! ```
//!
//! The media AAD holds the key id, counter, sender, kind, target and room id, so a signature
//! vouches for exactly one packet of one sender in one room: a member cannot re-seal a sender's
//! packet under another counter (which would push the sender's replay window ahead).

use ring::digest::{Context, SHA256};
use vcall_proto::DatagramKind;
use vcall_proto::e2ee::MediaAad;

use crate::identity::{Identity, PeerKeys};
use crate::media::OpenError;

/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of a content digest that an audio batch carries (96 bits: a second preimage is out
/// of reach, let alone within the ~200 ms a packet waits for its batch).
pub const DIGEST_LEN: usize = 12;
/// Every this many audio packets, one carries a batch signature (a packet waits at most two
/// packets, 40 ms, for its batch; a shorter wait than a jitter buffer's usual delay).
pub const BATCH_EVERY: usize = 3;
/// A batch we send covers this many audio packets (the last two batches' worth), so each
/// packet is vouched for by two signatures and one lost signature packet costs no audio.
pub const BATCH_WINDOW: usize = 2 * BATCH_EVERY;
/// A batch lists at most this many packets (the wire limit receivers accept).
pub const MAX_BATCH_LEN: usize = 10;
/// The trailer of a packet without a signature.
pub const TRAILER_NONE: u8 = 0;
/// The trailer of a packet with its own signature.
pub const TRAILER_SIGNATURE: u8 = 1;
/// The trailer of an audio packet that signs a batch.
pub const TRAILER_BATCH: u8 = 2;
/// The largest trailer (an audio batch over [`MAX_BATCH_LEN`] packets).
pub const MAX_TRAILER_LEN: usize = MAX_BATCH_LEN * DIGEST_LEN + 1 + SIGNATURE_LEN + 1;

const LABEL_CONTENT: &[u8] = b"vcall/2 content";
const LABEL_PACKET_SIGNATURE: &[u8] = b"vcall/2 packet signature";
const LABEL_AUDIO_BATCH: &[u8] = b"vcall/2 audio batch";

/// SHA-256 over the label, the packet's AAD and its app bytes.
pub fn content_digest(aad: &MediaAad, app: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(LABEL_CONTENT);
    ctx.update(aad.as_bytes());
    ctx.update(app);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The first [`DIGEST_LEN`] bytes of a content digest (what an audio batch lists).
pub fn short_digest(digest: &[u8; 32]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&digest[..DIGEST_LEN]);
    out
}

/// What a packet signature signs.
fn packet_message(digest: &[u8; 32]) -> ([u8; 56], usize) {
    let mut m = [0u8; 56];
    let n = LABEL_PACKET_SIGNATURE.len();
    m[..n].copy_from_slice(LABEL_PACKET_SIGNATURE);
    m[n..n + 32].copy_from_slice(digest);
    (m, n + 32)
}

/// What a batch signature signs (`digests` is `n * DIGEST_LEN` bytes, n <= MAX_BATCH_LEN).
fn batch_message(digests: &[u8]) -> ([u8; 19 + MAX_BATCH_LEN * DIGEST_LEN], usize) {
    let mut m = [0u8; 19 + MAX_BATCH_LEN * DIGEST_LEN];
    let n = LABEL_AUDIO_BATCH.len();
    m[..n].copy_from_slice(LABEL_AUDIO_BATCH);
    m[n..n + digests.len()].copy_from_slice(digests);
    (m, n + digests.len())
}

/// The digests of our last audio packets, for the next batch signature. Fixed size, no
/// allocation.
#[derive(Debug, Default)]
pub struct AudioBatcher {
    /// Oldest first; `len` valid entries.
    digests: [[u8; DIGEST_LEN]; BATCH_WINDOW],
    len: usize,
    since_signature: usize,
}

impl AudioBatcher {
    /// Records one audio packet's digest; true if this packet is to carry a batch signature.
    fn push(&mut self, digest: [u8; DIGEST_LEN]) -> bool {
        if self.len == BATCH_WINDOW {
            self.digests.copy_within(1.., 0);
            self.len -= 1;
        }
        self.digests[self.len] = digest;
        self.len += 1;
        self.since_signature += 1;
        if self.since_signature == BATCH_EVERY {
            self.since_signature = 0;
            true
        } else {
            false
        }
    }

    fn window(&self) -> &[[u8; DIGEST_LEN]] {
        &self.digests[..self.len]
    }
}

/// Appends our trailer to `buf`, whose app bytes are `buf[app_start..]`, for a packet of
/// `kind` with `aad`. Called by the sealer just before encryption.
pub fn append_trailer(
    kind: DatagramKind,
    aad: &MediaAad,
    app_start: usize,
    buf: &mut Vec<u8>,
    identity: &Identity,
    batcher: &mut AudioBatcher,
) {
    let digest = content_digest(aad, &buf[app_start..]);
    if kind != DatagramKind::Audio {
        let (m, n) = packet_message(&digest);
        buf.extend_from_slice(&identity.sign(&m[..n]));
        buf.push(TRAILER_SIGNATURE);
        return;
    }
    if !batcher.push(short_digest(&digest)) {
        buf.push(TRAILER_NONE);
        return;
    }
    let window = batcher.window();
    let start = buf.len();
    for d in window {
        buf.extend_from_slice(d);
    }
    let (m, n) = batch_message(&buf[start..]);
    let signature = identity.sign(&m[..n]);
    buf.push(window.len() as u8);
    buf.extend_from_slice(&signature);
    buf.push(TRAILER_BATCH);
}

/// A received packet's trailer.
#[derive(Debug, PartialEq, Eq)]
pub enum Trailer<'a> {
    /// Audio without a signature: attributable only through a batch.
    None,
    /// The packet's own signature.
    Signature(&'a [u8; SIGNATURE_LEN]),
    /// An audio batch: `digests` is `n * DIGEST_LEN` bytes, this packet's own last.
    Batch {
        digests: &'a [u8],
        signature: &'a [u8; SIGNATURE_LEN],
    },
}

/// Splits an opened plaintext into its app bytes and trailer; a trailer of the wrong type for
/// `kind` (video, heartbeat and feedback must be signed) or a malformed one is refused.
pub fn split(kind: DatagramKind, plain: &mut [u8]) -> Result<(&mut [u8], Trailer<'_>), OpenError> {
    let (&mut ty, rest) = plain.split_last_mut().ok_or(OpenError::Malformed)?;
    let signature_at = |rest: &[u8]| rest.len().checked_sub(SIGNATURE_LEN);
    match (ty, kind) {
        (TRAILER_NONE, DatagramKind::Audio) => Ok((rest, Trailer::None)),
        (TRAILER_SIGNATURE, k) if k != DatagramKind::Audio => {
            let at = signature_at(rest).ok_or(OpenError::Malformed)?;
            let (app, sig) = rest.split_at_mut(at);
            let sig: &[u8; SIGNATURE_LEN] = (&*sig).try_into().expect("64 bytes");
            Ok((app, Trailer::Signature(sig)))
        }
        (TRAILER_BATCH, DatagramKind::Audio) => {
            let at = signature_at(rest)
                .filter(|at| *at >= 1)
                .ok_or(OpenError::Malformed)?;
            let (head, sig) = rest.split_at_mut(at);
            let sig: &[u8; SIGNATURE_LEN] = (&*sig).try_into().expect("64 bytes");
            let (&mut n, head) = head.split_last_mut().expect("at >= 1");
            let n = n as usize;
            if n == 0 || n > MAX_BATCH_LEN || head.len() < n * DIGEST_LEN {
                return Err(OpenError::Malformed);
            }
            let (app, digests) = head.split_at_mut(head.len() - n * DIGEST_LEN);
            Ok((
                app,
                Trailer::Batch {
                    digests,
                    signature: sig,
                },
            ))
        }
        _ => Err(OpenError::Malformed),
    }
}

/// Checks a packet signature by `keys` over `digest`.
pub fn verify_packet(keys: &PeerKeys, digest: &[u8; 32], signature: &[u8; SIGNATURE_LEN]) -> bool {
    let (m, n) = packet_message(digest);
    keys.verify(&m[..n], signature)
}

/// Checks a batch signature by `keys`: the batch must end with this packet's own `digest`.
pub fn verify_batch(
    keys: &PeerKeys,
    digest: &[u8; 32],
    digests: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    if digests.len() < DIGEST_LEN || digests[digests.len() - DIGEST_LEN..] != digest[..DIGEST_LEN] {
        return false;
    }
    let (m, n) = batch_message(digests);
    keys.verify(&m[..n], signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use vcall_proto::PeerId;
    use vcall_proto::e2ee::{KeyId, SealedHeader};

    fn aad(counter: u64, kind: DatagramKind) -> MediaAad {
        let h = SealedHeader {
            key_id: KeyId::new(0, 0),
            counter,
        };
        MediaAad::new(&h, PeerId(2), kind, None, b"room")
    }

    fn identity(seed: u64) -> Identity {
        Identity::generate_with(2048, &mut SeededRandom::new(&seed.to_be_bytes())).unwrap()
    }

    #[test]
    fn a_signed_packet_splits_and_verifies_and_nothing_else_does() {
        let me = identity(1);
        let other = identity(2);
        let mut batcher = AudioBatcher::default();
        let a = aad(7, DatagramKind::Video);
        let mut buf = b"frame".to_vec();
        append_trailer(DatagramKind::Video, &a, 0, &mut buf, &me, &mut batcher);
        assert_eq!(buf.len(), 5 + SIGNATURE_LEN + 1);
        let (app, t) = split(DatagramKind::Video, &mut buf).unwrap();
        assert_eq!(app, b"frame");
        let digest = content_digest(&a, app);
        let Trailer::Signature(sig) = t else {
            panic!("{t:?}")
        };
        assert!(verify_packet(&me.public_keys(), &digest, sig));
        assert!(!verify_packet(&other.public_keys(), &digest, sig));
        // The same bytes under another counter (a re-seal) are not vouched for.
        let moved = content_digest(&aad(8, DatagramKind::Video), b"frame");
        assert!(!verify_packet(&me.public_keys(), &moved, sig));
        // A signed kind may not come without its signature, audio may not carry one.
        assert_eq!(
            split(DatagramKind::Heartbeat, &mut [1, 2, TRAILER_NONE]).err(),
            Some(OpenError::Malformed)
        );
        let mut signed_audio = vec![0u8; 70];
        *signed_audio.last_mut().unwrap() = TRAILER_SIGNATURE;
        assert!(split(DatagramKind::Audio, &mut signed_audio).is_err());
        assert!(split(DatagramKind::Video, &mut []).is_err());
        assert!(split(DatagramKind::Video, &mut [0; 10][..]).is_err());
    }

    #[test]
    fn every_fifth_audio_packet_signs_the_last_ten() {
        let me = identity(3);
        let keys = me.public_keys();
        let mut batcher = AudioBatcher::default();
        let mut digests = Vec::new();
        for counter in 0..20u64 {
            let a = aad(counter, DatagramKind::Audio);
            let mut buf = vec![counter as u8; 40];
            append_trailer(DatagramKind::Audio, &a, 0, &mut buf, &me, &mut batcher);
            let (app, t) = split(DatagramKind::Audio, &mut buf).unwrap();
            assert_eq!(app, &[counter as u8; 40][..]);
            let digest = content_digest(&a, app);
            digests.push(short_digest(&digest));
            match t {
                Trailer::None => assert_ne!(
                    counter % BATCH_EVERY as u64,
                    BATCH_EVERY as u64 - 1,
                    "packet {counter}"
                ),
                Trailer::Batch {
                    digests: listed,
                    signature,
                } => {
                    assert_eq!(
                        counter % BATCH_EVERY as u64,
                        BATCH_EVERY as u64 - 1,
                        "packet {counter}"
                    );
                    let from = digests.len().saturating_sub(BATCH_WINDOW);
                    assert_eq!(listed, digests[from..].concat().as_slice());
                    assert!(verify_batch(&keys, &digest, listed, signature));
                    // Someone else's packet cannot claim the batch.
                    let theirs = content_digest(&aad(99, DatagramKind::Audio), b"x");
                    assert!(!verify_batch(&keys, &theirs, listed, signature));
                    let mut tampered = listed.to_vec();
                    tampered[0] ^= 1;
                    assert!(!verify_batch(&keys, &digest, &tampered, signature));
                }
                Trailer::Signature(_) => panic!("audio is batched"),
            }
        }
    }

    #[test]
    fn malformed_batches_are_refused() {
        // n = 0, n too large, n larger than what precedes it.
        for (n, len) in [(0u8, 30usize), (11, 200), (3, 10)] {
            let mut buf = vec![0u8; len];
            buf.push(n);
            buf.extend_from_slice(&[0; SIGNATURE_LEN]);
            buf.push(TRAILER_BATCH);
            assert_eq!(
                split(DatagramKind::Audio, &mut buf).err(),
                Some(OpenError::Malformed),
                "n {n}"
            );
        }
        assert!(
            split(DatagramKind::Audio, &mut [9, 9, 7]).is_err(),
            "unknown type"
        );
    }
}
