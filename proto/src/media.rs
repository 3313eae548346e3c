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
/// 0  1  type   1 = keyframe request, 2 = receiver report
/// keyframe request:  1..5  last_frame_number u32 BE (highest frame_number received from that
///                           sender since its first keyframe, 0 if none; informational)
/// receiver report:   1..5  video_frames_received u32 BE (cumulative)
///                    5..9  video_frames_lost     u32 BE (cumulative)
///                    9..13 audio_frames_lost     u32 BE (cumulative)
///                    13..21 echo_time_us         u64 BE (the sender's last heartbeat time, for RTT)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        assert!(Feedback::decode(&[3]).is_err());
        assert!(Feedback::decode(&[]).is_err());
    }
}
