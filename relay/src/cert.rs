//! The relay's TLS identity: a persisted self-signed certificate, PEM files, or an ephemeral
//! one, and its fingerprint (SHA-256 of the certificate DER, 64 lowercase hex digits).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::CertificateSource;

/// File name of the persisted self-signed certificate inside the state directory.
pub const SELF_SIGNED_CERT_FILE: &str = "relay-cert.pem";
/// File name of the persisted self-signed private key inside the state directory.
pub const SELF_SIGNED_KEY_FILE: &str = "relay-key.pem";

/// Names the self-signed certificate is issued for. Clients pin it by fingerprint, so these
/// only need to be syntactically valid.
const SELF_SIGNED_NAMES: [&str; 2] = ["vcall-relay", "localhost"];

/// Why the relay's certificate could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} contains no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate chain, its private key, and what clients need to know about it.
#[derive(Debug)]
pub struct RelayIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
    /// True for a self-signed certificate (invite links then carry `fp=`).
    pub self_signed: bool,
}

impl RelayIdentity {
    /// Loads or creates the identity described by `source`.
    pub fn load(source: &CertificateSource) -> Result<Self, CertError> {
        match source {
            CertificateSource::Ephemeral => {
                let (cert_pem, key_pem) = generate_self_signed()?;
                Self::from_pem(&cert_pem, &key_pem, Path::new("<ephemeral>"), true)
            }
            CertificateSource::SelfSigned { state_dir } => load_or_create_self_signed(state_dir),
            CertificateSource::PemFiles { cert, key } => {
                let chain = read_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|source| CertError::Read {
                    path: key.clone(),
                    source,
                })?;
                Ok(Self::new(chain, key, false))
            }
        }
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed: bool,
    ) -> Self {
        let fingerprint = fingerprint(&chain[0]);
        Self {
            chain,
            key,
            fingerprint,
            self_signed,
        }
    }

    fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        origin: &Path,
        self_signed: bool,
    ) -> Result<Self, CertError> {
        let read_error = |source| CertError::Read {
            path: origin.to_path_buf(),
            source,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate {
                path: origin.to_path_buf(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(read_error)?;
        Ok(Self::new(chain, key, self_signed))
    }
}

/// SHA-256 of a certificate's DER encoding as 64 lowercase hex digits (what `fp=` carries).
pub use vcall_tls::fingerprint;

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let read_error = |source| CertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// A new self-signed certificate and its key, both PEM.
fn generate_self_signed() -> Result<(String, String), CertError> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Reuses the certificate in `state_dir`, or generates and saves one on first start.
fn load_or_create_self_signed(state_dir: &Path) -> Result<RelayIdentity, CertError> {
    let cert_path = state_dir.join(SELF_SIGNED_CERT_FILE);
    let key_path = state_dir.join(SELF_SIGNED_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let chain = read_chain(&cert_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|source| CertError::Read {
            path: key_path.clone(),
            source,
        })?;
        return Ok(RelayIdentity::new(chain, key, true));
    }
    let (cert_pem, key_pem) = generate_self_signed()?;
    fs::create_dir_all(state_dir).map_err(|source| CertError::Write {
        path: state_dir.to_path_buf(),
        source,
    })?;
    // Key first: a crash between the two writes leaves no certificate without its key.
    write_atomically(&key_path, key_pem.as_bytes(), true)?;
    write_atomically(&cert_path, cert_pem.as_bytes(), false)?;
    RelayIdentity::from_pem(&cert_pem, &key_pem, &cert_path, true)
}

/// Writes `contents` to a temporary file beside `path`, then renames it into place.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    write_file_atomically(path, contents, private).map_err(|source| CertError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to a temporary file beside `path` (mode 0600 when `private`), syncs it,
/// then renames it into place: readers see the old file or the new one, never a part.
pub(crate) fn write_file_atomically(
    path: &Path,
    contents: &[u8],
    private: bool,
) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertificateSource::SelfSigned {
            state_dir: dir.path().join("nested"),
        };
        let first = RelayIdentity::load(&source).unwrap();
        assert!(first.self_signed);
        assert_eq!(first.fingerprint.len(), 64);
        let second = RelayIdentity::load(&source).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.chain, second.chain);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("nested").join(SELF_SIGNED_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the private key is readable by its owner only"
            );
        }
    }

    #[test]
    fn pem_files_load_and_are_not_marked_self_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = generate_self_signed().unwrap();
        let cert = dir.path().join("fullchain.pem");
        let key = dir.path().join("privkey.pem");
        fs::write(&cert, &cert_pem).unwrap();
        fs::write(&key, &key_pem).unwrap();
        let identity = RelayIdentity::load(&CertificateSource::PemFiles { cert, key }).unwrap();
        assert!(!identity.self_signed);
        assert_eq!(identity.fingerprint, fingerprint(&identity.chain[0]));
    }

    #[test]
    fn missing_or_empty_pem_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertificateSource::PemFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        assert!(matches!(
            RelayIdentity::load(&missing),
            Err(CertError::Read { .. })
        ));
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "not a pem file\n").unwrap();
        let empty_source = CertificateSource::PemFiles {
            cert: empty.clone(),
            key: empty,
        };
        assert!(matches!(
            RelayIdentity::load(&empty_source),
            Err(CertError::NoCertificate { .. })
        ));
    }

    #[test]
    fn ephemeral_certificates_differ_each_time() {
        let a = RelayIdentity::load(&CertificateSource::Ephemeral).unwrap();
        let b = RelayIdentity::load(&CertificateSource::Ephemeral).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
    }
}
