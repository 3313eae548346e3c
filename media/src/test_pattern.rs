//! The deterministic test pattern: a gradient with a moving bar and a bouncing box, plus the
//! frame number written into the picture as large black/white blocks that survive H.264.
//!
//! The picture is a pure function of (frame number mod 2^24, width, height), so a receiver that
//! reads the number back from a decoded picture can regenerate the exact source frame and
//! compute PSNR against it.
//!
//! The number occupies 32 cells in two rows of 16 at the top left: 24 bits of frame number (most
//! significant first) and an 8-bit check. A cell is 12x12 luma pixels at 320x180 and scales
//! with the picture (48x48 at 1280x720), never below 8x8, and is aligned so it covers whole
//! chroma samples.

use super::I420Frame;

/// Bits of the frame number carried in the picture; numbers wrap at 2^24 (6.4 days at 30 fps).
pub const FRAME_NUMBER_BITS: u32 = 24;
const FRAME_NUMBER_MASK: u32 = (1 << FRAME_NUMBER_BITS) - 1;
const CHECK_BITS: u32 = 8;
const CODE_COLUMNS: usize = 16;
const CODE_ROWS: usize = 2;
const WHITE_LUMA: u8 = 235;
const BLACK_LUMA: u8 = 16;

/// Geometry of the pattern for one picture size.
#[derive(Debug, Clone, Copy)]
struct Layout {
    cell: usize,
    /// Top-left corner of the code grid (x and y), one cell from the edges.
    margin: usize,
    /// First luma row where the moving shapes may draw (below the code grid).
    shapes_top: usize,
}

impl Layout {
    /// The layout, or `None` when the picture is too small to hold the code grid.
    fn for_size(width: usize, height: usize) -> Option<Self> {
        let cell = ((width * 12 / 320).min(height * 12 / 180).max(8)) & !1;
        let margin = cell;
        let shapes_top = margin * 2 + CODE_ROWS * cell;
        let fits = margin * 2 + CODE_COLUMNS * cell <= width && shapes_top + 8 <= height;
        fits.then_some(Self {
            cell,
            margin,
            shapes_top,
        })
    }
}

fn check_byte(number: u32) -> u8 {
    let [_, high, middle, low] = number.to_be_bytes();
    high ^ middle ^ low ^ 0x5A
}

/// The 32 code bits for a frame number: 24 number bits then 8 check bits, most significant first.
fn code_word(number: u32) -> u32 {
    ((number & FRAME_NUMBER_MASK) << CHECK_BITS) | u32::from(check_byte(number & FRAME_NUMBER_MASK))
}

