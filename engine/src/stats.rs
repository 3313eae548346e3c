//! Per-peer media statistics the call core keeps from the codec threads' events (decoded
//! frames, latency, PSNR, audio, a per-second timeline), folded into the published
//! [`CallState`](crate::CallState).

use std::time::{Duration, Instant};

use crate::state::{LatencyStats, MAX_TIMELINE, PeerSecond};

/// Most latency samples kept per peer (a sliding window).
const MAX_LATENCY_SAMPLES: usize = 4096;

/// What the codec threads measured about one remote peer.
#[derive(Debug, Default, Clone)]
pub struct PeerMedia {
    pub width: u32,
    pub height: u32,
    pub video_frames_decoded: u64,
    pub psnr_sum_db: f64,
    pub psnr_samples: u64,
    pub audio_frames_decoded: u64,
    pub audio_frames_fec: u64,
    pub audio_frames_concealed: u64,
    pub audio_peak_hz: Option<f64>,
    pub latency_samples_ms: Vec<f32>,
    latency_next: usize,
    decoded_times: Vec<Instant>,
    pub freeze_count: u64,
    pub freeze_ms_total: u64,
    pub max_freeze_ms: u64,
    /// When the call started: second 0 of the timeline.
    pub origin: Option<Instant>,
    /// Finished seconds, oldest first (at most [`MAX_TIMELINE`]).
    pub timeline: Vec<PeerSecond>,
    second: Option<SecondTally>,
}

/// The second being counted.
#[derive(Debug, Default, Clone)]
struct SecondTally {
    t_s: u64,
    frames: u32,
    bytes: u64,
    latencies: Vec<f32>,
    max_gap_ms: u64,
}

impl PeerMedia {
    /// Statistics of a peer in a call that started at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin: Some(origin),
            ..Self::default()
        }
    }

    /// The tally of the second `now` falls in, closing the earlier ones (empty seconds too).
    fn tally(&mut self, now: Instant) -> Option<&mut SecondTally> {
        let t_s = now.saturating_duration_since(self.origin?).as_secs();
        while let Some(current) = self.second.as_ref()
            && current.t_s < t_s
        {
            let done = self.second.take().expect("checked");
            let next = done.t_s + 1;
            self.close(done);
            if next < t_s {
                self.second = Some(SecondTally {
                    t_s: next,
                    ..SecondTally::default()
                });
            }
        }
        Some(self.second.get_or_insert_with(|| SecondTally {
            t_s,
            ..SecondTally::default()
        }))
    }

    fn close(&mut self, done: SecondTally) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(0);
        }
        self.timeline.push(PeerSecond {
            t_s: done.t_s,
            frames: done.frames,
            kbps: done.bytes as f64 * 8.0 / 1000.0,
            latency_p95_ms: (!done.latencies.is_empty())
                .then(|| latency_summary(&done.latencies).p95),
            max_gap_ms: done.max_gap_ms,
        });
    }

    /// Closes every second before `now` (so the timeline is current when published).
    pub fn roll(&mut self, now: Instant) {
        self.tally(now);
    }

    /// A video datagram of `len` bytes arrived.
    pub fn record_video_bytes(&mut self, now: Instant, len: usize) {
        if let Some(t) = self.tally(now) {
            t.bytes += len as u64;
        }
    }

    /// Records one decoded video frame with its capture→decoded latency.
    pub fn record_decoded(&mut self, now: Instant, latency_ms: f32) {
        let gap_ms = self.decoded_times.last().map_or(0, |last| {
            now.saturating_duration_since(*last).as_millis() as u64
        });
        if let Some(t) = self.tally(now) {
            t.frames += 1;
            t.latencies.push(latency_ms);
            t.max_gap_ms = t.max_gap_ms.max(gap_ms);
        }
        self.video_frames_decoded += 1;
        if self.latency_samples_ms.len() < MAX_LATENCY_SAMPLES {
            self.latency_samples_ms.push(latency_ms);
        } else {
            self.latency_samples_ms[self.latency_next] = latency_ms;
            self.latency_next = (self.latency_next + 1) % MAX_LATENCY_SAMPLES;
        }
        self.note_freeze(now);
        self.decoded_times.push(now);
        let horizon = now.checked_sub(Duration::from_secs(1));
        if let Some(h) = horizon {
            let stale = self.decoded_times.iter().take_while(|t| **t < h).count();
            self.decoded_times.drain(..stale);
        }
    }

    /// Counts the gap since the last decoded frame as a freeze when it is longer than
    /// max(3 × the mean interval, mean + 150 ms) over the last second's frames.
    fn note_freeze(&mut self, now: Instant) {
        let (Some(first), Some(last)) = (self.decoded_times.first(), self.decoded_times.last())
        else {
            return;
        };
        let gap = now.saturating_duration_since(*last);
        let intervals = self.decoded_times.len() - 1;
        if intervals == 0 {
            return;
        }
        let mean = last.saturating_duration_since(*first) / intervals as u32;
        let threshold = (mean * 3).max(mean + Duration::from_millis(150));
        if gap > threshold {
            let ms = gap.as_millis() as u64;
            self.freeze_count += 1;
            self.freeze_ms_total += ms;
            self.max_freeze_ms = self.max_freeze_ms.max(ms);
        }
    }

    /// Decoded frames per second over the second before `now`.
    pub fn fps_at(&self, now: Instant) -> f64 {
        let horizon = now.checked_sub(Duration::from_secs(1));
        self.decoded_times
            .iter()
            .filter(|t| horizon.is_none_or(|h| **t >= h))
            .count() as f64
    }

    /// Mean PSNR of the sampled test-pattern frames.
    pub fn psnr_db(&self) -> Option<f64> {
        (self.psnr_samples > 0).then(|| self.psnr_sum_db / self.psnr_samples as f64)
    }

    /// p50/p95/max of the latency window.
    pub fn latency(&self) -> LatencyStats {
        latency_summary(&self.latency_samples_ms)
    }
}

