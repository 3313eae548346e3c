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
/// 12 1  flags             bit 0 keyframe, bit 1 source is the test pattern,
///                         bits 2-3 temporal layer (as in the datagram header),
///                         bits 4-5 the temporal layer of the previous frame_id; others 0
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
    /// The frame's temporal layer, 0 ..= 3 (authenticated here; the clear copy in the
    /// datagram header is for the relay).
    pub layer: u8,
    /// The temporal layer of the frame sent just before this one (frame_id − 1), 0 ..= 3:
    /// tells a receiver that a frame it never saw was an upper-layer one.
    pub previous_layer: u8,
    pub width: u16,
    pub height: u16,
}

impl VideoMeta {
    pub const LEN: usize = 17;
    /// Offset of the flags byte.
    pub const FLAGS_OFFSET: usize = 12;

    /// Writes `previous_layer` into an encoded header (`plain` starts with it): the sender's
    /// core knows it only when the frame gets its frame_id.
    pub fn set_previous_layer(plain: &mut [u8], previous_layer: u8) {
        if let Some(flags) = plain.get_mut(Self::FLAGS_OFFSET) {
            *flags = (*flags & !0b11_0000) | (previous_layer & 0b11) << 4;
        }
    }

    pub fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.capture_time_us.to_be_bytes());
        out.extend_from_slice(&self.frame_number.to_be_bytes());
        out.push(
            self.keyframe as u8
                | (self.test_pattern as u8) << 1
                | (self.layer & 0b11) << 2
                | (self.previous_layer & 0b11) << 4,
        );
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
    }

    /// Parses the header; returns it and the H.264 payload.
    pub fn decode(plain: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(plain);
        let capture_time_us = r.u64()?;
        let frame_number = r.u32()?;
        let flags = r.u8()?;
        if flags & !0b11_1111 != 0 {
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
            layer: (flags >> 2) & 0b11,
            previous_layer: (flags >> 4) & 0b11,
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
/// receiver report:   1..3  interval_ms        u16 BE, 1..=10000 (the window covered)
///                    3..5  fragments_expected u16 BE (video fragments finished in the window)
///                    5..7  fragments_lost     u16 BE (of those, not arrived by themselves)
///                    7..11 video_bytes        u32 BE (video datagram bytes received)
///                    11..13 queuing_delay_ms  u16 BE (0xFFFF: unknown)
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
    /// What a receiver saw of the target's video over the last `interval_ms`: drives the
    /// sender's bitrate (PROTOCOL.md §6.4).
    ReceiverReport(ReceiverReport),
    /// Fragments to send again (retransmissions are the same sealed bytes).
    Nack(NackList),
}

/// A receiver report (feedback type 2): one receiver's view of one sender's video path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// The window the report covers, ending when it was sent (1 ..= 10 000 ms).
    pub interval_ms: u16,
    /// Video fragments (data and repair) of the sender's frames finished in the window.
    pub fragments_expected: u16,
    /// Of those, fragments that did not arrive by themselves (before any retransmission).
    pub fragments_lost: u16,
    /// Video datagram bytes received from the sender in the window (retransmissions too).
    pub video_bytes: u32,
    /// How much the one-way delay of the sender's video exceeds its minimum over the last
    /// 10 s (queues building on the path); `None` when not measured yet.
    pub queuing_delay_ms: Option<u16>,
}

impl ReceiverReport {
    /// Wire value of an unknown queuing delay.
    pub const UNKNOWN_DELAY: u16 = 0xFFFF;
    /// The longest window a report may cover.
    pub const MAX_INTERVAL_MS: u16 = 10_000;

    /// The loss the receiver saw, 0.0 ..= 1.0 (0 when nothing was expected).
    pub fn loss_fraction(&self) -> f64 {
        if self.fragments_expected == 0 {
            0.0
        } else {
            f64::from(self.fragments_lost) / f64::from(self.fragments_expected)
        }
    }

