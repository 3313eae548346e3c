//! Splitting a sealed video frame into datagrams, and reassembling it with bounded memory.
//!
//! Body of a `Video` datagram (after the [`DatagramHeader`]):
//! ```text
//! offset size field
//! 0      4    frame_id   u32 BE, per sender, +1 per frame (wraps)
//! 4      2    index      u16 BE, 0..count
//! 6      2    count      u16 BE, 1..=MAX_FRAGMENTS data fragments in this frame
//! 8      ..   chunk      1+ bytes of the sealed frame
//! ```
//! Fragments `0..count-1` carry equal chunk sizes; the last carries the rest (1..=chunk size).
//! Indices `count..count + repair_count` are Reed–Solomon repair fragments (see
//! [`crate::repair`]): any `count` of the `count + repair_count` fragments rebuild the frame.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::repair::{self, MAX_REPAIR, REPAIR_HEADER_LEN, RepairHeader};
use crate::wire::Reader;
use crate::{DatagramHeader, DecodeError};

/// Fragment header length.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Most data fragments one frame may be split into (bounds a frame to ~1 MiB).
pub const MAX_FRAGMENTS: usize = 1024;

/// Where a chunk sits in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    pub frame_id: u32,
    pub index: u16,
    pub count: u16,
}

impl FragmentHeader {
    /// Writes the 8 header bytes.
    pub fn write(&self, out: &mut [u8; FRAGMENT_HEADER_LEN]) {
        out[0..4].copy_from_slice(&self.frame_id.to_be_bytes());
        out[4..6].copy_from_slice(&self.index.to_be_bytes());
        out[6..8].copy_from_slice(&self.count.to_be_bytes());
    }

    /// A Reed–Solomon repair fragment (its chunk starts with a [`RepairHeader`]).
    pub fn is_repair(&self) -> bool {
        self.index >= self.count
    }

    /// Parses a `Video` datagram body into its header and chunk.
    pub fn decode(body: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(body);
        let frame_id = r.u32()?;
        let index = r.u16()?;
        let count = r.u16()?;
        if count == 0 || count as usize > MAX_FRAGMENTS {
            return Err(DecodeError::Invalid {
                what: "fragment count",
                why: "must be 1..=1024",
            });
        }
        if usize::from(index) >= usize::from(count) + MAX_REPAIR {
            return Err(DecodeError::Invalid {
                what: "fragment index",
                why: "must be below count + 128",
            });
        }
        let chunk = r.rest();
        if chunk.is_empty() {
            return Err(DecodeError::Truncated { needed: 1 });
        }
        Ok((
            Self {
                frame_id,
                index,
                count,
            },
            chunk,
        ))
    }
}

/// Why a frame cannot be fragmented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("frame of {len} bytes needs more than {MAX_FRAGMENTS} fragments")]
    FrameTooLarge { len: usize },
    #[error("empty frame")]
    Empty,
    #[error("max datagram size {0} leaves no room for data")]
    DatagramTooSmall(usize),
    #[error("the repair fragments could not be computed")]
    Repair,
}

/// Splits `sealed_frame` into complete `Video` datagrams of at most `max_datagram` bytes each
/// (header included), built in one allocation. `header.kind` should be `Video`.
pub fn fragment_frame(
    header: &DatagramHeader,
    frame_id: u32,
    sealed_frame: &[u8],
    max_datagram: usize,
) -> Result<Fragments, FragmentError> {
    fragment_frame_with_repair(header, frame_id, sealed_frame, max_datagram, 0)
}

