//! Video pictures on screen, one per stream, refreshed only when the engine published a newer
//! one. On a GL that runs shaders (the app's glow renderer), pictures stay I420 and are drawn
//! by [`I420Renderer`] in a paint callback: no CPU colour conversion. Elsewhere (headless
//! tests, old GL) each new picture is converted to RGBA on the UI thread into an egui texture
//! that is created once and then updated in place. The size each tile is drawn at is told back
//! to the engine ([`VideoFrames::set_shown_size`]), which then copies pictures straight at
//! that size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use egui::{Color32, ColorImage, Painter, Rect, TextureHandle, TextureId, TextureOptions, Vec2};
use vcall_engine::{Stream, VideoFrames, VideoPicture, downscale_factor};

use super::i420_gl::I420Renderer;

struct StreamPicture {
    latest: Arc<VideoPicture>,
    /// Pictures of this stream taken to be drawn (each one drawn at least once).
    uploads: u64,
    /// The RGBA texture, without a GL renderer.
    texture: Option<TextureHandle>,
    /// The reused RGBA conversion buffer, without a GL renderer.
    rgba: Vec<u8>,
}

/// A stream's picture, ready to be drawn into a rect.
pub struct ShownPicture {
    /// The picture's size in pixels (for letterboxing).
    pub size: Vec2,
    stream: Stream,
    how: HowDrawn,
}

enum HowDrawn {
    Texture(TextureId),
    Planes {
        renderer: Arc<Mutex<I420Renderer>>,
        picture: Arc<VideoPicture>,
    },
}

impl ShownPicture {
    /// Draws the picture stretched over `rect` (opaque).
    fn paint(self, painter: &Painter, rect: Rect) {
        match self.how {
            HowDrawn::Texture(id) => {
                let uv = Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                painter.image(id, rect, uv, Color32::WHITE);
            }
            HowDrawn::Planes { renderer, picture } => {
                let callback = I420Renderer::callback(&renderer, self.stream, picture);
                painter.add(egui::PaintCallback {
                    rect,
                    callback: Arc::new(callback),
                });
            }
        }
    }

    /// Whether this picture is drawn by the GL shader (not an egui texture).
    pub fn is_gl(&self) -> bool {
        matches!(self.how, HowDrawn::Planes { .. })
    }
}

/// The pictures of the streams on screen (the self view is [`Stream::Local`]).
#[derive(Default)]
pub struct VideoTextures {
    renderer: Option<Arc<Mutex<I420Renderer>>>,
    streams: HashMap<Stream, StreamPicture>,
    /// Where pictures were drawn since [`Self::start_pass`] (points).
    drawn: Vec<(Stream, Rect)>,
    uploads: u64,
    allocations: u64,
}

impl VideoTextures {
    /// Pictures drawn by `renderer` (the app's GL path).
    pub fn with_renderer(renderer: Arc<Mutex<I420Renderer>>) -> Self {
        Self {
            renderer: Some(renderer),
            ..Self::default()
        }
    }

    /// The picture of `stream`, refreshed from `frames` if a newer one exists; `shown_at` is
    /// the size it will be drawn at, in physical pixels (`None`: keep the picture's size).
    pub fn refresh(
        &mut self,
        ctx: &egui::Context,
        frames: &VideoFrames,
        stream: Stream,
        shown_at: Option<[usize; 2]>,
    ) -> Option<ShownPicture> {
        if let Some([width, height]) = shown_at {
            frames.set_shown_size(stream, [width as u32, height as u32]);
        }
        self.fall_back_if_the_shader_failed();
        if let Some(picture) = frames.latest(stream) {
            self.take(ctx, stream, picture, shown_at);
        }
        let shown = self.streams.get(&stream)?;
        let how = match (&self.renderer, &shown.texture) {
            (Some(renderer), _) => HowDrawn::Planes {
                renderer: Arc::clone(renderer),
                picture: Arc::clone(&shown.latest),
            },
            (None, Some(texture)) => HowDrawn::Texture(texture.id()),
            (None, None) => return None,
        };
        let size = match &how {
            HowDrawn::Texture(_) => shown.texture.as_ref().map(|t| t.size_vec2())?,
            HowDrawn::Planes { picture, .. } => {
                let [w, h] = picture.size();
                Vec2::new(w as f32, h as f32)
            }
        };
        Some(ShownPicture { size, stream, how })
    }

