//! Calls through a real loopback relay in token mode: a valid token carried by the invite link
//! gives the seed call unchanged (keys both ways, media decoded); every refusal reaches the
//! call as its own `AccessDenied` reason (and the bot's report), is never retried, and a
//! revocation cuts a member who is in the call.

mod support;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use support::{decoded_from, small_call, wait_for};

use vcall_engine::bot::Report;
use vcall_engine::{CallHandle, CallPhase, Command, fresh_invite_link_with_token};
use vcall_proto::DenyReason;
use vcall_relay::access::{TokenClaims, TokenIssuer, unix_now};
use vcall_relay::{AccessConfig, Relay, RelayConfig, RelayHandle};

static ONE_CALL_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A relay in token mode, its operator key and its revocation file.
struct TokenRelay {
    runtime: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
    issuer: TokenIssuer,
    revocation_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenRelay {
    /// Starts with the token ids `revoked` already in the revocation file.
    fn start(revoked: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let revocation_file = dir.path().join("revoked-tokens");
        let lines: String = revoked.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(&revocation_file, lines).unwrap();
        let issuer = TokenIssuer::generate().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime
            .block_on(Relay::bind(RelayConfig {
                access: AccessConfig::Token {
                    verifier: issuer.verifier(),
                    revocation_file: Some(revocation_file.clone()),
                },
                ..RelayConfig::loopback()
            }))
            .unwrap();
        Self {
            runtime,
            handle: Some(handle),
            issuer,
            revocation_file,
            _dir: dir,
        }
    }

    fn token(&self, claims: &TokenClaims) -> String {
        self.issuer.issue(claims).unwrap()
    }

    /// A fresh link to `room` on this relay carrying `token`.
    fn link(&self, room: &str, token: Option<&str>) -> String {
        let h = self.handle.as_ref().unwrap();
        fresh_invite_link_with_token(
            "127.0.0.1",
            h.local_addr().port(),
            Some(h.fingerprint()),
            token,
            room,
        )
        .unwrap()
    }

    fn metrics(&self) -> &vcall_relay::Metrics {
        self.handle.as_ref().unwrap().metrics()
    }
}

impl Drop for TokenRelay {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }
}

fn claims(label: &str) -> TokenClaims {
    TokenClaims::new(label, Duration::from_secs(3600)).unwrap()
}

fn in_call(call: &CallHandle) -> bool {
    call.state().phase == CallPhase::InCall
}

/// Waits for `call` to end and checks it ended denied for `reason`, in its state and in the
/// bot's report, without a reconnect attempt.
fn expect_denied(call: &CallHandle, reason: DenyReason) {
    wait_for(
        &format!("the call to end with {reason}"),
        Duration::from_secs(30),
        || call.ended(),
    );
    let state = call.state();
    let CallPhase::Ended(end) = &state.phase else {
        panic!("not ended: {:?}", state.phase)
    };
    assert_eq!(end.access_denied(), Some(reason), "{end}");
    assert!(!end.is_reconnectable(), "{end}");
    assert_eq!(state.reconnects, 0);
    let report = Report::from_state(&state, 1.0, None);
    assert!(report.failed);
    assert_eq!(report.access_denied.as_deref(), Some(reason.as_str()));
    assert!(
        !report.link.contains("v4.public"),
        "the token never appears in the report: {}",
        report.link
    );
}

#[test]
fn a_valid_token_in_the_link_gives_the_seed_call_unchanged() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TokenRelay::start(&[]);
    let token = relay.token(&claims("team-a"));
    let link = relay.link("seed", Some(&token));
    let names = ["Alice", "Bob", "Casey"];
    let mut calls = Vec::new();
    for name in names {
        let call = CallHandle::start(small_call(&link, name), None);
        wait_for(&format!("{name} to join"), Duration::from_secs(30), || {
            in_call(&call)
        });
        calls.push(call);
    }
    wait_for(
        "everyone to decode video and audio from both others",
        Duration::from_secs(120),
        || {
            calls.iter().zip(names).all(|(c, me)| {
                let s = c.state();
                names.iter().filter(|n| **n != me).all(|other| {
                    decoded_from(&s, other) >= 30
                        && s.peers.iter().any(|p| {
                            p.name.as_deref() == Some(*other) && p.stats.audio_peak_hz.is_some()
                        })
                })
            })
        },
    );
    for (call, me) in calls.iter().zip(names) {
        let s = call.state();
        assert_eq!(s.peers.len(), 2, "{me} sees {:?}", s.peers);
        for p in &s.peers {
            assert!(p.verified && p.key_received && p.key_sent, "{me}: {p:?}");
            assert_eq!(p.stats.decrypt_failures, 0);
        }
        assert!(!s.redacted_link.contains(&token), "{}", s.redacted_link);
    }
    let text = relay.metrics().render_prometheus();
    assert!(
        text.contains(r#"vcall_relay_tenant_members{label="team-a"} 3"#),
        "{text}"
    );
    for call in &calls {
        call.send(Command::Leave);
    }
    wait_for("everyone to leave", Duration::from_secs(10), || {
        calls.iter().all(|c| c.ended())
    });
}

