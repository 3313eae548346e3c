//! Where media comes from and goes to, as traits the engine drives once per frame, with the
//! built-in implementations used by `vcall-bot` and tests: the test pattern, Y4M and WAV files,
//! a tone, silence, and sinks that discard or collect audio. Cameras and sound cards (nokhwa,
//! cpal) implement the same traits in the app.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::tone::Tone;
use super::wav::WavReader;
use super::y4m::{Y4mHeader, Y4mReader};
use super::{AUDIO_SAMPLE_RATE, I420Frame, MediaError, test_pattern};

/// Produces video frames.
pub trait VideoSource: Send {
    /// Writes frame `frame_number` into `out` (reshaping it if needed, reusing its buffer).
    /// `Ok(false)` when the source has ended.
    fn next_frame(&mut self, frame_number: u64, out: &mut I420Frame) -> Result<bool, MediaError>;
}

/// Produces mono 48 kHz audio.
pub trait AudioSource: Send {
    /// Fills `out` completely. `Ok(false)` when the source has ended (then `out` is silence).
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError>;
}

/// Consumes mono 48 kHz audio (a speaker, a file, a test probe).
pub trait AudioSink: Send {
    /// Plays one frame.
    fn play(&mut self, frame: &[f32]);
}

/// The deterministic test pattern at a fixed size; never ends.
#[derive(Debug, Clone, Copy)]
pub struct TestPatternSource {
    width: usize,
    height: usize,
}

impl TestPatternSource {
    /// A pattern source of `width`x`height` (even, non-zero).
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        super::frame::validate_dimensions(width, height)?;
        Ok(Self { width, height })
    }
}

impl VideoSource for TestPatternSource {
    fn next_frame(&mut self, frame_number: u64, out: &mut I420Frame) -> Result<bool, MediaError> {
        out.reshape(self.width, self.height)?;
        // The pattern carries 24 bits; truncating keeps it consistent with what receivers read.
        test_pattern::render(frame_number as u32, out);
        Ok(true)
    }
}

/// The test pattern under fresh luma noise every frame: a busy scene (a camera's grain, a
/// moving crowd) that takes every bit the encoder is given, for tests of rate control. The
/// noise is seeded by the frame number, so a run is repeatable; frames are not the clean
/// pattern, so receivers cannot compute PSNR against it.
#[derive(Debug, Clone, Copy)]
pub struct BusyPatternSource {
    pattern: TestPatternSource,
}

impl BusyPatternSource {
    /// A busy pattern source of `width`x`height` (even, non-zero).
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        Ok(Self {
            pattern: TestPatternSource::new(width, height)?,
        })
    }
}

impl VideoSource for BusyPatternSource {
    fn next_frame(&mut self, frame_number: u64, out: &mut I420Frame) -> Result<bool, MediaError> {
        self.pattern.next_frame(frame_number, out)?;
        // xorshift32, never seeded with 0.
        let mut state = (frame_number as u32).wrapping_mul(0x9E37_79B9) | 1;
        let (y, _, _) = out.planes_mut();
        for pixel in y.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *pixel = pixel.saturating_add((state & 0x0F) as u8);
        }
        Ok(true)
    }
}

/// Frames of a Y4M file, played once or looped.
pub struct Y4mFileSource {
    reader: Y4mReader<BufReader<File>>,
    looping: bool,
}

impl Y4mFileSource {
    /// Opens a Y4M file (4:2:0, even size).
    pub fn open(path: &Path, looping: bool) -> Result<Self, MediaError> {
        let reader = Y4mReader::new(BufReader::new(File::open(path)?))?;
        Ok(Self { reader, looping })
    }

    /// The file's size and frame rate.
    pub fn header(&self) -> Y4mHeader {
        self.reader.header()
    }
}

impl VideoSource for Y4mFileSource {
    fn next_frame(&mut self, _frame_number: u64, out: &mut I420Frame) -> Result<bool, MediaError> {
        if self.reader.read_frame(out)? {
            return Ok(true);
        }
        if !self.looping {
            return Ok(false);
        }
        self.reader.rewind()?;
        // A file without frames ends instead of looping forever.
        self.reader.read_frame(out)
    }
}

/// A sine tone; never ends.
#[derive(Debug, Clone)]
pub struct ToneSource {
    tone: Tone,
}

impl ToneSource {
    /// Wraps a tone generator.
    pub fn new(tone: Tone) -> Self {
        Self { tone }
    }

    /// The tone for a participant name (see [`Tone::for_name`]).
    pub fn for_name(name: &str) -> Self {
        Self::new(Tone::for_name(name))
    }

