//! Error screens against the real engine: a relay that does not answer, a relay whose
//! certificate does not match the link, and a relay in token mode refusing a link without its
//! access token all bring the app back to the lobby with a human explanation and what to do
//! next, without freezing.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use vcall_desktop::ui::embedded_relay::{EmbeddedRelay, new_room_link};
use vcall_desktop::ui::{LaunchOptions, VcallApp};
use vcall_relay::access::TokenIssuer;
use vcall_relay::{AccessConfig, RelayConfig};

/// Generous: connection attempts time out, and two cores are shared.
const DEADLINE: Duration = Duration::from_secs(90);

fn join(link: String) -> Harness<'static, VcallApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| {
            VcallApp::new(
                &cc.egui_ctx,
                LaunchOptions {
                    name: Some("Ada".into()),
                    link: Some(link),
                    ..LaunchOptions::hermetic()
                },
            )
        })
}

/// Steps until the lobby shows an error card titled `title`; true when it did.
fn wait_for_error(harness: &mut Harness<'static, VcallApp>, title: &str) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        harness.step();
        if !harness.state().in_call() && harness.query_by_label(title).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

#[test]
fn an_unreachable_relay_is_explained_in_the_lobby() {
    // A port nobody listens on: bind it, note it, free it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let link = new_room_link("127.0.0.1", port, Some(&"ab".repeat(32)), None).expect("link");
    let mut harness = join(link);
    assert!(
        wait_for_error(&mut harness, "Couldn't reach the relay"),
        "last lobby state: {:?}",
        harness.state().lobby.ended
    );
    harness.get_by_label_contains("Check that the link is complete");
    harness.get_by_label("Start a call");
}

#[test]
fn a_certificate_mismatch_is_explained_in_the_lobby() {
    let mut relay = EmbeddedRelay::new().expect("runtime");
    let info = relay.start(RelayConfig::loopback()).expect("relay");
    let wrong_fingerprint = "00".repeat(32);
    assert_ne!(info.fingerprint, wrong_fingerprint);
    let link = new_room_link(
        "127.0.0.1",
        info.public_addr.port(),
        Some(&wrong_fingerprint),
        None,
    )
    .expect("link");
    let mut harness = join(link);
    assert!(
        wait_for_error(&mut harness, "The relay isn't the one in the link"),
        "last lobby state: {:?}",
        harness.state().lobby.ended
    );
    harness.get_by_label_contains("Ask the host for a fresh link");
}

#[test]
fn a_relay_that_needs_a_token_says_so_in_the_lobby() {
    let mut relay = EmbeddedRelay::new().expect("runtime");
    let issuer = TokenIssuer::generate().expect("operator key");
    let info = relay
        .start(RelayConfig {
            access: AccessConfig::Token {
                verifier: issuer.verifier(),
                revocation_file: None,
            },
            ..RelayConfig::loopback()
        })
        .expect("relay");
    let link = new_room_link(
        "127.0.0.1",
        info.public_addr.port(),
        Some(&info.fingerprint),
        None,
    )
    .expect("link");
    let mut harness = join(link);
    assert!(
        wait_for_error(&mut harness, "This relay needs an access token"),
        "last lobby state: {:?}",
        harness.state().lobby.ended
    );
    harness.get_by_label_contains("ask its operator for an invite link");
}