/// Like [`fragment_frame`], followed by `repair` Reed–Solomon repair datagrams (at most
/// [`MAX_REPAIR`]): the receiver rebuilds the frame from any `count` of them. With repair, data
/// chunks are sized so a repair datagram (6 more header bytes, an even shard) fits too.
pub fn fragment_frame_with_repair(
    header: &DatagramHeader,
    frame_id: u32,
    sealed_frame: &[u8],
    max_datagram: usize,
    repair: usize,
) -> Result<Fragments, FragmentError> {
    if sealed_frame.is_empty() {
        return Err(FragmentError::Empty);
    }
    let repair = repair.min(MAX_REPAIR);
    let overhead = header.len() + FRAGMENT_HEADER_LEN;
    let mut room = max_datagram
        .checked_sub(overhead)
        .filter(|r| *r > 0)
        .ok_or(FragmentError::DatagramTooSmall(max_datagram))?;
    if repair > 0 {
        room = room
            .checked_sub(REPAIR_HEADER_LEN)
            .map(|r| r & !1)
            .filter(|r| *r > 0)
            .ok_or(FragmentError::DatagramTooSmall(max_datagram))?;
    }
    let count = sealed_frame.len().div_ceil(room);
    if count > MAX_FRAGMENTS {
        return Err(FragmentError::FrameTooLarge {
            len: sealed_frame.len(),
        });
    }
    // Equal chunks, so the last datagram is not a runt when it can be avoided.
    let chunk = sealed_frame.len().div_ceil(count);
    let repair_head = RepairHeader {
        repair_count: repair as u16,
        chunk_len: chunk as u16,
        last_len: (sealed_frame.len() - (count - 1) * chunk) as u16,
    };
    let total = count + repair;
    let mut buf = BytesMut::with_capacity(
        sealed_frame.len() + total * overhead + repair * (REPAIR_HEADER_LEN + chunk + 1),
    );
    let mut head = [0u8; DatagramHeader::MAX_LEN];
    let head_len = header.write(&mut head);
    let mut lens = Vec::with_capacity(total);
    let mut put = |buf: &mut BytesMut, index: usize, parts: [&[u8]; 2]| {
        let start = buf.len();
        buf.extend_from_slice(&head[..head_len]);
        let mut fh = [0u8; FRAGMENT_HEADER_LEN];
        FragmentHeader {
            frame_id,
            index: index as u16,
            count: count as u16,
        }
        .write(&mut fh);
        buf.extend_from_slice(&fh);
        for part in parts {
            buf.extend_from_slice(part);
        }
        lens.push(buf.len() - start);
    };
    for (index, part) in sealed_frame.chunks(chunk).enumerate() {
        put(&mut buf, index, [part, &[]]);
    }
    if repair > 0 {
        let mut rh = [0u8; REPAIR_HEADER_LEN];
        repair_head.write(&mut rh);
        let mut index = count;
        repair::encode_repair(repair_head, sealed_frame.chunks(chunk), |shard| {
            put(&mut buf, index, [&rh, shard]);
            index += 1;
        })
        .map_err(|_| FragmentError::Repair)?;
    }
    Ok(Fragments {
        buf,
        lens: lens.into_iter(),
    })
}

/// The datagrams of one fragmented frame, in index order.
pub struct Fragments {
    buf: BytesMut,
    lens: std::vec::IntoIter<usize>,
}

impl Fragments {
    /// How many datagrams remain.
    pub fn remaining(&self) -> usize {
        self.lens.len()
    }
}

impl Iterator for Fragments {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        let n = self.lens.next()?;
        Some(self.buf.split_to(n).freeze())
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.lens.len(), Some(self.lens.len()))
    }
}

impl ExactSizeIterator for Fragments {}

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyConfig {
    /// Frames being assembled at once; the oldest is dropped when a newer one needs a slot.
    pub max_frames_in_flight: usize,
    /// A frame not complete this long after its first fragment is dropped.
    pub timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            // About half a second at 30 fps: room for retransmissions to arrive.
            max_frames_in_flight: 16,
            timeout: Duration::from_millis(1000),
        }
    }
}

/// A reassembled sealed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteFrame {
    pub frame_id: u32,
    pub data: Vec<u8>,
    /// Data fragments rebuilt from repair fragments (0 when all arrived).
    pub repaired: u16,
}

