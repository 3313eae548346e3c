//! Video: openh264 encode/decode of the test pattern, and vcall's send and receive pipelines
//! beside the raw codec on the same frames, in frames/s.
//!
//! Per size (`video_720p`: 1280x720 at 1.5 Mbit/s, `video_360p`: 640x360 at 600 kbit/s), on a
//! 60-frame clip rendered once (2 s at 30 fps, a keyframe at its start as the engine forces
//! every 2 s):
//! - `encode_raw`: `H264Encoder::encode_at` of the pre-rendered I420 frames (the encode fps).
//! - `send_pipeline`: the same encode, then the real `CallCore::handle_local_media` (the frame
//!   sealed in place and fragmented into ≤ 1100-byte datagrams) and draining its outputs: what
//!   the engine's video thread and driver do per frame. Goal ≥ 0.85× `encode_raw`.
//! - `decode_raw`: `H264Decoder::decode` of the clip encoded once beforehand.
//! - `recv_pipeline`: the real `CallCore::handle_datagram` for each datagram (header and
//!   fragment parsing, reassembly, `Session::open` with its replay window, `VideoMeta`,
//!   continuity) and the same decode of the access unit it hands out. The datagrams are made
//!   by a second core and relay-stamped in the untimed setup (every frame needs a fresh
//!   counter). Goal ≥ 0.85× `decode_raw`.
//!
//! Both decode benches use the same batched harness so its overhead cancels in the ratio.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vcall_benches::{
    CoreReceiver, CoreSender, PAIR_SENDER, config, encode_clip, encoder_config, keyed_cores,
    relay_stamp, test_frames, video_meta,
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
    let (tx_core, rx_core, now) = keyed_cores();

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

    let mut sender = CoreSender::new(enc_config, tx_core, now).expect("sender");
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

    let mut receiver = CoreReceiver::new(rx_core, now).expect("receiver");
    let mut n = 0u32;
    group.bench_function("recv_pipeline", |b| {
        b.iter_batched(
            || {
                let f = &clip[n as usize % clip.len()];
                let meta = video_meta(n, f.keyframe, width, height);
                let datagrams = sender.send_encoded(meta, &f.annex_b);
                n = n.wrapping_add(1);
                relay_stamp(datagrams, PAIR_SENDER)
            },
            |datagrams| {
                assert!(receiver.receive(&datagrams));
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
