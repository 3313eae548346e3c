//! Opus voice coding: 48 kHz mono, 20 ms frames (960 samples), VoIP application, in-band FEC,
//! with packet-loss concealment and FEC recovery on the decoding side.

use opus::{Application, Bitrate, Channels};

use super::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, MediaError};

/// Largest Opus packet (RFC 6716, 3.2.1).
pub const MAX_OPUS_PACKET: usize = 1275;

/// Settings of an [`OpusEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusEncoderConfig {
    /// Target bitrate in bits per second.
    pub bitrate_bps: i32,
    /// Expected packet loss in percent (0–100): tells the encoder how much FEC to spend.
    pub expected_packet_loss_percent: u8,
    /// In-band forward error correction (lets the receiver rebuild a lost frame from the next).
    pub inband_fec: bool,
    /// Constant bitrate: every packet the same size, so packet sizes do not reveal what is
    /// said (VBR packet sizes leak speech content, RFC 6562). On by default.
    pub constant_bitrate: bool,
}

impl Default for OpusEncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 32_000,
            expected_packet_loss_percent: 10,
            inband_fec: true,
            constant_bitrate: true,
        }
    }
}

/// An Opus encoder of 20 ms mono frames. `Send`: run it on the audio thread.
pub struct OpusEncoder {
    encoder: opus::Encoder,
}

impl OpusEncoder {
    /// Creates a VoIP-mode encoder with the given settings.
    pub fn new(config: OpusEncoderConfig) -> Result<Self, MediaError> {
        let mut encoder = opus::Encoder::new(AUDIO_SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        encoder.set_inband_fec(config.inband_fec)?;
        encoder.set_vbr(!config.constant_bitrate)?;
        let mut this = Self { encoder };
        this.set_bitrate(config.bitrate_bps)?;
        this.set_expected_packet_loss(config.expected_packet_loss_percent)?;
        Ok(this)
    }

    /// Changes the target bitrate (bits per second, 6 000–510 000).
    pub fn set_bitrate(&mut self, bitrate_bps: i32) -> Result<(), MediaError> {
        self.encoder
            .set_bitrate(Bitrate::Bits(bitrate_bps.clamp(6_000, 510_000)))?;
        Ok(())
    }

    /// Updates the expected packet loss hint (percent, clamped to 0–100).
    pub fn set_expected_packet_loss(&mut self, percent: u8) -> Result<(), MediaError> {
        self.encoder
            .set_packet_loss_perc(i32::from(percent.min(100)))?;
        Ok(())
    }

    /// Encodes one 20 ms frame (exactly 960 samples in -1.0..=1.0) into `out`, which is
    /// resized to the packet and reused between calls.
    pub fn encode(&mut self, frame: &[f32], out: &mut Vec<u8>) -> Result<(), MediaError> {
        check_frame_len(frame.len())?;
        out.resize(MAX_OPUS_PACKET, 0);
        let len = self.encoder.encode_float(frame, out)?;
        out.truncate(len);
        Ok(())
    }
}

/// An Opus decoder producing 20 ms mono frames.
pub struct OpusDecoder {
    decoder: opus::Decoder,
}

impl OpusDecoder {
    /// Creates a 48 kHz mono decoder.
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            decoder: opus::Decoder::new(AUDIO_SAMPLE_RATE, Channels::Mono)?,
        })
    }

    /// Decodes a packet into `out` (960 samples); returns the samples written.
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize, MediaError> {
        check_frame_len(out.len())?;
        if packet.is_empty() {
            return Err(MediaError::Opus("empty packet".into()));
        }
        Ok(self.decoder.decode_float(packet, out, false)?)
    }

    /// Packet-loss concealment: synthesises the next 20 ms when its packet is missing.
    pub fn decode_lost(&mut self, out: &mut [f32]) -> Result<usize, MediaError> {
        check_frame_len(out.len())?;
        Ok(self.decoder.decode_float(&[], out, false)?)
    }

    /// Rebuilds a lost frame from the FEC data carried by the packet that follows it. Call it
    /// for the lost frame, then [`decode`](Self::decode) `next_packet` for its own frame. Falls
    /// back to concealment inside libopus when `next_packet` carries no FEC data.
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut [f32]) -> Result<usize, MediaError> {
        check_frame_len(out.len())?;
        if next_packet.is_empty() {
            return self.decode_lost(out);
        }
        Ok(self.decoder.decode_float(next_packet, out, true)?)
    }
}

