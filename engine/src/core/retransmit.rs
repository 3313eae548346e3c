//! The sender's side of video loss recovery: a short history of the sealed fragments we sent,
//! and the answer to a receiver's NACK. A retransmission is the same sealed bytes behind an
//! addressed clear header (no new nonce, no new counter), sent only to the peer that asked.
//!
//! A NACK can never make us send more than we sent: each receiver has a byte credit that
//! grows only with what we originally sent (capped) and shrinks with every retransmission to
//! it, each fragment is resent a bounded number of times, and frames we no longer hold,
//! unknown indices and oversized requests are ignored and counted.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vcall_proto::media::NackList;
use vcall_proto::repair::MAX_REPAIR;
use vcall_proto::{DatagramHeader, DatagramKind, PeerId};

/// Frames kept for retransmission (about two seconds at 30 fps).
pub const HISTORY_FRAMES: usize = 64;
/// Bytes kept for retransmission at most (oldest frames go first).
pub const HISTORY_BYTES: usize = 4 << 20;
/// Times one fragment is resent at most (over all receivers; each answer is two copies).
pub const MAX_RESENDS: u8 = 6;
/// Copies sent in answer to one request: two, so that one lost copy does not cost another
/// round trip (a freeze) on a lossy path.
pub const COPIES: u8 = 2;
/// A request for a fragment just resent to the same receiver is a duplicate (receivers send
/// each NACK twice for the same reason).
pub const DUPLICATE_WINDOW: Duration = Duration::from_millis(30);
/// A receiver's retransmission credit never exceeds this many bytes.
pub const MAX_CREDIT: u64 = 1 << 20;

/// What the history did with NACKs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransmitCounters {
    pub nacks_received: u64,
    pub fragments_resent: u64,
    pub bytes_resent: u64,
    /// Requested fragments not resent: frame no longer held, index out of range, resent too
    /// often, or the receiver's credit spent.
    pub requests_refused: u64,
    /// Requests for a fragment resent to the same receiver within [`DUPLICATE_WINDOW`].
    pub requests_duplicate: u64,
    /// Distinct fragment requests (not duplicates), answered or refused: the loss receivers
    /// report to us, fragment by fragment.
    pub fragments_requested: u64,
    /// Video datagrams sent originally (data and repair).
    pub fragments_sent: u64,
}

struct SentFrame {
    frame_id: u32,
    /// The broadcast datagrams as first sent, in index order (data, then repair).
    datagrams: Vec<Bytes>,
    resent: Vec<u8>,
    /// Per fragment: to whom and when it was last resent.
    last_resent: Vec<Option<(PeerId, Instant)>>,
    bytes: usize,
}

/// The sealed video fragments we sent recently, for NACKs.
#[derive(Default)]
pub struct SentHistory {
    frames: VecDeque<SentFrame>,
    bytes: usize,
    /// Per receiver that ever NACKed: bytes it may still make us resend.
    credit: HashMap<PeerId, u64>,
    /// Bytes originally sent, for the credit of receivers seen for the first time.
    recent_bytes: u64,
    counters: RetransmitCounters,
}

impl SentHistory {
    pub fn counters(&self) -> RetransmitCounters {
        self.counters
    }

    /// Records the datagrams of one frame as sent.
    pub fn record(&mut self, frame_id: u32, datagrams: Vec<Bytes>) {
        let bytes: usize = datagrams.iter().map(Bytes::len).sum();
        self.counters.fragments_sent += datagrams.len() as u64;
        for c in self.credit.values_mut() {
            *c = (*c + bytes as u64).min(MAX_CREDIT);
        }
        self.recent_bytes = (self.recent_bytes + bytes as u64).min(MAX_CREDIT);
        self.bytes += bytes;
        self.frames.push_back(SentFrame {
            frame_id,
            resent: vec![0; datagrams.len()],
            last_resent: vec![None; datagrams.len()],
            datagrams,
            bytes,
        });
        while self.frames.len() > HISTORY_FRAMES || self.bytes > HISTORY_BYTES {
            let Some(old) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= old.bytes;
        }
    }

    /// A receiver left: forget its credit.
    pub fn forget(&mut self, peer: PeerId) {
        self.credit.remove(&peer);
    }

