//! The sender's video rate control: from its receivers' reports (loss, receive rate, queuing
//! delay) and its own QUIC send queue, the encoder's target bitrate, and below a share of the
//! configured rate the base temporal layer only (half the frame rate). Multiplicative decrease
//! on congestion, slow increase after a quiet hold, like the loss/delay parts of Google
//! congestion control. A high queuing delay that is already falling (the queue draining after
//! a decrease) is not congestion again: only a delay that stays or grows is. Loss is congestion
//! only beside a queue (a delay above [`LOSS_NEEDS_DELAY_MS`]): random loss on a radio link
//! comes without one, and lowering the rate would not cure it (repair fragments do). A full
//! tail-drop queue always shows its delay. The target is the video's whole send rate: the
//! encoder is told it less the repair fragments' share ([`RateController::set_repair_share`]).
//! One slow receiver does not slow everyone: the sender follows the
//! median receiver (of two, the better one), and the relay sheds upper layers for the rest.
//! Our own QUIC send queue is measured too: while it stands, the rate it drains at is what the
//! uplink carries; a decrease goes under it, and upper-layer frames are held back at the source
//! (nothing refers to them) until the queue is short again. No decrease takes the target below
//! half (a receiver's window can see a keyframe stuck in a queue, not the path's rate).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use vcall_proto::PeerId;
use vcall_proto::media::ReceiverReport;

/// Never below this (kbit/s).
pub const MIN_VIDEO_KBPS: u32 = 100;
/// A call starts at this rate (or the configured one, if lower) and climbs fast from it until
/// the first sign of congestion (as libwebrtc starts low and probes): a 720p keyframe encoded at
/// the full 1.5 Mbit/s into an 800 kbit/s uplink queued for two seconds before any report could
/// say so, and the decreases after it took the rate to a tenth.
pub const START_KBPS: u32 = 600;
/// Until the first decrease, while receivers report a clear path with no queue at all (at most
/// [`STARTUP_DELAY_MS`]), the rate climbs this fraction of itself per second (from 600 to
/// 1500 kbit/s in about 4 s): reports lag half a second or more, and at 50 %/s the climb went
/// a quarter past an 800 kbit/s cap before any said so, overflowing its queue.
const STARTUP_INCREASE_PER_SECOND: f64 = 0.25;
const STARTUP_DELAY_MS: u16 = 10;
/// Receiver loss above this means congestion.
const LOSS_CONGESTED: f64 = 0.10;
/// Loss is congestion only with at least this queuing delay (ms); a receiver that cannot
/// measure delay (no audio from us) has its loss taken as congestion.
const LOSS_NEEDS_DELAY_MS: u16 = 25;
/// Receiver loss below this allows increasing.
const LOSS_CLEAR: f64 = 0.02;
/// Queuing delay above this means congestion (ms).
const DELAY_CONGESTED_MS: u16 = 100;
/// A decrease for queuing delay alone waits this long after the last one: the queue built
/// before it takes that long to drain.
const DELAY_DECREASE_SPACING: Duration = Duration::from_millis(1500);
/// The delay's trend is sampled this often; it is falling when it dropped by more than
/// [`DELAY_FALLING_MS`] since the previous sample.
const DELAY_TREND_INTERVAL: Duration = Duration::from_millis(500);
const DELAY_FALLING_MS: u16 = 10;
/// Queuing delay below this allows increasing (ms).
const DELAY_CLEAR_MS: u16 = 40;
/// Our own QUIC send queue above this much of the target's time means congestion (ms).
const QUEUE_CONGESTED_MS: f64 = 150.0;
/// At most one decrease per this (a report's window plus a round trip).
const DECREASE_SPACING: Duration = Duration::from_millis(700);
/// No increase for this long after a decrease (hysteresis).
const INCREASE_HOLD: Duration = Duration::from_secs(2);
/// Increase rate while the path is clear: this fraction of the target per second.
const INCREASE_PER_SECOND: f64 = 0.10;
/// Reports older than this are ignored.
const REPORT_MAX_AGE: Duration = Duration::from_secs(2);
/// Send only the base layer below this share of the configured rate; back to both layers
/// above the second share.
const BASE_ONLY_BELOW: f64 = 0.30;
const BOTH_LAYERS_ABOVE: f64 = 0.40;
/// A new target is passed to the encoder when it moved at least this much.
const RETELL_CHANGE: f64 = 0.05;
/// One decrease lowers the target at most to this share of it.
const MAX_DECREASE: f64 = 0.5;
/// On our own standing send queue the target goes to this share of the rate the queue drains
/// at (the uplink's capacity), leaving the rest to drain it.
const DRAIN_SHARE: f64 = 0.8;
/// The drain rate is measured over at least this long.
const DRAIN_INTERVAL: Duration = Duration::from_millis(200);
/// Upper-layer frames are not sent while our send queue holds more than this much of the
/// target's time (ms), until it holds less than the second figure: they are what nothing
/// refers to, so dropping them before they queue halves the rate at once with no freeze.
const SHED_UPPER_ABOVE_MS: f64 = 100.0;
const SHED_UPPER_BELOW_MS: f64 = 40.0;

