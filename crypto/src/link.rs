//! Invite links (`vcall://HOST:PORT/ROOM?fp=FP&t=TOKEN#k=KEY` or `#p=PASSPHRASE`), room
//! secrets, and the room keys derived from them: the opaque room id sent to the relay and the
//! announce key. The relay access token (`t=`) sits in the query, not the fragment: it is for the
//! relay, which checks it at join; the room secret in the fragment is never sent to anyone.
//!
//! A passphrase is refused unless it is hard to guess ([`check_passphrase`]): the room id is a
//! public function of the passphrase and the room name, so whoever sees it (the relay) can test
//! guesses offline at the cost of one Argon2id each (docs/SECURITY.md, "Passphrase rooms").

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{
    self, LABEL_ANNOUNCE_KEY, LABEL_OPEN_ROOM_ID, LABEL_ROOM_ID, room_key_material_from_key,
    room_key_material_from_passphrase,
};
use crate::random::RandomSource;

/// Longest room name, in UTF-8 bytes.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest passphrase, in UTF-8 bytes.
pub const MAX_PASSPHRASE: usize = 1024;
/// Longest host name.
pub const MAX_HOST: usize = 253;
/// Longest relay access token (`t=`), in bytes (the protocol's `Hello` limit).
pub const MAX_ACCESS_TOKEN: usize = 1024;
/// A passphrase must take at least 10^16 guesses (log10 of the floor; [`check_passphrase`]).
/// At 2,000 Argon2id guesses/s per high-end GPU, searching 10^16 takes 1,000 GPUs ~160 years
/// (~80 on average); docs/SECURITY.md gives the reasoning.
pub const PASSPHRASE_MIN_GUESSES_LOG10: u32 = 16;
/// Words that a passphrase of random words needs to clear the floor (stated in the error).
pub const PASSPHRASE_MIN_WORDS: usize = 5;
/// Words in the list generated passphrases draw from (11 bits each).
pub const PASSPHRASE_WORD_LIST_LEN: usize = 2048;
/// Default number of words of [`RoomSecret::generate_passphrase`] (66 bits).
pub const GENERATED_PASSPHRASE_WORDS: usize = 6;
/// Most words [`RoomSecret::generate_passphrase`] makes.
pub const MAX_GENERATED_PASSPHRASE_WORDS: usize = 24;
/// The relay port when a link names none.
pub const DEFAULT_PORT: u16 = 4433;
const DEFAULT_PORT_STR: &str = "4433";

/// Why an invite link is not valid. Every malformed link yields one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("an invite link starts with vcall://")]
    Scheme,
    #[error("the link has no host")]
    MissingHost,
    #[error("invalid host name")]
    BadHost,
    #[error("the link has an empty port (vcall://HOST:PORT/ROOM)")]
    MissingPort,
    #[error("invalid port")]
    BadPort,
    #[error("the link has no room name")]
    MissingRoom,
    #[error("invalid room name: {0}")]
    BadRoom(&'static str),
    #[error("invalid relay fingerprint (fp= needs 64 hex digits)")]
    BadFingerprint,
    #[error("the link has fp= twice")]
    DuplicateFingerprint,
    /// `t=` must be 1 to 1024 characters of `A-Z a-z 0-9 . _ -` (what relay tokens are made of).
    #[error("invalid relay access token (t= needs 1 to 1024 characters of A-Z a-z 0-9 . _ -)")]
    BadAccessToken,
    #[error("the link has t= twice")]
    DuplicateAccessToken,
    #[error("invalid room key (k= needs 32 bytes in base64url without padding)")]
    BadKey,
    #[error("invalid passphrase: {0}")]
    BadPassphrase(&'static str),
    /// The passphrase is too easy to guess: the room id lets anyone who sees it (the relay)
    /// test guesses offline. `estimated_log10` is log10 of the estimated guesses.
    #[error(
        "the passphrase is too easy to guess (about 10^{estimated_log10} guesses; at least \
         10^{floor} needed, because whoever sees the room id, such as the relay, can test \
         guesses offline): use a generated link (#k=) or a passphrase of at least {words} \
         random words",
        floor = PASSPHRASE_MIN_GUESSES_LOG10,
        words = PASSPHRASE_MIN_WORDS
    )]
    WeakPassphrase { estimated_log10: u32 },
    /// A saved link whose secret was removed ([`InviteLink::without_secret`]): `#k` or `#p`.
    #[error("this saved link does not contain its room secret: paste the full invite link to join")]
    SecretRemoved,
    #[error("unknown secret in the link's fragment (expected #k= or #p=)")]
    BadFragment,
}

/// The room secret carried in a link's fragment (never sent to anyone). Wiped on drop; not
/// `Clone`, so it has one owner (its link, or whoever took it out of the link).
#[derive(PartialEq, Eq)]
pub enum RoomSecret {
    /// 32 random bytes (`#k=`), what the app generates.
    Key([u8; 32]),
    /// A human passphrase (`#p=`), stretched with Argon2id. Build it with
    /// [`RoomSecret::passphrase`] (which refuses weak ones) or
    /// [`RoomSecret::generate_passphrase`]; [`RoomKeys::derive`] refuses a weak one anyway.
    Passphrase(String),
}

impl Drop for RoomSecret {
    fn drop(&mut self) {
        match self {
            Self::Key(k) => k.zeroize(),
            Self::Passphrase(p) => p.zeroize(),
        }
    }
}

