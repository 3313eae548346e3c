//! `vcall --screenshot FILE.ppm`: once the call shows pictures on at least the streams asked
//! for, captures the window as the GL drew it (egui's viewport screenshot), writes it as a
//! binary PPM and, beside it (`FILE.ppm.pictures`), where each video picture was drawn, one
//! line per stream (`self` or the peer id, then x y width height in pixels); then closes the
//! app. For tests of the real drawing path under Xvfb and for bug reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::{ColorImage, Rect};
use vcall_engine::Stream;

/// A picture must have been on screen this long before the shot (the GL has drawn it).
const SETTLE: Duration = Duration::from_millis(500);

/// Where the screenshot lands when the integration has read the window back.
type ShotSlot = Arc<Mutex<Option<Arc<ColorImage>>>>;

/// What `--screenshot` asked for.
#[derive(Debug, Clone)]
pub struct ScreenshotRequest {
    pub path: PathBuf,
    /// Wait until this many streams (the self view included) show pictures.
    pub streams: usize,
}

/// Where the screenshot is.
#[derive(Debug)]
pub enum Screenshot {
    /// Waiting for the pictures; since when enough were on screen.
    Waiting(Option<Instant>),
    /// Asked egui for the shot (it arrives in the slot); these were the picture rects
    /// (physical pixels) then.
    Asked(ShotSlot, Vec<(Stream, Rect)>),
    Done,
}

impl Screenshot {
    /// One step per pass: `drawn` are the pictures drawn this pass (in points). Returns
    /// whether the app should close (the shot is written).
    pub fn step(
        &mut self,
        request: &ScreenshotRequest,
        ctx: &egui::Context,
        drawn: &[(Stream, Rect)],
        now: Instant,
    ) -> bool {
        match self {
            Screenshot::Waiting(since) => {
                if drawn.len() < request.streams {
                    *since = None;
                } else if now.duration_since(*since.get_or_insert(now)) >= SETTLE {
                    let scale = ctx.pixels_per_point();
                    let rects = drawn
                        .iter()
                        .map(|(stream, rect)| {
                            (
                                *stream,
                                Rect::from_min_max(rect.min * scale, rect.max * scale),
                            )
                        })
                        .collect();
                    let slot = ShotSlot::default();
                    let (filled, woken) = (Arc::clone(&slot), ctx.clone());
                    ctx.request_screenshot(move |image| {
                        if let Ok(mut filled) = filled.lock() {
                            *filled = Some(image);
                        }
                        woken.request_repaint();
                    });
                    *self = Screenshot::Asked(slot, rects);
                }
                ctx.request_repaint_after(Duration::from_millis(50));
                false
            }
            Screenshot::Asked(slot, rects) => {
                let image = slot.lock().ok().and_then(|mut image| image.take());
                let Some(image) = image else {
                    ctx.request_repaint_after(Duration::from_millis(50));
                    return false;
                };
                if let Err(error) = write(&request.path, &image, rects) {
                    eprintln!(
                        "vcall: cannot write the screenshot {}: {error}",
                        request.path.display()
                    );
                }
                *self = Screenshot::Done;
                true
            }
            Screenshot::Done => false,
        }
    }
}

/// Writes `image` as a binary PPM and the picture rects beside it.
fn write(path: &Path, image: &ColorImage, rects: &[(Stream, Rect)]) -> std::io::Result<()> {
    let [width, height] = image.size;
    let mut ppm = Vec::with_capacity(width * height * 3 + 32);
    write!(ppm, "P6\n{width} {height}\n255\n")?;
    for pixel in &image.pixels {
        ppm.extend_from_slice(&pixel.to_array()[..3]);
    }
    std::fs::write(path, ppm)?;
    let mut listing = String::new();
    for (stream, rect) in rects {
        let name = match stream {
            Stream::Local => "self".to_owned(),
            Stream::Remote(peer) => peer.0.to_string(),
        };
        listing.push_str(&format!(
            "{name} {} {} {} {}\n",
            rect.min.x.round(),
            rect.min.y.round(),
            rect.width().round(),
            rect.height().round()
        ));
    }
    let mut listing_path = path.as_os_str().to_owned();
    listing_path.push(".pictures");
    std::fs::write(listing_path, listing)
}
