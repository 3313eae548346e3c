//! WAV files of mono 48 kHz audio: a writer (16-bit PCM or 32-bit float) and a reader of mono
//! 16-bit PCM or 32-bit float files (plain or WAVE_FORMAT_EXTENSIBLE), samples as f32.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{AUDIO_SAMPLE_RATE, MediaError};

const FORMAT_PCM: u16 = 1;
const FORMAT_IEEE_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// How samples are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSampleFormat {
    /// Signed 16-bit PCM.
    Int16,
    /// IEEE 32-bit float.
    Float32,
}

impl WavSampleFormat {
    fn bytes_per_sample(self) -> usize {
        match self {
            Self::Int16 => 2,
            Self::Float32 => 4,
        }
    }
}

/// Writes mono 48 kHz samples; [`finish`](WavWriter::finish) fills in the sizes.
pub struct WavWriter<W: Write + Seek> {
    writer: W,
    format: WavSampleFormat,
    data_bytes: u64,
    bytes: Vec<u8>,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes the header (with sizes to be patched by `finish`).
    pub fn new(mut writer: W, format: WavSampleFormat) -> Result<Self, MediaError> {
        let (tag, bits) = match format {
            WavSampleFormat::Int16 => (FORMAT_PCM, 16u16),
            WavSampleFormat::Float32 => (FORMAT_IEEE_FLOAT, 32u16),
        };
        let block_align = bits / 8;
        let mut header = Vec::with_capacity(44);
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&36u32.to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&16u32.to_le_bytes());
        header.extend_from_slice(&tag.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&AUDIO_SAMPLE_RATE.to_le_bytes());
        header.extend_from_slice(&(AUDIO_SAMPLE_RATE * u32::from(block_align)).to_le_bytes());
        header.extend_from_slice(&block_align.to_le_bytes());
        header.extend_from_slice(&bits.to_le_bytes());
        header.extend_from_slice(b"data");
        header.extend_from_slice(&0u32.to_le_bytes());
        writer.write_all(&header)?;
        Ok(Self {
            writer,
            format,
            data_bytes: 0,
            bytes: Vec::new(),
        })
    }

    /// Appends samples (clamped to -1.0..=1.0 for 16-bit files).
    pub fn write_samples(&mut self, samples: &[f32]) -> Result<(), MediaError> {
        let added = (samples.len() * self.format.bytes_per_sample()) as u64;
        if self.data_bytes + added > u64::from(u32::MAX) - 36 {
            return Err(MediaError::InvalidWav("file would exceed 4 GiB".into()));
        }
        self.bytes.clear();
        match self.format {
            WavSampleFormat::Int16 => {
                for &sample in samples {
                    let value = (sample.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                    self.bytes.extend_from_slice(&value.to_le_bytes());
                }
            }
            WavSampleFormat::Float32 => {
                for &sample in samples {
                    self.bytes.extend_from_slice(&sample.to_le_bytes());
                }
            }
        }
        self.writer.write_all(&self.bytes)?;
        self.data_bytes += added;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.data_bytes / self.format.bytes_per_sample() as u64
    }

    /// Patches the RIFF and data sizes and flushes, so that the file is complete as it stands;
    /// writing may go on afterwards.
    pub fn sync(&mut self) -> Result<(), MediaError> {
        let data_bytes = self.data_bytes as u32;
        self.writer.seek(SeekFrom::Start(4))?;
        self.writer.write_all(&(36 + data_bytes).to_le_bytes())?;
        self.writer.seek(SeekFrom::Start(40))?;
        self.writer.write_all(&data_bytes.to_le_bytes())?;
        self.writer.seek(SeekFrom::End(0))?;
        self.writer.flush()?;
        Ok(())
    }

    /// Patches the RIFF and data sizes, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, MediaError> {
        self.sync()?;
        Ok(self.writer)
    }
}

/// Format of a WAV file being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavSpec {
    pub sample_rate: u32,
    pub format: WavSampleFormat,
    /// Samples in the data chunk.
    pub samples: u64,
}

/// Reads samples of a mono 16-bit PCM or 32-bit float WAV file as f32.
pub struct WavReader<R: Read> {
    reader: R,
    spec: WavSpec,
    data_start: u64,
    remaining_bytes: u64,
    bytes: Vec<u8>,
}

