//! The session's signal payloads, built and read: our announcement (sealed under the room's
//! announce key when the link has a secret), key messages and key acks. Pure codecs plus the
//! cryptography each message needs; no session state except our own announcement clock.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use vcall_proto::PeerId;
use vcall_proto::e2ee::{
    Announcement, AnnouncementEnvelope, EnvelopeMode, KeyAck, KeyId, KeyMessage, NONCE_LEN,
};

use super::Rejection;
use crate::identity::{Identity, PeerKeys};
use crate::link::RoomKeys;
use crate::media::SenderSecret;
use crate::random::RandomSource;

/// Builds our announcements with strictly increasing timestamps, so receivers never take a
/// re-announcement for a replay.
#[derive(Debug, Default)]
pub(crate) struct OwnAnnouncement {
    last_timestamp_ms: u64,
}

impl OwnAnnouncement {
    /// Our announcement as `me` at `now_ms`: sealed with a random nonce under the announce key
    /// when the room has one, in the clear otherwise.
    pub(crate) fn build(
        &mut self,
        me: PeerId,
        display_name: &str,
        identity: &Identity,
        room: &RoomKeys,
        rng: &mut dyn RandomSource,
        now_ms: u64,
    ) -> Vec<u8> {
        let ts = now_ms.max(self.last_timestamp_ms.saturating_add(1));
        self.last_timestamp_ms = ts;
        let mut plain = Vec::with_capacity(400);
        Announcement {
            peer: me,
            timestamp_ms: ts,
            display_name,
            rsa_public_key: identity.rsa_public_der(),
            ed25519_public_key: *identity.ed25519_public(),
        }
        .encode(&mut plain);
        match room.announce_key() {
            None => {
                let mut p = Vec::with_capacity(2 + plain.len());
                AnnouncementEnvelope::put_header(EnvelopeMode::Clear, &mut p);
                p.extend_from_slice(&plain);
                p
            }
            Some(k) => {
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill(&mut nonce);
                let mode = EnvelopeMode::Sealed { nonce };
                let aad = AnnouncementEnvelope::aad(mode, room.room_id());
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key"));
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut plain,
                )
                .expect("announcement fits AES-GCM limits");
                let mut p = Vec::with_capacity(14 + plain.len());
                AnnouncementEnvelope::put_header(mode, &mut p);
                p.extend_from_slice(&plain);
                p
            }
        }
    }
}

/// A well-formed, fresh announcement from the relay-stamped sender, not yet judged against
/// what we know of that peer (replay, identity change: see the roster).
#[derive(Debug)]
pub(crate) struct ReadAnnouncement {
    pub(crate) display_name: String,
    pub(crate) keys: PeerKeys,
    pub(crate) timestamp_ms: u64,
    /// It authenticated under the room's announce key (never in a room without secret).
    pub(crate) authenticated: bool,
}

/// Opens (if sealed), decodes and checks an announcement `from` a peer: it authenticates when
/// sealed, names `from`, is within `freshness_ms` of `now_ms` and carries valid keys.
pub(crate) fn read_announcement(
    room: &RoomKeys,
    env: AnnouncementEnvelope<'_>,
    from: PeerId,
    now_ms: u64,
    freshness_ms: u64,
) -> Result<ReadAnnouncement, Rejection> {
    let mut opened;
    let (plain, authenticated): (&[u8], bool) = match (env.mode, room.announce_key()) {
        (EnvelopeMode::Clear, _) => (env.body, false),
        (EnvelopeMode::Sealed { nonce }, Some(k)) => {
            let aad = AnnouncementEnvelope::aad(env.mode, room.room_id());
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key"));
            opened = env.body.to_vec();
            match key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut opened,
            ) {
                Ok(pt) => (&*pt, true),
                Err(_) => return Err(Rejection::Unauthenticated),
            }
        }
        (EnvelopeMode::Sealed { .. }, None) => return Err(Rejection::Unauthenticated),
    };
    let a = Announcement::decode(plain).map_err(|_| Rejection::Malformed)?;
    if a.peer != from {
        return Err(Rejection::PeerIdMismatch);
    }
    if now_ms.abs_diff(a.timestamp_ms) > freshness_ms {
        return Err(Rejection::Stale);
    }
    let keys =
        PeerKeys::parse(a.rsa_public_key, &a.ed25519_public_key).map_err(|_| Rejection::BadKeys)?;
    Ok(ReadAnnouncement {
        display_name: a.display_name.to_string(),
        keys,
        timestamp_ms: a.timestamp_ms,
        authenticated,
    })
}

