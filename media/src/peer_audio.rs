//! One peer's receive-side audio: its jitter buffer and Opus decoder together, turning packets
//! as they arrive into exactly one 20 ms frame per playout tick — decoded, rebuilt from the next
//! packet's FEC data, concealed, or silence before the stream starts. Feed the frames to the
//! [`Mixer`](super::mixer::Mixer).

use super::audio_codec::OpusDecoder;
use super::jitter::{JitterBuffer, JitterBufferConfig, JitterStats, Playout};
use super::{AUDIO_FRAME_SAMPLES, MediaError};

/// How the frame returned by [`PeerAudioPlayout::next_frame`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayoutSource {
    /// Decoded from its own packet, captured at `capture_time_ms` on the sender's clock.
    Decoded { capture_time_ms: u64 },
    /// Its packet was lost; rebuilt from the FEC data of the packet after it.
    FecRecovered,
    /// Its packet was lost (or undecodable); synthesised by Opus packet-loss concealment.
    Concealed,
    /// Nothing to play yet (stream not started or restarting): silence.
    Silence,
}

/// Counters of one peer's playout.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerAudioStats {
    pub jitter: JitterStats,
    /// Frames decoded from their own packet.
    pub decoded: u64,
    /// Lost frames rebuilt with FEC.
    pub fec_recovered: u64,
    /// Frames synthesised by concealment.
    pub concealed: u64,
    /// Packets Opus rejected (played as concealment).
    pub decode_errors: u64,
}

/// Jitter buffer plus decoder for one peer.
pub struct PeerAudioPlayout {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    stats: PeerAudioStats,
}

impl PeerAudioPlayout {
    /// A playout with its own Opus decoder.
    pub fn new(config: JitterBufferConfig) -> Result<Self, MediaError> {
        Ok(Self {
            jitter: JitterBuffer::new(config),
            decoder: OpusDecoder::new()?,
            stats: PeerAudioStats::default(),
        })
    }

    /// Adds a received packet (see [`JitterBuffer::push`]).
    pub fn push(&mut self, sequence: u32, capture_time_ms: u64, packet: &[u8], now_ms: u64) {
        self.jitter.push(sequence, capture_time_ms, packet, now_ms);
    }

    /// Writes the frame to play at `now_ms` into `out` (960 samples; other lengths are
    /// filled with silence and reported as [`PlayoutSource::Silence`]).
    pub fn next_frame(&mut self, now_ms: u64, out: &mut [f32]) -> PlayoutSource {
        if out.len() != AUDIO_FRAME_SAMPLES {
            out.fill(0.0);
            return PlayoutSource::Silence;
        }
        let source = match self.jitter.pop(now_ms) {
            Playout::Empty => {
                out.fill(0.0);
                return PlayoutSource::Silence;
            }
            Playout::Packet {
                capture_time_ms,
                packet,
                ..
            } => match self.decoder.decode(packet, out) {
                Ok(_) => PlayoutSource::Decoded { capture_time_ms },
                Err(_) => {
                    self.stats.decode_errors += 1;
                    conceal(&mut self.decoder, out)
                }
            },
            Playout::Lost {
                fec_source: Some(next_packet),
                ..
            } => match self.decoder.decode_fec(next_packet, out) {
                Ok(_) => PlayoutSource::FecRecovered,
                Err(_) => conceal(&mut self.decoder, out),
            },
            Playout::Lost {
                fec_source: None, ..
            } => conceal(&mut self.decoder, out),
        };
        match source {
            PlayoutSource::Decoded { .. } => self.stats.decoded += 1,
            PlayoutSource::FecRecovered => self.stats.fec_recovered += 1,
            PlayoutSource::Concealed => self.stats.concealed += 1,
            PlayoutSource::Silence => {}
        }
        source
    }

    /// Counters, including the jitter buffer's.
    pub fn stats(&self) -> PeerAudioStats {
        PeerAudioStats {
            jitter: self.jitter.stats(),
            ..self.stats
        }
    }
}

