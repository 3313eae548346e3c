//! The operator's access-token files in the relay's state directory: the signing key
//! (`token-key.paserk`, 0600, created on first use), its public key (`token-public-key.paserk`,
//! what other relays of a cluster verify with), the revocation list (`revoked-tokens`, one id
//! per line, watched by running relays) and the ledger of issued tokens (`issued-tokens`: ids,
//! labels, expiries and quotas as JSON lines, never the tokens themselves).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::access::{AccessError, RevocationList, TokenClaims, TokenIssuer, TokenVerifier};
use crate::cert::write_file_atomically;

/// File name of the signing key.
pub const KEY_FILE: &str = "token-key.paserk";
/// File name of the public key.
pub const PUBLIC_KEY_FILE: &str = "token-public-key.paserk";
/// File name of the revocation list.
pub const REVOCATION_FILE: &str = "revoked-tokens";
/// File name of the ledger of issued tokens.
pub const LEDGER_FILE: &str = "issued-tokens";

/// Why the token files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: AccessError },
    #[error("no token {0} in the ledger of issued tokens")]
    UnknownToken(String),
}

/// The token files of one state directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn revocation_file(&self) -> PathBuf {
        self.dir.join(REVOCATION_FILE)
    }

    pub fn public_key_file(&self) -> PathBuf {
        self.dir.join(PUBLIC_KEY_FILE)
    }

    /// The signing key, created (with its public key file) if there is none yet.
    pub fn issuer(&self) -> Result<TokenIssuer, StoreError> {
        let path = self.dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                TokenIssuer::from_paserk(&text).map_err(|source| StoreError::Key { path, source })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let issuer = TokenIssuer::generate().map_err(|source| StoreError::Key {
                    path: path.clone(),
                    source,
                })?;
                self.create_dir()?;
                write(&path, issuer.secret_paserk().as_bytes(), true)?;
                let public = format!("{}\n", issuer.verifier().public_paserk());
                write(&self.public_key_file(), public.as_bytes(), false)?;
                Ok(issuer)
            }
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Issues a token for `claims` and records it in the ledger.
    pub fn issue(&self, claims: &TokenClaims) -> Result<String, StoreError> {
        let issuer = self.issuer()?;
        let token = issuer.issue(claims).map_err(|source| StoreError::Key {
            path: self.dir.join(KEY_FILE),
            source,
        })?;
        let path = self.dir.join(LEDGER_FILE);
        let mut line = serde_json::to_string(claims).expect("claims serialise");
        line.push('\n');
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        file.write_all(line.as_bytes())
            .map_err(|source| StoreError::Write { path, source })?;
        Ok(token)
    }

    /// The issued tokens, oldest first (lines that do not parse are skipped).
    pub fn issued(&self) -> Result<Vec<TokenClaims>, StoreError> {
        let path = self.dir.join(LEDGER_FILE);
        let text = read_or_empty(&path)?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// The revocation list now.
    pub fn revoked(&self) -> Result<RevocationList, StoreError> {
        let text = read_or_empty(&self.revocation_file())?;
        Ok(RevocationList::parse(&text).0)
    }

    /// Adds `id` to the revocation list (running relays watching the file apply it within a
    /// second). Refuses ids the ledger does not know unless `force`.
    pub fn revoke(&self, id: &str, force: bool) -> Result<(), StoreError> {
        let known = self.issued()?.iter().any(|claims| claims.id == id);
        if !known && !force {
            return Err(StoreError::UnknownToken(id.to_owned()));
        }
        crate::access::check_token_id(id).map_err(|source| StoreError::Key {
            path: self.revocation_file(),
            source,
        })?;
        if self.revoked()?.contains(id) {
            return Ok(());
        }
        let path = self.revocation_file();
        let mut text = read_or_empty(&path)?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(id);
        text.push('\n');
        self.create_dir()?;
        write(&path, text.as_bytes(), false)
    }

    fn create_dir(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(|source| StoreError::Write {
            path: self.dir.clone(),
            source,
        })
    }
}

/// Reads a `--token-public-key` file.
pub fn read_verifier(path: &Path) -> Result<TokenVerifier, StoreError> {
    let text = fs::read_to_string(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    TokenVerifier::from_paserk(&text).map_err(|source| StoreError::Key {
        path: path.to_path_buf(),
        source,
    })
}

fn read_or_empty(path: &Path) -> Result<String, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(StoreError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &[u8], private: bool) -> Result<(), StoreError> {
    write_file_atomically(path, contents, private).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{new_token_id, unix_now};

    fn claims(label: &str) -> TokenClaims {
        TokenClaims {
            max_rooms: Some(2),
            ..TokenClaims::new(label, std::time::Duration::from_secs(3600)).unwrap()
        }
    }

    #[test]
    fn the_key_is_made_once_private_and_its_public_key_verifies_what_it_issues() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("state"));
        let granted = claims("team-a");
        let token = store.issue(&granted).unwrap();
        let verifier = read_verifier(&store.public_key_file()).unwrap();
        assert_eq!(verifier.verify(&token, unix_now()).unwrap(), granted);
        // The same key on the next use.
        let again = store.issue(&claims("team-b")).unwrap();
        assert!(verifier.verify(&again, unix_now()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("state").join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ledger = fs::read_to_string(dir.path().join("state").join(LEDGER_FILE)).unwrap();
        assert!(!ledger.contains(&token), "the ledger never holds a token");
        assert_eq!(store.issued().unwrap().len(), 2);
    }

    #[test]
    fn revoking_appends_known_ids_once_and_refuses_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let granted = claims("team-a");
        store.issue(&granted).unwrap();
        store.revoke(&granted.id, false).unwrap();
        store.revoke(&granted.id, false).unwrap();
        assert!(store.revoked().unwrap().contains(&granted.id));
        assert_eq!(store.revoked().unwrap().len(), 1);
        let stranger = new_token_id().unwrap();
        assert!(matches!(
            store.revoke(&stranger, false),
            Err(StoreError::UnknownToken(_))
        ));
        store.revoke(&stranger, true).unwrap();
        assert!(store.revoke("nonsense", true).is_err());
        assert_eq!(store.revoked().unwrap().len(), 2);
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        let store = TokenStore::new(dir.path());
        let error = store.issuer().err().unwrap().to_string();
        assert!(error.contains(KEY_FILE), "{error}");
        assert_eq!(
            fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(),
            "garbage"
        );
    }
}