/// What the video encoder should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTarget {
    pub bitrate_kbps: u32,
    /// Send only temporal layer 0 (half the frame rate).
    pub base_layer_only: bool,
}

/// The sender's rate controller.
#[derive(Debug)]
pub struct RateController {
    max_kbps: u32,
    target_kbps: f64,
    base_layer_only: bool,
    reports: HashMap<PeerId, (Instant, ReceiverReport)>,
    /// Each receiver's fragments expected and lost per report over the last
    /// [`REPORT_MAX_AGE`] (when, expected, lost), for the loss repair is sized for.
    loss_history: HashMap<PeerId, VecDeque<(Instant, u32, u32)>>,
    send_queue_bytes: usize,
    last_decrease: Option<Instant>,
    /// The median queuing delay at the last trend sample (when, ms), and whether it fell
    /// since the one before.
    delay_sample: Option<(Instant, u16)>,
    delay_falling: bool,
    last_poll: Option<Instant>,
    told: VideoTarget,
    /// Repair fragments sent per data fragment now.
    repair_share: f64,
    /// Decreases made (for the stats).
    pub decreases: u64,
    /// The last drain sample: when, total bytes sent, bytes queued.
    drain_sample: Option<(Instant, u64, usize)>,
    /// The rate our send queue drained at while it stood (kbit/s), smoothed.
    drain_kbps: Option<f64>,
    /// Upper-layer frames are held back at the source (our queue stands).
    shed_upper: bool,
    /// Our send queue shrank over the last drain interval (it drains: no new decrease).
    queue_falling: bool,
}

impl RateController {
    /// A controller never above `max_kbps`, starting at [`start_kbps`].
    pub fn new(max_kbps: u32) -> Self {
        let max_kbps = max_kbps.max(MIN_VIDEO_KBPS);
        let told = VideoTarget {
            bitrate_kbps: start_kbps(max_kbps),
            base_layer_only: false,
        };
        Self {
            max_kbps,
            target_kbps: f64::from(start_kbps(max_kbps)),
            base_layer_only: false,
            reports: HashMap::new(),
            loss_history: HashMap::new(),
            send_queue_bytes: 0,
            last_decrease: None,
            delay_sample: None,
            delay_falling: false,
            last_poll: None,
            told,
            repair_share: 0.0,
            decreases: 0,
            drain_sample: None,
            drain_kbps: None,
            shed_upper: false,
            queue_falling: false,
        }
    }

    /// Whether to hold back upper-layer frames now (our send queue stands).
    pub fn shed_upper(&self) -> bool {
        self.shed_upper
    }

    /// The encoder's target now: the send rate less the repair fragments' share.
    pub fn target(&self) -> VideoTarget {
        VideoTarget {
            bitrate_kbps: (self.target_kbps / (1.0 + self.repair_share))
                .max(f64::from(MIN_VIDEO_KBPS))
                .round() as u32,
            base_layer_only: self.base_layer_only,
        }
    }

    /// Repair (FEC) fragments now sent per data fragment (0..=2), which the encoder's rate
    /// leaves room for.
    pub fn set_repair_share(&mut self, share: f64) {
        self.repair_share = share.clamp(0.0, 2.0);
    }

