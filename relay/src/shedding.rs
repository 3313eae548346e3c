//! Per-receiver temporal-layer shedding: when a receiver's path is congested, video fragments
//! of the upper temporal layers (datagram header flags, PROTOCOL.md §4) are dropped for it for a
//! while, so its base layer still flows and no one else slows down; and while it is shed for,
//! its video is bounded, so the audio, heartbeats and feedback behind it are not delayed by
//! seconds of video its path cannot carry. Congestion shows in two places: a standing queue in
//! our QUIC send buffer, or (when the congestion controller sends more than the path carries, as
//! BBR does into a small tail-drop queue) a round-trip time well above the path's least
//! together with heavy loss. Shared by every sender's forwarder that reaches that receiver;
//! lock-free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::DropReason;

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
/// The path beyond our send buffer is congested when its round-trip time stands this far above
/// the least it has measured (a queue at its bottleneck)...
const PATH_QUEUE_MS: u64 = 100;
/// ...while at least this share of what we sent over the last check was lost (a full queue
/// dropping; a delay without loss is as likely the receiver's own uplink delaying its ACKs).
const PATH_LOSS: f64 = 0.10;
/// While shed for, base-layer video is not sent into a path congested (as above, with loss)
/// with this much queue beyond our buffer: audio waits in that queue too. (Not on delay alone:
/// a receiver whose uplink is saturated has its ACKs delayed, not its downlink.)
const PATH_QUEUE_BASE_MS: u64 = 150;
/// Marks a path check that found congestion loss.
const LOSSY_BIT: u64 = 1 << 63;
/// The path's statistics are read at most this often per receiver.
const PATH_CHECK: Duration = Duration::from_millis(100);

/// What the shedding policy reads of one receiver's connection.
pub(crate) trait ReceiverPath {
    /// Bytes waiting in its datagram send buffer.
    fn queued(&self) -> usize;
    /// Its congestion window (bytes).
    fn cwnd(&self) -> u64;
    /// Its path statistics now.
    fn stats(&self) -> PathSample;
}

/// One reading of a receiver's path statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathSample {
    pub(crate) rtt: Duration,
    pub(crate) min_rtt: Duration,
    /// Packets sent and lost on the path so far.
    pub(crate) sent_packets: u64,
    pub(crate) lost_packets: u64,
}

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
    /// The last check of the path (ms since `origin`, plus one; 0: never), the packets sent and
    /// lost then, and what it found: the queue beyond our buffer (ms of round trip above the
    /// least), with [`LOSSY_BIT`] set when the loss since the check before said congestion.
    checked_ms: AtomicU64,
    sent_then: AtomicU64,
    lost_then: AtomicU64,
    path_queue: AtomicU64,
}

