//! `vcall-load` against a relay in this process: every member joins, every track is counted
//! and delivered on loopback, and the JSON report says so; a bad link fails with a reason.

use std::process::Command;

use vcall_relay::{Relay, RelayConfig};

#[test]
fn a_small_load_is_fully_delivered_and_reported() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime
        .block_on(Relay::bind(RelayConfig::loopback()))
        .unwrap();
    let link = format!(
        "vcall://127.0.0.1:{}/load?fp={}",
        relay.local_addr().port(),
        relay.fingerprint()
    );
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("load.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vcall-load"))
        .args(["--link", &link, "--rooms", "2", "--publishers", "2"])
        .args(["--subscribers", "1", "--video-kbps", "200", "--audio"])
        .args(["--duration", "2", "--warmup", "1", "--relay-pid"])
        .arg(std::process::id().to_string())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("subscriber-tracks per relay core"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["connections"], 6);
    assert_eq!(r["connection_failures"], 0);
    // Per room: each of 2 publishers reaches the other publisher and the subscriber.
    assert_eq!(r["subscriber_tracks"], 8);
    // 200 kbit/s of 1000-byte datagrams + 50 audio datagrams/s, for 2 s, per publisher.
    let sent = r["datagrams_sent"].as_u64().unwrap();
    assert!((4 * 90..=4 * 160).contains(&sent), "{sent}");
    assert_eq!(r["datagrams_expected"].as_u64().unwrap(), 2 * sent);
    assert!(r["delivered"].as_f64().unwrap() >= 0.99, "{r}");
    assert!(r["join_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(r["relay"]["cores"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(
        relay.metrics().joins(),
        6,
        "the relay saw every member join"
    );
    runtime.block_on(relay.shutdown());
}

#[test]
fn a_link_without_a_fingerprint_is_refused_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_vcall-load"))
        .args(["--link", "vcall://127.0.0.1:1/room", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fp="), "{stderr}");
}
