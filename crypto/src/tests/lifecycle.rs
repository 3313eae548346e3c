//! Spies, leave/join rekeying, epoch rotation, and property tests for counters and the ratchet.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vcall_proto::e2ee::SealedHeader;

use super::*;
use crate::KeyId;
use crate::media::SealError;

fn keyed_room(names: &[&'static str], room: &RoomKeys) -> Net {
    let mut net = Net::new();
    for (i, name) in names.iter().enumerate() {
        net.join(name, identity(i), room.clone());
        net.advance(500);
    }
    net.advance(1_000);
    net
}

#[test]
fn a_spy_without_the_secret_gets_no_keys_and_decrypts_nothing() {
    let room = secret_room("secret room");
    let mut net = keyed_room(&["Alice", "Bob"], &room);
    // Spy 1 has the wrong secret but the relay put it in the same room; spy 2 has no secret.
    let wrong = RoomKeys::derive("secret room", Some(&RoomSecret::Key([8; 32]))).unwrap();
    let spy1 = net.join("Spy", identity(3), wrong.with_room_id(room.room_id()));
    let spy2 = net.join(
        "Eve",
        identity(4),
        RoomKeys::derive("secret room", None).unwrap(),
    );
    net.advance(5_000);
    let spies = [net.clients[spy1].id, net.clients[spy2].id];
    for (from, to) in net.key_messages() {
        assert!(!spies.contains(&to), "{from} wrapped a key to spy {to}");
    }
    for s in [spy1, spy2] {
        assert!(
            net.clients[s]
                .s
                .peers()
                .iter()
                .all(|p| !p.key_received && !p.verified)
        );
        assert!(
            !net.clients[s]
                .events
                .iter()
                .any(|e| matches!(e, Action::KeyInstalled { .. }))
        );
        for m in [0, 1] {
            let d = net.seal_datagram(m, DatagramKind::Heartbeat, b"state");
            assert!(net.open_datagram(s, &d).is_err());
            let info = net.clients[m].s.peer(net.clients[s].id).unwrap();
            assert!(
                !info.verified && !info.key_sent && !info.key_received,
                "{info:?}"
            );
        }
    }
    // Eve's clear announcement shows her (claimed) name, unverified.
    let eve = net.clients[0].s.peer(spies[1]).unwrap();
    assert_eq!(eve.display_name.as_deref(), Some("Eve"));
    // The members' security code covers only the members.
    let code = SecurityCode::of(&[
        net.clients[0].s.my_fingerprint(),
        net.clients[1].s.my_fingerprint(),
    ]);
    assert_eq!(net.clients[0].s.security_code(), code);
    assert_eq!(net.clients[1].s.security_code(), code);
    // Members still talk to each other.
    let d = net.seal_datagram(0, DatagramKind::Feedback, b"a");
    assert_eq!(net.open_datagram(1, &d), Ok(b"a".to_vec()));
}

use crate::SecurityCode;

#[test]
fn after_a_leave_the_leaver_cannot_decrypt_new_media() {
    let room = secret_room("r");
    let mut net = keyed_room(&["Alice", "Bob", "Casey"], &room);
    net.assert_all_decrypt();
    let epoch_before = net.clients[0].s.sender_key_id().epoch;
    net.leave(2);
    net.run(); // acks arrive at once here: the new epoch is used immediately
    for m in [0, 1] {
        assert!(net.clients[m].s.sender_key_id().epoch > epoch_before);
        assert!(net.clients[m].events.iter().any(|e| matches!(e,
            Action::Log(l) if l.kind == crate::HandshakeEventKind::Rekey)));
    }
    // The relay keeps forwarding to Casey: she opens nothing new.
    for m in [0, 1] {
        let d = net.seal_datagram(m, DatagramKind::Feedback, b"after");
        assert!(matches!(
            net.open_datagram(2, &d),
            Err(OpenError::UnknownKey { .. })
        ));
    }
    net.assert_all_decrypt();
    // Without acks the switch still happens after ~2 s.
    let mut net = keyed_room(&["Alice", "Bob", "Casey"], &room);
    net.leave(2);
    let now = net.now;
    let c = net.clients[2].id;
    net.clients[0].s.on_peer_left(c, now);
    let mut pending_sent = false;
    while let Some(a) = net.clients[0].s.poll_action() {
        pending_sent |= matches!(a, Action::SendSignal { .. });
    }
    assert!(pending_sent);
    assert_eq!(net.clients[0].s.sender_key_id().epoch, 0, "waits for acks");
    net.now += 2_000;
    let now = net.now;
    net.clients[0].s.on_tick(now);
    assert_eq!(net.clients[0].s.sender_key_id().epoch, 1);
}

#[test]
fn a_newcomer_cannot_decrypt_media_from_before_it_joined() {
    let room = secret_room("r");
    let mut net = keyed_room(&["Alice", "Bob"], &room);
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| net.seal_datagram(0, DatagramKind::Feedback, format!("old {i}").as_bytes()))
        .collect();
    let casey = net.join("Casey", identity(2), room.clone());
    net.advance(2_000);
    net.assert_all_decrypt();
    for d in &before {
        assert!(matches!(
            net.open_datagram(casey, d),
            Err(OpenError::UnknownKey { .. })
        ));
    }
    // Bob, who was there, could.
    assert_eq!(net.open_datagram(1, &before[2]), Ok(b"old 2".to_vec()));
}

