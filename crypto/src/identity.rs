//! Session identities: an RSA key pair (key wrapping) and an Ed25519 key pair (signatures),
//! their fingerprints, and the room security code.

use std::fmt;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;

use zeroize::Zeroizing;

use crate::kdf::{LABEL_FINGERPRINT, LABEL_SECURITY_CODE, sha256};
use crate::random::{OsRandom, RandomSource, RngAdapter};

/// RSA modulus size used unless the user selects another.
pub const DEFAULT_RSA_BITS: usize = 2048;
/// RSA modulus sizes a local identity may be generated with.
pub const ALLOWED_RSA_BITS: [usize; 2] = [2048, 3072];
/// Smallest and largest RSA modulus accepted from a peer.
pub const PEER_RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Why an identity could not be made or a peer's public keys could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("unsupported RSA key size {0} (use 2048 or 3072)")]
    UnsupportedBits(usize),
    #[error("RSA key generation failed")]
    RsaGeneration,
    #[error("invalid RSA public key")]
    BadRsaKey,
    #[error("RSA key size {0} outside 2048..=4096")]
    PeerRsaBits(usize),
    #[error("invalid Ed25519 public key")]
    BadEd25519Key,
}

/// SHA-256 over a session's two public keys; what people compare to confirm identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// `SHA-256("vcall/1 fingerprint" || u16 len || RSA PKCS#1 DER || Ed25519 public key)`.
    pub fn of(rsa_public_der: &[u8], ed25519_public: &[u8; 32]) -> Self {
        let len = (rsa_public_der.len() as u16).to_be_bytes();
        Self(sha256(&[
            LABEL_FINGERPRINT,
            &len,
            rsa_public_der,
            ed25519_public,
        ]))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 bytes as 8 groups of 4 hex digits (`"a1b2 c3d4 ..."`), for people to compare.
    pub fn short(&self) -> String {
        self.0[..16]
            .chunks(2)
            .map(hex::encode)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// A code identical for every member of a room: hash of all members' fingerprints, sorted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityCode(pub [u8; 32]);

impl SecurityCode {
    /// `SHA-256("vcall/1 security code" || fingerprints sorted ascending, deduplicated)`.
    pub fn of(fingerprints: &[Fingerprint]) -> Self {
        let mut fps = fingerprints.to_vec();
        fps.sort();
        fps.dedup();
        let mut parts: Vec<&[u8]> = vec![LABEL_SECURITY_CODE];
        parts.extend(fps.iter().map(|f| &f.0[..]));
        Self(sha256(&parts))
    }

    /// Six groups of five decimal digits (each group = 5 bytes big-endian mod 100000).
    pub fn digits(&self) -> String {
        self.0[..30]
            .chunks(5)
            .map(|c| {
                let v = c.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
                format!("{:05}", v % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for SecurityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecurityCode({})", self.digits())
    }
}

impl fmt::Display for SecurityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits())
    }
}

/// This session's private keys. The RSA private key is wiped on drop by the `rsa` crate
/// (`ZeroizeOnDrop`); the Ed25519 key pair is ring's, which ring (0.17) does not wipe. Not
/// `Clone`: share it as an `Arc<Identity>`. Generate it on a worker thread before joining
/// ([`Identity::generate`] takes 30-160 ms in release, up to ~1 s in debug for 2048 bits),
/// then share it with the session as an `Arc<Identity>`.
pub struct Identity {
    rsa: rsa::PrivateKey,
    rsa_public_der: Vec<u8>,
    ed25519: Ed25519KeyPair,
    ed25519_public: [u8; 32],
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("rsa_bits", &self.rsa_bits())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a new identity from the OS generator. `rsa_bits` is 2048 or 3072.
    pub fn generate(rsa_bits: usize) -> Result<Self, IdentityError> {
        Self::generate_with(rsa_bits, &mut OsRandom::new())
    }

    /// Generates a new identity from `rng` (deterministic with a seeded source).
    pub fn generate_with(
        rsa_bits: usize,
        rng: &mut dyn RandomSource,
    ) -> Result<Self, IdentityError> {
        if !ALLOWED_RSA_BITS.contains(&rsa_bits) {
            return Err(IdentityError::UnsupportedBits(rsa_bits));
        }
        let rsa = rsa::PrivateKey::new(&mut RngAdapter(rng), rsa_bits)
            .map_err(|_| IdentityError::RsaGeneration)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(&mut seed[..]);
        let ed25519 = Ed25519KeyPair::from_seed_unchecked(&seed[..])
            .map_err(|_| IdentityError::BadEd25519Key)?;
        Self::from_parts(rsa, ed25519)
    }

    fn from_parts(rsa: rsa::PrivateKey, ed25519: Ed25519KeyPair) -> Result<Self, IdentityError> {
        let rsa_public_der = rsa
            .as_public_key()
            .to_pkcs1_der()
            .map_err(|_| IdentityError::BadRsaKey)?
            .as_bytes()
            .to_vec();
        let mut ed25519_public = [0u8; 32];
        ed25519_public.copy_from_slice(ed25519.public_key().as_ref());
        let fingerprint = Fingerprint::of(&rsa_public_der, &ed25519_public);
        Ok(Self {
            rsa,
            rsa_public_der,
            ed25519,
            ed25519_public,
            fingerprint,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn rsa_bits(&self) -> usize {
        self.rsa.size() * 8
    }

    /// RSA public key, PKCS#1 DER (as carried in announcements).
    pub fn rsa_public_der(&self) -> &[u8] {
        &self.rsa_public_der
    }

    pub fn ed25519_public(&self) -> &[u8; 32] {
        &self.ed25519_public
    }

    /// The public half, as a peer sees it.
    pub fn public_keys(&self) -> PeerKeys {
        PeerKeys::parse(&self.rsa_public_der, &self.ed25519_public).expect("our own keys parse")
    }

    /// Ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.ed25519.sign(msg).as_ref());
        out
    }

    /// RSA-OAEP-SHA256 decryption of a wrapped 32-byte secret (blinded with `rng`). Callers must
    /// authenticate the ciphertext (signature) first: see RUSTSEC-2023-0071 in docs/SECURITY.md.
    /// The decrypted buffer is wiped; the returned copy is the caller's to wipe (wrap it in a
    /// `SenderSecret`).
    pub fn unwrap_secret(&self, wrapped: &[u8], rng: &mut dyn RandomSource) -> Option<[u8; 32]> {
        if wrapped.len() != self.rsa.size() {
            return None;
        }
        let pt = Zeroizing::new(
            self.rsa
                .oaep_decrypt_with_rng::<sha2::Sha256, _>(&mut RngAdapter(rng), wrapped)
                .ok()?,
        );
        <[u8; 32]>::try_from(&pt[..]).ok()
    }
}

/// A peer's public keys, parsed and checked, from its announcement.
#[derive(Clone)]
pub struct PeerKeys {
    rsa: rsa::PublicKey,
    rsa_der: Vec<u8>,
    ed25519: [u8; 32],
    fingerprint: Fingerprint,
}

impl fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKeys({})", self.fingerprint.short())
    }
}

impl PeerKeys {
    /// Parses an RSA PKCS#1 DER public key (2048..=4096 bits) and an Ed25519 public key.
    pub fn parse(rsa_der: &[u8], ed25519: &[u8; 32]) -> Result<Self, IdentityError> {
        let rsa = rsa::PublicKey::from_pkcs1_der(rsa_der).map_err(|_| IdentityError::BadRsaKey)?;
        let bits = rsa.size() * 8;
        if !PEER_RSA_BITS.contains(&bits) {
            return Err(IdentityError::PeerRsaBits(bits));
        }
        // Reject a canonical re-encoding mismatch so one key has exactly one fingerprint.
        match rsa.to_pkcs1_der() {
            Ok(doc) if doc.as_bytes() == rsa_der => {}
            _ => return Err(IdentityError::BadRsaKey),
        }
        if ed25519.iter().all(|b| *b == 0) {
            return Err(IdentityError::BadEd25519Key);
        }
        Ok(Self {
            fingerprint: Fingerprint::of(rsa_der, ed25519),
            rsa,
            rsa_der: rsa_der.to_vec(),
            ed25519: *ed25519,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn rsa_der(&self) -> &[u8] {
        &self.rsa_der
    }

    pub fn ed25519(&self) -> &[u8; 32] {
        &self.ed25519
    }

    /// Verifies an Ed25519 signature by this peer.
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.ed25519)
            .verify(msg, signature)
            .is_ok()
    }

    /// RSA-OAEP-SHA256 encryption of a 32-byte secret to this peer.
    pub fn wrap_secret(&self, secret: &[u8; 32], rng: &mut dyn RandomSource) -> Vec<u8> {
        self.rsa
            .oaep_encrypt_with_rng::<sha2::Sha256, _>(&mut RngAdapter(rng), secret)
            .expect("32 bytes always fit RSA-OAEP-SHA256 with a >= 2048-bit key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn identity_keys_wrap_sign_and_fingerprint() {
        let id = crate::tests::identity(0);
        assert_eq!(id.rsa_bits(), 2048);
        let public = id.public_keys();
        assert_eq!(public.fingerprint(), id.fingerprint());
        assert_eq!(id.fingerprint().to_hex().len(), 64);
        assert_eq!(id.fingerprint().short().len(), 8 * 4 + 7);
        let mut rng = SeededRandom::new(b"t");
        let wrapped = public.wrap_secret(&[5; 32], &mut rng);
        assert_eq!(wrapped.len(), 256);
        assert_eq!(id.unwrap_secret(&wrapped, &mut rng), Some([5; 32]));
        let mut bad = wrapped.clone();
        bad[10] ^= 1;
        assert_eq!(id.unwrap_secret(&bad, &mut rng), None);
        assert_eq!(id.unwrap_secret(&wrapped[1..], &mut rng), None);
        // Another identity cannot unwrap it.
        assert_eq!(
            crate::tests::identity(1).unwrap_secret(&wrapped, &mut rng),
            None
        );
        let sig = id.sign(b"msg");
        assert!(public.verify(b"msg", &sig));
        assert!(!public.verify(b"msh", &sig));
        assert!(!crate::tests::identity(1).public_keys().verify(b"msg", &sig));
    }

    #[test]
    fn bad_sizes_and_bad_public_keys_are_refused() {
        let mut rng = SeededRandom::new(b"t");
        assert_eq!(
            Identity::generate_with(1024, &mut rng).err(),
            Some(IdentityError::UnsupportedBits(1024))
        );
        let id = crate::tests::identity(0);
        assert!(PeerKeys::parse(b"\x30\x03\x02\x01\x01", id.ed25519_public()).is_err());
        assert!(PeerKeys::parse(&[], id.ed25519_public()).is_err());
        assert_eq!(
            PeerKeys::parse(id.rsa_public_der(), &[0; 32]).err(),
            Some(IdentityError::BadEd25519Key)
        );
        let mut longer = id.rsa_public_der().to_vec();
        longer.push(0);
        assert!(PeerKeys::parse(&longer, id.ed25519_public()).is_err());
    }

    #[test]
    fn the_security_code_ignores_order_and_duplicates() {
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        assert_eq!(SecurityCode::of(&[a, b]), SecurityCode::of(&[b, a, a]));
        assert_ne!(SecurityCode::of(&[a, b]), SecurityCode::of(&[a]));
        let d = SecurityCode::of(&[a, b]).digits();
        assert_eq!(d.split(' ').count(), 6);
        assert!(
            d.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
        );
    }
}