/// Renders the pattern for `frame_number` into `frame` (any even size), in place and without
/// allocating. Numbers are taken modulo 2^24 for both the code and the shapes' positions.
pub fn render(frame_number: u32, frame: &mut I420Frame) {
    let number = frame_number & FRAME_NUMBER_MASK;
    let (width, height) = (frame.width(), frame.height());
    let chroma_width = frame.chroma_width();
    let (y_plane, u_plane, v_plane) = frame.planes_mut();

    // Background gradient: luma rises left to right and a little top to bottom; chroma
    // varies across both axes so colour errors show up in PSNR too. The left-to-right part is
    // the same in every row: it is computed once (in the first row) and each row is a copy of
    // it plus the row's own term (no division per pixel: this runs 30 times a second).
    let (first_row, other_rows) = y_plane.split_at_mut(width);
    for (column, luma) in first_row.iter_mut().enumerate() {
        *luma = (40 + 150 * column / width) as u8;
    }
    for (row, y_row) in other_rows.chunks_exact_mut(width).enumerate() {
        let row_term = (30 * (row + 1) / height) as u8;
        for (luma, base) in y_row.iter_mut().zip(first_row.iter()) {
            *luma = base + row_term;
        }
    }
    let chroma_height = height / 2;
    let (first_u_row, other_u_rows) = u_plane.split_at_mut(chroma_width);
    for (column, u) in first_u_row.iter_mut().enumerate() {
        *u = (98 + 60 * column / chroma_width) as u8;
    }
    for u_row in other_u_rows.chunks_exact_mut(chroma_width) {
        u_row.copy_from_slice(first_u_row);
    }
    for (row, v_row) in v_plane.chunks_exact_mut(chroma_width).enumerate() {
        v_row.fill((98 + 60 * row / chroma_height) as u8);
    }

    let Some(layout) = Layout::for_size(width, height) else {
        return;
    };
    let mut painter = Painter {
        width,
        chroma_width,
        y_plane,
        u_plane,
        v_plane,
    };

    // Moving bar: yellow, full height of the shapes area, sweeping left to right.
    let speed = (width / 160).max(1);
    let bar_width = ((width / 20).max(4)) & !1;
    let bar_travel = width - bar_width;
    let bar_x = ((number as usize * speed) % bar_travel) & !1;
    painter.fill_rect(
        bar_x,
        layout.shapes_top,
        bar_width,
        height - layout.shapes_top,
        (210, 16, 146),
    );

    // Bouncing box: red, moving diagonally within the shapes area.
    let box_size = ((height / 5).max(4)) & !1;
    let travel_x = width.saturating_sub(box_size);
    let travel_y = (height - layout.shapes_top).saturating_sub(box_size);
    let box_x = bounce(number as usize * speed * 3 / 2, travel_x) & !1;
    let box_y = layout.shapes_top + (bounce(number as usize * speed, travel_y) & !1);
    painter.fill_rect(box_x, box_y, box_size, box_size, (81, 90, 240));

    // The frame number code, drawn last so nothing covers it.
    let word = code_word(number);
    for index in 0..CODE_COLUMNS * CODE_ROWS {
        let bit = (word >> (31 - index)) & 1;
        let luma = if bit == 1 { WHITE_LUMA } else { BLACK_LUMA };
        let (x, y) = cell_origin(&layout, index);
        painter.fill_rect(x, y, layout.cell, layout.cell, (luma, 128, 128));
    }
}

/// Reads the frame number back from a (possibly decoded, lossy) picture of the pattern.
/// Returns `None` when the picture does not carry a readable, consistent code.
pub fn read_frame_number(frame: &I420Frame) -> Option<u32> {
    let layout = Layout::for_size(frame.width(), frame.height())?;
    let width = frame.width();
    let y_plane = frame.y();
    let inset = layout.cell / 4;
    let inner = layout.cell - 2 * inset;
    let mut word = 0u32;
    for index in 0..CODE_COLUMNS * CODE_ROWS {
        let (x, y) = cell_origin(&layout, index);
        let mut sum = 0usize;
        for row in y + inset..y + inset + inner {
            let start = row * width + x + inset;
            sum += y_plane[start..start + inner]
                .iter()
                .map(|&v| usize::from(v))
                .sum::<usize>();
        }
        let mean = sum / (inner * inner);
        let bit = match mean {
            0..=70 => 0,
            180..=255 => 1,
            _ => return None,
        };
        word = (word << 1) | bit;
    }
    let number = word >> CHECK_BITS;
    (check_byte(number) == (word & 0xFF) as u8).then_some(number)
}

fn cell_origin(layout: &Layout, index: usize) -> (usize, usize) {
    let column = index % CODE_COLUMNS;
    let row = index / CODE_COLUMNS;
    (
        layout.margin + column * layout.cell,
        layout.margin + row * layout.cell,
    )
}

/// A triangle wave: goes 0..=range and back.
fn bounce(position: usize, range: usize) -> usize {
    if range == 0 {
        return 0;
    }
    let phase = position % (2 * range);
    if phase <= range {
        phase
    } else {
        2 * range - phase
    }
}

struct Painter<'a> {
    width: usize,
    chroma_width: usize,
    y_plane: &'a mut [u8],
    u_plane: &'a mut [u8],
    v_plane: &'a mut [u8],
}

