//! Who may use the relay, without I/O: access tokens (PASETO v4.public, signed offline by the
//! operator), the revocation list, and each tenant's quotas (docs/RELAY.md "Access control").
//!
//! A token names a tenant (a random id and the operator's label), an expiry and its quotas:
//! never a room, a person or a key. The relay checks it once, at `Hello`; after that only
//! counters are touched ([`TenantBook`]), so access control costs nothing per datagram.
//! The shell (`access_watch.rs`) reloads the revocation file; [`Access`] is shared by every
//! connection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::FormatAsPaserk;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::{Public, errors::Error as PasetoError};
use serde::{Deserialize, Serialize};
use vcall_proto::DenyReason;

use crate::rooms::RoomId;

/// Bound into every token's signature (PASETO implicit assertion): a token made for something
/// else with the same key never verifies here.
const IMPLICIT_ASSERTION: &[u8] = b"vcall-relay-access-v1";
/// Longest tenant label.
pub const MAX_LABEL: usize = 64;
/// Length of a token id (hex of 16 random bytes).
pub const TOKEN_ID_LEN: usize = 32;

/// Why a key or token could not be made or read (operator-side errors).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("invalid key: {0}")]
    BadKey(String),
    #[error("invalid label {0:?}: 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadLabel(String),
    #[error("invalid token id {0:?}: 32 lowercase hex digits")]
    BadTokenId(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// What a token grants. Serialised as the token's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The token's id (what `token revoke` names).
    #[serde(rename = "jti")]
    pub id: String,
    /// The tenant's label, chosen by the operator (shown in logs and metrics).
    pub label: String,
    /// Expiry, Unix seconds.
    #[serde(rename = "exp")]
    pub expires: u64,
    /// Rooms this tenant may have members in at once on one relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms: Option<u32>,
    /// Members of this tenant one room may hold on one relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members_per_room: Option<u32>,
    /// Datagram bandwidth each member of this tenant may send, kilobits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kbps: Option<u32>,
}

impl TokenClaims {
    /// Claims for a new token of `label`: a fresh random id, valid for `valid_for` from now,
    /// without quotas (set the `max_*` fields for those).
    pub fn new(label: &str, valid_for: std::time::Duration) -> Result<Self, AccessError> {
        Ok(Self {
            id: new_token_id()?,
            label: label.to_owned(),
            expires: unix_now().saturating_add(valid_for.as_secs()),
            max_rooms: None,
            max_members_per_room: None,
            max_kbps: None,
        })
    }

    /// Checks the fields a relay relies on (label for metrics, id for revocation).
    fn validate(&self) -> Result<(), AccessError> {
        check_label(&self.label)?;
        check_token_id(&self.id)
    }

    /// The per-member datagram byte budget per second, if the token caps it.
    pub fn max_bytes_per_sec(&self) -> Option<u64> {
        self.max_kbps.map(|kbps| u64::from(kbps) * 125)
    }
}

/// Refuses labels that would not be safe as a metric label or a log word.
pub fn check_label(label: &str) -> Result<(), AccessError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(())
        .ok_or_else(|| AccessError::BadLabel(label.to_owned()))
}

/// Refuses anything but 32 lowercase hex digits.
pub fn check_token_id(id: &str) -> Result<(), AccessError> {
    let ok = id.len() == TOKEN_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(())
        .ok_or_else(|| AccessError::BadTokenId(id.to_owned()))
}

