//! A deterministic in-memory network for tests and benchmarks: one [`SimLink`] is one
//! direction of a path, with seeded delay, jitter, random or burst (Gilbert–Elliott) loss,
//! reordering, duplication and a rate cap with a bounded queue. Time is passed in; nothing
//! here sleeps, spawns or touches a socket, so the same seed gives the same run. The
//! decisions themselves are a [`LinkModel`] (packet size + time → drop reason or delivery
//! times), which the real-time UDP proxy `vcall-netem` drives with the wall clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use vcall_netsim::{LinkConfig, SimLink};
//! let t0 = Instant::now();
//! let mut link = SimLink::new(LinkConfig { delay: Duration::from_millis(20), ..LinkConfig::perfect() }, 7);
//! link.send(t0, "hello", 5);
//! assert_eq!(link.poll_deliver(t0), None);
//! assert_eq!(link.next_delivery(), Some(t0 + Duration::from_millis(20)));
//! assert_eq!(link.poll_deliver(t0 + Duration::from_millis(20)), Some("hello"));
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Burst loss as a two-state Gilbert–Elliott chain: in the good state packets are lost with
/// `loss_good`, in the bad state with `loss_bad`; each packet moves good→bad with
/// `p_good_to_bad` and bad→good with `p_bad_to_good` (mean burst = 1 / `p_bad_to_good`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    pub p_good_to_bad: f64,
    pub p_bad_to_good: f64,
    pub loss_good: f64,
    pub loss_bad: f64,
}

impl BurstLoss {
    /// Bursts averaging `mean_burst` packets with an overall loss rate of `average_loss`
    /// (all packets in the bad state lost, none in the good one).
    pub fn with_average(average_loss: f64, mean_burst: f64) -> Self {
        let p_bad_to_good = 1.0 / mean_burst.max(1.0);
        // Stationary share of the bad state = g / (g + b) = average_loss.
        let loss = average_loss.clamp(0.0, 0.99);
        let p_good_to_bad = p_bad_to_good * loss / (1.0 - loss);
        Self {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// The impairments of one direction of a path.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way base delay.
    pub delay: Duration,
    /// Each packet gets an extra delay uniform in `0..=jitter` (packets may reorder).
    pub jitter: Duration,
    /// Independent random loss probability per packet.
    pub loss: f64,
    /// Burst loss on top of `loss`.
    pub burst: Option<BurstLoss>,
    /// Probability that a packet is held back by `reorder_delay` extra (arrives after later ones).
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Serialisation rate cap in bits per second (`None`: unlimited).
    pub rate_bps: Option<u64>,
    /// Bytes the rate-capped queue holds before tail drop.
    pub queue_bytes: usize,
    /// Intervals `(from, to)`, relative to the link's origin (its first packet unless
    /// [`LinkModel::with_origin`] sets it), in which every packet is lost.
    pub blackouts: Vec<(Duration, Duration)>,
}

impl LinkConfig {
    /// No delay, no loss, no cap.
    pub fn perfect() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(30),
            duplicate: 0.0,
            rate_bps: None,
            queue_bytes: 256 * 1024,
            blackouts: Vec::new(),
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::perfect()
    }
}

/// What a link did with what it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost_random: u64,
    pub lost_burst: u64,
    pub lost_blackout: u64,
    pub dropped_queue_full: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl LinkStats {
    /// Every packet the link dropped, for whatever reason.
    pub fn lost(&self) -> u64 {
        self.lost_random + self.lost_burst + self.lost_blackout + self.dropped_queue_full
    }
}

/// Why a [`LinkModel`] dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Independent random loss (`LinkConfig::loss`).
    Random,
    /// Gilbert–Elliott burst loss (`LinkConfig::burst`).
    Burst,
    /// Sent inside a scheduled blackout.
    Blackout,
    /// The rate-capped queue was full (tail drop).
    QueueFull,
}

/// What a [`LinkModel`] decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Dropped(DropReason),
    /// Delivered at `at`, and a second copy at `duplicate_at` if it was duplicated;
    /// `reordered`: held back by `LinkConfig::reorder_delay`.
    Delivered {
        at: Instant,
        duplicate_at: Option<Instant>,
        reordered: bool,
    },
}

