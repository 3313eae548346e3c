//! Keyframe policy, both directions: when we ask a sender for a keyframe (a frame was lost, the
//! stream did not start on one, the decoder failed), and when a request from a receiver makes
//! our encoder produce one. Both are rate-limited so a lossy path or a hostile peer cannot
//! turn every frame into a keyframe.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vcall_proto::PeerId;

/// Keyframe requests to one sender at most this often.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// A request repeated because no keyframe came since the last one waits this long: a keyframe
/// on a slow path takes a while to arrive, and asking again meanwhile would make another.
pub const REPEAT_INTERVAL: Duration = Duration::from_millis(1500);
/// Keyframes forced by requests at most this often.
pub const FORCE_INTERVAL: Duration = Duration::from_millis(300);

/// Why we want a keyframe from a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeNeed {
    /// Its stream has not started with a keyframe yet.
    NoKeyframeYet,
    /// A frame was lost (a gap in frame ids, or reassembly gave up on one).
    FrameLost,
    /// Our decoder could not decode its stream.
    DecoderFailed,
    /// We asked after a loss and no keyframe has come since.
    StillWaiting,
}

/// The keyframe decisions of one call.
#[derive(Debug, Default)]
pub struct KeyframePolicy {
    last_request: HashMap<PeerId, Instant>,
    last_forced: Option<Instant>,
    requests_sent: u64,
    requests_suppressed: u64,
    forced: u64,
    requests_ignored: u64,
}

impl KeyframePolicy {
    /// Whether to send `peer` a keyframe request now for `need`; records it when yes.
    pub fn should_request(&mut self, now: Instant, peer: PeerId, need: KeyframeNeed) -> bool {
        let interval = match need {
            KeyframeNeed::StillWaiting => REPEAT_INTERVAL,
            _ => REQUEST_INTERVAL,
        };
        if self
            .last_request
            .get(&peer)
            .is_some_and(|t| now.saturating_duration_since(*t) < interval)
        {
            self.requests_suppressed += 1;
            return false;
        }
        self.last_request.insert(peer, now);
        self.requests_sent += 1;
        true
    }

    /// A receiver asked us for a keyframe: whether to force one in our encoder now.
    pub fn on_request_received(&mut self, now: Instant) -> bool {
        if self
            .last_forced
            .is_some_and(|t| now.saturating_duration_since(t) < FORCE_INTERVAL)
        {
            self.requests_ignored += 1;
            return false;
        }
        self.last_forced = Some(now);
        self.forced += 1;
        true
    }

    /// Forgets a peer that left.
    pub fn forget(&mut self, peer: PeerId) {
        self.last_request.remove(&peer);
    }

    /// Requests sent, requests held back by the rate limit, keyframes forced, requests ignored.
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.requests_sent,
            self.requests_suppressed,
            self.forced,
            self.requests_ignored,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_to_one_sender_are_rate_limited_but_not_across_senders() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::default();
        assert!(p.should_request(t0, PeerId(2), KeyframeNeed::FrameLost));
        assert!(!p.should_request(
            t0 + Duration::from_millis(100),
            PeerId(2),
            KeyframeNeed::FrameLost
        ));
        assert!(p.should_request(
            t0 + Duration::from_millis(100),
            PeerId(3),
            KeyframeNeed::NoKeyframeYet
        ));
        assert!(p.should_request(
            t0 + REQUEST_INTERVAL,
            PeerId(2),
            KeyframeNeed::DecoderFailed
        ));
        assert_eq!(p.counters().0, 3);
        assert_eq!(p.counters().1, 1);
    }

    #[test]
    fn a_flood_of_requests_forces_at_most_one_keyframe_per_interval() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::default();
        let forced = (0..1000)
            .filter(|i| p.on_request_received(t0 + Duration::from_millis(*i)))
            .count();
        // 0 ms, 300 ms, 600 ms, 900 ms.
        assert_eq!(forced, 4);
        assert_eq!(p.counters().3, 996);
    }

    #[test]
    fn a_repeated_request_waits_longer_than_a_first_one() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::default();
        assert!(p.should_request(t0, PeerId(2), KeyframeNeed::FrameLost));
        let later = t0 + REQUEST_INTERVAL;
        assert!(!p.should_request(later, PeerId(2), KeyframeNeed::StillWaiting));
        assert!(p.should_request(t0 + REPEAT_INTERVAL, PeerId(2), KeyframeNeed::StillWaiting));
    }

    #[test]
    fn a_peer_that_left_can_be_asked_again_at_once_when_it_returns() {
        let t0 = Instant::now();
        let mut p = KeyframePolicy::default();
        assert!(p.should_request(t0, PeerId(2), KeyframeNeed::FrameLost));
        p.forget(PeerId(2));
        assert!(p.should_request(t0, PeerId(2), KeyframeNeed::NoKeyframeYet));
    }
}