    /// Draws `picture` stretched over `rect` (opaque) and notes where.
    pub fn paint(&mut self, picture: ShownPicture, painter: &Painter, rect: Rect) {
        self.drawn.push((picture.stream, rect));
        picture.paint(painter, rect);
    }

    /// A new pass begins: forgets where pictures were drawn in the last one.
    pub fn start_pass(&mut self) {
        self.drawn.clear();
    }

    /// Where pictures were drawn in this pass so far (points).
    pub fn drawn(&self) -> &[(Stream, Rect)] {
        &self.drawn
    }

    /// A GL whose shader would not compile or link draws nothing: from then on pictures go
    /// through RGBA textures (each stream's next picture is converted).
    fn fall_back_if_the_shader_failed(&mut self) {
        let failed = self.renderer.as_ref().is_some_and(|renderer| {
            renderer
                .lock()
                .map_or(true, |renderer| renderer.failure().is_some())
        });
        if failed {
            self.renderer = None;
            self.streams.clear();
        }
    }

    /// Takes `picture` to be drawn unless this sequence number already was.
    pub fn take(
        &mut self,
        ctx: &egui::Context,
        stream: Stream,
        picture: Arc<VideoPicture>,
        shown_at: Option<[usize; 2]>,
    ) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|shown| shown.latest.sequence == picture.sequence)
        {
            return;
        }
        self.uploads += 1;
        let shown = self.streams.entry(stream).or_insert_with(|| StreamPicture {
            latest: Arc::clone(&picture),
            uploads: 0,
            texture: None,
            rgba: Vec::new(),
        });
        shown.uploads += 1;
        shown.latest = picture;
        if self.renderer.is_none() {
            self.allocations += upload_rgba(ctx, stream, shown, shown_at);
        }
    }

    /// Drops the pictures of streams no longer shown.
    pub fn retain(&mut self, keep: impl Fn(Stream) -> bool) {
        self.streams.retain(|stream, _| keep(*stream));
        if let Some(renderer) = &self.renderer
            && let Ok(mut renderer) = renderer.lock()
        {
            renderer.retain(&keep);
        }
    }

    /// Pictures taken to be drawn so far.
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    /// Pictures taken to be drawn so far per stream on screen (a stream's drawn frame rate).
    pub fn uploads_by_stream(&self) -> Vec<(Stream, u64)> {
        self.streams.iter().map(|(s, t)| (*s, t.uploads)).collect()
    }

    /// RGBA textures created so far (one per stream when updates happen in place; none on the
    /// GL path, whose plane textures are the renderer's).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Whether pictures are drawn by the GL shader.
    pub fn draws_with_gl(&self) -> bool {
        self.renderer.is_some()
    }
}

/// Converts the stream's latest picture into its RGBA texture (subsampled by 2 or 4 first if
/// it still came that much larger than its tile); returns the textures created (0 or 1).
fn upload_rgba(
    ctx: &egui::Context,
    stream: Stream,
    shown: &mut StreamPicture,
    shown_at: Option<[usize; 2]>,
) -> u64 {
    let picture = &shown.latest.planes;
    let factor = shown_at.map_or(1, |shown_size| {
        downscale_factor([picture.width(), picture.height()], shown_size)
    });
    let size = picture.to_rgba_scaled(factor, &mut shown.rgba);
    // RGBA bytes with alpha 255 are exactly premultiplied `Color32`s.
    let Ok(pixels) = bytemuck::try_cast_slice::<u8, Color32>(&shown.rgba) else {
        return 0;
    };
    let image = ColorImage::new(size, pixels.to_vec());
    match &mut shown.texture {
        Some(texture) if texture.size() == size => {
            texture.set_partial([0, 0], image, TextureOptions::LINEAR);
            0
        }
        Some(texture) => {
            texture.set(image, TextureOptions::LINEAR);
            0
        }
        None => {
            shown.texture =
                Some(ctx.load_texture(texture_name(stream), image, TextureOptions::LINEAR));
            1
        }
    }
}

