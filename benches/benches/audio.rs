//! Audio: Opus encode/decode of 20 ms mono frames at 48 kHz, 32 kbit/s, VoIP mode, in-band FEC
//! (the call's settings), through vcall's `OpusEncoder`/`OpusDecoder` beside the `opus` crate
//! called directly with the same settings (the in-run baseline: the wrapper's overhead).
//!
//! Throughput is in frames/s; × realtime = frames/s × 0.020 (`scripts/bench-ratios.sh` prints
//! it). The input is a voice-like buzz with harmonics and noise, 50 distinct frames (1 s).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opus::{Application, Bitrate, Channels};
use vcall_benches::{config, speech_like};
use vcall_media::audio_codec::{MAX_OPUS_PACKET, OpusDecoder, OpusEncoder, OpusEncoderConfig};
use vcall_media::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE};

const FRAMES: usize = 50;

fn raw_encoder(config: OpusEncoderConfig) -> opus::Encoder {
    let mut e = opus::Encoder::new(AUDIO_SAMPLE_RATE, Channels::Mono, Application::Voip)
        .expect("opus encoder");
    e.set_inband_fec(config.inband_fec).expect("fec");
    e.set_vbr(!config.constant_bitrate).expect("vbr");
    e.set_bitrate(Bitrate::Bits(config.bitrate_bps))
        .expect("bitrate");
    e.set_packet_loss_perc(i32::from(config.expected_packet_loss_percent))
        .expect("loss");
    e
}

fn audio(c: &mut Criterion) {
    let input = speech_like(FRAMES);
    let settings = OpusEncoderConfig::default();
    let mut packets = Vec::with_capacity(FRAMES);
    let mut encoder = OpusEncoder::new(settings).expect("encoder");
    for frame in &input {
        let mut p = Vec::new();
        encoder.encode(frame, &mut p).expect("encode");
        packets.push(p);
    }
    let bytes: usize = packets.iter().map(Vec::len).sum();
    println!(
        "opus: {FRAMES} frames, {:.1} kbit/s",
        bytes as f64 * 8.0 / (FRAMES as f64 * 0.02) / 1000.0
    );

    let mut group = c.benchmark_group("audio_opus");
    group.throughput(Throughput::Elements(1));

    let mut out = Vec::new();
    let mut i = 0;
    group.bench_function("encode_vcall", |b| {
        b.iter(|| {
            encoder
                .encode(&input[i % FRAMES], &mut out)
                .expect("encode");
            i += 1;
            black_box(out.len())
        })
    });
    let mut raw = raw_encoder(settings);
    let mut buf = vec![0u8; MAX_OPUS_PACKET];
    group.bench_function("encode_raw", |b| {
        b.iter(|| {
            let n = raw
                .encode_float(&input[i % FRAMES], &mut buf)
                .expect("encode");
            i += 1;
            black_box(n)
        })
    });

    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut pcm = vec![0f32; AUDIO_FRAME_SAMPLES];
    group.bench_function("decode_vcall", |b| {
        b.iter(|| {
            let n = decoder
                .decode(&packets[i % FRAMES], &mut pcm)
                .expect("decode");
            i += 1;
            black_box(n)
        })
    });
    let mut raw = opus::Decoder::new(AUDIO_SAMPLE_RATE, Channels::Mono).expect("decoder");
    group.bench_function("decode_raw", |b| {
        b.iter(|| {
            let n = raw
                .decode_float(&packets[i % FRAMES], &mut pcm, false)
                .expect("decode");
            i += 1;
            black_box(n)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = audio
}
criterion_main!(benches);
