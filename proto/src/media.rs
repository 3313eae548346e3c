//! Plaintexts carried inside end-to-end encryption: video frames, audio frames, heartbeats
//! and receiver feedback. Only peers holding the sender's key ever see these bytes.
//!
//! Each `*Meta` type is the fixed header in front of a variable payload (H.264 or Opus):
//! writers append the header then the payload to one buffer, which is then sealed in place.

use crate::DecodeError;
use crate::wire::Reader;

/// Header of a video frame plaintext; the H.264 Annex-B access unit follows.
///
/// ```text
/// 0  8  capture_time_us   u64 BE, sender's wall clock (µs since the Unix epoch)
/// 8  4  frame_number      u32 BE, sender's frame counter (the test pattern's number)
/// 12 1  flags             bit 0 keyframe, bit 1 source is the test pattern; others 0
/// 13 2  width             u16 BE
/// 15 2  height            u16 BE
/// 17 ..  H.264 access unit (Annex-B)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoMeta {
    pub capture_time_us: u64,
    pub frame_number: u32,
    pub keyframe: bool,
    pub test_pattern: bool,
    pub width: u16,
    pub height: u16,
}

impl VideoMeta {
    pub const LEN: usize = 17;

    pub fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.capture_time_us.to_be_bytes());
        out.extend_from_slice(&self.frame_number.to_be_bytes());
        out.push(self.keyframe as u8 | (self.test_pattern as u8) << 1);
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
    }

    /// Parses the header; returns it and the H.264 payload.
    pub fn decode(plain: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(plain);
        let capture_time_us = r.u64()?;
        let frame_number = r.u32()?;
        let flags = r.u8()?;
        if flags & !0b11 != 0 {
            return Err(reserved("video flags"));
        }
        let width = r.u16()?;
        let height = r.u16()?;
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(DecodeError::Invalid {
                what: "video size",
                why: "must be even and non-zero",
            });
        }
        let meta = Self {
            capture_time_us,
            frame_number,
            keyframe: flags & 1 != 0,
            test_pattern: flags & 2 != 0,
            width,
            height,
        };
        Ok((meta, r.rest()))
    }
}

/// Header of an audio frame plaintext; one 20 ms Opus packet (48 kHz mono) follows.
///
/// ```text
/// 0  8  capture_time_us   u64 BE
/// 8  4  sequence          u32 BE, +1 per 20 ms frame (wraps)
/// 12 ..  Opus packet
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioMeta {
    pub capture_time_us: u64,
    pub sequence: u32,
}

impl AudioMeta {
    pub const LEN: usize = 12;

    pub fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.capture_time_us.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
    }

    pub fn decode(plain: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(plain);
        let meta = Self {
            capture_time_us: r.u64()?,
            sequence: r.u32()?,
        };
        Ok((meta, r.rest()))
    }
}

/// A heartbeat plaintext, sent every second by every joined peer.
///
/// ```text
/// 0  8  sent_time_us   u64 BE
/// 8  1  flags          bit 0 mic muted, bit 1 camera off, bit 2 speaking; others 0
/// 9  1  audio_level    0 (silence) ..= 255 (full scale), linear in dBFS from -60 to 0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub sent_time_us: u64,
    pub mic_muted: bool,
    pub camera_off: bool,
    pub speaking: bool,
    pub audio_level: u8,
}

impl Heartbeat {
    pub const LEN: usize = 10;

    pub fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sent_time_us.to_be_bytes());
        out.push(self.mic_muted as u8 | (self.camera_off as u8) << 1 | (self.speaking as u8) << 2);
        out.push(self.audio_level);
    }

    pub fn decode(plain: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        let sent_time_us = r.u64()?;
        let flags = r.u8()?;
        if flags & !0b111 != 0 {
            return Err(reserved("heartbeat flags"));
        }
        let audio_level = r.u8()?;
        r.finish()?;
        Ok(Self {
            sent_time_us,
            mic_muted: flags & 1 != 0,
            camera_off: flags & 2 != 0,
            speaking: flags & 4 != 0,
            audio_level,
        })
    }
}

/// Receiver feedback plaintext (in an addressed `Feedback` datagram to the media's sender).
///
/// ```text
/// 0  1  type   1 = keyframe request, 2 = receiver report, 3 = NACK
/// keyframe request:  1..5  last_frame_number u32 BE (highest frame_number received from that
///                           sender since its first keyframe, 0 if none; informational)
/// receiver report:   1..5  video_frames_received u32 BE (cumulative)
///                    5..9  video_frames_lost     u32 BE (cumulative)
///                    9..13 audio_frames_lost     u32 BE (cumulative)
///                    13..21 echo_time_us         u64 BE (the sender's last heartbeat time, for RTT)
/// NACK:              1..2  n u8, 1..=32 entries, then n times (8 bytes each):
///                          frame_id u32 BE, first u16 BE, mask u16 BE
///                          first = 0xFFFF: every fragment of the frame (mask 0), else the
///                          fragment `first` and `first + 1 + b` for each set bit b of mask
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// A NACK list is 260 bytes inline: feedback lives briefly on the stack, and boxing it would
// allocate per NACK instead.
#[allow(clippy::large_enum_variant)]
pub enum Feedback {
    KeyframeRequest {
        last_frame_number: u32,
    },
    ReceiverReport {
        video_frames_received: u32,
        video_frames_lost: u32,
        audio_frames_lost: u32,
        echo_time_us: u64,
    },
    /// Fragments to send again (retransmissions are the same sealed bytes).
    Nack(NackList),
}

