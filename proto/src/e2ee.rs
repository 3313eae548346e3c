//! End-to-end encryption messages: announcements, key messages, key acks (all carried as
//! `Signal` payloads), the sealed-packet header and the exact AAD of every sealed media body.
//!
//! Byte layouts (all integers big-endian; docs/PROTOCOL.md "## E2EE messages" says the same):
//!
//! ```text
//! Signal payload, first byte = type tag:
//!   1 announcement envelope   2 key message   3 key ack
//!
//! Announcement envelope:
//!   u8  tag = 1
//!   u8  mode        0 = clear (room without secret), 1 = sealed (AES-256-GCM, room announce key)
//!   [12] nonce      only when mode = 1
//!   ..  body        mode 0: announcement bytes; mode 1: AES-256-GCM(announcement) || tag(16)
//!   AAD of a sealed envelope = tag, mode, nonce (the first 14 bytes) || u8 len || room id
//!
//! Announcement (the plaintext; 113 bytes + the RSA key, whatever the name's length):
//!   u8  version = 2
//!   u32 peer id (relay-assigned id of the announcing session, from its Welcome)
//!   u64 timestamp, Unix milliseconds
//!   u8 len + UTF-8 display name (<= 64 bytes)
//!   u16 len + RSA public key, PKCS#1 DER (RSAPublicKey)
//!   [32] Ed25519 public key
//!   u8 pad = 64 - name len, then pad zero bytes (name + padding: always 64 bytes)
//!
//! Key message:
//!   u8  tag = 2
//!   u32 sender, u32 recipient
//!   u8 len + room id (<= 64 bytes)
//!   u16 epoch, u16 generation
//!   u16 len + RSA-OAEP-SHA256 ciphertext of the 32-byte sender secret
//!   [64] Ed25519 signature by the sender over "vcall/1 key message" || every preceding byte
//!
//! Key ack (recipient -> key owner: "I hold this key"):
//!   u8  tag = 3
//!   u32 sender (the acking peer), u32 recipient (the key's owner)
//!   u8 len + room id
//!   u16 epoch, u16 generation
//!   [64] Ed25519 signature by the acking peer over "vcall/1 key ack" || every preceding byte
//!
//! Sealed media body (follows the DatagramHeader; a whole video frame before fragmentation):
//!   u16 epoch, u16 generation, u48 counter   (the 10-byte sealed header)
//!   ..  AES-256-GCM ciphertext, then the 16-byte tag
//!
//! AAD of a sealed media body:
//!   [10] sealed header | u32 sender | u8 datagram kind | u32 target (0 = none)
//!   | u8 len | room id
//! ```

use crate::wire::{Reader, put_long_bytes, put_short_bytes};
use crate::{DatagramKind, DecodeError, PeerId};

/// Signal payload type tag of an announcement envelope.
pub const TAG_ANNOUNCEMENT: u8 = 1;
/// Signal payload type tag of a key message.
pub const TAG_KEY_MESSAGE: u8 = 2;
/// Signal payload type tag of a key ack.
pub const TAG_KEY_ACK: u8 = 3;

/// Version byte at the start of an announcement plaintext: 2 since protocol version 3 (the
/// zero padding after the Ed25519 key); version 1 had none.
pub const ANNOUNCEMENT_VERSION: u8 = 2;
/// Longest display name in an announcement, in UTF-8 bytes. The name and its zero padding
/// always take this many bytes together.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Bytes of an announcement plaintext besides the RSA public key: version, peer id, timestamp,
/// the name's length byte, name and padding (64), the key's length prefix, the Ed25519 key and
/// the padding's length byte.
pub const ANNOUNCEMENT_FIXED_LEN: usize =
    1 + 4 + 8 + 1 + MAX_DISPLAY_NAME + 2 + ED25519_PUBLIC_KEY_LEN + 1;
