//! YUV4MPEG2 (Y4M) files of I420 frames: a writer (header `C420jpeg`) and a reader that accepts
//! the 4:2:0 colour spaces (`C420jpeg`, `C420`, `C420paldv`, `C420mpeg2`, or none, which means
//! 4:2:0) and rejects anything else with a typed error.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};

use super::frame::validate_dimensions;
use super::{I420Frame, MediaError};

const SIGNATURE: &str = "YUV4MPEG2";
/// Longest header or frame-header line accepted, so garbage cannot make us read forever.
const MAX_LINE: u64 = 4096;

/// Stream parameters from a Y4M header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Y4mHeader {
    pub width: usize,
    pub height: usize,
    /// Frames per second as numerator/denominator (30:1 if the header has none).
    pub frame_rate: (u32, u32),
}

/// Writes I420 frames to a Y4M stream.
pub struct Y4mWriter<W: Write> {
    writer: W,
    header: Y4mHeader,
}

impl<W: Write> Y4mWriter<W> {
    /// Writes the stream header.
    pub fn new(mut writer: W, header: Y4mHeader) -> Result<Self, MediaError> {
        validate_dimensions(header.width, header.height)?;
        let (numerator, denominator) = header.frame_rate;
        if numerator == 0 || denominator == 0 {
            return Err(MediaError::InvalidY4m(format!(
                "frame rate {numerator}:{denominator}"
            )));
        }
        writeln!(
            writer,
            "{SIGNATURE} W{} H{} F{numerator}:{denominator} Ip A1:1 C420jpeg",
            header.width, header.height
        )?;
        Ok(Self { writer, header })
    }

    /// Appends one frame, which must have the header's size.
    pub fn write_frame(&mut self, frame: &I420Frame) -> Result<(), MediaError> {
        if frame.width() != self.header.width || frame.height() != self.header.height {
            return Err(MediaError::FrameSizeMismatch {
                expected_width: self.header.width,
                expected_height: self.header.height,
                actual_width: frame.width(),
                actual_height: frame.height(),
            });
        }
        self.writer.write_all(b"FRAME\n")?;
        self.writer.write_all(frame.data())?;
        Ok(())
    }

    /// Writes out what is buffered, so that the file is complete as it stands.
    pub fn flush(&mut self) -> Result<(), MediaError> {
        self.writer.flush()?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, MediaError> {
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// Reads I420 frames from a Y4M stream.
pub struct Y4mReader<R: BufRead> {
    reader: R,
    header: Y4mHeader,
    header_len: u64,
    line: Vec<u8>,
}

impl<R: BufRead> Y4mReader<R> {
    /// Reads and checks the stream header.
    pub fn new(mut reader: R) -> Result<Self, MediaError> {
        let mut line = Vec::new();
        let header_len = read_line(&mut reader, &mut line)?
            .ok_or_else(|| MediaError::InvalidY4m("empty file".into()))?;
        let header = parse_header(&line)?;
        Ok(Self {
            reader,
            header,
            header_len,
            line,
        })
    }

    /// The stream's parameters.
    pub fn header(&self) -> Y4mHeader {
        self.header
    }

    /// Reads the next frame into `out` (reshaped to the stream's size, allocation reused).
    /// `Ok(false)` at the end of the stream.
    pub fn read_frame(&mut self, out: &mut I420Frame) -> Result<bool, MediaError> {
        if read_line(&mut self.reader, &mut self.line)?.is_none() {
            return Ok(false);
        }
        if !self.line.starts_with(b"FRAME") {
            return Err(MediaError::InvalidY4m("missing FRAME marker".into()));
        }
        out.reshape(self.header.width, self.header.height)?;
        self.reader.read_exact(out.data_mut()).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                MediaError::InvalidY4m("truncated frame".into())
            } else {
                MediaError::Io(error)
            }
        })?;
        Ok(true)
    }
}

impl<R: BufRead + Seek> Y4mReader<R> {
    /// Goes back to the first frame (for looping playback).
    pub fn rewind(&mut self) -> Result<(), MediaError> {
        self.reader.seek(SeekFrom::Start(self.header_len))?;
        Ok(())
    }
}

/// Reads one '\n'-terminated line (without the '\n') into `line`; `None` at a clean end of
/// stream; the number of bytes consumed otherwise.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<Option<u64>, MediaError> {
    line.clear();
    let consumed = reader.by_ref().take(MAX_LINE).read_until(b'\n', line)?;
    if consumed == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(MediaError::InvalidY4m(
            "line too long or missing its end".into(),
        ));
    }
    Ok(Some(consumed as u64))
}