    /// The tone's frequency (Hz).
    pub fn frequency_hz(&self) -> f64 {
        self.tone.frequency_hz()
    }
}

impl AudioSource for ToneSource {
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError> {
        self.tone.fill(out);
        Ok(true)
    }
}

/// Samples of a mono 48 kHz WAV file, played once or looped. The last partial frame is padded
/// with silence.
pub struct WavFileSource {
    reader: WavReader<BufReader<File>>,
    looping: bool,
    ended: bool,
}

impl WavFileSource {
    /// Opens a mono 48 kHz WAV file (16-bit PCM or 32-bit float).
    pub fn open(path: &Path, looping: bool) -> Result<Self, MediaError> {
        let reader = WavReader::new(BufReader::new(File::open(path)?))?;
        let spec = reader.spec();
        if spec.sample_rate != AUDIO_SAMPLE_RATE {
            return Err(MediaError::InvalidWav(format!(
                "sample rate {} Hz; {AUDIO_SAMPLE_RATE} Hz expected",
                spec.sample_rate
            )));
        }
        Ok(Self {
            reader,
            looping,
            ended: false,
        })
    }
}

impl AudioSource for WavFileSource {
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError> {
        if self.ended {
            out.fill(0.0);
            return Ok(false);
        }
        let mut filled = self.reader.read_samples(out)?;
        if filled < out.len() && self.looping {
            self.reader.rewind()?;
            while filled < out.len() {
                let read = self.reader.read_samples(&mut out[filled..])?;
                if read == 0 {
                    break; // an empty file: nothing to loop
                }
                filled += read;
                if filled < out.len() {
                    self.reader.rewind()?;
                }
            }
        }
        out[filled..].fill(0.0);
        if filled == 0 {
            self.ended = true;
            return Ok(false);
        }
        if filled < out.len() {
            self.ended = true; // padded last frame: played, and the next call reports the end
        }
        Ok(true)
    }
}

/// Silence; never ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceSource;

impl AudioSource for SilenceSource {
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError> {
        out.fill(0.0);
        Ok(true)
    }
}

/// Discards audio (no speaker).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl AudioSink for NullSink {
    fn play(&mut self, _frame: &[f32]) {}
}

/// Keeps the most recent `capacity` samples played, for analysis (e.g. the peak frequency).
#[derive(Debug, Clone)]
pub struct CollectingSink {
    samples: Vec<f32>,
    capacity: usize,
}

impl CollectingSink {
    /// A sink that keeps at most `capacity` samples (the newest ones).
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// The kept samples, oldest first.
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }
}

