//! The clear datagram header: the only part of a media datagram the relay reads (and stamps).
//!
//! ```text
//! offset size field
//! 0      1    version        = PROTOCOL_VERSION (5)
//! 1      1    kind           1 video fragment, 2 audio, 3 heartbeat, 4 feedback
//! 2      1    flags          bit 0: a target peer id follows; bits 1-2: the video frame's
//!                            temporal layer (0 for other kinds); other bits must be 0
//! 3      4    sender         u32 BE; clients send 0, the relay overwrites it with the true sender
//! 7      4    target         u32 BE, only when flags bit 0 is set (addressed datagram)
//! ..          body           opaque to the relay (end-to-end encrypted)
//! ```

use crate::wire::Reader;
use crate::{DecodeError, MAX_DATAGRAM_SIZE, PROTOCOL_VERSION, PeerId};

/// What a datagram carries; tells the receiver how to parse the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DatagramKind {
    /// One fragment of a sealed video frame (see [`crate::fragment`]).
    Video = 1,
    /// One sealed 20 ms audio frame.
    Audio = 2,
    /// A sealed heartbeat (presence and mute/camera/speaking state), sent every second.
    Heartbeat = 3,
    /// Sealed receiver feedback (keyframe request, receiver report), usually addressed.
    Feedback = 4,
}

impl DatagramKind {
    /// Every kind, in wire-value order.
    pub const ALL: [DatagramKind; 4] = [Self::Video, Self::Audio, Self::Heartbeat, Self::Feedback];

    /// Parses a wire value.
    pub fn from_u8(value: u8) -> Result<Self, DecodeError> {
        match value {
            1 => Ok(Self::Video),
            2 => Ok(Self::Audio),
            3 => Ok(Self::Heartbeat),
            4 => Ok(Self::Feedback),
            _ => Err(DecodeError::UnknownKind {
                what: "datagram kind",
                value,
            }),
        }
    }
}

const FLAG_TARGET: u8 = 0x01;
/// Flags bits 1-2: the temporal layer of the video frame a fragment belongs to.
const LAYER_SHIFT: u8 = 1;
const LAYER_MASK: u8 = 0b110;
/// The highest temporal layer a header can carry.
pub const MAX_TEMPORAL_LAYER: u8 = 3;

/// The parsed clear header of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    pub kind: DatagramKind,
    /// The sending peer as stamped by the relay (`PeerId::NONE` when sent by a client).
    pub sender: PeerId,
    /// When set, the relay forwards the datagram to this peer only.
    pub target: Option<PeerId>,
    /// Video only: the temporal layer (0 ..= [`MAX_TEMPORAL_LAYER`]) of the frame. A frame of
    /// layer `L` is never a reference for a frame of a lower layer, so a relay may drop the
    /// upper layers for a congested receiver and the rest still decodes. 0 for other kinds.
    pub layer: u8,
}

impl DatagramHeader {
    /// Header length without a target.
    pub const MIN_LEN: usize = 7;
    /// Header length with a target.
    pub const MAX_LEN: usize = 11;

    /// A header as a client sends it: the sender is left for the relay to stamp.
    pub fn new(kind: DatagramKind, target: Option<PeerId>) -> Self {
        Self {
            kind,
            sender: PeerId::NONE,
            target,
            layer: 0,
        }
    }

    /// The same header for a video fragment of temporal layer `layer` (at most
    /// [`MAX_TEMPORAL_LAYER`]; higher values are a programming error and are clamped).
    pub fn with_layer(self, layer: u8) -> Self {
        Self {
            layer: layer.min(MAX_TEMPORAL_LAYER),
            ..self
        }
    }

    /// Encoded length of this header.
    pub fn len(&self) -> usize {
        if self.target.is_some() {
            Self::MAX_LEN
        } else {
            Self::MIN_LEN
        }
    }

    /// Always false: a header is never empty (present for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header into the first [`len`](Self::len) bytes of `out` and returns that
    /// length. Panics if `out` is shorter (a programming error, not peer input).
    pub fn write(&self, out: &mut [u8]) -> usize {
        out[0] = PROTOCOL_VERSION;
        out[1] = self.kind as u8;
        let target_flag = if self.target.is_some() {
            FLAG_TARGET
        } else {
            0
        };
        out[2] = target_flag | (self.layer.min(MAX_TEMPORAL_LAYER) << LAYER_SHIFT);
        out[3..7].copy_from_slice(&self.sender.0.to_be_bytes());
        if let Some(target) = self.target {
            out[7..11].copy_from_slice(&target.0.to_be_bytes());
        }
        self.len()
    }

