//! The real audio path without a sound card: a private PulseAudio (null sink + 440 Hz sine
//! source) behind ALSA's `default`, so the app's cpal microphone captures a real-time sine and
//! its cpal speaker plays into the null sink. A headless bot peer (the engine in-process, as
//! `vcall-bot` runs it) must hear 440 Hz from the app, and a recording of the null sink's
//! monitor must contain the bot's tone.
//!
//! Skipped (with a message) only when the `pulseaudio` binary is missing and `CI` is not set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Bot;

use vcall_desktop::devices::{MicrophoneKind, SpeakerKind, open_microphone, open_speaker};
use vcall_desktop::settings::DeviceChoice;
use vcall_desktop::ui::embedded_relay::{EmbeddedRelay, new_room_link};
use vcall_engine::{AudioInput, CallConfig, CallHandle, CallPhase, EndReason, VideoInput};
use vcall_media::analysis::dominant_frequency;
use vcall_media::tone::frequency_for_name;
use vcall_relay::RelayConfig;

const SINE_HZ: f64 = 440.0;
const DEADLINE: Duration = Duration::from_secs(90);

fn binary_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// A private PulseAudio daemon in a temporary runtime directory, stopped on drop.
struct PrivatePulse {
    child: Child,
    runtime_dir: tempfile::TempDir,
}

impl PrivatePulse {
    fn start() -> Self {
        let runtime_dir = tempfile::tempdir().expect("temp dir");
        let script = runtime_dir.path().join("default.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1\n\
                 load-module module-null-sink sink_name=nullsink\n\
                 load-module module-sine-source source_name=sine440 rate=48000 frequency={SINE_HZ}\n\
                 set-default-sink nullsink\n\
                 set-default-source sine440\n"
            ),
        )
        .expect("write default.pa");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "-F",
            ])
            .arg(&script)
            .env("XDG_RUNTIME_DIR", runtime_dir.path())
            .env("HOME", runtime_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio starts");
        let pulse = Self { child, runtime_dir };
        let socket = pulse.socket();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            socket.exists(),
            "pulseaudio did not create {}",
            socket.display()
        );
        pulse
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.path().join("pulse").join("native")
    }

    fn runtime_dir(&self) -> &Path {
        self.runtime_dir.path()
    }

    /// Records `seconds` of the null sink's monitor (what the app played), mono 48 kHz.
    fn record_monitor(&self, seconds: usize) -> Vec<f32> {
        use std::io::Read;
        let mut recorder = Command::new("parec")
            .args([
                "-d",
                "nullsink.monitor",
                "--rate=48000",
                "--channels=1",
                "--format=float32le",
                "--raw",
                "--latency-msec=20",
            ])
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PULSE_SERVER", format!("unix:{}", self.socket().display()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("parec starts");
        let mut stdout = recorder.stdout.take().expect("parec's output");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = vec![0u8; seconds * 48_000 * 4];
            let read = stdout.read_exact(&mut bytes).map(|()| bytes);
            let _ = done_tx.send(read);
        });
        let recorded = done_rx.recv_timeout(DEADLINE);
        let _ = recorder.kill();
        let _ = recorder.wait();
        let bytes = recorded
            .expect("parec recorded in time")
            .expect("parec's output");
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

impl Drop for PrivatePulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn app_audio_goes_through_cpal_both_ways() {
    if !binary_exists("pulseaudio") {
        assert!(
            std::env::var_os("CI").is_none(),
            "pulseaudio is required in CI (scripts/install-deps.sh installs it)"
        );
        eprintln!(
            "SKIPPED: the `pulseaudio` binary is missing; install pulseaudio, pulseaudio-utils and libasound2-plugins to run the real audio path test"
        );
        return;
    }
    let pulse = PrivatePulse::start();
    // This test binary holds this single test, so no other thread reads the environment yet.
    // SAFETY: no other thread of this process exists that could read the environment now.
    unsafe {
        std::env::set_var("XDG_RUNTIME_DIR", pulse.runtime_dir());
        std::env::set_var("PULSE_SERVER", format!("unix:{}", pulse.socket().display()));
    }

    // The app's own device code, as the UI uses it.
    let microphone = open_microphone(&DeviceChoice::Auto, "App");
    assert!(
        matches!(microphone.kind, MicrophoneKind::Device(_)),
        "cpal should open PulseAudio's sine source: {:?}",
        microphone.notice
    );
    let speaker = open_speaker(&DeviceChoice::Auto);
    assert!(
        matches!(speaker.kind, SpeakerKind::Device(_)),
        "cpal should open the null sink: {:?}",
        speaker.notice
    );

    let mut relay = EmbeddedRelay::new().expect("runtime");
    let info = relay.start(RelayConfig::loopback()).expect("relay");
    let link = new_room_link(
        "127.0.0.1",
        info.public_addr.port(),
        Some(&info.fingerprint),
        None,
    )
    .expect("link");

    let mut config = CallConfig::new(link.clone(), "App");
    config.camera = VideoInput::Off;
    config.camera_off = true;
    config.mic = microphone.into_engine_input();
    config.speaker = speaker.into_engine_output();
    let app = CallHandle::start(config, None);

    let mut bot_config = CallConfig::new(link.clone(), "Bot");
    bot_config.camera = VideoInput::Off;
    bot_config.mic = AudioInput::Tone;
    let bot = Bot::start(bot_config, Duration::from_secs(14));

    // Wait until the app decodes the bot's audio, then record what the app plays.
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let state = app.state();
        if let CallPhase::Ended(reason) = &state.phase {
            panic!("the app's call ended: {reason}");
        }
        if state
            .peers
            .iter()
            .any(|p| p.stats.audio_frames_decoded > 100)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let played = pulse.record_monitor(3);
    let bot_hz = frequency_for_name("Bot");
    assert!(played.len() > 48_000, "recorded {} samples", played.len());
    let heard = dominant_frequency(&played, 48_000);
    assert!(
        (heard - bot_hz).abs() < 5.0,
        "the null sink played {heard:.1} Hz, the bot sends {bot_hz:.1} Hz"
    );

    let report = bot.finish(DEADLINE).expect("the bot finishes its call");
    assert!(
        !report.failed,
        "the bot should finish its call: {:?}",
        report.errors
    );
    let left = app.leave();
    assert_eq!(left.state.phase, CallPhase::Ended(EndReason::Left));

    let from_app = report
        .peers
        .iter()
        .find(|p| p.name.as_deref() == Some("App"))
        .expect("the bot saw the app");
    let hz = from_app.audio_peak_hz.expect("a peak frequency");
    assert!(
        (hz - SINE_HZ).abs() < 5.0,
        "the bot heard {hz:.1} Hz from the app's microphone, expected {SINE_HZ}"
    );
}
