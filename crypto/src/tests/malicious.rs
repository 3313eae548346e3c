//! A malicious relay: injected, replayed, altered and redirected announcements, key messages
//! and media. Every attempt is rejected and no key is ever wrapped to the relay.

use super::*;
use crate::Rejection;
use crate::media::MediaKey;
use crate::session::HandshakeEventKind;
use vcall_proto::e2ee::{Announcement, AnnouncementEnvelope, EnvelopeMode, KeyMessage};

/// Alice, Bob and Casey in a secret room, fully keyed.
fn room_of_three() -> Net {
    let room = secret_room("secret room");
    let mut net = Net::new();
    for (i, name) in ["Alice", "Bob", "Casey"].into_iter().enumerate() {
        net.join(name, identity(i), room.clone());
        net.advance(500);
    }
    net.advance(1_000);
    net.assert_all_decrypt();
    net
}

/// The relay's fake member: it tells everyone a peer joined.
fn fake_peer(net: &mut Net) -> PeerId {
    let id = PeerId(net.next_peer);
    net.next_peer += 1;
    let now = net.now;
    for i in net.members().collect::<Vec<_>>() {
        net.clients[i].s.on_peer_joined(id, now);
        net.drain(i);
    }
    id
}

fn deliver(net: &mut Net, to: usize, from: PeerId, payload: &[u8]) -> Result<(), Rejection> {
    let now = net.now;
    let r = net.clients[to].s.on_signal(from, payload, now);
    net.drain(to);
    net.run();
    r
}

fn assert_nothing_wrapped_to(net: &Net, bad: &[PeerId]) {
    assert_nothing_wrapped_since(net, bad, 0);
}

/// No key message to any of `bad` among the signals sent from `since` on.
fn assert_nothing_wrapped_since(net: &Net, bad: &[PeerId], since: usize) {
    for (from, to) in net.key_messages_since(since) {
        assert!(!bad.contains(&to), "{from} wrapped a key to {to}");
    }
    for c in &net.clients {
        for b in bad {
            if let Some(info) = c.s.peer(*b) {
                assert!(
                    !info.verified && !info.key_sent && !info.key_received,
                    "{}: {info:?}",
                    c.name
                );
            }
        }
    }
}

fn clear_announcement(peer: PeerId, ts: u64, identity: &Identity) -> Vec<u8> {
    let mut p = Vec::new();
    AnnouncementEnvelope::put_header(EnvelopeMode::Clear, &mut p);
    Announcement {
        peer,
        timestamp_ms: ts,
        display_name: "Alice",
        rsa_public_key: identity.rsa_public_der(),
        ed25519_public_key: *identity.ed25519_public(),
    }
    .encode(&mut p);
    p
}

#[test]
fn injected_announcements_are_rejected_and_never_get_keys() {
    let mut net = room_of_three();
    let mallory = fake_peer(&mut net);
    let relay_identity = identity(5);
    // 1. Its own announcement in the clear.
    let clear = clear_announcement(mallory, net.now, &relay_identity);
    assert_eq!(
        deliver(&mut net, 0, mallory, &clear),
        Err(Rejection::Unauthenticated)
    );
    // 2. "Sealed" under a key of its own.
    let mut other = Net::session(
        "Mallory",
        relay_identity.clone(),
        secret_room_with_other_key(),
    );
    other.on_welcome(mallory, &[], net.now);
    let Some(Action::SendSignal {
        payload: sealed, ..
    }) = other.poll_action()
    else {
        panic!()
    };
    assert_eq!(
        deliver(&mut net, 1, mallory, &sealed),
        Err(Rejection::Unauthenticated)
    );
    // 3. A genuine sealed announcement with one bit flipped, at every position class.
    let genuine = last_announcement_of(&net, net.clients[0].id);
    let alice = net.clients[0].id;
    for pos in [1, 2, 10, 20, genuine.len() - 1] {
        let mut forged = genuine.clone();
        forged[pos] ^= 0x01;
        assert!(
            deliver(&mut net, 1, alice, &forged).is_err(),
            "bit at {pos}"
        );
    }
    // 4. Garbage and truncations.
    for n in 0..genuine.len().min(40) {
        assert!(deliver(&mut net, 2, mallory, &genuine[..n]).is_err());
    }
    net.advance(3_000);
    assert_nothing_wrapped_to(&net, &[mallory]);
    // The fake peer is listed, unverified, and does not change the security code.
    let info = net.clients[0].s.peer(mallory).unwrap();
    assert!(!info.verified && info.fingerprint.is_none());
    let code = net.clients[0].s.security_code();
    assert!(net.clients.iter().all(|c| c.s.security_code() == code));
    net.assert_all_decrypt();
}

