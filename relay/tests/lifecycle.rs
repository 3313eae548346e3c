//! Connection and relay lifecycle: leaving, slow consumers, shutdown with GoAway, a stable
//! fingerprint across restarts, the metrics endpoint, and the `vcall-relay` binary itself.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{ClientOptions, TestClient, eventually, signal};
use vcall_proto::{ControlFrame, ErrorCode, PeerId};
use vcall_relay::{CertificateSource, Limits, RejectReason, Relay, RelayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_by_frame_or_stream_end_tells_the_others() {
    let relay = Relay::bind(RelayConfig::loopback()).await.unwrap();
    let mut stays = TestClient::join(&relay, "r", None).await;
    let mut leaves = TestClient::join(&relay, "r", None).await;
    let mut finishes = TestClient::join(&relay, "r", None).await;
    for _ in 0..2 {
        assert!(matches!(
            stays.next_frame().await,
            Some(ControlFrame::PeerJoined(_))
        ));
    }
    assert!(matches!(
        leaves.next_frame().await,
        Some(ControlFrame::PeerJoined(_))
    ));

    leaves.send_frame(&ControlFrame::Leave).await;
    assert_eq!(
        leaves.closed_with().await,
        Some(0),
        "a normal close uses code 0"
    );
    assert_eq!(
        stays.next_frame().await,
        Some(ControlFrame::PeerLeft { peer: leaves.peer })
    );
    assert_eq!(
        finishes.next_frame().await,
        Some(ControlFrame::PeerLeft { peer: leaves.peer })
    );

    finishes.finish_stream().await;
    assert_eq!(
        stays.next_frame().await,
        Some(ControlFrame::PeerLeft {
            peer: finishes.peer
        })
    );
    eventually("occupancy updated", relay.metrics(), |m| {
        m.peers() == 1 && m.rooms() == 1
    })
    .await;
    stays.assert_nothing_pending(1).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_evicted_without_stalling_the_others() {
    let relay = Relay::bind(RelayConfig {
        limits: Limits {
            control_queue_frames: 32,
            ..Limits::default()
        },
        ..RelayConfig::loopback()
    })
    .await
    .unwrap();
    let mut talker = TestClient::join(&relay, "r", None).await;
    let mut listener = TestClient::join(&relay, "r", None).await;
    // A client with a 2 KiB control-stream window that never reads anything.
    let stalled_options = ClientOptions {
        stream_receive_window: Some(2048),
        ..ClientOptions::default()
    };
    let stalled = TestClient::join_with(&relay, "r", None, &stalled_options).await;
    for _ in 0..2 {
        assert!(matches!(
            talker.next_frame().await,
            Some(ControlFrame::PeerJoined(_))
        ));
    }
    assert!(matches!(
        listener.next_frame().await,
        Some(ControlFrame::PeerJoined(_))
    ));

    // Media keeps flowing to the listener while the stalled client ignores its datagrams.
    for seq in 0..100u32 {
        talker.send_datagram(None, PeerId::NONE, &seq.to_be_bytes());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut media = 0;
    while media < 100
        && listener
            .recv_datagram(Duration::from_secs(1))
            .await
            .is_some()
    {
        media += 1;
    }
    assert!(media >= 95, "listener got {media}/100 datagrams");

    // 1 KiB signals: the stalled client's window fills, then its queue, then it is evicted.
    let payload = vec![0xC5; 1024];
    let talker_id = talker.peer;
    let sending = async {
        for _ in 0..100 {
            talker.send_frame(&signal(PeerId::NONE, &payload)).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let stalled_id = stalled.peer;
    let receiving = async {
        let (mut signals, mut saw_stalled_leave) = (0, false);
        while signals < 100 {
            match listener.next_frame().await {
                Some(ControlFrame::Signal {
                    from, payload: got, ..
                }) => {
                    assert_eq!(from, talker_id);
                    assert_eq!(got.len(), 1024);
                    signals += 1;
                }
                Some(ControlFrame::PeerLeft { peer }) if peer == stalled_id => {
                    saw_stalled_leave = true
                }
                other => panic!("after {signals} signals: unexpected {other:?}"),
            }
        }
        saw_stalled_leave
    };
    let ((), listener_saw_leave) = tokio::join!(sending, receiving);
    assert_eq!(
        stalled.closed_with().await,
        Some(u64::from(ErrorCode::SlowConsumer.to_u16()))
    );
    if !listener_saw_leave {
        assert_eq!(
            listener.next_frame().await,
            Some(ControlFrame::PeerLeft { peer: stalled.peer })
        );
    }
    assert_eq!(
        talker.next_frame().await,
        Some(ControlFrame::PeerLeft { peer: stalled.peer })
    );
    assert_eq!(relay.metrics().rejections(RejectReason::SlowConsumer), 1);
    talker.assert_nothing_pending(1).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_go_away_to_everyone_then_closes() {
    let relay = Relay::bind(RelayConfig::loopback()).await.unwrap();
    let mut first = TestClient::join(&relay, "r", None).await;
    let mut second = TestClient::join(&relay, "other", None).await;
    let shutdown = tokio::spawn(relay.shutdown());
    for client in [&mut first, &mut second] {
        let mut frame = client.next_frame().await;
        while matches!(frame, Some(ControlFrame::PeerJoined(_))) {
            frame = client.next_frame().await;
        }
        assert!(
            matches!(
                frame,
                Some(ControlFrame::GoAway {
                    code: ErrorCode::ShuttingDown,
                    ..
                })
            ),
            "expected GoAway, got {frame:?}"
        );
        assert_eq!(
            client.next_frame().await,
            None,
            "the stream ends after GoAway"
        );
    }
    shutdown.await.unwrap();
    for client in [&first, &second] {
        assert_eq!(
            client.closed_with().await,
            Some(u64::from(ErrorCode::ShuttingDown.to_u16()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_with_the_same_state_dir_keeps_the_fingerprint() {
    let state = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        certificate: CertificateSource::SelfSigned {
            state_dir: state.path().to_path_buf(),
        },
        ..RelayConfig::loopback()
    };
    let first = Relay::bind(config.clone()).await.unwrap();
    let fingerprint = first.fingerprint().to_owned();
    assert!(first.is_self_signed());
    first.shutdown().await;

    let second = Relay::bind(config).await.unwrap();
    assert_eq!(second.fingerprint(), fingerprint);
    // And a client pinning that fingerprint still gets in.
    let client = TestClient::join(&second, "r", None).await;
    assert_ne!(client.peer, PeerId::NONE);
    second.shutdown().await;

    let other = Relay::bind(RelayConfig::loopback()).await.unwrap();
    assert_ne!(
        other.fingerprint(),
        fingerprint,
        "an ephemeral certificate is a different one"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_occupancy_and_health() {
    let relay = Relay::bind(RelayConfig {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..RelayConfig::loopback()
    })
    .await
    .unwrap();
    let addr = relay.metrics_addr().expect("metrics enabled");
    let _a = TestClient::join(&relay, "r", None).await;
    let _b = TestClient::join(&relay, "r", None).await;
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
    };
    let scrape = get("/metrics").await.unwrap();
    assert!(scrape.starts_with("HTTP/1.1 200 OK"));
    assert!(scrape.contains("\nvcall_relay_peers 2\n"), "{scrape}");
    assert!(scrape.contains("\nvcall_relay_rooms 1\n"));
    assert!(scrape.contains("vcall_relay_datagrams_dropped_total{reason=\"congested\"} 0\n"));
    assert!(get("/healthz").await.unwrap().ends_with("\r\n\r\nok\n"));
    relay.shutdown().await;
}

/// Starts the binary and returns it with its first two stdout lines.
fn start_binary(state_dir: &std::path::Path) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vcall-relay"))
        .args(["--listen", "127.0.0.1:0"])
        .env("VCALL_RELAY_STATE_DIR", state_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the relay binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a ready line").unwrap();
    let invite = lines.next().expect("an invite line").unwrap();
    (child, ready, invite)
}

fn stop_binary(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM exits 0, got {exit}");
}

#[test]
fn binary_prints_ready_line_keeps_its_fingerprint_and_exits_cleanly_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let (child, ready, invite) = start_binary(state.path());
    let fields: Vec<&str> = ready.split(' ').collect();
    assert_eq!(fields.len(), 4, "{ready}");
    assert_eq!(&fields[..2], ["vcall-relay", "ready"]);
    let listen = fields[2].strip_prefix("listen=").expect("listen=");
    let port = listen
        .strip_prefix("127.0.0.1:")
        .expect("the bound address")
        .parse::<u16>()
        .unwrap();
    assert_ne!(port, 0, "the real port is printed");
    let fingerprint = fields[3]
        .strip_prefix("fingerprint=")
        .expect("fingerprint=")
        .to_owned();
    assert_eq!(fingerprint.len(), 64);
    assert!(
        fingerprint
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
    assert_eq!(
        invite,
        format!("example invite: vcall://127.0.0.1:{port}/my-room?fp={fingerprint}")
    );
    assert!(!invite.contains('#'), "the relay never prints a secret");
    stop_binary(child);

    let (child, ready, _) = start_binary(state.path());
    assert!(
        ready.ends_with(&format!("fingerprint={fingerprint}")),
        "same state dir, same fingerprint"
    );
    stop_binary(child);
}
