//! Invite links (`vcall://HOST:PORT/ROOM?fp=FP#k=KEY` or `#p=PASSPHRASE`), room secrets, and
//! the room keys derived from them: the opaque room id sent to the relay and the announce key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

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
    #[error("invalid room key (k= needs 32 bytes in base64url without padding)")]
    BadKey,
    #[error("invalid passphrase: {0}")]
    BadPassphrase(&'static str),
    #[error("unknown secret in the link's fragment (expected #k= or #p=)")]
    BadFragment,
}

/// The room secret carried in a link's fragment (never sent to anyone).
#[derive(Clone, PartialEq, Eq)]
pub enum RoomSecret {
    /// 32 random bytes (`#k=`), what the app generates.
    Key([u8; 32]),
    /// A human passphrase (`#p=`), stretched with Argon2id.
    Passphrase(String),
}

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
        let mut k = [0u8; 32];
        rng.fill(&mut k);
        Self::Key(k)
    }
}

/// Characters escaped in a room name or passphrase: all but RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed invite link.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The room name (percent-decoded). Never sent to the relay when the link has a secret.
    pub room: String,
    /// SHA-256 of the relay's certificate (DER); `None` for a CA-signed relay.
    pub relay_fingerprint: Option<[u8; 32]>,
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
            .field("secret", &self.secret)
            .finish()
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn decode_component(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
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
        let room = decode_component(room_raw).ok_or(LinkError::BadRoom("not UTF-8"))?;
        validate_room(&room)?;

        let mut relay_fingerprint = None;
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
            }
            // Unknown parameters are ignored (forward compatibility).
        }

        let secret = match fragment {
            None => None,
            Some(f) => Some(parse_fragment(f)?),
        };
        Ok(Self {
            host,
            port,
            room,
            relay_fingerprint,
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

fn parse_fragment(f: &str) -> Result<RoomSecret, LinkError> {
    if let Some(k) = f.strip_prefix("k=") {
        if k.len() != 43 {
            return Err(LinkError::BadKey);
        }
        let bytes = URL_SAFE_NO_PAD.decode(k).map_err(|_| LinkError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| LinkError::BadKey)?;
        Ok(RoomSecret::Key(key))
    } else if let Some(p) = f.strip_prefix("p=") {
        let p = decode_component(p).ok_or(LinkError::BadPassphrase("not UTF-8"))?;
        if p.is_empty() {
            return Err(LinkError::BadPassphrase("empty"));
        }
        if p.len() > MAX_PASSPHRASE {
            return Err(LinkError::BadPassphrase("longer than 1024 bytes"));
        }
        Ok(RoomSecret::Passphrase(p))
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
        if let Some(fp) = &self.relay_fingerprint {
            write!(f, "?fp={}", hex::encode(fp))?;
        }
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

impl RoomKeys {
    /// With a secret: room key material (HKDF of `k`, or Argon2id of the passphrase), then
    /// room id = HKDF(LABEL_ROOM_ID, rkm, room name) and announce key =
    /// HKDF(LABEL_ANNOUNCE_KEY, rkm, room name). Without: room id =
    /// SHA-256(LABEL_OPEN_ROOM_ID || room name) and no announce key.
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
            RoomSecret::Passphrase(p) => room_key_material_from_passphrase(p, room_name),
        };
        Ok(Self {
            room_name: room_name.to_string(),
            room_id: kdf::hkdf::<32>(LABEL_ROOM_ID, &rkm, name).to_vec(),
            announce_key: Some(kdf::hkdf::<32>(LABEL_ANNOUNCE_KEY, &rkm, name)),
        })
    }

    /// The opaque room id (32 bytes) the client sends to the relay in its Hello.
    pub fn room_id(&self) -> &[u8] {
        &self.room_id
    }

    pub fn room_name(&self) -> &str {
        &self.room_name
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
        let l =
            InviteLink::parse("vcall://[::1]:9000/lobby#p=correct%20horse%20%F0%9F%90%8E").unwrap();
        assert_eq!(l.host, "::1");
        assert_eq!(l.authority(), "[::1]:9000");
        assert_eq!(
            l.secret,
            Some(RoomSecret::Passphrase("correct horse 🐎".into()))
        );
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
            ("vcall://h:1/r#", LinkError::BadFragment),
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
        }
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
        let p = RoomKeys::derive(
            "lobby",
            Some(&RoomSecret::Passphrase("correct horse".into())),
        )
        .unwrap();
        assert_eq!(hex::encode(p.room_id()), PASSPHRASE_ROOM_ID_KAT);
    }

    const ROOM_ID_KAT: &str = "694e07058f5ea0dbf0e617642f41f5b25e8f80233d9a218c349c18543d148f67";
    const OPEN_ROOM_ID_KAT: &str =
        "da0957f7ce0b0cdc0f1486351173067af53a7e3e4dc1cabfc8139bfc70867ddf";
    const PASSPHRASE_ROOM_ID_KAT: &str =
        "bd4af6b5b08fb914e97dcb97ba8eba5e248ecfb0b5407235983e4d3fcd9f2892";
}
