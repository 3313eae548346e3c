//! The receiver's side of video loss recovery for one sender: which fragments to NACK and
//! when, and the order frames reach the decoder. A frame that is late is waited for (while its
//! retransmission or repair may still come); frames behind it are held, then delivered in
//! frame-id order. Only when the wait is over is a frame given up on, and only then does the
//! core ask for a keyframe, unless every frame given up on was of an upper temporal layer
//! (then only the frames that refer to it are skipped, and a shorter wait suffices).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vcall_proto::fragment::Reassembler;
use vcall_proto::media::{NackEntry, NackList, VideoMeta};

/// NACKs for one frame at most this many times.
pub const MAX_NACKS_PER_FRAME: u8 = 3;
/// Frames held behind a missing one at most (about a second at 30 fps).
pub const MAX_HELD: usize = 32;
/// Whole frames remembered as missing at most.
const MAX_ABSENT: usize = 32;
/// A gap inside the newest frame is NACKed only once its first fragment is this old: jitter
/// reorders fragments sent together, and a NACK for one still on its way is wasted.
pub const REORDER_GRACE: Duration = Duration::from_millis(15);

/// The longest wait for frames of upper layers only.
pub const MAX_UPPER_WAIT: Duration = Duration::from_millis(100);

/// How long loss recovery waits, from the path's round-trip time to the relay (a NACK's
/// answer crosses the relay twice: about two such round trips).
#[derive(Debug, Clone, Copy)]
pub struct RecoveryTiming {
    /// Between two NACKs of the same frame.
    pub renack: Duration,
    /// How long a missing frame is waited for before it is given up on.
    pub give_up: Duration,
    /// The same when only upper-layer frames are missing (no other frame needs them): time
    /// for one NACK's answer, at most [`MAX_UPPER_WAIT`] so that the pause (the wait plus the
    /// two frame intervals it spans) stays under a freeze's 183 ms at 30 fps.
    pub give_up_upper: Duration,
}