    /// A receiver's report on our video.
    pub fn on_report(&mut self, now: Instant, from: PeerId, report: ReceiverReport) {
        self.reports.insert(from, (now, report));
        let history = self.loss_history.entry(from).or_default();
        history.push_back((
            now,
            u32::from(report.fragments_expected),
            u32::from(report.fragments_lost.min(report.fragments_expected)),
        ));
        while history
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) > REPORT_MAX_AGE)
        {
            history.pop_front();
        }
    }

    /// A receiver left.
    pub fn forget(&mut self, peer: PeerId) {
        self.reports.remove(&peer);
        self.loss_history.remove(&peer);
    }

    /// Bytes waiting in our QUIC datagram send buffer now, and all bytes we handed to it so
    /// far: while a queue stands, what left it is what the uplink carries.
    pub fn on_send_queue(&mut self, now: Instant, queued: usize, sent_total: u64) {
        self.send_queue_bytes = queued;
        let queue_ms = self.queue_ms();
        if queue_ms > SHED_UPPER_ABOVE_MS {
            self.shed_upper = true;
        } else if queue_ms < SHED_UPPER_BELOW_MS {
            self.shed_upper = false;
        }
        match self.drain_sample {
            Some((at, _, _)) if now.saturating_duration_since(at) < DRAIN_INTERVAL => {}
            Some((at, sent_then, queued_then)) => {
                if queued_then > 0 && queued > 0 {
                    let drained = sent_total.saturating_sub(sent_then) as f64
                        - (queued as f64 - queued_then as f64);
                    let secs = now.saturating_duration_since(at).as_secs_f64();
                    let kbps = (drained.max(0.0) * 8.0 / 1000.0 / secs).max(1.0);
                    self.drain_kbps = Some(self.drain_kbps.map_or(kbps, |d| d + (kbps - d) / 2.0));
                }
                self.queue_falling = queued < queued_then;
                self.drain_sample = Some((now, sent_total, queued));
            }
            None => self.drain_sample = Some((now, sent_total, queued)),
        }
    }

    /// Our send queue, in ms at the current target.
    fn queue_ms(&self) -> f64 {
        self.send_queue_bytes as f64 * 8.0 / self.target_kbps.max(1.0)
    }

    /// The loss forward error correction (which every receiver gets) and audio redundancy are
    /// sized for: the median receiver's, the same one the rate follows (of two, the better
    /// one), if any reported. A receiver that loses far more than the median is left to NACKs
    /// and the relay's shedding: sized for one such receiver (its loss mostly its own
    /// downlink's congestion, which repair fragments only add to), repair took two thirds of
    /// everyone's rate. A lone receiver is its own median; loss on the sender's own uplink
    /// reaches every receiver, so the median sees it.
    /// Each receiver's loss is taken over its reports of the last [`REPORT_MAX_AGE`] together
    /// (one 500 ms window holds a few dozen fragments: alone, it swung between 0 and 20 % at
    /// 10 % loss, and repair with it).
    pub fn repair_loss(&self, now: Instant) -> Option<f64> {
        let mut losses: Vec<f64> = self
            .loss_history
            .values()
            .filter_map(|history| {
                let (expected, lost) = history
                    .iter()
                    .filter(|(at, _, _)| now.saturating_duration_since(*at) <= REPORT_MAX_AGE)
                    .fold((0u32, 0u32), |(e, l), &(_, re, rl)| (e + re, l + rl));
                (expected > 0).then(|| f64::from(lost) / f64::from(expected))
            })
            .collect();
        losses.sort_by(f64::total_cmp);
        median(&losses).copied()
    }

    fn fresh(&self, now: Instant) -> impl Iterator<Item = &ReceiverReport> {
        self.reports
            .values()
            .filter(move |(at, _)| now.saturating_duration_since(*at) <= REPORT_MAX_AGE)
            .map(|(_, r)| r)
    }

    /// Runs the control step; returns a new target for the encoder when it changed enough.
    pub fn poll(&mut self, now: Instant) -> Option<VideoTarget> {
        let dt = self
            .last_poll
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_poll = Some(now);
        // The median receiver: of n sorted best first, index (n-1)/2.
        // Per receiver, the loss that counts as congestion: only beside a queue.
        let mut losses: Vec<f64> = self
            .fresh(now)
            .map(|r| match r.queuing_delay_ms {
                Some(d) if d < LOSS_NEEDS_DELAY_MS => 0.0,
                _ => r.loss_fraction(),
            })
            .collect();
        let mut delays: Vec<u16> = self.fresh(now).filter_map(|r| r.queuing_delay_ms).collect();
        let mut rates: Vec<f64> = self
            .fresh(now)
            .filter(|r| {
                r.loss_fraction() > LOSS_CONGESTED
                    && r.queuing_delay_ms.is_none_or(|d| d >= LOSS_NEEDS_DELAY_MS)
            })
            .map(|r| r.receive_kbps())
            .collect();
        losses.sort_by(f64::total_cmp);
        delays.sort_unstable();
        rates.sort_by(|a, b| b.total_cmp(a));
        let loss = median(&losses).copied().unwrap_or(0.0);
        let delay = median(&delays).copied().unwrap_or(0);
        let queue_ms = self.queue_ms();
        match self.delay_sample {
            Some((at, _)) if now.saturating_duration_since(at) < DELAY_TREND_INTERVAL => {}
            Some((_, previous)) => {
                self.delay_falling = delay.saturating_add(DELAY_FALLING_MS) < previous;
                self.delay_sample = Some((now, delay));
            }
            None => self.delay_sample = Some((now, delay)),
        }
        let since_decrease = self
            .last_decrease
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        // A high delay that is falling is a queue draining, not a queue building.
        let queue_building = delay > DELAY_CONGESTED_MS
            && !self.delay_falling
            && since_decrease >= DELAY_DECREASE_SPACING;
        // Likewise our own queue: congestion while it stands and does not shrink.
        let own_queue = queue_ms > QUEUE_CONGESTED_MS && !self.queue_falling;
        let congested = loss > LOSS_CONGESTED || queue_building || own_queue;
        let clear =
            loss < LOSS_CLEAR && delay < DELAY_CLEAR_MS && queue_ms < QUEUE_CONGESTED_MS / 3.0;
        if congested && since_decrease >= DECREASE_SPACING {
            let mut next = self.target_kbps * (1.0 - 0.5 * loss).min(0.85);
            if let Some(&received) = median(&rates) {
                // What still arrives, a little under it, when the loss says the path is full.
                next = next.min(received * 0.9);
            }
            if own_queue && let Some(drain) = self.drain_kbps {
                // Our uplink is the bottleneck: under what it carries, so the queue drains.
                next = next.min(drain * DRAIN_SHARE);
            }
            // A window's receive rate can be a keyframe stuck in a queue: never below half.
            self.target_kbps = next.max(self.target_kbps * MAX_DECREASE);
            self.last_decrease = Some(now);
            self.decreases += 1;
        } else if clear && since_decrease >= INCREASE_HOLD {
            // The fast climb only on a receiver's word that the path is clear, never blind.
            let per_second = if self.last_decrease.is_none()
                && self.fresh(now).next().is_some()
                && delay <= STARTUP_DELAY_MS
            {
                STARTUP_INCREASE_PER_SECOND
            } else {
                INCREASE_PER_SECOND
            };
            self.target_kbps *= 1.0 + per_second * dt.as_secs_f64();
        }
        self.target_kbps = self
            .target_kbps
            .clamp(f64::from(MIN_VIDEO_KBPS), f64::from(self.max_kbps));
        let share = self.target_kbps / f64::from(self.max_kbps);
        if share < BASE_ONLY_BELOW {
            self.base_layer_only = true;
        } else if share > BOTH_LAYERS_ABOVE {
            self.base_layer_only = false;
        }
        let target = self.target();
        let moved = (f64::from(target.bitrate_kbps) - f64::from(self.told.bitrate_kbps)).abs()
            >= f64::from(self.told.bitrate_kbps) * RETELL_CHANGE;
        let at_bound = target.bitrate_kbps != self.told.bitrate_kbps
            && (target.bitrate_kbps == self.max_kbps || target.bitrate_kbps == MIN_VIDEO_KBPS);
        if moved || at_bound || target.base_layer_only != self.told.base_layer_only {
            self.told = target;
            return Some(target);
        }
        None
    }
}