/// For each sender, every key id anyone holds maps to one secret.
fn assert_key_ids_unique(net: &Net) {
    let mut seen: BTreeMap<(PeerId, KeyId), [u8; 8]> = BTreeMap::new();
    for c in &net.clients {
        let (id, check) = c.s.own_key_check();
        assert_eq!(*seen.entry((c.id, id)).or_insert(check), check);
    }
    for r in &net.clients {
        for s in &net.clients {
            for e in 0..4u16 {
                for g in 0..8u16 {
                    if let Some(check) = r.s.key_check(s.id, KeyId::new(e, g)) {
                        let prev = *seen.entry((s.id, KeyId::new(e, g))).or_insert(check);
                        assert_eq!(
                            prev, check,
                            "{} holds another {}'s key {e}.{g}",
                            r.name, s.name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_leave_and_a_join_at_the_same_moment_never_give_two_keys_one_id() {
    let room = secret_room("r");
    let mut net = keyed_room(&["Alice", "Bob", "Casey"], &room);
    // Casey leaves and Dave joins in the same instant (both queued before anything runs).
    net.leave(2);
    let dave = net.join("Dave", identity(3), room.clone());
    net.run();
    assert_key_ids_unique(&net);
    net.advance(3_000);
    assert_key_ids_unique(&net);
    net.assert_all_decrypt();
    // And the other order, with a join during a pending epoch (no acks yet).
    net.leave(dave);
    let now = net.now;
    let d = net.clients[dave].id;
    for m in [0, 1] {
        net.clients[m].s.on_peer_left(d, now);
    }
    let erin = net.join("Erin", identity(4), room);
    net.run();
    net.advance(3_000);
    assert_key_ids_unique(&net);
    net.assert_all_decrypt();
    let d = net.seal_datagram(0, DatagramKind::Feedback, b"x");
    assert!(net.open_datagram(dave, &d).is_err());
    assert!(net.open_datagram(erin, &d).is_ok());
}

#[test]
fn a_new_epoch_every_ten_minutes_keeps_everyone_talking() {
    let room = secret_room("r");
    let mut net = keyed_room(&["Alice", "Bob"], &room);
    let e0 = net.clients[0].s.sender_key_id().epoch;
    for round in 1..=2u16 {
        net.advance(600_000);
        assert_eq!(net.clients[0].s.sender_key_id().epoch, e0 + round);
        net.assert_all_decrypt();
    }
    // Old keys are retired after the grace period.
    assert!(
        net.clients[1]
            .events
            .iter()
            .any(|e| matches!(e, Action::KeyRetired { .. }))
    );
}

#[test]
fn counters_are_unique_across_kinds_and_bounded() {
    let room = secret_room("r");
    let mut net = keyed_room(&["Alice", "Bob"], &room);
    let mut last = None;
    for (i, kind) in DatagramKind::ALL.iter().cycle().take(40).enumerate() {
        let mut out = vec![0xEE; 3];
        net.clients[0]
            .s
            .seal(*kind, None, &[i as u8; 5], &mut out)
            .unwrap();
        let c = SealedHeader::decode(&out[3..]).unwrap().counter;
        assert!(last.is_none_or(|l| c > l));
        last = Some(c);
    }
    net.clients[0].s.set_counter(vcall_proto::e2ee::MAX_COUNTER);
    let mut out = Vec::new();
    net.clients[0]
        .s
        .seal(DatagramKind::Audio, None, b"last", &mut out)
        .unwrap();
    let mut out = vec![1, 2];
    assert_eq!(
        net.clients[0]
            .s
            .seal(DatagramKind::Audio, None, b"x", &mut out),
        Err(SealError::CounterExhausted)
    );
    assert_eq!(out, [1, 2], "a failed seal leaves the buffer as it was");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A receiver follows a sender's ratchet by itself only up to `max_ratchet_steps` (8)
    /// beyond the newest generation it holds.
    #[test]
    fn the_receiver_steps_forward_at_most_eight_generations(steps in 0u16..20, again in 0u16..12) {
        let mut net = keyed_room(&["Alice", "Bob"], &secret_room("r"));
        let now = net.now;
        for _ in 0..steps {
            net.clients[0].s.test_ratchet(now);
        }
        while net.clients[0].s.poll_action().is_some() {}
        let old = net.seal_datagram(0, DatagramKind::Feedback, b"x");
        let r = net.open_datagram(1, &old);
        if steps <= 8 {
            prop_assert_eq!(r, Ok(b"x".to_vec()));
        } else {
            prop_assert!(matches!(r, Err(OpenError::UnknownKey { .. })), "{:?}", r);
        }
        for _ in 0..again {
            net.clients[0].s.test_ratchet(now);
        }
        while net.clients[0].s.poll_action().is_some() {}
        let d = net.seal_datagram(0, DatagramKind::Feedback, b"y");
        let r = net.open_datagram(1, &d);
        prop_assert_eq!(r.is_ok(), steps <= 8 && again <= 8, "{:?}", r);
    }
}

#[test]
fn sessions_and_identities_can_move_across_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Session>();
    send_sync::<Identity>();
    send_sync::<RoomKeys>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary signals and media bodies from any peer id never panic a keyed session, and it
    /// keeps working afterwards.
    #[test]
    fn arbitrary_input_never_panics_a_session(
        inputs in proptest::collection::vec((0u32..6, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..700)), 1..24),
    ) {
        let mut net = keyed_room(&["Alice", "Bob"], &secret_room("r"));
        let now = net.now;
        for (from, as_signal, mut bytes) in inputs {
            if as_signal {
                // Bias towards known tags so decoders get past the first byte.
                if let Some(b) = bytes.first_mut() { *b %= 4; }
                let _ = net.clients[0].s.on_signal(PeerId(from), &bytes, now);
            } else {
                for kind in DatagramKind::ALL {
                    let mut body = bytes.clone();
                    let _ = net.clients[0].s.open(PeerId(from), kind, None, &mut body, now);
                }
            }
            net.drain(0);
        }
        net.run();
        let d = net.seal_datagram(1, DatagramKind::Feedback, b"still fine");
        prop_assert_eq!(net.open_datagram(0, &d), Ok(b"still fine".to_vec()));
    }
}