impl ZeroizeOnDrop for RoomSecret {}

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(_) => f.write_str("RoomSecret::Key(..)"),
            Self::Passphrase(_) => f.write_str("RoomSecret::Passphrase(..)"),
        }
    }
}

impl RoomSecret {
    /// A fresh random 32-byte key.
    pub fn generate(rng: &mut dyn RandomSource) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(&mut k[..]);
        Self::Key(*k)
    }

    /// A passphrase secret, if `passphrase` is acceptable: not empty, at most
    /// [`MAX_PASSPHRASE`] bytes, and at least 10^[`PASSPHRASE_MIN_GUESSES_LOG10`] estimated
    /// guesses ([`check_passphrase`]).
    pub fn passphrase(passphrase: &str) -> Result<Self, LinkError> {
        check_passphrase(passphrase)?;
        Ok(Self::Passphrase(passphrase.to_owned()))
    }

    /// A diceware-style passphrase: `words` words (clamped to [`PASSPHRASE_MIN_WORDS`]..=
    /// [`MAX_GENERATED_PASSPHRASE_WORDS`]) drawn uniformly from a built-in list of 2048
    /// lowercase English words, joined by `-` (so the link needs no escapes), e.g.
    /// `vessel-quartet-lagoon-bravery-cargo-nodes`. Entropy: 11 bits per word (55 bits for 5,
    /// 66 for the default [`GENERATED_PASSPHRASE_WORDS`]). A draw that the strength estimate would
    /// refuse (e.g. a repeated word) is drawn again, so the result passes [`check_passphrase`]
    /// (unless `rng` is broken, see below); the redraws cost well under 0.1 bit.
    pub fn generate_passphrase(rng: &mut dyn RandomSource, words: usize) -> Self {
        let words = words.clamp(PASSPHRASE_MIN_WORDS, MAX_GENERATED_PASSPHRASE_WORDS);
        let mut p = random_words(rng, words);
        // A draw the estimate refuses (e.g. a repeated word) is drawn again: practically never
        // twice in a row with a working generator. A broken one (constant output) gets the last
        // draw back after 64 tries, which `check_passphrase` then refuses: joining fails visibly
        // rather than with a weak secret.
        for _ in 0..64 {
            if check_passphrase(&p).is_ok() {
                break;
            }
            p = random_words(rng, words);
        }
        Self::Passphrase(p.to_string())
    }
}

/// The words of generated passphrases (see `passphrase_words.rs` for where they come from).
pub(crate) static PASSPHRASE_WORDS: [&str; PASSPHRASE_WORD_LIST_LEN] =
    include!("passphrase_words.rs");

fn random_words(rng: &mut dyn RandomSource, words: usize) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(words * 9));
    let mut b = Zeroizing::new([0u8; 2]);
    for i in 0..words {
        rng.fill(&mut b[..]);
        // 2048 = 2^11: the low 11 bits of a uniform u16 are a uniform index.
        let index = (u16::from_le_bytes(*b) as usize) % PASSPHRASE_WORD_LIST_LEN;
        if i > 0 {
            out.push('-');
        }
        out.push_str(PASSPHRASE_WORDS[index]);
    }
    out
}

/// log10 of the estimated number of guesses an attacker needs for `passphrase`: the smaller
/// of the `zxcvbn` estimate of the whole passphrase and the sum over its distinct tokens
/// (maximal runs of letters, of digits or of other characters, lowercased, split at a
/// lower-to-upper case change) of each token's own `zxcvbn` estimate. The second term models an
/// attacker who knows the structure ("some words joined by something") and guesses word by
/// word; `zxcvbn` alone rates any four words joined by spaces at 10^19, even the most common
/// ones. `zxcvbn` looks at the first 100 characters of each string only.
pub fn passphrase_guesses_log10(passphrase: &str) -> f64 {
    if passphrase.is_empty() {
        return 0.0;
    }
    let whole = zxcvbn::zxcvbn(passphrase, &[]).guesses_log10();
    let mut tokens = tokens(passphrase);
    tokens.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    tokens.dedup_by(|a, b| a.as_str() == b.as_str());
    let by_token: f64 = tokens
        .iter()
        .map(|t| zxcvbn::zxcvbn(t, &[]).guesses_log10().max(0.0))
        .sum();
    whole.min(by_token).max(0.0)
}

