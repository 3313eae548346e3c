//! Membership attacks (issue 12, findings 1, 4, 5, 9): a relay that hides a member, withholds
//! a leave, floods fake ids, or cycles a member in and out; and media sealed while alone.
//! Each test demonstrates the attack: it failed on the session before the fix.

use super::*;
use crate::{Fatal, HandshakeEvent, HandshakeEventKind, KeyId, Rejection, SecurityCode};
use vcall_proto::e2ee::{Announcement, AnnouncementEnvelope, EnvelopeMode, KeyMessage};

fn keyed(names: &[&'static str], room: &RoomKeys) -> Net {
    let mut net = Net::new();
    for (i, name) in names.iter().enumerate() {
        net.join(name, identity(i), room.clone());
        net.advance(500);
    }
    net.advance(1_000);
    net.assert_all_decrypt();
    net
}

fn deliver(net: &mut Net, to: usize, from: PeerId, payload: &[u8]) -> Result<(), Rejection> {
    let now = net.now;
    let r = net.clients[to].s.on_signal(from, payload, now);
    net.drain(to);
    r
}

fn code_of(net: &Net, members: &[usize]) -> SecurityCode {
    let fps: Vec<_> = members
        .iter()
        .map(|i| net.clients[*i].s.my_fingerprint())
        .collect();
    SecurityCode::of(&fps)
}

fn epoch(net: &Net, i: usize) -> u16 {
    net.clients[i].s.sender_key_id().epoch
}

/// A fresh announcement of `identity` as `peer` at the net's time (what a member holding the
/// link, or its own client, sends).
fn fresh_announcement(net: &Net, name: &str, identity: Arc<Identity>, peer: PeerId) -> Vec<u8> {
    let room = net.clients[0].s.room().clone();
    let mut s = Net::session(name, identity, room);
    s.on_welcome(peer, &[], net.now);
    match s.poll_action() {
        Some(Action::SendSignal { payload, .. }) => payload,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_the_relay_never_announced_gets_no_keys_and_is_not_in_the_code() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob", "Casey"], &room);
    let since = net.sent.len();
    // Eve holds the link; the relay forwards her signals but never sends PeerJoined(Eve).
    let eve = net.join_hidden("Eve", identity(3), room.clone());
    let eve_id = net.clients[eve].id;
    net.advance(5_000);
    for (from, to) in net.key_messages_since(since) {
        assert_ne!(to, eve_id, "{from} wrapped a key to the hidden member");
    }
    let code = code_of(&net, &[0, 1, 2]);
    for m in 0..3 {
        let c = &net.clients[m];
        assert!(c.s.peer(eve_id).is_none(), "{}: {:?}", c.name, c.s.peers());
        assert!(c.s.peers().iter().all(|p| p.peer != eve_id));
        assert_eq!(c.s.security_code(), code, "{}", c.name);
        assert_eq!(c.s.member_count(), 3);
        assert!(
            c.s.signals_from_strangers() >= 1,
            "Eve's announcement dropped, counted"
        );
        assert!(c.events.iter().any(|e| matches!(e,
            Action::Rejected { peer, reason: Rejection::NotInRoster } if *peer == eve_id)));
    }
    for m in 0..3 {
        let d = net.seal_datagram(m, DatagramKind::Feedback, b"not for eve");
        assert!(net.open_datagram(eve, &d).is_err());
    }
    net.assert_decrypt_among(&[0, 1, 2]);
}

#[test]
fn a_member_that_went_away_without_a_leave_is_rekeyed_out_after_ten_silent_seconds() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob", "Casey"], &room);
    let (bob, casey) = (1, 2);
    let bob_id = net.clients[bob].id;
    let before = [epoch(&net, 0), epoch(&net, casey)];
    // Bob's last heartbeat, which the relay keeps to replay.
    let kept = net.seal_datagram(bob, DatagramKind::Heartbeat, b"last");
    assert!(net.open_datagram(0, &kept).is_ok());
    // Bob goes away. The relay never sends PeerLeft(Bob) and keeps delivering to him.
    net.clients[bob].sends = false;
    net.advance(9_000);
    assert!(matches!(
        net.open_datagram(0, &kept),
        Err(OpenError::Replayed { .. })
    ));
    net.advance(3_000);
    for (i, m) in [0, casey].into_iter().enumerate() {
        assert!(
            epoch(&net, m) > before[i],
            "{} rekeyed",
            net.clients[m].name
        );
    }
    for m in [0, casey] {
        let d = net.seal_datagram(m, DatagramKind::Feedback, b"after bob went away");
        assert!(
            matches!(
                net.open_datagram(bob, &d),
                Err(OpenError::UnknownKey { .. })
            ),
            "Bob opened {}'s media",
            net.clients[m].name
        );
    }
    net.assert_decrypt_among(&[0, casey]);
    for m in [0, casey] {
        let c = &net.clients[m];
        assert!(c.events.contains(&Action::PeerSilent { peer: bob_id }));
        let info =
            c.s.peer(bob_id)
                .expect("still listed: the relay never said he left");
        assert!(info.silent && !info.member && !info.key_sent, "{info:?}");
        assert_eq!(c.s.member_count(), 2);
        assert_eq!(c.s.security_code(), code_of(&net, &[0, casey]));
    }
    // Bob comes back (his datagrams authenticate again): he is a member again and gets keys.
    net.clients[bob].sends = true;
    net.advance(12_000);
    net.assert_all_decrypt();
    for m in 0..3 {
        assert_eq!(
            net.clients[m].s.security_code(),
            code_of(&net, &[0, bob, casey])
        );
        assert_eq!(net.clients[m].s.member_count(), 3);
    }
    let info = net.clients[0].s.peer(bob_id).unwrap();
    assert!(info.member && !info.silent && info.key_sent, "{info:?}");
}

#[test]
fn liveness_is_kept_by_heartbeats_alone_and_a_relay_cannot_fake_it() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob"], &room);
    let bob_id = net.clients[1].id;
    // An hour of heartbeats: nobody goes silent, nothing rekeys but the 10-minute rotation.
    net.advance(3_600_000);
    assert!(net.clients.iter().all(|c| {
        !c.events
            .iter()
            .any(|e| matches!(e, Action::PeerSilent { .. }))
    }));
    net.assert_all_decrypt();
    // Bob stops; the relay replays every heartbeat of his it saw, signals included: nothing
    // of it authenticates anew, so he goes silent on time.
    let replay: Vec<Vec<u8>> = (0..5)
        .map(|i| net.seal_datagram(1, DatagramKind::Heartbeat, format!("hb {i}").as_bytes()))
        .collect();
    for d in &replay {
        assert!(net.open_datagram(0, d).is_ok());
    }
    let bob_signals: Vec<Vec<u8>> = net
        .sent
        .iter()
        .filter(|(_, f, _, _)| *f == bob_id)
        .map(|(_, _, _, p)| p.clone())
        .collect();
    net.clients[1].sends = false;
    let gone_at = net.now + SessionConfig::default().liveness_timeout_ms;
    while net.now < gone_at - 1_000 {
        net.advance(1_000);
        for d in &replay {
            let _ = net.open_datagram(0, d);
        }
        for p in &bob_signals {
            let _ = deliver(&mut net, 0, bob_id, p);
        }
        assert!(!net.clients[0].s.peer(bob_id).unwrap().silent);
    }
    net.advance(1_000);
    assert!(net.clients[0].s.peer(bob_id).unwrap().silent);
}

