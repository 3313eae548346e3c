//! Audio: Opus encode/decode of 20 ms mono frames at 48 kHz, 32 kbit/s, VoIP mode, in-band FEC
//! (the call's settings), through vcall's `OpusEncoder`/`OpusDecoder` beside the `opus` crate
//! called directly with the same settings (the in-run baseline: the wrapper's overhead).
//!
//! Throughput is in frames/s; × realtime = frames/s × 0.020 (`scripts/bench-ratios.sh` prints
//! it). The input is a voice-like buzz with harmonics and noise, 50 distinct frames (1 s).
//!
//! `audio_padding/encode_cbr` and `audio_padding/encode_vbr`: what constant bitrate (the
//! default, so packet sizes do not reveal speech, RFC 6562) costs beside VBR, both at the
//! default 32 kbit/s, on 10 s of speech with pauses (`speech_with_pauses`). The setup prints
//! each mode's Opus bytes per second, in talk spurts and in pauses.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opus::{Application, Bitrate, Channels};
use vcall_benches::{config, speech_like};
use vcall_media::audio_codec::{MAX_OPUS_PACKET, OpusDecoder, OpusEncoder, OpusEncoderConfig};
use vcall_media::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE};

const FRAMES: usize = 50;
/// 10 s of 20 ms frames for the padding comparison.
const PAUSED_FRAMES: usize = 500;
/// A talk spurt of 1.2 s, then a pause of 0.8 s (frames of 20 ms).
const SPURT_FRAMES: usize = 60;
const CYCLE_FRAMES: usize = 100;

/// Speech with pauses, deterministic: 1.2 s talk spurts and 0.8 s pauses. In a spurt, syllables
/// at 4 Hz (a raised-cosine envelope) of a voiced buzz whose pitch glides between 120 and 180 Hz,
/// with three harmonics and some noise; a pause is a faint noise floor (about -70 dBFS), as a
/// microphone gives.
fn speech_with_pauses(frames: usize) -> Vec<Vec<f32>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut phase = 0f32;
    (0..frames)
        .map(|f| {
            let talking = f % CYCLE_FRAMES < SPURT_FRAMES;
            (0..AUDIO_FRAME_SAMPLES)
                .map(|i| {
                    let t = (f * AUDIO_FRAME_SAMPLES + i) as f32 / AUDIO_SAMPLE_RATE as f32;
                    if !talking {
                        return 0.0006 * noise();
                    }
                    let pitch = 150.0 + 30.0 * (std::f32::consts::TAU * 0.7 * t).sin();
                    phase += std::f32::consts::TAU * pitch / AUDIO_SAMPLE_RATE as f32;
                    let syllable = 0.5 - 0.5 * (std::f32::consts::TAU * 4.0 * t).cos();
                    syllable
                        * (0.3 * phase.sin()
                            + 0.15 * (2.0 * phase).sin()
                            + 0.08 * (3.0 * phase).sin()
                            + 0.04 * (5.0 * phase).sin()
                            + 0.06 * noise())
                })
                .collect()
        })
        .collect()
}

/// Encodes `input` with `settings`; prints the Opus bytes per second overall, in talk spurts
/// and in pauses, and how many distinct packet sizes there were.
fn byte_rates(label: &str, settings: OpusEncoderConfig, input: &[Vec<f32>]) {
    let mut encoder = OpusEncoder::new(settings).expect("encoder");
    let (mut talk, mut pause) = ((0usize, 0usize), (0usize, 0usize));
    let mut sizes = std::collections::BTreeSet::new();
    let mut p = Vec::new();
    for (f, frame) in input.iter().enumerate() {
        encoder.encode(frame, &mut p).expect("encode");
        sizes.insert(p.len());
        let bucket = if f % CYCLE_FRAMES < SPURT_FRAMES {
            &mut talk
        } else {
            &mut pause
        };
        bucket.0 += p.len();
        bucket.1 += 1;
    }
    let per_s = |(bytes, frames): (usize, usize)| bytes as f64 / (frames as f64 * 0.020);
    eprintln!(
        "audio_padding {label}: {:.0} B/s ({:.1} kbit/s) overall; talk spurts {:.0} B/s, pauses \
         {:.0} B/s; {} distinct packet sizes ({}..={} B)",
        per_s((talk.0 + pause.0, talk.1 + pause.1)),
        per_s((talk.0 + pause.0, talk.1 + pause.1)) * 8.0 / 1000.0,
        per_s(talk),
        per_s(pause),
        sizes.len(),
        sizes.first().expect("packets"),
        sizes.last().expect("packets"),
    );
}

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

fn padding(c: &mut Criterion) {
    let input = speech_with_pauses(PAUSED_FRAMES);
    let cbr = OpusEncoderConfig::default();
    assert!(cbr.constant_bitrate, "the default is CBR");
    let vbr = OpusEncoderConfig {
        constant_bitrate: false,
        ..cbr
    };
    byte_rates("cbr", cbr, &input);
    byte_rates("vbr", vbr, &input);

    let mut group = c.benchmark_group("audio_padding");
    group.throughput(Throughput::Elements(1));
    for (name, settings) in [("encode_cbr", cbr), ("encode_vbr", vbr)] {
        let mut encoder = OpusEncoder::new(settings).expect("encoder");
        let mut out = Vec::new();
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                encoder
                    .encode(&input[i % PAUSED_FRAMES], &mut out)
                    .expect("encode");
                i += 1;
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = audio, padding
}
criterion_main!(benches);
