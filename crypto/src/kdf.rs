//! Every key derivation in vcall, with its label (docs/SECURITY.md lists the same table).
//!
//! HKDF is RFC 5869 HKDF-SHA256 with the label as the *salt* and the context as the *info*:
//! `hkdf(label, ikm, info, L) = HKDF-Expand(HKDF-Extract(salt = label, ikm), info, L)`.

use ring::hmac;
use zeroize::{Zeroize, Zeroizing};

/// HKDF salt turning an invite link's 32-byte `k` into room key material.
pub const LABEL_ROOM_KEY: &[u8] = b"vcall/1 room key";
/// Prefix of the Argon2id salt, `SHA-256(LABEL_PASSPHRASE_SALT || room name)`.
pub const LABEL_PASSPHRASE_SALT: &[u8] = b"vcall/1 passphrase salt";
/// HKDF salt of the room id sent to the relay (info = room name).
pub const LABEL_ROOM_ID: &[u8] = b"vcall/1 room id";
/// Prefix of the room id of a room without a secret: `SHA-256(LABEL_OPEN_ROOM_ID || name)`.
pub const LABEL_OPEN_ROOM_ID: &[u8] = b"vcall/1 open room id";
/// HKDF salt of the AES-256-GCM key sealing announcements (info = room name).
pub const LABEL_ANNOUNCE_KEY: &[u8] = b"vcall/1 announce key";
/// HKDF salt of a sender key's AES-256-GCM key (ikm = sender secret, info = room id).
pub const LABEL_MEDIA_KEY: &[u8] = b"vcall/1 media key";
/// HKDF salt of a sender key's 96-bit nonce salt (ikm = sender secret, info = room id).
pub const LABEL_MEDIA_SALT: &[u8] = b"vcall/1 media salt";
/// HKDF salt of one ratchet step, generation g -> g + 1 (ikm = secret g, info = room id).
pub const LABEL_RATCHET: &[u8] = b"vcall/1 ratchet";
/// Prefix of a session fingerprint hash.
pub const LABEL_FINGERPRINT: &[u8] = b"vcall/1 fingerprint";
/// Prefix of the room security code hash.
pub const LABEL_SECURITY_CODE: &[u8] = b"vcall/1 security code";
/// HKDF info turning `k` into room key material.
pub const INFO_ROOM_KEY_MATERIAL: &[u8] = b"vcall/1 room key material";

/// Argon2id memory cost in KiB (64 MiB). Part of the protocol: every member must use it.
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ARGON2_PASSES: u32 = 3;
/// Argon2id lanes.
pub const ARGON2_LANES: u32 = 1;
/// Bytes of room key material Argon2id outputs.
pub const ARGON2_OUTPUT_LEN: usize = 32;

/// What one passphrase guess costs, with [`ROOM_ARGON2`]: 64 MiB of memory and 3 passes over it
/// (65536 blocks of 1 KiB, each pass reading two blocks and writing one per block, so about
/// 576 MiB of memory traffic per guess). Measured: ~0.22 s on one AMD EPYC core (release
/// build), so ~5 guesses/s per core. A GPU is bounded by memory bandwidth: at ~1 TB/s that is at
/// most ~1,700 guesses/s per card; docs/SECURITY.md assumes 2,000/s per high-end GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

/// The Argon2id parameters of `#p=` rooms (fixed by the protocol, docs/PROTOCOL.md §7).
pub const ROOM_ARGON2: Argon2Cost = Argon2Cost {
    memory_kib: ARGON2_MEMORY_KIB,
    passes: ARGON2_PASSES,
    lanes: ARGON2_LANES,
};

/// HKDF-SHA256 (RFC 5869) extract then expand into `out` (at most 255 * 32 bytes).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    assert!(out.len() <= 255 * 32);
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
    let mut previous: Option<hmac::Tag> = None;
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut ctx = hmac::Context::with_key(&prk);
        if let Some(t) = &previous {
            ctx.update(t.as_ref());
        }
        ctx.update(info);
        ctx.update(&[(i + 1) as u8]);
        let t = ctx.sign();
        chunk.copy_from_slice(&t.as_ref()[..chunk.len()]);
        previous = Some(t);
    }
}

/// `hkdf_sha256` into a fixed-size array.
pub fn hkdf<const N: usize>(label: &[u8], ikm: &[u8], info: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    hkdf_sha256(label, ikm, info, &mut out);
    out
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Room key material from an invite link's `k`.
pub fn room_key_material_from_key(k: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hkdf(LABEL_ROOM_KEY, k, INFO_ROOM_KEY_MATERIAL))
}

/// The Argon2id salt of a `#p=` room: `SHA-256("vcall/1 passphrase salt" || room name)`. It
/// depends only on the room name, so anyone can compute it (see docs/SECURITY.md).
pub fn passphrase_salt(room_name: &str) -> [u8; 32] {
    sha256(&[LABEL_PASSPHRASE_SALT, room_name.as_bytes()])
}

