//! Where video tiles go: the column count that gives the largest 16:9 tiles in the space
//! available (like Meet's auto layout), centred, with a constant gap.

use egui::{Pos2, Rect, Vec2, pos2, vec2};

/// Width / height of a tile.
pub const TILE_ASPECT: f32 = 16.0 / 9.0;
/// Space between tiles, in points.
pub const TILE_GAP: f32 = 8.0;

/// The rectangles of `count` tiles laid out in `area`, row by row; the last row is centred.
pub fn layout(count: usize, area: Rect) -> Vec<Rect> {
    if count == 0 || area.width() <= 0.0 || area.height() <= 0.0 {
        return Vec::new();
    }
    let (columns, tile) = best_grid(count, area.size());
    let rows = count.div_ceil(columns);
    let grid_height = rows as f32 * tile.y + (rows - 1) as f32 * TILE_GAP;
    let top = area.top() + (area.height() - grid_height) / 2.0;
    let mut rects = Vec::with_capacity(count);
    for row in 0..rows {
        let in_row = (count - row * columns).min(columns);
        let row_width = in_row as f32 * tile.x + (in_row - 1) as f32 * TILE_GAP;
        let left = area.left() + (area.width() - row_width) / 2.0;
        for column in 0..in_row {
            let min = Pos2::new(
                left + column as f32 * (tile.x + TILE_GAP),
                top + row as f32 * (tile.y + TILE_GAP),
            );
            rects.push(Rect::from_min_size(min, tile));
        }
    }
    rects
}

/// The number of columns giving the largest tiles, and the tile size.
fn best_grid(count: usize, size: Vec2) -> (usize, Vec2) {
    (1..=count)
        .map(|columns| {
            let rows = count.div_ceil(columns);
            let width_limit = (size.x - (columns - 1) as f32 * TILE_GAP) / columns as f32;
            let height_limit = (size.y - (rows - 1) as f32 * TILE_GAP) / rows as f32;
            let width = width_limit.min(height_limit * TILE_ASPECT).max(1.0);
            (columns, vec2(width, width / TILE_ASPECT))
        })
        .max_by(|a, b| a.1.x.total_cmp(&b.1.x))
        .unwrap_or((1, vec2(1.0, 1.0 / TILE_ASPECT)))
}

/// The rectangle of an image of `image_size` fitted inside `frame` without cropping
/// (letterbox or pillarbox), centred.
pub fn letterbox(image_size: Vec2, frame: Rect) -> Rect {
    if image_size.x <= 0.0 || image_size.y <= 0.0 {
        return frame;
    }
    let scale = (frame.width() / image_size.x).min(frame.height() / image_size.y);
    Rect::from_center_size(frame.center(), image_size * scale)
}

/// The parts of `frame` that a picture letterboxed into it (`image`, inside `frame`) leaves
/// uncovered: up to four rectangles (left, right, above, below), none empty, none overlapping.
pub fn letterbox_bars(frame: Rect, image: Rect) -> impl Iterator<Item = Rect> {
    let image = image.intersect(frame);
    [
        Rect::from_min_max(frame.min, pos2(image.left(), frame.bottom())),
        Rect::from_min_max(pos2(image.right(), frame.top()), frame.max),
        Rect::from_min_max(
            pos2(image.left(), frame.top()),
            pos2(image.right(), image.top()),
        ),
        Rect::from_min_max(
            pos2(image.left(), image.bottom()),
            pos2(image.right(), frame.bottom()),
        ),
    ]
    .into_iter()
    .filter(|bar| bar.width() >= 0.5 && bar.height() >= 0.5)
}

/// Where the centre of a grid lies (for tests and overlays).
pub fn centre(rects: &[Rect]) -> Option<Pos2> {
    let first = rects.first()?;
    let bounds = rects.iter().fold(*first, |acc, rect| acc.union(*rect));
    Some(pos2(bounds.center().x, bounds.center().y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(width: f32, height: f32) -> Rect {
        Rect::from_min_size(Pos2::ZERO, vec2(width, height))
    }

    fn overlaps(rects: &[Rect]) -> bool {
        rects
            .iter()
            .enumerate()
            .any(|(i, a)| rects[i + 1..].iter().any(|b| a.intersects(b.shrink(0.5))))
    }

    #[test]
    fn one_tile_fills_the_width_of_a_wide_area() {
        let rects = layout(1, area(1600.0, 900.0));
        assert_eq!(rects.len(), 1);
        assert!((rects[0].width() - 1600.0).abs() < 0.5);
    }

    #[test]
    fn two_tiles_side_by_side_in_landscape_stacked_in_portrait() {
        let wide = layout(2, area(1600.0, 600.0));
        assert!((wide[0].top() - wide[1].top()).abs() < 0.5);
        let tall = layout(2, area(600.0, 1200.0));
        assert!((tall[0].left() - tall[1].left()).abs() < 0.5);
        assert!(!overlaps(&wide) && !overlaps(&tall));
    }

    #[test]
    fn four_tiles_make_a_two_by_two_grid_and_stay_inside() {
        let bounds = area(1280.0, 720.0);
        let rects = layout(4, bounds);
        let columns: std::collections::BTreeSet<i32> =
            rects.iter().map(|r| r.left() as i32).collect();
        assert_eq!(columns.len(), 2);
        assert!(rects.iter().all(|r| bounds.expand(0.5).contains_rect(*r)));
        assert!(!overlaps(&rects));
        let centre = centre(&rects).unwrap();
        assert!((centre.x - 640.0).abs() < 1.0 && (centre.y - 360.0).abs() < 1.0);
    }

    #[test]
    fn three_tiles_centre_the_last_row() {
        let rects = layout(3, area(1000.0, 700.0));
        assert_eq!(rects.len(), 3);
        if (rects[2].top() - rects[0].top()).abs() > 1.0 {
            // Two rows: the lone tile of the second row is centred.
            assert!((rects[2].center().x - 500.0).abs() < 1.0);
        }
        assert!(!overlaps(&rects));
        assert!(layout(0, area(100.0, 100.0)).is_empty());
    }

    #[test]
    fn bars_and_picture_cover_the_tile_exactly_once() {
        let frame = Rect::from_min_size(pos2(10.0, 20.0), vec2(624.0, 351.0));
        for picture in [vec2(1280.0, 720.0), vec2(480.0, 640.0), vec2(640.0, 360.0)] {
            let image = letterbox(picture, frame);
            let bars: Vec<Rect> = letterbox_bars(frame, image).collect();
            let covered: f32 = bars.iter().map(|b| b.area()).sum::<f32>() + image.area();
            assert!(
                (covered - frame.area()).abs() < 1.0,
                "{picture:?}: {covered}"
            );
            for (i, a) in bars.iter().enumerate() {
                assert!(a.intersect(image).area() <= 0.0 || !a.intersects(image));
                for b in &bars[i + 1..] {
                    assert!(
                        a.intersect(*b).area() <= 0.0 || !a.intersects(*b),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        // A portrait picture leaves bars left and right only.
        let portrait = letterbox(vec2(480.0, 640.0), frame);
        assert_eq!(letterbox_bars(frame, portrait).count(), 2);
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio() {
        let frame = area(1600.0, 900.0);
        let portrait = letterbox(vec2(480.0, 640.0), frame);
        assert!((portrait.height() - 900.0).abs() < 0.5);
        assert!((portrait.width() / portrait.height() - 0.75).abs() < 0.01);
        assert!((portrait.center().x - 800.0).abs() < 0.5);
        let wide = letterbox(vec2(1280.0, 720.0), frame);
        assert!((wide.width() - 1600.0).abs() < 0.5);
    }
}
