//! UI tests of drawing and interaction with egui_kittest, against handcrafted call states (a
//! detached `CallHandle`, with the test playing the engine's part): lobby, tiles,
//! badges, toolbar commands, shortcuts, security panel, error screen, frame time, repaint pacing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use vcall_media::I420Frame;
use vcall_proto::PeerId;

use crate::settings::DeviceChoice;
use vcall_engine::{
    CallHandle, CallPhase, CallState, Command, ConnectFailure, DetachedCall, EndReason, PeerState,
    SecurityState, Stream, VideoPicture, Wake,
};

use super::bench::synthetic_call;
use super::{LaunchOptions, VcallApp};

/// A fake engine: the other end of the handle the app holds, receiving its commands and
/// publishing the state the test edits.
struct FakeCall {
    call: DetachedCall,
}

impl FakeCall {
    fn new(state: CallState) -> (CallHandle, Self) {
        let (handle, call) = CallHandle::detached(state);
        (handle, Self { call })
    }

    fn next_command(&mut self) -> Option<Command> {
        self.call.next_command()
    }

    fn edit(&self, change: impl FnOnce(&mut CallState)) {
        self.call.edit(change);
    }
}

fn two_person_call() -> CallState {
    CallState {
        phase: CallPhase::InCall,
        room: "room-abc".into(),
        my_name: "Ada".into(),
        security: SecurityState {
            room_secret: true,
            my_fingerprint: "AAAA BBBB CCCC".into(),
            room_security_code: "31415 92653 58979".into(),
            member_count: 2,
        },
        peers: vec![PeerState {
            peer_id: PeerId(2),
            name: Some("Bob".into()),
            fingerprint: Some("DDDD EEEE FFFF".into()),
            verified: true,
            key_received: true,
            key_sent: true,
            member: true,
            ..PeerState::default()
        }],
        ..CallState::default()
    }
}

fn harness(options: LaunchOptions) -> Harness<'static, VcallApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| VcallApp::new(&cc.egui_ctx, options))
}

fn in_call_harness(state: CallState) -> (Harness<'static, VcallApp>, FakeCall) {
    let mut harness = harness(LaunchOptions {
        name: Some("Ada".into()),
        ..LaunchOptions::hermetic()
    });
    let (handle, fake) = FakeCall::new(state);
    harness
        .state_mut()
        .show_call_for_test(handle, "vcall://127.0.0.1:4433/room-abc#k=secret");
    harness.step();
    harness.step();
    (harness, fake)
}