/// A key message or ack must come from its relay-stamped sender, be addressed to us and be for
/// this room.
pub(crate) fn check_addressing(
    sender: PeerId,
    recipient: PeerId,
    room_id: &[u8],
    from: PeerId,
    me: PeerId,
    room: &RoomKeys,
) -> Result<(), Rejection> {
    if sender != from {
        return Err(Rejection::BadSender);
    }
    if recipient != me {
        return Err(Rejection::NotForMe);
    }
    if room_id != room.room_id() {
        return Err(Rejection::WrongRoom);
    }
    Ok(())
}

/// Our sender secret `id` wrapped to `to`'s RSA key and signed: a key message.
#[allow(clippy::too_many_arguments)]
pub(crate) fn key_message(
    me: PeerId,
    to: PeerId,
    to_keys: &PeerKeys,
    id: KeyId,
    secret: &SenderSecret,
    identity: &Identity,
    room: &RoomKeys,
    rng: &mut dyn RandomSource,
) -> Vec<u8> {
    let wrapped = to_keys.wrap_secret(secret.as_bytes(), rng);
    let mut msg = KeyMessage {
        sender: me,
        recipient: to,
        room_id: room.room_id(),
        key_id: id,
        wrapped: &wrapped,
        signature: [0; 64],
    };
    msg.signature = identity.sign(&msg.signed_bytes());
    let mut payload = Vec::with_capacity(400);
    msg.encode(&mut payload);
    payload
}

/// A signed ack telling `to` we hold its key `key_id`.
pub(crate) fn key_ack(
    me: PeerId,
    to: PeerId,
    key_id: KeyId,
    identity: &Identity,
    room: &RoomKeys,
) -> Vec<u8> {
    let mut ack = KeyAck {
        sender: me,
        recipient: to,
        room_id: room.room_id(),
        key_id,
        signature: [0; 64],
    };
    ack.signature = identity.sign(&ack.signed_bytes());
    let mut payload = Vec::with_capacity(120);
    ack.encode(&mut payload);
    payload
}

#[cfg(test)]
mod tests {
    use vcall_proto::e2ee::{MAX_DISPLAY_NAME, TAG_LEN};

    use super::*;
    use crate::random::SeededRandom;
    use crate::tests::{T0, identity, secret_room};

    #[test]
    fn announcements_have_one_size_whatever_the_name_sealed_or_clear() {
        let id = identity(0);
        let me = PeerId(5);
        let short = "A";
        let long = "L".repeat(MAX_DISPLAY_NAME);
        let plain = Announcement::encoded_len(id.rsa_public_der().len());
        assert_eq!(id.rsa_public_der().len(), 270, "RSA-2048 PKCS#1 DER");
        for (room, envelope) in [
            (secret_room("padding"), 2 + NONCE_LEN + TAG_LEN),
            (RoomKeys::derive("padding", None).unwrap(), 2),
        ] {
            let mut own = OwnAnnouncement::default();
            let mut rng = SeededRandom::new(b"padding");
            let mut build = |name: &str| {
                let p = own.build(me, name, &id, &room, &mut rng, T0);
                let env = AnnouncementEnvelope::decode(&p).unwrap();
                let read = read_announcement(&room, env, me, T0, 60_000).unwrap();
                assert_eq!(
                    read.display_name, name,
                    "the padding is not part of the name"
                );
                assert_eq!(read.authenticated, room.has_secret());
                p.len()
            };
            let (a, b) = (build(short), build(&long));
            assert_eq!(a, b, "secret room: {}", room.has_secret());
            assert_eq!(a, envelope + plain);
        }
        assert_eq!(plain, 383);
    }
}
