//! H.264 encoding and decoding of `I420Frame`s over openh264 (Cisco's bundled source, built
//! with nasm for SIMD): a real-time camera profile in bitrate mode with frame skipping off,
//! real timestamps, optional temporal layers (every other frame a non-reference frame) and a
//! target bitrate changed on the fly; and a decoder that says distinctly when it needs a
//! keyframe.

use std::ptr::addr_of_mut;

use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use openh264_sys2::{
    ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
    SBitrateInfo, SEncParamExt, SPATIAL_LAYER_0, SPATIAL_LAYER_ALL, VIDEO_CODING_LAYER,
};

use super::frame::validate_dimensions;
use super::{I420Frame, MediaError};

/// Settings of an [`H264Encoder`]. Frames passed to it must have exactly this size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264EncoderConfig {
    pub width: usize,
    pub height: usize,
    /// Highest frame rate the source delivers; rate control budgets bits per frame from it.
    pub max_frame_rate: f32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// A keyframe every this many frames (0: only the first frame and forced ones).
    pub keyframe_interval_frames: u32,
    /// Temporal layers, 1 or 2. With 2, every other frame is of layer 1: a non-reference
    /// frame that nothing else is predicted from, so losing (or dropping) one costs that frame
    /// alone, and sending only layer 0 halves the frame rate without a new encoder.
    pub temporal_layers: u8,
}

impl H264EncoderConfig {
    /// The call defaults: 1280x720, 30 fps, 1.5 Mbit/s, no periodic keyframes (the engine
    /// forces them as a safety net and on request).
    pub const fn hd_default() -> Self {
        Self {
            width: 1280,
            height: 720,
            max_frame_rate: 30.0,
            bitrate_bps: 1_500_000,
            keyframe_interval_frames: 0,
            temporal_layers: 2,
        }
    }
}

/// What [`H264Encoder::encode_at`] produced besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedVideoFrame {
    /// An IDR/I frame: a decoder can start here.
    pub is_keyframe: bool,
    /// Length of the Annex-B bitstream written (0 if the encoder produced nothing).
    pub len: usize,
    /// The frame's temporal layer (0 with one layer; 1 marks a non-reference frame).
    pub temporal_layer: u8,
}

/// An H.264 encoder producing Annex-B access units (start codes included; the first one
/// carries SPS/PPS). Not thread-safe but `Send`: run it on one dedicated thread.
pub struct H264Encoder {
    encoder: Encoder,
    config: H264EncoderConfig,
    frames_encoded: u64,
    keyframe_requested: bool,
    /// The target bitrate openh264 runs at now (bits per second).
    bitrate_bps: u32,
}