/// A fresh random token id.
pub fn new_token_id() -> Result<String, AccessError> {
    let mut bytes = [0u8; TOKEN_ID_LEN / 2];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| AccessError::Sign("no system randomness".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The operator's signing key: only the issuing machine holds it.
pub struct TokenIssuer {
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl TokenIssuer {
    /// A new random key pair.
    pub fn generate() -> Result<Self, AccessError> {
        let pair = AsymmetricKeyPair::<V4>::generate().map_err(key_error)?;
        Ok(Self {
            secret: pair.secret,
            public: pair.public,
        })
    }

    /// Reads a PASERK `k4.secret.` key.
    pub fn from_paserk(text: &str) -> Result<Self, AccessError> {
        let secret = AsymmetricSecretKey::<V4>::try_from(text.trim()).map_err(key_error)?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret).map_err(key_error)?;
        Ok(Self { secret, public })
    }

    /// The secret key as PASERK (`k4.secret.…`), for the 0600 key file.
    pub fn secret_paserk(&self) -> String {
        paserk(&self.secret)
    }

    /// What relays verify with.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier {
            public: self.public.clone(),
        }
    }

    /// Signs `claims` into a token (`v4.public.…`).
    pub fn issue(&self, claims: &TokenClaims) -> Result<String, AccessError> {
        claims.validate()?;
        let payload = serde_json::to_vec(claims).map_err(|e| AccessError::Sign(e.to_string()))?;
        PublicToken::sign(&self.secret, &payload, None, Some(IMPLICIT_ASSERTION))
            .map_err(|e| AccessError::Sign(format!("{e:?}")))
    }
}

/// The operator's public key: verifies tokens, cannot make them.
#[derive(Clone)]
pub struct TokenVerifier {
    public: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenVerifier({})", self.public_paserk())
    }
}

impl TokenVerifier {
    /// Reads a PASERK `k4.public.` key.
    pub fn from_paserk(text: &str) -> Result<Self, AccessError> {
        let public = AsymmetricPublicKey::<V4>::try_from(text.trim()).map_err(key_error)?;
        Ok(Self { public })
    }

    /// The public key as PASERK (`k4.public.…`), for `--token-public-key` files.
    pub fn public_paserk(&self) -> String {
        paserk(&self.public)
    }

    /// Verifies `token` at `now` (Unix seconds): its claims, or why it is refused. Total: any
    /// string yields one or the other.
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenClaims, DenyReason> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token)
            .map_err(|_| DenyReason::TokenMalformed)?;
        let trusted = PublicToken::verify(&self.public, &untrusted, None, Some(IMPLICIT_ASSERTION))
            .map_err(|error| match error {
                PasetoError::TokenValidation => DenyReason::TokenBadSignature,
                _ => DenyReason::TokenMalformed,
            })?;
        let claims: TokenClaims =
            serde_json::from_str(trusted.payload()).map_err(|_| DenyReason::TokenMalformed)?;
        claims.validate().map_err(|_| DenyReason::TokenMalformed)?;
        if claims.expires <= now {
            return Err(DenyReason::TokenExpired);
        }
        Ok(claims)
    }
}

fn paserk(key: &impl FormatAsPaserk) -> String {
    let mut out = String::new();
    key.fmt(&mut out).expect("writing to a String cannot fail");
    out
}

fn key_error(error: PasetoError) -> AccessError {
    AccessError::BadKey(format!("{error:?}"))
}

/// Revoked token ids, read from the revocation file: one id per line, `#` starts a comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    ids: HashSet<String>,
}

impl RevocationList {
    /// Parses the file's text. Lines that are not a token id are returned (1-based line
    /// numbers) so the shell can log them; the valid ids still apply.
    pub fn parse(text: &str) -> (Self, Vec<usize>) {
        let mut ids = HashSet::new();
        let mut bad = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            match check_token_id(line) {
                Ok(()) => {
                    ids.insert(line.to_owned());
                }
                Err(_) => bad.push(number + 1),
            }
        }
        (Self { ids }, bad)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What one tenant uses on this relay: its members per room.
#[derive(Debug, Default)]
struct TenantUsage {
    label: String,
    members_by_room: HashMap<RoomId, u32>,
}

/// Per-label usage, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelUsage {
    pub rooms: u64,
    pub members: u64,
}