/// One NACK entry: fragments of one frame to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NackEntry {
    pub frame_id: u32,
    /// The first fragment index, or [`NackEntry::WHOLE_FRAME`].
    pub first: u16,
    /// Bit b set: fragment `first + 1 + b` too.
    pub mask: u16,
}

impl NackEntry {
    /// `first` value meaning every fragment of the frame (none of it arrived).
    pub const WHOLE_FRAME: u16 = 0xFFFF;

    /// The whole frame.
    pub fn whole_frame(frame_id: u32) -> Self {
        Self {
            frame_id,
            first: Self::WHOLE_FRAME,
            mask: 0,
        }
    }

    pub fn is_whole_frame(&self) -> bool {
        self.first == Self::WHOLE_FRAME
    }

    /// The fragment indices named (empty for a whole frame: see [`Self::is_whole_frame`]).
    pub fn indices(&self) -> impl Iterator<Item = u16> + '_ {
        let whole = self.is_whole_frame();
        std::iter::once(self.first)
            .chain(
                (0..16u16)
                    .filter(|b| self.mask & (1 << b) != 0)
                    .map(|b| self.first.saturating_add(1 + b)),
            )
            .filter(move |_| !whole)
    }
}

/// Up to [`NackList::MAX`] NACK entries, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NackList {
    len: u8,
    entries: [NackEntry; NackList::MAX],
}

impl NackList {
    pub const MAX: usize = 32;

    /// Adds an entry; false when the list is full.
    pub fn push(&mut self, entry: NackEntry) -> bool {
        if usize::from(self.len) >= Self::MAX {
            return false;
        }
        self.entries[usize::from(self.len)] = entry;
        self.len += 1;
        true
    }

    /// Adds fragment `index` of `frame_id`, into the last entry when it fits there.
    pub fn push_fragment(&mut self, frame_id: u32, index: u16) -> bool {
        if let Some(last) = self.entries[..usize::from(self.len)].last_mut()
            && last.frame_id == frame_id
            && !last.is_whole_frame()
            && index > last.first
            && index - last.first <= 16
        {
            last.mask |= 1 << (index - last.first - 1);
            return true;
        }
        self.push(NackEntry {
            frame_id,
            first: index,
            mask: 0,
        })
    }

