//! Hands captured or decoded pictures to the UI: copies the I420 planes straight at the size
//! the stream is shown at (a half or a quarter when its tile is that much smaller), into the
//! buffer of the picture the UI has finished with, publishes it and wakes the UI. Colour
//! conversion is the display's (a shader), not this thread's.

use std::sync::Arc;

use vcall_media::I420Frame;

use crate::handle::{VideoFrames, VideoPicture, Wake, Waker};
use crate::state::Stream;

/// One stream's way to the UI.
pub struct PictureOut {
    stream: Stream,
    sequence: u64,
    /// The planes of a picture the UI no longer holds, for the next copy.
    spare: Option<I420Frame>,
}

impl PictureOut {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            sequence: 0,
            spare: None,
        }
    }

    /// Copies `picture` at the size its stream is shown at, publishes it into `frames` and
    /// calls `waker` with [`Wake::Picture`].
    pub fn publish(&mut self, frames: &VideoFrames, waker: Option<&Waker>, picture: &I420Frame) {
        let factor = frames.shown_size(self.stream).map_or(1, |[width, height]| {
            downscale_factor(
                [picture.width(), picture.height()],
                [width as usize, height as usize],
            )
        });
        let mut planes = match self.spare.take() {
            Some(planes) => planes,
            None => I420Frame::new(2, 2).expect("2x2 is a valid size"),
        };
        picture.subsample_into(factor, &mut planes);
        self.sequence += 1;
        let shown = Arc::new(VideoPicture {
            planes,
            sequence: self.sequence,
        });
        if let Some(replaced) = frames.publish(self.stream, shown)
            && let Ok(replaced) = Arc::try_unwrap(replaced)
        {
            self.spare = Some(replaced.planes);
        }
        if let Some(waker) = waker {
            waker(Wake::Picture(self.stream));
        }
    }
}

/// 1, 2 or 4: how much a `source` picture can shrink and still cover `shown` pixels.
pub fn downscale_factor(source: [usize; 2], shown: [usize; 2]) -> usize {
    let mut factor = 1;
    while factor < 4 && source[0] >= shown[0] * factor * 2 && source[1] >= shown[1] * factor * 2 {
        factor *= 2;
    }
    factor
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vcall_proto::PeerId;

    #[test]
    fn pictures_are_copied_at_their_shown_size_and_buffers_reused() {
        let frames = VideoFrames::default();
        let stream = Stream::Remote(PeerId(3));
        let woken = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&woken);
        let waker: Waker = Arc::new(move |wake| log.lock().unwrap().push(wake));
        let mut picture = I420Frame::new(1280, 720).unwrap();
        picture.data_mut()[0] = 99;
        let mut out = PictureOut::new(stream);

        out.publish(&frames, Some(&waker), &picture);
        let first = frames.latest(stream).unwrap();
        assert_eq!((first.size(), first.sequence), ([1280, 720], 1));
        assert_eq!(first.planes, picture, "full size: the same planes");
        drop(first);

        frames.set_shown_size(stream, [600, 338]);
        out.publish(&frames, Some(&waker), &picture);
        let second = frames.latest(stream).unwrap();
        assert_eq!((second.size(), second.sequence), ([640, 360], 2));
        assert_eq!(second.planes.y()[0], 99);
        let second_buffer = second.planes.data().as_ptr();
        drop(second);

        // The UI let go of picture 2: picture 4 is written into its buffer (3 took picture
        // 1's, which was still held by nobody either).
        out.publish(&frames, Some(&waker), &picture);
        out.publish(&frames, Some(&waker), &picture);
        assert_eq!(
            frames.latest(stream).unwrap().planes.data().as_ptr(),
            second_buffer
        );

        // A picture the UI still holds is never written into.
        let held = frames.latest(stream).unwrap();
        out.publish(&frames, Some(&waker), &picture);
        out.publish(&frames, Some(&waker), &picture);
        assert_ne!(
            frames.latest(stream).unwrap().planes.data().as_ptr(),
            held.planes.data().as_ptr()
        );
        assert_eq!(held.sequence, 4);
        assert_eq!(*woken.lock().unwrap(), vec![Wake::Picture(stream); 6]);
    }

    #[test]
    fn large_pictures_shrink_to_their_tile() {
        assert_eq!(downscale_factor([1280, 720], [1280, 720]), 1);
        assert_eq!(downscale_factor([1280, 720], [600, 338]), 2);
        assert_eq!(downscale_factor([1280, 720], [300, 169]), 4);
        assert_eq!(downscale_factor([1280, 720], [100, 56]), 4);
    }
}