/// Longest room id (what the client sends to the relay and binds into every AAD).
pub const MAX_ROOM_ID: usize = 64;
/// Longest RSA public key DER accepted (4096-bit keys fit comfortably).
pub const MAX_RSA_PUBLIC_KEY: usize = 1024;
/// Longest RSA ciphertext accepted in a key message (4096-bit modulus).
pub const MAX_WRAPPED_KEY: usize = 512;
/// Length of an AES-256-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-256-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of an Ed25519 public key.
pub const ED25519_PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest counter value a sealed header can carry (48 bits).
pub const MAX_COUNTER: u64 = (1 << 48) - 1;
/// Signature context prefixed to a key message's signed bytes.
pub const KEY_MESSAGE_CONTEXT: &[u8] = b"vcall/1 key message";
/// Signature context prefixed to a key ack's signed bytes.
pub const KEY_ACK_CONTEXT: &[u8] = b"vcall/1 key ack";

/// Identifies one sender key: a fresh random secret per epoch, ratcheted per generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyId {
    pub epoch: u16,
    pub generation: u16,
}

impl KeyId {
    pub const fn new(epoch: u16, generation: u16) -> Self {
        Self { epoch, generation }
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.generation)
    }
}

/// Returns the type tag of an E2EE signal payload without parsing the rest.
pub fn signal_tag(payload: &[u8]) -> Result<u8, DecodeError> {
    match payload.first() {
        None => Err(DecodeError::Truncated { needed: 1 }),
        Some(&t @ (TAG_ANNOUNCEMENT | TAG_KEY_MESSAGE | TAG_KEY_ACK)) => Ok(t),
        Some(&value) => Err(DecodeError::UnknownKind {
            what: "e2ee signal type",
            value,
        }),
    }
}

/// Any E2EE signal payload, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum E2eeSignal<'a> {
    Announcement(AnnouncementEnvelope<'a>),
    Key(KeyMessage<'a>),
    Ack(KeyAck<'a>),
}

/// Parses a `Signal` payload by its type tag.
pub fn decode_signal(payload: &[u8]) -> Result<E2eeSignal<'_>, DecodeError> {
    Ok(match signal_tag(payload)? {
        TAG_ANNOUNCEMENT => E2eeSignal::Announcement(AnnouncementEnvelope::decode(payload)?),
        TAG_KEY_MESSAGE => E2eeSignal::Key(KeyMessage::decode(payload)?),
        _ => E2eeSignal::Ack(KeyAck::decode(payload)?),
    })
}

/// Runs every decoder of this module over `bytes` (a fuzzing aid) and returns the signal parse.
pub fn decode_any(bytes: &[u8]) -> Result<E2eeSignal<'_>, DecodeError> {
    let _ = Announcement::decode(bytes);
    let _ = SealedHeader::decode(bytes);
    decode_signal(bytes)
}

fn room_id_ok(room_id: &[u8]) -> Result<(), DecodeError> {
    if room_id.is_empty() {
        return Err(DecodeError::Invalid {
            what: "room id",
            why: "empty",
        });
    }
    if room_id.len() > MAX_ROOM_ID {
        return Err(DecodeError::TooLarge {
            len: room_id.len(),
            max: MAX_ROOM_ID,
        });
    }
    Ok(())
}

/// Appends what key messages and key acks start with: tag, sender, recipient, room id, key id.
fn put_key_prefix(
    out: &mut Vec<u8>,
    tag: u8,
    sender: PeerId,
    recipient: PeerId,
    room_id: &[u8],
    key_id: KeyId,
) {
    assert!(room_id.len() <= MAX_ROOM_ID);
    out.push(tag);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&recipient.0.to_be_bytes());
    put_short_bytes(out, room_id);
    out.extend_from_slice(&key_id.epoch.to_be_bytes());
    out.extend_from_slice(&key_id.generation.to_be_bytes());
}

/// Reads the prefix [`put_key_prefix`] writes, checking the tag; `what` names the tag, the
/// sender and the recipient in errors.
fn get_key_prefix<'a>(
    r: &mut Reader<'a>,
    tag: u8,
    what: [&'static str; 3],
) -> Result<(PeerId, PeerId, &'a [u8], KeyId), DecodeError> {
    let value = r.u8()?;
    if value != tag {
        return Err(DecodeError::UnknownKind {
            what: what[0],
            value,
        });
    }
    let sender = peer_nonzero(r.u32()?, what[1])?;
    let recipient = peer_nonzero(r.u32()?, what[2])?;
    let room_id = r.short_bytes()?;
    room_id_ok(room_id)?;
    let key_id = KeyId::new(r.u16()?, r.u16()?);
    Ok((sender, recipient, room_id, key_id))
}