fn tokens(passphrase: &str) -> Vec<Zeroizing<String>> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Letter,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_alphabetic() {
            Class::Letter
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut out: Vec<Zeroizing<String>> = Vec::new();
    // Reserved so that growing never reallocates (a reallocation would leave a copy behind);
    // lowercasing a character yields at most 3 characters.
    let capacity = passphrase.len() * 3;
    let mut current = Zeroizing::new(String::with_capacity(capacity));
    let mut last: Option<(Class, bool)> = None;
    for c in passphrase.chars() {
        let (k, upper) = (class(c), c.is_uppercase());
        let split = match last {
            None => false,
            Some((lk, lupper)) => lk != k || (k == Class::Letter && upper && !lupper),
        };
        if split {
            out.push(std::mem::replace(
                &mut current,
                Zeroizing::new(String::with_capacity(capacity)),
            ));
        }
        current.extend(c.to_lowercase());
        last = Some((k, upper));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Refuses a passphrase that is empty, longer than [`MAX_PASSPHRASE`] bytes, or estimated
/// ([`passphrase_guesses_log10`]) below 10^[`PASSPHRASE_MIN_GUESSES_LOG10`] guesses. This is a
/// client-side policy (not part of the wire format): a `#p=` link is joinable only if its
/// passphrase passes.
pub fn check_passphrase(passphrase: &str) -> Result<(), LinkError> {
    if passphrase.is_empty() {
        return Err(LinkError::BadPassphrase("empty"));
    }
    if passphrase.len() > MAX_PASSPHRASE {
        return Err(LinkError::BadPassphrase("longer than 1024 bytes"));
    }
    let estimate = passphrase_guesses_log10(passphrase);
    if estimate < PASSPHRASE_MIN_GUESSES_LOG10 as f64 {
        return Err(LinkError::WeakPassphrase {
            estimated_log10: estimate.floor() as u32,
        });
    }
    Ok(())
}

/// Characters escaped in a room name or passphrase: all but RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed invite link. Not `Clone` (it may own a [`RoomSecret`]): parse it again, or take
/// the secret out, where two owners are needed.
#[derive(PartialEq, Eq)]
pub struct InviteLink {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The room name (percent-decoded). Never sent to the relay when the link has a secret.
    pub room: String,
    /// SHA-256 of the relay's certificate (DER); `None` for a CA-signed relay.
    pub relay_fingerprint: Option<[u8; 32]>,
    /// The relay access token (`t=`, checked by [`check_access_token`]), sent in `Hello`;
    /// `None` for a relay in open mode.
    pub access_token: Option<String>,
    /// `None`: the unauthenticated mode (every peer unverified).
    pub secret: Option<RoomSecret>,
}

impl fmt::Debug for InviteLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteLink")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("room", &self.room)
            .field(
                "relay_fingerprint",
                &self.relay_fingerprint.map(hex::encode),
            )
            .field("access_token", &self.access_token.as_ref().map(|_| ".."))
            .field("secret", &self.secret)
            .finish()
    }
}

/// Refuses an access token that is empty, longer than [`MAX_ACCESS_TOKEN`] bytes, or has a
/// character outside `A-Z a-z 0-9 . _ -` (so it needs no escaping in a link and fits `Hello`).
pub fn check_access_token(token: &str) -> Result<(), LinkError> {
    let ok = !token.is_empty()
        && token.len() <= MAX_ACCESS_TOKEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LinkError::BadAccessToken)
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Percent-decoding of a room name or passphrase: `%XX` (any case) is the byte XX; everything
/// else, `+` included, stands for itself; the result must be UTF-8. The decoded copy is wiped on
/// drop (it may be a passphrase).
fn decode_component(s: &str) -> Option<Zeroizing<String>> {
    let bytes = Zeroizing::new(percent_decode_str(s).collect::<Vec<u8>>());
    let text = std::str::from_utf8(&bytes).ok()?;
    Some(Zeroizing::new(text.to_owned()))
}

impl InviteLink {
    /// Parses a link. Errors are specific and safe to show to a user.
    pub fn parse(link: &str) -> Result<Self, LinkError> {
        let link = link.trim();
        let rest = link.strip_prefix("vcall://").ok_or(LinkError::Scheme)?;
        let (before_fragment, fragment) = match rest.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (rest, None),
        };
        let (before_query, query) = match before_fragment.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (before_fragment, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        if authority.is_empty() {
            return Err(LinkError::MissingHost);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(LinkError::BadHost)?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(LinkError::BadHost);
            }
            let port = match after {
                "" => DEFAULT_PORT_STR,
                a => a.strip_prefix(':').ok_or(LinkError::BadHost)?,
            };
            (h.to_string(), port)
        } else {
            let (h, p) = authority
                .rsplit_once(':')
                .unwrap_or((authority, DEFAULT_PORT_STR));
            if h.is_empty() {
                return Err(LinkError::MissingHost);
            }
            if !valid_host(h) {
                return Err(LinkError::BadHost);
            }
            (h.to_ascii_lowercase(), p)
        };
        if port.is_empty() {
            return Err(LinkError::MissingPort);
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(LinkError::BadPort);
        }
        let port: u16 = port.parse().map_err(|_| LinkError::BadPort)?;
        if port == 0 {
            return Err(LinkError::BadPort);
        }
        let room_raw = path.strip_suffix('/').unwrap_or(path);
        if room_raw.is_empty() {
            return Err(LinkError::MissingRoom);
        }
        let room = decode_component(room_raw)
            .ok_or(LinkError::BadRoom("not UTF-8"))?
            .to_string();
        validate_room(&room)?;

