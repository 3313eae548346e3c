//! The text of the statistics overlay: per peer resolution, frame rate, bitrate, round-trip
//! time, loss and capture→display latency; for yourself what you send, the UI's repaint rate
//! and its frame time.

use vcall_engine::{CallState, PeerStats};

use super::frame_timer::FrameTimer;

/// Two short lines about a remote peer's media.
pub fn peer_stats_text(stats: &PeerStats) -> String {
    let resolution = if stats.width > 0 {
        format!("{}×{}", stats.width, stats.height)
    } else {
        "no video".to_owned()
    };
    format!(
        "{resolution} · {:.0} fps · {:.0} kbit/s\nRTT {:.0} ms · lost {} · latency {:.0} ms (p95 {:.0})",
        stats.fps,
        stats.bitrate_in_kbps,
        stats.rtt_ms,
        stats.datagrams_lost,
        stats.latency_ms.p50,
        stats.latency_ms.p95
    )
}

/// What you send, and how long the UI takes per frame.
pub fn self_stats_text(state: &CallState, timer: &FrameTimer) -> String {
    let ui = timer.ui_summary();
    let sent = &state.sent;
    let video = if sent.width > 0 {
        format!("{}x{} @ {:.0} fps", sent.width, sent.height, sent.fps)
    } else {
        "no video".to_owned()
    };
    format!(
        "sending {video} · {} kbit/s · {} video frames\nUI {} repaints/s · {:.1} ms/frame (p95 {:.1})",
        sent.bitrate_out_kbps,
        sent.video_frames,
        timer.repaints_per_second(),
        ui.p50_ms,
        ui.p95_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_engine::LatencyStats;

    #[test]
    fn peer_stats_read_naturally() {
        let stats = PeerStats {
            width: 1280,
            height: 720,
            fps: 29.7,
            bitrate_in_kbps: 1480.2,
            rtt_ms: 3.4,
            datagrams_lost: 2,
            latency_ms: LatencyStats {
                p50: 41.0,
                p95: 48.0,
                max: 60.0,
            },
            ..PeerStats::default()
        };
        assert_eq!(
            peer_stats_text(&stats),
            "1280×720 · 30 fps · 1480 kbit/s\nRTT 3 ms · lost 2 · latency 41 ms (p95 48)"
        );
        assert!(peer_stats_text(&PeerStats::default()).starts_with("no video"));
    }

    #[test]
    fn self_stats_say_what_is_sent() {
        let mut state = CallState::default();
        let timer = FrameTimer::default();
        assert!(self_stats_text(&state, &timer).contains("no video"));
        state.sent.width = 640;
        state.sent.height = 360;
        state.sent.fps = 29.6;
        state.sent.bitrate_out_kbps = 512;
        let text = self_stats_text(&state, &timer);
        assert!(text.contains("640x360 @ 30 fps"), "{text}");
        assert!(text.contains("512 kbit/s"), "{text}");
        assert!(text.contains("UI 0 repaints/s"), "{text}");
    }
}
