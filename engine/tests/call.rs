//! End-to-end calls through a real relay over loopback: the seed scenario (Alice, Bob, Casey),
//! a spy without the secret, and a peer leaving. Real H.264/Opus, real E2EE, real QUIC.
//! Call tests run one at a time (a process-wide lock) so they never compete for the cores.

mod support;

use std::sync::Mutex;
use std::time::Duration;
use support::{decoded_from, small_call, wait_for};

use vcall_crypto::InviteLink;
use vcall_engine::{
    CallHandle, CallPhase, CallState, Command, ConnectFailure, EndReason, PeerState,
    fresh_invite_link,
};
use vcall_media::tone::frequency_for_name;
use vcall_proto::PeerId;
use vcall_relay::{Relay, RelayConfig, RelayHandle};

static ONE_CALL_AT_A_TIME: Mutex<()> = Mutex::new(());

struct TestRelay {
    runtime: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
}

impl TestRelay {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime
            .block_on(Relay::bind(RelayConfig::loopback()))
            .unwrap();
        Self {
            runtime,
            handle: Some(handle),
        }
    }

    fn link(&self, room: &str) -> String {
        let h = self.handle.as_ref().unwrap();
        fresh_invite_link(
            "127.0.0.1",
            h.local_addr().port(),
            Some(h.fingerprint()),
            room,
        )
        .unwrap()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }
}

fn in_call(h: &CallHandle) -> bool {
    h.state().phase == CallPhase::InCall
}

fn peer<'a>(s: &'a CallState, name: &str) -> &'a PeerState {
    s.peers
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{} does not see {name}: {:?}", s.my_name, s.peers))
}

fn has_log(s: &CallState, event: &str, peer: Option<PeerId>) -> bool {
    s.handshake_log
        .iter()
        .any(|e| e.event == event && (peer.is_none() || e.peer == peer))
}

#[test]
fn seed_scenario_three_peers_exchange_keys_and_media() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TestRelay::start();
    let link = relay.link("seed");
    let names = ["Alice", "Bob", "Casey"];
    let mut calls: Vec<CallHandle> = Vec::new();
    for name in names {
        let call = CallHandle::start(small_call(&link, name), None);
        wait_for(&format!("{name} to join"), Duration::from_secs(30), || {
            in_call(&call)
        });
        calls.push(call);
    }
    const FRAMES: u64 = 90;
    wait_for(
        "everyone to decode video and audio from both others",
        Duration::from_secs(120),
        || {
            calls.iter().zip(names).all(|(c, me)| {
                let s = c.state();
                names.iter().filter(|n| **n != me).all(|other| {
                    decoded_from(&s, other) >= FRAMES
                        && s.peers
                            .iter()
                            .find(|p| p.name.as_deref() == Some(*other))
                            .is_some_and(|p| p.stats.audio_peak_hz.is_some())
                })
            })
        },
    );
    let states: Vec<std::sync::Arc<CallState>> = calls.iter().map(|c| c.state()).collect();
    let ids: Vec<PeerId> = states.iter().map(|s| s.my_peer_id.unwrap()).collect();
    for (s, me) in states.iter().zip(names) {
        assert!(s.security.room_secret);
        assert_eq!(s.peers.len(), 2, "{me} sees {:?}", s.peers);
        for other in names.iter().filter(|n| **n != me) {
            let p = peer(s, other);
            assert!(p.verified, "{me} must see {other} verified");
            assert!(p.key_received && p.key_sent, "{me}<->{other} keys: {p:?}");
            let st = &p.stats;
            assert!(
                st.video_frames_decoded as f64 >= 0.9 * st.video_frames_expected as f64,
                "{me} decoded {} of {} expected frames from {other}",
                st.video_frames_decoded,
                st.video_frames_expected
            );
            let psnr = st.video_psnr_db.expect("PSNR of the test pattern");
            assert!(psnr >= 30.0, "{me} sees {other} at {psnr:.1} dB");
            let hz = st.audio_peak_hz.unwrap();
            let want = frequency_for_name(other);
            assert!(
                (hz - want).abs() <= 5.0,
                "{me} hears {other} at {hz:.1} Hz, expected {want:.1} Hz"
            );
            assert_eq!(st.decrypt_failures, 0, "{me} from {other}");
            assert!(st.latency_ms.p50 > 0.0);
        }
    }
    // Everyone computes the same room security code.
    assert!(!states[0].security.room_security_code.is_empty());
    assert!(
        states
            .iter()
            .all(|s| s.security.room_security_code == states[0].security.room_security_code)
    );
    // The diagram's re-announcements: Alice notices Bob and Casey, Bob notices Casey.
    assert!(has_log(&states[0], "reannounce_new_peer", Some(ids[1])));
    assert!(has_log(&states[0], "reannounce_new_peer", Some(ids[2])));
    assert!(has_log(&states[1], "reannounce_new_peer", Some(ids[2])));
    // Every newcomer's key reached the older peers and theirs reached it.
    assert!(has_log(&states[2], "recv_key", Some(ids[0])));
    assert!(has_log(&states[2], "recv_key", Some(ids[1])));
    assert!(has_log(&states[0], "sent_key", Some(ids[2])));
    for c in &calls {
        c.send(Command::Leave);
    }
    wait_for("everyone to leave", Duration::from_secs(10), || {
        calls.iter().all(|c| c.ended())
    });
}

