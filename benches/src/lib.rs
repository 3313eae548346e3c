//! Shared helpers for vcall's criterion benchmarks (`benches/benches/*.rs`).
//!
//! - [`config`]: the short criterion settings every suite uses, so `cargo bench` of the whole
//!   crate finishes in minutes on two cores (command-line flags still override them).
//! - [`Room`]: an in-memory relay driving real [`Session`]s through the whole E2EE handshake
//!   (announcements, key messages, acks, timers), as the relay and the call engine would.
//! - [`keyed_pair`]: two joined sessions holding each other's sender keys, for media benches.
//! - [`test_frames`], [`encode_clip`], [`speech_like`]: pre-rendered media inputs, made once
//!   outside the measured loops.
//! - [`VideoSender`] / [`VideoReceiver`]: the engine's send (encode → seal → fragment) and
//!   receive (reassemble → open → decode) paths, step for step, without sockets or threads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use vcall_crypto::{Action, Identity, OsRandom, RoomKeys, RoomSecret, Session, SessionConfig};
use vcall_media::test_pattern;
use vcall_media::video_codec::{H264Decoder, H264Encoder, H264EncoderConfig};
use vcall_media::{AUDIO_FRAME_SAMPLES, I420Frame, MediaError};
use vcall_proto::e2ee::{E2eeSignal, decode_signal};
use vcall_proto::fragment::{FragmentHeader, Reassembler, ReassemblyConfig, fragment_frame};
use vcall_proto::media::VideoMeta;
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

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

/// A fixed simulated wall clock start (Unix ms) for sessions driven by [`Room`].
pub const T0_MS: u64 = 1_750_000_000_000;

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

/// What the in-memory relay delivers to a member.
enum Delivery {
    Signal { from: PeerId, payload: Vec<u8> },
    Joined(PeerId),
}

/// An in-memory relay: members join in order, control signals are routed like the real relay
/// (`to == NONE` → every other member, else the addressed member, sender stamped), and time
/// advances in 50 ms steps with `on_tick` whenever no message is in flight.
pub struct Room {
    /// Members in join order; member `i` has peer id `i + 1`.
    pub sessions: Vec<Session>,
    queue: VecDeque<(usize, Delivery)>,
    /// The simulated clock (Unix ms).
    pub now_ms: u64,
    /// Control signals routed so far (each delivery to one member counts once).
    pub signals_delivered: u64,
    /// Of those: announcements, key messages (one RSA-OAEP unwrap each unless a duplicate)
    /// and key acks.
    pub announcements: u64,
    pub key_messages: u64,
    pub acks: u64,
}

impl Room {
    /// A room where every identity joins (one after another, as people do) and the handshake
    /// runs until every member holds every other member's sender key. Panics if that takes
    /// more than 30 simulated seconds.
    pub fn keyed(identities: &[Arc<Identity>], keys: &RoomKeys) -> Self {
        let mut room = Self {
            sessions: Vec::with_capacity(identities.len()),
            queue: VecDeque::new(),
            now_ms: T0_MS,
            signals_delivered: 0,
            announcements: 0,
            key_messages: 0,
            acks: 0,
        };
        for identity in identities {
            room.join(Arc::clone(identity), keys.clone());
        }
        room.run_until_keyed(Duration::from_secs(30));
        room
    }

    fn peer_id(index: usize) -> PeerId {
        PeerId(index as u32 + 1)
    }

    /// Adds a member: the relay's `Welcome` to it and `PeerJoined` to everyone else.
    pub fn join(&mut self, identity: Arc<Identity>, keys: RoomKeys) {
        let index = self.sessions.len();
        let me = Self::peer_id(index);
        let roster: Vec<PeerId> = (0..index).map(Self::peer_id).collect();
        let mut session = Session::new(
            identity,
            keys,
            SessionConfig::default(),
            Box::new(OsRandom::new()),
        );
        // The relay tells the members first, then forwards the newcomer's announcement.
        for other in 0..index {
            self.queue.push_back((other, Delivery::Joined(me)));
        }
        session.on_welcome(me, &roster, self.now_ms);
        self.sessions.push(session);
        self.drain(index);
    }