/// Every tenant's rooms and members on this relay, and their quotas' enforcement.
#[derive(Debug, Default)]
pub struct TenantBook {
    tenants: HashMap<String, TenantUsage>,
}

impl TenantBook {
    /// Takes a seat in `room` for the tenant of `claims`, or says which quota is full.
    pub fn admit(&mut self, claims: &TokenClaims, room: &RoomId) -> Result<(), DenyReason> {
        let usage = self.tenants.entry(claims.id.clone()).or_default();
        usage.label.clone_from(&claims.label);
        let members = usage.members_by_room.get(room).copied().unwrap_or(0);
        if members == 0
            && let Some(max) = claims.max_rooms
            && usage.members_by_room.len() >= max as usize
        {
            self.forget_if_idle(&claims.id);
            return Err(DenyReason::QuotaRooms);
        }
        if let Some(max) = claims.max_members_per_room
            && members >= max
        {
            return Err(DenyReason::QuotaMembers);
        }
        *usage.members_by_room.entry(room.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// Gives back a seat taken by [`admit`](Self::admit).
    pub fn release(&mut self, token_id: &str, room: &RoomId) {
        let Some(usage) = self.tenants.get_mut(token_id) else {
            return;
        };
        if let Some(members) = usage.members_by_room.get_mut(room) {
            *members -= 1;
            if *members == 0 {
                usage.members_by_room.remove(room);
            }
        }
        self.forget_if_idle(token_id);
    }

    fn forget_if_idle(&mut self, token_id: &str) {
        if self
            .tenants
            .get(token_id)
            .is_some_and(|usage| usage.members_by_room.is_empty())
        {
            self.tenants.remove(token_id);
        }
    }

    /// Rooms and members per label (several tokens may share a label).
    pub fn usage_by_label(&self) -> BTreeMap<String, LabelUsage> {
        let mut out: BTreeMap<String, LabelUsage> = BTreeMap::new();
        for usage in self.tenants.values() {
            let entry = out.entry(usage.label.clone()).or_default();
            entry.rooms += usage.members_by_room.len() as u64;
            entry.members += usage
                .members_by_room
                .values()
                .map(|&m| u64::from(m))
                .sum::<u64>();
        }
        out
    }
}

/// A member's admission under a token: what must be given back when it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub token_id: String,
    pub label: String,
    pub room: RoomId,
    /// The token's per-member datagram budget, bytes per second.
    pub max_bytes_per_sec: Option<u64>,
}

/// How the relay decides who may join.
#[derive(Debug)]
pub enum AccessMode {
    /// Anyone who reaches the relay (self-hosting, the app's embedded relay).
    Open,
    /// Only holders of a token this key verifies.
    Token(TokenVerifier),
}

/// The relay's access policy, shared by every connection.
#[derive(Debug)]
pub struct Access {
    mode: AccessMode,
    revoked: RwLock<RevocationList>,
    tenants: Mutex<TenantBook>,
    clock: fn() -> u64,
}

impl Access {
    /// Anyone may join.
    pub fn open() -> Self {
        Self::new(AccessMode::Open)
    }

    pub fn new(mode: AccessMode) -> Self {
        Self::with_clock(mode, unix_now)
    }

    /// With `clock` giving Unix seconds (tests).
    pub fn with_clock(mode: AccessMode, clock: fn() -> u64) -> Self {
        Self {
            mode,
            revoked: RwLock::new(RevocationList::default()),
            tenants: Mutex::new(TenantBook::default()),
            clock,
        }
    }

    pub fn is_token_mode(&self) -> bool {
        matches!(self.mode, AccessMode::Token(_))
    }

