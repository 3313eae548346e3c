//! The receiver's video playout delay for one sender: frames leave for the decoder at their
//! capture time plus the sender's base transit plus a target delay, so that a frame that was
//! late (repaired by a NACK's retransmission, or held behind one) plays on time instead of
//! after a visible pause, and the frames released behind it keep their spacing. The target
//! follows how late recent frames were (a high percentile of their lateness over the last
//! [`LATENESS_WINDOW`] frames) while loss recovery is at work: a frame that arrives while
//! nothing is being repaired counts as on time whatever its lateness, so scheduling and path
//! jitter on a clean path add no delay (a call's latency matters more than smoothing it). It
//! never exceeds [`MAX_PLAYOUT_DELAY`]. Like libwebrtc's video jitter buffer, whose target
//! delay includes the time NACKs take.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::window_min::WindowMin;

/// The playout delay never exceeds this: beyond it a late frame is shown late.
pub const MAX_PLAYOUT_DELAY: Duration = Duration::from_millis(200);
/// Frames whose lateness the target is taken from.
const LATENESS_WINDOW: usize = 128;
/// The target is the lateness this many frames of the window exceed or match (the 3rd
/// latest of 128: about the 98th percentile).
const TARGET_RANK: usize = 3;
/// The base transit (the sender's capture to our arrival, at its least) is the minimum over
/// this long, so that a drifting clock or a changed path moves it.
const BASE_WINDOW: Duration = Duration::from_secs(10);

/// Frames waiting for their playout time, in order.
#[derive(Debug)]
pub struct VideoPlayout<T> {
    queue: VecDeque<(Instant, T)>,
    /// Lateness (µs) of the last [`LATENESS_WINDOW`] frames, a ring.
    lateness_us: [u32; LATENESS_WINDOW],
    lateness_len: usize,
    lateness_next: usize,
    /// The least transit (µs) over [`BASE_WINDOW`].
    base: WindowMin,
    target: Duration,
    last_release: Option<Instant>,
}

impl<T> Default for VideoPlayout<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            lateness_us: [0; LATENESS_WINDOW],
            lateness_len: 0,
            lateness_next: 0,
            base: WindowMin::new(BASE_WINDOW),
            target: Duration::ZERO,
            last_release: None,
        }
    }
}

impl<T> VideoPlayout<T> {
    /// The playout delay now.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// A frame, next in order, captured at `capture_us` on the sender's clock, ready to decode
    /// at `now` (`now_us` on our wall clock). It waits until its playout time. `recovering`:
    /// loss recovery for this sender is at work (its lateness teaches the target).
    pub fn push(&mut self, now: Instant, now_us: u64, capture_us: u64, frame: T, recovering: bool) {
        let transit = now_us as i64 - capture_us as i64;
        let floor = self.base.push(now, transit);
        let late_us = (transit - floor).clamp(0, i64::from(u32::MAX)) as u32;
        self.lateness_us[self.lateness_next] = if recovering { late_us } else { 0 };
        self.lateness_next = (self.lateness_next + 1) % LATENESS_WINDOW;
        self.lateness_len = (self.lateness_len + 1).min(LATENESS_WINDOW);
        self.target = self.target_from_window();
        let late = Duration::from_micros(u64::from(late_us));
        let mut at = now + self.target.saturating_sub(late);
        // In order: never before the frame ahead of it.
        if let Some(&(ahead, _)) = self.queue.back() {
            at = at.max(ahead);
        }
        if let Some(last) = self.last_release {
            at = at.max(last);
        }
        self.queue.push_back((at, frame));
    }

    fn target_from_window(&self) -> Duration {
        let mut window = self.lateness_us;
        let filled = &mut window[..self.lateness_len];
        let rank = TARGET_RANK.min(filled.len());
        if rank == 0 {
            return Duration::ZERO;
        }
        let (_, nth, _) = filled.select_nth_unstable_by(rank - 1, |a, b| b.cmp(a));
        Duration::from_micros(u64::from(*nth)).min(MAX_PLAYOUT_DELAY)
    }