fn conceal(decoder: &mut OpusDecoder, out: &mut [f32]) -> PlayoutSource {
    if decoder.decode_lost(out).is_err() {
        out.fill(0.0);
    }
    PlayoutSource::Concealed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AUDIO_SAMPLE_RATE;
    use crate::analysis::dominant_frequency;
    use crate::audio_codec::{OpusEncoder, OpusEncoderConfig};
    use crate::tone::Tone;

    #[test]
    fn a_lossy_reordered_stream_plays_the_right_tone() {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut tone = Tone::new(730.0, AUDIO_SAMPLE_RATE, 0.3);
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        let packets: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                tone.fill(&mut frame);
                let mut packet = Vec::new();
                encoder.encode(&frame, &mut packet).unwrap();
                packet
            })
            .collect();

        // Network: every 10th packet lost, odd/even pairs swapped, every 7th duplicated.
        let mut arrivals: Vec<(u64, u32)> = Vec::new();
        for sequence in 0..100u32 {
            if sequence % 10 == 5 {
                continue;
            }
            let capture = u64::from(sequence) * 20;
            let swap_delay = if sequence % 2 == 0 { 30 } else { 0 };
            arrivals.push((capture + 5 + swap_delay, sequence));
            if sequence % 7 == 0 {
                arrivals.push((capture + 9, sequence));
            }
        }
        arrivals.sort();

        let mut playout = PeerAudioPlayout::new(JitterBufferConfig::default()).unwrap();
        let mut played = Vec::new();
        let mut sources = Vec::new();
        let mut next_arrival = 0;
        // The first arrival (packet 0's duplicate) is at 9 ms, so playout starts at 60 ms and
        // plays packet k at 60 + 20k, plus a tick per concealment frame the jitter buffer adds
        // to grow its delay (the swaps measure as jitter): 110 ticks play all 100, then conceal.
        for tick in 0..110u64 {
            let now = tick * 20;
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now {
                let sequence = arrivals[next_arrival].1;
                let capture = u64::from(sequence) * 20;
                playout.push(
                    sequence,
                    capture,
                    &packets[sequence as usize],
                    arrivals[next_arrival].0,
                );
                next_arrival += 1;
            }
            let source = playout.next_frame(now, &mut frame);
            sources.push(source);
            if source != PlayoutSource::Silence {
                played.extend_from_slice(&frame);
            }
        }
        let stats = playout.stats();
        assert_eq!(stats.decoded, 90, "{stats:?}");
        assert_eq!(stats.fec_recovered, 10, "{stats:?}");
        assert_eq!(
            stats.concealed,
            stats.jitter.stretched + stats.jitter.underruns,
            "concealment only to grow the delay, and after the stream ended"
        );
        assert!(stats.jitter.stretched > 0);
        assert_eq!(stats.decode_errors, 0);
        assert_eq!(stats.jitter.duplicates, 14); // multiples of 7 except the lost 35
        assert_eq!(stats.jitter.lost, 10);
        assert_eq!(sources[..3], [PlayoutSource::Silence; 3]);
        assert_eq!(sources[3], PlayoutSource::Decoded { capture_time_ms: 0 });
        assert_eq!(sources[8], PlayoutSource::FecRecovered);
        let peak = dominant_frequency(&played, AUDIO_SAMPLE_RATE);
        assert!((peak - 730.0).abs() < 1.0, "peak {peak} Hz");
    }

    #[test]
    fn garbage_packets_are_concealed_and_counted() {
        let mut playout = PeerAudioPlayout::new(JitterBufferConfig::default()).unwrap();
        playout.push(0, 0, &[0xFF, 0xFF, 0xFF], 0);
        let mut frame = vec![1.0; AUDIO_FRAME_SAMPLES];
        assert_eq!(playout.next_frame(0, &mut frame), PlayoutSource::Silence);
        assert!(frame.iter().all(|&s| s == 0.0));
        assert_eq!(playout.next_frame(40, &mut frame), PlayoutSource::Concealed);
        assert_eq!(playout.stats().decode_errors, 1);
        let mut short = [1.0; 10];
        assert_eq!(playout.next_frame(60, &mut short), PlayoutSource::Silence);
        assert_eq!(short, [0.0; 10]);
    }
}
