//! Helpers shared by the engine's call tests: a small call's configuration, waiting for a
//! condition, and reading what a call state says about a peer.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use vcall_engine::{CallConfig, CallState, VideoSettings};

/// A 320x180 @ 30 fps call (cheap enough for several in one test).
pub fn small_call(link: &str, name: &str) -> CallConfig {
    let mut c = CallConfig::new(link, name);
    c.video = VideoSettings {
        width: 320,
        height: 180,
        fps: 30,
        bitrate_kbps: 400,
    };
    c
}

/// Polls `cond` until it holds; panics after `timeout` (a liveness bound, not a timing check).
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Video frames decoded from the peer called `name` (0 if not seen).
pub fn decoded_from(s: &CallState, name: &str) -> u64 {
    s.peers
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .map_or(0, |p| p.stats.video_frames_decoded)
}