    /// Answers `from`'s NACK at `now`: hands each datagram to resend to `send` ([`COPIES`]
    /// copies of each requested fragment).
    pub fn on_nack(
        &mut self,
        now: Instant,
        from: PeerId,
        list: &NackList,
        mut send: impl FnMut(Bytes),
    ) {
        self.counters.nacks_received += 1;
        let credit = self.credit.entry(from).or_insert(self.recent_bytes);
        for entry in list.entries() {
            let Some(frame) = self
                .frames
                .iter_mut()
                .find(|f| f.frame_id == entry.frame_id)
            else {
                self.counters.requests_refused += 1;
                continue;
            };
            let mut resend = |index: usize, counters: &mut RetransmitCounters| {
                let Some(original) = frame.datagrams.get(index) else {
                    counters.requests_refused += 1;
                    return;
                };
                if frame.last_resent[index].is_some_and(|(to, at)| {
                    to == from && now.saturating_duration_since(at) < DUPLICATE_WINDOW
                }) {
                    counters.requests_duplicate += 1;
                    return;
                }
                counters.fragments_requested += 1;
                // The addressed copy is 4 bytes longer (the target): that is what it costs.
                let cost = original.len() as u64 + 4;
                let copy = addressed(original, from);
                let mut sent = 0;
                while sent < COPIES && frame.resent[index] < MAX_RESENDS && *credit >= cost {
                    frame.resent[index] += 1;
                    *credit -= cost;
                    counters.fragments_resent += 1;
                    counters.bytes_resent += cost;
                    send(copy.clone());
                    sent += 1;
                }
                if sent == 0 {
                    counters.requests_refused += 1;
                    return;
                }
                frame.last_resent[index] = Some((from, now));
            };
            if entry.is_whole_frame() {
                for index in 0..frame.datagrams.len() {
                    resend(index, &mut self.counters);
                }
            } else {
                for index in entry.indices() {
                    resend(usize::from(index), &mut self.counters);
                }
            }
        }
    }
}

/// The loss our receivers see, estimated from what they ask us to resend: requested fragments
/// per fragment sent, smoothed over a few seconds. It drives forward error correction.
#[derive(Debug, Default, Clone, Copy)]
pub struct LossEstimate {
    smoothed: f64,
    sent_at_last: u64,
    requested_at_last: u64,
}

impl LossEstimate {
    /// Folds in the counters since the last update (call every stats interval).
    pub fn update(&mut self, counters: &RetransmitCounters) {
        let sent = counters.fragments_sent - self.sent_at_last;
        let requested = counters.fragments_requested - self.requested_at_last;
        self.sent_at_last = counters.fragments_sent;
        self.requested_at_last = counters.fragments_requested;
        if sent == 0 {
            return;
        }
        let sample = (requested as f64 / sent as f64).min(1.0);
        self.smoothed += (sample - self.smoothed) * 0.25;
    }

    /// The estimated fraction of fragments lost (0..=1).
    pub fn fraction(&self) -> f64 {
        self.smoothed
    }
}

/// A frame that others depend on (a keyframe, or of the base temporal layer) may fail its
/// first transmission (fewer than `count` of its fragments arriving) at most this often...
const BASE_FAILURE: f64 = 0.02;
/// ...and a frame of an upper layer (its loss costs that frame only) this often. What is
/// still missing after that, NACKs repair.
const UPPER_FAILURE: f64 = 0.10;
/// Repair is planned for at most this loss.
const MAX_PLANNED_LOSS: f64 = 0.5;
/// Repair fragments per data fragment at most.
const MAX_REPAIR_PER_DATA: usize = 2;
/// The typical P-frame, in data fragments, for the encoder's headroom ([`repair_share`]).
const TYPICAL_FRAGMENTS: usize = 3;

/// The chance that fewer than `n` of `n + r` fragments arrive when each is lost with
/// probability `p` (0 < p < 1): the binomial tail, summed in the log domain so that long
/// keyframes do not underflow.
fn failure_chance(n: usize, r: usize, p: f64) -> f64 {
    let total = (n + r) as f64;
    let (ln_p, ln_ratio) = (p.ln(), ((1.0 - p) / p).ln());
    // ln of C(total, k) q^k p^(total-k), from k = 0 up.
    let mut ln_term = total * ln_p;
    let mut sum = 0.0;
    for k in 0..n {
        sum += ln_term.exp();
        let k = k as f64;
        ln_term += ((total - k) / (k + 1.0)).ln() + ln_ratio;
    }
    sum.min(1.0)
}

