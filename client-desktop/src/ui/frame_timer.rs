//! Measures how often the UI repaints and how long it spends per frame (our drawing plus
//! texture uploads, and eframe's own figure for the whole frame when it has one), for the stats
//! overlay and the UI bench.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent frames are kept.
const WINDOW: usize = 600;

/// Recent frame times.
#[derive(Debug, Default, Clone)]
pub struct FrameTimer {
    ui_times: VecDeque<Duration>,
    total_times: VecDeque<Duration>,
    /// When the passes of the last second began.
    paints: VecDeque<Instant>,
}

/// A summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameTimeSummary {
    pub frames: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for FrameTimeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            self.frames, self.p50_ms, self.p95_ms, self.max_ms
        )
    }
}

fn push(queue: &mut VecDeque<Duration>, value: Duration) {
    if queue.len() == WINDOW {
        queue.pop_front();
    }
    queue.push_back(value);
}

fn summarise(queue: &VecDeque<Duration>) -> FrameTimeSummary {
    if queue.is_empty() {
        return FrameTimeSummary::default();
    }
    let mut sorted: Vec<f64> = queue.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    FrameTimeSummary {
        frames: sorted.len(),
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        max_ms: at(1.0),
    }
}

impl FrameTimer {
    /// Records that a pass began at `now`.
    pub fn record_paint(&mut self, now: Instant) {
        while self
            .paints
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            self.paints.pop_front();
        }
        self.paints.push_back(now);
    }

    /// Passes in the second before the last recorded one (the UI's repaint rate).
    pub fn repaints_per_second(&self) -> usize {
        self.paints.len()
    }

    /// Records the time our `ui` code took this frame.
    pub fn record_ui(&mut self, elapsed: Duration) {
        push(&mut self.ui_times, elapsed);
    }

    /// Records eframe's CPU time of the previous whole frame (including tessellation and
    /// painting), when the integration reports it.
    pub fn record_total(&mut self, seconds: Option<f32>) {
        if let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) {
            push(&mut self.total_times, Duration::from_secs_f32(seconds));
        }
    }

    /// Our drawing time.
    pub fn ui_summary(&self) -> FrameTimeSummary {
        summarise(&self.ui_times)
    }

    /// Whole-frame CPU time.
    pub fn total_summary(&self) -> FrameTimeSummary {
        summarise(&self.total_times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_frames() {
        let mut timer = FrameTimer::default();
        for ms in 1..=100u64 {
            timer.record_ui(Duration::from_millis(ms));
        }
        timer.record_total(Some(0.004));
        timer.record_total(None);
        timer.record_total(Some(f32::NAN));
        let ui = timer.ui_summary();
        assert_eq!(ui.frames, 100);
        assert!((ui.p50_ms - 50.0).abs() <= 1.0);
        assert!((ui.p95_ms - 95.0).abs() <= 1.0);
        assert_eq!(ui.max_ms, 100.0);
        assert_eq!(timer.total_summary().frames, 1);

        let t0 = Instant::now();
        for n in 0..90u64 {
            timer.record_paint(t0 + Duration::from_millis(n * 1000 / 30));
        }
        assert_eq!(
            timer.repaints_per_second(),
            30,
            "the last second of 30 passes/s"
        );
        assert_eq!(
            FrameTimer::default().ui_summary(),
            FrameTimeSummary::default()
        );
    }
}