/// Steps the UI until `done` holds (background jobs run on real threads) or a generous
/// deadline passes; returns whether it held.
fn step_until(
    harness: &mut Harness<'static, VcallApp>,
    done: impl Fn(&Harness<'static, VcallApp>) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        harness.step();
        if done(harness) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn lobby_renders_with_name_pickers_and_actions() {
    let mut harness = harness(LaunchOptions {
        name: Some("Ada".into()),
        ..LaunchOptions::hermetic()
    });
    harness.step();
    harness.get_by_label("Start a call");
    harness.get_by_label("Invite link");
    harness.get_by_label("Join");
    assert_eq!(
        harness.get_by_label("Display name").value().as_deref(),
        Some("Ada")
    );
    harness.get_by_label_contains("reachable from this network only");
    // The test pattern preview appears once the background job put it in place.
    assert!(step_until(&mut harness, |h| h
        .query_by_label("Self preview: test pattern")
        .is_some()));
    harness.get_by_label("Microphone level");
}

#[test]
fn lobby_says_plainly_when_there_is_no_camera() {
    let mut harness = harness(LaunchOptions {
        camera: Some(DeviceChoice::Auto),
        ..LaunchOptions::hermetic()
    });
    assert!(step_until(&mut harness, |h| h
        .query_by_label_contains("No camera found")
        .is_some()));
    harness.get_by_label_contains("Test pattern");
    harness.get_by_label("Self preview: camera off");
}

#[test]
fn joining_with_a_bad_link_explains_the_problem() {
    let mut harness = harness(LaunchOptions::hermetic());
    harness.step();
    harness.get_by_label("Invite link").focus();
    harness
        .get_by_label("Invite link")
        .type_text("https://example.org/meeting");
    harness.step();
    harness.get_by_label("Join").click();
    harness.step();
    harness.step();
    harness.get_by_label_contains("That link doesn't work");
    assert!(!harness.state().in_call());
}

#[test]
fn call_shows_a_tile_per_person_with_names() {
    let (harness, _fake) = in_call_harness(two_person_call());
    harness.get_by_label("Ada (you) · aaaa bbbb: microphone on, camera on");
    harness.get_by_label("Bob · dddd eeee: microphone on, camera on");
    harness.get_by_label("End-to-end encryption: everyone has the room link");
    harness.get_by_label("Leave call");
}

#[test]
fn mute_button_sends_the_command_and_the_badge_follows_the_engine() {
    let (mut harness, mut fake) = in_call_harness(two_person_call());
    harness.get_by_label("Mute microphone").click();
    harness.step();
    assert!(matches!(
        fake.next_command(),
        Some(Command::SetMicMuted(true))
    ));
    fake.edit(|state| state.mic_muted = true);
    harness.step();
    harness.get_by_label("Ada (you) · aaaa bbbb: microphone muted, camera on");
    harness.get_by_label("Unmute microphone");
}

#[test]
fn keyboard_shortcuts_toggle_microphone_camera_and_stats() {
    let (mut harness, mut fake) = in_call_harness(two_person_call());
    harness.key_press_modifiers(Modifiers::COMMAND, Key::D);
    harness.step();
    assert!(matches!(
        fake.next_command(),
        Some(Command::SetMicMuted(true))
    ));
    harness.key_press_modifiers(Modifiers::COMMAND, Key::E);
    harness.step();
    assert!(matches!(
        fake.next_command(),
        Some(Command::SetCameraOff(true))
    ));
    assert!(!harness.state().panels.stats);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::I);
    harness.step();
    assert!(harness.state().panels.stats);
    harness.get_by_label("Hide statistics");
}

#[test]
fn remote_badges_show_muted_camera_off_speaking_and_no_link_proof() {
    let mut state = two_person_call();
    state.peers[0].mic_muted = true;
    state.peers[0].camera_off = true;
    state.peers.push(PeerState {
        peer_id: PeerId(3),
        name: Some("Mallory".into()),
        verified: false,
        speaking: true,
        ..PeerState::default()
    });
    let (harness, _fake) = in_call_harness(state);
    harness.get_by_label("Bob · dddd eeee: microphone muted, camera off");
    harness.get_by_label(
        "Mallory: microphone on, camera on, could not prove they have the room link, speaking",
    );
    harness.get_by_label(
        "End-to-end encryption: 1 participant could not prove they have the room link",
    );
}

#[test]
fn security_panel_shows_code_and_fingerprints() {
    let (mut harness, _fake) = in_call_harness(two_person_call());
    harness
        .get_by_label("End-to-end encryption: everyone has the room link")
        .click();
    harness.step();
    harness.step();
    harness.get_by_label("Room security code: 31415 92653 58979");
    harness.get_by_label("Compare all 3 groups with every member");
    for group in ["31415", "92653", "58979"] {
        harness.get_by_label(group);
    }
    harness.get_by_label("This code covers 2 members: you and the 1 marked “in the code” below.");
    harness.get_by_label("Your fingerprint: AAAA BBBB CCCC");
    harness.get_by_label("Bob · dddd eeee: has the room link, holds your key, in the code");
    harness.get_by_label_contains("DDDD EEEE FFFF");
    assert!(
        harness
            .query_by_label_contains("covers 2 members, but")
            .is_none()
    );
}

/// Three people besides you: two both called "Alice", one whose name carries a
/// right-to-left override, a bell, an isolate and a fake "(you)".
fn namesake_call() -> CallState {
    let mut state = two_person_call();
    state.peers = [
        (2, "Alice", "a1a1a1a1"),
        (3, "alice\u{200B}", "b2b2b2b2"),
        (4, "\u{202E}Mal\u{0007}lory\u{2066} (you)", "c3c3c3c3"),
    ]
    .into_iter()
    .map(|(id, name, fingerprint)| PeerState {
        peer_id: PeerId(id),
        name: Some(name.into()),
        fingerprint: Some(fingerprint.repeat(8)),
        verified: true,
        key_sent: true,
        member: true,
        ..PeerState::default()
    })
    .collect();
    state.security.room_security_code = "11111 22222 33333 44444 55555 66666".into();
    state.security.member_count = 4;
    state
}

#[test]
fn namesakes_are_flagged_names_sanitized_and_tags_tell_them_apart() {
    let (mut harness, _fake) = in_call_harness(namesake_call());
    let same = ": microphone on, camera on, same name as another member";
    harness.get_by_label(&format!("Alice · a1a1 a1a1{same}"));
    harness.get_by_label(&format!("alice · b2b2 b2b2{same}"));
    // Control and bidi characters gone, the spoofed marker removed, no same-name flag.
    harness.get_by_label("Mallory · c3c3 c3c3: microphone on, camera on");
    harness.get_by_label("Ada (you) · aaaa bbbb: microphone on, camera on");
    let tile_labels: Vec<String> = harness
        .query_all_by_label_contains(": microphone")
        .filter_map(|node| node.accesskit_node().label())
        .collect();
    assert_eq!(tile_labels.len(), 4, "{tile_labels:?}");
    let bad = ['\u{202E}', '\u{2066}', '\u{0007}', '\u{200B}'];
    assert!(
        tile_labels.iter().all(|l| !l.contains(bad)),
        "{tile_labels:?}"
    );
    assert_eq!(
        tile_labels.iter().filter(|l| l.contains("(you)")).count(),
        1,
        "only your own tile says (you): {tile_labels:?}"
    );
    // The two Alices' tags differ.
    let tags: std::collections::BTreeSet<&str> = tile_labels
        .iter()
        .filter(|l| l.to_lowercase().starts_with("alice · "))
        .filter_map(|l| l.split(" · ").nth(1)?.split(':').next())
        .collect();
    assert_eq!(tags.len(), 2, "{tile_labels:?}");

    // The security panel says the same, and shows the whole code.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::K);
    harness.step();
    harness.step();
    harness.get_by_label("Warning: some people show the same name");
    let row = ": has the room link, holds your key, in the code, same name as another member";
    harness.get_by_label(&format!("Alice · a1a1 a1a1{row}"));
    harness.get_by_label(&format!("alice · b2b2 b2b2{row}"));
    harness.get_by_label("Mallory · c3c3 c3c3: has the room link, holds your key, in the code");
    harness.get_by_label("Room security code: 11111 22222 33333 44444 55555 66666");
    harness.get_by_label("Compare all 6 groups with every member");
    harness.get_by_label("This code covers 4 members: you and the 3 marked “in the code” below.");
}

#[test]
fn a_code_covering_someone_not_listed_is_flagged() {
    let mut state = namesake_call();
    state.security.member_count = 5;
    // One peer went silent: listed, but out of the code.
    state.peers[2].member = false;
    state.peers[2].silent = true;
    let (mut harness, fake) = in_call_harness(state);
    harness.get_by_label_contains("Mallory · c3c3 c3c3: microphone on, camera on, not responding");
    harness.key_press_modifiers(Modifiers::COMMAND, Key::K);
    harness.step();
    harness.step();
    harness.get_by_label_contains("The code covers 5 members, but 3 are listed as in the code");
    harness.get_by_label(
        "Mallory · c3c3 c3c3: has the room link, holds your key, not in the code, not responding",
    );
    // Once the code covers exactly the listed people, the warning goes.
    fake.edit(|state| state.security.member_count = 3);
    harness.step();
    harness.step();
    assert!(
        harness
            .query_by_label_contains("but 3 are listed")
            .is_none()
    );
    harness.get_by_label("This code covers 3 members: you and the 2 marked “in the code” below.");
}

#[test]
fn a_link_without_secret_is_flagged() {
    let mut state = two_person_call();
    state.security.room_secret = false;
    let (harness, _fake) = in_call_harness(state);
    harness.get_by_label("End-to-end encryption: link has no secret");
    harness.get_by_label_contains("This link has no secret");
}

#[test]
fn alone_in_a_call_the_invite_link_is_offered() {
    let mut state = two_person_call();
    state.peers.clear();
    let (harness, _fake) = in_call_harness(state);
    harness.get_by_label_contains("Invite link: vcall://127.0.0.1:4433/room-abc");
    harness.get_by_label_contains("You're the only one here");
}

#[test]
fn a_failed_call_returns_to_the_lobby_with_advice() {
    let (mut harness, fake) = in_call_harness(two_person_call());
    fake.edit(|state| {
        state.phase = CallPhase::Ended(EndReason::Connect(ConnectFailure::Unreachable {
            address: "10.1.2.3".into(),
            port: 4433,
            detail: "timed out".into(),
        }));
    });
    harness.step();
    harness.step();
    assert!(!harness.state().in_call());
    harness.get_by_label("Couldn't reach the relay");
    harness.get_by_label_contains("10.1.2.3");
    harness.get_by_label("Dismiss error").click();
    harness.step();
    harness.step();
    assert!(harness.query_by_label("Couldn't reach the relay").is_none());
    harness.get_by_label("Start a call");
}

#[test]
fn a_lost_connection_shows_reconnecting_and_keeps_the_tiles() {
    let (mut harness, fake) = in_call_harness(two_person_call());
    fake.edit(|state| {
        state.phase = CallPhase::Reconnecting {
            attempt: 2,
            last_error: "nothing from the relay for 2.5 s".into(),
        };
    });
    harness.step();
    harness.step();
    assert!(harness.state().in_call(), "still on the call screen");
    harness.get_by_label("Reconnecting… (attempt 2)");
    harness.get_by_label_contains("nothing from the relay");
    harness.get_by_label_contains("Bob");
    fake.edit(|state| state.phase = CallPhase::InCall);
    harness.step();
    harness.step();
    assert!(
        harness
            .query_by_label("Reconnecting… (attempt 2)")
            .is_none()
    );
}

#[test]
fn leaving_sends_leave_and_returns_to_the_lobby() {
    let (mut harness, mut fake) = in_call_harness(two_person_call());
    harness.get_by_label("Leave call").click();
    harness.step();
    assert!(matches!(fake.next_command(), Some(Command::Leave)));
    harness.step();
    harness.get_by_label("Start a call");
    assert!(
        harness.state().lobby.ended.is_none(),
        "leaving is not an error"
    );
}

/// Prints the UI's frame time with three peers and the self view publishing 720p pictures at
/// 30 fps (logic, layout, texture uploads and tessellation; no GPU here). No assertion on time.
#[test]
fn ui_frame_time_with_three_720p_peers() {
    let mut harness = harness(LaunchOptions::hermetic());
    let (handle, _feed) = synthetic_call(3, 1280, 720, 30, None);
    harness.state_mut().show_synthetic_call(handle);
    let started = Instant::now();
    let mut frames = 0;
    while started.elapsed() < Duration::from_secs(3) {
        harness.step();
        frames += 1;
        std::thread::sleep(Duration::from_millis(16));
    }
    let app = harness.state();
    println!(
        "UI frame time, 3 peers + self at 720p ({frames} frames, headless): {}; {} uploads into {} textures",
        app.frame_timer.ui_summary(),
        app.textures.uploads(),
        app.textures.allocations()
    );
    assert_eq!(
        app.textures.allocations(),
        4,
        "one texture per stream, updated in place"
    );
    assert!(app.textures.uploads() > 4, "new pictures were uploaded");
}

#[test]
fn devices_switch_during_a_call_without_leaving() {
    let (mut harness, mut fake) = in_call_harness(two_person_call());
    harness.get_by_label("Devices").click();
    harness.run_steps(3);
    harness.get_by_label("Look for new devices");
    harness.get_by_label("Microphone").click();
    harness.run_steps(3);
    harness.get_by_label("No microphone").click();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut commands = Vec::new();
    while Instant::now() < deadline && commands.len() < 2 {
        harness.step();
        while let Some(command) = fake.next_command() {
            commands.push(command);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        commands.first(),
        Some(Command::SetMic(vcall_engine::AudioInput::Off))
    ));
    assert!(matches!(commands.get(1), Some(Command::SetMicMuted(true))));
    assert!(harness.state().in_call(), "still in the call");
    assert_eq!(harness.state().choices.microphone, DeviceChoice::Off);
}

#[test]
fn device_choices_and_name_persist_between_launches() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::settings::SettingsStore::at(dir.path().join("vcall/settings.toml"));
    let options = LaunchOptions {
        settings_store: Some(store.clone()),
        name: Some("Grace".into()),
        camera: None,
        ..LaunchOptions::hermetic()
    };
    let mut first = harness(options.clone());
    first.state_mut().apply(super::UiAction::ChooseDevice(
        super::jobs::DeviceSlot::Camera,
        DeviceChoice::Off,
    ));
    let saved = |store: &crate::settings::SettingsStore| {
        store
            .load()
            .is_ok_and(|s| s.camera == DeviceChoice::Off && s.display_name == "Grace")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saved(&store) && Instant::now() < deadline {
        first.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saved(&store), "settings written: {:?}", store.load());
    drop(first);

    let second = harness(LaunchOptions {
        name: None,
        ..options
    });
    assert_eq!(second.state().choices.camera, DeviceChoice::Off);
    assert_eq!(second.state().lobby.name, "Grace");
}

#[test]
fn without_a_camera_the_demo_uses_the_test_pattern_and_says_so() {
    let mut harness = harness(LaunchOptions {
        camera: Some(DeviceChoice::Auto),
        test_sources_when_missing: true,
        ..LaunchOptions::hermetic()
    });
    assert!(step_until(&mut harness, |h| h
        .query_by_label_contains("No camera found — sending the test pattern instead.")
        .is_some()));
    assert!(step_until(&mut harness, |h| h
        .query_by_label("Self preview: test pattern")
        .is_some()));
}

#[test]
fn joining_with_a_secret_link_saves_it_without_the_secret() {
    const KEY: &str = "BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSY";
    let link = format!("vcall://127.0.0.1:9/room-abc#k={KEY}");
    let dir = tempfile::tempdir().unwrap();
    let store = crate::settings::SettingsStore::at(dir.path().join("vcall/settings.toml"));
    let mut harness = harness(LaunchOptions {
        settings_store: Some(store.clone()),
        name: Some("Ada".into()),
        ..LaunchOptions::hermetic()
    });
    harness.step();
    harness.get_by_label("Invite link").focus();
    harness.get_by_label("Invite link").type_text(&link);
    harness.step();
    harness.get_by_label("Join").click();
    let saved = |store: &crate::settings::SettingsStore| {
        store
            .load()
            .is_ok_and(|s| s.recent_links.iter().any(|l| l.contains("room-abc")))
    };
    assert!(step_until(&mut harness, |_| saved(&store)));
    assert!(harness.state().in_call(), "the join went ahead");
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(!text.contains(KEY), "the secret was saved: {text}");
    assert!(!text.contains("#k=") && !text.contains("#p="), "{text}");
    assert_eq!(
        store.load().unwrap().recent_links,
        vec!["vcall://127.0.0.1:9/room-abc#k".to_owned()]
    );
    // The full link is still at hand for this run (to copy or rejoin), not on disk.
    assert_eq!(harness.state().last_link.as_deref(), Some(link.as_str()));
    harness.state_mut().apply(super::UiAction::Leave);
    harness.step();
}

/// The delays of the repaints asked for from now on (every request egui sees, from any thread).
fn observe_repaint_requests(harness: &Harness<'static, VcallApp>) -> Arc<Mutex<Vec<Duration>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    harness
        .ctx
        .set_repaint_observer(move |info| log.lock().unwrap().push(info.delay));
    asked
}

/// A small uniform picture, as a stream would publish it.
fn grey_picture(sequence: u64, level: u8) -> Arc<VideoPicture> {
    let mut planes = I420Frame::new(64, 36).unwrap();
    planes.data_mut()[..64 * 36].fill(level);
    Arc::new(VideoPicture { planes, sequence })
}

#[test]
fn an_unchanged_call_screen_repaints_only_for_its_clock_and_two_pictures_cost_one_repaint() {
    let (mut harness, fake) = in_call_harness(two_person_call());
    let remote = Stream::Remote(PeerId(2));
    for stream in [Stream::Local, remote] {
        fake.call.frames().publish(stream, grey_picture(1, 128));
    }
    harness.run_steps(5);
    let asked = observe_repaint_requests(&harness);
    harness.run_steps(3);
    let requests = std::mem::take(&mut *asked.lock().unwrap());
    assert!(
        requests
            .iter()
            .all(|delay| *delay >= Duration::from_secs(1)),
        "nothing changed, yet repaints were asked sooner than the clock's: {requests:?}"
    );
    let asked_of_eframe = harness.output().viewport_output[&egui::ViewportId::ROOT].repaint_delay;
    assert!(
        asked_of_eframe >= Duration::from_secs(1),
        "{asked_of_eframe:?}"
    );

    // A new picture on each of two streams at once (as the decoder and the camera publish
    // them): one repaint, asked for once, never as an immediate (double) pass.
    let waker = Arc::clone(harness.state().waker());
    for (stream, sequence) in [(remote, 2), (Stream::Local, 2)] {
        fake.call
            .frames()
            .publish(stream, grey_picture(sequence, 200));
        waker(Wake::Picture(stream));
    }
    let requests = std::mem::take(&mut *asked.lock().unwrap());
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0] > Duration::ZERO && requests[0] <= super::repaint::PICTURE_INTERVAL);
    let uploads = harness.state().textures.uploads();
    harness.step();
    assert_eq!(
        harness.state().textures.uploads(),
        uploads + 2,
        "both pictures shown"
    );
    let after: Vec<_> = std::mem::take(&mut *asked.lock().unwrap())
        .into_iter()
        .filter(|delay| *delay < Duration::from_secs(1))
        .collect();
    assert!(after.is_empty(), "that pass asked for another: {after:?}");
}