    /// The video receive rate in kbit/s.
    pub fn receive_kbps(&self) -> f64 {
        f64::from(self.video_bytes) * 8.0 / f64::from(self.interval_ms)
    }
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
            Self::ReceiverReport(report) => {
                out.push(2);
                out.extend_from_slice(&report.interval_ms.to_be_bytes());
                out.extend_from_slice(&report.fragments_expected.to_be_bytes());
                out.extend_from_slice(&report.fragments_lost.to_be_bytes());
                out.extend_from_slice(&report.video_bytes.to_be_bytes());
                out.extend_from_slice(
                    &report
                        .queuing_delay_ms
                        .unwrap_or(ReceiverReport::UNKNOWN_DELAY)
                        .to_be_bytes(),
                );
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
            2 => {
                let report = ReceiverReport {
                    interval_ms: r.u16()?,
                    fragments_expected: r.u16()?,
                    fragments_lost: r.u16()?,
                    video_bytes: r.u32()?,
                    queuing_delay_ms: match r.u16()? {
                        ReceiverReport::UNKNOWN_DELAY => None,
                        ms => Some(ms),
                    },
                };
                if !(1..=ReceiverReport::MAX_INTERVAL_MS).contains(&report.interval_ms) {
                    return Err(DecodeError::Invalid {
                        what: "receiver report",
                        why: "interval outside 1..=10000 ms",
                    });
                }
                if report.fragments_lost > report.fragments_expected {
                    return Err(DecodeError::Invalid {
                        what: "receiver report",
                        why: "more fragments lost than expected",
                    });
                }
                Self::ReceiverReport(report)
            }
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
            layer: 0,
            previous_layer: 0,
            width: 1280,
            height: 720,
        };
        let mut b = Vec::new();
        m.append(&mut b);
        assert_eq!(b.len(), VideoMeta::LEN);
        for layer in 0..=3 {
            let mut with_layer = Vec::new();
            VideoMeta { layer, ..m }.append(&mut with_layer);
            assert_eq!(with_layer[12] >> 2, layer);
            assert_eq!(VideoMeta::decode(&with_layer).unwrap().0.layer, layer);
            VideoMeta::set_previous_layer(&mut with_layer, 3 - layer);
            let got = VideoMeta::decode(&with_layer).unwrap().0;
            assert_eq!((got.layer, got.previous_layer), (layer, 3 - layer));
        }
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
                layer: 0,
                previous_layer: 0,
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
            Feedback::ReceiverReport(ReceiverReport {
                interval_ms: 500,
                fragments_expected: 300,
                fragments_lost: 15,
                video_bytes: 40_000,
                queuing_delay_ms: Some(12),
            }),
            Feedback::ReceiverReport(ReceiverReport {
                interval_ms: 1,
                fragments_expected: 0,
                fragments_lost: 0,
                video_bytes: 0,
                queuing_delay_ms: None,
            }),
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
    fn absurd_receiver_reports_are_rejected() {
        let good = ReceiverReport {
            interval_ms: 500,
            fragments_expected: 10,
            fragments_lost: 10,
            video_bytes: 1,
            queuing_delay_ms: None,
        };
        let mut b = Vec::new();
        Feedback::ReceiverReport(good).append(&mut b);
        assert_eq!(b.len(), 13);
        assert_eq!(&b[11..], &[0xFF, 0xFF]);
        assert!(Feedback::decode(&b).is_ok());
        for bad in [
            ReceiverReport {
                fragments_lost: 11,
                ..good
            },
            ReceiverReport {
                interval_ms: 0,
                ..good
            },
            ReceiverReport {
                interval_ms: 10_001,
                ..good
            },
        ] {
            let mut b = Vec::new();
            Feedback::ReceiverReport(bad).append(&mut b);
            assert!(Feedback::decode(&b).is_err(), "{bad:?}");
        }
        assert!((good.loss_fraction() - 1.0).abs() < 1e-9);
        assert_eq!(ReceiverReport::default().loss_fraction(), 0.0);
        assert!(
            (ReceiverReport {
                video_bytes: 50_000,
                ..good
            }
            .receive_kbps()
                - 800.0)
                .abs()
                < 1e-9
        );
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
