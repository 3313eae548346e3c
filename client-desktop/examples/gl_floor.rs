//! The GL's own floor for `scripts/bench-app.sh`: an eframe window (glow, the app's options)
//! that draws nothing but its clear colour and repaints at a fixed rate, so the software GL's
//! cost of presenting a window of that size, with none of the app's drawing, can be measured;
//! optionally with PICTURES textured rectangles of PICTURE_SIZE, each updated every pass
//! (sub-image upload, as the app does) and drawn 1:1 through egui's painter, to measure what
//! drawing a video picture costs the GL by itself.
//!
//! Usage: `gl_floor [SECONDS=30] [WIDTHxHEIGHT=1280x800] [REPAINTS_PER_SECOND=30]
//!         [PICTURES=0] [PICTURE_SIZE=640x360]`

use std::time::{Duration, Instant};

/// One picture's texture and its two alternating contents (so each pass uploads new pixels
/// without spending CPU on making them).
struct Picture {
    texture: egui::TextureHandle,
    contents: [egui::ColorImage; 2],
}

struct Floor {
    pictures: Vec<Picture>,
    picture_size: [usize; 2],
    until: Instant,
    interval: Duration,
    passes: u64,
    /// When the last figures were printed, and the passes then.
    printed: (Instant, u64),
}

impl eframe::App for Floor {
    fn clear_color(&self, _visuals: &egui::Visuals) -> [f32; 4] {
        [0.08, 0.08, 0.09, 1.0]
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.passes += 1;
        let now = Instant::now();
        let (since, passes_then) = self.printed;
        if now - since >= Duration::from_secs(5) {
            let rate = (self.passes - passes_then) as f64 / (now - since).as_secs_f64();
            eprintln!("gl_floor: {rate:.0} repaints/s");
            self.printed = (now, self.passes);
        }
        if now >= self.until {
            eprintln!("gl_floor: {} passes", self.passes);
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let phase = (self.passes % 2) as usize;
        let [w, h] = self.picture_size;
        for (i, picture) in self.pictures.iter_mut().enumerate() {
            picture.texture.set_partial(
                [0, 0],
                picture.contents[phase].clone(),
                egui::TextureOptions::LINEAR,
            );
            let min = egui::pos2(
                4.0 + (i % 2) as f32 * (w as f32 + 4.0),
                4.0 + (i / 2) as f32 * (h as f32 + 4.0),
            );
            let rect = egui::Rect::from_min_size(min, egui::vec2(w as f32, h as f32));
            let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
            ui.painter()
                .image(picture.texture.id(), rect, uv, egui::Color32::WHITE);
        }
        ui.ctx().request_repaint_after(self.interval);
    }
}

fn main() -> eframe::Result {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let (width, height) = args
        .next()
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse::<f32>().ok()?, h.parse::<f32>().ok()?))
        })
        .unwrap_or((1280.0, 800.0));
    let rate: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let picture_size = args
        .next()
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some([w.parse::<usize>().ok()?, h.parse::<usize>().ok()?])
        })
        .unwrap_or([640, 360]);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("gl_floor")
            .with_inner_size([width, height]),
        dithering: false,
        ..eframe::NativeOptions::default()
    };
    let make = move |ctx: &egui::Context| -> Vec<Picture> {
        let [w, h] = picture_size;
        let content = |shift: usize| {
            let pixels = (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w + shift, i / w);
                    egui::Color32::from_rgb((x * 3) as u8, (y * 2) as u8, ((x + y) / 2) as u8)
                })
                .collect();
            egui::ColorImage::new([w, h], pixels)
        };
        (0..count)
            .map(|i| Picture {
                texture: ctx.load_texture(
                    format!("picture-{i}"),
                    content(0),
                    egui::TextureOptions::LINEAR,
                ),
                contents: [content(0), content(7)],
            })
            .collect()
    };
    let mut floor = Floor {
        pictures: Vec::new(),
        picture_size,
        until: Instant::now() + Duration::from_secs_f64(seconds),
        interval: Duration::from_secs_f64(1.0 / rate.max(1.0)),
        passes: 0,
        printed: (Instant::now(), 0),
    };
    eframe::run_native(
        "gl_floor",
        options,
        Box::new(move |cc| {
            floor.pictures = make(&cc.egui_ctx);
            Ok(Box::new(floor))
        }),
    )
}