impl Fate {
    /// The drop reason, if dropped.
    pub fn dropped(&self) -> Option<DropReason> {
        match self {
            Fate::Dropped(reason) => Some(*reason),
            Fate::Delivered { .. } => None,
        }
    }
}

/// The decisions of one direction of a path, without the packets: given a packet's size and
/// the time it is offered, whether it is dropped (and why) or when it (and any duplicate)
/// arrives. [`SimLink`] is this model plus an in-flight queue; `vcall-netem` drives the same
/// model with the wall clock, so a seed gives the same decisions in both.
pub struct LinkModel {
    config: LinkConfig,
    rng: StdRng,
    /// When the rate-capped "wire" is free again.
    wire_free_at: Option<Instant>,
    /// Blackouts are relative to this (the first packet's time unless set).
    origin: Option<Instant>,
    burst_bad: bool,
    stats: LinkStats,
}

impl LinkModel {
    /// A model with `config`, its randomness seeded with `seed`; blackouts count from the
    /// first packet offered.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            wire_free_at: None,
            origin: None,
            burst_bad: false,
            stats: LinkStats::default(),
        }
    }

    /// Blackouts count from `origin` instead of the first packet.
    pub fn with_origin(mut self, origin: Instant) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Changes the impairments from now on.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// What was decided so far (`delivered` stays 0: the model does not deliver).
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Decides the fate of a packet of `size` bytes offered at `now`.
    pub fn decide(&mut self, now: Instant, size: usize) -> Fate {
        self.stats.sent += 1;
        let origin = *self.origin.get_or_insert(now);
        let since = now.saturating_duration_since(origin);
        if self
            .config
            .blackouts
            .iter()
            .any(|&(from, to)| since >= from && since < to)
        {
            self.stats.lost_blackout += 1;
            return Fate::Dropped(DropReason::Blackout);
        }
        if let Some(burst) = self.config.burst {
            let flip = if self.burst_bad {
                burst.p_bad_to_good
            } else {
                burst.p_good_to_bad
            };
            if self.rng.random_bool(flip.clamp(0.0, 1.0)) {
                self.burst_bad = !self.burst_bad;
            }
            let p = if self.burst_bad {
                burst.loss_bad
            } else {
                burst.loss_good
            };
            if self.rng.random_bool(p.clamp(0.0, 1.0)) {
                self.stats.lost_burst += 1;
                return Fate::Dropped(DropReason::Burst);
            }
        }
        if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
            self.stats.lost_random += 1;
            return Fate::Dropped(DropReason::Random);
        }
        // Rate cap: the packet leaves the queue when the wire has sent everything before it.
        let mut departs = now;
        if let Some(rate) = self.config.rate_bps.filter(|r| *r > 0) {
            let free = self.wire_free_at.unwrap_or(now).max(now);
            let queued_bytes = (free - now).as_secs_f64() * rate as f64 / 8.0;
            if queued_bytes + size as f64 > self.config.queue_bytes as f64 {
                self.stats.dropped_queue_full += 1;
                return Fate::Dropped(DropReason::QueueFull);
            }
            let serialise = Duration::from_secs_f64(size as f64 * 8.0 / rate as f64);
            departs = free + serialise;
            self.wire_free_at = Some(departs);
        }
        let mut at = departs + self.config.delay + self.random_jitter();
        let reordered =
            self.config.reorder > 0.0 && self.rng.random_bool(self.config.reorder.clamp(0.0, 1.0));
        if reordered {
            self.stats.reordered += 1;
            at += self.config.reorder_delay;
        }
        let mut duplicate_at = None;
        if self.config.duplicate > 0.0
            && self.rng.random_bool(self.config.duplicate.clamp(0.0, 1.0))
        {
            self.stats.duplicated += 1;
            duplicate_at = Some(at + self.random_jitter());
        }
        Fate::Delivered {
            at,
            duplicate_at,
            reordered,
        }
    }

    fn random_jitter(&mut self) -> Duration {
        let max = self.config.jitter.as_micros() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.rng.random_range(0..=max))
    }
}