impl H264Encoder {
    /// Creates an encoder (the first `encode_at` initialises openh264 and emits a keyframe).
    pub fn new(config: H264EncoderConfig) -> Result<Self, MediaError> {
        validate_dimensions(config.width, config.height)?;
        if !(1..=2).contains(&config.temporal_layers) {
            return Err(MediaError::VideoEncoder(format!(
                "{} temporal layers asked; 1 or 2 are supported",
                config.temporal_layers
            )));
        }
        if config.width > 3840 || config.height > 2160 {
            return Err(MediaError::InvalidDimensions {
                width: config.width,
                height: config.height,
            });
        }
        let openh264_config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(config.bitrate_bps.max(MIN_BITRATE_BPS)))
            .max_frame_rate(FrameRate::from_hz(config.max_frame_rate.clamp(1.0, 240.0)))
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                config.keyframe_interval_frames,
            ))
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), openh264_config)
            .map_err(|error| MediaError::VideoEncoder(error.to_string()))?;
        Ok(Self {
            encoder,
            config,
            frames_encoded: 0,
            keyframe_requested: false,
            bitrate_bps: config.bitrate_bps.max(MIN_BITRATE_BPS),
        })
    }

    /// The target bitrate now (bits per second).
    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_bps
    }

    #[allow(unsafe_code)]
    /// Changes the target bitrate of the running encoder (no new encoder, no keyframe); takes
    /// effect from the next frame. Clamped to at least 10 kbit/s.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), MediaError> {
        let bitrate_bps = bitrate_bps.max(MIN_BITRATE_BPS);
        if bitrate_bps == self.bitrate_bps {
            return Ok(());
        }
        let raising = bitrate_bps > self.bitrate_bps;
        self.bitrate_bps = bitrate_bps;
        if self.frames_encoded == 0 {
            // openh264 initialises on the first frame; it starts at the new rate then.
            return Ok(());
        }
        let bits = bitrate_bps.min(i32::MAX as u32) as i32;
        let mut target = SBitrateInfo {
            iLayer: SPATIAL_LAYER_ALL,
            iBitrate: bits,
        };
        let mut max = SBitrateInfo {
            iLayer: SPATIAL_LAYER_0,
            iBitrate: bits,
        };
        // The target may never exceed the layer's maximum: raise the maximum first, lower it
        // last.
        let order: [(i32, &mut SBitrateInfo); 2] = if raising {
            [
                (ENCODER_OPTION_MAX_BITRATE, &mut max),
                (ENCODER_OPTION_BITRATE, &mut target),
            ]
        } else {
            [
                (ENCODER_OPTION_BITRATE, &mut target),
                (ENCODER_OPTION_MAX_BITRATE, &mut max),
            ]
        };
        for (option, info) in order {
            // SAFETY: the encoder is initialised (a frame was encoded) and `info` is a valid
            // SBitrateInfo for the duration of the call; openh264 copies it.
            let rc = unsafe {
                self.encoder
                    .raw_api()
                    .set_option(option, std::ptr::from_mut(info).cast())
            };
            if rc != 0 {
                return Err(MediaError::VideoEncoder(format!(
                    "openh264 refused a bitrate of {bitrate_bps} bit/s (code {rc})"
                )));
            }
        }
        Ok(())
    }

    #[allow(unsafe_code)]
    /// Switches the initialised encoder to the configured temporal layers (the `openh264`
    /// crate always initialises with one). openh264 resets, so the next frame is an IDR.
    fn apply_temporal_layers(&mut self) -> Result<(), MediaError> {
        let mut params = SEncParamExt::default();
        // SAFETY: the encoder is initialised; GetOption copies its parameters into `params`,
        // a valid SEncParamExt, and SetOption copies them back.
        let rc = unsafe {
            let api = self.encoder.raw_api();
            let rc = api.get_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                addr_of_mut!(params).cast(),
            );
            if rc == 0 {
                params.iTemporalLayerNum = i32::from(self.config.temporal_layers);
                params.iTargetBitrate = self.bitrate_bps.min(i32::MAX as u32) as i32;
                params.sSpatialLayers[0].iSpatialBitrate = params.iTargetBitrate;
                params.sSpatialLayers[0].iMaxSpatialBitrate = params.iTargetBitrate;
                api.set_option(
                    ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                    addr_of_mut!(params).cast(),
                )
            } else {
                rc
            }
        };
        if rc != 0 {
            return Err(MediaError::VideoEncoder(format!(
                "openh264 refused {} temporal layers (code {rc})",
                self.config.temporal_layers
            )));
        }
        Ok(())
    }

    /// The settings this encoder was created with.
    pub fn config(&self) -> &H264EncoderConfig {
        &self.config
    }

    /// Makes the next encoded frame a keyframe (IDR).
    pub fn force_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes `frame` captured at `timestamp_ms` (a monotonic capture clock in milliseconds;
    /// rate control uses it) into `out`, which is cleared first and reused between calls.
    pub fn encode_at(
        &mut self,
        frame: &I420Frame,
        timestamp_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<EncodedVideoFrame, MediaError> {
        out.clear();
        if frame.width() != self.config.width || frame.height() != self.config.height {
            return Err(MediaError::FrameSizeMismatch {
                expected_width: self.config.width,
                expected_height: self.config.height,
                actual_width: frame.width(),
                actual_height: frame.height(),
            });
        }
        // Before the first frame openh264 is not initialised yet, and that frame is an IDR anyway.
        if self.keyframe_requested && self.frames_encoded > 0 {
            self.encoder.force_intra_frame();
        }
        self.keyframe_requested = false;
        let timestamp = Timestamp::from_millis(timestamp_ms.min(i64::MAX as u64));
        if self.frames_encoded == 0 && self.config.temporal_layers > 1 {
            // The first encode initialises openh264 with one layer; its output is discarded,
            // the layers are applied, and the same picture is encoded again (an IDR).
            self.encoder
                .encode_at(&I420Source(frame), timestamp)
                .map_err(|error| MediaError::VideoEncoder(error.to_string()))?;
            self.apply_temporal_layers()?;
        }
        let bitstream = self
            .encoder
            .encode_at(&I420Source(frame), timestamp)
            .map_err(|error| MediaError::VideoEncoder(error.to_string()))?;
        let is_keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        let temporal_layer = (0..bitstream.num_layers())
            .filter_map(|i| bitstream.layer(i))
            .filter(|layer| layer.raw_info().uiLayerType == VIDEO_CODING_LAYER as u8)
            .map(|layer| layer.raw_info().uiTemporalId)
            .max()
            .unwrap_or(0);
        bitstream.write_vec(out);
        self.frames_encoded += 1;
        Ok(EncodedVideoFrame {
            is_keyframe,
            len: out.len(),
            temporal_layer,
        })
    }
}

/// openh264's lowest accepted bitrate setting is far below this; lower is not useful video.
const MIN_BITRATE_BPS: u32 = 10_000;

/// Lets openh264 read an `I420Frame` without copying.
struct I420Source<'a>(&'a I420Frame);