        let mut relay_fingerprint = None;
        let mut access_token = None;
        for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name == "fp" {
                if relay_fingerprint.is_some() {
                    return Err(LinkError::DuplicateFingerprint);
                }
                let value = value.replace(':', "");
                if value.len() != 64 {
                    return Err(LinkError::BadFingerprint);
                }
                let mut fp = [0u8; 32];
                hex::decode_to_slice(&value, &mut fp).map_err(|_| LinkError::BadFingerprint)?;
                relay_fingerprint = Some(fp);
            } else if name == "t" {
                if access_token.is_some() {
                    return Err(LinkError::DuplicateAccessToken);
                }
                check_access_token(value)?;
                access_token = Some(value.to_owned());
            }
            // Unknown parameters are ignored (forward compatibility).
        }

        let secret = match fragment {
            None => None,
            Some(f) => parse_fragment(f)?,
        };
        Ok(Self {
            host,
            port,
            room,
            relay_fingerprint,
            access_token,
            secret,
        })
    }

    /// `host:port` (IPv6 in brackets), e.g. for `ToSocketAddrs` or a TLS server name.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Derives the room keys. Slow with a passphrase (Argon2id, 64 MiB): call off the UI thread.
    pub fn room_keys(&self) -> Result<RoomKeys, LinkError> {
        RoomKeys::derive(&self.room, self.secret.as_ref())
    }

    /// The link as it may be stored (e.g. the app's recent links) or logged: without the
    /// secret. A link that had one ends in `#k` or `#p` (no `=`, no value), which
    /// [`InviteLink::parse`] refuses with [`LinkError::SecretRemoved`], so it can never join the
    /// unauthenticated room of the same name by mistake; a link without a secret is unchanged.
    pub fn without_secret(&self) -> String {
        let mut out = format!(
            "vcall://{}/{}",
            self.authority(),
            utf8_percent_encode(&self.room, COMPONENT)
        );
        let _ = self.write_query(&mut out);
        match &self.secret {
            None => {}
            Some(RoomSecret::Key(_)) => out.push_str("#k"),
            Some(RoomSecret::Passphrase(_)) => out.push_str("#p"),
        }
        out
    }

    /// The full link text (like `to_string()`) in a buffer that is wiped on drop.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let room = utf8_percent_encode(&self.room, COMPONENT).to_string();
        let secret_len = match &self.secret {
            None => 0,
            Some(RoomSecret::Key(_)) => 46,
            Some(RoomSecret::Passphrase(p)) => 3 + 3 * p.len(),
        };
        // Reserved up front so that writing never reallocates (which would leave a copy).
        let token_len = self.access_token.as_ref().map_or(0, |t| 3 + t.len());
        let mut out = Zeroizing::new(String::with_capacity(
            16 + self.host.len() + room.len() + 70 + token_len + secret_len,
        ));
        use std::fmt::Write as _;
        let _ = write!(out, "{self}");
        out
    }

    /// The query, `?fp=FP&t=TOKEN` (either part only when present; nothing when neither is).
    fn write_query(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut sep = '?';
        if let Some(fp) = &self.relay_fingerprint {
            write!(out, "{sep}fp={}", hex::encode(fp))?;
            sep = '&';
        }
        if let Some(token) = &self.access_token {
            write!(out, "{sep}t={token}")?;
        }
        Ok(())
    }
}

fn validate_room(room: &str) -> Result<(), LinkError> {
    if room.is_empty() {
        return Err(LinkError::MissingRoom);
    }
    if room.len() > MAX_ROOM_NAME {
        return Err(LinkError::BadRoom("longer than 64 bytes"));
    }
    if room.chars().any(|c| c.is_control() || c == '/') {
        return Err(LinkError::BadRoom("control character or '/'"));
    }
    Ok(())
}

/// The fragment: empty (a bare `#`: no secret), `k=KEY`, `p=PASSPHRASE`, or `k` / `p` alone
/// (a saved link whose secret was removed: refused with [`LinkError::SecretRemoved`]).
fn parse_fragment(f: &str) -> Result<Option<RoomSecret>, LinkError> {
    if f.is_empty() {
        return Ok(None);
    }
    if f == "k" || f == "p" {
        return Err(LinkError::SecretRemoved);
    }
    if let Some(k) = f.strip_prefix("k=") {
        if k.len() != 43 {
            return Err(LinkError::BadKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        match URL_SAFE_NO_PAD.decode_slice(k, &mut key[..]) {
            Ok(32) => Ok(Some(RoomSecret::Key(*key))),
            _ => Err(LinkError::BadKey),
        }
    } else if let Some(p) = f.strip_prefix("p=") {
        let p = decode_component(p).ok_or(LinkError::BadPassphrase("not UTF-8"))?;
        RoomSecret::passphrase(&p).map(Some)
    } else {
        Err(LinkError::BadFragment)
    }
}

impl fmt::Display for InviteLink {
    /// The canonical link text (what "copy invite link" puts on the clipboard).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vcall://{}/{}",
            self.authority(),
            utf8_percent_encode(&self.room, COMPONENT)
        )?;
        self.write_query(f)?;
        match &self.secret {
            None => Ok(()),
            Some(RoomSecret::Key(k)) => write!(f, "#k={}", URL_SAFE_NO_PAD.encode(k)),
            Some(RoomSecret::Passphrase(p)) => {
                write!(f, "#p={}", utf8_percent_encode(p, COMPONENT))
            }
        }
    }
}

/// What a room's secret (or its absence) gives a session: the room id and the announce key.
/// The announce key is wiped on drop (every copy; `Clone` stays for the session tests, which
/// join several members to one room).
#[derive(Clone, PartialEq, Eq)]
pub struct RoomKeys {
    room_name: String,
    room_id: Vec<u8>,
    announce_key: Option<[u8; 32]>,
}

impl fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomKeys")
            .field("room_id", &hex::encode(&self.room_id))
            .field("has_secret", &self.has_secret())
            .finish()
    }
}

impl Drop for RoomKeys {
    fn drop(&mut self) {
        if let Some(k) = &mut self.announce_key {
            k.zeroize();
        }
    }
}

impl ZeroizeOnDrop for RoomKeys {}