/// Repair fragments for a frame of about `count` data fragments when receivers lose `loss`
/// of them (once loss reaches 1 %): the fewest that make the frame's first transmission
/// fail at most [`BASE_FAILURE`] of the time for a keyframe or base-layer frame, and
/// [`UPPER_FAILURE`] for an upper-layer one, at most two per data fragment. Keyframes always
/// get at least one per five.
pub fn repair_for(count: usize, keyframe: bool, base_layer: bool, loss: f64) -> usize {
    let floor = if keyframe {
        count.div_ceil(5).max(1)
    } else {
        0
    };
    if loss < 0.01 || count == 0 {
        return floor;
    }
    let p = loss.min(MAX_PLANNED_LOSS);
    let goal = if keyframe || base_layer {
        BASE_FAILURE
    } else {
        UPPER_FAILURE
    };
    let most = (MAX_REPAIR_PER_DATA * count).min(MAX_REPAIR);
    let mut repair = 0;
    while repair < most && failure_chance(count, repair, p) > goal {
        repair += 1;
    }
    repair.max(floor)
}

/// Repair fragments per data fragment that [`repair_for`] adds to P-frames at `loss` (half
/// of them of the base layer, half of the upper one).
pub fn repair_share(loss: f64) -> f64 {
    let n = TYPICAL_FRAGMENTS;
    (repair_for(n, false, true, loss) + repair_for(n, false, false, loss)) as f64 / (2 * n) as f64
}

