//! Media building blocks for the call engine: frames and camera-format conversion (YUYV, NV12,
//! MJPEG → I420), the
//! deterministic test pattern, H.264 and Opus codecs, tone generation and analysis, the audio
//! jitter buffer, mixer and echo-canceller hook, Y4M/WAV files, and source/sink traits.
//!
//! Everything here is synchronous and free of I/O except the file readers/writers: no networking,
//! no async runtime, no threads. The engine runs codecs on its own threads and passes time in.
//!
//! ```text
//! send video:  VideoSource::next_frame → H264Encoder::encode_at (Annex-B, is_keyframe)
//! recv video:  H264Decoder::decode → I420Frame (NeedsKeyframe → ask the sender)
//!              → to_rgba for display; PatternPsnrMeter::measure on a sample of frames
//! send audio:  AudioSource::fill (960 samples) → EchoCanceller::process(mic, mixer far ref)
//!              → OpusEncoder::encode
//! recv audio:  PeerAudioPlayout::push per packet; every 20 ms: next_frame per peer
//!              → Mixer::add → Mixer::finish → AudioSink::play
//! ```

// No unsafe code, except the two openh264 options the `openh264` crate does not wrap (temporal
// layers, a bitrate change), in `video_codec`, each with its safety argument.
#![deny(unsafe_code)]

pub mod analysis;
pub mod audio_codec;
pub mod convert;
pub mod echo;
pub mod error;
pub mod frame;
pub mod jitter;
pub mod mixer;
pub mod peer_audio;
pub mod source;
pub mod test_pattern;
pub mod tone;
pub mod video_codec;
pub mod wav;
pub mod y4m;

pub use error::MediaError;
pub use frame::I420Frame;

/// Audio sample rate used everywhere in vcall (Hz).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;
/// Duration of one audio frame (one Opus packet, one datagram) in milliseconds.
pub const AUDIO_FRAME_MS: u32 = 20;
/// Samples in one mono 20 ms audio frame at 48 kHz.
pub const AUDIO_FRAME_SAMPLES: usize = 960;
