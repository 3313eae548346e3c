//! Token-bucket rate limits with the time passed in (no clock inside, so tests are exact).

use std::time::{Duration, Instant};

/// A token bucket refilled at `rate` tokens per second up to `burst` tokens. A rate of 0 means
/// unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket allowing `rate_per_sec` sustained and one second's worth as a burst.
    pub fn per_second(rate_per_sec: u64, now: Instant) -> Self {
        let rate = rate_per_sec as f64;
        Self {
            rate_per_sec: rate,
            burst: rate,
            tokens: rate,
            last: now,
        }
    }

    /// True when the limit is disabled.
    pub fn is_unlimited(&self) -> bool {
        self.rate_per_sec <= 0.0
    }

    /// Takes `amount` tokens if available at time `now`; false (nothing taken) otherwise.
    pub fn try_take(&mut self, amount: u64, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst);
        let amount = amount as f64;
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

/// A count limit and a byte limit applied together (e.g. datagrams/s and bytes/s).
#[derive(Debug, Clone)]
pub struct CountAndBytes {
    count: TokenBucket,
    bytes: TokenBucket,
}

impl CountAndBytes {
    /// Limits of `count_per_sec` items and `bytes_per_sec` bytes (0 = unlimited).
    pub fn new(count_per_sec: u64, bytes_per_sec: u64, now: Instant) -> Self {
        Self {
            count: TokenBucket::per_second(count_per_sec, now),
            bytes: TokenBucket::per_second(bytes_per_sec, now),
        }
    }

    /// Admits one item of `len` bytes if both limits allow it.
    pub fn admit(&mut self, len: usize, now: Instant) -> bool {
        // Check bytes first: a refused item must not consume a count token.
        let mut probe = self.bytes.clone();
        if !probe.try_take(len as u64, now) {
            self.bytes = probe;
            return false;
        }
        if !self.count.try_take(1, now) {
            return false;
        }
        self.bytes = probe;
        true
    }
}

/// Lets a warning through at most once per `interval` (e.g. a rate-limit notice to a client).
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle that has never fired.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// True (and records `now`) when the previous firing is at least `interval` ago.
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills_with_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::per_second(10, t0);
        for _ in 0..10 {
            assert!(bucket.try_take(1, t0));
        }
        assert!(!bucket.try_take(1, t0), "burst exhausted");
        let later = t0 + Duration::from_millis(500);
        for _ in 0..5 {
            assert!(bucket.try_take(1, later));
        }
        assert!(!bucket.try_take(1, later));
        let much_later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(bucket.try_take(1, much_later));
        }
        assert!(
            !bucket.try_take(1, much_later),
            "refill is capped at the burst"
        );
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::per_second(0, t0);
        assert!(bucket.is_unlimited());
        assert!((0..10_000).all(|_| bucket.try_take(1_000_000, t0)));
    }

    #[test]
    fn count_and_bytes_refuse_on_either_limit_without_spending_the_other() {
        let t0 = Instant::now();
        let mut limit = CountAndBytes::new(3, 2500, t0);
        assert!(limit.admit(1000, t0));
        assert!(limit.admit(1000, t0));
        assert!(!limit.admit(1000, t0), "bytes exhausted");
        assert!(
            limit.admit(500, t0),
            "the refused item spent no count token"
        );
        assert!(!limit.admit(0, t0), "count exhausted");
    }

    #[test]
    fn throttle_fires_once_per_interval() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(5));
        assert!(throttle.fire(t0));
        assert!(!throttle.fire(t0 + Duration::from_secs(4)));
        assert!(throttle.fire(t0 + Duration::from_secs(5)));
    }
}