#[test]
fn each_refusal_reaches_the_call_with_its_reason_and_is_not_retried() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let gone = claims("gone");
    let relay = TokenRelay::start(&[&gone.id]);
    let stranger = TokenIssuer::generate()
        .unwrap()
        .issue(&claims("elsewhere"))
        .unwrap();
    let mut old = claims("old");
    old.expires = unix_now() - 1;
    let expired = relay.token(&old);
    let revoked = relay.token(&gone);
    let cases = [
        (None, DenyReason::TokenRequired),
        (Some("v4.public.AAAA"), DenyReason::TokenMalformed),
        (Some(stranger.as_str()), DenyReason::TokenBadSignature),
        (Some(expired.as_str()), DenyReason::TokenExpired),
        (Some(revoked.as_str()), DenyReason::TokenRevoked),
    ];
    for (token, reason) in cases {
        let call = CallHandle::start(small_call(&relay.link("room", token), "Alice"), None);
        expect_denied(&call, reason);
        assert_eq!(relay.metrics().access_denials(reason), 1, "{reason}");
    }

    // Quotas: one room and one member for team-a.
    let mut limited = claims("team-a");
    limited.max_rooms = Some(1);
    limited.max_members_per_room = Some(1);
    let token = relay.token(&limited);
    // Each fresh link is a room of its own (its own secret, so its own room id).
    let one = relay.link("one", Some(&token));
    let alice = CallHandle::start(small_call(&one, "Alice"), None);
    wait_for("Alice to join", Duration::from_secs(30), || in_call(&alice));
    let bob = CallHandle::start(small_call(&one, "Bob"), None);
    expect_denied(&bob, DenyReason::QuotaMembers);
    let casey = CallHandle::start(small_call(&relay.link("two", Some(&token)), "Casey"), None);
    expect_denied(&casey, DenyReason::QuotaRooms);
    assert!(
        in_call(&alice),
        "the refusals do not touch the member already in"
    );
    alice.send(Command::Leave);
    wait_for("Alice to leave", Duration::from_secs(10), || alice.ended());
}

#[test]
fn revoking_a_token_ends_the_call_of_its_member_for_good() {
    let _one = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let relay = TokenRelay::start(&[]);
    let doomed = claims("team-a");
    let token = relay.token(&doomed);
    let kept = relay.token(&claims("team-b"));
    // One room (one secret), entered with two tenants' tokens.
    let alice_link = relay.link("room", Some(&token));
    let mut bob_link = vcall_crypto::InviteLink::parse(&alice_link).unwrap();
    bob_link.access_token = Some(kept);
    let alice = CallHandle::start(small_call(&alice_link, "Alice"), None);
    let bob = CallHandle::start(small_call(&bob_link.to_string(), "Bob"), None);
    wait_for("both to join", Duration::from_secs(30), || {
        in_call(&alice) && in_call(&bob)
    });
    wait_for("Bob to decode Alice", Duration::from_secs(30), || {
        decoded_from(&bob.state(), "Alice") > 0
    });
    std::fs::write(&relay.revocation_file, format!("{}\n", doomed.id)).unwrap();
    expect_denied(&alice, DenyReason::TokenRevoked);
    wait_for("Bob to see Alice leave", Duration::from_secs(10), || {
        bob.state().peers.is_empty()
    });
    assert!(in_call(&bob), "the other tenant's member stays");
    bob.send(Command::Leave);
    wait_for("Bob to leave", Duration::from_secs(10), || bob.ended());
}