fn check_frame_len(len: usize) -> Result<(), MediaError> {
    if len == AUDIO_FRAME_SAMPLES {
        Ok(())
    } else {
        Err(MediaError::AudioFrameSize {
            expected: AUDIO_FRAME_SAMPLES,
            actual: len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::dominant_frequency;
    use crate::tone::Tone;

    /// Encodes 1 s of a tone; returns the packets.
    fn tone_packets(frequency: f64) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut tone = Tone::new(frequency, AUDIO_SAMPLE_RATE, 0.5);
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        (0..50)
            .map(|_| {
                tone.fill(&mut frame);
                let mut packet = Vec::new();
                encoder.encode(&frame, &mut packet).unwrap();
                packet
            })
            .collect()
    }

    fn rms(samples: &[f32]) -> f32 {
        (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
    }

    #[test]
    fn constant_bitrate_packets_do_not_reveal_speech_from_silence() {
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        let mut sizes = |config: OpusEncoderConfig| {
            let mut encoder = OpusEncoder::new(config).unwrap();
            let mut tone = Tone::new(300.0, AUDIO_SAMPLE_RATE, 0.6);
            let mut lens = std::collections::BTreeSet::new();
            for i in 0..100 {
                // Alternate half-second bursts of "speech" and silence.
                if (i / 25) % 2 == 0 {
                    tone.fill(&mut frame);
                } else {
                    frame.fill(0.0);
                }
                let mut packet = Vec::new();
                encoder.encode(&frame, &mut packet).unwrap();
                lens.insert(packet.len());
            }
            lens
        };
        let cbr = sizes(OpusEncoderConfig::default());
        assert_eq!(
            cbr.len(),
            1,
            "one packet size for speech and silence: {cbr:?}"
        );
        let vbr = sizes(OpusEncoderConfig {
            constant_bitrate: false,
            ..OpusEncoderConfig::default()
        });
        assert!(vbr.len() > 1, "VBR sizes vary with content: {vbr:?}");
    }

    #[test]
    fn tone_survives_an_opus_round_trip_within_1_hz() {
        let packets = tone_packets(440.0);
        // 32 kbit/s is 80 bytes per 20 ms; VBR varies around it.
        let mean_len = packets.iter().map(Vec::len).sum::<usize>() / packets.len();
        assert!(
            (20..=200).contains(&mean_len),
            "mean packet {mean_len} bytes"
        );
        let mut decoder = OpusDecoder::new().unwrap();
        let mut decoded = vec![0.0; AUDIO_FRAME_SAMPLES * packets.len()];
        for (packet, frame) in packets
            .iter()
            .zip(decoded.chunks_exact_mut(AUDIO_FRAME_SAMPLES))
        {
            assert_eq!(decoder.decode(packet, frame).unwrap(), AUDIO_FRAME_SAMPLES);
        }
        let peak = dominant_frequency(&decoded, AUDIO_SAMPLE_RATE);
        assert!((peak - 440.0).abs() < 1.0, "peak {peak} Hz");
    }

    #[test]
    fn lost_frames_are_concealed_and_fec_recovers_them() {
        let packets = tone_packets(500.0);
        let mut decoder = OpusDecoder::new().unwrap();
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        for packet in &packets[..20] {
            decoder.decode(packet, &mut frame).unwrap();
        }
        let reference_rms = rms(&frame);
        assert!(reference_rms > 0.2);

        // Frame 20 is lost: concealment keeps sound going.
        assert_eq!(
            decoder.decode_lost(&mut frame).unwrap(),
            AUDIO_FRAME_SAMPLES
        );
        assert!(rms(&frame) > reference_rms * 0.3, "PLC rms {}", rms(&frame));
        decoder.decode(&packets[21], &mut frame).unwrap();

        // Frame 22 is lost but frame 23 arrived: rebuild 22 from 23's FEC data.
        assert_eq!(
            decoder.decode_fec(&packets[23], &mut frame).unwrap(),
            AUDIO_FRAME_SAMPLES
        );
        assert!(rms(&frame) > reference_rms * 0.5, "FEC rms {}", rms(&frame));
        decoder.decode(&packets[23], &mut frame).unwrap();
        assert!(rms(&frame) > reference_rms * 0.5);
    }

    #[test]
    fn bad_sizes_and_packets_are_errors() {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut packet = Vec::new();
        assert!(matches!(
            encoder.encode(&[0.0; 100], &mut packet),
            Err(MediaError::AudioFrameSize { .. })
        ));
        let mut decoder = OpusDecoder::new().unwrap();
        let mut frame = vec![0.0; AUDIO_FRAME_SAMPLES];
        assert!(decoder.decode(&[], &mut frame).is_err());
        // A code-3 packet header with an impossible frame count.
        assert!(decoder.decode(&[0xFF, 0xFF, 0xFF], &mut frame).is_err());
        assert!(decoder.decode(&[0; 4], &mut frame[..10]).is_err());
        encoder.set_bitrate(64_000).unwrap();
        encoder.set_expected_packet_loss(200).unwrap();
    }
}