fn peer_nonzero(p: u32, what: &'static str) -> Result<PeerId, DecodeError> {
    if p == 0 {
        Err(DecodeError::Invalid {
            what,
            why: "peer id 0",
        })
    } else {
        Ok(PeerId(p))
    }
}

// ---------------------------------------------------------------------------------------------
// Announcement envelope

/// How an announcement travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeMode {
    /// In the clear: a room without a secret (every peer unverified).
    Clear,
    /// Sealed under the room's announce key with this nonce.
    Sealed { nonce: [u8; NONCE_LEN] },
}

/// A parsed announcement envelope; `body` is the announcement (clear) or its ciphertext + tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncementEnvelope<'a> {
    pub mode: EnvelopeMode,
    pub body: &'a [u8],
}

impl<'a> AnnouncementEnvelope<'a> {
    /// Length of the envelope header (what precedes `body`) for a mode.
    pub fn header_len(mode: EnvelopeMode) -> usize {
        match mode {
            EnvelopeMode::Clear => 2,
            EnvelopeMode::Sealed { .. } => 2 + NONCE_LEN,
        }
    }

    /// Appends the envelope header (tag, mode, nonce) to `out`; the caller appends the body.
    pub fn put_header(mode: EnvelopeMode, out: &mut Vec<u8>) {
        out.push(TAG_ANNOUNCEMENT);
        match mode {
            EnvelopeMode::Clear => out.push(0),
            EnvelopeMode::Sealed { nonce } => {
                out.push(1);
                out.extend_from_slice(&nonce);
            }
        }
    }

    /// Parses an envelope (type tag included).
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let tag = r.u8()?;
        if tag != TAG_ANNOUNCEMENT {
            return Err(DecodeError::UnknownKind {
                what: "announcement tag",
                value: tag,
            });
        }
        let mode = match r.u8()? {
            0 => EnvelopeMode::Clear,
            1 => EnvelopeMode::Sealed { nonce: r.array()? },
            value => {
                return Err(DecodeError::UnknownKind {
                    what: "announcement mode",
                    value,
                });
            }
        };
        let body = r.rest();
        if let EnvelopeMode::Sealed { .. } = mode
            && body.len() < TAG_LEN
        {
            return Err(DecodeError::Truncated {
                needed: TAG_LEN - body.len(),
            });
        }
        Ok(Self { mode, body })
    }

    /// The AAD of a sealed envelope: its header bytes, then `u8 len || room id`.
    pub fn aad(mode: EnvelopeMode, room_id: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(2 + NONCE_LEN + 1 + room_id.len());
        Self::put_header(mode, &mut aad);
        put_short_bytes(&mut aad, room_id);
        aad
    }
}

/// An announcement plaintext: who this session is and its two public keys. Its encoding pads
/// the display name with zeros to [`MAX_DISPLAY_NAME`] bytes, so that its size (sealed or
/// not) reveals the RSA key's size and nothing about the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement<'a> {
    /// The announcing session's relay-assigned peer id.
    pub peer: PeerId,
    /// Unix time in milliseconds when the announcement was made (freshness check).
    pub timestamp_ms: u64,
    pub display_name: &'a str,
    /// RSA public key, PKCS#1 DER.
    pub rsa_public_key: &'a [u8],
    pub ed25519_public_key: [u8; ED25519_PUBLIC_KEY_LEN],
}

impl<'a> Announcement<'a> {
    /// The encoded length of any announcement whose RSA public key is `rsa_public_key_len`
    /// bytes long (the display name does not change it).
    pub const fn encoded_len(rsa_public_key_len: usize) -> usize {
        ANNOUNCEMENT_FIXED_LEN + rsa_public_key_len
    }

