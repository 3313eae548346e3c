//! Bad input closes or rejects only the offending connection, with a typed error code, while
//! a call in progress on the same relay keeps exchanging signals and datagrams.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::{ClientOptions, TestClient, connect, eventually, hello, signal};
use vcall_proto::control::RosterEntry;
use vcall_proto::{ControlFrame, ErrorCode, PeerId};
use vcall_relay::{DropReason, Limits, RejectReason, Relay, RelayConfig, RelayHandle};

/// Two peers in a call; `check` proves their signals and datagrams still flow.
struct Bystanders {
    alice: TestClient,
    bob: TestClient,
    round: u64,
}

impl Bystanders {
    async fn join(relay: &RelayHandle) -> Self {
        let mut alice = TestClient::join(relay, "bystanders", Some("alice")).await;
        let bob = TestClient::join(relay, "bystanders", Some("bob")).await;
        assert!(matches!(
            alice.next_frame().await,
            Some(ControlFrame::PeerJoined(_))
        ));
        Self {
            alice,
            bob,
            round: 0,
        }
    }

    async fn check(&mut self) {
        self.round += 1;
        let payload = format!("round {}", self.round);
        self.alice
            .send_frame(&signal(self.bob.peer, payload.as_bytes()))
            .await;
        assert_eq!(
            self.bob.next_frame().await,
            Some(ControlFrame::Signal {
                to: self.bob.peer,
                from: self.alice.peer,
                payload: Bytes::from(payload)
            }),
        );
        for _ in 0..20 {
            self.bob.send_datagram(None, PeerId::NONE, b"media");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut received = 0;
        while received < 20 {
            match self.alice.recv_datagram(Duration::from_secs(1)).await {
                Some((header, _)) => {
                    assert_eq!(header.sender, self.bob.peer);
                    received += 1;
                }
                None => break,
            }
        }
        assert!(
            received >= 18,
            "bystander datagrams keep flowing: {received}/20"
        );
    }
}

async fn relay_with(limits: Limits) -> RelayHandle {
    Relay::bind(RelayConfig {
        limits,
        ..RelayConfig::loopback()
    })
    .await
    .expect("relay binds")
}

fn code(c: ErrorCode) -> Option<u64> {
    Some(u64::from(c.to_u16()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_only_the_offender() {
    let relay = relay_with(Limits {
        max_control_frame: 4096,
        ..Limits::default()
    })
    .await;
    let metrics = relay.metrics().clone();
    let mut call = Bystanders::join(&relay).await;
    call.check().await;

    // Wrong ALPN: the handshake fails.
    let wrong_alpn = ClientOptions {
        alpn: b"not-vcall".to_vec(),
        ..ClientOptions::default()
    };
    assert!(
        connect(relay.local_addr(), relay.fingerprint(), &wrong_alpn)
            .await
            .is_err()
    );
    eventually("handshake failure counted", &metrics, |m| {
        m.rejections(RejectReason::Handshake) == 1
    })
    .await;
    call.check().await;

    // Unknown protocol version.
    let mut client = TestClient::open(&relay, &ClientOptions::default()).await;
    client
        .send_frame(&ControlFrame::Hello {
            version: 99,
            room: Bytes::from_static(b"x"),
            name: None,
            token: None,
        })
        .await;
    client.expect_error(ErrorCode::UnsupportedVersion).await;
    assert_eq!(
        client.closed_with().await,
        code(ErrorCode::UnsupportedVersion)
    );
    call.check().await;

    // Unknown frame type.
    let mut client = TestClient::open(&relay, &ClientOptions::default()).await;
    client.send_raw(&[0, 0, 0, 1, 0x7F]).await;
    client.expect_error(ErrorCode::Malformed).await;
    assert_eq!(client.closed_with().await, code(ErrorCode::Malformed));
    call.check().await;

    // Oversized frame: rejected from its length prefix alone.
    let mut client = TestClient::join(&relay, "elsewhere", None).await;
    client.send_raw(&100_000u32.to_be_bytes()).await;
    client.expect_error(ErrorCode::FrameTooLarge).await;
    assert_eq!(client.closed_with().await, code(ErrorCode::FrameTooLarge));
    call.check().await;

    // Empty room id.
    let mut client = TestClient::open(&relay, &ClientOptions::default()).await;
    client
        .send_frame(&ControlFrame::Hello {
            version: 1,
            room: Bytes::new(),
            name: None,
            token: None,
        })
        .await;
    client.expect_error(ErrorCode::BadRoomId).await;
    assert_eq!(client.closed_with().await, code(ErrorCode::BadRoomId));

    // Anything but Hello first.
    let mut client = TestClient::open(&relay, &ClientOptions::default()).await;
    client.send_frame(&signal(PeerId::NONE, b"too early")).await;
    client.expect_error(ErrorCode::NotJoined).await;
    assert_eq!(client.closed_with().await, code(ErrorCode::NotJoined));

    // A relay-to-client frame sent by a client.
    let mut client = TestClient::join(&relay, "elsewhere", None).await;
    client
        .send_frame(&ControlFrame::PeerLeft { peer: PeerId(1) })
        .await;
    client.expect_error(ErrorCode::Malformed).await;
    assert_eq!(client.closed_with().await, code(ErrorCode::Malformed));
    call.check().await;

    assert_eq!(metrics.rejections(RejectReason::Malformed), 2);
    assert_eq!(metrics.rejections(RejectReason::FrameTooLarge), 1);
    assert_eq!(metrics.rejections(RejectReason::UnsupportedVersion), 1);
    // The bystanders never saw any of it (joins in "elsewhere" are another room).
    call.alice.assert_nothing_pending(1).await;
    call.bob.assert_nothing_pending(2).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_signals_keep_the_connection_open_but_a_second_hello_closes_it() {
    let relay = relay_with(Limits::default()).await;
    let mut call = Bystanders::join(&relay).await;
    let mut outsider = TestClient::join(&relay, "other-room", None).await;

    // A signal to a peer in another room: Error UnknownPeer, the bystander gets nothing.
    outsider
        .send_frame(&signal(call.alice.peer, b"let me in"))
        .await;
    outsider.expect_error(ErrorCode::UnknownPeer).await;
    // A signal to a peer id that does not exist at all.
    outsider.send_frame(&signal(PeerId(4242), b"anyone?")).await;
    outsider.expect_error(ErrorCode::UnknownPeer).await;
    // Still connected and served.
    outsider.assert_nothing_pending(9).await;
    call.alice.assert_nothing_pending(1).await;
    call.check().await;
    assert_eq!(relay.metrics().rejections(RejectReason::UnknownPeer), 2);

    // A second Hello is a protocol error (PROTOCOL.md §2): Error, then close.
    outsider.send_frame(&hello("bystanders", None)).await;
    outsider.expect_error(ErrorCode::AlreadyJoined).await;
    assert_eq!(outsider.closed_with().await, code(ErrorCode::AlreadyJoined));
    call.check().await;
    call.alice.assert_nothing_pending(2).await;
    assert_eq!(relay.metrics().rejections(RejectReason::AlreadyJoined), 1);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_before_joining_and_invalid_datagrams_are_dropped_and_counted() {
    let relay = relay_with(Limits::default()).await;
    let metrics = relay.metrics().clone();
    let mut call = Bystanders::join(&relay).await;

    // Datagrams before the Hello: dropped and counted, the connection stays usable.
    let mut early = TestClient::open(&relay, &ClientOptions::default()).await;
    for _ in 0..5 {
        early.send_datagram(None, PeerId::NONE, b"too early");
    }
    eventually("early datagrams counted", &metrics, |m| {
        m.datagrams_dropped(DropReason::NotJoined) == 5
    })
    .await;
    early.send_frame(&hello("bystanders", Some("late"))).await;
    assert!(matches!(
        early.next_frame().await,
        Some(ControlFrame::Welcome { .. })
    ));
    assert!(
        call.alice
            .recv_datagram(Duration::from_millis(200))
            .await
            .is_none(),
        "early datagrams never forwarded"
    );
    for member in [&mut call.alice, &mut call.bob] {
        assert!(
            matches!(member.next_frame().await, Some(ControlFrame::PeerJoined(RosterEntry { name: Some(n), .. })) if n == "late")
        );
    }

    // Oversized (over MAX_DATAGRAM_SIZE) and malformed (unknown version) datagrams.
    early.send_datagram(None, PeerId::NONE, &[0u8; 1200]);
    early
        .connection
        .send_datagram(Bytes::from_static(&[9, 1, 0, 0, 0, 0, 0, 1, 2, 3]))
        .unwrap();
    eventually("invalid datagrams counted", &metrics, |m| {
        m.datagrams_dropped(DropReason::Oversized) == 1
            && m.datagrams_dropped(DropReason::Malformed) == 1
    })
    .await;
    call.check().await;
    early.assert_nothing_pending(3).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_reject_with_clear_errors() {
    let relay = relay_with(Limits {
        max_rooms: 2,
        max_peers_per_room: 2,
        join_timeout: Duration::from_secs(1),
        control_frames_per_sec: 20,
        ..Limits::default()
    })
    .await;
    let metrics = relay.metrics().clone();
    let mut call = Bystanders::join(&relay).await;

    let mut third = TestClient::open(&relay, &ClientOptions::default()).await;
    third.send_frame(&hello("bystanders", None)).await;
    third.expect_error(ErrorCode::RoomFull).await;
    assert_eq!(third.closed_with().await, code(ErrorCode::RoomFull));

    let _second_room = TestClient::join(&relay, "second", None).await;
    let mut third_room = TestClient::open(&relay, &ClientOptions::default()).await;
    third_room.send_frame(&hello("third", None)).await;
    third_room.expect_error(ErrorCode::TooManyRooms).await;
    assert_eq!(
        third_room.closed_with().await,
        code(ErrorCode::TooManyRooms)
    );

    // Connected but silent: closed after the join timeout.
    let silent = support::connect(
        relay.local_addr(),
        relay.fingerprint(),
        &ClientOptions::default(),
    )
    .await
    .unwrap();
    let closed = tokio::time::timeout(support::PATIENCE, silent.closed())
        .await
        .expect("closed by the relay");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 6)
    );

    // A control-frame flood: disconnected with RateLimited.
    let mut flooder = TestClient::join(&relay, "second", None).await;
    // The relay may stop our stream before the flood is all written: that is its answer too.
    for nonce in 0..100 {
        if !flooder.try_send_frame(&ControlFrame::Ping(nonce)).await {
            break;
        }
    }
    let mut frame = flooder.next_frame().await;
    while matches!(frame, Some(ControlFrame::Pong(_))) {
        frame = flooder.next_frame().await;
    }
    assert!(
        matches!(
            frame,
            Some(ControlFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ),
        "{frame:?}"
    );
    assert_eq!(flooder.closed_with().await, code(ErrorCode::RateLimited));

    call.check().await;
    assert_eq!(metrics.rejections(RejectReason::RoomFull), 1);
    assert_eq!(metrics.rejections(RejectReason::TooManyRooms), 1);
    assert_eq!(metrics.rejections(RejectReason::JoinTimeout), 1);
    assert_eq!(metrics.rejections(RejectReason::RateLimited), 1);
    relay.shutdown().await;
}
