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
//! Fragments `0..count-1` carry equal chunk sizes; the last carries the rest. Indices
//! `>= count` are reserved for repair (FEC) fragments: today's receivers drop them.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

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
        if index >= count {
            return Err(DecodeError::Invalid {
                what: "fragment index",
                why: "repair fragments (index >= count) are not supported",
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
}

/// Splits `sealed_frame` into complete `Video` datagrams of at most `max_datagram` bytes each
/// (header included), built in one allocation. `header.kind` should be `Video`.
pub fn fragment_frame(
    header: &DatagramHeader,
    frame_id: u32,
    sealed_frame: &[u8],
    max_datagram: usize,
) -> Result<Fragments, FragmentError> {
    if sealed_frame.is_empty() {
        return Err(FragmentError::Empty);
    }
    let overhead = header.len() + FRAGMENT_HEADER_LEN;
    let room = max_datagram
        .checked_sub(overhead)
        .filter(|r| *r > 0)
        .ok_or(FragmentError::DatagramTooSmall(max_datagram))?;
    let count = sealed_frame.len().div_ceil(room);
    if count > MAX_FRAGMENTS {
        return Err(FragmentError::FrameTooLarge {
            len: sealed_frame.len(),
        });
    }
    // Equal chunks, so the last datagram is not a runt when it can be avoided.
    let chunk = sealed_frame.len().div_ceil(count);
    let mut buf = BytesMut::with_capacity(sealed_frame.len() + count * overhead);
    let mut head = [0u8; DatagramHeader::MAX_LEN];
    let head_len = header.write(&mut head);
    let mut lens = Vec::with_capacity(count);
    for (index, part) in sealed_frame.chunks(chunk).enumerate() {
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
        buf.extend_from_slice(part);
        lens.push(buf.len() - start);
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
            max_frames_in_flight: 8,
            timeout: Duration::from_millis(1000),
        }
    }
}

/// A reassembled sealed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteFrame {
    pub frame_id: u32,
    pub data: Vec<u8>,
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
}

#[derive(Debug)]
struct PartialFrame {
    frame_id: u32,
    count: u16,
    received: u16,
    first_seen: Instant,
    /// Chunks in arrival order.
    data: Vec<u8>,
    /// Per index: (offset in `data`, length); length 0 = missing.
    spans: Vec<(u32, u32)>,
}

/// Reassembles one sender's fragments into frames, with bounded memory and a timeout.
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

    /// Adds one fragment received at `now`; returns the frame when this completes it.
    pub fn insert(
        &mut self,
        now: Instant,
        frag: FragmentHeader,
        chunk: &[u8],
    ) -> Option<CompleteFrame> {
        self.expire(now);
        if self.finished.contains(&Some(frag.frame_id)) {
            self.stats.fragments_stale += 1;
            return None;
        }
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
                    first_seen: now,
                    data,
                    spans: vec![(0, 0); frag.count as usize],
                });
                self.in_flight.len() - 1
            }
        };
        let p = &mut self.in_flight[pos];
        if p.count != frag.count || frag.index >= p.count || chunk.is_empty() {
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
        if p.received < p.count {
            return None;
        }
        let p = self.in_flight.swap_remove(pos);
        let mut out = Vec::with_capacity(p.data.len());
        for &(off, len) in &p.spans {
            out.extend_from_slice(&p.data[off as usize..(off + len) as usize]);
        }
        self.mark_finished(p.frame_id);
        self.spare.push(p.data);
        self.stats.frames_completed += 1;
        Some(CompleteFrame {
            frame_id: p.frame_id,
            data: out,
        })
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
                data: data.clone()
            })
        );
        // A late duplicate of a completed frame is stale, not a second frame.
        let (fh, chunk) = body(&dgrams[0]);
        assert_eq!(r.insert(now, fh, chunk), None);
        assert_eq!(r.stats().fragments_stale, 1);
        assert_eq!(r.stats().frames_completed, 1);
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
        assert!(FragmentHeader::decode(&[0, 0, 0, 1, 0, 2, 0, 2, 9]).is_err()); // index >= count
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