    /// When the next frame is due, if one waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|&(at, _)| at)
    }

    /// The next frame if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.queue.front().is_some_and(|&(at, _)| at <= now) {
            let (at, frame) = self.queue.pop_front()?;
            self.last_release = Some(at);
            return Some(frame);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 33_333;

    /// Pushes frames `0..n` captured every 33 ms, each arriving `transit_us(i)` after its
    /// capture (in order: a frame waits for the ones before it, as the frame order upstream
    /// does); returns when each was released (µs after frame 0's capture).
    fn play(n: u64, transit_us: impl Fn(u64) -> u64) -> (Vec<u64>, VideoPlayout<u64>) {
        let origin = Instant::now();
        let at = |us: u64| origin + Duration::from_micros(us);
        let mut p = VideoPlayout::default();
        let mut ready = 0;
        let arrivals: Vec<u64> = (0..n)
            .map(|i| {
                ready = u64::max(ready, i * FRAME_US + transit_us(i));
                ready
            })
            .collect();
        let mut released = vec![0; n as usize];
        let mut next = 0;
        let mut out = 0;
        while out < n {
            let due = p.next_due();
            let arrival = arrivals.get(next as usize).map(|&a| at(a));
            match (arrival, due) {
                (Some(a), d) if d.is_none_or(|d| a <= d) => {
                    let us = arrivals[next as usize];
                    p.push(
                        a,
                        1_000_000_000 + us,
                        1_000_000_000 + next * FRAME_US,
                        next,
                        true,
                    );
                    next += 1;
                }
                (_, Some(d)) => {
                    let i = p.pop_due(d).expect("due");
                    released[i as usize] = d.duration_since(origin).as_micros() as u64;
                    out += 1;
                }
                _ => unreachable!("frames left but none due or arriving"),
            }
        }
        (released, p)
    }

    fn max_gap_ms(released: &[u64]) -> u64 {
        released
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1000)
            .max()
            .unwrap()
    }

    #[test]
    fn a_clean_path_adds_no_delay() {
        let (released, p) = play(200, |_| 40_000);
        assert_eq!(p.target(), Duration::ZERO);
        for (i, r) in released.iter().enumerate() {
            let arrival = i as u64 * FRAME_US + 40_000;
            assert!(
                r - arrival < 1_000,
                "frame {i} released {r} for arrival {arrival}"
            );
        }
    }

    #[test]
    fn frames_repaired_late_play_on_time_once_the_target_has_learnt_the_repair_delay() {
        // Every 25th frame is repaired by a retransmission 120 ms late; the ones behind it
        // wait for it (they reach the playout together with it).
        let late = |i: u64| -> u64 {
            let repaired = i / 25 * 25 + 12;
            if i == repaired {
                160_000
            } else if i > repaired && i * FRAME_US + 40_000 < repaired * FRAME_US + 160_000 {
                repaired * FRAME_US + 160_000 - i * FRAME_US
            } else {
                40_000
            }
        };
        let (released, p) = play(300, late);
        assert!(p.target() >= Duration::from_millis(110), "{:?}", p.target());
        assert!(p.target() <= MAX_PLAYOUT_DELAY);
        // After the first repairs taught the target, no pause is longer than two frames.
        assert!(
            max_gap_ms(&released[100..]) <= 67,
            "{}",
            max_gap_ms(&released[100..])
        );
        // Without the playout delay, each repair was a 150 ms pause.
        let arrivals: Vec<u64> = (0..300).map(|i| i * FRAME_US + late(i)).collect();
        assert!(
            max_gap_ms(&arrivals[100..]) >= 140,
            "{}",
            max_gap_ms(&arrivals[100..])
        );
    }

    #[test]
    fn the_target_shrinks_when_repairs_stop_and_never_exceeds_the_maximum() {
        let (_, p) = play(400, |i| {
            if i < 100 && i % 20 == 5 {
                900_000
            } else {
                40_000
            }
        });
        assert_eq!(
            p.target(),
            Duration::ZERO,
            "the late frames left the window"
        );
        let (_, p) = play(100, |i| if i % 10 == 5 { 900_000 } else { 40_000 });
        assert_eq!(p.target(), MAX_PLAYOUT_DELAY);
    }

    #[test]
    fn jitter_without_loss_recovery_adds_no_delay() {
        let origin = Instant::now();
        let mut p = VideoPlayout::default();
        for i in 0..200u64 {
            // Up to 40 ms of jitter, nothing repaired.
            let transit = 5_000 + (i * 7919) % 40_000;
            let now = origin + Duration::from_micros(i * FRAME_US + transit);
            p.push(now, i * FRAME_US + transit, i * FRAME_US, i, false);
            assert_eq!(p.pop_due(now), Some(i), "frame {i} leaves at once");
        }
        assert_eq!(p.target(), Duration::ZERO);
    }

    #[test]
    fn frames_leave_in_order() {
        let origin = Instant::now();
        let mut p = VideoPlayout::default();
        // A late frame raises the target; the next ones must not overtake it.
        for i in 0..10u64 {
            let now = origin + Duration::from_micros(i * FRAME_US);
            let transit = if i == 3 { 150_000 } else { 40_000 };
            p.push(now, i * FRAME_US + transit, i * FRAME_US, i, true);
        }
        let mut out = Vec::new();
        let end = origin + Duration::from_secs(2);
        while let Some(i) = p.pop_due(end) {
            out.push(i);
        }
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(p.next_due(), None);
    }
}
