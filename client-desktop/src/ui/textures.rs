//! Decoded pictures as GPU textures: one texture per stream, created once and then updated in
//! place (`TextureHandle::set_partial` over the whole texture: a sub-image upload, not a new
//! texture) only when the engine published a newer picture. The size each tile is drawn at is
//! told back to the engine ([`VideoFrames::set_shown_size`]), which then converts pictures
//! straight to that size; a picture that still comes at least twice as large as its tile is
//! subsampled by 2 or 4 here first.

use std::collections::HashMap;

use egui::{Color32, ColorImage, TextureHandle, TextureOptions};
use vcall_engine::{RgbaFrame, Stream, VideoFrames, downscale_factor};

struct StreamTexture {
    handle: TextureHandle,
    sequence: u64,
    /// Pictures of this stream uploaded (each one drawn at least once).
    uploads: u64,
}

/// The textures of the streams on screen (the self view is [`Stream::Local`]).
#[derive(Default)]
pub struct VideoTextures {
    streams: HashMap<Stream, StreamTexture>,
    uploads: u64,
    allocations: u64,
}

impl VideoTextures {
    /// The texture for `stream`, refreshed from `frames` if a newer picture exists; `shown_at` is
    /// the size it will be drawn at, in physical pixels (`None`: upload at full size).
    pub fn refresh(
        &mut self,
        ctx: &egui::Context,
        frames: &VideoFrames,
        stream: Stream,
        shown_at: Option<[usize; 2]>,
    ) -> Option<&TextureHandle> {
        if let Some([width, height]) = shown_at {
            frames.set_shown_size(stream, [width as u32, height as u32]);
        }
        if let Some(frame) = frames.latest(stream) {
            self.upload(ctx, stream, &frame, shown_at);
        }
        self.streams.get(&stream).map(|stream| &stream.handle)
    }

    /// Uploads `frame` unless this sequence number is already on the GPU.
    pub fn upload(
        &mut self,
        ctx: &egui::Context,
        stream: Stream,
        frame: &RgbaFrame,
        shown_at: Option<[usize; 2]>,
    ) {
        let (width, height) = (frame.width as usize, frame.height as usize);
        if width == 0 || height == 0 || frame.pixels.len() != width * height * 4 {
            return; // malformed picture: keep the previous one
        }
        if self
            .streams
            .get(&stream)
            .is_some_and(|stream| stream.sequence == frame.sequence)
        {
            return;
        }
        // RGBA bytes with alpha 255 are exactly premultiplied `Color32`s.
        let Ok(pixels) = bytemuck::try_cast_slice::<u8, Color32>(&frame.pixels) else {
            return;
        };
        let factor = shown_at.map_or(1, |[shown_width, shown_height]| {
            downscale_factor([width, height], [shown_width, shown_height])
        });
        let image = if factor == 1 {
            ColorImage::new([width, height], pixels.to_vec())
        } else {
            let (size, pixels) = subsample(pixels, [width, height], factor);
            ColorImage::new(size, pixels)
        };
        self.uploads += 1;
        match self.streams.get_mut(&stream) {
            Some(stream) if stream.handle.size() == image.size => {
                stream
                    .handle
                    .set_partial([0, 0], image, TextureOptions::LINEAR);
                stream.sequence = frame.sequence;
                stream.uploads += 1;
            }
            Some(stream) => {
                stream.handle.set(image, TextureOptions::LINEAR);
                stream.sequence = frame.sequence;
                stream.uploads += 1;
            }
            None => {
                self.allocations += 1;
                let handle = ctx.load_texture(texture_name(stream), image, TextureOptions::LINEAR);
                self.streams.insert(
                    stream,
                    StreamTexture {
                        handle,
                        sequence: frame.sequence,
                        uploads: 1,
                    },
                );
            }
        }
    }

    /// Drops textures of streams no longer shown.
    pub fn retain(&mut self, keep: impl Fn(Stream) -> bool) {
        self.streams.retain(|stream, _| keep(*stream));
    }

    /// Pictures uploaded so far.
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    /// Pictures uploaded so far per stream on screen (a stream's drawn frame rate, counted).
    pub fn uploads_by_stream(&self) -> Vec<(Stream, u64)> {
        self.streams.iter().map(|(s, t)| (*s, t.uploads)).collect()
    }

    /// Textures created so far (one per stream when updates happen in place).
    pub fn allocations(&self) -> u64 {
        self.allocations
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

/// Keeps every `factor`-th pixel of every `factor`-th row (cheap enough for the UI thread;
/// the GPU's bilinear filter then draws the texture at about 1:1, so little aliasing shows).
pub fn subsample(
    pixels: &[Color32],
    [width, height]: [usize; 2],
    factor: usize,
) -> ([usize; 2], Vec<Color32>) {
    let (out_width, out_height) = (width / factor, height / factor);
    let mut out = Vec::with_capacity(out_width * out_height);
    for row in pixels.chunks_exact(width).step_by(factor).take(out_height) {
        out.extend(row.iter().step_by(factor).take(out_width));
    }
    ([out_width, out_height], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vcall_proto::PeerId;

    fn frame(sequence: u64, width: u32, height: u32) -> Arc<RgbaFrame> {
        Arc::new(RgbaFrame {
            width,
            height,
            pixels: vec![200; (width * height * 4) as usize],
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

        frames.publish(peer, frame(1, 64, 36));
        let first_id = textures.refresh(&ctx, &frames, peer, None).unwrap().id();
        textures.refresh(&ctx, &frames, peer, None);
        assert_eq!(textures.uploads(), 1, "same sequence, no upload");

        frames.publish(peer, frame(2, 64, 36));
        let second = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert_eq!(second.id(), first_id, "same texture, updated in place");
        assert_eq!(textures.uploads(), 2);

        frames.publish(peer, frame(3, 128, 72));
        let resized = textures.refresh(&ctx, &frames, peer, None).unwrap();
        assert_eq!(resized.size(), [128, 72]);
        assert_eq!(textures.allocations(), 1);

        // A malformed picture is ignored rather than panicking.
        let mut bad = (*frame(4, 64, 36)).clone();
        bad.pixels.truncate(10);
        frames.publish(peer, Arc::new(bad));
        assert_eq!(
            textures.refresh(&ctx, &frames, peer, None).unwrap().size(),
            [128, 72]
        );

        textures.retain(|p| p != peer);
        assert!(
            textures
                .refresh(&ctx, &VideoFrames::default(), peer, None)
                .is_none()
        );
    }

    #[test]
    fn large_pictures_shrink_to_their_tile() {
        let pixels: Vec<Color32> = (0..16).map(|v| Color32::from_gray(v * 10)).collect();
        let (size, out) = subsample(&pixels, [4, 4], 2);
        assert_eq!(size, [2, 2]);
        assert_eq!(out, [0, 20, 80, 100].map(Color32::from_gray));

        let ctx = egui::Context::default();
        let mut textures = VideoTextures::default();
        textures.upload(
            &ctx,
            Stream::Remote(PeerId(1)),
            &frame(1, 1280, 720),
            Some([600, 338]),
        );
        let frames = VideoFrames::default();
        assert_eq!(
            textures
                .refresh(&ctx, &frames, Stream::Remote(PeerId(1)), None)
                .unwrap()
                .size(),
            [640, 360]
        );
        // The tile's size goes back to the engine, which then converts at that size.
        textures.refresh(&ctx, &frames, Stream::Remote(PeerId(1)), Some([600, 338]));
        assert_eq!(
            frames.shown_size(Stream::Remote(PeerId(1))),
            Some([600, 338])
        );
    }
}