#[test]
fn a_spy_without_the_secret_gets_no_keys_and_decodes_nothing() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TestRelay::start();
    let link = relay.link("secret-room");
    let alice = CallHandle::start(small_call(&link, "Alice"), None);
    wait_for("Alice to join", Duration::from_secs(30), || in_call(&alice));
    let bob = CallHandle::start(small_call(&link, "Bob"), None);
    wait_for("Bob to join", Duration::from_secs(30), || in_call(&bob));

    // The spy knows the relay room id (as an insider could) but holds a different secret.
    let real_room_id = InviteLink::parse(&link)
        .unwrap()
        .room_keys()
        .unwrap()
        .room_id()
        .to_vec();
    let spy_link = relay.link("secret-room");
    let mut spy_config = small_call(&spy_link, "Spy");
    spy_config.room_id_override = Some(real_room_id);
    let spy = CallHandle::start(spy_config, None);
    wait_for("the spy to join", Duration::from_secs(30), || in_call(&spy));
    wait_for(
        "Alice and Bob to see the spy and keep decoding each other",
        Duration::from_secs(60),
        || {
            let (a, b) = (alice.state(), bob.state());
            a.peers.len() == 2 && b.peers.len() == 2 && decoded_from(&a, "Bob") >= 60
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let spy_state = spy.state();
    assert_eq!(spy_state.peers.len(), 2, "the spy is in the relay room");
    for p in &spy_state.peers {
        assert!(!p.verified && !p.key_received, "spy got {p:?}");
        assert_eq!(p.stats.video_frames_decoded, 0);
        assert_eq!(p.stats.audio_frames_decoded, 0);
    }
    let spy_id = spy_state.my_peer_id.unwrap();
    for s in [alice.state(), bob.state()] {
        let p = s.peers.iter().find(|p| p.peer_id == spy_id).unwrap();
        assert!(!p.verified, "{} must show the spy unverified", s.my_name);
        assert!(!p.key_sent, "{} must never send the spy a key", s.my_name);
        assert!(!p.key_received);
        assert!(
            !s.handshake_log
                .iter()
                .any(|e| e.event == "sent_key" && e.peer == Some(spy_id)),
            "no key is ever wrapped to the spy"
        );
    }
    for c in [&alice, &bob, &spy] {
        c.send(Command::Leave);
    }
}

#[test]
fn when_a_peer_leaves_the_others_rekey_and_continue() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TestRelay::start();
    let link = relay.link("leavers");
    let names = ["Alice", "Bob", "Casey"];
    let calls: Vec<CallHandle> = names
        .iter()
        .map(|n| {
            let c = CallHandle::start(small_call(&link, n), None);
            wait_for("join", Duration::from_secs(30), || in_call(&c));
            c
        })
        .collect();
    wait_for("media flowing", Duration::from_secs(90), || {
        decoded_from(&calls[0].state(), "Bob") >= 30
            && decoded_from(&calls[1].state(), "Alice") >= 30
            && decoded_from(&calls[0].state(), "Casey") >= 30
    });
    calls[2].send(Command::Leave);
    wait_for("Casey to be gone", Duration::from_secs(10), || {
        calls[..2].iter().all(|c| c.state().peers.len() == 1)
    });
    let before = decoded_from(&calls[0].state(), "Bob");
    wait_for("Alice and Bob to rekey", Duration::from_secs(30), || {
        calls[..2]
            .iter()
            .all(|c| has_log(&c.state(), "rekey", None))
    });
    wait_for(
        "media to keep flowing after the rekey",
        Duration::from_secs(30),
        || {
            decoded_from(&calls[0].state(), "Bob") >= before + 60
                && decoded_from(&calls[1].state(), "Alice") >= 30
        },
    );
    assert!(calls[2].ended());
    for c in &calls[..2] {
        c.send(Command::Leave);
    }
}