    /// Moves a member's queued actions into the relay (only `SendSignal` needs routing).
    fn drain(&mut self, index: usize) {
        let from = Self::peer_id(index);
        while let Some(action) = self.sessions[index].poll_action() {
            if let Action::SendSignal { to, payload } = action {
                if to == PeerId::NONE {
                    for other in (0..self.sessions.len()).filter(|o| *o != index) {
                        let payload = payload.clone();
                        self.queue
                            .push_back((other, Delivery::Signal { from, payload }));
                    }
                } else if let Some(target) = (to.0 as usize).checked_sub(1)
                    && target < self.sessions.len()
                {
                    self.queue
                        .push_back((target, Delivery::Signal { from, payload }));
                }
            }
        }
    }

    /// Delivers every queued message (and what it causes); returns how many were delivered.
    pub fn pump(&mut self) -> u64 {
        let mut n = 0;
        while let Some((index, delivery)) = self.queue.pop_front() {
            let now = self.now_ms;
            match delivery {
                Delivery::Signal { from, payload } => {
                    match decode_signal(&payload) {
                        Ok(E2eeSignal::Announcement(_)) => self.announcements += 1,
                        Ok(E2eeSignal::Key(_)) => self.key_messages += 1,
                        Ok(E2eeSignal::Ack(_)) => self.acks += 1,
                        Err(_) => {}
                    }
                    // Rejections (e.g. a duplicate announcement) are normal protocol events.
                    let _ = self.sessions[index].on_signal(from, &payload, now);
                    self.signals_delivered += 1;
                }
                Delivery::Joined(peer) => self.sessions[index].on_peer_joined(peer, now),
            }
            self.drain(index);
            n += 1;
        }
        n
    }

    /// Every member holds a key of every other member.
    pub fn all_keyed(&self) -> bool {
        let n = self.sessions.len();
        self.sessions.iter().all(|s| {
            let peers = s.peers();
            peers.len() == n - 1 && peers.iter().all(|p| p.key_received)
        })
    }

    /// Pumps messages and ticks the clock until [`Room::all_keyed`]; panics after `limit`.
    pub fn run_until_keyed(&mut self, limit: Duration) {
        let deadline = self.now_ms + limit.as_millis() as u64;
        loop {
            self.pump();
            if self.all_keyed() {
                // Let the acks and re-announcements in flight settle too.
                self.pump();
                return;
            }
            assert!(
                self.now_ms < deadline,
                "room not keyed after {limit:?} of simulated time"
            );
            self.now_ms += 50;
            for index in 0..self.sessions.len() {
                self.sessions[index].on_tick(self.now_ms);
                self.drain(index);
            }
        }
    }
}

/// Two sessions in one room that hold each other's sender keys: (sender, receiver). The sender
/// is peer 1, the receiver peer 2. Generates two RSA-2048 identities.
pub fn keyed_pair() -> (Session, Session) {
    let ids = identities(2);
    let room = Room::keyed(&ids, &room_keys());
    let mut sessions = room.sessions.into_iter();
    let sender = sessions.next().expect("two members");
    let receiver = sessions.next().expect("two members");
    (sender, receiver)
}

/// The sender's peer id in a [`keyed_pair`].
pub const PAIR_SENDER: PeerId = PeerId(1);

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