    /// Appends the header to `out`.
    pub fn append(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; Self::MAX_LEN];
        let n = self.write(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Parses the header at the start of `datagram`; returns it and the offset of the body.
    /// Rejects datagrams over [`MAX_DATAGRAM_SIZE`].
    pub fn decode(datagram: &[u8]) -> Result<(Self, usize), DecodeError> {
        if datagram.len() > MAX_DATAGRAM_SIZE {
            return Err(DecodeError::TooLarge {
                len: datagram.len(),
                max: MAX_DATAGRAM_SIZE,
            });
        }
        let mut r = Reader::new(datagram);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let kind = DatagramKind::from_u8(r.u8()?)?;
        let flags = r.u8()?;
        if flags & !(FLAG_TARGET | LAYER_MASK) != 0 {
            return Err(DecodeError::Invalid {
                what: "datagram flags",
                why: "reserved bits set",
            });
        }
        let layer = (flags & LAYER_MASK) >> LAYER_SHIFT;
        if layer != 0 && kind != DatagramKind::Video {
            return Err(DecodeError::Invalid {
                what: "datagram flags",
                why: "a temporal layer on a datagram that is not video",
            });
        }
        let sender = PeerId(r.u32()?);
        let target = if flags & FLAG_TARGET != 0 {
            let t = PeerId(r.u32()?);
            if t == PeerId::NONE {
                return Err(DecodeError::Invalid {
                    what: "datagram target",
                    why: "peer id 0",
                });
            }
            Some(t)
        } else {
            None
        };
        let header = Self {
            kind,
            sender,
            target,
            layer,
        };
        Ok((header, header.len()))
    }
}

/// Validates `datagram` and overwrites its sender field in place with `sender` (what the relay
/// does to every datagram it forwards, so clients can never spoof a sender). The datagram's
/// length never changes.
pub fn stamp_sender(datagram: &mut [u8], sender: PeerId) -> Result<DatagramHeader, DecodeError> {
    let (mut header, _) = DatagramHeader::decode(datagram)?;
    datagram[3..7].copy_from_slice(&sender.0.to_be_bytes());
    header.sender = sender;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_target() {
        for kind in DatagramKind::ALL {
            for target in [None, Some(PeerId(7))] {
                let h = DatagramHeader {
                    kind,
                    sender: PeerId(0xdead_beef),
                    target,
                    layer: 0,
                };
                let mut d = Vec::new();
                h.append(&mut d);
                d.extend_from_slice(b"body");
                let (parsed, off) = DatagramHeader::decode(&d).unwrap();
                assert_eq!(parsed, h);
                assert_eq!(&d[off..], b"body");
            }
        }
    }

    #[test]
    fn video_headers_carry_every_temporal_layer() {
        for layer in 0..=MAX_TEMPORAL_LAYER {
            for target in [None, Some(PeerId(7))] {
                let h = DatagramHeader::new(DatagramKind::Video, target).with_layer(layer);
                let mut d = Vec::new();
                h.append(&mut d);
                assert_eq!(d[2] >> 1, layer);
                assert_eq!(DatagramHeader::decode(&d).unwrap().0, h);
            }
        }
        // Clamped, never spilling into reserved bits.
        let h = DatagramHeader::new(DatagramKind::Video, None).with_layer(200);
        assert_eq!(h.layer, MAX_TEMPORAL_LAYER);
    }

    #[test]
    fn a_layer_on_a_datagram_that_is_not_video_is_rejected() {
        for kind in [
            DatagramKind::Audio,
            DatagramKind::Heartbeat,
            DatagramKind::Feedback,
        ] {
            let d = [PROTOCOL_VERSION, kind as u8, 0b010, 0, 0, 0, 0];
            assert!(matches!(
                DatagramHeader::decode(&d),
                Err(DecodeError::Invalid { .. })
            ));
        }
        let video = [PROTOCOL_VERSION, 1, 0b110, 0, 0, 0, 0];
        assert_eq!(DatagramHeader::decode(&video).unwrap().0.layer, 3);
    }

    #[test]
    fn exact_bytes_of_an_addressed_feedback_header() {
        let h = DatagramHeader {
            kind: DatagramKind::Feedback,
            sender: PeerId(0x0102_0304),
            target: Some(PeerId(9)),
            layer: 0,
        };
        let mut d = Vec::new();
        h.append(&mut d);
        assert_eq!(d, [5, 4, 1, 1, 2, 3, 4, 0, 0, 0, 9]);
    }

    #[test]
    fn stamping_overwrites_a_forged_sender_in_place() {
        let forged = DatagramHeader {
            kind: DatagramKind::Audio,
            sender: PeerId(666),
            target: None,
            layer: 0,
        };
        let mut d = Vec::new();
        forged.append(&mut d);
        d.extend_from_slice(&[0xAA; 20]);
        let len = d.len();
        let stamped = stamp_sender(&mut d, PeerId(3)).unwrap();
        assert_eq!(stamped.sender, PeerId(3));
        assert_eq!(d.len(), len);
        assert_eq!(DatagramHeader::decode(&d).unwrap().0.sender, PeerId(3));
        assert_eq!(&d[7..], &[0xAA; 20]);
    }

    #[test]
    fn rejects_bad_headers_with_typed_errors() {
        assert!(matches!(
            DatagramHeader::decode(&[5, 2, 0, 0]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            DatagramHeader::decode(&[4, 2, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnknownVersion(4))
        );
        assert!(matches!(
            DatagramHeader::decode(&[5, 9, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnknownKind { value: 9, .. })
        ));
        assert!(matches!(
            DatagramHeader::decode(&[5, 1, 0x80, 0, 0, 0, 0]),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            DatagramHeader::decode(&[5, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Invalid { .. })
        ));
        let big = vec![5u8; MAX_DATAGRAM_SIZE + 1];
        assert!(matches!(
            DatagramHeader::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut big = big;
        assert!(stamp_sender(&mut big, PeerId(1)).is_err());
    }
}