impl<R: Read> WavReader<R> {
    /// Parses the header up to the start of the samples.
    pub fn new(mut reader: R) -> Result<Self, MediaError> {
        let mut riff = [0u8; 12];
        read_header_bytes(&mut reader, &mut riff)?;
        if &riff[..4] != b"RIFF" || &riff[8..] != b"WAVE" {
            return Err(MediaError::InvalidWav("not a RIFF/WAVE file".into()));
        }
        let mut position = 12u64;
        let mut format = None;
        loop {
            let mut chunk_header = [0u8; 8];
            read_header_bytes(&mut reader, &mut chunk_header)?;
            position += 8;
            let size = u64::from(u32::from_le_bytes([
                chunk_header[4],
                chunk_header[5],
                chunk_header[6],
                chunk_header[7],
            ]));
            match &chunk_header[..4] {
                b"fmt " => {
                    if !(16..=1024).contains(&size) {
                        return Err(MediaError::InvalidWav(format!("fmt chunk of {size} bytes")));
                    }
                    let mut body = vec![0u8; size as usize];
                    read_header_bytes(&mut reader, &mut body)?;
                    format = Some(parse_format(&body)?);
                    position += size;
                    if size % 2 == 1 {
                        skip(&mut reader, 1)?;
                        position += 1;
                    }
                }
                b"data" => {
                    let (sample_rate, format) = format.ok_or_else(|| {
                        MediaError::InvalidWav("data chunk before fmt chunk".into())
                    })?;
                    let bytes_per_sample = format.bytes_per_sample() as u64;
                    return Ok(Self {
                        reader,
                        spec: WavSpec {
                            sample_rate,
                            format,
                            samples: size / bytes_per_sample,
                        },
                        data_start: position,
                        remaining_bytes: size - size % bytes_per_sample,
                        bytes: Vec::new(),
                    });
                }
                _ => {
                    let padded = size + size % 2;
                    skip(&mut reader, padded)?;
                    position += padded;
                }
            }
        }
    }

    /// The file's format.
    pub fn spec(&self) -> WavSpec {
        self.spec
    }

    /// Reads up to `out.len()` samples; returns how many (0 at the end). A file cut short is
    /// read up to where it ends.
    pub fn read_samples(&mut self, out: &mut [f32]) -> Result<usize, MediaError> {
        let bytes_per_sample = self.spec.format.bytes_per_sample();
        let wanted =
            (out.len() as u64 * bytes_per_sample as u64).min(self.remaining_bytes) as usize;
        self.bytes.resize(wanted, 0);
        let mut filled = 0;
        while filled < wanted {
            match self.reader.read(&mut self.bytes[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        if filled < wanted {
            self.remaining_bytes = 0; // truncated file: stop here
        } else {
            self.remaining_bytes -= filled as u64;
        }
        let samples = filled / bytes_per_sample;
        let chunks = self.bytes[..samples * bytes_per_sample].chunks_exact(bytes_per_sample);
        for (sample, bytes) in out.iter_mut().zip(chunks) {
            *sample = match self.spec.format {
                WavSampleFormat::Int16 => {
                    f32::from(i16::from_le_bytes([bytes[0], bytes[1]])) / 32768.0
                }
                WavSampleFormat::Float32 => {
                    let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    if value.is_finite() { value } else { 0.0 }
                }
            };
        }
        Ok(samples)
    }
}

impl<R: Read + Seek> WavReader<R> {
    /// Goes back to the first sample (for looping playback).
    pub fn rewind(&mut self) -> Result<(), MediaError> {
        self.reader.seek(SeekFrom::Start(self.data_start))?;
        let bytes_per_sample = self.spec.format.bytes_per_sample() as u64;
        self.remaining_bytes = self.spec.samples * bytes_per_sample;
        Ok(())
    }
}

fn read_header_bytes(reader: &mut impl Read, buffer: &mut [u8]) -> Result<(), MediaError> {
    reader.read_exact(buffer).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            MediaError::InvalidWav("file ends inside its header".into())
        } else {
            MediaError::Io(error)
        }
    })
}

fn skip(reader: &mut impl Read, bytes: u64) -> Result<(), MediaError> {
    let skipped = io::copy(&mut reader.take(bytes), &mut io::sink())?;
    if skipped < bytes {
        return Err(MediaError::InvalidWav("file ends inside a chunk".into()));
    }
    Ok(())
}