    pub fn entries(&self) -> &[NackEntry] {
        &self.entries[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Feedback {
    pub fn append(&self, out: &mut Vec<u8>) {
        match *self {
            Self::KeyframeRequest { last_frame_number } => {
                out.push(1);
                out.extend_from_slice(&last_frame_number.to_be_bytes());
            }
            Self::ReceiverReport {
                video_frames_received,
                video_frames_lost,
                audio_frames_lost,
                echo_time_us,
            } => {
                out.push(2);
                out.extend_from_slice(&video_frames_received.to_be_bytes());
                out.extend_from_slice(&video_frames_lost.to_be_bytes());
                out.extend_from_slice(&audio_frames_lost.to_be_bytes());
                out.extend_from_slice(&echo_time_us.to_be_bytes());
            }
            Self::Nack(list) => {
                out.push(3);
                out.push(list.len);
                for e in list.entries() {
                    out.extend_from_slice(&e.frame_id.to_be_bytes());
                    out.extend_from_slice(&e.first.to_be_bytes());
                    out.extend_from_slice(&e.mask.to_be_bytes());
                }
            }
        }
    }

    pub fn decode(plain: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        let fb = match r.u8()? {
            1 => Self::KeyframeRequest {
                last_frame_number: r.u32()?,
            },
            2 => Self::ReceiverReport {
                video_frames_received: r.u32()?,
                video_frames_lost: r.u32()?,
                audio_frames_lost: r.u32()?,
                echo_time_us: r.u64()?,
            },
            3 => {
                let n = r.u8()?;
                if n == 0 || usize::from(n) > NackList::MAX {
                    return Err(DecodeError::Invalid {
                        what: "NACK entries",
                        why: "must be 1..=32",
                    });
                }
                let mut list = NackList::default();
                for _ in 0..n {
                    let e = NackEntry {
                        frame_id: r.u32()?,
                        first: r.u16()?,
                        mask: r.u16()?,
                    };
                    if e.is_whole_frame() && e.mask != 0 {
                        return Err(DecodeError::Invalid {
                            what: "NACK entry",
                            why: "a whole-frame entry has no mask",
                        });
                    }
                    list.push(e);
                }
                Self::Nack(list)
            }
            value => {
                return Err(DecodeError::UnknownKind {
                    what: "feedback type",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(fb)
    }
}

fn reserved(what: &'static str) -> DecodeError {
    DecodeError::Invalid {
        what,
        why: "reserved bits set",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_meta_round_trips_with_payload() {
        let m = VideoMeta {
            capture_time_us: 1_700_000_000_123_456,
            frame_number: 77,
            keyframe: true,
            test_pattern: true,
            width: 1280,
            height: 720,
        };
        let mut b = Vec::new();
        m.append(&mut b);
        assert_eq!(b.len(), VideoMeta::LEN);
        b.extend_from_slice(&[0, 0, 0, 1, 0x67]);
        let (got, payload) = VideoMeta::decode(&b).unwrap();
        assert_eq!(got, m);
        assert_eq!(payload, &[0, 0, 0, 1, 0x67]);
        b[12] = 0x80;
        assert!(VideoMeta::decode(&b).is_err());
        assert!(VideoMeta::decode(&b[..16]).is_err());
    }

    #[test]
    fn odd_or_zero_video_sizes_are_rejected() {
        for (w, h) in [(0u16, 720u16), (1279, 720), (1280, 0)] {
            let mut b = Vec::new();
            VideoMeta {
                capture_time_us: 0,
                frame_number: 0,
                keyframe: false,
                test_pattern: false,
                width: w,
                height: h,
            }
            .append(&mut b);
            assert!(VideoMeta::decode(&b).is_err(), "{w}x{h}");
        }
    }

    #[test]
    fn audio_meta_round_trips() {
        let m = AudioMeta {
            capture_time_us: 5,
            sequence: u32::MAX,
        };
        let mut b = Vec::new();
        m.append(&mut b);
        b.push(0xFC);
        assert_eq!(AudioMeta::decode(&b).unwrap(), (m, &[0xFC][..]));
        assert!(AudioMeta::decode(&b[..11]).is_err());
    }

    #[test]
    fn heartbeat_round_trips_every_flag() {
        for flags in 0..8u8 {
            let h = Heartbeat {
                sent_time_us: 99,
                mic_muted: flags & 1 != 0,
                camera_off: flags & 2 != 0,
                speaking: flags & 4 != 0,
                audio_level: 200,
            };
            let mut b = Vec::new();
            h.append(&mut b);
            assert_eq!(b.len(), Heartbeat::LEN);
            assert_eq!(Heartbeat::decode(&b).unwrap(), h);
        }
        assert!(Heartbeat::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 8, 0]).is_err());
        assert!(Heartbeat::decode(&[0; 11]).is_err());
    }

    #[test]
    fn feedback_round_trips_and_rejects_unknown_types() {
        for fb in [
            Feedback::KeyframeRequest {
                last_frame_number: 12,
            },
            Feedback::ReceiverReport {
                video_frames_received: 1,
                video_frames_lost: 2,
                audio_frames_lost: 3,
                echo_time_us: 4,
            },
        ] {
            let mut b = Vec::new();
            fb.append(&mut b);
            assert_eq!(Feedback::decode(&b).unwrap(), fb);
            b.push(0);
            assert!(Feedback::decode(&b).is_err());
        }
        assert!(Feedback::decode(&[4]).is_err());
        assert!(Feedback::decode(&[]).is_err());
    }

    #[test]
    fn nacks_round_trip_pack_indices_and_reject_nonsense() {
        let mut list = NackList::default();
        for i in [3u16, 4, 9, 19, 20, 40] {
            assert!(list.push_fragment(7, i));
        }
        assert!(list.push(NackEntry::whole_frame(8)));
        // 3 carries 4, 9, 19 (3 + 16); 20 starts a new entry, as does 40.
        assert_eq!(list.entries().len(), 4);
        let named: Vec<u16> = list.entries()[..3]
            .iter()
            .flat_map(|e| e.indices())
            .collect();
        assert_eq!(named, vec![3, 4, 9, 19, 20, 40]);
        assert!(list.entries()[3].is_whole_frame());
        assert_eq!(list.entries()[3].indices().count(), 0);
        let fb = Feedback::Nack(list);
        let mut b = Vec::new();
        fb.append(&mut b);
        assert_eq!(b.len(), 2 + 4 * 8);
        assert_eq!(Feedback::decode(&b).unwrap(), fb);
        assert!(Feedback::decode(&b[..b.len() - 1]).is_err());
        assert!(Feedback::decode(&[3, 0]).is_err(), "no entries");
        let mut too_many = vec![3, 33];
        too_many.extend_from_slice(&[0; 33 * 8]);
        assert!(Feedback::decode(&too_many).is_err());
        assert!(
            Feedback::decode(&[3, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0, 1]).is_err(),
            "whole+mask"
        );
        let mut full = NackList::default();
        for f in 0..NackList::MAX as u32 {
            assert!(full.push(NackEntry::whole_frame(f)));
        }
        assert!(!full.push_fragment(99, 0));
    }
}
