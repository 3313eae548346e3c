//! Access control on a real loopback relay: token mode's refusals (each with its reason, on the
//! wire and in the metrics), quotas, revocation cutting a member, per-label usage in
//! `/metrics`, and the per-source connection limit.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{ClientOptions, PATIENCE, TestClient, eventually, hello_with_token};
use vcall_proto::{ControlFrame, DenyReason, ErrorCode};
use vcall_relay::access::{TokenClaims, TokenIssuer, unix_now};
use vcall_relay::sources::SourceRefusal;
use vcall_relay::{AccessConfig, Limits, RejectReason, Relay, RelayConfig, RelayHandle};

fn claims(label: &str) -> TokenClaims {
    TokenClaims::new(label, Duration::from_secs(3600)).unwrap()
}

async fn token_relay(issuer: &TokenIssuer, revocation_file: &Path) -> RelayHandle {
    Relay::bind(RelayConfig {
        access: AccessConfig::Token {
            verifier: issuer.verifier(),
            revocation_file: Some(revocation_file.to_owned()),
        },
        ..RelayConfig::loopback()
    })
    .await
    .expect("relay starts")
}

/// Joins with `token`, expecting a `Welcome`.
async fn join(relay: &RelayHandle, room: &str, token: &str) -> TestClient {
    let hello = hello_with_token(room, None, Some(token));
    TestClient::join_saying(relay, &hello, &ClientOptions::default()).await
}

/// Sends `Hello` with `token` and expects `AccessDenied` for `reason`, then the close.
async fn expect_denied(relay: &RelayHandle, room: &str, token: Option<&str>, reason: DenyReason) {
    let mut client = TestClient::open(relay, &ClientOptions::default()).await;
    client
        .send_frame(&hello_with_token(room, None, token))
        .await;
    expect_denied_frame(&mut client, reason).await;
}

async fn expect_denied_frame(client: &mut TestClient, reason: DenyReason) {
    match client.next_frame().await {
        Some(ControlFrame::Error { code, message }) => {
            assert_eq!(code, ErrorCode::AccessDenied, "{message}");
            assert_eq!(
                DenyReason::from_message(&message),
                Some(reason),
                "{message}"
            );
        }
        other => panic!("expected AccessDenied {reason}, got {other:?}"),
    }
    assert_eq!(
        client.closed_with().await,
        Some(u64::from(ErrorCode::AccessDenied.to_u16()))
    );
}

#[tokio::test]
async fn token_mode_refuses_each_bad_token_with_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::generate().unwrap();
    let revoked = claims("gone");
    std::fs::write(dir.path().join("revoked"), format!("{}\n", revoked.id)).unwrap();
    let relay = token_relay(&issuer, &dir.path().join("revoked")).await;

    let stranger = TokenIssuer::generate()
        .unwrap()
        .issue(&claims("x"))
        .unwrap();
    let mut old = claims("old");
    old.expires = unix_now() - 1;
    let expired = issuer.issue(&old).unwrap();
    let revoked_token = issuer.issue(&revoked).unwrap();
    let cases = [
        (None, DenyReason::TokenRequired),
        (Some("v4.public.AAAA"), DenyReason::TokenMalformed),
        (Some(stranger.as_str()), DenyReason::TokenBadSignature),
        (Some(expired.as_str()), DenyReason::TokenExpired),
        (Some(revoked_token.as_str()), DenyReason::TokenRevoked),
    ];
    for (token, reason) in cases {
        expect_denied(&relay, "room", token, reason).await;
    }
    let metrics = relay.metrics();
    for (_, reason) in cases {
        assert_eq!(metrics.access_denials(reason), 1, "{reason}");
    }
    assert_eq!(metrics.rejections(RejectReason::AccessDenied), 5);
    assert_eq!(metrics.joins(), 0);
    let text = metrics.render_prometheus();
    assert!(
        text.contains(r#"vcall_relay_access_denied_total{reason="token-expired"} 1"#),
        "{text}"
    );

    // A valid token joins, and its members reach each other.
    let token = issuer.issue(&claims("team-a")).unwrap();
    let alice = join(&relay, "room", &token).await;
    let bob = join(&relay, "room", &token).await;
    alice.send_datagram(None, alice.peer, b"hello bob");
    let (header, body) = bob.recv_datagram(PATIENCE).await.expect("forwarded");
    assert_eq!(header.sender, alice.peer);
    assert_eq!(&body[..], b"hello bob");
    relay.shutdown().await;
}

