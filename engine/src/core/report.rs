//! What a receiver measures of one sender's path for its receiver reports (PROTOCOL.md §6.4):
//! video fragments expected and lost per window (from the clear fragment headers, before any
//! retransmission; a frame id skipped entirely counts one fragment), video bytes received, and the queuing delay (the least one-way delay of
//! the sender's audio over the last 300 ms, over its minimum of the last 10 s; clock offsets
//! cancel out). The recent minimum, not an average: a standing queue raises every sample,
//! while jitter and audio copies that arrive late (redundancy) raise only some.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vcall_proto::media::ReceiverReport;

use super::window_min::WindowMin;

/// A receiver reports each sender's video path this often.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// The minimum one-way delay is taken over this long.
const DELAY_BASE_WINDOW: Duration = Duration::from_secs(10);
/// The current one-way delay is the least over this long (about 15 audio frames).
const DELAY_RECENT_WINDOW: Duration = Duration::from_millis(300);
/// A frame's fragments are counted once a frame this many ids later has shown up (later
/// arrivals of it are reordering beyond any jitter and count as lost).
const FINISH_AFTER: u32 = 3;
/// Frames being counted at most (older ones are finished early).
const MAX_TRACKED: usize = 32;

#[derive(Debug, Clone, Copy)]
struct TrackedFrame {
    id: u32,
    /// Data plus repair fragments, as the fragments' headers say.
    expected: u16,
    received: u16,
}

/// One sender's path, as this receiver measures it.
#[derive(Debug)]
pub struct ReportMeter {
    frames: VecDeque<TrackedFrame>,
    newest: Option<u32>,
    expected: u32,
    lost: u32,
    bytes: u32,
    window_start: Instant,
    /// The least one-way delay (µs) over [`DELAY_BASE_WINDOW`].
    delay_floor: WindowMin,
    /// The least one-way delay (µs) over [`DELAY_RECENT_WINDOW`].
    delay_recent: WindowMin,
}

impl ReportMeter {
    pub fn new(now: Instant) -> Self {
        Self {
            frames: VecDeque::new(),
            newest: None,
            expected: 0,
            lost: 0,
            bytes: 0,
            window_start: now,
            delay_floor: WindowMin::new(DELAY_BASE_WINDOW),
            delay_recent: WindowMin::new(DELAY_RECENT_WINDOW),
        }
    }

    /// A video datagram of `len` bytes: fragment `index` of frame `frame_id` (`count` data
    /// fragments, `repair_count` repair fragments if its header says). A `retransmission`
    /// (addressed to us) counts for bytes only.
    pub fn on_video_fragment(
        &mut self,
        frame_id: u32,
        index: u16,
        count: u16,
        repair_count: Option<u16>,
        retransmission: bool,
        len: usize,
    ) {
        self.bytes = self.bytes.saturating_add(len as u32);
        if retransmission {
            return;
        }
        let expected = count
            .saturating_add(repair_count.unwrap_or(0))
            .max(index + 1);
        if let Some(frame) = self.frames.iter_mut().find(|f| f.id == frame_id) {
            // (A frame counted as skipped whose fragments come late, reordered, takes its
            // real size.)
            frame.expected = frame.expected.max(expected);
            frame.received = frame.received.saturating_add(1).min(frame.expected);
        } else {
            if self.newest.is_some_and(|n| {
                n.wrapping_sub(frame_id) < u32::MAX / 2 && n.wrapping_sub(frame_id) >= FINISH_AFTER
            }) {
                return; // already finished (and its fragments counted lost)
            }
            // Frames skipped entirely (none of their fragments came): one fragment each, the
            // least a frame has. Without them a stream of one-fragment frames shows no loss
            // at all, whatever the path loses, until repair fragments make frames longer.
            if let Some(newest) = self.newest {
                let gap = frame_id.wrapping_sub(newest);
                if gap > 1 && gap < u32::MAX / 2 {
                    let skipped = (gap - 1).min(MAX_TRACKED as u32);
                    for id in frame_id.wrapping_sub(skipped)..frame_id {
                        self.frames.push_back(TrackedFrame {
                            id,
                            expected: 1,
                            received: 0,
                        });
                    }
                }
            }
            let pos = self
                .frames
                .iter()
                .position(|f| f.id.wrapping_sub(frame_id) < u32::MAX / 2)
                .unwrap_or(self.frames.len());
            self.frames.insert(
                pos,
                TrackedFrame {
                    id: frame_id,
                    expected,
                    received: 1,
                },
            );
        }
        if self
            .newest
            .is_none_or(|n| frame_id.wrapping_sub(n) < u32::MAX / 2)
        {
            self.newest = Some(frame_id);
        }
        let newest = self.newest.unwrap_or(frame_id);
        while let Some(front) = self.frames.front()
            && (newest.wrapping_sub(front.id) >= FINISH_AFTER || self.frames.len() > MAX_TRACKED)
        {
            let f = self.frames.pop_front().expect("checked");
            self.expected = self.expected.saturating_add(u32::from(f.expected));
            self.lost = self
                .lost
                .saturating_add(u32::from(f.expected.saturating_sub(f.received)));
        }
    }

    /// An audio packet captured at `capture_us` (the sender's clock) arrived at `arrival_us`
    /// (ours).
    pub fn on_audio(&mut self, now: Instant, capture_us: u64, arrival_us: u64) {
        let delay = arrival_us as i64 - capture_us as i64;
        self.delay_floor.push(now, delay);
        self.delay_recent.push(now, delay);
    }

