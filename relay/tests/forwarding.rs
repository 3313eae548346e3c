//! Forwarding over real QUIC on loopback: rosters, signals and datagrams reach exactly the
//! right members, senders are stamped, and unforwardable datagrams are dropped and counted.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use support::{ClientOptions, TestClient, eventually, signal};
use vcall_proto::control::RosterEntry;
use vcall_proto::{ControlFrame, MAX_DATAGRAM_SIZE, PeerId};
use vcall_relay::{DropReason, Limits, Relay, RelayConfig, RelayHandle};

async fn relay_with(limits: Limits) -> RelayHandle {
    Relay::bind(RelayConfig {
        limits,
        ..RelayConfig::loopback()
    })
    .await
    .expect("relay binds")
}

/// Collects datagrams until `expected` arrived or the flow stops for `quiet`.
async fn collect(
    client: &TestClient,
    expected: usize,
    quiet: Duration,
) -> Vec<(PeerId, Option<PeerId>, Bytes)> {
    let mut got = Vec::new();
    while got.len() < expected {
        match client.recv_datagram(quiet).await {
            Some((header, body)) => got.push((header.sender, header.target, body)),
            None => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_get_exactly_their_signals_and_datagrams_with_stamped_senders() {
    let relay = relay_with(Limits::default()).await;
    let mut a1 = TestClient::join(&relay, "room-a", Some("Alice")).await;
    let mut a2 = TestClient::join(&relay, "room-a", None).await;
    let mut a3 = TestClient::join(&relay, "room-a", Some("Casey")).await;
    let mut b1 = TestClient::join(&relay, "room-b", Some("Bea")).await;

    // Rosters and join announcements.
    assert!(a1.roster.is_empty());
    assert_eq!(
        a3.roster,
        vec![
            RosterEntry {
                peer: a1.peer,
                name: Some("Alice".into())
            },
            RosterEntry {
                peer: a2.peer,
                name: None
            },
        ]
    );
    assert!(b1.roster.is_empty(), "room B does not see room A's members");
    assert_eq!(
        a1.next_frame().await,
        Some(ControlFrame::PeerJoined(RosterEntry {
            peer: a2.peer,
            name: None
        }))
    );
    assert_eq!(
        a1.next_frame().await,
        Some(ControlFrame::PeerJoined(RosterEntry {
            peer: a3.peer,
            name: Some("Casey".into())
        }))
    );
    assert!(
        matches!(a2.next_frame().await, Some(ControlFrame::PeerJoined(e)) if e.peer == a3.peer)
    );

    // A broadcast signal reaches the other two, stamped with the true sender.
    a1.send_frame(&ControlFrame::Signal {
        to: PeerId::NONE,
        from: PeerId(999),
        payload: Bytes::from_static(b"to all"),
    })
    .await;
    for receiver in [&mut a2, &mut a3] {
        assert_eq!(
            receiver.next_frame().await,
            Some(ControlFrame::Signal {
                to: PeerId::NONE,
                from: a1.peer,
                payload: Bytes::from_static(b"to all")
            })
        );
    }
    // An addressed signal reaches its target only.
    a2.send_frame(&signal(a3.peer, b"for casey")).await;
    assert_eq!(
        a3.next_frame().await,
        Some(ControlFrame::Signal {
            to: a3.peer,
            from: a2.peer,
            payload: Bytes::from_static(b"for casey")
        })
    );
    // Room B's broadcast stays in room B (where nobody else is).
    b1.send_frame(&signal(PeerId::NONE, b"b says hi")).await;
    // Everything above was processed before these pings: any leaked frame would come first.
    a1.assert_nothing_pending(1).await;
    a2.assert_nothing_pending(2).await;
    a3.assert_nothing_pending(3).await;
    b1.assert_nothing_pending(4).await;

    // Paced datagrams with a forged sender id, while room B sends its own.
    const COUNT: usize = 200;
    let sender = tokio::spawn({
        let a1 = a1.connection.clone();
        let b1 = b1.connection.clone();
        async move {
            for seq in 0..COUNT as u32 {
                a1.send_datagram(support::datagram(None, PeerId(999), &seq.to_be_bytes()))
                    .unwrap();
                if seq % 4 == 0 {
                    b1.send_datagram(support::datagram(None, PeerId::NONE, b"room-b media"))
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let (at_a2, at_a3) = tokio::join!(
        collect(&a2, COUNT, Duration::from_secs(2)),
        collect(&a3, COUNT, Duration::from_secs(2))
    );
    sender.await.unwrap();
    for got in [&at_a2, &at_a3] {
        assert!(
            got.len() * 100 >= COUNT * 95,
            "only {} of {COUNT} datagrams arrived",
            got.len()
        );
        assert!(
            got.iter().all(|(from, _, _)| *from == a1.peer),
            "forged sender overwritten, room B absent"
        );
        let distinct: HashSet<_> = got.iter().map(|(_, _, body)| body.clone()).collect();
        assert_eq!(distinct.len(), got.len(), "no duplicates");
    }
    assert!(
        b1.recv_datagram(Duration::from_millis(300)).await.is_none(),
        "room B got nothing of A"
    );
    assert!(
        a1.recv_datagram(Duration::from_millis(100)).await.is_none(),
        "no echo to the sender"
    );

    // Addressed datagrams: to the target only; to someone in another room: dropped, counted.
    for seq in 0..20u8 {
        a1.send_datagram(Some(a3.peer), PeerId::NONE, &[b'T', seq]);
        a1.send_datagram(Some(b1.peer), PeerId::NONE, &[b'X', seq]);
    }
    for seq in 0..20u8 {
        a1.send_datagram(None, PeerId::NONE, &[b'B', seq]);
    }
    let at_a3 = collect(&a3, 40, Duration::from_secs(1)).await;
    assert!(
        at_a3
            .iter()
            .any(|(_, target, body)| body[0] == b'T' && *target == Some(a3.peer))
    );
    let at_a2 = collect(&a2, 20, Duration::from_secs(1)).await;
    assert!(
        at_a2.iter().any(|(_, _, body)| body[0] == b'B'),
        "broadcasts still flow"
    );
    assert!(
        at_a2.iter().all(|(_, _, body)| body[0] == b'B'),
        "addressed datagrams skip non-targets"
    );
    assert!(
        b1.recv_datagram(Duration::from_millis(200)).await.is_none(),
        "cross-room target refused"
    );
    eventually("cross-room targets counted", relay.metrics(), |m| {
        m.datagrams_dropped(DropReason::UnknownTarget) == 20
    })
    .await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unforwardable_datagrams_are_dropped_per_receiver_and_counted() {
    // A tiny per-receiver datagram buffer makes bursts congest.
    let relay = relay_with(Limits {
        datagram_send_buffer: 3 * MAX_DATAGRAM_SIZE,
        ..Limits::default()
    })
    .await;
    let sender = TestClient::join(&relay, "r", None).await;
    let mut healthy = TestClient::join(&relay, "r", None).await;
    let small_path = ClientOptions {
        datagram_receive_buffer: Some(600),
        ..ClientOptions::default()
    };
    let mut narrow = TestClient::join_with(&relay, "r", None, &small_path).await;
    let no_datagrams = ClientOptions {
        datagram_receive_buffer: None,
        ..ClientOptions::default()
    };
    let mut deaf = TestClient::join_with(&relay, "r", None, &no_datagrams).await;

    // Full-size datagrams: fine for `healthy`, too large for `narrow`, unsupported by `deaf`.
    let body = vec![0x5A; MAX_DATAGRAM_SIZE - 7];
    for _ in 0..5 {
        sender.send_datagram(None, PeerId::NONE, &body);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = collect(&healthy, 5, Duration::from_secs(2)).await;
    assert!(!got.is_empty(), "the healthy receiver still gets datagrams");
    assert!(got.iter().all(|(_, _, b)| b.len() == body.len()));
    let m = relay.metrics();
    eventually("too-large and unsupported drops counted", m, |m| {
        m.datagrams_dropped(DropReason::TooLargeForPath) == 5
            && m.datagrams_dropped(DropReason::ReceiverUnsupported) == 5
    })
    .await;
    // Small datagrams fit the narrow receiver's limit.
    sender.send_datagram(None, PeerId::NONE, b"small");
    let (header, small) = narrow
        .recv_datagram(support::PATIENCE)
        .await
        .expect("small datagram fits");
    assert_eq!((header.sender, &small[..]), (sender.peer, &b"small"[..]));

    // Bursts towards a 3-datagram buffer congest; the sender never sees an error.
    let mut bursts = 0;
    while m.datagrams_dropped(DropReason::Congested) == 0 {
        assert!(bursts < 50, "no congestion drop after {bursts} bursts");
        for _ in 0..200 {
            sender.send_datagram(None, PeerId::NONE, &body[..500]);
        }
        bursts += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sender.connection.close_reason().is_none(),
        "the sender's connection is untouched"
    );
    // Every client is still served on its control stream.
    for (nonce, client) in [&mut healthy, &mut narrow, &mut deaf]
        .into_iter()
        .enumerate()
    {
        let nonce = 100 + nonce as u64;
        client.send_frame(&ControlFrame::Ping(nonce)).await;
        let mut frame = client.next_frame().await;
        while matches!(frame, Some(ControlFrame::PeerJoined(_))) {
            frame = client.next_frame().await;
        }
        assert_eq!(frame, Some(ControlFrame::Pong(nonce)));
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagram_rate_limit_drops_excess_and_notifies_the_sender() {
    let relay = relay_with(Limits {
        datagrams_per_sec: 10,
        ..Limits::default()
    })
    .await;
    let mut sender = TestClient::join(&relay, "r", None).await;
    let _receiver = TestClient::join(&relay, "r", None).await;
    assert!(matches!(
        sender.next_frame().await,
        Some(ControlFrame::PeerJoined(_))
    ));
    for seq in 0..100u8 {
        sender.send_datagram(None, PeerId::NONE, &[seq]);
    }
    let m = relay.metrics();
    eventually("all 100 datagrams received by the relay", m, |m| {
        m.datagrams_received() == 100
    })
    .await;
    let limited = m.datagrams_dropped(DropReason::RateLimited);
    assert!(
        limited >= 50,
        "most of a 10x burst is over the limit, got {limited}"
    );
    assert_eq!(
        m.datagrams_forwarded() + limited,
        100,
        "every datagram is either forwarded or counted"
    );
    sender
        .expect_error(vcall_proto::ErrorCode::RateLimited)
        .await;
    sender.assert_nothing_pending(7).await;
    relay.shutdown().await;
}
