//! What a call is started with: the link, the name, media settings, sources and sinks.

use std::path::PathBuf;

use vcall_media::source::{AudioSink, AudioSource, VideoSource};

/// Why a configured source could not be opened (reported as a warning; the call goes on
/// without that source).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("test pattern: {0}")]
    TestPattern(vcall_media::MediaError),
    #[error("cannot read {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: vcall_media::MediaError,
    },
}

/// Video encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_kbps: 1500,
        }
    }
}

/// Where outgoing video comes from.
pub enum VideoInput {
    /// Camera off: no video is sent.
    Off,
    /// The built-in moving, frame-numbered test pattern (receivers can compute PSNR).
    TestPattern,
    /// The test pattern under fresh noise every frame: content that takes every bit the
    /// encoder is given (for rate-control tests; no PSNR).
    BusyPattern,
    /// The test pattern's first [`crate::REPLAY_FRAMES`] frames encoded once (the first a
    /// keyframe), then sent again and again at the frame rate: a sender that costs almost no
    /// CPU, for load generators (`vcall-bot --video testsrc-replay`). It ignores keyframe
    /// requests and rate control (its loop starts with a keyframe every
    /// `REPLAY_FRAMES / fps` seconds) and is not marked as the test pattern (its frame numbers
    /// repeat, so receivers compute no PSNR from it).
    ReplayPattern,
    /// A Y4M file, looped.
    Y4m(PathBuf),
    /// Any other source, e.g. a camera opened by the app.
    Source(Box<dyn VideoSource + Send>),
}

/// Where outgoing audio comes from.
pub enum AudioInput {
    /// Nothing is sent.
    Off,
    /// A sine tone whose frequency derives from the display name.
    Tone,
    /// A 48 kHz mono WAV file, looped.
    Wav(PathBuf),
    /// Any other source, e.g. a microphone opened by the app.
    Source(Box<dyn AudioSource + Send>),
}

/// Where the mix of everyone else's audio goes.
pub enum AudioOutput {
    /// Decoded and mixed (for statistics and recording) but not played.
    Discard,
    /// Any sink, e.g. the speakers opened by the app.
    Sink(Box<dyn AudioSink + Send>),
}

/// Everything needed to start a call.
pub struct CallConfig {
    /// `vcall://HOST:PORT/ROOM?fp=HEX#k=KEY` (or `#p=PASSPHRASE`, or no fragment).
    pub link: String,
    pub display_name: String,
    pub video: VideoSettings,
    pub camera: VideoInput,
    pub mic: AudioInput,
    pub speaker: AudioOutput,
    /// Start with the microphone muted / the camera off.
    pub mic_muted: bool,
    pub camera_off: bool,
    /// RSA modulus size of the session identity (2048 or 3072).
    pub rsa_bits: usize,
    /// Write what is received per peer (Y4M video, WAV audio) into this folder.
    pub record_dir: Option<PathBuf>,
    /// Publish pictures for display (the self view and decoded video; the bot leaves it off).
    pub want_pictures: bool,
    /// Decode the video we receive. Off only for load generators (`vcall-bot
    /// --no-video-decode`): frames are still reassembled, repaired and counted as received,
    /// but never decoded, so a bot that only sends costs its encoder alone.
    pub decode_video: bool,
    /// Join this relay room id instead of the one derived from the link. Only for testing
    /// what an insider who learned a room id (but not its secret) can do: nothing.
    pub room_id_override: Option<Vec<u8>>,
}

impl CallConfig {
    /// A config with the product defaults: 720p30 at 1.5 Mbit/s, test sources, RSA-2048.
    pub fn new(link: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self {
            link: link.into(),
            display_name: display_name.into(),
            video: VideoSettings::default(),
            camera: VideoInput::TestPattern,
            mic: AudioInput::Tone,
            speaker: AudioOutput::Discard,
            mic_muted: false,
            camera_off: false,
            rsa_bits: 2048,
            record_dir: None,
            want_pictures: false,
            decode_video: true,
            room_id_override: None,
        }
    }
}