/// The same datagram body behind a header addressed to `to` (same temporal layer).
fn addressed(original: &Bytes, to: PeerId) -> Bytes {
    let (layer, body) = DatagramHeader::decode(original)
        .map_or((0, &original[..0]), |(h, off)| (h.layer, &original[off..]));
    let header = DatagramHeader::new(DatagramKind::Video, Some(to)).with_layer(layer);
    let mut out = BytesMut::with_capacity(header.len() + body.len());
    let mut head = [0u8; DatagramHeader::MAX_LEN];
    let n = header.write(&mut head);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_proto::MAX_DATAGRAM_SIZE;
    use vcall_proto::fragment::fragment_frame;
    use vcall_proto::media::NackEntry;

    const BOB: PeerId = PeerId(2);

    fn frame(history: &mut SentHistory, frame_id: u32, len: usize) -> Vec<Bytes> {
        // Odd frames are of temporal layer 1.
        let h = DatagramHeader::new(DatagramKind::Video, None).with_layer((frame_id % 2) as u8);
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let d: Vec<Bytes> = fragment_frame(&h, frame_id, &data, MAX_DATAGRAM_SIZE)
            .unwrap()
            .collect();
        history.record(frame_id, d.clone());
        d
    }

    fn nack(entries: &[NackEntry]) -> NackList {
        let mut l = NackList::default();
        for e in entries {
            l.push(*e);
        }
        l
    }

    #[test]
    fn a_nacked_fragment_is_resent_as_the_same_body_addressed_to_the_asker() {
        let mut h = SentHistory::default();
        let sent = frame(&mut h, 5, 5000);
        let mut out = Vec::new();
        let mut list = NackList::default();
        list.push_fragment(5, 1);
        list.push_fragment(5, 3);
        let t = Instant::now();
        h.on_nack(t, BOB, &list, |d| out.push(d));
        assert_eq!(out.len(), 4, "two copies each");
        assert_eq!(out[0], out[1]);
        for (got, index) in out.iter().step_by(2).zip([1usize, 3]) {
            let (gh, goff) = DatagramHeader::decode(got).unwrap();
            let (_, ooff) = DatagramHeader::decode(&sent[index]).unwrap();
            assert_eq!(gh.target, Some(BOB));
            assert_eq!(gh.kind, DatagramKind::Video);
            assert_eq!(gh.layer, 1, "the frame's layer is kept");
            assert_eq!(&got[goff..], &sent[index][ooff..], "same sealed bytes");
        }
        // A whole-frame NACK resends every fragment (sending frame 6 gave Bob the credit).
        let sent = frame(&mut h, 6, 5000);
        frame(&mut h, 7, 5000); // (and frame 7 the credit for a second copy)
        out.clear();
        h.on_nack(t, BOB, &nack(&[NackEntry::whole_frame(6)]), |d| out.push(d));
        assert_eq!(out.len(), 2 * sent.len());
        assert_eq!(h.counters().fragments_resent, 4 + 2 * sent.len() as u64);
        // The same request again at once (the receiver's second copy) is a duplicate.
        out.clear();
        h.on_nack(t, BOB, &nack(&[NackEntry::whole_frame(6)]), |d| out.push(d));
        assert!(out.is_empty());
        assert_eq!(h.counters().requests_duplicate, sent.len() as u64);
    }

    #[test]
    fn nacks_never_make_us_send_more_than_we_sent() {
        let mut h = SentHistory::default();
        let mut original = 0u64;
        for id in 0..10 {
            original += frame(&mut h, id, 3000)
                .iter()
                .map(|d| d.len() as u64)
                .sum::<u64>();
        }
        // A hostile receiver NACKs everything, over and over, plus frames we never sent and
        // indices beyond any frame.
        let mut resent = 0u64;
        for _ in 0..100 {
            let mut list = NackList::default();
            for id in 0..10 {
                list.push(NackEntry::whole_frame(id));
            }
            list.push(NackEntry::whole_frame(1000));
            list.push(NackEntry {
                frame_id: 3,
                first: 400,
                mask: 0xFFFF,
            });
            h.on_nack(Instant::now(), BOB, &list, |d| resent += d.len() as u64);
        }
        assert!(resent > 0);
        assert!(resent <= original, "{resent} resent for {original} sent");
        let c = h.counters();
        assert_eq!(c.nacks_received, 100);
        assert!(c.requests_refused >= 100 * 18, "{c:?}");
    }

    #[test]
    fn the_loss_estimate_follows_the_requests_and_drives_the_repair() {
        let mut h = SentHistory::default();
        let mut est = LossEstimate::default();
        assert_eq!(
            repair_for(3, false, true, est.fraction()),
            0,
            "no loss, no repair"
        );
        assert_eq!(
            repair_for(20, true, true, est.fraction()),
            4,
            "keyframes always"
        );
        let t = Instant::now();
        for id in 0..200u32 {
            frame(&mut h, id, 2000); // two fragments each
            if id % 10 == 0 {
                let mut l = NackList::default();
                l.push_fragment(id, 1);
                h.on_nack(
                    t + Duration::from_millis(u64::from(id) * 33),
                    BOB,
                    &l,
                    |_| {},
                );
            }
            if id % 8 == 7 {
                est.update(&h.counters());
            }
        }
        // One fragment in twenty requested: about 5 %.
        assert!((est.fraction() - 0.05).abs() < 0.01, "{}", est.fraction());
        // Three fragments at 5 %: one repair leaves 1.4 % of first transmissions failing.
        assert_eq!(repair_for(3, false, false, est.fraction()), 1);
        assert_eq!(repair_for(3, false, true, est.fraction()), 1);
        assert_eq!(repair_for(20, true, true, est.fraction()), 4);
        assert_eq!(
            repair_for(1, false, false, 0.9),
            2,
            "at most two per data fragment"
        );
    }

    #[test]
    fn repair_makes_first_transmissions_fail_rarely_and_base_frames_rarer() {
        // 36 % loss (20 % on each of two hops), three fragments.
        let p = 0.36;
        let upper = repair_for(3, false, false, p);
        let base = repair_for(3, false, true, p);
        assert!(base > upper, "{base} > {upper}");
        assert!(failure_chance(3, upper, p) <= UPPER_FAILURE);
        assert!(
            failure_chance(3, upper - 1, p) > UPPER_FAILURE,
            "the fewest that do"
        );
        assert!(failure_chance(3, base, p) <= BASE_FAILURE);
        // The tail itself: one fragment and one repair copy fail when both are lost.
        assert!((failure_chance(1, 1, 0.3) - 0.09).abs() < 1e-12);
        assert!((failure_chance(2, 0, 0.1) - 0.19).abs() < 1e-12);
        // A 720p keyframe of 200 fragments at 1 % loss neither underflows nor overspends.
        let k = repair_for(200, true, true, 0.01);
        assert!((40..=50).contains(&k), "{k}");
        assert!(failure_chance(200, 0, 0.01) > 0.8);
        // The encoder's headroom follows.
        assert_eq!(repair_share(0.0), 0.0);
        assert!(repair_share(0.36) > repair_share(0.1));
    }

    #[test]
    fn the_history_is_bounded_and_forgets_old_frames() {
        let mut h = SentHistory::default();
        for id in 0..(HISTORY_FRAMES as u32 + 10) {
            frame(&mut h, id, 100);
        }
        let mut out = 0;
        let t = Instant::now();
        h.on_nack(t, BOB, &nack(&[NackEntry::whole_frame(0)]), |_| out += 1);
        assert_eq!(out, 0, "frame 0 is no longer held");
        h.on_nack(
            t,
            BOB,
            &nack(&[NackEntry::whole_frame(HISTORY_FRAMES as u32 + 9)]),
            |_| out += 1,
        );
        assert_eq!(out, 2, "one fragment, two copies");
    }
}