fn secret_room_with_other_key() -> RoomKeys {
    RoomKeys::derive("secret room", Some(&RoomSecret::Key([8; 32]))).unwrap()
}

fn last_announcement_of(net: &Net, id: PeerId) -> Vec<u8> {
    net.sent
        .iter()
        .rev()
        .find(|(_, f, _, p)| *f == id && p[0] == vcall_proto::e2ee::TAG_ANNOUNCEMENT)
        .map(|(_, _, _, p)| p.clone())
        .unwrap()
}

#[test]
fn replayed_or_moved_announcements_are_rejected() {
    let mut net = room_of_three();
    let alice = net.clients[0].id;
    let old = last_announcement_of(&net, alice);
    // Replayed as is, to a peer that already has it.
    assert_eq!(deliver(&mut net, 1, alice, &old), Err(Rejection::Replayed));
    // Presented as coming from another (fake) peer id: the sealed peer id does not match.
    let mallory = fake_peer(&mut net);
    assert_eq!(
        deliver(&mut net, 1, mallory, &old),
        Err(Rejection::PeerIdMismatch)
    );
    // Alice leaves; the relay replays her announcement under her old id soon after.
    let idx = net.idx(alice).unwrap();
    net.leave(idx);
    net.advance(3_000);
    let since = net.sent.len();
    net.clients[1].s.on_peer_joined(alice, net.now);
    net.drain(1);
    assert_eq!(deliver(&mut net, 1, alice, &old), Err(Rejection::Replayed));
    // A newcomer (never saw it) gets it after the freshness window: stale.
    net.advance(61_000);
    let dave = net.join("Dave", identity(3), secret_room("secret room"));
    net.run();
    let now = net.now;
    net.clients[dave].s.on_peer_joined(alice, now);
    assert_eq!(deliver(&mut net, dave, alice, &old), Err(Rejection::Stale));
    net.advance(3_000);
    assert_nothing_wrapped_since(&net, &[mallory, alice], since);
    assert!(net.clients[dave].s.peer(alice).is_none_or(|i| !i.verified));
    net.assert_all_decrypt();
}

#[test]
fn key_messages_redirected_altered_or_replayed_are_rejected_before_rsa() {
    let mut net = room_of_three();
    let (alice, bob) = (net.clients[0].id, net.clients[1].id);
    let (_, _, _, km) = net
        .sent
        .iter()
        .find(|(_, f, t, p)| *f == alice && *t == bob && p[0] == vcall_proto::e2ee::TAG_KEY_MESSAGE)
        .cloned()
        .unwrap();
    // Redirected to Casey (who cannot decrypt it anyway): not for her.
    assert_eq!(deliver(&mut net, 2, alice, &km), Err(Rejection::NotForMe));
    // Re-labelled as coming from Casey.
    let casey = net.clients[2].id;
    assert_eq!(deliver(&mut net, 1, casey, &km), Err(Rejection::BadSender));
    // Altered: key id, wrapped bytes, room id: the signature fails.
    let parsed = KeyMessage::decode(&km).unwrap();
    let mut altered = parsed.clone();
    altered.key_id.generation += 1;
    let mut b = Vec::new();
    altered.encode(&mut b);
    assert_eq!(
        deliver(&mut net, 1, alice, &b),
        Err(Rejection::BadSignature)
    );
    let mut flipped = km.clone();
    flipped[100] ^= 0x80;
    assert_eq!(
        deliver(&mut net, 1, alice, &flipped),
        Err(Rejection::BadSignature)
    );
    let mut other_room = parsed.clone();
    let room = [9u8; 32];
    other_room.room_id = &room;
    let mut b = Vec::new();
    other_room.encode(&mut b);
    assert_eq!(deliver(&mut net, 1, alice, &b), Err(Rejection::WrongRoom));
    // Replayed as is: nothing to decrypt (a duplicate), no new key installed.
    let installed_before = net.clients[1].events.len();
    assert_eq!(deliver(&mut net, 1, alice, &km), Ok(()));
    assert!(
        !net.clients[1].events[installed_before..]
            .iter()
            .any(|e| matches!(
                e,
                Action::KeyInstalled { .. }
                    | Action::Log(HandshakeEvent {
                        kind: HandshakeEventKind::RecvKey,
                        ..
                    })
            ))
    );
    net.assert_all_decrypt();
}

