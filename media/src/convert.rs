//! Camera pixel formats to I420: YUYV and NV12 (via `media::frame`) and MJPEG (decoded with
//! zune-jpeg straight to YCbCr, converted from JPEG's full range to video range, chroma 2×2
//! averaged). Odd sizes are cropped to even ones.

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::{I420Frame, MediaError};

/// The camera formats vcall can convert, in order of preference at equal resolution and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CameraPixelFormat {
    /// Motion JPEG: compressed, so USB 2 cameras reach 720p30 only with it.
    Mjpeg,
    /// Y plane then interleaved UV, 4:2:0.
    Nv12,
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
}

/// Why a camera buffer could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("corrupt MJPEG frame: {0}")]
    Jpeg(String),
    #[error("MJPEG frame is {actual_width}x{actual_height}, the camera announced {width}x{height}")]
    JpegSize {
        width: usize,
        height: usize,
        actual_width: usize,
        actual_height: usize,
    },
}

/// Reusable scratch memory for conversions (the MJPEG decoder's YCbCr output).
#[derive(Debug, Default)]
pub struct Converter {
    ycbcr: Vec<u8>,
}

impl Converter {
    /// Converts one camera buffer of `width`x`height` in `format` into `out` (reshaped).
    pub fn to_i420(
        &mut self,
        format: CameraPixelFormat,
        width: usize,
        height: usize,
        data: &[u8],
        out: &mut I420Frame,
    ) -> Result<(), ConvertError> {
        match format {
            CameraPixelFormat::Yuyv => Ok(out.fill_from_yuyv(width, height, data)?),
            CameraPixelFormat::Nv12 => Ok(out.fill_from_nv12(width, height, data)?),
            CameraPixelFormat::Mjpeg => self.mjpeg_to_i420(width, height, data, out),
        }
    }

    fn mjpeg_to_i420(
        &mut self,
        width: usize,
        height: usize,
        jpeg: &[u8],
        out: &mut I420Frame,
    ) -> Result<(), ConvertError> {
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::YCbCr)
            .set_max_width(8192)
            .set_max_height(8192);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        decoder
            .decode_headers()
            .map_err(|error| ConvertError::Jpeg(error.to_string()))?;
        let (actual_width, actual_height) = decoder
            .dimensions()
            .ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        if actual_width != width || actual_height != height {
            return Err(ConvertError::JpegSize {
                width,
                height,
                actual_width,
                actual_height,
            });
        }
        let size = decoder
            .output_buffer_size()
            .ok_or_else(|| ConvertError::Jpeg("frame too large".into()))?;
        self.ycbcr.resize(size, 0);
        decoder
            .decode_into(&mut self.ycbcr)
            .map_err(|error| ConvertError::Jpeg(error.to_string()))?;
        ycbcr444_full_range_to_i420(&self.ycbcr, width, height, out)
    }
}

/// Converts interleaved full-range (JFIF) YCbCr 4:4:4 into video-range I420, cropping an odd
/// width or height by one.
pub fn ycbcr444_full_range_to_i420(
    ycbcr: &[u8],
    width: usize,
    height: usize,
    out: &mut I420Frame,
) -> Result<(), ConvertError> {
    let expected = width * height * 3;
    if ycbcr.len() < expected {
        return Err(MediaError::BufferSize {
            expected,
            actual: ycbcr.len(),
        }
        .into());
    }
    let (even_width, even_height) = (width & !1, height & !1);
    out.reshape(even_width, even_height)?;
    let chroma_width = even_width / 2;
    let (y_plane, u_plane, v_plane) = out.planes_mut();
    let stride = width * 3;
    for (row, y_row) in y_plane.chunks_exact_mut(even_width).enumerate() {
        let source = &ycbcr[row * stride..row * stride + even_width * 3];
        for (luma, pixel) in y_row.iter_mut().zip(source.chunks_exact(3)) {
            *luma = full_to_video_luma(pixel[0]);
        }
    }
    for chroma_row in 0..even_height / 2 {
        let top = &ycbcr[2 * chroma_row * stride..][..even_width * 3];
        let bottom = &ycbcr[(2 * chroma_row + 1) * stride..][..even_width * 3];
        let range = chroma_row * chroma_width..(chroma_row + 1) * chroma_width;
        let u_row = &mut u_plane[range.clone()];
        let v_row = &mut v_plane[range];
        for column in 0..chroma_width {
            let left = column * 6;
            let right = left + 3;
            let sum = |offset: usize| {
                u32::from(top[left + offset])
                    + u32::from(top[right + offset])
                    + u32::from(bottom[left + offset])
                    + u32::from(bottom[right + offset])
            };
            u_row[column] = full_to_video_chroma(((sum(1) + 2) / 4) as u8);
            v_row[column] = full_to_video_chroma(((sum(2) + 2) / 4) as u8);
        }
    }
    Ok(())
}

/// Full range 0..=255 → video range 16..=235.
fn full_to_video_luma(value: u8) -> u8 {
    (16 + (u32::from(value) * 219 + 127) / 255) as u8
}