/// Room key material from a passphrase: Argon2id ([`ROOM_ARGON2`]: 64 MiB, 3 passes, 1 lane,
/// v1.3) with salt [`passphrase_salt`]. Takes ~0.2-0.5 s: call off the UI thread. Does not judge
/// the passphrase's strength: [`crate::link::check_passphrase`] does.
pub fn room_key_material_from_passphrase(passphrase: &str, room_name: &str) -> Zeroizing<[u8; 32]> {
    argon2id(
        passphrase.as_bytes(),
        &passphrase_salt(room_name),
        ROOM_ARGON2,
    )
}

/// Argon2id v1.3 with `cost`, 32 bytes out. The working memory (which holds everything needed
/// to recompute the output) is wiped before it is freed. Other costs than [`ROOM_ARGON2`] are
/// for tests only (an offline attack demonstrated with cheap parameters).
pub(crate) fn argon2id(password: &[u8], salt: &[u8; 32], cost: Argon2Cost) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; ARGON2_OUTPUT_LEN]);
    // Argon2's minimum is 8 KiB per lane; clamp rather than fail (only tests pass other costs).
    let memory_kib = cost.memory_kib.max(8 * cost.lanes.max(1));
    let Ok(params) = argon2::Params::new(
        memory_kib,
        cost.passes.max(1),
        cost.lanes.max(1),
        Some(ARGON2_OUTPUT_LEN),
    ) else {
        return out;
    };
    let mut blocks = vec![argon2::Block::new(); params.block_count()];
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    // Cannot fail: the parameters are valid, the salt is 32 bytes, the password is at most
    // MAX_PASSPHRASE bytes and the memory has `block_count` blocks.
    let _ = a.hash_password_into_with_memory(password, salt, &mut out[..], &mut blocks[..]);
    blocks.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn hkdf_matches_rfc5869_test_cases_1_and_3() {
        let mut okm = [0u8; 42];
        hkdf_sha256(
            &h("000102030405060708090a0b0c"),
            &h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            &h("f0f1f2f3f4f5f6f7f8f9"),
            &mut okm,
        );
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        hkdf_sha256(&[], &[0x0b; 22], &[], &mut okm);
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    /// Known answers for every label, so another implementation can check itself against ours.
    #[test]
    fn known_answers_for_every_label() {
        let k = [0x42u8; 32];
        let rkm = room_key_material_from_key(&k);
        let kats: [(&str, Vec<u8>); 8] = [
            ("room key material", rkm.to_vec()),
            (
                "room id",
                hkdf::<32>(LABEL_ROOM_ID, &rkm[..], b"lobby").to_vec(),
            ),
            (
                "open room id",
                sha256(&[LABEL_OPEN_ROOM_ID, b"lobby"]).to_vec(),
            ),
            (
                "announce key",
                hkdf::<32>(LABEL_ANNOUNCE_KEY, &rkm[..], b"lobby").to_vec(),
            ),
            (
                "media key",
                hkdf::<32>(LABEL_MEDIA_KEY, &k, b"room-id").to_vec(),
            ),
            (
                "media salt",
                hkdf::<12>(LABEL_MEDIA_SALT, &k, b"room-id").to_vec(),
            ),
            (
                "ratchet",
                hkdf::<32>(LABEL_RATCHET, &k, b"room-id").to_vec(),
            ),
            (
                "passphrase",
                room_key_material_from_passphrase("correct horse", "lobby").to_vec(),
            ),
        ];
        let got: Vec<String> = kats
            .iter()
            .map(|(n, v)| format!("{n}: {}", hex::encode(v)))
            .collect();
        let want = KAT_EXPECTED
            .trim()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>();
        assert_eq!(got, want, "\n{}", got.join("\n"));
        // Every label is distinct and versioned.
        let labels = [
            LABEL_ROOM_KEY,
            LABEL_PASSPHRASE_SALT,
            LABEL_ROOM_ID,
            LABEL_OPEN_ROOM_ID,
            LABEL_ANNOUNCE_KEY,
            LABEL_MEDIA_KEY,
            LABEL_MEDIA_SALT,
            LABEL_RATCHET,
            LABEL_FINGERPRINT,
            LABEL_SECURITY_CODE,
            INFO_ROOM_KEY_MATERIAL,
        ];
        for (i, a) in labels.iter().enumerate() {
            assert!(a.starts_with(b"vcall/1 "));
            for b in &labels[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    /// Cross-checked with Python's hmac/hashlib (HKDF) and the argon2 crate (RFC 9106).
    const KAT_EXPECTED: &str = "
        room key material: 0046ccc1f5017dcb1441405934a30f04ea5b318b4c90b88e1b47abe9d4aeb657
        room id: 694e07058f5ea0dbf0e617642f41f5b25e8f80233d9a218c349c18543d148f67
        open room id: da0957f7ce0b0cdc0f1486351173067af53a7e3e4dc1cabfc8139bfc70867ddf
        announce key: 8bf47a4f75ccea7697387496214da0e862cd908603f12c0294aa864d48cb4757
        media key: 98792f69317a91fad976cfebad6495dde65b21091580c69c1c46c71071c8fc30
        media salt: 8e107c4faccacb01633b29d6
        ratchet: f474f0a4317ed51aeeda48fbefeb4dd9106aa47464cc749a4f3ed230bc779c0c
        passphrase: d98f03459b2a11105eefbdbff2c80d3314683dbd20af3e1be94cd4c58a59b87b
    ";
}
