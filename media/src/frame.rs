//! `I420Frame`, the planar YUV 4:2:0 picture every video module works on, its RGBA conversion
//! (for display and recording) and the camera-format conversions YUYV → I420 and NV12 → I420.

use super::MediaError;

/// Largest width or height accepted for a frame (H.264 level 5.2 tops out below this).
pub const MAX_DIMENSION: usize = 8192;

/// A planar YUV 4:2:0 picture: the full-resolution Y plane, then the half-by-half U and V
/// planes, tightly packed (stride = width). Width and height are always even and non-zero.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// Checks that `width`x`height` is a size I420 can represent.
pub fn validate_dimensions(width: usize, height: usize) -> Result<(), MediaError> {
    let valid = width > 0
        && height > 0
        && width.is_multiple_of(2)
        && height.is_multiple_of(2)
        && width <= MAX_DIMENSION
        && height <= MAX_DIMENSION;
    if valid {
        Ok(())
    } else {
        Err(MediaError::InvalidDimensions { width, height })
    }
}

/// Bytes in a tightly packed I420 picture of this size.
pub const fn i420_len(width: usize, height: usize) -> usize {
    width * height + 2 * (width / 2) * (height / 2)
}

impl I420Frame {
    /// A black frame (Y = 16, U = V = 128, video range).
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        let mut frame = Self {
            width: 0,
            height: 0,
            data: Vec::new(),
        };
        frame.reshape(width, height)?;
        Ok(frame)
    }

    /// Wraps an existing tightly packed I420 buffer.
    pub fn from_data(width: usize, height: usize, data: Vec<u8>) -> Result<Self, MediaError> {
        validate_dimensions(width, height)?;
        let expected = i420_len(width, height);
        if data.len() != expected {
            return Err(MediaError::BufferSize {
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Changes the frame's size, reusing its allocation when it is large enough. The picture
    /// content is unspecified afterwards unless the size did not change (then it is kept).
    pub fn reshape(&mut self, width: usize, height: usize) -> Result<(), MediaError> {
        validate_dimensions(width, height)?;
        if self.width == width && self.height == height {
            return Ok(());
        }
        let luma = width * height;
        self.data.clear();
        self.data.resize(luma, 16);
        self.data.resize(i420_len(width, height), 128);
        self.width = width;
        self.height = height;
        Ok(())
    }

    /// Width in pixels (even).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels (even).
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width of the U and V planes.
    pub fn chroma_width(&self) -> usize {
        self.width / 2
    }

    /// Height of the U and V planes.
    pub fn chroma_height(&self) -> usize {
        self.height / 2
    }

    /// The whole buffer: Y, then U, then V.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The whole buffer, writable (its length cannot change).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Gives the buffer back.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    fn luma_len(&self) -> usize {
        self.width * self.height
    }

    fn chroma_len(&self) -> usize {
        self.chroma_width() * self.chroma_height()
    }

    /// The Y (luma) plane, `width * height` bytes.
    pub fn y(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    /// The U (Cb) plane, `width/2 * height/2` bytes.
    pub fn u(&self) -> &[u8] {
        let start = self.luma_len();
        &self.data[start..start + self.chroma_len()]
    }

    /// The V (Cr) plane, `width/2 * height/2` bytes.
    pub fn v(&self) -> &[u8] {
        &self.data[self.luma_len() + self.chroma_len()..]
    }

    /// The three planes, writable at once.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma_len = self.luma_len();
        let chroma_len = self.chroma_len();
        let (y, chroma) = self.data.split_at_mut(luma_len);
        let (u, v) = chroma.split_at_mut(chroma_len);
        (y, u, v)
    }

    /// Converts to RGBA (BT.601, video range, alpha 255) into `out`, which is resized to
    /// `width * height * 4` and reused between calls.
    pub fn to_rgba(&self, out: &mut Vec<u8>) {
        out.resize(self.width * self.height * 4, 255);
        let chroma_width = self.chroma_width();
        let (y_plane, u_plane, v_plane) = (self.y(), self.u(), self.v());
        for (row, rgba_row) in out.chunks_exact_mut(self.width * 4).enumerate() {
            let y_row = &y_plane[row * self.width..(row + 1) * self.width];
            let chroma_start = (row / 2) * chroma_width;
            let u_row = &u_plane[chroma_start..chroma_start + chroma_width];
            let v_row = &v_plane[chroma_start..chroma_start + chroma_width];
            // Two pixels share one chroma sample: walk them in pairs.
            let pixel_pairs = rgba_row.chunks_exact_mut(8).zip(y_row.chunks_exact(2));
            for ((pixels, lumas), (&u, &v)) in pixel_pairs.zip(u_row.iter().zip(v_row)) {
                let d = i32::from(u) - 128;
                let e = i32::from(v) - 128;
                let red = 409 * e + 128;
                let green = -100 * d - 208 * e + 128;
                let blue = 516 * d + 128;
                for (pixel, &luma) in pixels.chunks_exact_mut(4).zip(lumas) {
                    let c = 298 * (i32::from(luma) - 16);
                    pixel[0] = clamp_to_u8((c + red) >> 8);
                    pixel[1] = clamp_to_u8((c + green) >> 8);
                    pixel[2] = clamp_to_u8((c + blue) >> 8);
                    pixel[3] = 255;
                }
            }
        }
    }

    /// Converts to RGBA like [`Self::to_rgba`], keeping every `factor`-th pixel of every
    /// `factor`-th row (1, 2 or 4; others are taken as 1): a picture for a tile that much smaller,
    /// at a quarter or a sixteenth of the work. Returns the size written.
    pub fn to_rgba_scaled(&self, factor: usize, out: &mut Vec<u8>) -> [usize; 2] {
        if !matches!(factor, 2 | 4) {
            self.to_rgba(out);
            return [self.width, self.height];
        }
        let (out_width, out_height) = (self.width / factor, self.height / factor);
        out.resize(out_width * out_height * 4, 255);
        let chroma_width = self.chroma_width();
        let (y_plane, u_plane, v_plane) = (self.y(), self.u(), self.v());
        let chroma_step = factor / 2;
        for (row, rgba_row) in out.chunks_exact_mut(out_width * 4).enumerate() {
            let source_row = row * factor;
            let y_row = &y_plane[source_row * self.width..][..self.width];
            let chroma_start = (source_row / 2) * chroma_width;
            let u_row = &u_plane[chroma_start..chroma_start + chroma_width];
            let v_row = &v_plane[chroma_start..chroma_start + chroma_width];
            let samples = y_row
                .iter()
                .step_by(factor)
                .zip(u_row.iter().step_by(chroma_step))
                .zip(v_row.iter().step_by(chroma_step));
            for (pixel, ((&luma, &u), &v)) in rgba_row.chunks_exact_mut(4).zip(samples) {
                let d = i32::from(u) - 128;
                let e = i32::from(v) - 128;
                let c = 298 * (i32::from(luma) - 16);
                pixel[0] = clamp_to_u8((c + 409 * e + 128) >> 8);
                pixel[1] = clamp_to_u8((c - 100 * d - 208 * e + 128) >> 8);
                pixel[2] = clamp_to_u8((c + 516 * d + 128) >> 8);
                pixel[3] = 255;
            }
        }
        [out_width, out_height]
    }

    /// Copies this picture into `out` (reshaped, allocation reused), keeping every
    /// `factor`-th pixel of every `factor`-th row of each plane (1, 2 or 4; others are taken
    /// as 1): the same samples [`Self::to_rgba_scaled`] keeps, still as I420, for a display
    /// that converts colour itself. A size that would become odd is rounded down to even.
    pub fn subsample_into(&self, factor: usize, out: &mut I420Frame) {
        let factor = if matches!(factor, 2 | 4) { factor } else { 1 };
        let (out_width, out_height) = ((self.width / factor) & !1, (self.height / factor) & !1);
        out.reshape(out_width.max(2), out_height.max(2))
            .expect("a subsampled valid size is valid");
        let (out_chroma_width, chroma_width) = (out.chroma_width(), self.chroma_width());
        let (y_out, u_out, v_out) = out.planes_mut();
        let planes = [
            (self.y(), self.width, y_out, out_width.max(2)),
            (self.u(), chroma_width, u_out, out_chroma_width),
            (self.v(), chroma_width, v_out, out_chroma_width),
        ];
        for (source, source_width, target, target_width) in planes {
            let rows = source.chunks_exact(source_width).step_by(factor);
            for (target_row, source_row) in target.chunks_exact_mut(target_width).zip(rows) {
                if factor == 1 {
                    target_row.copy_from_slice(&source_row[..target_width]);
                } else {
                    for (pixel, &sample) in
                        target_row.iter_mut().zip(source_row.iter().step_by(factor))
                    {
                        *pixel = sample;
                    }
                }
            }
        }
    }

    /// Converts a packed YUYV (YUY2: Y0 U Y1 V) camera buffer of `width`x`height`, tightly
    /// packed (`width * 2` bytes a row), into this frame (reshaped, allocation reused). Chroma
    /// of two source rows is averaged.
    pub fn fill_from_yuyv(
        &mut self,
        width: usize,
        height: usize,
        yuyv: &[u8],
    ) -> Result<(), MediaError> {
        validate_dimensions(width, height)?;
        let expected = width * height * 2;
        if yuyv.len() < expected {
            return Err(MediaError::BufferSize {
                expected,
                actual: yuyv.len(),
            });
        }
        self.reshape(width, height)?;
        let chroma_width = width / 2;
        let (y_plane, u_plane, v_plane) = self.planes_mut();
        let source_stride = width * 2;
        for (row, y_row) in y_plane.chunks_exact_mut(width).enumerate() {
            let source_row = &yuyv[row * source_stride..(row + 1) * source_stride];
            for (luma, pair) in y_row.chunks_exact_mut(2).zip(source_row.chunks_exact(4)) {
                luma[0] = pair[0];
                luma[1] = pair[2];
            }
        }
        for chroma_row in 0..height / 2 {
            let top = &yuyv[2 * chroma_row * source_stride..(2 * chroma_row + 1) * source_stride];
            let bottom =
                &yuyv[(2 * chroma_row + 1) * source_stride..(2 * chroma_row + 2) * source_stride];
            let range = chroma_row * chroma_width..(chroma_row + 1) * chroma_width;
            let u_row = &mut u_plane[range.clone()];
            let v_row = &mut v_plane[range];
            for (column, (top_pair, bottom_pair)) in
                top.chunks_exact(4).zip(bottom.chunks_exact(4)).enumerate()
            {
                u_row[column] = average(top_pair[1], bottom_pair[1]);
                v_row[column] = average(top_pair[3], bottom_pair[3]);
            }
        }
        Ok(())
    }

    /// Converts an NV12 camera buffer (Y plane, then interleaved U/V at half resolution),
    /// tightly packed, into this frame (reshaped, allocation reused).
    pub fn fill_from_nv12(
        &mut self,
        width: usize,
        height: usize,
        nv12: &[u8],
    ) -> Result<(), MediaError> {
        validate_dimensions(width, height)?;
        let expected = i420_len(width, height);
        if nv12.len() < expected {
            return Err(MediaError::BufferSize {
                expected,
                actual: nv12.len(),
            });
        }
        self.reshape(width, height)?;
        let luma_len = width * height;
        let (y_plane, u_plane, v_plane) = self.planes_mut();
        y_plane.copy_from_slice(&nv12[..luma_len]);
        let interleaved = &nv12[luma_len..expected];
        for ((pair, u), v) in interleaved
            .chunks_exact(2)
            .zip(u_plane.iter_mut())
            .zip(v_plane.iter_mut())
        {
            *u = pair[0];
            *v = pair[1];
        }
        Ok(())
    }
}

fn clamp_to_u8(value: i32) -> u8 {
    value.clamp(0, 255) as u8
}

fn average(a: u8, b: u8) -> u8 {
    (u16::from(a) + u16::from(b)).div_ceil(2) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_frame_is_black_and_sized() {
        let frame = I420Frame::new(4, 2).unwrap();
        assert_eq!(frame.data().len(), 4 * 2 + 2 * 2);
        assert!(frame.y().iter().all(|&y| y == 16));
        assert_eq!(frame.u(), &[128, 128]);
        assert_eq!(frame.v(), &[128, 128]);
    }

    #[test]
    fn rejects_odd_zero_and_huge_sizes() {
        for (width, height) in [(3, 2), (2, 3), (0, 2), (2, 0), (16384, 2)] {
            assert!(matches!(
                I420Frame::new(width, height),
                Err(MediaError::InvalidDimensions { .. })
            ));
        }
        assert!(matches!(
            I420Frame::from_data(4, 2, vec![0; 5]),
            Err(MediaError::BufferSize {
                expected: 12,
                actual: 5
            })
        ));
    }

    #[test]
    fn planes_are_distinct_regions() {
        let mut frame = I420Frame::new(4, 4).unwrap();
        let (y, u, v) = frame.planes_mut();
        y.fill(1);
        u.fill(2);
        v.fill(3);
        assert_eq!(frame.y(), &[1; 16]);
        assert_eq!(frame.u(), &[2; 4]);
        assert_eq!(frame.v(), &[3; 4]);
    }

    #[test]
    fn reshape_keeps_content_when_size_is_unchanged() {
        let mut frame = I420Frame::new(4, 4).unwrap();
        frame.data_mut()[0] = 77;
        frame.reshape(4, 4).unwrap();
        assert_eq!(frame.y()[0], 77);
        frame.reshape(8, 2).unwrap();
        assert_eq!((frame.width(), frame.height()), (8, 2));
        assert_eq!(frame.data().len(), i420_len(8, 2));
    }

    #[test]
    fn rgba_of_primary_levels() {
        // Video-range white, black, and a saturated red (Y=81, U=90, V=240).
        let mut frame = I420Frame::new(2, 2).unwrap();
        let (y, u, v) = frame.planes_mut();
        y.copy_from_slice(&[235, 235, 235, 235]);
        u[0] = 128;
        v[0] = 128;
        let mut rgba = Vec::new();
        frame.to_rgba(&mut rgba);
        assert_eq!(rgba.len(), 16);
        assert_eq!(&rgba[..4], &[255, 255, 255, 255]);

        let (y, u, v) = frame.planes_mut();
        y.fill(16);
        u[0] = 128;
        v[0] = 128;
        frame.to_rgba(&mut rgba);
        assert_eq!(&rgba[..4], &[0, 0, 0, 255]);

        let (y, u, v) = frame.planes_mut();
        y.fill(81);
        u[0] = 90;
        v[0] = 240;
        frame.to_rgba(&mut rgba);
        assert!(
            rgba[0] > 240 && rgba[1] < 15 && rgba[2] < 15,
            "{:?}",
            &rgba[..4]
        );
    }

    #[test]
    fn rgba_uses_each_chroma_sample_for_its_2x2_block() {
        // 4x4: left 2x2 blocks neutral grey, right blocks red.
        let mut frame = I420Frame::new(4, 4).unwrap();
        let (y, u, v) = frame.planes_mut();
        y.fill(126);
        u.copy_from_slice(&[128, 90, 128, 90]);
        v.copy_from_slice(&[128, 240, 128, 240]);
        let mut rgba = Vec::new();
        frame.to_rgba(&mut rgba);
        let pixel = |x: usize, y: usize| &rgba[(y * 4 + x) * 4..(y * 4 + x) * 4 + 4];
        for (x, y) in [(0, 0), (1, 1), (0, 3), (1, 2)] {
            let grey = pixel(x, y);
            assert!(
                grey[0] == grey[1] && grey[1] == grey[2],
                "({x},{y}) {grey:?}"
            );
        }
        for (x, y) in [(2, 0), (3, 1), (2, 3), (3, 2)] {
            let red = pixel(x, y);
            assert!(
                red[0] > 200 && red[1] < 100 && red[2] < 100,
                "({x},{y}) {red:?}"
            );
        }
    }

    #[test]
    fn scaled_rgba_keeps_every_factor_th_pixel_with_its_own_chroma() {
        // 8x8 whose luma is its column*10 + row, chroma red on the right half.
        let mut frame = I420Frame::new(8, 8).unwrap();
        let (y, u, v) = frame.planes_mut();
        for (i, luma) in y.iter_mut().enumerate() {
            *luma = 16 + (i % 8) as u8 * 20 + (i / 8) as u8;
        }
        for (i, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            (*u, *v) = if i % 4 >= 2 { (90, 240) } else { (128, 128) };
        }
        let mut full = Vec::new();
        frame.to_rgba(&mut full);
        for factor in [2, 4] {
            let mut scaled = Vec::new();
            assert_eq!(
                frame.to_rgba_scaled(factor, &mut scaled),
                [8 / factor, 8 / factor]
            );
            assert_eq!(scaled.len(), (8 / factor) * (8 / factor) * 4);
            for row in 0..8 / factor {
                for col in 0..8 / factor {
                    let at = (row * (8 / factor) + col) * 4;
                    let source = (row * factor * 8 + col * factor) * 4;
                    assert_eq!(
                        scaled[at..at + 4],
                        full[source..source + 4],
                        "factor {factor} ({col},{row})"
                    );
                }
            }
        }
        let mut same = Vec::new();
        assert_eq!(frame.to_rgba_scaled(3, &mut same), [8, 8]);
        assert_eq!(same, full);
    }

    #[test]
    fn subsampled_planes_keep_every_factor_th_sample_and_reuse_the_buffer() {
        let mut frame = I420Frame::new(16, 8).unwrap();
        let (y, u, v) = frame.planes_mut();
        for (i, luma) in y.iter_mut().enumerate() {
            *luma = 16 + (i % 16) as u8 * 10 + (i / 16) as u8;
        }
        for (i, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            (*u, *v) = (60 + i as u8 * 3, 200 - i as u8 * 2);
        }
        let mut small = I420Frame::new(2, 2).unwrap();
        for factor in [2, 4] {
            frame.subsample_into(factor, &mut small);
            let (width, height) = (16 / factor, 8 / factor);
            assert_eq!([small.width(), small.height()], [width, height]);
            for (row, col) in (0..height).flat_map(|row| (0..width).map(move |col| (row, col))) {
                let source = row * factor * 16 + col * factor;
                assert_eq!(
                    small.y()[row * width + col],
                    frame.y()[source],
                    "{factor}: y {col},{row}"
                );
            }
            for (row, col) in
                (0..height / 2).flat_map(|row| (0..width / 2).map(move |col| (row, col)))
            {
                let source = row * factor * 8 + col * factor;
                let at = row * (width / 2) + col;
                assert_eq!(small.u()[at], frame.u()[source], "{factor}: u {col},{row}");
                assert_eq!(small.v()[at], frame.v()[source], "{factor}: v {col},{row}");
            }
        }
        frame.subsample_into(1, &mut small);
        assert_eq!(small, frame);
        let pointer = small.data().as_ptr();
        frame.subsample_into(1, &mut small);
        assert_eq!(pointer, small.data().as_ptr());
        // 6x6 by 4 would be 1x1: rounded to the smallest valid size.
        I420Frame::new(6, 6).unwrap().subsample_into(4, &mut small);
        assert_eq!([small.width(), small.height()], [2, 2]);
    }

    #[test]
    fn rgba_buffer_is_reused() {
        let frame = I420Frame::new(320, 180).unwrap();
        let mut rgba = Vec::new();
        frame.to_rgba(&mut rgba);
        let pointer = rgba.as_ptr();
        frame.to_rgba(&mut rgba);
        assert_eq!(pointer, rgba.as_ptr());
        assert_eq!(rgba.len(), 320 * 180 * 4);
    }

    #[test]
    fn yuyv_to_i420_moves_luma_and_averages_chroma() {
        // 4x2 picture: row 0 and row 1 have distinct chroma to check the averaging.
        let yuyv = [
            10, 100, 11, 200, 12, 102, 13, 202, // row 0
            20, 110, 21, 210, 22, 112, 23, 212, // row 1
        ];
        let mut frame = I420Frame::new(2, 2).unwrap();
        frame.fill_from_yuyv(4, 2, &yuyv).unwrap();
        assert_eq!((frame.width(), frame.height()), (4, 2));
        assert_eq!(frame.y(), &[10, 11, 12, 13, 20, 21, 22, 23]);
        assert_eq!(frame.u(), &[105, 107]);
        assert_eq!(frame.v(), &[205, 207]);
    }

    #[test]
    fn yuyv_rejects_short_buffers() {
        let mut frame = I420Frame::new(2, 2).unwrap();
        assert!(matches!(
            frame.fill_from_yuyv(4, 2, &[0; 15]),
            Err(MediaError::BufferSize { expected: 16, .. })
        ));
    }

    #[test]
    fn nv12_to_i420_deinterleaves_chroma() {
        let mut nv12: Vec<u8> = (0..16).collect();
        nv12.extend_from_slice(&[100, 200, 101, 201, 102, 202, 103, 203]);
        let mut frame = I420Frame::new(2, 2).unwrap();
        frame.fill_from_nv12(4, 4, &nv12).unwrap();
        assert_eq!(frame.y(), &(0..16).collect::<Vec<u8>>()[..]);
        assert_eq!(frame.u(), &[100, 101, 102, 103]);
        assert_eq!(frame.v(), &[200, 201, 202, 203]);
        assert!(frame.fill_from_nv12(4, 4, &nv12[..20]).is_err());
    }
}
