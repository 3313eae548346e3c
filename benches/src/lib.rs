//! Shared helpers for vcall's criterion benchmarks (`benches/benches/*.rs`).
//!
//! - [`config`]: the short criterion settings every suite uses, so `cargo bench` of the whole
//!   crate finishes in minutes on two cores (command-line flags still override them).
//! - [`keyed_call`]: real [`CallCore`]s joined through the engine's in-memory network
//!   (`vcall_engine::sim`) until every member holds every other's key; [`keyed_pair`]: the
//!   two E2EE sessions of such a call, for the crypto benches.
//! - [`test_frames`], [`encode_clip`], [`speech_like`]: pre-rendered media inputs, made once
//!   outside the measured loops.
//! - [`CoreSender`] / [`CoreReceiver`]: the engine's video paths through the real core
//!   (encode → `CallCore::handle_local_media` → datagrams; datagrams →
//!   `CallCore::handle_datagram` → decode), without sockets or threads.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::Criterion;
use vcall_crypto::{Identity, OsRandom, RoomKeys, RoomSecret, Session};
use vcall_engine::core::{CallCore, LocalMedia, Output};
use vcall_engine::sim::{MemberLinks, SIM_UNIX_US, SimCall};
use vcall_media::test_pattern;
use vcall_media::video_codec::{H264Decoder, H264Encoder, H264EncoderConfig};
use vcall_media::{AUDIO_FRAME_SAMPLES, I420Frame, MediaError};
use vcall_proto::PeerId;
use vcall_proto::datagram::stamp_sender;
use vcall_proto::media::VideoMeta;

/// Criterion settings for every suite: 10 samples, 0.5 s warm-up, 2 s of measurement. Ratios
/// against the in-run baselines are what we report, so short runs are enough; pass
/// `--measurement-time`/`--sample-size` on the command line for longer ones.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// The simulated wall clock (Unix ms) the in-memory calls start at.
pub const T0_MS: u64 = SIM_UNIX_US / 1000;

/// RSA identities for `n` members, generated once (2048-bit keys take 30-160 ms each).
pub fn identities(n: usize) -> Vec<Arc<Identity>> {
    (0..n)
        .map(|_| Arc::new(Identity::generate(2048).expect("RSA-2048 identity")))
        .collect()
}

/// Room keys of a room with a random secret (announcements sealed, peers verified).
pub fn room_keys() -> RoomKeys {
    let secret = RoomSecret::generate(&mut OsRandom::new());
    RoomKeys::derive("bench-room", Some(&secret)).expect("valid room name")
}

/// A call where every identity joins (one after another, as people do) over perfect links,
/// run until every member holds every other member's sender key. Panics after 30 simulated
/// seconds.
pub fn keyed_call(identities: &[Arc<Identity>], keys: &RoomKeys) -> SimCall {
    let mut call = SimCall::new(7);
    for (i, identity) in identities.iter().enumerate() {
        call.join(
            &format!("member{i}"),
            Arc::clone(identity),
            keys.clone(),
            MemberLinks::default(),
        );
    }
    assert!(
        call.run_until_keyed(Duration::from_secs(30)),
        "call not keyed after 30 s of simulated time"
    );
    call
}

/// Peer id of the sender in [`keyed_pair`] / [`keyed_cores`].
pub const PAIR_SENDER: PeerId = PeerId(1);

/// Two cores of one call that hold each other's sender keys: (sender = peer 1, receiver =
/// peer 2), and the instant their clock is at.
pub fn keyed_cores() -> (CallCore, CallCore, Instant) {
    let call = keyed_call(&identities(2), &room_keys());
    let now = call.now;
    let mut cores = call.into_cores().into_iter();
    let sender = cores.next().expect("two members");
    let receiver = cores.next().expect("two members");
    (sender, receiver, now)
}

/// The E2EE sessions of [`keyed_cores`]: (sender, receiver).
pub fn keyed_pair() -> (Session, Session) {
    let (sender, receiver, _) = keyed_cores();
    (sender.into_session(), receiver.into_session())
}

/// `count` test-pattern frames of `width`x`height`, rendered once.
pub fn test_frames(width: usize, height: usize, count: u32) -> Vec<I420Frame> {
    (0..count)
        .map(|n| {
            let mut frame = I420Frame::new(width, height).expect("valid size");
            test_pattern::render(n, &mut frame);
            frame
        })
        .collect()
}

/// The call's encoder settings for a size: 30 fps, `bitrate_kbps`, no periodic keyframes, two
/// temporal layers.
pub fn encoder_config(width: usize, height: usize, bitrate_kbps: u32) -> H264EncoderConfig {
    H264EncoderConfig {
        width,
        height,
        max_frame_rate: 30.0,
        bitrate_bps: bitrate_kbps * 1000,
        keyframe_interval_frames: 0,
        temporal_layers: 2,
    }
}

/// A clip as the receiver sees it: every frame encoded once (the first is a keyframe, the
/// others P-frames), 33 ms apart.
pub fn encode_clip(frames: &[I420Frame], config: H264EncoderConfig) -> Vec<EncodedFrame> {
    let mut encoder = H264Encoder::new(config).expect("encoder");
    let mut out = Vec::new();
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let info = encoder
                .encode_at(frame, i as u64 * 33, &mut out)
                .expect("encode");
            EncodedFrame {
                keyframe: info.is_keyframe,
                annex_b: out.clone(),
            }
        })
        .collect()
}