/// Counters of what a [`Reassembler`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub frames_completed: u64,
    /// Frames given up on: timed out or evicted by newer frames.
    pub frames_dropped: u64,
    pub fragments_duplicate: u64,
    /// Fragments of frames already completed or given up on, or inconsistent with their frame.
    pub fragments_stale: u64,
    /// Frames completed with the help of repair fragments.
    pub frames_repaired: u64,
    /// Data fragments rebuilt from repair fragments.
    pub fragments_repaired: u64,
}

#[derive(Debug)]
struct PartialFrame {
    frame_id: u32,
    count: u16,
    received: u16,
    repairs_received: u16,
    /// The highest fragment index received so far (data or repair).
    highest_index: u16,
    first_seen: Instant,
    /// Chunks in arrival order.
    data: Vec<u8>,
    /// Per data index: (offset in `data`, length); length 0 = missing.
    spans: Vec<(u32, u32)>,
    /// What the frame's repair fragments say (from the first one received).
    repair: Option<RepairHeader>,
    /// Per repair index: (offset in `data`, length); length 0 = missing.
    repair_spans: Vec<(u32, u32)>,
}

impl PartialFrame {
    /// Whether data chunk `index` of length `len` agrees with the repair header.
    fn fits(repair: &RepairHeader, count: u16, index: u16, len: usize) -> bool {
        repair.data_len(index, count) == len
    }

    fn chunk(&self, span: (u32, u32)) -> &[u8] {
        &self.data[span.0 as usize..(span.0 + span.1) as usize]
    }
}

/// An incomplete frame as the loss recovery sees it (see [`Reassembler::incomplete`]).
#[derive(Debug, Clone, Copy)]
pub struct IncompleteFrame<'a> {
    pub frame_id: u32,
    /// Data fragments in the frame.
    pub count: u16,
    /// The highest fragment index received (data or repair).
    pub highest_index: u16,
    /// Fragments (data or repair) still needed before the frame can be rebuilt.
    pub needed: u16,
    pub first_seen: Instant,
    spans: &'a [(u32, u32)],
}

impl IncompleteFrame<'_> {
    /// The data fragment indices not received, in order.
    pub fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        self.spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.1 == 0)
            .map(|(i, _)| i as u16)
    }
}

