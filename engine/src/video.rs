//! The video threads: capture+encode (paced at the frame rate) and decode for every peer.
//! Neither touches the network: they exchange plaintexts with the driver by channel. Each has
//! a control channel that is never dropped from and is drained before its bounded data queue.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{Sender, UnboundedSender};
use vcall_proto::PeerId;
use vcall_proto::media::VideoMeta;

use crate::config::{VideoInput, VideoSettings};
use crate::core::{LocalMedia, MediaEvent, VideoToDecode};
use crate::handle::{RgbaFrame, VideoFrames, Waker};
use crate::state::Stream;
use crate::wall_clock_us;
use vcall_media::I420Frame;
use vcall_media::analysis::PatternPsnrMeter;
use vcall_media::source::{TestPatternSource, VideoSource, Y4mFileSource};
use vcall_media::video_codec::{H264Decoder, H264Encoder, H264EncoderConfig};
use vcall_media::y4m::{Y4mHeader, Y4mWriter};

/// A keyframe at least this often, as a safety net for receivers that lost one.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// Every this many decoded test-pattern frames, one is compared with the regenerated source.
const PSNR_SAMPLE_EVERY: u64 = 10;

/// Commands to the capture+encode thread.
pub(crate) enum VideoControl {
    SetInput(VideoInput),
    SetCameraOff(bool),
    ForceKeyframe,
}

struct ActiveSource {
    source: Box<dyn VideoSource + Send>,
    test_pattern: bool,
}