impl Painter<'_> {
    /// Fills a rectangle with even origin and size (so chroma samples are covered whole),
    /// clipped to the picture.
    fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, (luma, u, v): (u8, u8, u8)) {
        let height = self.y_plane.len() / self.width;
        let x_end = (x + w).min(self.width);
        let y_end = (y + h).min(height);
        if x >= x_end || y >= y_end {
            return;
        }
        for row in y..y_end {
            self.y_plane[row * self.width + x..row * self.width + x_end].fill(luma);
        }
        for chroma_row in y / 2..y_end / 2 {
            let start = chroma_row * self.chroma_width;
            self.u_plane[start + x / 2..start + x_end / 2].fill(u);
            self.v_plane[start + x / 2..start + x_end / 2].fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(number: u32, width: usize, height: usize) -> I420Frame {
        let mut frame = I420Frame::new(width, height).unwrap();
        render(number, &mut frame);
        frame
    }

    #[test]
    fn frame_number_reads_back_at_several_sizes() {
        for (width, height) in [(320, 180), (640, 360), (1280, 720), (320, 240)] {
            for number in [0, 1, 2, 255, 256, 12_345, 0xFF_FFFF] {
                let frame = rendered(number, width, height);
                assert_eq!(
                    read_frame_number(&frame),
                    Some(number),
                    "{number} at {width}x{height}"
                );
            }
        }
    }

    #[test]
    fn numbers_wrap_at_24_bits() {
        let frame = rendered((1 << 24) + 7, 320, 180);
        assert_eq!(read_frame_number(&frame), Some(7));
        assert_eq!(frame, rendered(7, 320, 180));
    }

    #[test]
    fn rendering_is_deterministic_and_reuses_the_frame() {
        let mut frame = I420Frame::new(320, 180).unwrap();
        render(42, &mut frame);
        let pointer = frame.data().as_ptr();
        render(42, &mut frame);
        assert_eq!(pointer, frame.data().as_ptr());
        assert_eq!(frame, rendered(42, 320, 180));
    }

    #[test]
    fn shapes_move_between_frames() {
        let first = rendered(10, 320, 180);
        let second = rendered(11, 320, 180);
        let layout = Layout::for_size(320, 180).unwrap();
        let below_code = layout.shapes_top * 320;
        let changed = first.y()[below_code..]
            .iter()
            .zip(&second.y()[below_code..])
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed > 100, "only {changed} luma samples changed");
    }

    #[test]
    fn pictures_without_a_code_read_as_none() {
        let black = I420Frame::new(320, 180).unwrap();
        assert_eq!(read_frame_number(&black), None);
        let mut flipped = rendered(1000, 320, 180);
        // Invert one number cell: the check byte must catch it.
        let layout = Layout::for_size(320, 180).unwrap();
        let (x, y) = cell_origin(&layout, 23);
        let width = flipped.width();
        for row in y..y + layout.cell {
            for pixel in &mut flipped.data_mut()[row * width + x..row * width + x + layout.cell] {
                *pixel = if *pixel > 128 { BLACK_LUMA } else { WHITE_LUMA };
            }
        }
        assert_eq!(read_frame_number(&flipped), None);
    }

    #[test]
    fn tiny_pictures_get_a_background_and_no_code() {
        let frame = rendered(5, 16, 16);
        assert!(frame.y().iter().all(|&y| y >= 40));
        assert_eq!(read_frame_number(&frame), None);
    }

    #[test]
    fn the_background_is_the_gradient_of_its_formula() {
        // Tiny: no shapes or code drawn over it, so every sample is background.
        let (width, height) = (16, 14);
        let frame = rendered(9, width, height);
        for (i, &luma) in frame.y().iter().enumerate() {
            let (row, column) = (i / width, i % width);
            assert_eq!(
                usize::from(luma),
                40 + 30 * row / height + 150 * column / width
            );
        }
        let chroma_width = width / 2;
        for (i, (&u, &v)) in frame.u().iter().zip(frame.v()).enumerate() {
            let (row, column) = (i / chroma_width, i % chroma_width);
            assert_eq!(usize::from(u), 98 + 60 * column / chroma_width);
            assert_eq!(usize::from(v), 98 + 60 * row / (height / 2));
        }
    }
}
