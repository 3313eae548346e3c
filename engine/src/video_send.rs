//! The video-send thread: captures from the source at the frame rate, encodes H.264 in two
//! temporal layers (a keyframe every 10 s and on request; the bitrate and whether the upper
//! layer is sent follow rate control) and hands each frame to the driver laid out for sealing
//! in place. Never touches the network. Its control channel is never dropped from.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{Sender, UnboundedSender};
use vcall_media::I420Frame;
use vcall_media::source::{BusyPatternSource, TestPatternSource, VideoSource, Y4mFileSource};
use vcall_media::video_codec::{H264Encoder, H264EncoderConfig};
use vcall_proto::media::VideoMeta;

use crate::config::{SourceError, VideoInput, VideoSettings};
use crate::core::{LocalMedia, MediaEvent, VideoTarget};
use crate::handle::{VideoFrames, Waker};
use crate::picture_out::PictureOut;
use crate::state::Stream;
use crate::wall_clock_us;

/// A keyframe at least this often, as a last safety net: receivers ask for one when a loss
/// needs it (and again while none comes), and each keyframe is many frames' worth of bytes (a
/// 720p one every 2 s kept an 800 kbit/s uplink busy with keyframes).
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(10);

/// How many encoded frames [`VideoInput::ReplayPattern`] records and then repeats (2 s at
/// 30 fps).
pub const REPLAY_FRAMES: usize = 60;

/// One encoded frame kept for replay.
struct RecordedFrame {
    bytes: Vec<u8>,
    keyframe: bool,
    layer: u8,
    width: u16,
    height: u16,
}

/// Commands to the capture+encode thread.
pub(crate) enum VideoControl {
    SetInput(VideoInput),
    SetCameraOff(bool),
    ForceKeyframe,
    /// Rate control's new target.
    SetTarget(VideoTarget),
}

struct ActiveSource {
    source: Box<dyn VideoSource + Send>,
    test_pattern: bool,
    /// For [`VideoInput::ReplayPattern`]: the frames recorded so far (replayed once full).
    replay: Option<Vec<RecordedFrame>>,
}

fn open_input(
    input: VideoInput,
    settings: &VideoSettings,
) -> Result<Option<ActiveSource>, SourceError> {
    Ok(match input {
        VideoInput::Off => None,
        VideoInput::TestPattern => Some(ActiveSource {
            source: Box::new(
                TestPatternSource::new(settings.width as usize, settings.height as usize)
                    .map_err(SourceError::TestPattern)?,
            ),
            test_pattern: true,
            replay: None,
        }),
        VideoInput::ReplayPattern => Some(ActiveSource {
            source: Box::new(
                TestPatternSource::new(settings.width as usize, settings.height as usize)
                    .map_err(SourceError::TestPattern)?,
            ),
            test_pattern: false,
            replay: Some(Vec::with_capacity(REPLAY_FRAMES)),
        }),
        VideoInput::BusyPattern => Some(ActiveSource {
            source: Box::new(
                BusyPatternSource::new(settings.width as usize, settings.height as usize)
                    .map_err(SourceError::TestPattern)?,
            ),
            test_pattern: false,
            replay: None,
        }),
        VideoInput::Y4m(path) => Some(ActiveSource {
            source: Box::new(
                Y4mFileSource::open(&path, true)
                    .map_err(|source| SourceError::File { path, source })?,
            ),
            test_pattern: false,
            replay: None,
        }),
        VideoInput::Source(source) => Some(ActiveSource {
            source,
            test_pattern: false,
            replay: None,
        }),
    })
}

/// Everything the capture+encode thread needs.
pub(crate) struct VideoSender {
    pub settings: VideoSettings,
    pub input: VideoInput,
    pub camera_off: bool,
    pub control: Receiver<VideoControl>,
    /// Encoded frames (bounded: dropped when the driver is behind).
    pub media: Sender<LocalMedia>,
    pub events: UnboundedSender<MediaEvent>,
    /// Local preview (published as [`Stream::Local`]) when set.
    pub preview: Option<(Arc<VideoFrames>, Option<Waker>)>,
}

