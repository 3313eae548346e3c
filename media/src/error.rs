//! The typed error shared by the media modules.

use std::io;

/// Errors from media conversion, codecs and media files. None of them is a panic: bad input
/// (files, packets, buffers) always ends up here.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A frame size that I420 cannot represent (zero, odd, or absurdly large).
    #[error(
        "invalid frame size {width}x{height}: width and height must be even, non-zero and at most 8192"
    )]
    InvalidDimensions { width: usize, height: usize },
    /// A raw buffer whose length does not match its declared format and size.
    #[error("buffer holds {actual} bytes, {expected} expected")]
    BufferSize { expected: usize, actual: usize },
    /// A frame whose size differs from what the encoder or file was set up for.
    #[error("frame is {actual_width}x{actual_height}, expected {expected_width}x{expected_height}")]
    FrameSizeMismatch {
        expected_width: usize,
        expected_height: usize,
        actual_width: usize,
        actual_height: usize,
    },
    /// An audio buffer of the wrong length for one codec frame.
    #[error("audio frame has {actual} samples, {expected} expected")]
    AudioFrameSize { expected: usize, actual: usize },
    /// Reading or writing a media file failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A Y4M stream that is malformed or uses an unsupported format.
    #[error("invalid or unsupported Y4M stream: {0}")]
    InvalidY4m(String),
    /// A WAV file that is malformed or uses an unsupported format.
    #[error("invalid or unsupported WAV file: {0}")]
    InvalidWav(String),
    /// The H.264 encoder could not be created or failed to encode.
    #[error("H.264 encoder error: {0}")]
    VideoEncoder(String),
    /// The H.264 decoder cannot continue until it receives a keyframe (missing reference
    /// frame, missing parameter sets, or a stream that did not start with a keyframe).
    #[error("the H.264 decoder needs a keyframe")]
    NeedsKeyframe,
    /// The H.264 bitstream could not be decoded (openh264 decoding-state bits).
    #[error("corrupt H.264 bitstream (decoder state {decoding_state:#x})")]
    CorruptVideo { decoding_state: i64 },
    /// The H.264 decoder could not be created.
    #[error("H.264 decoder error: {0}")]
    VideoDecoder(String),
    /// libopus reported an error (bad packet, bad argument, ...).
    #[error("Opus error: {0}")]
    Opus(String),
}

impl MediaError {
    /// True when the receiver should ask the sender for a keyframe: the decoder lost its
    /// reference or its stream is corrupt, and only an IDR frame lets it resume.
    pub fn needs_keyframe(&self) -> bool {
        matches!(self, Self::NeedsKeyframe | Self::CorruptVideo { .. })
    }
}

impl From<opus::Error> for MediaError {
    fn from(error: opus::Error) -> Self {
        Self::Opus(error.to_string())
    }
}