impl LayerGate {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            origin: now,
            shed_until_ms: AtomicU64::new(0),
            checked_ms: AtomicU64::new(0),
            sent_then: AtomicU64::new(0),
            lost_then: AtomicU64::new(0),
            path_queue: AtomicU64::new(0),
        }
    }

    /// Whether a video datagram of temporal layer `layer` goes to this receiver now, or why
    /// not. Only video reaches this; audio, heartbeats and feedback always go.
    pub(crate) fn admit(
        &self,
        layer: u8,
        now: Instant,
        path: &impl ReceiverPath,
    ) -> Result<(), DropReason> {
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        let shedding = now_ms < self.shed_until_ms.load(Ordering::Relaxed);
        if layer == 0 {
            if !shedding {
                return Ok(());
            }
            let queued = path.queued();
            let queue_ok =
                queued < BASE_QUEUE_FLOOR || (queued as u64) < BASE_QUEUE_WINDOWS * path.cwnd();
            return if queue_ok
                && !matches!(self.path_queue(now_ms, path), (q, true) if q >= PATH_QUEUE_BASE_MS)
            {
                Ok(())
            } else {
                Err(DropReason::VideoQueueBound)
            };
        }
        let path_congested = || {
            let (queue_ms, lossy) = self.path_queue(now_ms, path);
            lossy && queue_ms >= PATH_QUEUE_MS
        };
        if is_congested(path.queued(), || path.cwnd()) || path_congested() {
            let until = now_ms + SHED_HOLD.as_millis() as u64;
            self.shed_until_ms.fetch_max(until, Ordering::Relaxed);
            return Err(DropReason::LayerShed);
        }
        if shedding {
            Err(DropReason::LayerShed)
        } else {
            Ok(())
        }
    }

    /// The queue beyond our send buffer (ms) and whether the path lost at least [`PATH_LOSS`]
    /// of what was sent since the check before, as of the last check, checking again when that
    /// is [`PATH_CHECK`] old (one caller does; the others use the last figures).
    fn path_queue(&self, now_ms: u64, path: &impl ReceiverPath) -> (u64, bool) {
        let last = self.checked_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms + 1 >= last + PATH_CHECK.as_millis() as u64;
        if !due
            || self
                .checked_ms
                .compare_exchange(last, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            let found = self.path_queue.load(Ordering::Relaxed);
            return (found & !LOSSY_BIT, found & LOSSY_BIT != 0);
        }
        let s = path.stats();
        let sent = s
            .sent_packets
            .saturating_sub(self.sent_then.swap(s.sent_packets, Ordering::Relaxed));
        let lost = s
            .lost_packets
            .saturating_sub(self.lost_then.swap(s.lost_packets, Ordering::Relaxed));
        let lossy = last != 0 && sent > 0 && lost as f64 >= PATH_LOSS * sent as f64;
        let queue_ms = (s.rtt.saturating_sub(s.min_rtt).as_millis() as u64).min(!LOSSY_BIT);
        let found = queue_ms | if lossy { LOSSY_BIT } else { 0 };
        self.path_queue.store(found, Ordering::Relaxed);
        (queue_ms, lossy)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A receiver's connection as the tests set it.
    struct FakePath {
        queued: Cell<usize>,
        cwnd: Cell<u64>,
        rtt_ms: Cell<u64>,
        sent: Cell<u64>,
        lost: Cell<u64>,
    }

    impl FakePath {
        fn new() -> Self {
            Self {
                queued: Cell::new(0),
                cwnd: Cell::new(64_000),
                rtt_ms: Cell::new(40),
                sent: Cell::new(0),
                lost: Cell::new(0),
            }
        }

        /// `sent` more packets of which `lost` were lost.
        fn send(&self, sent: u64, lost: u64) {
            self.sent.set(self.sent.get() + sent);
            self.lost.set(self.lost.get() + lost);
        }
    }

    impl ReceiverPath for FakePath {
        fn queued(&self) -> usize {
            self.queued.get()
        }
        fn cwnd(&self) -> u64 {
            self.cwnd.get()
        }
        fn stats(&self) -> PathSample {
            PathSample {
                rtt: Duration::from_millis(self.rtt_ms.get()),
                min_rtt: Duration::from_millis(40),
                sent_packets: self.sent.get(),
                lost_packets: self.lost.get(),
            }
        }
    }

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
    fn the_base_layer_passes_upper_layers_are_shed_for_the_hold() {
        let t0 = Instant::now();
        let gate = LayerGate::new(t0);
        let path = FakePath::new();
        assert_eq!(gate.admit(1, t0, &path), Ok(()));
        assert_eq!(gate.admit(0, t0, &path), Ok(()));
        // Our queue stands: shed now, and for SHED_HOLD after, even once the queue is gone.
        path.queued.set(64_000);
        assert_eq!(gate.admit(1, t0, &path), Err(DropReason::LayerShed));
        path.queued.set(0);
        assert_eq!(gate.admit(0, t0, &path), Ok(()));
        let during = t0 + SHED_HOLD - Duration::from_millis(1);
        assert_eq!(gate.admit(2, during, &path), Err(DropReason::LayerShed));
        assert_eq!(gate.admit(1, t0 + SHED_HOLD, &path), Ok(()));
        // A new congested observation extends the hold, an earlier one never shortens it.
        let later = t0 + SHED_HOLD * 2;
        path.queued.set(64_000);
        assert_eq!(gate.admit(1, later, &path), Err(DropReason::LayerShed));
        path.queued.set(0);
        assert_eq!(
            gate.admit(1, later + SHED_HOLD / 2, &path),
            Err(DropReason::LayerShed)
        );
        assert_eq!(gate.admit(1, later + SHED_HOLD, &path), Ok(()));
    }

    #[test]
    fn base_layer_video_is_bounded_only_while_the_receiver_is_shed_for() {
        let t0 = Instant::now();
        let gate = LayerGate::new(t0);
        let path = FakePath::new();
        // Not shed for: the base layer passes whatever the queue.
        path.queued.set(200_000);
        assert_eq!(gate.admit(0, t0, &path), Ok(()));
        assert_eq!(gate.admit(1, t0, &path), Err(DropReason::LayerShed));
        // Shed for: a short queue, or one under two windows, takes it; a longer one does not.
        path.cwnd.set(30_000);
        for (queued, admitted) in [
            (BASE_QUEUE_FLOOR - 1, true),
            (50_000, true),
            (60_000, false),
        ] {
            path.queued.set(queued);
            assert_eq!(
                gate.admit(0, t0, &path).is_ok(),
                admitted,
                "{queued} queued"
            );
        }
        path.cwnd.set(1_000);
        path.queued.set(BASE_QUEUE_FLOOR);
        assert_eq!(gate.admit(0, t0, &path), Err(DropReason::VideoQueueBound));
        // Once the hold ends, the bound is gone.
        assert_eq!(gate.admit(0, t0 + SHED_HOLD, &path), Ok(()));
    }

    #[test]
    fn a_queue_beyond_our_buffer_sheds_when_it_comes_with_loss() {
        let t0 = Instant::now();
        let gate = LayerGate::new(t0);
        let path = FakePath::new();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(
            gate.admit(1, at(0), &path),
            Ok(()),
            "the first check sets the baseline"
        );
        // Delay alone (the receiver's uplink delaying its ACKs) is no congestion here.
        path.rtt_ms.set(400);
        path.send(100, 0);
        assert_eq!(gate.admit(1, at(100), &path), Ok(()));
        // Random loss alone neither.
        path.rtt_ms.set(45);
        path.send(100, 30);
        assert_eq!(gate.admit(1, at(200), &path), Ok(()));
        // A full queue at its bottleneck: delay and loss together. The figure holds until the
        // next check.
        path.rtt_ms.set(180);
        path.send(100, 30);
        assert_eq!(gate.admit(1, at(300), &path), Err(DropReason::LayerShed));
        assert_eq!(
            gate.admit(0, at(350), &path),
            Ok(()),
            "140 ms: base still goes"
        );
        // While shed for, a longer queue with loss keeps the base layer out too.
        path.rtt_ms.set(300);
        path.send(100, 20);
        assert_eq!(
            gate.admit(0, at(390), &path),
            Ok(()),
            "not checked again yet"
        );
        assert_eq!(
            gate.admit(0, at(400), &path),
            Err(DropReason::VideoQueueBound)
        );
        // Delay alone does not (the receiver's uplink may be what delays its ACKs).
        path.send(100, 0);
        assert_eq!(gate.admit(0, at(500), &path), Ok(()));
        // The queue drains: base layer first, the upper ones after the hold.
        path.rtt_ms.set(50);
        path.send(100, 0);
        assert_eq!(gate.admit(0, at(600), &path), Ok(()));
        assert_eq!(gate.admit(1, at(600), &path), Err(DropReason::LayerShed));
        assert_eq!(gate.admit(1, at(1400), &path), Ok(()));
    }
}