/// Parses a fmt chunk body into (sample rate, sample format); mono only.
fn parse_format(body: &[u8]) -> Result<(u32, WavSampleFormat), MediaError> {
    let u16_at = |offset: usize| u16::from_le_bytes([body[offset], body[offset + 1]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let bits = u16_at(14);
    if tag == FORMAT_EXTENSIBLE {
        if body.len() < 26 {
            return Err(MediaError::InvalidWav(
                "short WAVE_FORMAT_EXTENSIBLE".into(),
            ));
        }
        tag = u16_at(24); // the sub-format GUID starts with the plain format tag
    }
    if channels != 1 {
        return Err(MediaError::InvalidWav(format!(
            "{channels} channels; only mono is supported"
        )));
    }
    if sample_rate == 0 {
        return Err(MediaError::InvalidWav("sample rate 0".into()));
    }
    match (tag, bits) {
        (FORMAT_PCM, 16) => Ok((sample_rate, WavSampleFormat::Int16)),
        (FORMAT_IEEE_FLOAT, 32) => Ok((sample_rate, WavSampleFormat::Float32)),
        _ => Err(MediaError::InvalidWav(format!(
            "format {tag} with {bits} bits; only 16-bit PCM and 32-bit float are supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn written(format: WavSampleFormat, samples: &[f32]) -> Vec<u8> {
        let mut writer = WavWriter::new(Cursor::new(Vec::new()), format).unwrap();
        writer.write_samples(samples).unwrap();
        assert_eq!(writer.samples_written(), samples.len() as u64);
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_synced_file_is_complete_and_writing_goes_on_after_it() {
        let mut writer = WavWriter::new(Cursor::new(Vec::new()), WavSampleFormat::Float32).unwrap();
        writer.write_samples(&[0.5, -0.5]).unwrap();
        writer.sync().unwrap();
        let snapshot = writer.writer.get_ref().clone();
        let reader = WavReader::new(Cursor::new(snapshot)).unwrap();
        assert_eq!(reader.spec().samples, 2);
        writer.write_samples(&[0.25]).unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let mut reader = WavReader::new(Cursor::new(bytes)).unwrap();
        let mut out = [0.0; 4];
        assert_eq!(reader.read_samples(&mut out).unwrap(), 3);
        assert_eq!(&out[..3], &[0.5, -0.5, 0.25]);
    }

    #[test]
    fn float_and_int16_round_trip() {
        let samples = [0.0, 0.5, -0.5, 1.0, -1.0, 0.25];
        for (format, tolerance) in [
            (WavSampleFormat::Float32, 0.0),
            (WavSampleFormat::Int16, 1e-4),
        ] {
            let bytes = written(format, &samples);
            let mut reader = WavReader::new(Cursor::new(bytes)).unwrap();
            assert_eq!(
                reader.spec(),
                WavSpec {
                    sample_rate: 48_000,
                    format,
                    samples: 6
                }
            );
            let mut out = [9.0; 4];
            assert_eq!(reader.read_samples(&mut out).unwrap(), 4);
            assert_eq!(reader.read_samples(&mut out[..3]).unwrap(), 2);
            assert_eq!(reader.read_samples(&mut out).unwrap(), 0);
            reader.rewind().unwrap();
            let mut all = [0.0; 8];
            assert_eq!(reader.read_samples(&mut all).unwrap(), 6);
            for (a, b) in all.iter().zip(&samples) {
                assert!((a - b).abs() <= tolerance, "{format:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn header_sizes_are_patched() {
        let bytes = written(WavSampleFormat::Int16, &[0.1; 10]);
        assert_eq!(bytes.len(), 44 + 20);
        assert_eq!(&bytes[4..8], &(36u32 + 20).to_le_bytes());
        assert_eq!(&bytes[40..44], &20u32.to_le_bytes());
    }

    #[test]
    fn skips_unknown_chunks_and_reads_truncated_data() {
        let mut bytes = written(WavSampleFormat::Int16, &[0.5; 4]);
        // Insert an odd-sized LIST chunk (with its pad byte) before "data".
        let list = b"LIST\x03\x00\x00\x00abc\x00";
        bytes.splice(36..36, list.iter().copied());
        bytes.truncate(bytes.len() - 3); // cut inside the third sample
        let mut reader = WavReader::new(Cursor::new(bytes)).unwrap();
        let mut out = [0.0; 4];
        assert_eq!(reader.read_samples(&mut out).unwrap(), 2);
        assert!((out[0] - 0.5).abs() < 1e-3);
        assert_eq!(reader.read_samples(&mut out).unwrap(), 0);
    }

    #[test]
    fn unsupported_and_broken_files_are_typed_errors() {
        let stereo = {
            let mut bytes = written(WavSampleFormat::Int16, &[0.0; 2]);
            bytes[22] = 2;
            bytes
        };
        let eight_bit = {
            let mut bytes = written(WavSampleFormat::Int16, &[0.0; 2]);
            bytes[34] = 8;
            bytes
        };
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"RIFF\x00\x00\x00\x00AVI ".to_vec(),
            written(WavSampleFormat::Int16, &[0.0; 2])[..30].to_vec(),
            b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00".to_vec(),
            stereo,
            eight_bit,
        ];
        for case in cases {
            assert!(
                matches!(
                    WavReader::new(Cursor::new(&case)),
                    Err(MediaError::InvalidWav(_))
                ),
                "{case:?}"
            );
        }
    }
}