#[tokio::test]
async fn quotas_hold_per_tenant_and_per_label_usage_shows_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::generate().unwrap();
    let relay = token_relay(&issuer, &dir.path().join("revoked")).await;
    let mut limited = claims("team-a");
    limited.max_rooms = Some(1);
    limited.max_members_per_room = Some(2);
    let token = issuer.issue(&limited).unwrap();
    let other = issuer.issue(&claims("team-b")).unwrap();

    let first = join(&relay, "one", &token).await;
    let second = join(&relay, "one", &token).await;
    expect_denied(&relay, "one", Some(&token), DenyReason::QuotaMembers).await;
    expect_denied(&relay, "two", Some(&token), DenyReason::QuotaRooms).await;
    // Another tenant is not held by team-a's quotas.
    let _guest = join(&relay, "one", &other).await;
    let metrics = relay.metrics();
    assert_eq!(metrics.access_denials(DenyReason::QuotaMembers), 1);
    assert_eq!(metrics.access_denials(DenyReason::QuotaRooms), 1);

    first.send_datagram(None, first.peer, &[7; 100]);
    let text = metrics.render_prometheus();
    assert!(
        text.contains(r#"vcall_relay_tenant_members{label="team-a"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"vcall_relay_tenant_rooms{label="team-a"} 1"#));
    assert!(text.contains(r#"vcall_relay_tenant_members{label="team-b"} 1"#));
    eventually("team-a's bytes are counted", metrics, |m| {
        m.render_prometheus()
            .contains(r#"vcall_relay_tenant_datagram_bytes_total{label="team-a"} 107"#)
    })
    .await;

    // Leaving frees the seat: the room quota lets team-a move to another room.
    first.connection.close(0u32.into(), b"bye");
    second.connection.close(0u32.into(), b"bye");
    eventually("team-a left", metrics, |m| m.peers() == 1).await;
    let _moved = join(&relay, "two", &token).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn revoking_a_token_cuts_its_members_within_a_second_and_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoked");
    let issuer = TokenIssuer::generate().unwrap();
    let relay = token_relay(&issuer, &file).await;
    let doomed = claims("team-a");
    let token = issuer.issue(&doomed).unwrap();
    let kept = issuer.issue(&claims("team-b")).unwrap();
    let mut alice = join(&relay, "room", &token).await;
    let mut bob = join(&relay, "room", &kept).await;
    assert_eq!(bob.roster.len(), 1);
    assert!(matches!(
        alice.next_frame().await,
        Some(ControlFrame::PeerJoined(_))
    ));

    std::fs::write(&file, format!("# revoked by the operator\n{}\n", doomed.id)).unwrap();
    let revoked_at = Instant::now();
    expect_denied_frame(&mut alice, DenyReason::TokenRevoked).await;
    let cut_after = revoked_at.elapsed();
    assert!(
        cut_after <= Duration::from_secs(1),
        "cut {cut_after:?} after the revocation"
    );
    match bob.next_frame().await {
        Some(ControlFrame::PeerLeft { peer }) => assert_eq!(peer, alice.peer),
        other => panic!("expected PeerLeft, got {other:?}"),
    }
    bob.assert_nothing_pending(1).await;
    assert_eq!(relay.metrics().access_denials(DenyReason::TokenRevoked), 1);
    // And it is refused from now on.
    expect_denied(&relay, "room", Some(&token), DenyReason::TokenRevoked).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn open_mode_ignores_tokens_and_needs_none() {
    let relay = Relay::bind(RelayConfig::loopback()).await.unwrap();
    let _anyone = TestClient::join(&relay, "room", Some("a")).await;
    let garbage = join(&relay, "room", "v4.public.not-checked").await;
    assert_ne!(garbage.peer, _anyone.peer);
    assert_eq!(relay.metrics().rejections(RejectReason::AccessDenied), 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_source_over_its_connection_limit_is_refused_while_another_source_joins() {
    let relay = Relay::bind(RelayConfig {
        limits: Limits {
            max_connections_per_source: 2,
            handshakes_per_source_per_sec: 0,
            ..Limits::default()
        },
        ..RelayConfig::loopback()
    })
    .await
    .unwrap();
    let _one = TestClient::join(&relay, "room", None).await;
    let _two = TestClient::join(&relay, "room", None).await;
    let refused = support::connect(
        relay.local_addr(),
        relay.fingerprint(),
        &ClientOptions::default(),
    )
    .await;
    assert!(
        refused.is_err(),
        "a third connection from 127.0.0.1 is refused"
    );
    assert_eq!(
        relay.metrics().source_refusals(SourceRefusal::Connections),
        1
    );
    let elsewhere = ClientOptions {
        bind: "127.0.0.2:0".parse().unwrap(),
        ..ClientOptions::default()
    };
    let other = TestClient::join_with(&relay, "room", None, &elsewhere).await;
    assert_eq!(other.roster.len(), 2);
    // A slot comes back when a connection ends.
    _one.connection.close(0u32.into(), b"bye");
    eventually("the slot is free", relay.metrics(), |m| {
        m.connections_open() == 2
    })
    .await;
    let _three = TestClient::join(&relay, "room", None).await;
    relay.shutdown().await;
}