    /// Admits a `Hello` with `token` into `room`: `Ok(None)` in open mode, `Ok(Some(seat))`
    /// for a valid token within its quotas (give the seat back with [`leave`](Self::leave)),
    /// else why not, with the token's label when it was readable.
    pub fn admit(
        &self,
        token: Option<&str>,
        room: &RoomId,
    ) -> Result<Option<Seat>, (DenyReason, Option<String>)> {
        let AccessMode::Token(verifier) = &self.mode else {
            return Ok(None);
        };
        let token = token.ok_or((DenyReason::TokenRequired, None))?;
        let claims = verifier
            .verify(token, (self.clock)())
            .map_err(|reason| (reason, None))?;
        let label = Some(claims.label.clone());
        if self.is_revoked(&claims.id) {
            return Err((DenyReason::TokenRevoked, label));
        }
        self.tenants()
            .admit(&claims, room)
            .map_err(|reason| (reason, label))?;
        Ok(Some(Seat {
            max_bytes_per_sec: claims.max_bytes_per_sec(),
            token_id: claims.id,
            label: claims.label,
            room: room.clone(),
        }))
    }

    /// Gives back a seat.
    pub fn leave(&self, seat: &Seat) {
        self.tenants().release(&seat.token_id, &seat.room);
    }

    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(token_id)
    }

    /// Replaces the revocation list; true when it changed.
    pub fn set_revoked(&self, list: RevocationList) -> bool {
        let mut current = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *current != list;
        *current = list;
        changed
    }