#[test]
fn a_newcomer_cannot_open_what_was_sealed_while_the_sender_was_alone() {
    let room = secret_room("membership");
    let mut net = Net::new();
    let alice = net.join("Alice", identity(0), room.clone());
    net.advance(3_000);
    let alone: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            net.seal_datagram(
                alice,
                DatagramKind::Feedback,
                format!("alone {i}").as_bytes(),
            )
        })
        .collect();
    let bob = net.join("Bob", identity(1), room.clone());
    net.advance(2_000);
    net.assert_all_decrypt();
    for d in &alone {
        assert!(
            matches!(net.open_datagram(bob, d), Err(OpenError::UnknownKey { .. })),
            "Bob opened media Alice sealed before he joined"
        );
    }
    // Also while only an unverified spy was there (its key never given).
    let mut net = Net::new();
    let alice = net.join("Alice", identity(0), room.clone());
    let wrong = RoomKeys::derive("membership", Some(&RoomSecret::Key([8; 32]))).unwrap();
    net.join("Spy", identity(3), wrong.with_room_id(room.room_id()));
    net.advance(3_000);
    let before_bob = net.seal_datagram(alice, DatagramKind::Feedback, b"spy only");
    let bob = net.join("Bob", identity(1), room);
    net.advance(2_000);
    assert!(matches!(
        net.open_datagram(bob, &before_bob),
        Err(OpenError::UnknownKey { .. })
    ));
}