impl VideoSender {
    /// Runs until the control channel closes; gives back the source it was using (the
    /// camera), so the caller decides when the device is released.
    pub fn run(self) -> Option<Box<dyn VideoSource + Send>> {
        let VideoSender {
            settings,
            input,
            mut camera_off,
            control,
            media,
            events,
            preview,
        } = self;
        let report = |e: String| {
            let _ = events.send(MediaEvent::Warning(e));
        };
        let mut active = open_input(input, &settings).unwrap_or_else(|e| {
            report(e.to_string());
            None
        });
        let period = Duration::from_secs_f64(1.0 / settings.fps.max(1) as f64);
        let start = Instant::now();
        let mut next_tick = start;
        let mut frame = I420Frame::new(2, 2).expect("2x2 is valid");
        let mut encoder: Option<H264Encoder> = None;
        let mut encoded = Vec::new();
        let mut frame_number: u64 = 0;
        let mut last_keyframe = start;
        let mut preview_out = PictureOut::new(Stream::Local);
        // The rate control's start, which it tells us again once it moves.
        let mut target = VideoTarget {
            bitrate_kbps: crate::core::start_kbps(settings.bitrate_kbps),
            base_layer_only: false,
        };
        loop {
            loop {
                match control.try_recv() {
                    Ok(VideoControl::SetInput(input)) => {
                        active = open_input(input, &settings).unwrap_or_else(|e| {
                            report(e.to_string());
                            None
                        });
                        if let Some(enc) = encoder.as_mut() {
                            enc.force_keyframe();
                        }
                    }
                    Ok(VideoControl::SetCameraOff(off)) => {
                        if camera_off
                            && !off
                            && let Some(enc) = encoder.as_mut()
                        {
                            enc.force_keyframe();
                        }
                        camera_off = off;
                    }
                    Ok(VideoControl::ForceKeyframe) => {
                        if let Some(enc) = encoder.as_mut() {
                            enc.force_keyframe();
                        }
                    }
                    Ok(VideoControl::SetTarget(new)) => {
                        target = new;
                        if let Some(enc) = encoder.as_mut()
                            && let Err(e) = enc.set_bitrate(new.bitrate_kbps.saturating_mul(1000))
                        {
                            report(format!("video encoder: {e}"));
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return active.map(|a| a.source),
                }
            }
            let now = Instant::now();
            if next_tick > now {
                std::thread::sleep(next_tick - now);
            } else if now - next_tick > period * 3 {
                next_tick = now; // fell far behind (e.g. suspended): do not burst
            }
            next_tick += period;
            let Some(src) = active.as_mut().filter(|_| !camera_off) else {
                continue;
            };
            if let Some(recorded) = src.replay.as_ref().filter(|r| r.len() == REPLAY_FRAMES) {
                let again = &recorded[frame_number as usize % REPLAY_FRAMES];
                let meta = VideoMeta {
                    capture_time_us: wall_clock_us(),
                    frame_number: frame_number as u32,
                    keyframe: again.keyframe,
                    test_pattern: false,
                    layer: again.layer,
                    previous_layer: 0,
                    width: again.width,
                    height: again.height,
                };
                if media
                    .try_send(LocalMedia::video(meta, &again.bytes))
                    .is_err()
                    && media.is_closed()
                {
                    return active.map(|a| a.source);
                }
                frame_number += 1;
                continue;
            }
            match src.source.next_frame(frame_number, &mut frame) {
                Ok(true) => {}
                Ok(false) => {
                    report("the video source ended; camera turned off".into());
                    active = None;
                    continue;
                }
                Err(e) => {
                    report(format!("camera error: {e}; camera turned off"));
                    active = None;
                    continue;
                }
            }
            let capture_time_us = wall_clock_us();
            let (w, h) = (frame.width(), frame.height());
            if encoder
                .as_ref()
                .is_none_or(|e| e.config().width != w || e.config().height != h)
            {
                let config = H264EncoderConfig {
                    width: w,
                    height: h,
                    max_frame_rate: settings.fps as f32,
                    bitrate_bps: target.bitrate_kbps.saturating_mul(1000),
                    keyframe_interval_frames: 0,
                    temporal_layers: 2,
                };
                match H264Encoder::new(config) {
                    Ok(e) => encoder = Some(e),
                    Err(e) => {
                        report(format!("video encoder: {e}; camera turned off"));
                        active = None;
                        continue;
                    }
                }
            }
            let Some(enc) = encoder.as_mut() else {
                continue;
            };
            let recording_starts = src.replay.as_ref().is_some_and(|r| r.is_empty());
            if recording_starts || now.duration_since(last_keyframe) >= KEYFRAME_INTERVAL {
                enc.force_keyframe();
            }
            let timestamp_ms = start.elapsed().as_millis() as u64;
            let info = match enc.encode_at(&frame, timestamp_ms, &mut encoded) {
                Ok(info) => info,
                Err(e) => {
                    report(format!("video encoder: {e}"));
                    continue;
                }
            };
            if info.is_keyframe {
                last_keyframe = now;
            }
            // At a very low rate only the base layer goes out: half the frame rate, and the
            // frames left out are ones nothing refers to.
            let shed = target.base_layer_only && info.temporal_layer > 0 && !info.is_keyframe;
            if let Some(recorded) = src.replay.as_mut()
                && info.len > 0
                && (info.is_keyframe || !recorded.is_empty())
            {
                recorded.push(RecordedFrame {
                    bytes: encoded.clone(),
                    keyframe: info.is_keyframe,
                    layer: info.temporal_layer,
                    width: w as u16,
                    height: h as u16,
                });
            }
            if info.len > 0 && !shed {
                let meta = VideoMeta {
                    capture_time_us,
                    frame_number: frame_number as u32,
                    keyframe: info.is_keyframe,
                    test_pattern: src.test_pattern,
                    layer: info.temporal_layer,
                    // Written by the core, which knows which frame went out before.
                    previous_layer: 0,
                    width: w as u16,
                    height: h as u16,
                };
                // Laid out for sealing in place; dropped (like a lost frame) when the driver
                // is behind.
                if media.try_send(LocalMedia::video(meta, &encoded)).is_err() && media.is_closed() {
                    return active.map(|a| a.source);
                }
            }
            if let Some((frames, waker)) = &preview {
                preview_out.publish(frames, waker.as_ref(), &frame);
            }
            frame_number += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_proto::e2ee::SealedHeader;

    /// The access unit of a frame handed to the driver.
    fn access_unit(media: &LocalMedia) -> (&VideoMeta, &[u8]) {
        match media {
            LocalMedia::Video { meta, frame } => {
                (meta, &frame[SealedHeader::LEN + VideoMeta::LEN..])
            }
            LocalMedia::Audio { .. } => panic!("audio from the video thread"),
        }
    }

    #[test]
    fn the_replay_pattern_sends_its_recorded_loop_again_starting_with_a_keyframe() {
        let (control_tx, control) = std::sync::mpsc::channel();
        let (media, mut media_rx) = tokio::sync::mpsc::channel(4 * REPLAY_FRAMES);
        let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = VideoSender {
            settings: VideoSettings {
                width: 160,
                height: 96,
                fps: 60,
                bitrate_kbps: 300,
            },
            input: VideoInput::ReplayPattern,
            camera_off: false,
            control,
            media,
            events,
            preview: None,
        };
        let thread = std::thread::spawn(move || sender.run());
        let mut sent = Vec::new();
        while sent.len() < REPLAY_FRAMES + 3 {
            sent.push(media_rx.blocking_recv().expect("the sender runs"));
        }
        drop(control_tx);
        drop(media_rx);
        thread.join().unwrap();
        let (first, first_bytes) = access_unit(&sent[0]);
        assert!(first.keyframe);
        for i in 0..3 {
            let (meta, bytes) = access_unit(&sent[REPLAY_FRAMES + i]);
            let (recorded_meta, recorded) = access_unit(&sent[i]);
            assert_eq!(
                bytes,
                recorded,
                "frame {} repeats frame {i}",
                REPLAY_FRAMES + i
            );
            assert_eq!(meta.keyframe, recorded_meta.keyframe);
            assert_eq!(
                meta.frame_number,
                (REPLAY_FRAMES + i) as u32,
                "numbers go on"
            );
            assert!(!meta.test_pattern);
        }
        assert_eq!(first_bytes, access_unit(&sent[REPLAY_FRAMES]).1);
    }
}