fn parse_header(line: &[u8]) -> Result<Y4mHeader, MediaError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| MediaError::InvalidY4m("header is not text".into()))?;
    let mut tokens = text.split(' ').filter(|token| !token.is_empty());
    if tokens.next() != Some(SIGNATURE) {
        return Err(MediaError::InvalidY4m("not a YUV4MPEG2 stream".into()));
    }
    let (mut width, mut height, mut frame_rate) = (None, None, (30, 1));
    let parse_number = |value: &str, what: &str| {
        value
            .parse::<usize>()
            .map_err(|_| MediaError::InvalidY4m(format!("bad {what} {value:?}")))
    };
    for token in tokens {
        let Some((tag, value)) = token.split_at_checked(1) else {
            continue; // a first character wider than one byte: not a known tag
        };
        match tag {
            "W" => width = Some(parse_number(value, "width")?),
            "H" => height = Some(parse_number(value, "height")?),
            "F" => {
                let (numerator, denominator) = value
                    .split_once(':')
                    .and_then(|(n, d)| Some((n.parse::<u32>().ok()?, d.parse::<u32>().ok()?)))
                    .filter(|&(n, d)| n > 0 && d > 0)
                    .ok_or_else(|| MediaError::InvalidY4m(format!("bad frame rate {value:?}")))?;
                frame_rate = (numerator, denominator);
            }
            "C" if !matches!(value, "420jpeg" | "420" | "420paldv" | "420mpeg2") => {
                return Err(MediaError::InvalidY4m(format!(
                    "colour space C{value} is not 4:2:0"
                )));
            }
            _ => {} // interlacing, aspect ratio, extensions: irrelevant here
        }
    }
    let (Some(width), Some(height)) = (width, height) else {
        return Err(MediaError::InvalidY4m("header lacks W or H".into()));
    };
    validate_dimensions(width, height)?;
    Ok(Y4mHeader {
        width,
        height,
        frame_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pattern;
    use std::io::Cursor;

    fn header(width: usize, height: usize) -> Y4mHeader {
        Y4mHeader {
            width,
            height,
            frame_rate: (30, 1),
        }
    }

    #[test]
    fn frames_round_trip_and_rewind() {
        let mut writer = Y4mWriter::new(Vec::new(), header(320, 180)).unwrap();
        let mut frame = I420Frame::new(320, 180).unwrap();
        for number in 0..3 {
            test_pattern::render(number, &mut frame);
            writer.write_frame(&frame).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        assert!(bytes.starts_with(b"YUV4MPEG2 W320 H180 F30:1 Ip A1:1 C420jpeg\nFRAME\n"));

        let mut reader = Y4mReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(reader.header(), header(320, 180));
        let mut read = I420Frame::new(2, 2).unwrap();
        for number in 0..3 {
            assert!(reader.read_frame(&mut read).unwrap());
            assert_eq!(test_pattern::read_frame_number(&read), Some(number));
        }
        assert!(!reader.read_frame(&mut read).unwrap());
        reader.rewind().unwrap();
        assert!(reader.read_frame(&mut read).unwrap());
        assert_eq!(test_pattern::read_frame_number(&read), Some(0));
    }

    #[test]
    fn reads_plain_c420_with_frame_parameters() {
        let mut bytes = b"YUV4MPEG2 W4 H2 F25:1 C420 XYSCSS=420\nFRAME Ixyz\n".to_vec();
        bytes.extend((0..12).collect::<Vec<u8>>());
        let mut reader = Y4mReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(reader.header().frame_rate, (25, 1));
        let mut frame = I420Frame::new(2, 2).unwrap();
        assert!(reader.read_frame(&mut frame).unwrap());
        assert_eq!(frame.u(), &[8, 9]);
    }

    #[test]
    fn bad_streams_are_typed_errors() {
        let cases: [&[u8]; 7] = [
            b"",
            b"RIFF....\n",
            b"YUV4MPEG2 W320 H180 C444\n",
            b"YUV4MPEG2 W321 H180\n",
            b"YUV4MPEG2 H180\n",
            b"YUV4MPEG2 W32x H180\n",
            b"YUV4MPEG2 W320 H180 F30:0\n",
        ];
        for case in cases {
            assert!(Y4mReader::new(Cursor::new(case)).is_err(), "{case:?}");
        }
        let long_header = vec![b'Y'; 10_000];
        assert!(Y4mReader::new(Cursor::new(long_header)).is_err());

        let mut frame = I420Frame::new(2, 2).unwrap();
        let mut truncated =
            Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 H2\nFRAME\n\x01\x02".to_vec())).unwrap();
        assert!(matches!(
            truncated.read_frame(&mut frame),
            Err(MediaError::InvalidY4m(_))
        ));
        let mut no_marker =
            Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 H2\nFRAMX\n".to_vec())).unwrap();
        assert!(no_marker.read_frame(&mut frame).is_err());
    }

    #[test]
    fn writer_rejects_wrong_sizes() {
        let mut writer = Y4mWriter::new(Vec::new(), header(4, 2)).unwrap();
        let frame = I420Frame::new(2, 2).unwrap();
        assert!(writer.write_frame(&frame).is_err());
        assert!(Y4mWriter::new(Vec::new(), header(3, 2)).is_err());
    }
}