/// The call's encoder settings for a size: 30 fps, `bitrate_kbps`, no periodic keyframes.
pub fn encoder_config(width: usize, height: usize, bitrate_kbps: u32) -> H264EncoderConfig {
    H264EncoderConfig {
        width,
        height,
        max_frame_rate: 30.0,
        bitrate_bps: bitrate_kbps * 1000,
        keyframe_interval_frames: 0,
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

/// The video plaintext the engine builds: [`VideoMeta`] then the access unit (engine/video.rs).
pub fn video_plaintext(
    frame_number: u32,
    keyframe: bool,
    width: usize,
    height: usize,
    annex_b: &[u8],
) -> Vec<u8> {
    let mut plain = Vec::with_capacity(VideoMeta::LEN + annex_b.len() + 64);
    VideoMeta {
        capture_time_us: T0_MS * 1000 + u64::from(frame_number) * 33_333,
        frame_number,
        keyframe,
        test_pattern: true,
        width: width as u16,
        height: height as u16,
    }
    .append(&mut plain);
    plain.extend_from_slice(annex_b);
    plain
}

/// The sending half of the engine's video path, minus sockets: `H264Encoder::encode_at`, the
/// `VideoMeta` plaintext, `Session::seal` of the whole frame, `fragment_frame` into datagrams of
/// at most `MAX_DATAGRAM_SIZE` bytes (engine/video.rs + `send_video` in engine/network.rs).
pub struct VideoSender {
    pub encoder: H264Encoder,
    pub session: Session,
    encoded: Vec<u8>,
    frame_number: u32,
}

impl VideoSender {
    pub fn new(config: H264EncoderConfig, session: Session) -> Result<Self, MediaError> {
        Ok(Self {
            encoder: H264Encoder::new(config)?,
            session,
            encoded: Vec::new(),
            frame_number: 0,
        })
    }

    /// Encodes, seals and fragments one frame; returns its datagrams (empty if the encoder
    /// produced nothing).
    pub fn send(&mut self, frame: &I420Frame) -> Vec<Bytes> {
        let n = self.frame_number;
        self.frame_number = n.wrapping_add(1);
        let info = self
            .encoder
            .encode_at(frame, u64::from(n) * 33, &mut self.encoded)
            .expect("encode");
        if info.len == 0 {
            return Vec::new();
        }
        let plain = video_plaintext(
            n,
            info.is_keyframe,
            frame.width(),
            frame.height(),
            &self.encoded,
        );
        seal_and_fragment(&mut self.session, &plain, n)
    }
}

/// `Session::seal` of a video plaintext and `fragment_frame` of the result, as `send_video`
/// in engine/network.rs does it.
pub fn seal_and_fragment(session: &mut Session, plain: &[u8], frame_id: u32) -> Vec<Bytes> {
    let mut sealed = Vec::with_capacity(plain.len() + vcall_crypto::SEAL_OVERHEAD);
    session
        .seal(DatagramKind::Video, None, plain, &mut sealed)
        .expect("seal");
    let header = DatagramHeader::new(DatagramKind::Video, None);
    fragment_frame(&header, frame_id, &sealed, MAX_DATAGRAM_SIZE)
        .expect("fragment")
        .collect()
}

/// Stamps the sender id into datagrams, as the relay does before forwarding.
pub fn relay_stamp(datagrams: Vec<Bytes>, sender: PeerId) -> Vec<Vec<u8>> {
    datagrams
        .into_iter()
        .map(|d| {
            let mut d = d.to_vec();
            d[3..7].copy_from_slice(&sender.0.to_be_bytes());
            d
        })
        .collect()
}

/// The receiving half of the engine's video path, minus sockets: `DatagramHeader::decode`,
/// `FragmentHeader::decode`, `Reassembler::insert`, `Session::open` of the whole frame,
/// `VideoMeta::decode` and `H264Decoder::decode` (engine/network.rs `on_datagram` +
/// engine/video.rs).
pub struct VideoReceiver {
    pub session: Session,
    pub decoder: H264Decoder,
    reassembler: Reassembler,
    picture: I420Frame,
    /// Frames decoded into a picture.
    pub decoded: u64,
}

impl VideoReceiver {
    pub fn new(session: Session) -> Result<Self, MediaError> {
        Ok(Self {
            session,
            decoder: H264Decoder::new()?,
            reassembler: Reassembler::new(ReassemblyConfig::default()),
            picture: I420Frame::new(2, 2)?,
            decoded: 0,
        })
    }

    /// Feeds one frame's datagrams (as forwarded by the relay); returns whether it produced a
    /// picture.
    pub fn receive(&mut self, datagrams: &[Vec<u8>], now_ms: u64) -> bool {
        let now = Instant::now();
        let mut picture = false;
        for datagram in datagrams {
            let (header, offset) = DatagramHeader::decode(datagram).expect("datagram header");
            let (frag, chunk) = FragmentHeader::decode(&datagram[offset..]).expect("fragment");
            let Some(mut frame) = self.reassembler.insert(now, frag, chunk) else {
                continue;
            };
            let plain = self
                .session
                .open(
                    header.sender,
                    DatagramKind::Video,
                    None,
                    &mut frame.data,
                    now_ms,
                )
                .expect("open");
            let (_meta, annex_b) = VideoMeta::decode(plain).expect("video meta");
            picture |= self
                .decoder
                .decode(annex_b, &mut self.picture)
                .expect("decode");
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

    #[test]
    fn pipelines_round_trip_a_clip() {
        let (sender, receiver) = keyed_pair();
        let frames = test_frames(320, 180, 4);
        let mut tx = VideoSender::new(encoder_config(320, 180, 300), sender).unwrap();
        let mut rx = VideoReceiver::new(receiver).unwrap();
        for frame in &frames {
            let datagrams = relay_stamp(tx.send(frame), PAIR_SENDER);
            assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM_SIZE));
            assert!(rx.receive(&datagrams, T0_MS));
        }
        assert_eq!(rx.decoded, 4);
    }
}