    /// Rooms and members per tenant label right now.
    pub fn usage_by_label(&self) -> BTreeMap<String, LabelUsage> {
        self.tenants().usage_by_label()
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, TenantBook> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(id_byte: char) -> TokenClaims {
        TokenClaims {
            id: std::iter::repeat_n(id_byte, TOKEN_ID_LEN).collect(),
            label: "team-a".into(),
            expires: NOW + 3600,
            max_rooms: None,
            max_members_per_room: None,
            max_kbps: None,
        }
    }

    fn room(name: &'static str) -> RoomId {
        Bytes::from_static(name.as_bytes())
    }

    #[test]
    fn a_token_verifies_with_its_key_and_keeps_its_claims() {
        let issuer = TokenIssuer::generate().unwrap();
        let mut granted = claims('a');
        granted.max_rooms = Some(2);
        granted.max_kbps = Some(800);
        let token = issuer.issue(&granted).unwrap();
        assert!(token.starts_with("v4.public."));
        assert!(
            !token.contains("team-a"),
            "the payload is base64, not plain"
        );
        let got = issuer.verifier().verify(&token, NOW).unwrap();
        assert_eq!(got, granted);
        assert_eq!(got.max_bytes_per_sec(), Some(100_000));
    }

    #[test]
    fn refusals_name_their_reason() {
        let issuer = TokenIssuer::generate().unwrap();
        let other = TokenIssuer::generate().unwrap();
        let token = issuer.issue(&claims('b')).unwrap();
        let verifier = issuer.verifier();
        assert_eq!(
            other.verifier().verify(&token, NOW),
            Err(DenyReason::TokenBadSignature)
        );
        assert_eq!(
            verifier.verify(&token, NOW + 3600),
            Err(DenyReason::TokenExpired)
        );
        assert_eq!(
            verifier.verify("not a token", NOW),
            Err(DenyReason::TokenMalformed)
        );
        // One character changed in the signed payload.
        let mut bytes = token.clone().into_bytes();
        let i = "v4.public.".len() + 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            verifier.verify(&tampered, NOW),
            Err(DenyReason::TokenBadSignature | DenyReason::TokenMalformed)
        ));
    }

    #[test]
    fn keys_round_trip_through_paserk() {
        let issuer = TokenIssuer::generate().unwrap();
        let secret = issuer.secret_paserk();
        assert!(secret.starts_with("k4.secret."));
        let public = issuer.verifier().public_paserk();
        assert!(public.starts_with("k4.public."));
        let again = TokenIssuer::from_paserk(&format!("{secret}\n")).unwrap();
        let token = again.issue(&claims('c')).unwrap();
        let verifier = TokenVerifier::from_paserk(&public).unwrap();
        assert!(verifier.verify(&token, NOW).is_ok());
        assert!(TokenVerifier::from_paserk("k4.public.short").is_err());
        assert!(TokenIssuer::from_paserk(&public).is_err());
    }

    #[test]
    fn labels_and_ids_are_checked_when_issuing() {
        let issuer = TokenIssuer::generate().unwrap();
        let mut bad = claims('d');
        bad.label = "team a".into();
        assert!(matches!(issuer.issue(&bad), Err(AccessError::BadLabel(_))));
        let mut bad = claims('d');
        bad.id = "XYZ".into();
        assert!(matches!(
            issuer.issue(&bad),
            Err(AccessError::BadTokenId(_))
        ));
        assert_eq!(new_token_id().unwrap().len(), TOKEN_ID_LEN);
        assert!(check_token_id(&new_token_id().unwrap()).is_ok());
    }

    #[test]
    fn the_revocation_list_keeps_valid_ids_and_reports_bad_lines() {
        let id = "0123456789abcdef0123456789abcdef";
        let text = format!("# revoked\n{id}  # team-a, left\n\nnot-an-id\n");
        let (list, bad) = RevocationList::parse(&text);
        assert!(list.contains(id));
        assert_eq!(list.len(), 1);
        assert_eq!(bad, vec![4]);
    }

    #[test]
    fn room_and_member_quotas_are_counted_per_tenant_and_freed_on_leave() {
        let mut book = TenantBook::default();
        let mut limited = claims('e');
        limited.max_rooms = Some(1);
        limited.max_members_per_room = Some(2);
        book.admit(&limited, &room("r1")).unwrap();
        book.admit(&limited, &room("r1")).unwrap();
        assert_eq!(
            book.admit(&limited, &room("r1")),
            Err(DenyReason::QuotaMembers)
        );
        assert_eq!(
            book.admit(&limited, &room("r2")),
            Err(DenyReason::QuotaRooms)
        );
        // Another tenant is not affected.
        book.admit(&claims('f'), &room("r1")).unwrap();
        let usage = book.usage_by_label();
        assert_eq!(
            usage["team-a"],
            LabelUsage {
                rooms: 2,
                members: 3
            }
        );
        book.release(&limited.id, &room("r1"));
        book.admit(&limited, &room("r1")).unwrap();
        book.release(&limited.id, &room("r1"));
        book.release(&limited.id, &room("r1"));
        book.admit(&limited, &room("r2")).unwrap();
    }

    #[test]
    fn access_in_token_mode_checks_presence_revocation_and_quotas() {
        let issuer = TokenIssuer::generate().unwrap();
        let access = Access::with_clock(AccessMode::Token(issuer.verifier()), || NOW);
        assert_eq!(
            access.admit(None, &room("r")),
            Err((DenyReason::TokenRequired, None))
        );
        let granted = claims('7');
        let token = issuer.issue(&granted).unwrap();
        let seat = access.admit(Some(&token), &room("r")).unwrap().unwrap();
        assert_eq!(seat.label, "team-a");
        let (list, _) = RevocationList::parse(&granted.id);
        assert!(access.set_revoked(list.clone()));
        assert!(!access.set_revoked(list));
        assert!(access.is_revoked(&granted.id));
        assert_eq!(
            access.admit(Some(&token), &room("r")),
            Err((DenyReason::TokenRevoked, Some("team-a".into())))
        );
        access.leave(&seat);
        assert!(access.usage_by_label().is_empty());
        assert_eq!(Access::open().admit(None, &room("r")), Ok(None));
    }

    proptest! {
        #[test]
        fn the_verifier_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let verifier = TokenIssuer::generate().unwrap().verifier();
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(verifier.verify(&text, NOW).is_err());
            let prefixed = format!("v4.public.{text}");
            prop_assert!(verifier.verify(&prefixed, NOW).is_err());
        }
    }
}
