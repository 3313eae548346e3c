//! UI tests against the real engine and a real relay (kittest, no display needed): starting a
//! call shows the invite link; joining with a headless bot peer (the engine in-process, as
//! `vcall-bot` runs it) shows two named tiles; muting changes the self tile's badge; the security
//! panel shows the same room security code as the bot's report. Call tests run one at a time so
//! they never compete for the CPU.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Bot;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use vcall_desktop::ui::embedded_relay::{EmbeddedRelay, new_room_link};
use vcall_desktop::ui::names::fingerprint_tag;
use vcall_desktop::ui::{LaunchOptions, VcallApp};
use vcall_engine::{AudioInput, CallConfig, CallPhase, VideoInput, VideoSettings};
use vcall_relay::RelayConfig;

/// Serialises the call tests.
static ONE_CALL_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Generous: debug builds, RSA key generation and two cores shared with other work.
const DEADLINE: Duration = Duration::from_secs(90);

fn app_harness(options: LaunchOptions) -> Harness<'static, VcallApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| VcallApp::new(&cc.egui_ctx, options))
}

/// Steps the UI until `done` holds or the deadline passes; returns whether it held.
fn step_until(
    harness: &mut Harness<'static, VcallApp>,
    done: impl Fn(&Harness<'static, VcallApp>) -> bool,
) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        harness.step();
        if done(harness) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

/// The bot's settings: test pattern at 320x180, 15 fps, and a tone.
fn bot_config(link: &str, name: &str) -> CallConfig {
    let mut config = CallConfig::new(link, name);
    config.video = VideoSettings {
        width: 320,
        height: 180,
        fps: 15,
        ..VideoSettings::default()
    };
    config.camera = VideoInput::TestPattern;
    config.mic = AudioInput::Tone;
    config
}

#[test]
fn starting_a_call_shows_the_invite_link() {
    let _serial = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut harness = app_harness(LaunchOptions {
        name: Some("Ada".into()),
        ..LaunchOptions::hermetic()
    });
    harness.step();
    harness.get_by_label("Start a call").click();
    let in_call = step_until(&mut harness, |h| {
        h.state()
            .call_state()
            .is_some_and(|state| state.phase == CallPhase::InCall)
    });
    let state = harness.state().call_state().cloned();
    assert!(in_call, "the call did not start; last state: {state:?}");
    let link = harness
        .state()
        .invite_link()
        .expect("an invite link")
        .to_owned();
    assert!(
        link.starts_with("vcall://") && link.contains("#k="),
        "{link}"
    );
    harness.get_by_label(&format!("Invite link: {link}"));
    harness.get_by_label("Copy invite link");
    // Our tile carries our fingerprint tag; the test tone is a voice: it may add ", speaking".
    let my_tag = state
        .and_then(|s| fingerprint_tag(&s.security.my_fingerprint))
        .expect("our fingerprint");
    harness.get_by_label_contains(&format!("Ada (you) · {my_tag}: microphone on, camera on"));
}

#[test]
fn a_bot_joins_two_named_tiles_mute_badge_and_matching_security_code() {
    let _serial = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut relay = EmbeddedRelay::new().expect("runtime");
    let info = relay.start(RelayConfig::loopback()).expect("relay starts");
    let link = new_room_link(
        "127.0.0.1",
        info.public_addr.port(),
        Some(&info.fingerprint),
        None,
    )
    .expect("link");

    let mut harness = app_harness(LaunchOptions {
        name: Some("Ada".into()),
        link: Some(link.clone()),
        ..LaunchOptions::hermetic()
    });
    let bot = Bot::start(bot_config(&link, "Bot"), Duration::from_secs(25));

    // Two tiles with names and fingerprint tags, the bot proved it has the link and is
    // covered by the security code.
    let both = step_until(&mut harness, |h| {
        h.query_by_label_contains("Ada (you) · ").is_some()
            && h.query_by_label_contains("Bot · ").is_some()
            && h.state()
                .call_state()
                .is_some_and(|s| s.peers.iter().any(|p| p.verified && p.member))
    });
    let state = harness.state().call_state().cloned();
    assert!(both, "two tiles expected; state: {state:?}");
    let state = state.expect("a call state");
    assert_eq!(
        state.security.member_count, 2,
        "the code covers Ada and the bot"
    );
    harness.get_by_label("End-to-end encryption: everyone has the room link");
    let my_tag = fingerprint_tag(&state.security.my_fingerprint).expect("our fingerprint");

    // Mute: the engine confirms and the badge follows.
    harness.get_by_label("Mute microphone").click();
    let muted = format!("Ada (you) · {my_tag}: microphone muted, camera on");
    assert!(step_until(&mut harness, |h| h
        .query_by_label(&muted)
        .is_some()));
    harness.get_by_label("Unmute microphone");

    // The security panel's code, compared with the bot's report.
    harness
        .get_by_label("End-to-end encryption: everyone has the room link")
        .click();
    harness.step();
    harness.step();
    let code = harness
        .state()
        .call_state()
        .map(|s| s.security.room_security_code.clone())
        .unwrap_or_default();
    assert!(!code.is_empty());
    harness.get_by_label(&format!("Room security code: {code}"));
    harness.get_by_label("Compare all 6 groups with every member");
    harness.get_by_label("This code covers 2 members: you and the 1 marked “in the code” below.");

    let report = bot.finish(DEADLINE).expect("the bot finishes its call");
    assert!(
        !report.failed,
        "the bot should end its call cleanly: {:?}",
        report.errors
    );
    assert_eq!(report.room_security_code, code);
    assert!(
        report
            .peers
            .iter()
            .any(|p| p.name.as_deref() == Some("Ada") && p.verified),
        "the bot verified Ada: {:?}",
        report.peers
    );
}
