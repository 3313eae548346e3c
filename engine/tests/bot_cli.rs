//! The `vcall-bot` binary as users run it: two bots in one call through a relay write JSON
//! reports with the documented fields and recordings; a bot with a bad link exits non-zero.

use std::path::Path;
use std::process::Command;

use vcall_engine::fresh_invite_link;
use vcall_media::I420Frame;
use vcall_media::analysis::dominant_frequency;
use vcall_media::tone::frequency_for_name;
use vcall_media::wav::WavReader;
use vcall_media::y4m::Y4mReader;
use vcall_relay::{Relay, RelayConfig};

fn bot(link: &str, name: &str, dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_vcall-bot"))
        .args(["--link", link, "--name", name, "--duration", "8"])
        .args(["--resolution", "320x180", "--bitrate-kbps", "300"])
        .arg("--record-dir")
        .arg(dir.join(name))
        .arg("--report")
        .arg(dir.join(format!("{name}.json")))
        .spawn()
        .expect("vcall-bot runs")
}

#[test]
fn two_bots_report_each_other_and_record_what_they_received() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime
        .block_on(Relay::bind(RelayConfig::loopback()))
        .unwrap();
    let link = fresh_invite_link(
        "127.0.0.1",
        relay.local_addr().port(),
        Some(relay.fingerprint()),
        "bots",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = bot(&link, "ada", dir.path());
    let mut b = bot(&link, "bea", dir.path());
    assert!(a.wait().unwrap().success(), "ada exits 0");
    assert!(b.wait().unwrap().success(), "bea exits 0");

    for (me, other) in [("ada", "bea"), ("bea", "ada")] {
        let text = std::fs::read_to_string(dir.path().join(format!("{me}.json"))).unwrap();
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r["name"], me);
        assert!(r["sent"]["video_frames"].as_u64().unwrap() > 50);
        assert!(r["sent"]["audio_frames"].as_u64().unwrap() > 100);
        let peers = r["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "{me}: {peers:?}");
        let p = &peers[0];
        assert_eq!(p["name"], other);
        assert_eq!(p["verified"], true);
        assert_eq!(p["key_received"], true);
        assert_eq!(p["key_sent"], true);
        assert!(p["video_frames_decoded"].as_u64().unwrap() > 30);
        assert!(p["video_psnr_db"].as_f64().unwrap() > 30.0);
        assert!(
            (p["audio_peak_hz"].as_f64().unwrap() - frequency_for_name(other)).abs() < 5.0,
            "{me} hears {other}: {}",
            p["audio_peak_hz"]
        );
        assert!(
            !r["link"].as_str().unwrap().contains("#k="),
            "secret redacted"
        );
        let events: Vec<&str> = r["handshake_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        for e in ["sent_pubkey", "recv_pubkey", "sent_key", "recv_key"] {
            assert!(events.contains(&e), "{me} log lacks {e}: {events:?}");
        }

        // Recordings: a Y4M of the other's video and a WAV of its tone.
        let peer_id = p["peer_id"].as_u64().unwrap();
        let rec = dir.path().join(me);
        let y4m = std::fs::File::open(rec.join(format!("peer-{peer_id}.y4m"))).unwrap();
        let mut reader = Y4mReader::new(std::io::BufReader::new(y4m)).unwrap();
        assert_eq!((reader.header().width, reader.header().height), (320, 180));
        let mut frame = I420Frame::new(2, 2).unwrap();
        let mut frames = 0;
        while reader.read_frame(&mut frame).unwrap() {
            frames += 1;
        }
        assert!(frames > 30, "{me} recorded {frames} frames");
        let wav = std::fs::File::open(rec.join(format!("peer-{peer_id}.wav"))).unwrap();
        let mut wav = WavReader::new(std::io::BufReader::new(wav)).unwrap();
        let mut samples = vec![0.0f32; 48_000];
        let n = wav.read_samples(&mut samples).unwrap();
        assert!(n >= 24_000, "{me} recorded {n} samples; its report: {p}");
        let hz = dominant_frequency(&samples[..n], 48_000);
        assert!((hz - frequency_for_name(other)).abs() < 5.0, "{hz}");
    }
    runtime.block_on(relay.shutdown());
}

#[test]
fn a_bot_with_a_bad_link_exits_non_zero_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vcall-bot"))
        .args(["--link", "vcall://", "--duration", "1", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["failed"], true);
    assert!(
        r["errors"][0].as_str().unwrap().contains("link"),
        "{}",
        r["errors"]
    );
}