/// One direction of a simulated path carrying packets of type `T`: a [`LinkModel`] and the
/// packets in flight.
pub struct SimLink<T> {
    model: LinkModel,
    /// In flight, by (delivery time, send order).
    in_flight: BTreeMap<(Instant, u64), T>,
    next_order: u64,
    delivered: u64,
}

impl<T: Clone> SimLink<T> {
    /// A link with `config`, its randomness seeded with `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self::from_model(LinkModel::new(config, seed))
    }

    /// A link driven by `model` (e.g. one made [`LinkModel::with_origin`]).
    pub fn from_model(model: LinkModel) -> Self {
        Self {
            model,
            in_flight: BTreeMap::new(),
            next_order: 0,
            delivered: 0,
        }
    }

    /// Changes the impairments from now on (packets in flight keep their times).
    pub fn set_config(&mut self, config: LinkConfig) {
        self.model.set_config(config);
    }

    pub fn config(&self) -> &LinkConfig {
        self.model.config()
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            delivered: self.delivered,
            ..self.model.stats()
        }
    }

    /// Offers a packet of `size` bytes at `now`; it is lost, queued or scheduled, as the
    /// returned fate says.
    pub fn send(&mut self, now: Instant, packet: T, size: usize) -> Fate {
        let fate = self.model.decide(now, size);
        if let Fate::Delivered {
            at, duplicate_at, ..
        } = fate
        {
            if let Some(again) = duplicate_at {
                self.schedule(again, packet.clone());
            }
            self.schedule(at, packet);
        }
        fate
    }

    fn schedule(&mut self, at: Instant, packet: T) {
        self.in_flight.insert((at, self.next_order), packet);
        self.next_order += 1;
    }

    /// The next packet due at or before `now`, in delivery order.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<T> {
        let (&(at, _), _) = self.in_flight.first_key_value()?;
        if at > now {
            return None;
        }
        self.delivered += 1;
        self.in_flight.pop_first().map(|(_, p)| p)
    }

    /// When the next packet is due, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: LinkConfig, seed: u64, packets: usize, gap: Duration) -> (Vec<u32>, LinkStats) {
        let t0 = Instant::now();
        let mut link = SimLink::new(config, seed);
        for i in 0..packets {
            link.send(t0 + gap * i as u32, i as u32, 1000);
        }
        let mut out = Vec::new();
        let end = t0 + gap * packets as u32 + Duration::from_secs(60);
        while let Some(p) = link.poll_deliver(end) {
            out.push(p);
        }
        (out, link.stats())
    }

    #[test]
    fn a_perfect_link_delivers_everything_in_order_after_the_delay() {
        let t0 = Instant::now();
        let mut link = SimLink::new(
            LinkConfig {
                delay: Duration::from_millis(40),
                ..LinkConfig::perfect()
            },
            1,
        );
        link.send(t0, 1u8, 10);
        link.send(t0, 2u8, 10);
        assert_eq!(link.poll_deliver(t0 + Duration::from_millis(39)), None);
        assert_eq!(link.poll_deliver(t0 + Duration::from_millis(40)), Some(1));
        assert_eq!(link.poll_deliver(t0 + Duration::from_millis(40)), Some(2));
        assert_eq!(link.stats().delivered, 2);
    }

    #[test]
    fn the_same_seed_gives_the_same_run_and_loss_is_near_its_rate() {
        let config = LinkConfig {
            loss: 0.05,
            jitter: Duration::from_millis(5),
            duplicate: 0.01,
            reorder: 0.02,
            ..LinkConfig::perfect()
        };
        let a = run(config.clone(), 42, 10_000, Duration::from_millis(1));
        let b = run(config.clone(), 42, 10_000, Duration::from_millis(1));
        assert_eq!(a, b);
        let c = run(config, 43, 10_000, Duration::from_millis(1));
        assert_ne!(a.0, c.0);
        let lost = a.1.lost_random as f64 / 10_000.0;
        assert!((0.04..0.06).contains(&lost), "{lost}");
        assert!(a.1.duplicated > 50 && a.1.reordered > 100, "{:?}", a.1);
        let mut sorted = a.0.clone();
        sorted.sort();
        assert_ne!(sorted, a.0, "jitter and reordering reorder packets");
    }

    #[test]
    fn burst_loss_has_its_average_and_comes_in_runs() {
        let config = LinkConfig {
            burst: Some(BurstLoss::with_average(0.05, 3.0)),
            ..LinkConfig::perfect()
        };
        let (out, stats) = run(config, 9, 20_000, Duration::from_millis(1));
        let rate = stats.lost_burst as f64 / 20_000.0;
        assert!((0.035..0.065).contains(&rate), "{rate}");
        // Mean length of runs of consecutive losses ≈ 3.
        let mut runs = Vec::new();
        let mut expect = 0u32;
        for p in out {
            if p > expect {
                runs.push(p - expect);
            }
            expect = p + 1;
        }
        let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
        assert!((2.2..3.8).contains(&mean), "{mean}");
    }

    #[test]
    fn a_rate_cap_paces_and_tail_drops_beyond_its_queue() {
        let t0 = Instant::now();
        let mut link = SimLink::new(
            LinkConfig {
                rate_bps: Some(800_000), // 100 kB/s: one 1000-byte packet per 10 ms
                queue_bytes: 10_000,
                ..LinkConfig::perfect()
            },
            3,
        );
        for i in 0..50u32 {
            link.send(t0, i, 1000);
        }
        let s = link.stats();
        assert_eq!(s.dropped_queue_full, 40, "{s:?}");
        assert_eq!(link.next_delivery(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(link.poll_deliver(t0 + Duration::from_millis(55)), Some(0));
        let mut n = 1;
        while link.poll_deliver(t0 + Duration::from_millis(55)).is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn blackouts_drop_everything_inside_them() {
        let config = LinkConfig {
            blackouts: vec![(Duration::from_millis(100), Duration::from_millis(200))],
            ..LinkConfig::perfect()
        };
        let (out, stats) = run(config, 1, 300, Duration::from_millis(1));
        assert_eq!(stats.lost_blackout, 100);
        assert!(out.iter().all(|&p| !(100..200).contains(&p)));
    }

    #[test]
    fn a_link_makes_exactly_its_models_decisions() {
        let config = LinkConfig {
            loss: 0.1,
            burst: Some(BurstLoss::with_average(0.05, 3.0)),
            jitter: Duration::from_millis(4),
            reorder: 0.05,
            duplicate: 0.05,
            rate_bps: Some(4_000_000),
            queue_bytes: 8_000,
            blackouts: vec![(Duration::from_millis(300), Duration::from_millis(350))],
            ..LinkConfig::perfect()
        };
        let t0 = Instant::now();
        let mut model = LinkModel::new(config.clone(), 77);
        let mut link = SimLink::new(config, 77);
        for i in 0..2_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 250);
            let size = 200 + (i as usize * 37) % 1000;
            assert_eq!(
                link.send(now, i, size),
                model.decide(now, size),
                "packet {i}"
            );
        }
        let (l, m) = (link.stats(), model.stats());
        assert_eq!(LinkStats { delivered: 0, ..l }, m);
        assert!(m.lost_random > 0 && m.lost_burst > 0 && m.lost_blackout > 0);
        assert!(
            m.dropped_queue_full > 0 && m.duplicated > 0 && m.reordered > 0,
            "{m:?}"
        );
    }

    #[test]
    fn blackouts_count_from_a_given_origin() {
        let t0 = Instant::now();
        let config = LinkConfig {
            blackouts: vec![(Duration::from_millis(100), Duration::from_millis(200))],
            ..LinkConfig::perfect()
        };
        let mut model = LinkModel::new(config, 1).with_origin(t0);
        let ms = Duration::from_millis;
        assert!(matches!(
            model.decide(t0 + ms(150), 10),
            Fate::Dropped(DropReason::Blackout)
        ));
        assert_eq!(model.decide(t0 + ms(99), 10).dropped(), None);
        assert_eq!(model.decide(t0 + ms(200), 10).dropped(), None);
        // Without an origin the first packet is the origin.
        let mut lazy = LinkModel::new(model.config().clone(), 1);
        assert_eq!(lazy.decide(t0 + ms(150), 10).dropped(), None);
        assert_eq!(
            lazy.decide(t0 + ms(300), 10).dropped(),
            Some(DropReason::Blackout)
        );
    }
}