#[test]
fn a_newcomer_after_the_last_generation_gets_a_fresh_epoch_and_never_the_used_key() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob"], &room);
    net.clients[0].s.exhaust_generations();
    let last = net.clients[0].s.sender_key_id();
    assert_eq!(last.generation, u16::MAX);
    let before = net.seal_datagram(0, DatagramKind::Feedback, b"before casey");
    let casey = net.join("Casey", identity(2), room);
    net.advance(3_000);
    let alice_id = net.clients[0].id;
    assert!(net.clients[0].s.sender_key_id().epoch > last.epoch);
    assert!(net.clients[casey].s.key_check(alice_id, last).is_none());
    assert!(net.open_datagram(casey, &before).is_err());
    net.assert_all_decrypt();
}

fn clear_announcement(peer: PeerId, ts: u64, identity: &Identity) -> Vec<u8> {
    let mut p = Vec::new();
    AnnouncementEnvelope::put_header(EnvelopeMode::Clear, &mut p);
    Announcement {
        peer,
        timestamp_ms: ts,
        display_name: "fake",
        rsa_public_key: identity.rsa_public_der(),
        ed25519_public_key: *identity.ed25519_public(),
    }
    .encode(&mut p);
    p
}

/// RSA decryptions a client performed: keys installed from key messages plus failed unwraps.
fn unwraps(c: &Client) -> usize {
    c.events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Action::Log(HandshakeEvent {
                    kind: HandshakeEventKind::RecvKey,
                    ..
                }) | Action::Rejected {
                    reason: Rejection::UnwrapFailed,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn key_messages_from_a_thousand_fake_ids_cost_at_most_the_global_unwrap_budget() {
    // A room without a secret: the relay's fake peers are accepted (unverified) members.
    let room = RoomKeys::derive("open membership", None).unwrap();
    let mut net = Net::new();
    let alice = net.join("Alice", identity(0), room.clone());
    net.run();
    let alice_id = net.clients[alice].id;
    let alice_keys = identity(0).public_keys();
    let relay = identity(5);
    let mut rng = SeededRandom::new(b"fake ids");
    let before = unwraps(&net.clients[alice]);
    for i in 0..1000u32 {
        let fake = PeerId(1_000 + i);
        let now = net.now;
        net.clients[alice].s.on_peer_joined(fake, now);
        let ann = clear_announcement(fake, now + u64::from(i), &relay);
        let _ = deliver(&mut net, alice, fake, &ann);
        let wrapped = alice_keys.wrap_secret(&[i as u8; 32], &mut rng);
        let mut km = KeyMessage {
            sender: fake,
            recipient: alice_id,
            room_id: room.room_id(),
            key_id: KeyId::new(0, 0),
            wrapped: &wrapped,
            signature: [0; 64],
        };
        km.signature = relay.sign(&km.signed_bytes());
        let mut payload = Vec::new();
        km.encode(&mut payload);
        let _ = deliver(&mut net, alice, fake, &payload);
    }
    let spent = unwraps(&net.clients[alice]) - before;
    let budget = SessionConfig::default().max_unwraps_global_per_10s as usize;
    assert!(spent <= budget, "{spent} RSA decryptions for fake ids");
    // Entries only for listed ids, and at most `max_peers` of them; the rest are strangers.
    let s = &net.clients[alice].s;
    assert_eq!(s.peers().len(), SessionConfig::default().max_peers);
    assert_eq!(s.signals_from_strangers(), 2 * (1000 - 256));
}

#[test]
fn epoch_exhaustion_ends_the_session_with_a_clear_error() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob", "Casey"], &room);
    net.clients[0].s.set_next_epoch(u16::MAX - 1);
    net.leave(2);
    net.advance(3_000);
    assert_eq!(epoch(&net, 0), u16::MAX - 1, "the last epoch is used");
    // Bob leaves too: no epoch left to rekey with. Alice must not go on under a key Bob holds.
    net.leave(1);
    net.advance(3_000);
    let mut out = Vec::new();
    assert!(
        net.clients[0]
            .s
            .seal(DatagramKind::Audio, None, b"x", &mut out)
            .is_err(),
        "Alice still seals under {:?}, which Bob holds",
        net.clients[0].s.sender_key_id()
    );
    assert_eq!(net.clients[0].s.fatal(), Some(Fatal::EpochsExhausted));
    let fatal: Vec<&Action> = net.clients[0]
        .events
        .iter()
        .filter(|e| matches!(e, Action::Fatal(_)))
        .collect();
    assert_eq!(fatal, [&Action::Fatal(Fatal::EpochsExhausted)], "once");
    assert!(Fatal::EpochsExhausted.to_string().contains("rejoin"));
    // Nor does anyone get a key from it any more.
    let since = net.sent.len();
    let dave = net.join("Dave", identity(3), room);
    net.advance(3_000);
    let alice_id = net.clients[0].id;
    assert!(
        net.key_messages_since(since)
            .iter()
            .all(|(from, _)| *from != alice_id)
    );
    assert!(!net.clients[dave].s.peer(alice_id).unwrap().key_received);
}

#[test]
fn cycling_a_member_out_and_in_is_rate_limited_and_cannot_burn_epochs() {
    let room = secret_room("membership");
    let mut net = keyed(&["Alice", "Bob"], &room);
    let bob_id = net.clients[1].id;
    let before = epoch(&net, 0);
    // The relay (with Bob, a member) cycles Bob out and in twenty times in two seconds.
    for _ in 0..20 {
        let now = net.now;
        net.clients[0].s.on_peer_left(bob_id, now);
        net.clients[0].s.on_peer_joined(bob_id, now);
        net.drain(0);
        let ann = fresh_announcement(&net, "Bob", identity(1), bob_id);
        let _ = deliver(&mut net, 0, bob_id, &ann);
        net.run();
        net.now += 100;
    }
    let burnt = epoch(&net, 0) - before;
    assert!(burnt <= 1, "{burnt} epochs burnt in two seconds");
    let info = net.clients[0].s.peer(bob_id).unwrap();
    assert!(
        info.verified && !info.member && !info.key_sent,
        "held: {info:?}"
    );
    assert_eq!(net.clients[0].s.member_count(), 1);
    // After the hold Bob is a member again and both talk.
    net.advance(12_000);
    net.assert_all_decrypt();
    assert!(net.clients[0].s.peer(bob_id).unwrap().member);
    assert_eq!(
        epoch(&net, 0) - before,
        1,
        "the hold's end is a join: no new epoch"
    );
}
