//! vcall's TLS pieces shared by the relay and every client, so neither depends on the other:
//! the certificate fingerprint that invite links pin (`fp`), and the client-side verifier
//! that accepts exactly that certificate.
#![forbid(unsafe_code)]

pub mod pinning;

use std::fmt::Write as _;

/// The SHA-256 of a DER certificate in lowercase hex: the invite link's `fp`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_in_lowercase_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