/// One pre-encoded access unit.
#[derive(Clone)]
pub struct EncodedFrame {
    pub keyframe: bool,
    pub annex_b: Vec<u8>,
}

/// The `VideoMeta` of the `frame_number`th frame of a test-pattern clip.
pub fn video_meta(frame_number: u32, keyframe: bool, width: usize, height: usize) -> VideoMeta {
    VideoMeta {
        capture_time_us: 0,
        frame_number,
        keyframe,
        test_pattern: true,
        layer: 0,
        previous_layer: 0,
        width: width as u16,
        height: height as u16,
    }
}

/// The engine's send path through the real core: encode, hand the frame to
/// `CallCore::handle_local_media` (sealed in place, fragmented), collect the datagrams.
pub struct CoreSender {
    pub encoder: H264Encoder,
    pub core: CallCore,
    pub now: Instant,
    encoded: Vec<u8>,
    frame_number: u32,
}

impl CoreSender {
    pub fn new(
        config: H264EncoderConfig,
        core: CallCore,
        now: Instant,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            encoder: H264Encoder::new(config)?,
            core,
            now,
            encoded: Vec::new(),
            frame_number: 0,
        })
    }

    /// One frame through the send path; returns its datagrams.
    pub fn send(&mut self, frame: &I420Frame) -> Vec<Bytes> {
        let info = self
            .encoder
            .encode_at(frame, u64::from(self.frame_number) * 33, &mut self.encoded)
            .expect("encode");
        let meta = video_meta(
            self.frame_number,
            info.is_keyframe,
            frame.width(),
            frame.height(),
        );
        self.frame_number += 1;
        self.core
            .handle_local_media(self.now, LocalMedia::video(meta, &self.encoded));
        self.datagrams()
    }

    /// An already encoded access unit through the core (no encoder).
    pub fn send_encoded(&mut self, meta: VideoMeta, access_unit: &[u8]) -> Vec<Bytes> {
        self.core
            .handle_local_media(self.now, LocalMedia::video(meta, access_unit));
        self.datagrams()
    }

    fn datagrams(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(o) = self.core.poll_output() {
            if let Output::Datagram(d) = o {
                out.push(d);
            }
        }
        out
    }
}

/// What the relay does to a datagram: stamps the true sender in place.
pub fn relay_stamp(datagrams: Vec<Bytes>, sender: PeerId) -> Vec<Bytes> {
    datagrams
        .into_iter()
        .map(|d| {
            let mut d = BytesMut::from(&d[..]);
            stamp_sender(&mut d, sender).expect("valid datagram");
            d.freeze()
        })
        .collect()
}

/// The engine's receive path through the real core: `CallCore::handle_datagram`
/// (reassembly, open, continuity), then the H.264 decode of what it hands out.
pub struct CoreReceiver {
    pub core: CallCore,
    pub now: Instant,
    decoder: H264Decoder,
    picture: I420Frame,
    pub decoded: u64,
}

impl CoreReceiver {
    pub fn new(core: CallCore, now: Instant) -> Result<Self, MediaError> {
        Ok(Self {
            core,
            now,
            decoder: H264Decoder::new()?,
            picture: I420Frame::new(2, 2)?,
            decoded: 0,
        })
    }

    /// Feeds one frame's datagrams; true if a picture came out.
    pub fn receive(&mut self, datagrams: &[Bytes]) -> bool {
        for d in datagrams {
            self.core.handle_datagram(self.now, d.clone());
        }
        let mut picture = false;
        while let Some(o) = self.core.poll_output() {
            if let Output::Decode(frame) = o {
                picture |= self
                    .decoder
                    .decode(frame.access_unit(), &mut self.picture)
                    .expect("decode");
            }
        }
        self.decoded += u64::from(picture);
        picture
    }
}

/// `frames` 20 ms mono frames of a voice-like test signal (a 180 Hz buzz with harmonics plus
/// noise, so Opus does the work real speech makes it do).
pub fn speech_like(frames: usize) -> Vec<Vec<f32>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut t = 0f32;
    (0..frames)
        .map(|_| {
            (0..AUDIO_FRAME_SAMPLES)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    let phase = std::f32::consts::TAU * 180.0 * t;
                    t += 1.0 / 48_000.0;
                    0.2 * phase.sin()
                        + 0.1 * (2.0 * phase).sin()
                        + 0.05 * (3.0 * phase).sin()
                        + 0.05 * noise
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_proto::MAX_DATAGRAM_SIZE;

    #[test]
    fn the_core_pipelines_round_trip_a_clip() {
        let (sender, receiver, now) = keyed_cores();
        let frames = test_frames(320, 180, 4);
        let mut tx = CoreSender::new(encoder_config(320, 180, 300), sender, now).unwrap();
        let mut rx = CoreReceiver::new(receiver, now).unwrap();
        for frame in &frames {
            let datagrams = relay_stamp(tx.send(frame), PAIR_SENDER);
            assert!(!datagrams.is_empty());
            assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM_SIZE));
            assert!(rx.receive(&datagrams));
        }
        assert_eq!(rx.decoded, 4);
    }
}