impl RoomKeys {
    /// With a secret: room key material (HKDF of `k`, or Argon2id of the passphrase), then
    /// room id = HKDF(LABEL_ROOM_ID, rkm, room name) and announce key =
    /// HKDF(LABEL_ANNOUNCE_KEY, rkm, room name). Without: room id =
    /// SHA-256(LABEL_OPEN_ROOM_ID || room name) and no announce key. A passphrase below the
    /// strength floor is refused ([`check_passphrase`]) before any Argon2id work.
    pub fn derive(room_name: &str, secret: Option<&RoomSecret>) -> Result<Self, LinkError> {
        validate_room(room_name)?;
        let name = room_name.as_bytes();
        let Some(secret) = secret else {
            return Ok(Self {
                room_name: room_name.to_string(),
                room_id: kdf::sha256(&[LABEL_OPEN_ROOM_ID, name]).to_vec(),
                announce_key: None,
            });
        };
        let rkm = match secret {
            RoomSecret::Key(k) => room_key_material_from_key(k),
            RoomSecret::Passphrase(p) => {
                check_passphrase(p)?;
                room_key_material_from_passphrase(p, room_name)
            }
        };
        Ok(Self::from_room_key_material(room_name, &rkm))
    }

    /// Room id and announce key from room key material (also used by the tests' offline
    /// attack with cheap Argon2 parameters).
    pub(crate) fn from_room_key_material(room_name: &str, rkm: &[u8; 32]) -> Self {
        let name = room_name.as_bytes();
        Self {
            room_name: room_name.to_string(),
            room_id: kdf::hkdf::<32>(LABEL_ROOM_ID, rkm, name).to_vec(),
            announce_key: Some(kdf::hkdf::<32>(LABEL_ANNOUNCE_KEY, rkm, name)),
        }
    }

    /// The opaque room id (32 bytes) the client sends to the relay in its Hello.
    pub fn room_id(&self) -> &[u8] {
        &self.room_id
    }

    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// Moves the keys out, leaving an empty value behind (a session starting over keeps its
    /// room without copying the secret).
    pub(crate) fn take(&mut self) -> Self {
        Self {
            room_name: std::mem::take(&mut self.room_name),
            room_id: std::mem::take(&mut self.room_id),
            announce_key: self.announce_key.take(),
        }
    }

    /// Whether announcements are sealed and peers can be verified.
    pub fn has_secret(&self) -> bool {
        self.announce_key.is_some()
    }

    pub(crate) fn announce_key(&self) -> Option<&[u8; 32]> {
        self.announce_key.as_ref()
    }