/// p50/p95/max of samples in milliseconds (zeros when empty).
pub fn latency_summary(samples: &[f32]) -> LatencyStats {
    if samples.is_empty() {
        return LatencyStats::default();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f32::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64;
    LatencyStats {
        p50: pick(0.5),
        p95: pick(0.95),
        max: *sorted.last().unwrap_or(&0.0) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_come_from_the_samples() {
        let samples: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        let s = latency_summary(&samples);
        assert_eq!(s.max, 100.0);
        assert!((s.p50 - 50.0).abs() <= 1.0, "{}", s.p50);
        assert!((s.p95 - 95.0).abs() <= 1.0, "{}", s.p95);
        assert_eq!(latency_summary(&[]), LatencyStats::default());
    }

    #[test]
    fn long_gaps_between_decoded_frames_count_as_freezes() {
        let mut m = PeerMedia::default();
        let t0 = Instant::now();
        let mut t = t0;
        for _ in 0..30 {
            m.record_decoded(t, 1.0);
            t += Duration::from_millis(33);
        }
        // 150 ms at ~33 ms frames is below mean + 150 ms: not a freeze.
        t += Duration::from_millis(117);
        m.record_decoded(t, 1.0);
        assert_eq!(m.freeze_count, 0);
        for _ in 0..30 {
            t += Duration::from_millis(33);
            m.record_decoded(t, 1.0);
        }
        t += Duration::from_millis(400);
        m.record_decoded(t, 1.0);
        t += Duration::from_millis(33);
        m.record_decoded(t, 1.0);
        t += Duration::from_millis(250);
        m.record_decoded(t, 1.0);
        assert_eq!(m.freeze_count, 2);
        assert_eq!(m.freeze_ms_total, 400 + 250);
        assert_eq!(m.max_freeze_ms, 400);
    }

    #[test]
    fn the_timeline_has_one_entry_per_second_with_gaps_where_they_end() {
        let t0 = Instant::now();
        let mut m = PeerMedia::new(t0);
        let mut t = t0;
        for i in 0..30 {
            m.record_decoded(t, 10.0 + i as f32);
            m.record_video_bytes(t, 1000);
            t += Duration::from_millis(33);
        }
        // Nothing for 1.6 s: second 1 stays empty, the gap ends in second 2.
        t += Duration::from_millis(1600);
        m.record_decoded(t, 50.0);
        m.roll(t0 + Duration::from_secs(3));
        let seconds: Vec<u64> = m.timeline.iter().map(|s| s.t_s).collect();
        assert_eq!(seconds, [0, 1, 2]);
        let (first, empty, last) = (&m.timeline[0], &m.timeline[1], &m.timeline[2]);
        assert_eq!(first.frames, 30);
        assert!((first.kbps - 240.0).abs() < 1e-9);
        assert!(first.latency_p95_ms.unwrap() >= 37.0);
        assert!(first.max_gap_ms <= 34);
        assert_eq!((empty.frames, empty.latency_p95_ms), (0, None));
        assert_eq!(last.frames, 1);
        assert!(last.max_gap_ms >= 1600, "{}", last.max_gap_ms);
    }

    #[test]
    fn the_latency_window_is_bounded() {
        let mut m = PeerMedia::default();
        let now = Instant::now();
        for i in 0..(MAX_LATENCY_SAMPLES + 10) {
            m.record_decoded(now, i as f32);
        }
        assert_eq!(m.latency_samples_ms.len(), MAX_LATENCY_SAMPLES);
        assert_eq!(m.video_frames_decoded, (MAX_LATENCY_SAMPLES + 10) as u64);
        assert!(m.latency().max >= MAX_LATENCY_SAMPLES as f64);
    }
}
