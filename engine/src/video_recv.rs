//! The video-receive thread: decodes every peer's frames (the access unit the core cut out),
//! reports latency and PSNR samples as events, records Y4M, and hands pictures to a UI.
//! Its control channel (`PeerLeft`) is drained before its bounded frame queue.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use vcall_media::I420Frame;
use vcall_media::analysis::PatternPsnrMeter;
use vcall_media::video_codec::H264Decoder;
use vcall_media::y4m::{Y4mHeader, Y4mWriter};
use vcall_proto::PeerId;
use vcall_proto::media::VideoMeta;

use crate::core::{MediaEvent, VideoToDecode};
use crate::handle::{VideoFrames, Waker};
use crate::picture_out::PictureOut;
use crate::state::Stream;
use crate::wall_clock_us;

/// Every this many decoded test-pattern frames, one is compared with the regenerated source.
const PSNR_SAMPLE_EVERY: u64 = 10;

/// Control for the decode thread (lossless, drained before frames).
pub(crate) enum DecoderControl {
    /// The peer left: drop its decoder and flush its recording.
    PeerLeft(PeerId),
}

struct PeerDecoder {
    decoder: H264Decoder,
    picture: I420Frame,
    psnr: PatternPsnrMeter,
    out: PictureOut,
    pattern_frames: u64,
}

/// A peer's Y4M recording. It outlives the peer's decoder: frames still queued after the
/// peer left, or the same peer back after a reconnect, go on in the same file.
enum Recording {
    Writing(Y4mWriter<BufWriter<File>>),
    Failed,
}

/// Everything the decode thread needs.
pub(crate) struct VideoReceiver {
    pub control: crossbeam_channel::Receiver<DecoderControl>,
    /// Decrypted frames (bounded).
    pub frames_in: crossbeam_channel::Receiver<VideoToDecode>,
    pub events: UnboundedSender<MediaEvent>,
    pub frames: Arc<VideoFrames>,
    pub want_pictures: bool,
    pub record_dir: Option<PathBuf>,
    pub fps: u32,
    pub waker: Option<Waker>,
}

impl VideoReceiver {
    /// Runs until both channels close.
    pub fn run(self) {
        let mut peers: HashMap<PeerId, PeerDecoder> = HashMap::new();
        let mut recordings: HashMap<PeerId, Recording> = HashMap::new();
        loop {
            // Control first, always.
            while let Ok(control) = self.control.try_recv() {
                self.on_control(&mut peers, &mut recordings, control);
            }
            crossbeam_channel::select! {
                recv(self.control) -> control => match control {
                    Ok(control) => self.on_control(&mut peers, &mut recordings, control),
                    Err(_) => break,
                },
                recv(self.frames_in) -> job => match job {
                    Ok(job) => self.on_frame(&mut peers, &mut recordings, job),
                    Err(_) => break,
                },
            }
        }
        for (_, recording) in recordings {
            if let Recording::Writing(r) = recording {
                let _ = r.into_inner();
            }
        }
    }

    fn on_control(
        &self,
        peers: &mut HashMap<PeerId, PeerDecoder>,
        recordings: &mut HashMap<PeerId, Recording>,
        control: DecoderControl,
    ) {
        match control {
            DecoderControl::PeerLeft(peer) => {
                peers.remove(&peer);
                if let Some(Recording::Writing(r)) = recordings.get_mut(&peer) {
                    let _ = r.flush();
                }
                self.frames.remove(Stream::Remote(peer));
            }
        }
    }

    fn on_frame(
        &self,
        peers: &mut HashMap<PeerId, PeerDecoder>,
        recordings: &mut HashMap<PeerId, Recording>,
        job: VideoToDecode,
    ) {
        let peer = job.peer;
        let p = match peers.entry(peer) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match H264Decoder::new() {
                Ok(decoder) => v.insert(PeerDecoder {
                    decoder,
                    picture: I420Frame::new(2, 2).expect("valid"),
                    psnr: PatternPsnrMeter::new(),
                    out: PictureOut::new(Stream::Remote(peer)),
                    pattern_frames: 0,
                }),
                Err(e) => {
                    let _ = self
                        .events
                        .send(MediaEvent::Warning(format!("video decoder: {e}")));
                    return;
                }
            },
        };
        self.decode_one(peer, p, recordings, &job.meta, job.access_unit());
    }

    fn decode_one(
        &self,
        peer: PeerId,
        p: &mut PeerDecoder,
        recordings: &mut HashMap<PeerId, Recording>,
        meta: &VideoMeta,
        annex_b: &[u8],
    ) {
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
            let recording = recordings.entry(peer).or_insert_with(|| {
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
                    Ok(r) => Recording::Writing(r),
                    Err(e) => {
                        let _ = self.events.send(MediaEvent::Warning(format!(
                            "cannot record to {}: {e}",
                            path.display()
                        )));
                        Recording::Failed
                    }
                }
            });
            if let Recording::Writing(r) = recording {
                // A size change mid-call cannot go into the same Y4M stream: skip those frames.
                let _ = r.write_frame(&p.picture);
            }
        }
        if self.want_pictures {
            p.out.publish(&self.frames, self.waker.as_ref(), &p.picture);
        }
    }
}
