//! The client side of certificate pinning: a rustls client configuration that accepts exactly
//! the relay certificate whose SHA-256 (DER) is the invite link's `fp`, whoever issued it.
//! Used by the client engine, the relay's tests and the benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The text of the TLS error a pinning mismatch produces (clients match on it to tell the
/// user "wrong certificate" rather than "unreachable").
pub const FINGERPRINT_MISMATCH: &str = "vcall: certificate fingerprint mismatch";

/// Accepts exactly the certificate whose SHA-256 is `expected_hex` (any issuer, any name);
/// handshake signatures are still verified with the provider's algorithms.
#[derive(Debug)]
pub struct PinnedCertificate {
    expected_hex: String,
    provider: Arc<CryptoProvider>,
    mismatch: MismatchFlag,
}

/// Set when a pinned verifier saw a certificate other than the pinned one, so a client can
/// tell "wrong certificate" from "unreachable" without reading error texts.
#[derive(Debug, Clone, Default)]
pub struct MismatchFlag(Arc<AtomicBool>);

impl MismatchFlag {
    /// Whether a mismatching certificate was presented.
    pub fn seen(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl PinnedCertificate {
    /// A verifier for the lowercase or uppercase hex fingerprint `expected_hex`.
    pub fn new(expected_hex: &str, provider: Arc<CryptoProvider>) -> Self {
        Self {
            expected_hex: expected_hex.to_ascii_lowercase(),
            provider,
            mismatch: MismatchFlag::default(),
        }
    }

    /// The flag this verifier sets on a mismatch.
    pub fn mismatch_flag(&self) -> MismatchFlag {
        self.mismatch.clone()
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The fingerprint is public: a plain comparison is fine.
        if crate::fingerprint(end_entity.as_ref()) == self.expected_hex {
            Ok(ServerCertVerified::assertion())
        } else {
            self.mismatch.0.store(true, Ordering::Release);
            Err(rustls::Error::General(FINGERPRINT_MISMATCH.into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3 client configuration (ring) pinned to `fingerprint_hex`, offering `alpn`.
pub fn pinned_client_tls(fingerprint_hex: &str, alpn: &[u8]) -> rustls::ClientConfig {
    pinned_client_tls_with_flag(fingerprint_hex, alpn).0
}

/// [`pinned_client_tls`], with the flag its verifier sets when the relay presents another
/// certificate.
pub fn pinned_client_tls_with_flag(
    fingerprint_hex: &str,
    alpn: &[u8],
) -> (rustls::ClientConfig, MismatchFlag) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertificate::new(fingerprint_hex, provider.clone());
    let flag = verifier.mismatch_flag();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    (tls, flag)
}