fn open_input(input: VideoInput, settings: &VideoSettings) -> Result<Option<ActiveSource>, String> {
    Ok(match input {
        VideoInput::Off => None,
        VideoInput::TestPattern => Some(ActiveSource {
            source: Box::new(
                TestPatternSource::new(settings.width as usize, settings.height as usize)
                    .map_err(|e| format!("test pattern: {e}"))?,
            ),
            test_pattern: true,
        }),
        VideoInput::Y4m(path) => Some(ActiveSource {
            source: Box::new(
                Y4mFileSource::open(&path, true)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            test_pattern: false,
        }),
        VideoInput::Source(source) => Some(ActiveSource {
            source,
            test_pattern: false,
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
            report(e);
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
        let mut preview_rgba = Vec::new();
        let mut preview_seq = 0u64;
        loop {
            loop {
                match control.try_recv() {
                    Ok(VideoControl::SetInput(input)) => {
                        active = open_input(input, &settings).unwrap_or_else(|e| {
                            report(e);
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
                    bitrate_bps: settings.bitrate_kbps.saturating_mul(1000),
                    keyframe_interval_frames: 0,
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
            if now.duration_since(last_keyframe) >= KEYFRAME_INTERVAL {
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
            if info.len > 0 {
                let meta = VideoMeta {
                    capture_time_us,
                    frame_number: frame_number as u32,
                    keyframe: info.is_keyframe,
                    test_pattern: src.test_pattern,
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
                frame.to_rgba(&mut preview_rgba);
                preview_seq += 1;
                frames.publish(
                    Stream::Local,
                    Arc::new(RgbaFrame {
                        width: w as u32,
                        height: h as u32,
                        pixels: preview_rgba.clone(),
                        sequence: preview_seq,
                    }),
                );
                if let Some(w) = waker {
                    w();
                }
            }
            frame_number += 1;
        }
    }
}

/// Control for the decode thread (lossless, drained before frames).
pub(crate) enum DecoderControl {
    /// The peer left: drop its decoder and finish its recording.
    PeerLeft(PeerId),
}

struct PeerDecoder {
    decoder: H264Decoder,
    picture: I420Frame,
    psnr: PatternPsnrMeter,
    rgba: Vec<u8>,
    sequence: u64,
    pattern_frames: u64,
    recorder: Option<Y4mWriter<BufWriter<File>>>,
    recorder_failed: bool,
}

/// Everything the decode thread needs.
pub(crate) struct VideoReceiver {
    pub control: crossbeam_channel::Receiver<DecoderControl>,
    /// Decrypted frames (bounded).
    pub frames_in: crossbeam_channel::Receiver<VideoToDecode>,
    pub events: UnboundedSender<MediaEvent>,
    pub frames: Arc<VideoFrames>,
    pub want_rgba: bool,
    pub record_dir: Option<PathBuf>,
    pub fps: u32,
    pub waker: Option<Waker>,
}

impl VideoReceiver {
    /// Runs until both channels close.
    pub fn run(self) {
        let mut peers: HashMap<PeerId, PeerDecoder> = HashMap::new();
        loop {
            // Control first, always.
            while let Ok(control) = self.control.try_recv() {
                self.on_control(&mut peers, control);
            }
            crossbeam_channel::select! {
                recv(self.control) -> control => match control {
                    Ok(control) => self.on_control(&mut peers, control),
                    Err(_) => break,
                },
                recv(self.frames_in) -> job => match job {
                    Ok(job) => self.on_frame(&mut peers, job),
                    Err(_) => break,
                },
            }
        }
        for (_, mut p) in peers {
            if let Some(r) = p.recorder.take() {
                let _ = r.into_inner();
            }
        }
    }

    fn on_control(&self, peers: &mut HashMap<PeerId, PeerDecoder>, control: DecoderControl) {
        match control {
            DecoderControl::PeerLeft(peer) => {
                if let Some(mut p) = peers.remove(&peer)
                    && let Some(r) = p.recorder.take()
                {
                    let _ = r.into_inner();
                }
                self.frames.remove(Stream::Remote(peer));
            }
        }
    }

    fn on_frame(&self, peers: &mut HashMap<PeerId, PeerDecoder>, job: VideoToDecode) {
        let peer = job.peer;
        let p = match peers.entry(peer) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match H264Decoder::new() {
                Ok(decoder) => v.insert(PeerDecoder {
                    decoder,
                    picture: I420Frame::new(2, 2).expect("valid"),
                    psnr: PatternPsnrMeter::new(),
                    rgba: Vec::new(),
                    sequence: 0,
                    pattern_frames: 0,
                    recorder: None,
                    recorder_failed: false,
                }),
                Err(e) => {
                    let _ = self
                        .events
                        .send(MediaEvent::Warning(format!("video decoder: {e}")));
                    return;
                }
            },
        };
        self.decode_one(peer, p, &job.meta, job.access_unit());
    }

    fn decode_one(&self, peer: PeerId, p: &mut PeerDecoder, meta: &VideoMeta, annex_b: &[u8]) {
        match p.decoder.decode(annex_b, &mut p.picture) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                let _ = self.events.send(MediaEvent::DecoderNeedsKeyframe { peer });
                return;
            }
        }
        let latency_ms = (wall_clock_us().saturating_sub(meta.capture_time_us)) as f32 / 1000.0;
        let (w, h) = (p.picture.width() as u32, p.picture.height() as u32);
        let mut psnr_db = None;
        if meta.test_pattern {
            p.pattern_frames += 1;
            if p.pattern_frames % PSNR_SAMPLE_EVERY == 1 {
                // The meter reads the frame number from the picture itself and regenerates
                // that source frame; identical pictures give infinity, capped to keep means finite.
                psnr_db = p.psnr.measure(&p.picture).map(|(_, db)| db.min(99.0));
            }
        }
        let _ = self.events.send(MediaEvent::VideoDecoded {
            peer,
            width: w,
            height: h,
            latency_ms,
            psnr_db,
        });
        if let Some(dir) = &self.record_dir {
            if p.recorder.is_none() && !p.recorder_failed {
                let path = dir.join(format!("peer-{}.y4m", peer.0));
                let header = Y4mHeader {
                    width: w as usize,
                    height: h as usize,
                    frame_rate: (self.fps.max(1), 1),
                };
                match File::create(&path)
                    .map_err(vcall_media::MediaError::from)
                    .and_then(|f| Y4mWriter::new(BufWriter::new(f), header))
                {
                    Ok(r) => p.recorder = Some(r),
                    Err(e) => {
                        p.recorder_failed = true;
                        let _ = self.events.send(MediaEvent::Warning(format!(
                            "cannot record to {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            if let Some(r) = p.recorder.as_mut() {
                // A size change mid-call cannot go into the same Y4M stream: skip those frames.
                let _ = r.write_frame(&p.picture);
            }
        }
        if self.want_rgba {
            p.picture.to_rgba(&mut p.rgba);
            p.sequence += 1;
            self.frames.publish(
                Stream::Remote(peer),
                Arc::new(RgbaFrame {
                    width: w,
                    height: h,
                    pixels: p.rgba.clone(),
                    sequence: p.sequence,
                }),
            );
            if let Some(waker) = &self.waker {
                waker();
            }
        }
    }
}