    /// Appends the encoding to `out`: [`Announcement::encoded_len`] bytes. Panics if a field
    /// exceeds its documented limit (a programming error: our own announcement).
    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.display_name.len() <= MAX_DISPLAY_NAME);
        assert!(self.rsa_public_key.len() <= MAX_RSA_PUBLIC_KEY);
        out.push(ANNOUNCEMENT_VERSION);
        out.extend_from_slice(&self.peer.0.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_short_bytes(out, self.display_name.as_bytes());
        put_long_bytes(out, self.rsa_public_key);
        out.extend_from_slice(&self.ed25519_public_key);
        let pad = MAX_DISPLAY_NAME - self.display_name.len();
        out.push(pad as u8);
        out.resize(out.len() + pad, 0);
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ANNOUNCEMENT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let peer = peer_nonzero(r.u32()?, "announcement peer")?;
        let timestamp_ms = r.u64()?;
        let display_name = r.short_str("display name")?;
        if display_name.len() > MAX_DISPLAY_NAME {
            return Err(DecodeError::TooLarge {
                len: display_name.len(),
                max: MAX_DISPLAY_NAME,
            });
        }
        let rsa_public_key = r.long_bytes()?;
        if rsa_public_key.is_empty() {
            return Err(DecodeError::Invalid {
                what: "rsa public key",
                why: "empty",
            });
        }
        if rsa_public_key.len() > MAX_RSA_PUBLIC_KEY {
            return Err(DecodeError::TooLarge {
                len: rsa_public_key.len(),
                max: MAX_RSA_PUBLIC_KEY,
            });
        }
        let ed25519_public_key = r.array()?;
        // The padding: exactly what brings the name to 64 bytes, all zero (one encoding only).
        if usize::from(r.u8()?) != MAX_DISPLAY_NAME - display_name.len() {
            return Err(DecodeError::Invalid {
                what: "announcement padding",
                why: "its length is not 64 minus the display name's length",
            });
        }
        if r.bytes(MAX_DISPLAY_NAME - display_name.len())?
            .iter()
            .any(|&b| b != 0)
        {
            return Err(DecodeError::Invalid {
                what: "announcement padding",
                why: "not all zero",
            });
        }
        r.finish()?;
        Ok(Self {
            peer,
            timestamp_ms,
            display_name,
            rsa_public_key,
            ed25519_public_key,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Key message and key ack

/// A sender secret wrapped to one recipient, signed by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMessage<'a> {
    pub sender: PeerId,
    pub recipient: PeerId,
    pub room_id: &'a [u8],
    pub key_id: KeyId,
    /// RSA-OAEP-SHA256 ciphertext of the 32-byte sender secret.
    pub wrapped: &'a [u8],
    pub signature: [u8; SIGNATURE_LEN],
}

impl<'a> KeyMessage<'a> {
    /// Appends every byte the signature covers (tag through `wrapped`), without the context.
    pub fn encode_unsigned(&self, out: &mut Vec<u8>) {
        assert!(self.wrapped.len() <= MAX_WRAPPED_KEY);
        put_key_prefix(
            out,
            TAG_KEY_MESSAGE,
            self.sender,
            self.recipient,
            self.room_id,
            self.key_id,
        );
        put_long_bytes(out, self.wrapped);
    }

    /// The complete payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        out.extend_from_slice(&self.signature);
    }

    /// The message the signature is computed over: context || unsigned encoding.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = KEY_MESSAGE_CONTEXT.to_vec();
        self.encode_unsigned(&mut m);
        m
    }

    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let (sender, recipient, room_id, key_id) = get_key_prefix(
            &mut r,
            TAG_KEY_MESSAGE,
            [
                "key message tag",
                "key message sender",
                "key message recipient",
            ],
        )?;
        let wrapped = r.long_bytes()?;
        if wrapped.is_empty() {
            return Err(DecodeError::Invalid {
                what: "wrapped key",
                why: "empty",
            });
        }
        if wrapped.len() > MAX_WRAPPED_KEY {
            return Err(DecodeError::TooLarge {
                len: wrapped.len(),
                max: MAX_WRAPPED_KEY,
            });
        }
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            sender,
            recipient,
            room_id,
            key_id,
            wrapped,
            signature,
        })
    }
}

/// "I now hold your key `key_id`", signed by the acking peer; lets a sender switch epochs early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAck<'a> {
    /// The acking peer.
    pub sender: PeerId,
    /// The key's owner.
    pub recipient: PeerId,
    pub room_id: &'a [u8],
    pub key_id: KeyId,
    pub signature: [u8; SIGNATURE_LEN],
}

