//! The minimum of a signal over a sliding time window (a monotonic queue: O(1) amortised per
//! sample), for the base one-way delay that receiver reports and the playout delay measure
//! against.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The least sample seen in the last `window`.
#[derive(Debug)]
pub struct WindowMin {
    window: Duration,
    /// (when, sample) with increasing samples: the front is the window's minimum.
    samples: VecDeque<(Instant, i64)>,
}

impl WindowMin {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Adds `sample` taken at `now`; returns the window's minimum, `sample` included.
    pub fn push(&mut self, now: Instant, sample: i64) -> i64 {
        while self.samples.back().is_some_and(|&(_, s)| s >= sample) {
            self.samples.pop_back();
        }
        self.samples.push_back((now, sample));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > self.window)
        {
            self.samples.pop_front();
        }
        self.min().unwrap_or(sample)
    }

    /// The minimum now, once a sample came.
    pub fn min(&self) -> Option<i64> {
        self.samples.front().map(|&(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_follows_the_window() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut m = WindowMin::new(Duration::from_millis(100));
        assert_eq!(m.min(), None);
        assert_eq!(m.push(at(0), 50), 50);
        assert_eq!(m.push(at(10), 70), 50);
        assert_eq!(m.push(at(20), 60), 50);
        // 50 leaves the window; 60 is the least of what is left.
        assert_eq!(m.push(at(105), 80), 60);
        assert_eq!(m.push(at(200), 90), 80);
        assert_eq!(m.push(at(210), 10), 10);
    }
}
