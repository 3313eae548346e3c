//! Video: openh264 encode/decode of the test pattern, and vcall's send and receive pipelines
//! beside the raw codec on the same frames, in frames/s.
//!
//! Per size (`video_720p`: 1280x720 at 1.5 Mbit/s, `video_360p`: 640x360 at 600 kbit/s), on a
//! 60-frame clip rendered once (2 s at 30 fps, a keyframe at its start as the engine forces
//! every 2 s):
//! - `encode_raw`: `H264Encoder::encode_at` of the pre-rendered I420 frames (the encode fps).
//! - `send_pipeline`: the same encode, then the `VideoMeta` plaintext, `Session::seal` of the
//!   whole frame and `fragment_frame` into ≤ 1100-byte datagrams (what the engine's video and
//!   network threads do per frame). Goal ≥ 0.85× `encode_raw`.
//! - `decode_raw`: `H264Decoder::decode` of the clip encoded once beforehand.
//! - `recv_pipeline`: header and fragment parsing, `Reassembler::insert`, `Session::open`
//!   (authentication + replay window), `VideoMeta::decode` and the same decode. The datagrams
//!   are sealed, fragmented and relay-stamped in the untimed setup (every frame needs a fresh
//!   counter). Goal ≥ 0.85× `decode_raw`.
//!
//! Both decode benches use the same batched harness so its overhead cancels in the ratio.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vcall_benches::{
    PAIR_SENDER, T0_MS, VideoReceiver, VideoSender, config, encode_clip, encoder_config,
    keyed_pair, relay_stamp, seal_and_fragment, test_frames, video_plaintext,
};
use vcall_media::I420Frame;
use vcall_media::video_codec::{H264Decoder, H264Encoder};

/// Frames in the clip: 2 s at 30 fps, the engine's keyframe interval.
const CLIP_FRAMES: u32 = 60;

fn bench_size(c: &mut Criterion, name: &str, width: usize, height: usize, bitrate_kbps: u32) {
    let frames = test_frames(width, height, CLIP_FRAMES);
    let enc_config = encoder_config(width, height, bitrate_kbps);
    let clip = encode_clip(&frames, enc_config);
    let bytes: usize = clip.iter().map(|f| f.annex_b.len()).sum();
    println!(
        "{name}: clip of {} frames, {} bytes encoded ({:.0} kbit/s at 30 fps), keyframe {} bytes",
        clip.len(),
        bytes,
        bytes as f64 * 8.0 * 30.0 / clip.len() as f64 / 1000.0,
        clip[0].annex_b.len()
    );
    let (tx_session, rx_session) = keyed_pair();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));

    let mut encoder = H264Encoder::new(enc_config).expect("encoder");
    let mut out = Vec::new();
    let mut n = 0u64;
    group.bench_function("encode_raw", |b| {
        b.iter(|| {
            let i = (n % u64::from(CLIP_FRAMES)) as usize;
            if i == 0 {
                encoder.force_keyframe();
            }
            let info = encoder
                .encode_at(&frames[i], n * 33, &mut out)
                .expect("encode");
            n += 1;
            black_box(info)
        })
    });
    drop(encoder);

    let mut sender = VideoSender::new(enc_config, tx_session).expect("sender");
    let mut n = 0usize;
    group.bench_function("send_pipeline", |b| {
        b.iter(|| {
            let i = n % CLIP_FRAMES as usize;
            if i == 0 {
                sender.encoder.force_keyframe();
            }
            n += 1;
            black_box(sender.send(&frames[i]))
        })
    });
    let mut tx_session = sender.session;

    let mut decoder = H264Decoder::new().expect("decoder");
    let mut picture = I420Frame::new(width, height).expect("frame");
    let mut next = 0usize;
    group.bench_function("decode_raw", |b| {
        b.iter_batched(
            || {
                let i = next % clip.len();
                next += 1;
                i
            },
            |i| {
                let got = decoder
                    .decode(&clip[i].annex_b, &mut picture)
                    .expect("decode");
                assert!(got);
            },
            BatchSize::SmallInput,
        )
    });

    let mut receiver = VideoReceiver::new(rx_session).expect("receiver");
    let mut n = 0u32;
    group.bench_function("recv_pipeline", |b| {
        b.iter_batched(
            || {
                let f = &clip[n as usize % clip.len()];
                let plain = video_plaintext(n, f.keyframe, width, height, &f.annex_b);
                let datagrams = seal_and_fragment(&mut tx_session, &plain, n);
                n = n.wrapping_add(1);
                relay_stamp(datagrams, PAIR_SENDER)
            },
            |datagrams| {
                assert!(receiver.receive(&datagrams, T0_MS));
                datagrams
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn video(c: &mut Criterion) {
    bench_size(c, "video_720p", 1280, 720, 1500);
    bench_size(c, "video_360p", 640, 360, 600);
}

criterion_group! {
    name = benches;
    config = config();
    targets = video
}
criterion_main!(benches);