impl<'a> KeyAck<'a> {
    pub fn encode_unsigned(&self, out: &mut Vec<u8>) {
        put_key_prefix(
            out,
            TAG_KEY_ACK,
            self.sender,
            self.recipient,
            self.room_id,
            self.key_id,
        );
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        out.extend_from_slice(&self.signature);
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = KEY_ACK_CONTEXT.to_vec();
        self.encode_unsigned(&mut m);
        m
    }

    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let (sender, recipient, room_id, key_id) = get_key_prefix(
            &mut r,
            TAG_KEY_ACK,
            ["key ack tag", "key ack sender", "key ack recipient"],
        )?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            sender,
            recipient,
            room_id,
            key_id,
            signature,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sealed media

/// The clear 10-byte header in front of every sealed media body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    pub key_id: KeyId,
    /// Per-sender counter, 48 bits; the nonce is the key's salt XOR this counter.
    pub counter: u64,
}

impl SealedHeader {
    pub const LEN: usize = 10;

    /// Encodes the header. Panics if `counter > MAX_COUNTER` (the sealer never lets it).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        assert!(self.counter <= MAX_COUNTER);
        let mut b = [0u8; Self::LEN];
        b[0..2].copy_from_slice(&self.key_id.epoch.to_be_bytes());
        b[2..4].copy_from_slice(&self.key_id.generation.to_be_bytes());
        b[4..10].copy_from_slice(&self.counter.to_be_bytes()[2..8]);
        b
    }

    /// Parses the header at the start of a sealed body; rejects bodies too short to hold a tag.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.len() < Self::LEN + TAG_LEN {
            return Err(DecodeError::Truncated {
                needed: Self::LEN + TAG_LEN - body.len(),
            });
        }
        let epoch = u16::from_be_bytes([body[0], body[1]]);
        let generation = u16::from_be_bytes([body[2], body[3]]);
        let mut c = [0u8; 8];
        c[2..8].copy_from_slice(&body[4..10]);
        Ok(Self {
            key_id: KeyId::new(epoch, generation),
            counter: u64::from_be_bytes(c),
        })
    }
}

/// Largest AAD of a sealed media body.
pub const MAX_AAD_LEN: usize = SealedHeader::LEN + 4 + 1 + 4 + 1 + MAX_ROOM_ID;

/// The AAD of a sealed media body, built on the stack (no allocation on the media path).
#[derive(Clone, Copy)]
pub struct MediaAad {
    buf: [u8; MAX_AAD_LEN],
    len: usize,
}

