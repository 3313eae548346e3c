//! UI tests against the real engine and a real relay (kittest, no display needed): starting a
//! call shows the invite link; joining with a `vcall-bot` peer shows two named tiles; muting
//! changes the self tile's badge; the security panel shows the same room security code as the
//! bot's JSON report. Call tests run one at a time so they never compete for the CPU.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use vcall_engine::CallPhase;
use vcall_desktop::ui::embedded_relay::{EmbeddedRelay, new_room_link};
use vcall_desktop::ui::{LaunchOptions, VcallApp};
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

/// A `vcall-bot` process, killed if the test fails early.
struct Bot(Child);

impl Bot {
    fn start(link: &str, name: &str, seconds: u32, report: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_vcall-bot"))
            .args([
                "--link",
                link,
                "--name",
                name,
                "--duration",
                &seconds.to_string(),
            ])
            .args([
                "--video",
                "testsrc",
                "--audio",
                "tone",
                "--resolution",
                "320x180",
                "--fps",
                "15",
            ])
            .arg("--report")
            .arg(report)
            .stdout(Stdio::null())
            .spawn()
            .expect("vcall-bot starts");
        Self(child)
    }

    fn wait(&mut self) -> bool {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
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
    harness.get_by_label("Ada (you): microphone on, camera on");
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
    )
    .expect("link");
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("bot.json");

    let mut harness = app_harness(LaunchOptions {
        name: Some("Ada".into()),
        link: Some(link.clone()),
        ..LaunchOptions::hermetic()
    });
    let mut bot = Bot::start(&link, "Bot", 25, &report_path);

    // Two tiles with names, the bot verified.
    let both = step_until(&mut harness, |h| {
        h.query_by_label_contains("Ada (you):").is_some()
            && h.query_by_label_contains("Bot:").is_some()
            && h.state()
                .call_state()
                .is_some_and(|s| s.peers.iter().any(|p| p.verified))
    });
    let state = harness.state().call_state().cloned();
    assert!(both, "two tiles expected; state: {state:?}");
    harness.get_by_label("End-to-end encryption: verified");

    // Mute: the engine confirms and the badge follows.
    harness.get_by_label("Mute microphone").click();
    assert!(step_until(&mut harness, |h| h
        .query_by_label("Ada (you): microphone muted, camera on")
        .is_some()));
    harness.get_by_label("Unmute microphone");

    // The security panel's code, compared with the bot's report.
    harness
        .get_by_label("End-to-end encryption: verified")
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

    assert!(bot.wait(), "the bot should end its call cleanly");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("bot report"))
            .expect("JSON report");
    assert_eq!(report["room_security_code"].as_str(), Some(code.as_str()));
    let peers = report["peers"].as_array().expect("peers in the report");
    assert!(
        peers
            .iter()
            .any(|p| p["name"] == "Ada" && p["verified"] == true)
    );
}
