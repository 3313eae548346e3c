//! Making invite links for new calls: a random room name and a fresh random room secret.

use vcall_crypto::{InviteLink, OsRandom, RandomSource, RoomSecret, check_access_token};

/// A link to a new room on the relay at `host:port`, pinned to `relay_fingerprint_hex` (the
/// relay's certificate SHA-256 for self-signed relays: 64 hex digits, colons and surrounding
/// spaces allowed; empty means none), with a fresh random room secret.
pub fn fresh_invite_link(
    host: &str,
    port: u16,
    relay_fingerprint_hex: Option<&str>,
    room: &str,
) -> Result<String, String> {
    fresh_invite_link_with_token(host, port, relay_fingerprint_hex, None, room)
}

/// Like [`fresh_invite_link`], for a relay in token mode: the link also carries the relay
/// access token (`t=`; surrounding spaces are trimmed, empty means none), so whoever is invited
/// can join too.
pub fn fresh_invite_link_with_token(
    host: &str,
    port: u16,
    relay_fingerprint_hex: Option<&str>,
    access_token: Option<&str>,
    room: &str,
) -> Result<String, String> {
    let access_token = match access_token.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => {
            check_access_token(token).map_err(|e| e.to_string())?;
            Some(token.to_owned())
        }
    };
    let relay_fingerprint = match relay_fingerprint_hex
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        None => None,
        Some(hex_fp) => {
            let digits: String = hex_fp.chars().filter(|c| *c != ':').collect();
            let bytes = hex::decode(digits).map_err(|_| "the relay fingerprint is not hex")?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| "the relay fingerprint is not 32 bytes")?,
            )
        }
    };
    let link = InviteLink {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        room: room.to_owned(),
        relay_fingerprint,
        access_token,
        secret: Some(RoomSecret::generate(&mut OsRandom::new())),
    };
    let text = link.to_string();
    // Round-trip through the parser so we never hand out a link we cannot join.
    InviteLink::parse(&text).map_err(|e| format!("generated an invalid link: {e}"))?;
    Ok(text)
}

/// A random, readable room name such as `room-7f3a9c01d2e4`.
pub fn random_room_name() -> String {
    let mut b = [0u8; 6];
    OsRandom::new().fill(&mut b);
    format!("room-{}", hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_links_parse_and_carry_a_distinct_secret() {
        let fp = "ab".repeat(32);
        let a = fresh_invite_link("127.0.0.1", 4433, Some(&fp), "standup").unwrap();
        let b = fresh_invite_link("127.0.0.1", 4433, Some(&fp), "standup").unwrap();
        assert_ne!(a, b, "each call gets its own secret");
        let parsed = InviteLink::parse(&a).unwrap();
        assert_eq!(parsed.room, "standup");
        assert_eq!(parsed.port, 4433);
        assert_eq!(parsed.relay_fingerprint, Some([0xab; 32]));
        assert!(matches!(parsed.secret, Some(RoomSecret::Key(_))));
        assert!(fresh_invite_link("h", 1, Some("zz"), "r").is_err());
        let with_colons = fp
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let c = fresh_invite_link("h", 1, Some(&format!(" {with_colons} ")), "r").unwrap();
        assert_eq!(
            InviteLink::parse(&c).unwrap().relay_fingerprint,
            Some([0xab; 32])
        );
        let none = fresh_invite_link("h", 1, Some("  "), "r").unwrap();
        assert_eq!(InviteLink::parse(&none).unwrap().relay_fingerprint, None);
        assert!(random_room_name().starts_with("room-"));
        let token = "v4.public.abc_-";
        let t = fresh_invite_link_with_token("h", 1, None, Some(&format!(" {token} ")), "r");
        let parsed = InviteLink::parse(&t.unwrap()).unwrap();
        assert_eq!(parsed.access_token.as_deref(), Some(token));
        assert!(matches!(parsed.secret, Some(RoomSecret::Key(_))));
        let blank = fresh_invite_link_with_token("h", 1, None, Some(" "), "r").unwrap();
        assert_eq!(InviteLink::parse(&blank).unwrap().access_token, None);
        let bad = fresh_invite_link_with_token("h", 1, None, Some("a b"), "r");
        assert!(bad.unwrap_err().contains("access token"));
        assert_ne!(random_room_name(), random_room_name());
    }
}