impl RecoveryTiming {
    pub fn from_rtt(rtt: Duration) -> Self {
        let e2e = rtt * 2;
        let renack = (e2e + Duration::from_millis(20))
            .clamp(Duration::from_millis(40), Duration::from_millis(400));
        Self {
            renack,
            // Room for all three NACKs to be answered: the third goes out two renacks after
            // the first and its answer takes about a round trip through the relay and back.
            give_up: (renack * 3 + e2e + Duration::from_millis(20))
                .clamp(Duration::from_millis(150), Duration::from_millis(800)),
            give_up_upper: (e2e + Duration::from_millis(10))
                .clamp(Duration::from_millis(40), MAX_UPPER_WAIT),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct NackState {
    frame_id: u32,
    last: Instant,
    sent: u8,
}

/// Which fragments of one sender to NACK.
#[derive(Debug, Default)]
pub struct NackScheduler {
    /// The newest frame id any fragment carried.
    newest: Option<u32>,
    /// Frames of which no fragment came although a later frame's did: (id, noticed at).
    absent: VecDeque<u32>,
    nacked: VecDeque<NackState>,
    /// Frames below this are decided (delivered or given up): never NACKed again.
    floor: Option<u32>,
    pub nacks_sent: u64,
    pub fragments_nacked: u64,
}

/// `a` is after `b` in wrapping frame-id order.
fn after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

impl NackScheduler {
    /// A fragment of `frame_id` arrived.
    pub fn on_fragment(&mut self, frame_id: u32) {
        match self.newest {
            None => self.newest = Some(frame_id),
            Some(newest) if after(frame_id, newest) => {
                // Frames between the newest and this one have not shown up (yet).
                let gap = frame_id.wrapping_sub(newest).saturating_sub(1);
                for i in 0..gap.min(MAX_ABSENT as u32) {
                    let id = frame_id
                        .wrapping_sub(gap.min(MAX_ABSENT as u32))
                        .wrapping_add(i);
                    self.absent.push_back(id);
                }
                while self.absent.len() > MAX_ABSENT {
                    self.absent.pop_front();
                }
                self.newest = Some(frame_id);
            }
            Some(_) => {}
        }
        self.absent.retain(|&id| id != frame_id);
    }

    /// Frames before `floor` are decided: forget them.
    pub fn set_floor(&mut self, floor: u32) {
        self.floor = Some(floor);
        self.absent.retain(|&id| !after(floor, id));
        self.nacked.retain(|n| !after(floor, n.frame_id));
    }

    /// The NACK to send now, if any: every whole frame missing and every missing fragment
    /// that a later one has overtaken, each frame at most [`MAX_NACKS_PER_FRAME`] times and
    /// not again within `timing.renack`.
    pub fn poll(
        &mut self,
        now: Instant,
        reassembler: &Reassembler,
        timing: RecoveryTiming,
    ) -> Option<NackList> {
        let newest = self.newest?;
        let mut list = NackList::default();
        let floor = self.floor;
        let undecided = |id: u32| floor.is_none_or(|f| !after(f, id));
        let absent: Vec<u32> = self
            .absent
            .iter()
            .copied()
            .filter(|&id| undecided(id))
            .collect();
        for id in absent {
            if self.due(id, now, timing) && list.push(NackEntry::whole_frame(id)) {
                self.mark(id, now);
                self.fragments_nacked += 1;
            }
        }
        for frame in reassembler.incomplete() {
            if !undecided(frame.frame_id) || !self.due(frame.frame_id, now, timing) {
                continue;
            }
            let overtaken = frame.frame_id != newest;
            if !overtaken && now.saturating_duration_since(frame.first_seen) < REORDER_GRACE {
                continue;
            }
            let before = list;
            let mut named = 0u16;
            let mut full = false;
            for index in frame.missing() {
                if named >= frame.needed || (!overtaken && index > frame.highest_index) {
                    break;
                }
                if !list.push_fragment(frame.frame_id, index) {
                    full = true;
                    break;
                }
                named += 1;
            }
            if full {
                list = before;
                break;
            }
            if named > 0 {
                self.mark(frame.frame_id, now);
                self.fragments_nacked += u64::from(named);
            }
        }
        if list.is_empty() {
            return None;
        }
        self.nacks_sent += 1;
        Some(list)
    }

    fn due(&self, frame_id: u32, now: Instant, timing: RecoveryTiming) -> bool {
        self.nacked
            .iter()
            .find(|n| n.frame_id == frame_id)
            .is_none_or(|n| {
                n.sent < MAX_NACKS_PER_FRAME
                    && now.saturating_duration_since(n.last) >= timing.renack
            })
    }

    fn mark(&mut self, frame_id: u32, now: Instant) {
        if let Some(n) = self.nacked.iter_mut().find(|n| n.frame_id == frame_id) {
            n.sent += 1;
            n.last = now;
            return;
        }
        if self.nacked.len() >= MAX_HELD * 2 {
            self.nacked.pop_front();
        }
        self.nacked.push_back(NackState {
            frame_id,
            last: now,
            sent: 1,
        });
    }
}

/// What [`FrameOrder`] decided about one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Ordered<F> {
    /// Decode this frame now.
    Deliver(F),
    /// Frames `from..to` (wrapping) were given up on: the decoder needs a keyframe unless the
    /// next delivered frame is one.
    GaveUp { from: u32, to: u32 },
}

/// Delivers one sender's frames to the decoder in frame-id order, waiting a bounded time for
/// missing ones.
#[derive(Debug)]
pub struct FrameOrder<F> {
    next: Option<u32>,
    /// Frames after a missing one, in frame-id order: (id, keyframe, frame).
    held: VecDeque<(u32, bool, F)>,
    /// Since when the frame `next` has been waited for.
    waiting_since: Option<Instant>,
    /// Frames that came after they were given up on (dropped).
    pub late: u64,
    /// Frames given up on.
    pub given_up: u64,
}

impl<F> Default for FrameOrder<F> {
    fn default() -> Self {
        Self {
            next: None,
            held: VecDeque::new(),
            waiting_since: None,
            late: 0,
            given_up: 0,
        }
    }
}

impl<F> FrameOrder<F> {
    /// The first frame id not yet delivered or given up on.
    pub fn next(&self) -> Option<u32> {
        self.next
    }

    /// The frames waited for now: `from .. to` (exclusive), `to` the first held frame.
    pub fn missing(&self) -> Option<(u32, u32)> {
        Some((self.next?, self.held.front()?.0))
    }

    /// A held frame, by id.
    pub fn held(&self, frame_id: u32) -> Option<&F> {
        self.held
            .iter()
            .find(|(id, _, _)| *id == frame_id)
            .map(|(_, _, f)| f)
    }

    /// A complete frame; hands what to do, in order, to `out`.
    pub fn push(
        &mut self,
        now: Instant,
        frame_id: u32,
        keyframe: bool,
        frame: F,
        out: &mut impl FnMut(Ordered<F>),
    ) {
        let Some(next) = self.next else {
            self.next = Some(frame_id.wrapping_add(1));
            out(Ordered::Deliver(frame));
            return;
        };
        if frame_id == next {
            self.next = Some(next.wrapping_add(1));
            self.waiting_since = None;
            out(Ordered::Deliver(frame));
            self.flush(now, out);
        } else if after(frame_id, next) {
            if keyframe {
                // Nothing before a keyframe is needed to decode it or what follows.
                self.give_up_until(frame_id, out);
                self.next = Some(frame_id.wrapping_add(1));
                out(Ordered::Deliver(frame));
                self.flush(now, out);
                return;
            }
            let pos = self
                .held
                .iter()
                .position(|(id, _, _)| after(*id, frame_id))
                .unwrap_or(self.held.len());
            if self
                .held
                .get(pos.wrapping_sub(1))
                .is_some_and(|h| h.0 == frame_id)
            {
                return; // a duplicate
            }
            self.held.insert(pos, (frame_id, keyframe, frame));
            self.waiting_since.get_or_insert(now);
            if self.held.len() > MAX_HELD {
                self.give_up_waiting(now, out);
            }
        } else {
            self.late += 1;
        }
    }

    /// When the wait for the missing frame ends, if one is waited for.
    pub fn deadline(&self, give_up: Duration) -> Option<Instant> {
        self.waiting_since.map(|t| t + give_up)
    }

    /// Timer: gives up on the missing frame(s) once waited for `give_up`.
    pub fn poll(&mut self, now: Instant, give_up: Duration, out: &mut impl FnMut(Ordered<F>)) {
        if self.deadline(give_up).is_some_and(|d| now >= d) {
            self.give_up_waiting(now, out);
        }
    }

    fn give_up_waiting(&mut self, now: Instant, out: &mut impl FnMut(Ordered<F>)) {
        let Some(&(first, _, _)) = self.held.front() else {
            self.waiting_since = None;
            return;
        };
        self.give_up_until(first, out);
        self.next = Some(first);
        self.waiting_since = None;
        self.flush(now, out);
    }

    /// Gives up on every frame from `next` to `until` (exclusive), dropping held ones there.
    fn give_up_until(&mut self, until: u32, out: &mut impl FnMut(Ordered<F>)) {
        let Some(next) = self.next else { return };
        while self.held.front().is_some_and(|h| after(until, h.0)) {
            self.held.pop_front();
        }
        if after(until, next) {
            self.given_up += u64::from(until.wrapping_sub(next));
            out(Ordered::GaveUp {
                from: next,
                to: until,
            });
        }
    }

    /// Delivers the held frames that are now in order; waits again if a gap remains.
    fn flush(&mut self, now: Instant, out: &mut impl FnMut(Ordered<F>)) {
        while let Some(next) = self.next
            && self.held.front().is_some_and(|h| h.0 == next)
        {
            let (_, _, frame) = self.held.pop_front().expect("checked");
            self.next = Some(next.wrapping_add(1));
            out(Ordered::Deliver(frame));
        }
        self.waiting_since = if self.held.is_empty() {
            None
        } else {
            Some(self.waiting_since.unwrap_or(now))
        };
    }
}

/// Frame layers remembered (by frame id modulo this).
const LAYER_MEMORY: usize = 64;

/// The temporal layer of a sender's recent frames (from their fragments' clear headers, or
/// from the next frame's authenticated `previous_layer`), and which delivered frames a lost
/// upper-layer frame makes undecodable: after losing a frame of layer `L` ≥ 1, frames of
/// layers above `L` are skipped until a frame of layer ≤ `L` (or a keyframe) is decoded.
#[derive(Debug)]
pub struct FrameLayers {
    recent: [Option<(u32, u8)>; LAYER_MEMORY],
    skip_above: Option<u8>,
}

impl Default for FrameLayers {
    fn default() -> Self {
        Self {
            recent: [None; LAYER_MEMORY],
            skip_above: None,
        }
    }
}

impl FrameLayers {
    /// A fragment of `frame_id` said its frame is of `layer`.
    pub fn note(&mut self, frame_id: u32, layer: u8) {
        self.recent[frame_id as usize % LAYER_MEMORY] = Some((frame_id, layer));
    }

    fn layer_of(&self, frame_id: u32) -> Option<u8> {
        match self.recent[frame_id as usize % LAYER_MEMORY] {
            Some((id, layer)) if id == frame_id => Some(layer),
            _ => None,
        }
    }

    /// Whether every frame `from .. to` is known to be of an upper layer (≥ 1), by its own
    /// fragments or by what the frame after it says (`next_meta`, the held frames' headers).
    pub fn all_upper<'a>(
        &self,
        from: u32,
        to: u32,
        next_meta: impl Fn(u32) -> Option<&'a VideoMeta>,
    ) -> bool {
        let n = to.wrapping_sub(from);
        if n == 0 || n as usize > LAYER_MEMORY {
            return false;
        }
        (0..n).all(|k| {
            let id = from.wrapping_add(k);
            let said_next = next_meta(id.wrapping_add(1)).map(|m| m.previous_layer);
            self.layer_of(id).or(said_next).is_some_and(|l| l >= 1)
        })
    }

    /// Frames `from .. to` were given up on. True when that needs no keyframe (all were of
    /// upper layers); then the frames referring to them will be skipped.
    pub fn lost<'a>(
        &mut self,
        from: u32,
        to: u32,
        next_meta: impl Fn(u32) -> Option<&'a VideoMeta>,
    ) -> bool {
        if !self.all_upper(from, to, &next_meta) {
            return false;
        }
        let lowest = (0..to.wrapping_sub(from))
            .filter_map(|k| {
                let id = from.wrapping_add(k);
                self.layer_of(id)
                    .or(next_meta(id.wrapping_add(1)).map(|m| m.previous_layer))
            })
            .min()
            .unwrap_or(1);
        self.skip_above = Some(self.skip_above.map_or(lowest, |s| s.min(lowest)));
        true
    }