#[test]
fn media_replayed_resent_relabelled_moved_or_flipped_is_rejected() {
    let mut net = room_of_three();
    let (alice, casey) = (net.clients[0].id, net.clients[2].id);
    let d = net.seal_datagram(0, DatagramKind::Feedback, b"opus frame");
    assert_eq!(net.open_datagram(1, &d), Ok(b"opus frame".to_vec()));
    // Replay.
    assert_eq!(
        net.open_datagram(1, &d),
        Err(OpenError::Replayed {
            counter: d_counter(&d)
        })
    );
    // Sender swapped (Casey is a keyed member too).
    let mut swapped = d.clone();
    datagram::stamp_sender(&mut swapped, casey).unwrap();
    assert!(matches!(
        net.open_datagram(1, &swapped),
        Err(OpenError::Forged | OpenError::UnknownKey { .. })
    ));
    // Re-labelled kind.
    let mut relabelled = d.clone();
    relabelled[1] = DatagramKind::Heartbeat as u8;
    assert_eq!(net.open_datagram(2, &relabelled), Err(OpenError::Forged));
    // Redirected: addressed to Bob, delivered to Casey; or the target stripped.
    let mut addressed = Vec::new();
    DatagramHeader::new(DatagramKind::Feedback, Some(net.clients[1].id)).append(&mut addressed);
    let bob = net.clients[1].id;
    net.clients[0]
        .s
        .seal(DatagramKind::Feedback, Some(bob), b"nack", &mut addressed)
        .unwrap();
    datagram::stamp_sender(&mut addressed, alice).unwrap();
    assert_eq!(net.open_datagram(2, &addressed), Err(OpenError::NotForMe));
    let mut stripped = Vec::new();
    DatagramHeader {
        kind: DatagramKind::Feedback,
        sender: alice,
        target: None,
        layer: 0,
    }
    .append(&mut stripped);
    stripped.extend_from_slice(&addressed[DatagramHeader::MAX_LEN..]);
    assert_eq!(net.open_datagram(2, &stripped), Err(OpenError::Forged));
    assert_eq!(net.open_datagram(1, &addressed), Ok(b"nack".to_vec()));
    // Every single bit flip of the body is caught.
    let d = net.seal_datagram(0, DatagramKind::Heartbeat, b"hb state");
    for bit in 0..(d.len() - DatagramHeader::MIN_LEN) * 8 {
        let mut f = d.clone();
        f[DatagramHeader::MIN_LEN + bit / 8] ^= 1 << (bit % 8);
        assert!(net.open_datagram(1, &f).is_err(), "bit {bit}");
    }
    assert_eq!(net.open_datagram(1, &d), Ok(b"hb state".to_vec()));
    // Moved to another room: a member there (another room id) cannot open it, and the same key
    // under another room id fails authentication.
    let mut elsewhere = Net::new();
    let room2 = secret_room("another room");
    elsewhere.next_peer = 50;
    let x = elsewhere.join("Xavier", identity(3), room2.clone());
    let now = elsewhere.now;
    elsewhere.clients[x].s.on_peer_joined(alice, now);
    assert!(matches!(
        elsewhere.open_datagram(x, &d),
        Err(OpenError::UnknownKey { .. })
    ));
    let k = MediaKey::derive(
        KeyId::default(),
        &crate::SenderSecret::from_bytes([1; 32]),
        b"room A",
    );
    let mut buf = vec![0; 10];
    buf.extend_from_slice(b"x");
    k.seal_in_place(0, alice, DatagramKind::Audio, None, b"room A", &mut buf, 0)
        .unwrap();
    let h = vcall_proto::e2ee::SealedHeader::decode(&buf).unwrap();
    assert_eq!(
        k.open_in_place(
            &h,
            alice,
            DatagramKind::Audio,
            None,
            b"room B",
            &mut buf.clone()
        )
        .err(),
        Some(OpenError::Forged)
    );
    net.assert_all_decrypt();
}