#[test]
fn a_wrong_certificate_fingerprint_is_refused_with_a_clear_message() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TestRelay::start();
    let port = relay.handle.as_ref().unwrap().local_addr().port();
    let wrong_fp = "00".repeat(32);
    let link = fresh_invite_link("127.0.0.1", port, Some(&wrong_fp), "pinned").unwrap();
    let call = CallHandle::start(small_call(&link, "Alice"), None);
    wait_for("the call to fail", Duration::from_secs(20), || call.ended());
    match &call.state().phase {
        CallPhase::Ended(reason) => {
            assert_eq!(
                reason,
                &EndReason::Connect(ConnectFailure::CertificateMismatch)
            );
            assert!(reason.to_string().contains("fingerprint"), "{reason}");
        }
        other => panic!("unexpected phase {other:?}"),
    }
}

#[test]
fn an_unreachable_relay_and_a_bad_link_end_the_call_with_advice() {
    let bad = CallHandle::start(small_call("https://example.org/room", "Alice"), None);
    wait_for("the bad link to fail", Duration::from_secs(5), || {
        bad.ended()
    });
    let CallPhase::Ended(reason) = bad.state().phase.clone() else {
        panic!("not ended")
    };
    assert!(matches!(reason, EndReason::InvalidLink(_)), "{reason:?}");
    assert!(reason.to_string().contains("link"), "{reason}");

    // A port nobody listens on (bind then drop a UDP socket to find one).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = fresh_invite_link("127.0.0.1", port, Some(&"ab".repeat(32)), "nobody").unwrap();
    let call = CallHandle::start(small_call(&link, "Alice"), None);
    wait_for("the call to fail", Duration::from_secs(30), || call.ended());
    let CallPhase::Ended(reason) = call.state().phase.clone() else {
        panic!("not ended")
    };
    assert!(
        matches!(
            reason,
            EndReason::Connect(ConnectFailure::Unreachable { port: p, .. }) if p == port
        ),
        "{reason:?}"
    );
    let text = reason.to_string();
    assert!(text.contains("did not answer"), "{text}");
    assert!(
        !text.contains("#k="),
        "the secret never appears in messages"
    );
}

#[test]
fn after_the_relay_restarts_the_call_reconnects_by_itself_with_new_keys() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let state_dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = |listen| RelayConfig {
        listen,
        certificate: vcall_relay::CertificateSource::SelfSigned {
            state_dir: state_dir.path().to_owned(),
        },
        ..RelayConfig::loopback()
    };
    let relay = runtime
        .block_on(Relay::bind(config(RelayConfig::loopback().listen)))
        .unwrap();
    let addr = relay.local_addr();
    let link = fresh_invite_link(
        "127.0.0.1",
        addr.port(),
        Some(relay.fingerprint()),
        "restart",
    )
    .unwrap();
    let alice = CallHandle::start(small_call(&link, "alice"), None);
    let bob = CallHandle::start(small_call(&link, "bob"), None);
    wait_for("both decode each other", Duration::from_secs(30), || {
        decoded_from(&alice.state(), "bob") > 10 && decoded_from(&bob.state(), "alice") > 10
    });
    let fingerprint = alice.state().security.my_fingerprint.clone();

    // The relay goes away (an upgrade) and comes back on the same port 1 s later, with the
    // same state directory: the same certificate, so the links' pin still holds.
    runtime.block_on(relay.shutdown());
    std::thread::sleep(Duration::from_secs(1));
    let relay = runtime.block_on(Relay::bind(config(addr))).unwrap();
    wait_for("both rejoined", Duration::from_secs(20), || {
        for h in [&alice, &bob] {
            if let CallPhase::Ended(why) = &h.state().phase {
                panic!("{} ended instead of reconnecting: {why}", h.state().my_name);
            }
        }
        [&alice, &bob]
            .iter()
            .all(|h| h.state().reconnects == 1 && in_call(h))
    });
    // Media flows again under new keys: the peers of the new connection decode.
    wait_for("media after the restart", Duration::from_secs(20), || {
        decoded_from(&alice.state(), "bob") > 10 && decoded_from(&bob.state(), "alice") > 10
    });
    let s = alice.state();
    assert_eq!(s.security.my_fingerprint, fingerprint, "the same identity");
    assert!(
        s.reconnect_video_gap_ms >= 1000,
        "the gap spans the second the relay was down: {} ms",
        s.reconnect_video_gap_ms
    );
    assert!(
        s.departed.iter().any(|p| p.name.as_deref() == Some("bob")),
        "{s:?}"
    );
    assert!(peer(&s, "bob").key_received && peer(&s, "bob").key_sent);
    for h in [alice, bob] {
        h.leave();
    }
    runtime.block_on(relay.shutdown());
}
