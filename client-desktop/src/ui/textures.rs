//! Decoded pictures as GPU textures: one texture per stream, created once and then updated in
//! place (`TextureHandle::set`) only when the engine published a newer picture.

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};
use vcall_proto::PeerId;

use crate::engine::{RgbaFrame, VideoFrames};

struct StreamTexture {
    handle: TextureHandle,
    sequence: u64,
}

/// The textures of the streams on screen, keyed by peer (`PeerId::NONE` = self view).
#[derive(Default)]
pub struct VideoTextures {
    streams: HashMap<PeerId, StreamTexture>,
    uploads: u64,
    allocations: u64,
}

impl VideoTextures {
    /// The texture for `peer`, refreshed from `frames` if a newer picture exists.
    pub fn refresh(
        &mut self,
        ctx: &egui::Context,
        frames: &VideoFrames,
        peer: PeerId,
    ) -> Option<&TextureHandle> {
        if let Some(frame) = frames.latest(peer) {
            self.upload(ctx, peer, &frame);
        }
        self.streams.get(&peer).map(|stream| &stream.handle)
    }

    /// Uploads `frame` unless this sequence number is already on the GPU.
    pub fn upload(&mut self, ctx: &egui::Context, peer: PeerId, frame: &RgbaFrame) {
        let (width, height) = (frame.width as usize, frame.height as usize);
        if width == 0 || height == 0 || frame.pixels.len() != width * height * 4 {
            return; // malformed picture: keep the previous one
        }
        if self
            .streams
            .get(&peer)
            .is_some_and(|stream| stream.sequence == frame.sequence)
        {
            return;
        }
        // Alpha is always 255, so the premultiplied constructor is exact (and skips a division).
        let image = ColorImage::from_rgba_premultiplied([width, height], &frame.pixels);
        self.uploads += 1;
        match self.streams.get_mut(&peer) {
            Some(stream) => {
                stream.handle.set(image, TextureOptions::LINEAR);
                stream.sequence = frame.sequence;
            }
            None => {
                self.allocations += 1;
                let handle =
                    ctx.load_texture(format!("video-{peer}"), image, TextureOptions::LINEAR);
                self.streams.insert(
                    peer,
                    StreamTexture {
                        handle,
                        sequence: frame.sequence,
                    },
                );
            }
        }
    }

    /// Drops textures of streams no longer shown.
    pub fn retain(&mut self, keep: impl Fn(PeerId) -> bool) {
        self.streams.retain(|peer, _| keep(*peer));
    }

    /// Pictures uploaded so far.
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    /// Textures created so far (one per stream when updates happen in place).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
        let peer = PeerId(7);
        assert!(textures.refresh(&ctx, &frames, peer).is_none());

        frames.publish(peer, frame(1, 64, 36));
        let first_id = textures.refresh(&ctx, &frames, peer).unwrap().id();
        textures.refresh(&ctx, &frames, peer);
        assert_eq!(textures.uploads(), 1, "same sequence, no upload");

        frames.publish(peer, frame(2, 64, 36));
        let second = textures.refresh(&ctx, &frames, peer).unwrap();
        assert_eq!(second.id(), first_id, "same texture, updated in place");
        assert_eq!(textures.uploads(), 2);

        frames.publish(peer, frame(3, 128, 72));
        let resized = textures.refresh(&ctx, &frames, peer).unwrap();
        assert_eq!(resized.size(), [128, 72]);
        assert_eq!(textures.allocations(), 1);

        // A malformed picture is ignored rather than panicking.
        let mut bad = (*frame(4, 64, 36)).clone();
        bad.pixels.truncate(10);
        frames.publish(peer, Arc::new(bad));
        assert_eq!(
            textures.refresh(&ctx, &frames, peer).unwrap().size(),
            [128, 72]
        );

        textures.retain(|p| p != peer);
        assert!(
            textures
                .refresh(&ctx, &VideoFrames::default(), peer)
                .is_none()
        );
    }
}