    /// Whether this delivered frame must be skipped (it may refer to a lost frame).
    pub fn skips(&mut self, meta: &VideoMeta) -> bool {
        match self.skip_above {
            Some(lost) if !meta.keyframe && meta.layer > lost => true,
            Some(_) => {
                self.skip_above = None;
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use vcall_proto::fragment::{FragmentHeader, ReassemblyConfig, fragment_frame};
    use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE};

    fn run(order: &mut FrameOrder<u32>, now: Instant, id: u32, key: bool) -> Vec<Ordered<u32>> {
        let mut got = Vec::new();
        order.push(now, id, key, id, &mut |o| got.push(o));
        got
    }

    #[test]
    fn a_late_frame_is_waited_for_and_the_ones_behind_it_follow_in_order() {
        let t = Instant::now();
        let mut o = FrameOrder::default();
        assert_eq!(run(&mut o, t, 10, true), vec![Ordered::Deliver(10)]);
        assert!(run(&mut o, t, 12, false).is_empty());
        assert!(run(&mut o, t, 13, false).is_empty());
        assert_eq!(
            o.deadline(Duration::from_millis(200)),
            Some(t + Duration::from_millis(200))
        );
        assert_eq!(
            run(&mut o, t, 11, false),
            vec![
                Ordered::Deliver(11),
                Ordered::Deliver(12),
                Ordered::Deliver(13)
            ]
        );
        assert_eq!(o.deadline(Duration::from_millis(200)), None);
        assert_eq!(o.given_up, 0);
    }

    #[test]
    fn a_frame_not_back_in_time_is_given_up_on_and_its_late_arrival_dropped() {
        let t = Instant::now();
        let wait = Duration::from_millis(200);
        let mut o = FrameOrder::default();
        run(&mut o, t, 0, true);
        run(&mut o, t, 2, false);
        let mut got = Vec::new();
        o.poll(t + Duration::from_millis(199), wait, &mut |x| got.push(x));
        assert!(got.is_empty());
        o.poll(t + wait, wait, &mut |x| got.push(x));
        assert_eq!(
            got,
            vec![Ordered::GaveUp { from: 1, to: 2 }, Ordered::Deliver(2)]
        );
        assert!(run(&mut o, t + wait, 1, false).is_empty());
        assert_eq!((o.late, o.given_up), (1, 1));
    }

    #[test]
    fn a_keyframe_ends_the_wait_at_once() {
        let t = Instant::now();
        let mut o = FrameOrder::default();
        run(&mut o, t, 0, true);
        run(&mut o, t, 3, false);
        assert_eq!(
            run(&mut o, t, 5, true),
            vec![Ordered::GaveUp { from: 1, to: 5 }, Ordered::Deliver(5)]
        );
        assert_eq!(run(&mut o, t, 6, false), vec![Ordered::Deliver(6)]);
    }

    #[test]
    fn frame_ids_wrap() {
        let t = Instant::now();
        let mut o = FrameOrder::default();
        run(&mut o, t, u32::MAX, true);
        assert!(run(&mut o, t, 1, false).is_empty());
        assert_eq!(
            run(&mut o, t, 0, false),
            vec![Ordered::Deliver(0), Ordered::Deliver(1)]
        );
    }

    #[test]
    fn holding_is_bounded() {
        let t = Instant::now();
        let mut o = FrameOrder::default();
        run(&mut o, t, 0, true);
        let mut delivered = 0;
        for id in 2..(MAX_HELD as u32 + 3) {
            delivered += run(&mut o, t, id, false)
                .iter()
                .filter(|x| matches!(x, Ordered::Deliver(_)))
                .count();
        }
        assert_eq!(
            delivered,
            MAX_HELD + 1,
            "gave up on frame 1 when the hold was full"
        );
    }

    fn fragments(frame_id: u32, len: usize) -> Vec<Bytes> {
        let h = DatagramHeader::new(DatagramKind::Video, None);
        fragment_frame(&h, frame_id, &vec![7u8; len], MAX_DATAGRAM_SIZE)
            .unwrap()
            .collect()
    }

    fn insert(r: &mut Reassembler, s: &mut NackScheduler, now: Instant, d: &Bytes) {
        let (_, off) = DatagramHeader::decode(d).unwrap();
        let (fh, chunk) = FragmentHeader::decode(&d[off..]).unwrap();
        s.on_fragment(fh.frame_id);
        r.insert(now, fh, chunk);
    }

    #[test]
    fn missing_fragments_and_frames_are_nacked_a_bounded_number_of_times() {
        let t = Instant::now();
        let timing = RecoveryTiming::from_rtt(Duration::from_millis(40));
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut s = NackScheduler::default();
        let f0 = fragments(0, 6000); // 6 fragments
        for (i, d) in f0.iter().enumerate() {
            if i != 2 && i != 5 {
                insert(&mut r, &mut s, t, d);
            }
        }
        // Fragment 2 is overtaken by 3 and 4 (NACKed once reordering is ruled out); 5 (the
        // tail) is not yet known to be lost.
        assert!(s.poll(t, &r, timing).is_none(), "maybe just reordered");
        let t = t + REORDER_GRACE;
        let list = s.poll(t, &r, timing).unwrap();
        let named: Vec<_> = list.entries().iter().flat_map(|e| e.indices()).collect();
        assert_eq!(named, vec![2]);
        assert!(s.poll(t, &r, timing).is_none(), "not again before renack");
        // Frame 1 is lost whole; frame 2 arrives: the tail of 0 and all of 1 are nacked.
        let t2 = t + timing.renack;
        insert(&mut r, &mut s, t2, &fragments(2, 100)[0]);
        let list = s.poll(t2, &r, timing).unwrap();
        assert!(list.entries().contains(&NackEntry::whole_frame(1)));
        let named: Vec<_> = list
            .entries()
            .iter()
            .filter(|e| e.frame_id == 0)
            .flat_map(|e| e.indices())
            .collect();
        assert_eq!(named, vec![2, 5]);
        // A third NACK, then never again.
        let t3 = t2 + timing.renack;
        assert!(s.poll(t3, &r, timing).is_some());
        let t4 = t3 + timing.renack;
        let list = s.poll(t4, &r, timing).unwrap();
        assert_eq!(list.entries(), &[NackEntry::whole_frame(1)][..]);
        assert!(s.poll(t4 + timing.renack * 2, &r, timing).is_none());
        // Once decided, nothing of frame 1 is asked for.
        s.set_floor(2);
        assert!(s.absent.is_empty());
    }

    fn meta(layer: u8, previous_layer: u8, keyframe: bool) -> VideoMeta {
        VideoMeta {
            capture_time_us: 0,
            frame_number: 0,
            keyframe,
            test_pattern: false,
            layer,
            previous_layer,
            width: 2,
            height: 2,
        }
    }

    #[test]
    fn losing_upper_layer_frames_needs_no_keyframe_and_skips_only_their_dependents() {
        let mut l = FrameLayers::default();
        let none = |_: u32| -> Option<&VideoMeta> { None };
        l.note(10, 1);
        assert!(l.all_upper(10, 11, none));
        // A frame never seen: known only from the next frame's header.
        assert!(!l.all_upper(11, 12, none));
        let next = meta(0, 1, false);
        assert!(l.all_upper(11, 12, |id| (id == 12).then_some(&next)));
        // A base-layer frame lost: a keyframe is needed.
        l.note(13, 0);
        assert!(!l.lost(13, 14, none));
        assert!(!l.all_upper(10, 14, none));
        // Three layers: losing a layer-1 frame skips layer-2 frames until a layer ≤ 1 one.
        l.note(20, 1);
        assert!(l.lost(20, 21, none));
        assert!(l.skips(&meta(2, 1, false)));
        assert!(!l.skips(&meta(1, 2, false)));
        assert!(!l.skips(&meta(2, 1, false)), "the chain is whole again");
        // With two layers nothing after a lost layer-1 frame is skipped.
        l.note(30, 1);
        assert!(l.lost(30, 31, none));
        assert!(!l.skips(&meta(0, 1, false)));
        // A keyframe always decodes.
        l.note(40, 1);
        assert!(l.lost(40, 41, none));
        assert!(!l.skips(&meta(3, 0, true)));
        // Empty or absurd ranges are never "all upper".
        assert!(!l.all_upper(5, 5, none));
        assert!(!l.all_upper(0, 1000, none));
    }

    #[test]
    fn the_wait_for_upper_layer_frames_is_shorter() {
        for rtt in [0, 20, 40, 100, 500] {
            let t = RecoveryTiming::from_rtt(Duration::from_millis(rtt));
            assert!(t.give_up_upper < t.give_up, "{t:?}");
            assert!(t.give_up_upper <= MAX_UPPER_WAIT);
            assert!(t.give_up_upper >= Duration::from_millis(40));
        }
    }
}