/// The area (in points) of every triangle the last pass asks the GL to shade: pictures (any
/// user texture) and everything else (egui's own texture: fills, text).
fn shaded_area(harness: &Harness<'static, VcallApp>) -> (f64, f64) {
    let out = harness.output();
    let primitives = harness
        .ctx
        .tessellate(out.shapes.clone(), out.pixels_per_point);
    let (mut pictures, mut rest) = (0.0, 0.0);
    for primitive in &primitives {
        let egui::epaint::Primitive::Mesh(mesh) = &primitive.primitive else {
            continue;
        };
        let area: f64 = mesh
            .indices
            .chunks_exact(3)
            .map(|t| {
                let [a, b, c] = [t[0], t[1], t[2]].map(|i| mesh.vertices[i as usize].pos);
                f64::from(((b.x - a.x) * (c.y - a.y) - (c.x - a.x) * (b.y - a.y)).abs() / 2.0)
            })
            .sum();
        if mesh.texture_id == egui::TextureId::default() {
            rest += area;
        } else {
            pictures += area;
        }
    }
    (pictures, rest)
}

#[test]
fn a_call_screen_shades_little_besides_its_pictures() {
    let window = 1280.0 * 800.0;
    // Two people without video (the self tile may show the local preview by now): outlines
    // and avatars, not filled tiles.
    let (mut harness, fake) = in_call_harness(two_person_call());
    let (_, rest) = shaded_area(&harness);
    assert!(rest < 0.1 * window, "{rest} of {window}");

    // With a 16:9 picture on each tile, nothing is filled under them: the pictures and a
    // tenth of the window besides.
    for stream in [Stream::Local, Stream::Remote(PeerId(2))] {
        fake.call.frames().publish(
            stream,
            Arc::new(VideoPicture {
                planes: I420Frame::new(1280, 720).unwrap(),
                sequence: 1,
            }),
        );
    }
    harness.run_steps(3);
    let (pictures, rest) = shaded_area(&harness);
    assert!(pictures > 0.35 * window, "{pictures} of {window}");
    assert!(rest < 0.1 * window, "{rest} of {window}");
}