/// The debug name of a stream's texture.
fn texture_name(stream: Stream) -> String {
    match stream {
        Stream::Local => "video-self".to_owned(),
        Stream::Remote(peer) => format!("video-{peer}"),
    }
}

/// The size of `rect` in physical pixels, for [`VideoTextures::refresh`].
pub fn physical_size(ctx: &egui::Context, rect: egui::Rect) -> Option<[usize; 2]> {
    let scale = ctx.pixels_per_point();
    Some([
        (rect.width() * scale).max(1.0) as usize,
        (rect.height() * scale).max(1.0) as usize,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_media::I420Frame;
    use vcall_proto::PeerId;

    fn picture(sequence: u64, width: usize, height: usize) -> Arc<VideoPicture> {
        Arc::new(VideoPicture {
            planes: I420Frame::new(width, height).unwrap(),
            sequence,
        })
    }

    #[test]
    fn textures_are_updated_in_place_and_only_for_new_pictures() {
        let ctx = egui::Context::default();
        let frames = VideoFrames::default();
        let mut textures = VideoTextures::default();
        let peer = Stream::Remote(PeerId(7));
        assert!(textures.refresh(&ctx, &frames, peer, None).is_none());

        frames.publish(peer, picture(1, 64, 36));
        let first = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert!(!first.is_gl());
        textures.refresh(&ctx, &frames, peer, None);
        assert_eq!(textures.uploads(), 1, "same sequence, no upload");

        frames.publish(peer, picture(2, 64, 36));
        let second = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert_eq!(second.size, Vec2::new(64.0, 36.0));
        assert_eq!(textures.uploads(), 2);

        frames.publish(peer, picture(3, 128, 72));
        let resized = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert_eq!(resized.size, Vec2::new(128.0, 72.0));
        assert_eq!(textures.allocations(), 1, "one texture, updated in place");
        assert_eq!(textures.uploads_by_stream(), vec![(peer, 3)]);

        textures.retain(|p| p != peer);
        assert!(
            textures
                .refresh(&ctx, &VideoFrames::default(), peer, None)
                .is_none()
        );
    }

    #[test]
    fn large_pictures_shrink_to_their_tile() {
        let ctx = egui::Context::default();
        let mut textures = VideoTextures::default();
        let peer = Stream::Remote(PeerId(1));
        textures.take(&ctx, peer, picture(1, 1280, 720), Some([600, 338]));
        let frames = VideoFrames::default();
        let shown = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert_eq!(shown.size, Vec2::new(640.0, 360.0));
        // The tile's size goes back to the engine, which then copies at that size.
        textures.refresh(&ctx, &frames, peer, Some([600, 338]));
        assert_eq!(frames.shown_size(peer), Some([600, 338]));
    }

    #[test]
    fn with_a_gl_renderer_pictures_stay_planes_and_nothing_is_converted() {
        let ctx = egui::Context::default();
        let renderer = I420Renderer::shared();
        let mut textures = VideoTextures::with_renderer(Arc::clone(&renderer));
        let frames = VideoFrames::default();
        let peer = Stream::Remote(PeerId(2));
        let published = picture(1, 640, 360);
        frames.publish(peer, Arc::clone(&published));
        let shown = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert!(shown.is_gl());
        assert_eq!(shown.size, Vec2::new(640.0, 360.0));
        assert_eq!((textures.uploads(), textures.allocations()), (1, 0));
        // The very picture the engine published is what the paint callback gets.
        let HowDrawn::Planes { picture: drawn, .. } = &shown.how else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(drawn, &published));
    }

    #[test]
    fn a_shader_that_failed_falls_back_to_rgba_textures() {
        let ctx = egui::Context::default();
        let renderer = I420Renderer::shared();
        let mut textures = VideoTextures::with_renderer(Arc::clone(&renderer));
        let frames = VideoFrames::default();
        let peer = Stream::Remote(PeerId(4));
        frames.publish(peer, picture(1, 64, 36));
        assert!(textures.refresh(&ctx, &frames, peer, None).unwrap().is_gl());

        renderer.lock().unwrap().fail("I420 shader does not link");
        let shown = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert!(!shown.is_gl(), "the same picture, now as an RGBA texture");
        assert!(!textures.draws_with_gl());
        assert_eq!(textures.allocations(), 1);
    }
}