/// Full range 0..=255 (128 = neutral) → video range 16..=240.
fn full_to_video_chroma(value: u8) -> u8 {
    let centred = i32::from(value) - 128;
    (128 + (centred * 224 + centred.signum() * 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RGB image with a distinct colour per quadrant.
    fn quadrants(width: usize, height: usize) -> Vec<u8> {
        let colours = [
            [220u8, 40, 40],
            [40, 200, 60],
            [40, 60, 220],
            [235, 235, 235],
        ];
        let mut rgb = Vec::with_capacity(width * height * 3);
        for row in 0..height {
            for column in 0..width {
                let index = usize::from(row >= height / 2) * 2 + usize::from(column >= width / 2);
                rgb.extend_from_slice(&colours[index]);
            }
        }
        rgb
    }

    fn rgba_at(rgba: &[u8], width: usize, x: usize, y: usize) -> [u8; 3] {
        let i = (y * width + x) * 4;
        [rgba[i], rgba[i + 1], rgba[i + 2]]
    }

    fn close(a: [u8; 3], b: [u8; 3], tolerance: i32) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, y)| (i32::from(x) - i32::from(y)).abs() <= tolerance)
    }

    #[test]
    fn mjpeg_converts_to_i420_with_the_right_colours() {
        let (width, height) = (64, 48);
        let rgb = quadrants(width, height);
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(
                &rgb,
                width as u16,
                height as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();

        let mut frame = I420Frame::new(2, 2).unwrap();
        Converter::default()
            .to_i420(CameraPixelFormat::Mjpeg, width, height, &jpeg, &mut frame)
            .unwrap();
        assert_eq!((frame.width(), frame.height()), (width, height));
        let mut rgba = Vec::new();
        frame.to_rgba(&mut rgba);
        // Sample the middle of each quadrant: JPEG + 4:2:0 round trip within a few levels.
        for (x, y, expected) in [
            (16, 12, [220, 40, 40]),
            (48, 12, [40, 200, 60]),
            (16, 36, [40, 60, 220]),
            (48, 36, [235, 235, 235]),
        ] {
            let got = rgba_at(&rgba, width, x, y);
            assert!(
                close(got, expected, 12),
                "at ({x},{y}) got {got:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn mjpeg_errors_are_typed() {
        let mut frame = I420Frame::new(2, 2).unwrap();
        let mut converter = Converter::default();
        assert!(matches!(
            converter.to_i420(CameraPixelFormat::Mjpeg, 64, 48, b"not a jpeg", &mut frame),
            Err(ConvertError::Jpeg(_))
        ));
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 80)
            .encode(&quadrants(32, 16), 32, 16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert!(matches!(
            converter.to_i420(CameraPixelFormat::Mjpeg, 64, 48, &jpeg, &mut frame),
            Err(ConvertError::JpegSize {
                actual_width: 32,
                actual_height: 16,
                ..
            })
        ));
    }

    #[test]
    fn yuyv_and_nv12_dispatch_to_the_media_converters() {
        let (width, height) = (4, 2);
        // YUYV: luma ramps, chroma neutral.
        let yuyv = [
            16, 128, 60, 128, 100, 128, 235, 128, //
            16, 128, 60, 128, 100, 128, 235, 128,
        ];
        let mut frame = I420Frame::new(2, 2).unwrap();
        let mut converter = Converter::default();
        converter
            .to_i420(CameraPixelFormat::Yuyv, width, height, &yuyv, &mut frame)
            .unwrap();
        assert_eq!(frame.y(), &[16, 60, 100, 235, 16, 60, 100, 235]);
        assert_eq!(frame.u(), &[128, 128]);

        let nv12 = [1, 2, 3, 4, 5, 6, 7, 8, 90, 91, 92, 93];
        converter
            .to_i420(CameraPixelFormat::Nv12, width, height, &nv12, &mut frame)
            .unwrap();
        assert_eq!(frame.y(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(frame.u(), &[90, 92]);
        assert_eq!(frame.v(), &[91, 93]);

        assert!(matches!(
            converter.to_i420(
                CameraPixelFormat::Nv12,
                width,
                height,
                &nv12[..5],
                &mut frame
            ),
            Err(ConvertError::Media(MediaError::BufferSize { .. }))
        ));
    }

    #[test]
    fn full_range_maps_onto_video_range_and_odd_sizes_are_cropped() {
        assert_eq!(full_to_video_luma(0), 16);
        assert_eq!(full_to_video_luma(255), 235);
        assert_eq!(full_to_video_chroma(128), 128);
        assert_eq!(full_to_video_chroma(0), 16);
        assert_eq!(full_to_video_chroma(255), 240);

        let (width, height) = (3, 3);
        let ycbcr: Vec<u8> = std::iter::repeat_n([255u8, 128, 128], width * height)
            .flatten()
            .collect();
        let mut frame = I420Frame::new(2, 2).unwrap();
        ycbcr444_full_range_to_i420(&ycbcr, width, height, &mut frame).unwrap();
        assert_eq!((frame.width(), frame.height()), (2, 2));
        assert!(frame.y().iter().all(|&y| y == 235));
        assert_eq!(frame.u(), &[128]);
    }
}