impl AudioSink for CollectingSink {
    fn play(&mut self, frame: &[f32]) {
        let frame = &frame[frame.len().saturating_sub(self.capacity)..];
        let overflow = (self.samples.len() + frame.len()).saturating_sub(self.capacity);
        self.samples.drain(..overflow);
        self.samples.extend_from_slice(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::{WavSampleFormat, WavWriter};
    use crate::y4m::Y4mWriter;
    use std::path::PathBuf;

    /// A file path unique to this test process and test name, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            Self(std::env::temp_dir().join(format!("vcall-media-{}-{name}", std::process::id())))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn test_pattern_source_numbers_its_frames() {
        let mut source = TestPatternSource::new(320, 180).unwrap();
        let mut frame = I420Frame::new(2, 2).unwrap();
        assert!(source.next_frame(77, &mut frame).unwrap());
        assert_eq!((frame.width(), frame.height()), (320, 180));
        assert_eq!(test_pattern::read_frame_number(&frame), Some(77));
        assert!(TestPatternSource::new(0, 180).is_err());
        assert!(BusyPatternSource::new(0, 180).is_err());
    }

    #[test]
    fn busy_pattern_source_is_the_pattern_under_repeatable_noise() {
        let mut busy = BusyPatternSource::new(320, 180).unwrap();
        let mut clean = TestPatternSource::new(320, 180).unwrap();
        let (mut a, mut b, mut c) = (
            I420Frame::new(2, 2).unwrap(),
            I420Frame::new(2, 2).unwrap(),
            I420Frame::new(2, 2).unwrap(),
        );
        busy.next_frame(5, &mut a).unwrap();
        busy.next_frame(5, &mut b).unwrap();
        clean.next_frame(5, &mut c).unwrap();
        assert_eq!(a.y(), b.y(), "the same frame number, the same noise");
        let differing = a.y().iter().zip(c.y()).filter(|(x, y)| x != y).count();
        assert!(differing > a.y().len() / 2, "{differing} pixels differ");
        busy.next_frame(6, &mut b).unwrap();
        clean.next_frame(6, &mut c).unwrap();
        let noise = |f: &I420Frame, p: &I420Frame| -> Vec<i16> {
            f.y()
                .iter()
                .zip(p.y())
                .map(|(x, y)| *x as i16 - *y as i16)
                .collect()
        };
        let mut clean5 = I420Frame::new(2, 2).unwrap();
        TestPatternSource::new(320, 180)
            .unwrap()
            .next_frame(5, &mut clean5)
            .unwrap();
        assert_ne!(noise(&a, &clean5), noise(&b, &c), "fresh noise every frame");
    }

    #[test]
    fn y4m_file_source_ends_or_loops() {
        let file = TempFile::new("loop.y4m");
        let header = Y4mHeader {
            width: 320,
            height: 180,
            frame_rate: (30, 1),
        };
        let mut writer = Y4mWriter::new(File::create(&file.0).unwrap(), header).unwrap();
        let mut frame = I420Frame::new(320, 180).unwrap();
        for number in 0..2 {
            test_pattern::render(number, &mut frame);
            writer.write_frame(&frame).unwrap();
        }
        writer.into_inner().unwrap();

        let mut once = Y4mFileSource::open(&file.0, false).unwrap();
        assert_eq!(once.header(), header);
        let read: Vec<bool> = (0..3)
            .map(|n| once.next_frame(n, &mut frame).unwrap())
            .collect();
        assert_eq!(read, [true, true, false]);

        let mut looped = Y4mFileSource::open(&file.0, true).unwrap();
        let mut numbers = Vec::new();
        for n in 0..5 {
            assert!(looped.next_frame(n, &mut frame).unwrap());
            numbers.push(test_pattern::read_frame_number(&frame).unwrap());
        }
        assert_eq!(numbers, [0, 1, 0, 1, 0]);
        assert!(Y4mFileSource::open(Path::new("/nonexistent/x.y4m"), false).is_err());
    }

    #[test]
    fn wav_file_source_pads_the_end_or_loops() {
        let file = TempFile::new("loop.wav");
        let mut writer =
            WavWriter::new(File::create(&file.0).unwrap(), WavSampleFormat::Float32).unwrap();
        writer.write_samples(&[0.1, 0.2, 0.3, 0.4, 0.5]).unwrap();
        writer.finish().unwrap();

        let mut once = WavFileSource::open(&file.0, false).unwrap();
        let mut out = [9.0; 3];
        assert!(once.fill(&mut out).unwrap());
        assert_eq!(out, [0.1, 0.2, 0.3]);
        assert!(once.fill(&mut out).unwrap());
        assert_eq!(out, [0.4, 0.5, 0.0]);
        assert!(!once.fill(&mut out).unwrap());
        assert_eq!(out, [0.0; 3]);

        let mut looped = WavFileSource::open(&file.0, true).unwrap();
        let mut long = [0.0; 12];
        assert!(looped.fill(&mut long).unwrap());
        assert_eq!(
            long,
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2]
        );
    }

    #[test]
    fn wav_file_source_rejects_other_rates() {
        let file = TempFile::new("rate.wav");
        let mut bytes = Vec::new();
        {
            let mut writer =
                WavWriter::new(std::io::Cursor::new(&mut bytes), WavSampleFormat::Int16).unwrap();
            writer.write_samples(&[0.0; 4]).unwrap();
            writer.finish().unwrap();
        }
        bytes[24..28].copy_from_slice(&44_100u32.to_le_bytes());
        std::fs::write(&file.0, &bytes).unwrap();
        assert!(matches!(
            WavFileSource::open(&file.0, false),
            Err(MediaError::InvalidWav(_))
        ));
    }

    #[test]
    fn tone_silence_and_sinks() {
        let mut tone = ToneSource::for_name("Alice");
        let mut frame = [0.0; 960];
        assert!(tone.fill(&mut frame).unwrap());
        assert!(frame.iter().any(|&s| s.abs() > 0.1));
        let mut silence = SilenceSource;
        assert!(silence.fill(&mut frame).unwrap());
        assert!(frame.iter().all(|&s| s == 0.0));

        let mut sink = CollectingSink::new(5);
        sink.play(&[1.0, 2.0, 3.0]);
        sink.play(&[4.0, 5.0, 6.0]);
        assert_eq!(sink.samples(), &[2.0, 3.0, 4.0, 5.0, 6.0]);
        sink.play(&[7.0; 9]);
        assert_eq!(sink.samples(), &[7.0; 5]);
        NullSink.play(&frame);

        let sources: Vec<Box<dyn AudioSource>> = vec![Box::new(tone), Box::new(silence)];
        assert_eq!(sources.len(), 2);
    }
}