impl MediaAad {
    /// Builds `header | sender | kind | target (0 = none) | u8 len | room id`. Panics if
    /// `room_id` is longer than [`MAX_ROOM_ID`] (our own configuration, never peer input).
    pub fn new(
        header: &SealedHeader,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        room_id: &[u8],
    ) -> Self {
        assert!(room_id.len() <= MAX_ROOM_ID);
        let mut buf = [0u8; MAX_AAD_LEN];
        buf[0..10].copy_from_slice(&header.to_bytes());
        buf[10..14].copy_from_slice(&sender.0.to_be_bytes());
        buf[14] = kind as u8;
        buf[15..19].copy_from_slice(&target.unwrap_or(PeerId::NONE).0.to_be_bytes());
        buf[19] = room_id.len() as u8;
        buf[20..20 + room_id.len()].copy_from_slice(room_id);
        Self {
            buf,
            len: 20 + room_id.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_announcement() -> Announcement<'static> {
        Announcement {
            peer: PeerId(7),
            timestamp_ms: 1_700_000_000_123,
            display_name: "Alice",
            rsa_public_key: &[0x30, 0x82, 1, 10, 2, 3],
            ed25519_public_key: [0x11; 32],
        }
    }

    #[test]
    fn announcement_round_trips_and_rejects_every_truncation() {
        let a = sample_announcement();
        let mut b = Vec::new();
        a.encode(&mut b);
        assert_eq!(Announcement::decode(&b).unwrap(), a);
        for n in 0..b.len() {
            assert!(Announcement::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            Announcement::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut bad = b.clone();
        bad[0] = 1;
        assert_eq!(
            Announcement::decode(&bad),
            Err(DecodeError::UnknownVersion(1)),
            "version 1 (protocol v2, unpadded) is refused"
        );
        let mut zero = b.clone();
        zero[1..5].fill(0);
        assert!(matches!(
            Announcement::decode(&zero),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn announcement_exact_bytes() {
        let a = Announcement {
            peer: PeerId(0x01020304),
            timestamp_ms: 5,
            display_name: "A",
            rsa_public_key: &[9, 9],
            ed25519_public_key: [0xEE; 32],
        };
        let mut b = Vec::new();
        a.encode(&mut b);
        let mut want = vec![2, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5, 1, b'A', 0, 2, 9, 9];
        want.extend_from_slice(&[0xEE; 32]);
        want.push(63);
        want.extend_from_slice(&[0; 63]);
        assert_eq!(b, want);
        assert_eq!(b.len(), Announcement::encoded_len(2));
    }

    #[test]
    fn announcements_have_one_length_whatever_the_name() {
        let rsa = [0x30u8; 270];
        let len = |name: &str| {
            let a = Announcement {
                display_name: name,
                rsa_public_key: &rsa,
                ..sample_announcement()
            };
            let mut b = Vec::new();
            a.encode(&mut b);
            assert_eq!(Announcement::decode(&b).unwrap(), a, "{name:?}");
            b.len()
        };
        let longest = "é".repeat(32);
        assert_eq!(longest.len(), MAX_DISPLAY_NAME);
        for name in ["", "A", "Alice", longest.as_str()] {
            assert_eq!(len(name), 383, "{name:?}");
        }
        assert_eq!(Announcement::encoded_len(270), 383);
    }

    #[test]
    fn announcement_padding_of_the_wrong_length_or_not_zero_is_rejected() {
        let mut b = Vec::new();
        sample_announcement().encode(&mut b);
        // "Alice": 5 bytes of name, so the padding is 59 zero bytes after its length byte.
        let pad_at = b.len() - 60;
        assert_eq!(b[pad_at], 59);
        let bad_padding = |why: &'static str| {
            Err(DecodeError::Invalid {
                what: "announcement padding",
                why,
            })
        };
        let wrong_len = "its length is not 64 minus the display name's length";
        for n in [0u8, 58, 60, 64, 255] {
            let mut bad = b.clone();
            bad[pad_at] = n;
            assert_eq!(Announcement::decode(&bad), bad_padding(wrong_len), "{n}");
        }
        // The right length byte, but one byte of padding missing or extra.
        assert_eq!(
            Announcement::decode(&b[..b.len() - 1]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            Announcement::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
        for at in [pad_at + 1, b.len() - 1] {
            let mut bad = b.clone();
            bad[at] = 1;
            assert_eq!(
                Announcement::decode(&bad),
                bad_padding("not all zero"),
                "{at}"
            );
        }
        // A version-1 announcement (no padding at all) is refused for its version.
        let mut v1 = b[..pad_at].to_vec();
        v1[0] = 1;
        assert_eq!(
            Announcement::decode(&v1),
            Err(DecodeError::UnknownVersion(1))
        );
    }

    #[test]
    fn envelope_round_trips_and_rejects_bad_modes() {
        let mut p = Vec::new();
        AnnouncementEnvelope::put_header(EnvelopeMode::Sealed { nonce: [3; 12] }, &mut p);
        p.extend_from_slice(&[0xAB; 20]);
        let e = AnnouncementEnvelope::decode(&p).unwrap();
        assert_eq!(e.mode, EnvelopeMode::Sealed { nonce: [3; 12] });
        assert_eq!(e.body, &[0xAB; 20]);
        assert_eq!(&p[..14], &AnnouncementEnvelope::aad(e.mode, b"r")[..14]);
        assert_eq!(AnnouncementEnvelope::aad(e.mode, b"r")[14..], [1, b'r']);
        // Sealed body shorter than a tag.
        assert!(AnnouncementEnvelope::decode(&p[..14 + 15]).is_err());
        let clear = [TAG_ANNOUNCEMENT, 0, 1, 2];
        let e = AnnouncementEnvelope::decode(&clear).unwrap();
        assert_eq!((e.mode, e.body), (EnvelopeMode::Clear, &[1u8, 2][..]));
        assert!(matches!(
            AnnouncementEnvelope::decode(&[TAG_ANNOUNCEMENT, 2]),
            Err(DecodeError::UnknownKind { value: 2, .. })
        ));
        assert!(AnnouncementEnvelope::decode(&[TAG_KEY_MESSAGE, 0]).is_err());
        assert!(AnnouncementEnvelope::decode(&[]).is_err());
    }

    #[test]
    fn key_message_round_trips_with_exact_signed_bytes() {
        let wrapped = [0x5A; 256];
        let m = KeyMessage {
            sender: PeerId(1),
            recipient: PeerId(2),
            room_id: b"room",
            key_id: KeyId::new(3, 4),
            wrapped: &wrapped,
            signature: [0x77; 64],
        };
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(b.len(), 1 + 4 + 4 + 1 + 4 + 2 + 2 + 2 + 256 + 64);
        assert_eq!(
            &b[..20],
            &[
                2, 0, 0, 0, 1, 0, 0, 0, 2, 4, b'r', b'o', b'o', b'm', 0, 3, 0, 4, 1, 0
            ]
        );
        assert_eq!(KeyMessage::decode(&b).unwrap(), m);
        let signed = m.signed_bytes();
        assert_eq!(&signed[..KEY_MESSAGE_CONTEXT.len()], KEY_MESSAGE_CONTEXT);
        assert_eq!(&signed[KEY_MESSAGE_CONTEXT.len()..], &b[..b.len() - 64]);
        for n in 0..b.len() {
            assert!(KeyMessage::decode(&b[..n]).is_err());
        }
        let mut long = b.clone();
        long.push(1);
        assert_eq!(
            KeyMessage::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut zero = b.clone();
        zero[5..9].fill(0);
        assert!(KeyMessage::decode(&zero).is_err());
        let mut empty_room = vec![2, 0, 0, 0, 1, 0, 0, 0, 2, 0];
        empty_room.extend_from_slice(&[0; 6 + 64]);
        assert!(matches!(
            KeyMessage::decode(&empty_room),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn key_ack_round_trips() {
        let a = KeyAck {
            sender: PeerId(9),
            recipient: PeerId(10),
            room_id: &[1; 32],
            key_id: KeyId::new(65535, 1),
            signature: [1; 64],
        };
        let mut b = Vec::new();
        a.encode(&mut b);
        assert_eq!(KeyAck::decode(&b).unwrap(), a);
        assert_eq!(signal_tag(&b), Ok(TAG_KEY_ACK));
        for n in 0..b.len() {
            assert!(KeyAck::decode(&b[..n]).is_err());
        }
        assert!(matches!(
            signal_tag(&[9]),
            Err(DecodeError::UnknownKind { value: 9, .. })
        ));
        assert!(signal_tag(&[]).is_err());
    }

    #[test]
    fn sealed_header_and_aad_exact_bytes() {
        let h = SealedHeader {
            key_id: KeyId::new(0x0102, 0x0304),
            counter: 0x0000_A1A2_A3A4_A5A6,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 2, 3, 4, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6]);
        let mut body = b.to_vec();
        body.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(SealedHeader::decode(&body).unwrap(), h);
        assert!(SealedHeader::decode(&body[..25]).is_err());
        let aad = MediaAad::new(&h, PeerId(5), DatagramKind::Audio, Some(PeerId(6)), b"xy");
        let mut want = b.to_vec();
        want.extend_from_slice(&[0, 0, 0, 5, 2, 0, 0, 0, 6, 2, b'x', b'y']);
        assert_eq!(aad.as_bytes(), &want[..]);
        let aad = MediaAad::new(&h, PeerId(5), DatagramKind::Video, None, &[7; MAX_ROOM_ID]);
        assert_eq!(aad.as_bytes().len(), MAX_AAD_LEN);
        assert_eq!(&aad.as_bytes()[14..19], &[1, 0, 0, 0, 0]);
    }

    #[test]
    fn sealed_header_counter_is_48_bits() {
        let h = SealedHeader {
            key_id: KeyId::default(),
            counter: MAX_COUNTER,
        };
        let mut body = h.to_bytes().to_vec();
        body.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(SealedHeader::decode(&body).unwrap().counter, MAX_COUNTER);
    }
}
