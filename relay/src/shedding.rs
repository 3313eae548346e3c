//! Per-receiver temporal-layer shedding: when a receiver's datagram queue shows its path is
//! congested, video fragments of the upper temporal layers (datagram header flags, PROTOCOL.md
//! §4) are dropped for it for a while, so its base layer still flows and no one else slows
//! down; and while it is shed for, its queue of video is bounded, so the audio, heartbeats and
//! feedback behind that queue are not delayed by seconds of video its path cannot carry.
//! Shared by every sender's forwarder that reaches that receiver; lock-free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Below this many queued bytes a receiver is never considered congested (about 220 ms at
/// 300 kbit/s, one keyframe's burst at 720p).
pub(crate) const MIN_CONGESTED_QUEUE: usize = 8 * 1024;
/// Once congested, upper layers stay shed this long after the last congested observation, so
/// the receiver does not flap between frame rates.
pub(crate) const SHED_HOLD: Duration = Duration::from_secs(1);
/// While upper layers are shed for a receiver, base-layer video joins its queue only while the
/// queue holds less than this many congestion windows (a round trip's worth each)...
const BASE_QUEUE_WINDOWS: u64 = 2;
/// ...or less than this many bytes (about 440 ms at 300 kbit/s).
pub(crate) const BASE_QUEUE_FLOOR: usize = 2 * MIN_CONGESTED_QUEUE;

/// True when `queued` bytes wait in a receiver's datagram send buffer and that is more than
/// its congestion window lets out in one round trip (`cwnd()` bytes, asked only for a queue
/// of at least [`MIN_CONGESTED_QUEUE`]): a standing queue.
pub(crate) fn is_congested(queued: usize, cwnd: impl FnOnce() -> u64) -> bool {
    queued >= MIN_CONGESTED_QUEUE && queued as u64 >= cwnd()
}

/// The shedding state of one receiver.
#[derive(Debug)]
pub(crate) struct LayerGate {
    origin: Instant,
    /// Milliseconds since `origin` until which upper layers are shed (0: not shedding).
    shed_until_ms: AtomicU64,
}

impl LayerGate {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            origin: now,
            shed_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether a datagram of temporal layer `layer` goes to this receiver now. `congested`
    /// is asked only for upper-layer datagrams (it reads the connection's statistics).
    pub(crate) fn admit(&self, layer: u8, now: Instant, congested: impl FnOnce() -> bool) -> bool {
        if layer == 0 {
            return true;
        }
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        if congested() {
            let until = now_ms + SHED_HOLD.as_millis() as u64;
            self.shed_until_ms.fetch_max(until, Ordering::Relaxed);
            return false;
        }
        now_ms >= self.shed_until_ms.load(Ordering::Relaxed)
    }

    /// Whether a base-layer video datagram goes to this receiver now, `queued()` bytes waiting
    /// in its send buffer and `cwnd()` its congestion window (each asked only while upper layers
    /// are shed for it): beyond the bound, the base layer waits behind more than its path lets
    /// out in two round trips, and so would everything sent after it.
    pub(crate) fn admit_base(
        &self,
        now: Instant,
        queued: impl FnOnce() -> usize,
        cwnd: impl FnOnce() -> u64,
    ) -> bool {
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        if now_ms >= self.shed_until_ms.load(Ordering::Relaxed) {
            return true;
        }
        let queued = queued();
        queued < BASE_QUEUE_FLOOR || (queued as u64) < BASE_QUEUE_WINDOWS * cwnd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_queue_is_congestion_a_small_one_is_not() {
        assert!(!is_congested(MIN_CONGESTED_QUEUE - 1, || panic!(
            "not asked"
        )));
        assert!(is_congested(MIN_CONGESTED_QUEUE, || 4000));
        // A queue smaller than one congestion window drains within a round trip.
        assert!(!is_congested(20_000, || 64_000));
        assert!(is_congested(64_000, || 64_000));
    }

    #[test]
    fn the_base_layer_always_passes_upper_layers_are_shed_for_the_hold() {
        let t0 = Instant::now();
        let gate = LayerGate::new(t0);
        assert!(gate.admit(1, t0, || false));
        assert!(gate.admit(0, t0, || panic!("not asked for the base layer")));
        // Congestion: shed now, and for SHED_HOLD after, even once the queue is gone.
        assert!(!gate.admit(1, t0, || true));
        assert!(gate.admit(0, t0, || true));
        let during = t0 + SHED_HOLD - Duration::from_millis(1);
        assert!(!gate.admit(2, during, || false));
        assert!(gate.admit(1, t0 + SHED_HOLD, || false));
        // A new congested observation extends the hold, an earlier one never shortens it.
        let later = t0 + SHED_HOLD * 2;
        assert!(!gate.admit(1, later, || true));
        assert!(!gate.admit(1, later + SHED_HOLD / 2, || false));
        assert!(gate.admit(1, later + SHED_HOLD, || false));
    }

    #[test]
    fn base_layer_video_is_bounded_only_while_the_receiver_is_shed_for() {
        let t0 = Instant::now();
        let gate = LayerGate::new(t0);
        // Not shed for: the base layer passes whatever the queue.
        assert!(gate.admit_base(t0, || panic!("not asked"), || panic!("not asked")));
        assert!(!gate.admit(1, t0, || true));
        // Shed for: a short queue, or one under two windows, takes it; a longer one does not.
        assert!(gate.admit_base(t0, || BASE_QUEUE_FLOOR - 1, || panic!("not asked")));
        assert!(gate.admit_base(t0, || 50_000, || 30_000));
        assert!(!gate.admit_base(t0, || 60_000, || 30_000));
        assert!(!gate.admit_base(t0, || BASE_QUEUE_FLOOR, || 1_000));
        // Once the hold ends, the bound is gone.
        assert!(gate.admit_base(t0 + SHED_HOLD, || 60_000, || 1_000));
    }
}