impl YUVSource for I420Source<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width(), self.0.height())
    }

    fn strides(&self) -> (usize, usize, usize) {
        let chroma = self.0.chroma_width();
        (self.0.width(), chroma, chroma)
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

/// openh264 decoding-state bits (codec_def.h) that mean "cannot continue without a keyframe".
const DECODING_STATE_REF_LOST: i64 = 0x02;
const DECODING_STATE_NO_PARAM_SETS: i64 = 0x10;
const DECODING_STATE_REF_LIST_NULL: i64 = 0x40;

/// An H.264 decoder of Annex-B access units into `I420Frame`s.
///
/// Until it has decoded a keyframe (at start and after any error) it refuses other frames
/// with [`MediaError::NeedsKeyframe`] instead of producing garbage, so the receiver can ask
/// the sender for one.
pub struct H264Decoder {
    decoder: Decoder,
    awaiting_keyframe: bool,
}

impl H264Decoder {
    /// Creates a decoder with error concealment off (a broken reference is an error, not a
    /// smeared picture).
    pub fn new() -> Result<Self, MediaError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|error| MediaError::VideoDecoder(error.to_string()))?;
        Ok(Self {
            decoder,
            awaiting_keyframe: true,
        })
    }

    /// True until a keyframe has been decoded (initially and after any decoding error).
    pub fn needs_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    /// Decodes one access unit. On `Ok(true)` `out` holds the picture (reshaped to the
    /// stream's size, its allocation reused); `Ok(false)` means the decoder produced no picture
    /// for this input (e.g. parameter sets only).
    pub fn decode(&mut self, annex_b: &[u8], out: &mut I420Frame) -> Result<bool, MediaError> {
        if self.awaiting_keyframe && !contains_idr(annex_b) {
            return Err(MediaError::NeedsKeyframe);
        }
        let decoded = match self.decoder.decode(annex_b) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.awaiting_keyframe = true;
                let state = error.native_code();
                let keyframe_bits = DECODING_STATE_REF_LOST
                    | DECODING_STATE_NO_PARAM_SETS
                    | DECODING_STATE_REF_LIST_NULL;
                return Err(if state & keyframe_bits != 0 {
                    MediaError::NeedsKeyframe
                } else {
                    MediaError::CorruptVideo {
                        decoding_state: state,
                    }
                });
            }
        };
        let Some(picture) = decoded else {
            return Ok(false);
        };
        let (width, height) = picture.dimensions();
        out.reshape(width, height)?;
        let (y_stride, u_stride, v_stride) = picture.strides();
        let chroma_width = width / 2;
        let (y_plane, u_plane, v_plane) = out.planes_mut();
        copy_plane(picture.y(), y_stride, y_plane, width)?;
        copy_plane(picture.u(), u_stride, u_plane, chroma_width)?;
        copy_plane(picture.v(), v_stride, v_plane, chroma_width)?;
        self.awaiting_keyframe = false;
        Ok(true)
    }
}

/// Copies a strided plane into a tightly packed one, checking every bound.
fn copy_plane(
    source: &[u8],
    source_stride: usize,
    destination: &mut [u8],
    width: usize,
) -> Result<(), MediaError> {
    let rows = destination.len() / width;
    let needed = source_stride * rows.saturating_sub(1) + width;
    if source_stride < width || source.len() < needed {
        return Err(MediaError::VideoDecoder(format!(
            "decoded plane too small: {} bytes for {rows} rows of {width} (stride {source_stride})",
            source.len()
        )));
    }
    for (row, destination_row) in destination.chunks_exact_mut(width).enumerate() {
        let start = row * source_stride;
        destination_row.copy_from_slice(&source[start..start + width]);
    }
    Ok(())
}

