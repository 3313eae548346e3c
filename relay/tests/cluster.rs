//! A clustered relay against a real `nats-server` (started on a free port, stopped by the
//! test) and a hand-driven fake relay on NATS, speaking the cluster messages of
//! docs/RELAY.md byte for byte: what the relay publishes for its members, which member lists,
//! signals and datagrams from another node it accepts, what it refuses and counts (garbage,
//! foreign peer ids, unannounced senders), the silent node's expiry, and a NATS outage that
//! leaves the local room alone.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use support::{TestClient, datagram, signal};
use vcall_proto::control::RosterEntry;
use vcall_proto::{ControlFrame, PeerId};
use vcall_relay::cluster::{ClusterMessage, room_subject};
use vcall_relay::{ClusterConfig, ClusterDrop, NatsAuth, NodeId, Relay, RelayConfig};

struct NatsServer(Child, u16);

impl NatsServer {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra flags (e.g. credentials it requires).
    fn start_with(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("nats-server is installed (scripts/install-deps.sh installs it)");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child, port)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.1)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(n: u16) -> NodeId {
    NodeId::new(n).unwrap()
}

/// The next cluster message from the relay (node 1) on `subscriber` that `keep` accepts (the
/// fake's own messages come back too: its connection echoes).
async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    keep: impl Fn(&ClusterMessage) -> bool,
) -> ClusterMessage {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = subscriber.next().await.expect("subscription open");
            if let Ok(m) = ClusterMessage::decode(&message.payload)
                && m.node() == node(1)
                && keep(&m)
            {
                return m;
            }
        }
    })
    .await
    .expect("a cluster message within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_relay_speaks_the_cluster_messages_and_trusts_only_what_a_node_owns() {
    let nats = NatsServer::start();
    let relay = Relay::bind(RelayConfig {
        cluster: Some(ClusterConfig::new(nats.url(), node(1))),
        ..RelayConfig::loopback()
    })
    .await
    .unwrap();
    support::eventually("the cluster link up", relay.metrics(), |m| {
        m.cluster_link_up() == Some(true)
    })
    .await;
    // The fake relay, node 9, listens to the room's subject before anyone joins.
    let fake = async_nats::connect(nats.url()).await.unwrap();
    let subject = room_subject("vcall", b"garden");
    let mut heard = fake.subscribe(subject.clone()).await.unwrap();
    fake.flush().await.unwrap();
    let publish = |m: ClusterMessage| {
        let fake = fake.clone();
        let subject = subject.clone();
        async move {
            fake.publish(subject, m.encode()).await.unwrap();
            fake.flush().await.unwrap();
        }
    };

    let mut alice = TestClient::join(&relay, "garden", Some("alice")).await;
    assert_eq!(
        NodeId::of_peer(alice.peer),
        Some(node(1)),
        "ids carry the node"
    );
    let announced = next_message(&mut heard, |m| matches!(m, ClusterMessage::Members { .. })).await;
    assert_eq!(
        announced,
        ClusterMessage::Members {
            node: node(1),
            members: vec![RosterEntry {
                peer: alice.peer,
                name: Some("alice".into())
            }]
        }
    );

    // Garbage, and a list naming a peer of node 1 as node 9's: refused and counted.
    fake.publish(subject.clone(), Bytes::from_static(&[0xff; 12]))
        .await
        .unwrap();
    publish(ClusterMessage::Members {
        node: node(9),
        members: vec![RosterEntry {
            peer: node(1).peer(77),
            name: None,
        }],
    })
    .await;
    support::eventually("garbage and forgery counted", relay.metrics(), |m| {
        m.cluster_drops(ClusterDrop::Malformed) >= 1
            && m.cluster_drops(ClusterDrop::Unverified) >= 1
    })
    .await;

    // Node 9 announces Bob: Alice is told, and the relay answers node 9 with its list at once.
    let bob = node(9).peer(1);
    publish(ClusterMessage::Members {
        node: node(9),
        members: vec![RosterEntry {
            peer: bob,
            name: Some("bob".into()),
        }],
    })
    .await;
    assert_eq!(
        alice.next_frame().await,
        Some(ControlFrame::PeerJoined(RosterEntry {
            peer: bob,
            name: Some("bob".into())
        }))
    );
    let answer = next_message(&mut heard, |m| matches!(m, ClusterMessage::Members { .. })).await;
    assert_eq!(answer.node(), node(1));

    // Bob's signal and datagram reach Alice, stamped as Bob's.
    publish(ClusterMessage::Signal {
        node: node(9),
        from: bob,
        to: alice.peer,
        payload: Bytes::from_static(b"wrapped key"),
    })
    .await;
    assert_eq!(
        alice.next_frame().await,
        Some(ControlFrame::Signal {
            to: alice.peer,
            from: bob,
            payload: Bytes::from_static(b"wrapped key")
        })
    );
    publish(ClusterMessage::Datagram {
        node: node(9),
        datagram: datagram(None, bob, b"from bob"),
    })
    .await;
    let (header, body) = alice.recv_datagram(Duration::from_secs(5)).await.unwrap();
    assert_eq!((header.sender, &body[..]), (bob, &b"from bob"[..]));
    // A sender node 9 never announced gets nowhere.
    let before = relay.metrics().cluster_drops(ClusterDrop::Unverified);
    publish(ClusterMessage::Datagram {
        node: node(9),
        datagram: datagram(None, node(9).peer(2), b"stranger"),
    })
    .await;
    support::eventually("the stranger's datagram counted", relay.metrics(), |m| {
        m.cluster_drops(ClusterDrop::Unverified) > before
    })
    .await;
    assert!(
        alice
            .recv_datagram(Duration::from_millis(300))
            .await
            .is_none()
    );

    // Alice's datagram and her signal to Bob cross to the cluster, stamped by the relay.
    alice.send_datagram(None, PeerId::NONE, b"from alice");
    let crossed = next_message(&mut heard, |m| matches!(m, ClusterMessage::Datagram { .. })).await;
    let ClusterMessage::Datagram {
        node: from,
        datagram: d,
    } = crossed
    else {
        unreachable!()
    };
    assert_eq!(from, node(1));
    assert_eq!(
        vcall_proto::DatagramHeader::decode(&d).unwrap().0.sender,
        alice.peer
    );
    alice.send_frame(&signal(bob, b"to bob")).await;
    let crossed = next_message(&mut heard, |m| matches!(m, ClusterMessage::Signal { .. })).await;
    assert_eq!(
        crossed,
        ClusterMessage::Signal {
            node: node(1),
            from: alice.peer,
            to: bob,
            payload: Bytes::from_static(b"to bob")
        }
    );

    // Node 9 falls silent: Bob leaves Alice's room within the presence expiry (3 s).
    let silent = Instant::now();
    assert_eq!(
        alice.next_frame().await,
        Some(ControlFrame::PeerLeft { peer: bob })
    );
    assert!(
        silent.elapsed() < Duration::from_secs(5),
        "{:?}",
        silent.elapsed()
    );

    // NATS goes away: the link is down, /healthz-style state says so, the room goes on.
    drop(heard);
    drop(nats);
    support::eventually("the cluster link down", relay.metrics(), |m| {
        m.cluster_link_up() == Some(false)
    })
    .await;
    alice.assert_nothing_pending(7).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_nats_and_wrong_ones_leave_the_link_down_without_harm() {
    let nats = NatsServer::start_with(&["--user", "relay", "--pass", "s3cret"]);
    let relay_with = |auth: NatsAuth| {
        let mut cluster = ClusterConfig::new(nats.url(), node(1));
        cluster.auth = auth;
        Relay::bind(RelayConfig {
            cluster: Some(cluster),
            ..RelayConfig::loopback()
        })
    };
    let good = relay_with(NatsAuth::UserPassword {
        user: "relay".into(),
        password: "s3cret".into(),
    })
    .await
    .unwrap();
    support::eventually("the link up with the right password", good.metrics(), |m| {
        m.cluster_link_up() == Some(true)
    })
    .await;
    let bad = relay_with(NatsAuth::UserPassword {
        user: "relay".into(),
        password: "wrong".into(),
    })
    .await
    .expect("a relay starts while NATS refuses it (it keeps retrying)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bad.metrics().cluster_link_up(), Some(false));
    // Local rooms on the refused relay work as ever.
    let mut alice = TestClient::join(&bad, "r", None).await;
    let mut bob = TestClient::join(&bad, "r", None).await;
    assert!(matches!(
        alice.next_frame().await,
        Some(ControlFrame::PeerJoined(_))
    ));
    bob.assert_nothing_pending(1).await;
    assert!(format!("{:?}", NatsAuth::Token("t0ken".into())).contains("redacted"));
    good.shutdown().await;
    bad.shutdown().await;
}