    /// The queuing delay now (ms), once measured.
    pub fn queuing_delay_ms(&self) -> Option<u16> {
        let floor = self.delay_floor.min()?;
        let delay = self.delay_recent.min()?;
        Some(
            ((delay - floor).max(0) as f64 / 1000.0)
                .round()
                .min(60_000.0) as u16,
        )
    }

    /// The report for the window ending now, every [`REPORT_INTERVAL`]; the counts restart.
    pub fn take(&mut self, now: Instant) -> Option<ReceiverReport> {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < REPORT_INTERVAL {
            return None;
        }
        let interval_ms = elapsed
            .as_millis()
            .min(u128::from(ReceiverReport::MAX_INTERVAL_MS)) as u16;
        // Scaled down together when a window saw more than a u16 of fragments.
        let scale = (self.expected / u32::from(u16::MAX)) + 1;
        let report = ReceiverReport {
            interval_ms,
            fragments_expected: (self.expected / scale) as u16,
            fragments_lost: (self.lost.min(self.expected) / scale) as u16,
            video_bytes: self.bytes,
            queuing_delay_ms: self.queuing_delay_ms(),
        };
        self.expected = 0;
        self.lost = 0;
        self.bytes = 0;
        self.window_start = now;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_fragments_are_counted_once_a_frame_is_finished() {
        let t = Instant::now();
        let mut m = ReportMeter::new(t);
        // Frame 0: 4 data + 1 repair, index 2 lost. Frame 1: 2 fragments, all there.
        for index in [0, 1, 3] {
            m.on_video_fragment(0, index, 4, None, false, 1000);
        }
        m.on_video_fragment(0, 4, 4, Some(1), false, 1000);
        m.on_video_fragment(1, 0, 2, None, false, 500);
        m.on_video_fragment(1, 1, 2, None, false, 500);
        // A retransmission of frame 0's fragment 2 counts for bytes only.
        m.on_video_fragment(0, 2, 4, None, true, 1000);
        // Frames 3 and 4 finish frames 0 and 1 (frame 2 is still open).
        m.on_video_fragment(2, 0, 1, None, false, 100);
        m.on_video_fragment(3, 0, 1, None, false, 100);
        m.on_video_fragment(4, 0, 1, None, false, 100);
        // A straggler of finished frame 0 counts for bytes, not fragments.
        m.on_video_fragment(0, 2, 4, None, false, 1000);
        assert!(m.take(t + REPORT_INTERVAL / 2).is_none());
        let r = m.take(t + REPORT_INTERVAL).unwrap();
        assert_eq!(r.interval_ms, 500);
        assert_eq!((r.fragments_expected, r.fragments_lost), (7, 1));
        assert_eq!(r.video_bytes, 7300);
        assert_eq!(r.queuing_delay_ms, None);
        let next = m.take(t + REPORT_INTERVAL * 2).unwrap();
        assert_eq!(
            (
                next.fragments_expected,
                next.fragments_lost,
                next.video_bytes
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn frames_skipped_entirely_count_one_lost_fragment_each_unless_they_come_late() {
        let t = Instant::now();
        let mut m = ReportMeter::new(t);
        // One-fragment frames 0..20; 5, 6 and 12 never come, 9 comes after 10 (reordered).
        for id in (0..20u32).filter(|id| ![5, 6, 9, 12].contains(id)) {
            m.on_video_fragment(id, 0, 1, None, false, 100);
            if id == 10 {
                m.on_video_fragment(9, 0, 2, None, false, 100);
                m.on_video_fragment(9, 1, 2, None, false, 100);
            }
        }
        let r = m.take(t + REPORT_INTERVAL).unwrap();
        // Frames 0..=16 finished: 17 frames, frame 9 of two fragments.
        assert_eq!((r.fragments_expected, r.fragments_lost), (18, 3));
    }

    #[test]
    fn queuing_delay_is_the_delay_over_its_recent_minimum() {
        let t = Instant::now();
        let mut m = ReportMeter::new(t);
        // A clock offset of 5 s, 20 ms of path delay: no queue.
        let offset = 5_000_000u64;
        for i in 0..50u64 {
            let at = t + Duration::from_millis(20 * i);
            m.on_audio(
                at,
                1_000_000 + 20_000 * i,
                offset + 1_000_000 + 20_000 * i + 20_000,
            );
        }
        assert_eq!(m.queuing_delay_ms(), Some(0));
        // A queue builds: 200 ms more delay.
        for i in 50..150u64 {
            let at = t + Duration::from_millis(20 * i);
            m.on_audio(
                at,
                1_000_000 + 20_000 * i,
                offset + 1_000_000 + 20_000 * i + 220_000,
            );
        }
        let q = m.queuing_delay_ms().unwrap();
        assert!((195..=200).contains(&q), "{q} ms");
        // After the base window the old minimum is forgotten: the new delay is the floor.
        for i in 150..700u64 {
            let at = t + Duration::from_millis(20 * i);
            m.on_audio(
                at,
                1_000_000 + 20_000 * i,
                offset + 1_000_000 + 20_000 * i + 220_000,
            );
        }
        assert_eq!(m.queuing_delay_ms(), Some(0));
    }

    #[test]
    fn late_copies_and_jitter_are_not_a_queue() {
        let t = Instant::now();
        let mut m = ReportMeter::new(t);
        // Every other frame arrives 40 ms late (its first copy lost, a later copy came), and
        // the rest jitter by up to 9 ms.
        for i in 0..200u64 {
            let at = t + Duration::from_millis(20 * i);
            let extra = if i % 2 == 1 {
                40_000
            } else {
                (i * 7919) % 9_000
            };
            m.on_audio(at, 20_000 * i, 20_000 * i + 30_000 + extra);
        }
        let q = m.queuing_delay_ms().unwrap();
        assert!(q <= 9, "{q} ms");
    }
}