    /// Room keys with a chosen room id (tests: a spy or a relay-moved packet in another room).
    #[cfg(test)]
    pub(crate) fn with_room_id(mut self, room_id: &[u8]) -> Self {
        self.room_id = room_id.to_vec();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn parses_a_full_link_and_prints_it_back() {
        let fp = "ab".repeat(32);
        let s = format!("vcall://relay.example.org:4433/team%20sync?fp={fp}#k={K}");
        let l = InviteLink::parse(&s).unwrap();
        assert_eq!(l.host, "relay.example.org");
        assert_eq!(l.port, 4433);
        assert_eq!(l.room, "team sync");
        assert_eq!(l.relay_fingerprint, Some([0xab; 32]));
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(l.secret, Some(RoomSecret::Key(k)));
        assert_eq!(l.to_string(), s);
        assert_eq!(InviteLink::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn parses_passphrase_ipv6_and_no_secret() {
        let l = InviteLink::parse(&format!("vcall://[::1]:9000/lobby#p={STRONG_ENCODED}")).unwrap();
        assert_eq!(l.host, "::1");
        assert_eq!(l.authority(), "[::1]:9000");
        assert_eq!(l.secret, Some(RoomSecret::Passphrase(STRONG.into())));
        assert_eq!(InviteLink::parse(&l.to_string()).unwrap(), l);
        let l = InviteLink::parse("vcall://10.0.0.1:1/r").unwrap();
        assert_eq!((l.secret, l.relay_fingerprint), (None, None));
        let l = InviteLink::parse("vcall://Host:1/r/?x=1&fp=".to_string().as_str());
        assert_eq!(l, Err(LinkError::BadFingerprint));
        let l = InviteLink::parse("vcall://relay.example:4433/r").unwrap();
        assert_eq!(InviteLink::parse("vcall://relay.example/r").unwrap(), l);
        assert_eq!(
            InviteLink::parse("vcall://[::1]/r").unwrap().port,
            DEFAULT_PORT
        );
        let l = InviteLink::parse("vcall://Host:1/r/?x=1").unwrap();
        assert_eq!((l.host.as_str(), l.room.as_str()), ("host", "r"));
    }

    #[test]
    fn malformed_links_give_clear_errors() {
        let fp = "ab".repeat(32);
        let cases: &[(&str, LinkError)] = &[
            ("", LinkError::Scheme),
            ("https://h:1/r", LinkError::Scheme),
            ("vcall://", LinkError::MissingHost),
            ("vcall://:1/r", LinkError::MissingHost),
            ("vcall://h:/r", LinkError::MissingPort),
            ("vcall://h:0/r", LinkError::BadPort),
            ("vcall://h:65536/r", LinkError::BadPort),
            ("vcall://h:12a/r", LinkError::BadPort),
            ("vcall://h_x:1/r", LinkError::BadHost),
            ("vcall://[zz]:1/r", LinkError::BadHost),
            ("vcall://[::1]x/r", LinkError::BadHost),
            ("vcall://h:1", LinkError::MissingRoom),
            ("vcall://h:1/", LinkError::MissingRoom),
            (
                "vcall://h:1/a%2Fb",
                LinkError::BadRoom("control character or '/'"),
            ),
            ("vcall://h:1/%FF", LinkError::BadRoom("not UTF-8")),
            (
                "vcall://h:1/%0A",
                LinkError::BadRoom("control character or '/'"),
            ),
            ("vcall://h:1/r?fp=abc", LinkError::BadFingerprint),
            ("vcall://h:1/r#k=short", LinkError::BadKey),
            (
                "vcall://h:1/r#k=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                LinkError::BadKey,
            ),
            (
                "vcall://h:1/r#k=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+",
                LinkError::BadKey,
            ),
            ("vcall://h:1/r#p=", LinkError::BadPassphrase("empty")),
            ("vcall://h:1/r#p=%C3", LinkError::BadPassphrase("not UTF-8")),
            ("vcall://h:1/r#k", LinkError::SecretRemoved),
            ("vcall://h:1/r#p", LinkError::SecretRemoved),
            ("vcall://h:1/r#k=", LinkError::BadKey),
            ("vcall://h:1/r#x=1", LinkError::BadFragment),
        ];
        for (link, want) in cases {
            assert_eq!(InviteLink::parse(link).as_ref().err(), Some(want), "{link}");
        }
        let long = format!("vcall://h:1/{}", "a".repeat(65));
        assert_eq!(
            InviteLink::parse(&long).err(),
            Some(LinkError::BadRoom("longer than 64 bytes"))
        );
        let twice = format!("vcall://h:1/r?fp={fp}&fp={fp}");
        assert_eq!(
            InviteLink::parse(&twice).err(),
            Some(LinkError::DuplicateFingerprint)
        );
        let upper = format!("vcall://h:1/r?fp={}", fp.to_uppercase());
        assert_eq!(
            InviteLink::parse(&upper).unwrap().relay_fingerprint,
            Some([0xab; 32])
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_parser(s in ".{0,200}", tail in "[ -~]{0,80}") {
            let _ = InviteLink::parse(&s);
            let _ = InviteLink::parse(&format!("vcall://{tail}"));
            let _ = InviteLink::parse(&format!("vcall://h:1/{tail}"));
            let _ = InviteLink::parse(&format!("vcall://h:1/r?t={tail}"));
        }

        /// Any valid token survives printing and parsing, beside a fingerprint and a secret.
        #[test]
        fn access_tokens_round_trip(token in "[A-Za-z0-9._-]{1,300}", with_fp: bool) {
            let fp = if with_fp { format!("fp={}&", "cd".repeat(32)) } else { String::new() };
            let link = InviteLink::parse(&format!("vcall://h:1/r?{fp}t={token}#k={K}")).unwrap();
            proptest::prop_assert_eq!(link.access_token.as_deref(), Some(token.as_str()));
            let again = InviteLink::parse(&link.to_string()).unwrap();
            proptest::prop_assert_eq!(&again, &link);
            let secret_text = link.to_secret_string();
            proptest::prop_assert_eq!(secret_text.as_str(), link.to_string());
        }
    }

    #[test]
    fn access_tokens_travel_in_the_query_and_are_checked() {
        let fp = "ab".repeat(32);
        let token = "v4.public.eyJqdGkiOiJ4In0.c2ln-_";
        let s = format!("vcall://h:1/r?fp={fp}&t={token}#k={K}");
        let l = InviteLink::parse(&s).unwrap();
        assert_eq!(l.access_token.as_deref(), Some(token));
        assert_eq!(l.relay_fingerprint, Some([0xab; 32]));
        assert_eq!(l.to_string(), s, "canonical order: fp, then t");
        // The token stays in a saved link (it is what lets the user rejoin); the secret goes.
        assert_eq!(
            l.without_secret(),
            format!("vcall://h:1/r?fp={fp}&t={token}#k")
        );
        let alone = InviteLink::parse(&format!("vcall://h:1/r?t={token}")).unwrap();
        assert_eq!(alone.to_string(), format!("vcall://h:1/r?t={token}"));
        assert_eq!(alone.relay_fingerprint, None);
        // In the fragment it is not a token (the relay would never see it there).
        assert_eq!(
            InviteLink::parse(&format!("vcall://h:1/r#t={token}")).err(),
            Some(LinkError::BadFragment)
        );
        let longest = "a".repeat(MAX_ACCESS_TOKEN);
        assert!(InviteLink::parse(&format!("vcall://h:1/r?t={longest}")).is_ok());
        let bad = [
            "vcall://h:1/r?t=".to_string(),
            "vcall://h:1/r?t".to_string(),
            "vcall://h:1/r?t=a%20b".to_string(),
            "vcall://h:1/r?t=a+b".to_string(),
            "vcall://h:1/r?t=caf\u{e9}".to_string(),
            format!("vcall://h:1/r?t=a{longest}"),
        ];
        for link in &bad {
            assert_eq!(
                InviteLink::parse(link).err(),
                Some(LinkError::BadAccessToken),
                "{link}"
            );
        }
        assert_eq!(
            InviteLink::parse("vcall://h:1/r?t=a&fp=&t=b").err(),
            Some(LinkError::BadFingerprint)
        );
        assert_eq!(
            InviteLink::parse("vcall://h:1/r?t=a&t=b").err(),
            Some(LinkError::DuplicateAccessToken)
        );
        assert_eq!(check_access_token(token), Ok(()));
        assert_eq!(check_access_token(""), Err(LinkError::BadAccessToken));
    }

    #[test]
    fn room_keys_known_answers() {
        let k = RoomSecret::Key([0x42; 32]);
        let a = RoomKeys::derive("lobby", Some(&k)).unwrap();
        let b = RoomKeys::derive("lobby2", Some(&k)).unwrap();
        let open = RoomKeys::derive("lobby", None).unwrap();
        assert!(a.has_secret() && !open.has_secret());
        assert_eq!(a.room_id().len(), 32);
        assert_ne!(a.room_id(), b.room_id());
        assert_ne!(a.room_id(), open.room_id());
        // The relay never sees the room name.
        assert!(!a.room_id().windows(5).any(|w| w == b"lobby"));
        assert_eq!(hex::encode(a.room_id()), ROOM_ID_KAT);
        assert_eq!(hex::encode(open.room_id()), OPEN_ROOM_ID_KAT);
        let p = RoomKeys::derive("lobby", Some(&RoomSecret::Passphrase(STRONG.into()))).unwrap();
        assert_eq!(hex::encode(p.room_id()), PASSPHRASE_ROOM_ID_KAT);
    }

    /// A passphrase well above the floor, with a space and a non-ASCII character.
    const STRONG: &str = "vessel quartet lagoon 🐎 bravery cargo";
    const STRONG_ENCODED: &str = "vessel%20quartet%20lagoon%20%F0%9F%90%8E%20bravery%20cargo";

    #[test]
    fn weak_passphrases_are_refused_with_the_typed_error() {
        let weak = [
            "password",
            "correct horse",
            "correct horse battery staple",
            "CorrectHorseBatteryStaple",
            "the and with from were",
            "hunter2",
            "Tr0ub4dor&3",
            "P@ssw0rd!2024",
            "alice2024",
            "standup 1987",
            "lobby-2025",
            "qwertyuiopasdfghjkl",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "vessel-vessel-vessel-vessel-vessel-vessel",
            "x7#q",
            "!@#$%^&*()",
        ];
        for p in weak {
            let err = RoomSecret::passphrase(p).unwrap_err();
            let LinkError::WeakPassphrase { estimated_log10 } = err else {
                panic!("{p}: {err:?}");
            };
            assert!(estimated_log10 < PASSPHRASE_MIN_GUESSES_LOG10, "{p}");
            assert!(err.to_string().contains("#k="), "{err}");
            assert!(err.to_string().contains("5 random words"), "{err}");
            // Refused by the parser, and by derive before any Argon2id work.
            let link = format!("vcall://h:1/r#p={}", utf8_percent_encode(p, COMPONENT));
            assert!(
                matches!(
                    InviteLink::parse(&link),
                    Err(LinkError::WeakPassphrase { .. })
                ),
                "{p}"
            );
            let secret = RoomSecret::Passphrase(p.into());
            assert!(matches!(
                RoomKeys::derive("r", Some(&secret)),
                Err(LinkError::WeakPassphrase { .. })
            ));
        }
        assert_eq!(
            RoomSecret::passphrase("").err(),
            Some(LinkError::BadPassphrase("empty"))
        );
        let long = "Xq7-".repeat(300);
        assert_eq!(
            RoomSecret::passphrase(&long).err(),
            Some(LinkError::BadPassphrase("longer than 1024 bytes"))
        );
    }

    #[test]
    fn strong_passphrases_pass() {
        let strong = [
            STRONG,
            "zebra quantum violin marsh kettle orbit",
            "glacier-turbine-monastic-lagoon-cassette",
            "Xk9#mQ2$vL7!pR4&wN8z",
            "ignition walrus lantern tapestry eighty clumsy",
        ];
        for p in strong {
            assert!(
                RoomSecret::passphrase(p).is_ok(),
                "{p}: {}",
                passphrase_guesses_log10(p)
            );
        }
    }

    #[test]
    fn generated_passphrases_always_pass_the_floor() {
        let mut rng = crate::random::SeededRandom::new(b"passphrases");
        for i in 0..300 {
            let words = [1, 5, 6, 8][i % 4];
            // Joinable as a link, and no escapes needed.
            let link = InviteLink {
                host: "h".into(),
                port: 1,
                room: "r".into(),
                relay_fingerprint: None,
                access_token: None,
                secret: Some(RoomSecret::generate_passphrase(&mut rng, words)),
            };
            let Some(RoomSecret::Passphrase(p)) = &link.secret else {
                panic!("not a passphrase");
            };
            assert!(check_passphrase(p).is_ok(), "{p}");
            let got: Vec<&str> = p.split('-').collect();
            assert_eq!(got.len(), words.max(PASSPHRASE_MIN_WORDS), "{p}");
            assert!(got.iter().all(|w| PASSPHRASE_WORDS.contains(w)), "{p}");
            assert!(link.to_string().ends_with(&format!("#p={p}")));
            assert_eq!(InviteLink::parse(&link.to_string()).unwrap(), link);
        }
        // A generator returning constant bytes (the same word over and over) still ends.
        struct Stuck;
        impl RandomSource for Stuck {
            fn fill(&mut self, dest: &mut [u8]) {
                dest.fill(7);
            }
        }
        let stuck = RoomSecret::generate_passphrase(&mut Stuck, 5);
        let RoomSecret::Passphrase(p) = &stuck else {
            panic!("not a passphrase");
        };
        assert!(check_passphrase(p).is_err(), "fails closed: {p}");
    }

    /// Every word of the list alone is estimated at >= 2000 guesses by zxcvbn, so any five
    /// distinct ones (5 * log10(2000) = 16.5) clear the floor.
    #[test]
    fn the_word_list_is_2048_distinct_uncommon_lowercase_words() {
        let mut sorted = PASSPHRASE_WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), PASSPHRASE_WORD_LIST_LEN);
        assert_eq!(sorted, PASSPHRASE_WORDS.to_vec(), "kept sorted");
        for w in PASSPHRASE_WORDS {
            assert!((4..=8).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(zxcvbn::zxcvbn(w, &[]).guesses() >= 2000, "{w}");
        }
        assert!(5.0 * 2000f64.log10() >= PASSPHRASE_MIN_GUESSES_LOG10 as f64);
    }

    #[test]
    fn keys_are_unaffected_and_a_bare_fragment_means_no_secret() {
        let with_key = InviteLink::parse(&format!("vcall://h:1/r#k={K}")).unwrap();
        assert!(matches!(with_key.secret, Some(RoomSecret::Key(_))));
        assert!(with_key.room_keys().unwrap().has_secret());
        // A weak-looking key text is still a 256-bit key.
        let zeros = "A".repeat(43);
        assert_eq!(
            InviteLink::parse(&format!("vcall://h:1/r#k={zeros}"))
                .unwrap()
                .secret,
            Some(RoomSecret::Key([0; 32]))
        );
        // Non-canonical base64: the last character may only carry zero padding bits.
        let mut odd = K.to_string();
        odd.pop();
        odd.push('9');
        assert_eq!(
            InviteLink::parse(&format!("vcall://h:1/r#k={odd}")).err(),
            Some(LinkError::BadKey)
        );
        let bare = InviteLink::parse("vcall://h:1/r#").unwrap();
        assert_eq!(bare, InviteLink::parse("vcall://h:1/r").unwrap());
        assert_eq!(bare.secret, None);
        assert_eq!(bare.to_string(), "vcall://h:1/r");
        assert!(!bare.room_keys().unwrap().has_secret());
    }

    #[test]
    fn plus_is_literal_and_percent_escapes_decode() {
        let p = "a+b vessel-quartet-lagoon-bravery-cargo";
        let l = InviteLink::parse(
            "vcall://h:1/team+sync%2b%41#p=a+b%20vessel-quartet-lagoon-bravery-cargo",
        )
        .unwrap();
        assert_eq!(l.room, "team+sync+A");
        assert_eq!(l.secret, Some(RoomSecret::Passphrase(p.into())));
        // Canonical form escapes '+' (and everything outside A-Z a-z 0-9 - . _ ~).
        assert_eq!(
            l.to_string(),
            "vcall://h:1/team%2Bsync%2BA#p=a%2Bb%20vessel-quartet-lagoon-bravery-cargo"
        );
        assert_eq!(InviteLink::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn saved_links_drop_the_secret_and_cannot_join_by_mistake() {
        let fp = "ab".repeat(32);
        let keyed = InviteLink::parse(&format!("vcall://h:1/team%20sync?fp={fp}#k={K}")).unwrap();
        let saved = keyed.without_secret();
        assert_eq!(saved, format!("vcall://h:1/team%20sync?fp={fp}#k"));
        assert!(!saved.contains(K));
        assert_eq!(
            InviteLink::parse(&saved).err(),
            Some(LinkError::SecretRemoved)
        );
        let pass = InviteLink::parse(&format!("vcall://h:1/r#p={STRONG_ENCODED}")).unwrap();
        assert_eq!(pass.without_secret(), "vcall://h:1/r#p");
        let open = InviteLink::parse("vcall://h:1/r").unwrap();
        assert_eq!(open.without_secret(), "vcall://h:1/r");
        assert_eq!(InviteLink::parse(&open.without_secret()).unwrap(), open);
        for l in [&keyed, &pass, &open] {
            assert_eq!(l.to_secret_string().as_str(), l.to_string());
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let keyed = InviteLink::parse(&format!("vcall://h:1/r#k={K}")).unwrap();
        let pass = InviteLink::parse(&format!("vcall://h:1/r#p={STRONG_ENCODED}")).unwrap();
        let tokened = InviteLink::parse("vcall://h:1/r?t=SeCrEtToKeN").unwrap();
        assert!(!format!("{tokened:?}").contains("SeCrEtToKeN"));
        for (l, secret) in [(&keyed, K), (&pass, "quartet")] {
            let d = format!("{l:?} {:?} {:?}", l.secret, l.room_keys().unwrap());
            assert!(!d.contains(secret), "{d}");
            assert!(d.contains("(..)"), "{d}");
        }
        let keys = keyed.room_keys().unwrap();
        let announce = hex::encode(keys.announce_key().unwrap());
        assert!(!format!("{keys:?}").contains(&announce));
    }

    #[test]
    fn secret_types_wipe_themselves_on_drop() {
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<RoomSecret>();
        wiped::<RoomKeys>();
        wiped::<crate::media::SenderSecret>();
    }

    const ROOM_ID_KAT: &str = "694e07058f5ea0dbf0e617642f41f5b25e8f80233d9a218c349c18543d148f67";
    const OPEN_ROOM_ID_KAT: &str =
        "da0957f7ce0b0cdc0f1486351173067af53a7e3e4dc1cabfc8139bfc70867ddf";
    const PASSPHRASE_ROOM_ID_KAT: &str =
        "0c456b09f514dc7d82315469e02cc2236cba4f9a4c374afd1576d4a4026ddac1";
}