/// The rate a call's video starts at, for a configured maximum of `max_kbps` (the encoder's
/// first keyframe is encoded at it).
pub fn start_kbps(max_kbps: u32) -> u32 {
    max_kbps.clamp(MIN_VIDEO_KBPS, START_KBPS.max(MIN_VIDEO_KBPS))
}

/// The element at index (n-1)/2 of a list sorted best first.
fn median<T>(sorted: &[T]) -> Option<&T> {
    sorted.get(sorted.len().saturating_sub(1) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller already at its maximum (past the startup climb).
    fn at_full_rate(max_kbps: u32) -> RateController {
        let mut c = RateController::new(max_kbps);
        c.target_kbps = f64::from(max_kbps);
        c.told = c.target();
        c
    }

    fn report(lost_percent: u16, kbps: u32, delay: Option<u16>) -> ReceiverReport {
        ReceiverReport {
            interval_ms: 500,
            fragments_expected: 100,
            fragments_lost: lost_percent,
            video_bytes: kbps * 500 / 8,
            queuing_delay_ms: delay,
        }
    }

    /// Drives the controller every 250 ms for `secs`, one report per 500 ms from each
    /// receiver; returns the last target.
    fn drive(
        c: &mut RateController,
        t: &mut Instant,
        secs: u32,
        reports: impl Fn(f64) -> Vec<(PeerId, ReceiverReport)>,
    ) -> VideoTarget {
        for step in 0..secs * 4 {
            *t += Duration::from_millis(250);
            if step % 2 == 0 {
                for (peer, r) in reports(c.target_kbps) {
                    c.on_report(*t, peer, r);
                }
            }
            c.poll(*t);
        }
        c.target()
    }

    #[test]
    fn a_capped_path_makes_the_sender_step_down_and_a_lifted_cap_up_again() {
        let mut t = Instant::now();
        let mut c = RateController::new(1500);
        // The path carries 800 kbit/s: the excess is lost and queues build.
        let capped = |target: f64| {
            let loss = (1.0 - 800.0 / target).max(0.0);
            let delay = if target > 800.0 { 250 } else { 10 };
            vec![(
                PeerId(2),
                report((loss * 100.0) as u16, target.min(800.0) as u32, Some(delay)),
            )]
        };
        let down = drive(&mut c, &mut t, 5, capped);
        // At or just over the cap: after a decrease's hold it probes up again at 10 %/s.
        assert!(
            down.bitrate_kbps <= 820,
            "{down:?} after 5 s under an 800 kbit/s cap"
        );
        assert!(down.bitrate_kbps >= 500, "{down:?}: not far below the cap");
        assert!(!down.base_layer_only);
        let held = drive(&mut c, &mut t, 10, capped);
        assert!(held.bitrate_kbps <= 880, "{held:?} stays near the cap");
        // The cap is lifted: the rate climbs back to the configured maximum.
        let clear = |target: f64| vec![(PeerId(2), report(0, target as u32, Some(5)))];
        let up = drive(&mut c, &mut t, 20, clear);
        assert_eq!(up.bitrate_kbps, 1500, "{up:?}");
    }

    #[test]
    fn a_call_starts_low_and_climbs_fast_until_the_first_congestion_then_slowly() {
        let mut t = Instant::now();
        let mut c = RateController::new(1500);
        assert_eq!(c.target().bitrate_kbps, START_KBPS);
        assert_eq!(RateController::new(300).target().bitrate_kbps, 300);
        let clear = |target: f64| vec![(PeerId(2), report(0, target as u32, Some(5)))];
        // A small queue (20 ms) is no congestion, but no fast climb either.
        let mut queued = RateController::new(1500);
        let mut tq = t;
        let small_queue = |target: f64| vec![(PeerId(2), report(0, target as u32, Some(20)))];
        let slow = drive(&mut queued, &mut tq, 1, small_queue).bitrate_kbps;
        assert!(
            (600..680).contains(&slow),
            "{slow} after 1 s beside a 20 ms queue"
        );
        let one_second = drive(&mut c, &mut t, 1, clear).bitrate_kbps;
        assert!((720..820).contains(&one_second), "{one_second} after 1 s");
        assert_eq!(drive(&mut c, &mut t, 4, clear).bitrate_kbps, 1500);
        // After a decrease, the climb is the slow one.
        drive(&mut c, &mut t, 1, |_| {
            vec![(PeerId(2), report(50, 600, Some(400)))]
        });
        let after = c.target().bitrate_kbps;
        assert!(after <= 750, "{after}");
        // The hold's last second, then two at 10 % a second (startup's pace would reach 1500).
        let later = drive(&mut c, &mut t, 3, clear).bitrate_kbps;
        assert!(
            f64::from(later) < f64::from(after) * 1.3,
            "{after} → {later}: no startup climb after congestion"
        );
    }

    #[test]
    fn a_draining_queue_is_not_congestion_but_a_standing_one_is() {
        let mut t = Instant::now();
        let mut c = at_full_rate(1000);
        let one = |delay: u16| vec![(PeerId(2), report(0, 1000, Some(delay)))];
        // A queue of 400 ms: a decrease.
        t += Duration::from_millis(250);
        c.on_report(t, PeerId(2), report(0, 1000, Some(400)));
        assert_eq!(c.poll(t).map(|v| v.bitrate_kbps), Some(850));
        // It peaks, then drains (one report per 500 ms): no further decrease while it falls.
        for delay in [450, 420, 380, 330, 280, 240, 200, 170, 150] {
            t += Duration::from_millis(250);
            c.on_report(t, PeerId(2), report(0, 1000, Some(delay)));
            c.poll(t);
            t += Duration::from_millis(250);
            c.poll(t);
        }
        assert_eq!((c.target().bitrate_kbps, c.decreases), (850, 1));
        // A queue that stops draining at 150 ms is a standing queue: a decrease again.
        drive(&mut c, &mut t, 1, |_| one(150));
        assert_eq!((c.target().bitrate_kbps, c.decreases), (723, 2));
    }

    #[test]
    fn random_loss_without_a_queue_is_not_congestion() {
        let mut t = Instant::now();
        let mut c = RateController::new(600);
        // 36 % loss (20 % on each of two hops), no queue: the rate stays.
        let radio = |target: f64| vec![(PeerId(2), report(36, (target * 0.64) as u32, Some(4)))];
        assert_eq!(drive(&mut c, &mut t, 10, radio).bitrate_kbps, 600);
        assert_eq!(c.decreases, 0);
        assert!(
            (c.repair_loss(t).unwrap() - 0.36).abs() < 1e-9,
            "FEC still sees it"
        );
        // The same loss from a receiver that cannot measure delay counts.
        let blind = |target: f64| vec![(PeerId(2), report(36, (target * 0.64) as u32, None))];
        assert!(drive(&mut c, &mut t, 2, blind).bitrate_kbps < 600);
    }

    #[test]
    fn the_encoder_leaves_room_for_repair_fragments() {
        let mut c = at_full_rate(1000);
        assert_eq!(c.target().bitrate_kbps, 1000);
        c.set_repair_share(0.25);
        assert_eq!(c.target().bitrate_kbps, 800);
        let t = Instant::now();
        assert_eq!(c.poll(t).map(|v| v.bitrate_kbps), Some(800), "retold");
        c.set_repair_share(7.0);
        assert_eq!(
            c.target().bitrate_kbps,
            333,
            "at most two repair fragments per data fragment"
        );
    }

    #[test]
    fn a_very_low_rate_sends_only_the_base_layer_with_hysteresis() {
        let mut t = Instant::now();
        let mut c = RateController::new(1000);
        let awful = |target: f64| vec![(PeerId(2), report(50, (target / 2.0) as u32, Some(400)))];
        let low = drive(&mut c, &mut t, 6, awful);
        assert_eq!(low.bitrate_kbps, MIN_VIDEO_KBPS);
        assert!(low.base_layer_only);
        let clear = |target: f64| vec![(PeerId(2), report(0, target as u32, Some(0)))];
        // Still base only a little above the threshold, both layers well above it.
        let mut saw_base_only_above_threshold = false;
        for _ in 0..60 {
            let v = drive(&mut c, &mut t, 1, clear);
            if v.base_layer_only && v.bitrate_kbps > 300 {
                saw_base_only_above_threshold = true;
            }
            if !v.base_layer_only {
                assert!(v.bitrate_kbps > 400, "{v:?}");
            }
        }
        assert!(saw_base_only_above_threshold);
        assert!(!c.target().base_layer_only);
    }

    #[test]
    fn one_slow_receiver_of_three_does_not_lower_the_rate() {
        let mut t = Instant::now();
        let mut c = RateController::new(600);
        let mixed = |target: f64| {
            vec![
                (PeerId(2), report(0, target as u32, Some(3))),
                (PeerId(3), report(0, target as u32, Some(4))),
                (PeerId(4), report(50, 300, Some(900))),
            ]
        };
        assert_eq!(drive(&mut c, &mut t, 10, mixed).bitrate_kbps, 600);
        // But with two receivers of three slow, it does.
        let mostly_slow = |_: f64| {
            vec![
                (PeerId(2), report(0, 600, Some(3))),
                (PeerId(3), report(40, 300, Some(600))),
                (PeerId(4), report(50, 300, Some(900))),
            ]
        };
        assert!(drive(&mut c, &mut t, 5, mostly_slow).bitrate_kbps < 300);
        // Repair serves the median receiver, as the rate does.
        assert!((c.repair_loss(t).unwrap() - 0.4).abs() < 1e-9);
    }

    #[test]
    fn repair_follows_each_receivers_loss_over_its_recent_reports_together() {
        let mut t = Instant::now();
        let mut c = RateController::new(600);
        // 0 %, 20 %, 10 % of 100 fragments each: 10 % over the three.
        for lost in [0, 20, 10] {
            c.on_report(t, PeerId(2), report(lost, 600, Some(3)));
            t += Duration::from_millis(500);
        }
        assert!((c.repair_loss(t).unwrap() - 0.10).abs() < 1e-9);
        // Reports older than the age limit drop out.
        t += Duration::from_millis(700);
        assert!((c.repair_loss(t).unwrap() - 0.15).abs() < 1e-9);
    }

    #[test]
    fn repair_serves_the_median_receiver() {
        let t = Instant::now();
        let mut c = RateController::new(600);
        // A lone receiver is its own median: its loss counts whatever its queue.
        c.on_report(t, PeerId(2), report(60, 200, Some(800)));
        assert!((c.repair_loss(t).unwrap() - 0.6).abs() < 1e-9);
        // Of two, the better one.
        c.on_report(t, PeerId(3), report(5, 600, Some(3)));
        assert!((c.repair_loss(t).unwrap() - 0.05).abs() < 1e-9);
        // Of three, the middle one.
        c.on_report(t, PeerId(4), report(20, 400, Some(12)));
        assert!((c.repair_loss(t).unwrap() - 0.20).abs() < 1e-9);
    }

    #[test]
    fn our_own_send_queue_is_congestion_too_and_stale_reports_are_ignored() {
        let mut t = Instant::now();
        let mut c = at_full_rate(1000);
        c.on_report(t, PeerId(2), report(60, 100, Some(900)));
        t += REPORT_MAX_AGE + Duration::from_millis(1);
        assert_eq!(c.poll(t), None, "a stale report changes nothing");
        assert_eq!(c.repair_loss(t), None);
        // 40 KB queued at 1 Mbit/s is 320 ms.
        c.on_send_queue(t, 40_000, 0);
        t += Duration::from_millis(250);
        let v = c.poll(t).expect("a decrease");
        assert_eq!(v.bitrate_kbps, 850);
        assert_eq!(c.decreases, 1);
    }

    #[test]
    fn a_standing_send_queue_brings_the_target_under_what_the_uplink_drains_and_sheds_upper_layers()
    {
        let mut t = Instant::now();
        let mut c = at_full_rate(1500);
        // We hand 1500 kbit/s to QUIC; it lets out 600 kbit/s; the queue grows.
        let (mut sent, mut queued) = (0u64, 0usize);
        assert!(!c.shed_upper());
        for _ in 0..8 {
            t += Duration::from_millis(250);
            let target = f64::from(c.target().bitrate_kbps);
            let (into, out) = ((target * 250.0 / 8.0) as u64, (600.0 * 250.0 / 8.0) as u64);
            sent += into;
            queued = (queued as u64 + into).saturating_sub(out) as usize;
            c.on_send_queue(t, queued, sent);
            c.poll(t);
        }
        assert!(c.shed_upper(), "a queue of {queued} bytes stands");
        let v = c.target();
        assert!(
            (450..=500).contains(&v.bitrate_kbps),
            "{v:?}: under the 600 kbit/s the uplink carries, in at most halvings"
        );
        // Once the queue has drained, upper layers go out again.
        c.on_send_queue(t + Duration::from_millis(250), 0, sent);
        assert!(!c.shed_upper());
    }
}