fn d_counter(d: &[u8]) -> u64 {
    vcall_proto::e2ee::SealedHeader::decode(&d[DatagramHeader::MIN_LEN..])
        .unwrap()
        .counter
}

use crate::KeyId;
use crate::session::HandshakeEvent;

/// Finding 3 of the second security review: every member holds Bob's sender key, so before
/// signatures Casey (a member, with the relay's help for the sender stamp) could seal frames
/// as Bob, and push Bob's counter far ahead so his real packets failed as replays. Now every
/// body must carry Bob's own Ed25519 signature (audio through batches) before it is played or
/// its counter recorded.
#[test]
fn a_member_cannot_forge_another_members_media_or_push_its_counter() {
    use crate::sender_auth::{AudioBatcher, BATCH_EVERY, TRAILER_NONE, append_trailer};
    use vcall_proto::e2ee::SealedHeader;

    let mut net = room_of_three();
    let (alice, bob, casey) = (0, 1, 2);
    let bob_id = net.clients[bob].id;
    let (key, _) = net.clients[bob].s.own_key_check();
    let room_id = net.clients[casey].s.room().room_id().to_vec();
    let secret = net.clients[casey]
        .s
        .held_secret(bob_id, key)
        .expect("Casey holds Bob's key, as every member does");
    let media = MediaKey::derive(key, secret, &room_id);
    let casey_identity = identity(2);
    // Casey seals `app` as Bob under `counter`, signed by `signer` (Casey's own key), or with
    // `raw` as the whole trailer.
    let mut batch = AudioBatcher::default();
    let mut forge = |kind: DatagramKind, counter: u64, app: &[u8], raw: Option<&[u8]>| {
        let mut buf = vec![0u8; SealedHeader::LEN];
        buf.extend_from_slice(app);
        media
            .seal_in_place_with(
                counter,
                bob_id,
                kind,
                None,
                &room_id,
                &mut buf,
                0,
                |aad, b| match raw {
                    Some(t) => b.extend_from_slice(t),
                    None => {
                        append_trailer(kind, aad, SealedHeader::LEN, b, &casey_identity, &mut batch)
                    }
                },
            )
            .unwrap();
        buf
    };
    let open_at_alice = |net: &mut Net, kind: DatagramKind, mut body: Vec<u8>| {
        let now = net.now;
        let r = net.clients[alice]
            .s
            .open(bob_id, kind, None, &mut body, now)
            .map(|p| p.to_vec());
        net.drain(alice);
        r
    };
    let far = 1u64 << 40;
    // Video and heartbeats signed by Casey, unsigned, or with a zero signature.
    for kind in [
        DatagramKind::Video,
        DatagramKind::Heartbeat,
        DatagramKind::Feedback,
    ] {
        let signed_by_casey = forge(kind, far, b"forged by Casey", None);
        assert_eq!(
            open_at_alice(&mut net, kind, signed_by_casey),
            Err(OpenError::BadSignature),
            "{kind:?} signed by Casey"
        );
        let mut zero = vec![0u8; 64];
        zero.push(crate::sender_auth::TRAILER_SIGNATURE);
        assert_eq!(
            open_at_alice(&mut net, kind, forge(kind, far + 1, b"x", Some(&zero))),
            Err(OpenError::BadSignature),
            "{kind:?} with a zero signature"
        );
        assert_eq!(
            open_at_alice(
                &mut net,
                kind,
                forge(kind, far + 2, b"x", Some(&[TRAILER_NONE]))
            ),
            Err(OpenError::Malformed),
            "{kind:?} without a signature"
        );
    }
    // Bob's genuine frame, re-sealed by Casey under a far counter with Bob's own trailer:
    // Bob's signature covers the counter, so it does not vouch for the copy.
    let genuine = net.seal_datagram(bob, DatagramKind::Heartbeat, b"bob's heartbeat");
    let (_, off) = DatagramHeader::decode(&genuine).unwrap();
    let mut body = genuine[off..].to_vec();
    let header = SealedHeader::decode(&body).unwrap();
    let plain_with_trailer = media
        .open_in_place(
            &header,
            bob_id,
            DatagramKind::Heartbeat,
            None,
            &room_id,
            &mut body,
        )
        .unwrap()
        .to_vec();
    let (app, trailer) = plain_with_trailer.split_at(b"bob's heartbeat".len());
    let copied = forge(DatagramKind::Heartbeat, far + 3, app, Some(trailer));
    assert_eq!(
        open_at_alice(&mut net, DatagramKind::Heartbeat, copied),
        Err(OpenError::BadSignature)
    );
    // Nothing pushed Bob's counter: his genuine packets still open at Alice.
    assert_eq!(
        net.open_datagram(alice, &genuine),
        Ok(b"bob's heartbeat".to_vec())
    );
    net.assert_all_decrypt();

    // Audio: Casey's packets wait for a batch that never vouches for them; her own batch
    // signature fails; Bob's genuine audio is released by Bob's batches, and only his.
    let before = net.clients[alice].s.attribution_stats();
    for i in 0..6u64 {
        let body = forge(
            DatagramKind::Audio,
            far + 10 + i,
            b"casey audio",
            Some(&[TRAILER_NONE]),
        );
        assert_eq!(
            open_at_alice(&mut net, DatagramKind::Audio, body),
            Err(OpenError::AwaitingSignature)
        );
    }
    let mut casey_batch = Err(OpenError::Malformed);
    for i in 0..BATCH_EVERY as u64 {
        casey_batch = open_at_alice(
            &mut net,
            DatagramKind::Audio,
            forge(DatagramKind::Audio, far + 20 + i, b"casey audio", None),
        );
    }
    assert_eq!(
        casey_batch,
        Err(OpenError::BadSignature),
        "Casey's own batch"
    );
    let mut played = Vec::new();
    let bobs = 3 * BATCH_EVERY as u8;
    for i in 0..bobs {
        let d = net.seal_datagram(bob, DatagramKind::Audio, &[b'b', i]);
        match net.open_datagram(alice, &d) {
            Ok(p) => played.push(p),
            Err(e) => assert_eq!(e, OpenError::AwaitingSignature),
        }
        let now = net.now;
        while let Some(a) = net.clients[alice].s.take_attributed(now) {
            assert_eq!(a.sender, bob_id);
            played.push(a.plaintext.clone());
            net.clients[alice].s.recycle(a);
        }
    }
    played.sort();
    assert_eq!(played, (0..bobs).map(|i| vec![b'b', i]).collect::<Vec<_>>());
    // Casey's waiting packets expire unplayed.
    net.advance(1_000);
    let after = net.clients[alice].s.attribution_stats();
    assert!(
        after.audio_unattributed >= before.audio_unattributed + 6 + BATCH_EVERY as u64 - 1,
        "{after:?}"
    );
    assert_eq!(
        after.audio_released - before.audio_released,
        3 * (BATCH_EVERY as u64 - 1),
        "Bob's packets before each batch packet"
    );
    net.assert_all_decrypt();
}