/// True if the Annex-B buffer has an IDR slice (NAL unit type 5).
pub fn contains_idr(annex_b: &[u8]) -> bool {
    annex_b
        .windows(4)
        .any(|window| window[..3] == [0, 0, 1] && window[3] & 0x1F == 5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::psnr_i420;
    use crate::test_pattern;

    fn config(width: usize, height: usize, bitrate_bps: u32) -> H264EncoderConfig {
        H264EncoderConfig {
            width,
            height,
            max_frame_rate: 30.0,
            bitrate_bps,
            keyframe_interval_frames: 0,
            temporal_layers: 1,
        }
    }

    /// Encodes `count` pattern frames, decodes them, and returns (min PSNR, frames decoded).
    fn round_trip(width: usize, height: usize, bitrate_bps: u32, count: u32) -> (f64, u32) {
        let mut encoder = H264Encoder::new(config(width, height, bitrate_bps)).unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        let mut source = I420Frame::new(width, height).unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        let mut reference = I420Frame::new(width, height).unwrap();
        let mut bitstream = Vec::new();
        let mut min_psnr = f64::INFINITY;
        let mut decoded_count = 0;
        for number in 0..count {
            test_pattern::render(number, &mut source);
            let info = encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap();
            assert_eq!(info.len, bitstream.len());
            assert!(!bitstream.is_empty(), "frame {number} was skipped");
            assert_eq!(info.is_keyframe, number == 0, "frame {number}");
            assert!(decoder.decode(&bitstream, &mut decoded).unwrap());
            decoded_count += 1;
            let read = test_pattern::read_frame_number(&decoded).expect("number readable");
            assert_eq!(read, number);
            test_pattern::render(read, &mut reference);
            min_psnr = min_psnr.min(psnr_i420(&reference, &decoded).unwrap());
        }
        (min_psnr, decoded_count)
    }

    #[test]
    fn pattern_survives_encode_decode_at_320x180() {
        let (min_psnr, decoded) = round_trip(320, 180, 400_000, 30);
        assert_eq!(decoded, 30);
        assert!(min_psnr >= 30.0, "min PSNR {min_psnr:.1} dB");
    }

    #[test]
    fn pattern_survives_encode_decode_at_1280x720() {
        let (min_psnr, decoded) = round_trip(1280, 720, 1_500_000, 6);
        assert_eq!(decoded, 6);
        assert!(min_psnr >= 30.0, "min PSNR {min_psnr:.1} dB");
    }

    #[test]
    fn forced_keyframe_lets_a_late_decoder_start() {
        let mut encoder = H264Encoder::new(config(320, 180, 300_000)).unwrap();
        let mut source = I420Frame::new(320, 180).unwrap();
        let mut bitstream = Vec::new();
        for number in 0..3 {
            test_pattern::render(number, &mut source);
            encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap();
        }
        // A decoder joining mid-stream gets a P frame: it must ask for a keyframe.
        let mut decoder = H264Decoder::new().unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        assert!(matches!(
            decoder.decode(&bitstream, &mut decoded),
            Err(MediaError::NeedsKeyframe)
        ));
        assert!(decoder.needs_keyframe());

        encoder.force_keyframe();
        test_pattern::render(3, &mut source);
        let info = encoder.encode_at(&source, 99, &mut bitstream).unwrap();
        assert!(info.is_keyframe);
        assert!(contains_idr(&bitstream));
        assert!(decoder.decode(&bitstream, &mut decoded).unwrap());
        assert!(!decoder.needs_keyframe());
        assert_eq!(test_pattern::read_frame_number(&decoded), Some(3));
    }

    #[test]
    fn missing_frame_is_reported_as_needing_a_keyframe() {
        let mut encoder = H264Encoder::new(config(320, 180, 300_000)).unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        let mut source = I420Frame::new(320, 180).unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        let mut bitstream = Vec::new();
        let mut outcomes = Vec::new();
        for number in 0..6 {
            test_pattern::render(number, &mut source);
            encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap();
            if number == 2 {
                continue; // lost in transit
            }
            outcomes.push(decoder.decode(&bitstream, &mut decoded));
        }
        assert!(
            outcomes[..2]
                .iter()
                .all(|outcome| matches!(outcome, Ok(true)))
        );
        let failure = outcomes[2..]
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
            .expect("a frame after the gap must fail");
        assert!(failure.needs_keyframe(), "{failure}");
        assert!(decoder.needs_keyframe());
    }

    fn layered(width: usize, height: usize, bitrate_bps: u32) -> H264Encoder {
        H264Encoder::new(H264EncoderConfig {
            temporal_layers: 2,
            ..config(width, height, bitrate_bps)
        })
        .unwrap()
    }

    #[test]
    fn two_temporal_layers_alternate_and_the_upper_one_can_be_dropped() {
        let mut encoder = layered(320, 180, 300_000);
        let mut decoder = H264Decoder::new().unwrap();
        let mut source = I420Frame::new(320, 180).unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        let mut bitstream = Vec::new();
        let mut layers = Vec::new();
        for number in 0..12 {
            test_pattern::render(number, &mut source);
            let info = encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap();
            assert_eq!(info.is_keyframe, number == 0, "frame {number}");
            layers.push(info.temporal_layer);
            // Every layer-1 frame is lost: the base layer decodes on, frame by frame.
            if info.temporal_layer == 1 {
                continue;
            }
            assert!(
                decoder.decode(&bitstream, &mut decoded).unwrap(),
                "frame {number}"
            );
            assert_eq!(test_pattern::read_frame_number(&decoded), Some(number));
        }
        assert_eq!(layers, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
        assert!(!decoder.needs_keyframe());
    }

    #[test]
    fn losing_a_base_layer_frame_still_needs_a_keyframe() {
        let mut encoder = layered(320, 180, 300_000);
        let mut decoder = H264Decoder::new().unwrap();
        let mut source = I420Frame::new(320, 180).unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        let mut bitstream = Vec::new();
        let mut failed = false;
        for number in 0..8 {
            test_pattern::render(number, &mut source);
            let info = encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap();
            if number == 2 {
                assert_eq!(info.temporal_layer, 0);
                continue; // a reference frame lost in transit
            }
            failed |= decoder.decode(&bitstream, &mut decoded).is_err();
        }
        assert!(failed, "frames after a lost reference must not decode");
        assert!(decoder.needs_keyframe());
    }

    /// Mean encoded size of `count` noisy pattern frames from `first` on.
    fn mean_size(encoder: &mut H264Encoder, first: u32, count: u32) -> usize {
        let (w, h) = (encoder.config().width, encoder.config().height);
        let mut source = I420Frame::new(w, h).unwrap();
        let mut bitstream = Vec::new();
        let mut total = 0;
        let mut noise = 0x9E37_79B9_u32.wrapping_mul(first + 1);
        for number in first..first + count {
            test_pattern::render(number, &mut source);
            // Noise everywhere: content that takes every bit the encoder is given.
            let (y, _, _) = source.planes_mut();
            for pixel in y.iter_mut() {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                *pixel = pixel.wrapping_add((noise & 0x07) as u8);
            }
            total += encoder
                .encode_at(&source, u64::from(number) * 33, &mut bitstream)
                .unwrap()
                .len;
        }
        total / count as usize
    }

    #[test]
    fn the_bitrate_changes_on_the_fly_without_a_keyframe() {
        let mut encoder = layered(640, 360, 1_200_000);
        mean_size(&mut encoder, 0, 30);
        let high = mean_size(&mut encoder, 30, 30);
        encoder.set_bitrate(200_000).unwrap();
        assert_eq!(encoder.bitrate_bps(), 200_000);
        mean_size(&mut encoder, 60, 30);
        let low = mean_size(&mut encoder, 90, 30);
        encoder.set_bitrate(1_200_000).unwrap();
        mean_size(&mut encoder, 120, 30);
        let high_again = mean_size(&mut encoder, 150, 30);
        assert!(
            low * 3 < high,
            "{low} B/frame at 200 kbit/s, {high} at 1.2 Mbit/s"
        );
        assert!(
            high_again > low * 3,
            "{high_again} B/frame after raising, {low} before"
        );
    }

    #[test]
    fn garbage_input_is_an_error_not_a_panic() {
        let mut decoder = H264Decoder::new().unwrap();
        let mut decoded = I420Frame::new(2, 2).unwrap();
        for garbage in [
            &[][..],
            &[0, 0, 1][..],
            &[0, 0, 1, 0x65, 0xFF, 0x00, 0x12][..],
        ] {
            let result = decoder.decode(garbage, &mut decoded);
            assert!(result.is_err() || matches!(result, Ok(false)));
        }
    }

    #[test]
    fn wrong_frame_size_is_rejected() {
        let mut encoder = H264Encoder::new(config(320, 180, 300_000)).unwrap();
        let frame = I420Frame::new(640, 360).unwrap();
        let mut bitstream = Vec::new();
        assert!(matches!(
            encoder.encode_at(&frame, 0, &mut bitstream),
            Err(MediaError::FrameSizeMismatch { .. })
        ));
        assert!(H264Encoder::new(config(321, 180, 300_000)).is_err());
    }
}