/// Reassembles one sender's fragments into frames, with bounded memory and a timeout, and
/// rebuilds lost data fragments from repair fragments.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    in_flight: Vec<PartialFrame>,
    /// Recently finished (completed or dropped) frame ids, to reject late fragments.
    finished: [Option<u32>; 64],
    finished_next: usize,
    spare: Vec<Vec<u8>>,
    stats: ReassemblyStats,
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            in_flight: Vec::new(),
            finished: [None; 64],
            finished_next: 0,
            spare: Vec::new(),
            stats: ReassemblyStats::default(),
        }
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Whether `frame_id` was completed or given up on recently (its fragments are stale).
    pub fn is_finished(&self, frame_id: u32) -> bool {
        self.finished.contains(&Some(frame_id))
    }

    /// The frames being assembled, for loss recovery (NACKs).
    pub fn incomplete(&self) -> impl Iterator<Item = IncompleteFrame<'_>> {
        self.in_flight.iter().map(|p| {
            let have = p.received
                + if p.repair.is_some() {
                    p.repairs_received
                } else {
                    0
                };
            IncompleteFrame {
                frame_id: p.frame_id,
                count: p.count,
                highest_index: p.highest_index,
                needed: p.count.saturating_sub(have),
                first_seen: p.first_seen,
                spans: &p.spans,
            }
        })
    }

    /// Adds one fragment received at `now`; returns the frame when this completes it.
    pub fn insert(
        &mut self,
        now: Instant,
        frag: FragmentHeader,
        chunk: &[u8],
    ) -> Option<CompleteFrame> {
        self.expire(now);
        if self.is_finished(frag.frame_id) {
            self.stats.fragments_stale += 1;
            return None;
        }
        let repair = if frag.is_repair() {
            match RepairHeader::decode(chunk) {
                Ok((h, _))
                    if usize::from(frag.index - frag.count) < usize::from(h.repair_count) =>
                {
                    Some(h)
                }
                _ => {
                    self.stats.fragments_stale += 1;
                    return None;
                }
            }
        } else {
            None
        };
        let pos = match self
            .in_flight
            .iter()
            .position(|p| p.frame_id == frag.frame_id)
        {
            Some(pos) => pos,
            None => {
                if self.in_flight.len() >= self.config.max_frames_in_flight.max(1) {
                    let oldest = (0..self.in_flight.len())
                        .min_by_key(|&i| self.in_flight[i].first_seen)
                        .unwrap_or(0);
                    self.drop_partial(oldest);
                }
                let mut data = self.spare.pop().unwrap_or_default();
                data.clear();
                self.in_flight.push(PartialFrame {
                    frame_id: frag.frame_id,
                    count: frag.count,
                    received: 0,
                    repairs_received: 0,
                    highest_index: 0,
                    first_seen: now,
                    data,
                    spans: vec![(0, 0); frag.count as usize],
                    repair: None,
                    repair_spans: Vec::new(),
                });
                self.in_flight.len() - 1
            }
        };
        let p = &mut self.in_flight[pos];
        if p.count != frag.count || chunk.is_empty() {
            self.stats.fragments_stale += 1;
            return None;
        }
        if let Some(h) = repair {
            match p.repair {
                None => {
                    // The first repair fragment fixes the layout: every data chunk so far
                    // must agree with it.
                    let consistent = p.spans.iter().enumerate().all(|(i, s)| {
                        s.1 == 0 || PartialFrame::fits(&h, p.count, i as u16, s.1 as usize)
                    });
                    if !consistent {
                        self.stats.fragments_stale += 1;
                        return None;
                    }
                    p.repair = Some(h);
                    p.repair_spans = vec![(0, 0); usize::from(h.repair_count)];
                }
                Some(known) if known != h => {
                    self.stats.fragments_stale += 1;
                    return None;
                }
                Some(_) => {}
            }
            let span = &mut p.repair_spans[usize::from(frag.index - frag.count)];
            if span.1 != 0 {
                self.stats.fragments_duplicate += 1;
                return None;
            }
            let shard = &chunk[REPAIR_HEADER_LEN..];
            *span = (p.data.len() as u32, shard.len() as u32);
            p.data.extend_from_slice(shard);
            p.repairs_received += 1;
        } else {
            if p.repair
                .is_some_and(|h| !PartialFrame::fits(&h, p.count, frag.index, chunk.len()))
            {
                self.stats.fragments_stale += 1;
                return None;
            }
            let span = &mut p.spans[frag.index as usize];
            if span.1 != 0 {
                self.stats.fragments_duplicate += 1;
                return None;
            }
            *span = (p.data.len() as u32, chunk.len() as u32);
            p.data.extend_from_slice(chunk);
            p.received += 1;
        }
        p.highest_index = p.highest_index.max(frag.index);
        let repaired = if p.received == p.count {
            0
        } else if p.repair.is_some() && p.received + p.repairs_received >= p.count {
            match Self::rebuild(p) {
                Some(n) => n,
                None => {
                    // Inconsistent repair data: the frame cannot be trusted to rebuild.
                    self.stats.fragments_stale += 1;
                    return None;
                }
            }
        } else {
            return None;
        };
        let p = self.in_flight.swap_remove(pos);
        let mut out = Vec::with_capacity(p.data.len());
        for &span in &p.spans {
            out.extend_from_slice(p.chunk(span));
        }
        self.mark_finished(p.frame_id);
        self.spare.push(p.data);
        self.stats.frames_completed += 1;
        if repaired > 0 {
            self.stats.frames_repaired += 1;
            self.stats.fragments_repaired += u64::from(repaired);
        }
        Some(CompleteFrame {
            frame_id: p.frame_id,
            data: out,
            repaired,
        })
    }

    /// Rebuilds the missing data chunks of `p` from its repair shards, appending them to its
    /// data; returns how many were rebuilt.
    fn rebuild(p: &mut PartialFrame) -> Option<u16> {
        let header = p.repair?;
        let mut rebuilt: Vec<(u16, Vec<u8>)> = Vec::new();
        let spans = &p.spans;
        let data = &p.data;
        let chunk = |s: (u32, u32)| &data[s.0 as usize..(s.0 + s.1) as usize];
        repair::recover(
            header,
            p.count,
            spans
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 != 0)
                .map(|(i, s)| (i as u16, chunk(*s))),
            p.repair_spans
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 != 0)
                .map(|(i, s)| (i as u16, chunk(*s))),
            |index, bytes| rebuilt.push((index, bytes.to_vec())),
        )
        .ok()?;
        let n = rebuilt.len() as u16;
        for (index, bytes) in rebuilt {
            let span = &mut p.spans[usize::from(index)];
            if span.1 != 0 {
                continue;
            }
            *span = (p.data.len() as u32, bytes.len() as u32);
            p.data.extend_from_slice(&bytes);
            p.received += 1;
        }
        (p.received == p.count).then_some(n)
    }

    /// Drops frames older than the timeout; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        let mut i = 0;
        while i < self.in_flight.len() {
            if now.saturating_duration_since(self.in_flight[i].first_seen) >= self.config.timeout {
                self.drop_partial(i);
                dropped += 1;
            } else {
                i += 1;
            }
        }
        dropped
    }

    /// Gives up on `frame_id` now (loss recovery decided it is unrecoverable).
    pub fn abandon(&mut self, frame_id: u32) {
        if let Some(i) = self.in_flight.iter().position(|p| p.frame_id == frame_id) {
            self.drop_partial(i);
        } else if !self.is_finished(frame_id) {
            self.mark_finished(frame_id);
        }
    }

    /// Frames currently incomplete.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn drop_partial(&mut self, i: usize) {
        let p = self.in_flight.swap_remove(i);
        self.mark_finished(p.frame_id);
        self.spare.push(p.data);
        self.stats.frames_dropped += 1;
    }

    fn mark_finished(&mut self, frame_id: u32) {
        self.finished[self.finished_next] = Some(frame_id);
        self.finished_next = (self.finished_next + 1) % self.finished.len();
        self.spare.truncate(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn split(frame_id: u32, data: &[u8]) -> Vec<Bytes> {
        let h = DatagramHeader::new(DatagramKind::Video, None);
        fragment_frame(&h, frame_id, data, MAX_DATAGRAM_SIZE)
            .unwrap()
            .collect()
    }

    fn body(d: &[u8]) -> (FragmentHeader, &[u8]) {
        let (_, off) = DatagramHeader::decode(d).unwrap();
        FragmentHeader::decode(&d[off..]).unwrap()
    }

    #[test]
    fn fragments_fit_and_reassemble_in_any_order() {
        let data = frame(50_000);
        let mut dgrams = split(9, &data);
        assert!(dgrams.iter().all(|d| d.len() <= MAX_DATAGRAM_SIZE));
        assert_eq!(dgrams.len(), 50_000usize.div_ceil(MAX_DATAGRAM_SIZE - 15));
        dgrams.reverse();
        dgrams.swap(0, 3);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let mut done = None;
        for d in &dgrams {
            let (fh, chunk) = body(d);
            if let Some(f) = r.insert(now, fh, chunk) {
                done = Some(f);
            }
        }
        assert_eq!(
            done,
            Some(CompleteFrame {
                frame_id: 9,
                data: data.clone(),
                repaired: 0,
            })
        );
        // A late duplicate of a completed frame is stale, not a second frame.
        let (fh, chunk) = body(&dgrams[0]);
        assert_eq!(r.insert(now, fh, chunk), None);
        assert_eq!(r.stats().fragments_stale, 1);
        assert_eq!(r.stats().frames_completed, 1);
    }

    fn split_with_repair(frame_id: u32, data: &[u8], repair: usize) -> Vec<Bytes> {
        let h = DatagramHeader::new(DatagramKind::Video, None);
        fragment_frame_with_repair(&h, frame_id, data, MAX_DATAGRAM_SIZE, repair)
            .unwrap()
            .collect()
    }

    #[test]
    fn a_frame_missing_up_to_its_repair_count_is_rebuilt() {
        let data = frame(30_001);
        let dgrams = split_with_repair(4, &data, 3);
        assert!(dgrams.iter().all(|d| d.len() <= MAX_DATAGRAM_SIZE));
        let count = body(&dgrams[0]).0.count as usize;
        assert_eq!(dgrams.len(), count + 3);
        // Lose three data fragments (the last among them): three repairs rebuild them.
        let lost = [1, 7, count - 1];
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let mut done = None;
        for (i, d) in dgrams.iter().enumerate() {
            if lost.contains(&i) {
                continue;
            }
            let (fh, chunk) = body(d);
            if let Some(f) = r.insert(now, fh, chunk) {
                assert!(done.is_none(), "one frame, once");
                done = Some(f);
            }
        }
        let f = done.expect("rebuilt");
        assert_eq!(f.data, data);
        assert_eq!(f.repaired, 3);
        assert_eq!(r.stats().frames_repaired, 1);
        assert_eq!(r.stats().fragments_repaired, 3);
    }

    #[test]
    fn too_few_fragments_leave_the_frame_incomplete_with_its_missing_indices() {
        let data = frame(12_000);
        let dgrams = split_with_repair(8, &data, 1);
        let count = body(&dgrams[0]).0.count;
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        for (i, d) in dgrams.iter().enumerate() {
            if i == 2 || i == 5 {
                continue;
            }
            let (fh, chunk) = body(d);
            assert!(r.insert(now, fh, chunk).is_none());
        }
        let inc: Vec<_> = r.incomplete().collect();
        assert_eq!(inc.len(), 1);
        assert_eq!(
            (inc[0].frame_id, inc[0].count, inc[0].needed),
            (8, count, 1)
        );
        assert_eq!(inc[0].missing().collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(inc[0].highest_index, count); // the repair fragment
        // A retransmission of one of them completes it (with the repair's help).
        let (fh, chunk) = body(&dgrams[5]);
        assert_eq!(r.insert(now, fh, chunk).unwrap().data, data);
    }

    #[test]
    fn lying_repair_fragments_are_refused_not_trusted() {
        let data = frame(6_000);
        let dgrams = split_with_repair(3, &data, 2);
        let count = body(&dgrams[0]).0.count as usize;
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let (fh, chunk) = body(&dgrams[0]);
        assert!(r.insert(now, fh, chunk).is_none());
        // A repair fragment whose header claims other chunk lengths than fragment 0 has.
        let (rfh, rchunk) = body(&dgrams[count]);
        let mut forged = rchunk.to_vec();
        forged[2..4].copy_from_slice(&100u16.to_be_bytes());
        forged.truncate(REPAIR_HEADER_LEN + 100);
        assert!(r.insert(now, rfh, &forged).is_none());
        assert_eq!(r.stats().fragments_stale, 1);
        // A repair index beyond the repair count it states.
        let beyond = FragmentHeader {
            index: (count + 2) as u16,
            ..rfh
        };
        assert!(r.insert(now, beyond, rchunk).is_none());
        assert_eq!(r.stats().fragments_stale, 2);
        // The genuine fragments still rebuild the frame.
        let mut done = None;
        for d in &dgrams[2..] {
            let (fh, chunk) = body(d);
            done = done.or(r.insert(now, fh, chunk));
        }
        assert_eq!(done.unwrap().data, data);
    }

    #[test]
    fn abandoned_frames_take_no_more_fragments() {
        let dgrams = split(11, &frame(5000));
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let (fh, chunk) = body(&dgrams[0]);
        r.insert(now, fh, chunk);
        r.abandon(11);
        assert_eq!(r.in_flight(), 0);
        assert!(r.is_finished(11));
        r.abandon(12); // never seen: its fragments are refused when they come
        let late = split(12, &[1, 2, 3]);
        let (fh, chunk) = body(&late[0]);
        assert!(r.insert(now, fh, chunk).is_none());
    }

    #[test]
    fn a_one_byte_frame_is_one_datagram() {
        let d = split(1, &[42]);
        assert_eq!(d.len(), 1);
        let (fh, chunk) = body(&d[0]);
        assert_eq!((fh.index, fh.count, chunk), (0, 1, &[42][..]));
    }

    #[test]
    fn incomplete_frames_time_out_and_are_counted() {
        let data = frame(5000);
        let dgrams = split(1, &data);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let t0 = Instant::now();
        let (fh, chunk) = body(&dgrams[0]);
        assert!(r.insert(t0, fh, chunk).is_none());
        assert_eq!(r.expire(t0 + Duration::from_millis(999)), 0);
        assert_eq!(r.expire(t0 + Duration::from_secs(1)), 1);
        assert_eq!(r.stats().frames_dropped, 1);
        // The rest arriving later cannot resurrect it.
        for d in &dgrams[1..] {
            let (fh, chunk) = body(d);
            assert!(r.insert(t0 + Duration::from_secs(2), fh, chunk).is_none());
        }
    }

    #[test]
    fn memory_is_bounded_by_frames_in_flight() {
        let cfg = ReassemblyConfig {
            max_frames_in_flight: 3,
            timeout: Duration::from_secs(10),
        };
        let mut r = Reassembler::new(cfg);
        let now = Instant::now();
        for id in 0..10u32 {
            let d = split(id, &frame(3000));
            let (fh, chunk) = body(&d[0]);
            r.insert(now + Duration::from_millis(id as u64), fh, chunk);
        }
        assert_eq!(r.in_flight(), 3);
        assert_eq!(r.stats().frames_dropped, 7);
    }

    #[test]
    fn duplicates_and_inconsistent_counts_are_ignored() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let fh = FragmentHeader {
            frame_id: 5,
            index: 0,
            count: 2,
        };
        assert!(r.insert(now, fh, b"ab").is_none());
        assert!(r.insert(now, fh, b"ab").is_none());
        assert_eq!(r.stats().fragments_duplicate, 1);
        let liar = FragmentHeader { count: 3, ..fh };
        assert!(r.insert(now, liar, b"cd").is_none());
        assert_eq!(r.stats().fragments_stale, 1);
        let last = FragmentHeader { index: 1, ..fh };
        assert_eq!(r.insert(now, last, b"c").unwrap().data, b"abc");
    }

    #[test]
    fn invalid_fragment_headers_are_rejected() {
        assert!(FragmentHeader::decode(&[0, 0, 0, 1, 0, 0, 0, 0, 9]).is_err()); // count 0
        assert!(FragmentHeader::decode(&[0, 0, 0, 1, 0, 130, 0, 2, 9]).is_err()); // index >= count + 128
        assert!(FragmentHeader::decode(&[0, 0, 0, 1, 0, 0, 0, 1]).is_err()); // empty chunk
        assert!(FragmentHeader::decode(&[0, 0, 0, 1, 0, 0, 0x04, 0x01, 9]).is_err()); // > 1024
        assert!(FragmentHeader::decode(&[0, 0, 0]).is_err());
    }

    #[test]
    fn oversized_and_empty_frames_are_refused() {
        let h = DatagramHeader::new(DatagramKind::Video, Some(PeerId(3)));
        assert_eq!(
            fragment_frame(&h, 0, &[], MAX_DATAGRAM_SIZE).err(),
            Some(FragmentError::Empty)
        );
        let huge = vec![0u8; MAX_FRAGMENTS * (MAX_DATAGRAM_SIZE - 19) + 1];
        assert!(matches!(
            fragment_frame(&h, 0, &huge, MAX_DATAGRAM_SIZE),
            Err(FragmentError::FrameTooLarge { .. })
        ));
        assert!(fragment_frame(&h, 0, &[1], 19).is_err());
    }
}
