//! The lobby's self-preview: two threads that pull whatever camera (or test pattern) and
//! microphone currently sit in the [`PreviewSlots`], publishing RGBA pictures for the preview
//! tile and driving the level meter. Sources are swapped in and taken out (to hand them to a
//! call) by whoever holds the slots — never by the UI thread, which only reads the pictures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vcall_engine::{PictureOut, Stream, VideoFrames, Wake, Waker};
use vcall_media::source::{AudioSink, AudioSource, VideoSource};
use vcall_media::{AUDIO_FRAME_SAMPLES, I420Frame};

/// Preview frame rate: smooth enough to check framing, cheap on two cores.
const PREVIEW_FPS: u64 = 15;
/// How often an empty slot is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(50);

pub type VideoBox = Box<dyn VideoSource + Send>;
pub type AudioBox = Box<dyn AudioSource + Send>;
pub type SinkBox = Box<dyn AudioSink + Send>;

/// The local devices currently open outside a call.
#[derive(Clone, Default)]
pub struct PreviewSlots {
    pub video: Arc<Mutex<Option<VideoBox>>>,
    pub audio: Arc<Mutex<Option<AudioBox>>>,
    pub speaker: Arc<Mutex<Option<SinkBox>>>,
}

impl PreviewSlots {
    /// Replaces the video source; returns the previous one (close it off the UI thread).
    pub fn put_video(&self, source: Option<VideoBox>) -> Option<VideoBox> {
        self.video
            .lock()
            .ok()
            .and_then(|mut slot| std::mem::replace(&mut *slot, source))
    }

    /// Replaces the audio source; returns the previous one.
    pub fn put_audio(&self, source: Option<AudioBox>) -> Option<AudioBox> {
        self.audio
            .lock()
            .ok()
            .and_then(|mut slot| std::mem::replace(&mut *slot, source))
    }

    /// Replaces the speaker; returns the previous one.
    pub fn put_speaker(&self, sink: Option<SinkBox>) -> Option<SinkBox> {
        self.speaker
            .lock()
            .ok()
            .and_then(|mut slot| std::mem::replace(&mut *slot, sink))
    }

    /// Takes everything out (to start a call with).
    pub fn take_all(&self) -> (Option<VideoBox>, Option<AudioBox>, Option<SinkBox>) {
        (
            self.put_video(None),
            self.put_audio(None),
            self.put_speaker(None),
        )
    }
}

/// The running preview threads; dropping stops them.
pub struct LocalPreview {
    slots: PreviewSlots,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LocalPreview {
    /// Starts the threads: pictures go to `frames` under [`Stream::Local`], `waker` is called
    /// after each one.
    pub fn start(frames: Arc<VideoFrames>, waker: Option<Waker>) -> Self {
        let slots = PreviewSlots::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (slot, stop) = (Arc::clone(&slots.video), Arc::clone(&stop));
            if let Ok(thread) = std::thread::Builder::new()
                .name("preview-video".into())
                .spawn(move || run_video(&slot, &stop, &frames, waker.as_ref()))
            {
                threads.push(thread);
            }
        }
        {
            let (slot, stop) = (Arc::clone(&slots.audio), Arc::clone(&stop));
            if let Ok(thread) = std::thread::Builder::new()
                .name("preview-audio".into())
                .spawn(move || run_audio(&slot, &stop))
            {
                threads.push(thread);
            }
        }
        Self {
            slots,
            stop,
            threads,
        }
    }

    /// The slots feeding this preview.
    pub fn slots(&self) -> &PreviewSlots {
        &self.slots
    }
}

impl Drop for LocalPreview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Threads notice within one frame; they are not joined so a slow device never holds up
        // the caller (they own nothing but their slot handles).
        self.threads.clear();
    }
}

fn pace(next: &mut Instant, interval: Duration) {
    *next += interval;
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

fn run_video(
    slot: &Mutex<Option<VideoBox>>,
    stop: &AtomicBool,
    frames: &VideoFrames,
    waker: Option<&Waker>,
) {
    let Ok(mut frame) = I420Frame::new(2, 2) else {
        return;
    };
    let interval = Duration::from_millis(1000 / PREVIEW_FPS);
    let mut next = Instant::now();
    let mut number = 0u64;
    let mut had_source = false;
    let mut out = PictureOut::new(Stream::Local);
    while !stop.load(Ordering::Relaxed) {
        let pulled = match slot.lock() {
            Ok(mut source) => match source.as_mut() {
                Some(source) => matches!(source.next_frame(number, &mut frame), Ok(true)),
                None => false,
            },
            Err(_) => return,
        };
        if !pulled {
            if had_source {
                frames.remove(Stream::Local);
                if let Some(waker) = waker {
                    waker(Wake::State);
                }
                had_source = false;
            }
            std::thread::sleep(IDLE_POLL);
            next = Instant::now();
            continue;
        }
        had_source = true;
        out.publish(frames, waker, &frame);
        number += 1;
        pace(&mut next, interval);
    }
}

fn run_audio(slot: &Mutex<Option<AudioBox>>, stop: &AtomicBool) {
    let mut block = vec![0.0; AUDIO_FRAME_SAMPLES];
    let interval = Duration::from_millis(20);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let pulled = match slot.lock() {
            // The source's meter wrapper records the level.
            Ok(mut source) => source
                .as_mut()
                .is_some_and(|source| source.fill(&mut block).is_ok()),
            Err(_) => return,
        };
        if pulled {
            pace(&mut next, interval);
        } else {
            std::thread::sleep(IDLE_POLL);
            next = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::level::{LevelMeter, MeteredSource};
    use vcall_media::source::{TestPatternSource, ToneSource};

    #[test]
    fn preview_publishes_pictures_and_levels_and_gives_the_sources_back() {
        let frames = Arc::new(VideoFrames::default());
        let meter = LevelMeter::default();
        let preview = LocalPreview::start(Arc::clone(&frames), None);
        preview
            .slots()
            .put_video(Some(Box::new(TestPatternSource::new(320, 180).unwrap())));
        preview.slots().put_audio(Some(Box::new(MeteredSource::new(
            ToneSource::for_name("Ada"),
            meter.clone(),
        ))));
        let deadline = Instant::now() + Duration::from_secs(10);
        while (frames.latest(Stream::Local).is_none() || meter.rms() == 0.0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let picture = frames.latest(Stream::Local).expect("a preview picture");
        assert_eq!(picture.size(), [320, 180]);
        assert!(meter.rms() > 0.05);
        let (video, audio, speaker) = preview.slots().take_all();
        assert!(video.is_some() && audio.is_some() && speaker.is_none());
        // With the camera taken away, the stale preview picture disappears.
        let deadline = Instant::now() + Duration::from_secs(10);
        while frames.latest(Stream::Local).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(frames.latest(Stream::Local).is_none());
    }
}
