//! AEAD and sender signatures: vcall's media sealing and opening beside ring's raw
//! AES-256-GCM, in bytes/s, and what the sender signature (protocol v2) adds.
//!
//! - `aead_seal/vcall/N`: `Session::seal` of an N-byte plaintext behind a datagram header
//!   (sealed header, AAD, the sender's signature trailer, counter nonce, AES-256-GCM, tag):
//!   what every heartbeat, feedback body and video frame goes through.
//! - `aead_seal/vcall_in_place/N`: `Session::seal_in_place` of the same plaintext already laid
//!   out behind the header and 10 reserved bytes (no copy): what the engine uses for video.
//! - `aead_seal/unsigned/N`: `MediaKey::seal_in_place` alone (AAD, AES-256-GCM, tag; no
//!   signature): protocol v1's sealing, the baseline of the signature's cost.
//! - `aead_open/vcall/N`: `Session::open` of a freshly sealed body (header parse, key lookup,
//!   replay check, AES-256-GCM open, trailer split, content digest, Ed25519 verify, replay
//!   window update). Every body needs a new counter, so each iteration opens one sealed in the
//!   untimed setup. `aead_open/unsigned/N`: `MediaKey::open_in_place` plus the replay window
//!   (v1's opening).
//! - `aead_seal/ring_raw/N`, `aead_open/ring_raw/N`: ring's `LessSafeKey` seal/open in place
//!   of the same sizes, the ceiling; the open baseline uses the same batched setup.
//! - `audio_batch/{seal,open}_{signed,unsigned}`: five 100-byte audio packets (one batch:
//!   four carry a 1-byte trailer, the fifth the batch signature over the last ten digests),
//!   sealed or opened (with attribution of the four held ones) vs the same five unsigned.
//!
//! Goals: unsigned AEAD ≥ 0.8× ring raw at the same size; the signature's cost is reported
//! (signed vs unsigned) with no goal but "small against a frame's encode/decode". Sizes:
//! 1200 B (a datagram), 8 KiB (a P-frame) and 64 KiB (a keyframe; ring's bulk ceiling).

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use vcall_benches::{PAIR_SENDER, T0_MS, config, keyed_pair};
use vcall_crypto::{KeyId, MediaKey, ReplayWindow, SenderSecret};
use vcall_proto::e2ee::SealedHeader;
use vcall_proto::{DatagramHeader, DatagramKind};

const SIZES: [usize; 3] = [1200, 8 * 1024, 64 * 1024];

/// The baseline authenticates as many bytes as vcall's media AAD with a 32-byte room id.
const RAW_AAD: [u8; 52] = [0xA5; 52];

/// A small body is a heartbeat-like one (signed per packet; audio is batched, see
/// `audio_batch`), a large one a video frame.
fn kind_for(size: usize) -> DatagramKind {
    if size <= 1200 {
        DatagramKind::Heartbeat
    } else {
        DatagramKind::Video
    }
}

const ROOM: &[u8] = &[0xA5; 32];

fn unsigned_key() -> MediaKey {
    MediaKey::derive(KeyId::new(0, 0), &SenderSecret::from_bytes([3; 32]), ROOM)
}

fn ring_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("32-byte key"))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aead_seal(c: &mut Criterion) {
    let (mut sender, _receiver) = keyed_pair();
    let key = ring_key();
    let mut group = c.benchmark_group("aead_seal");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plaintext = vec![0x5Au8; size];
        let kind = kind_for(size);
        let header = DatagramHeader::new(kind, None);
        let mut out = Vec::with_capacity(size + 64);
        group.bench_function(BenchmarkId::new("vcall", size), |b| {
            b.iter(|| {
                out.clear();
                header.append(&mut out);
                sender
                    .seal(kind, None, black_box(&plaintext), &mut out)
                    .expect("seal");
                black_box(&out);
            })
        });
        // The same seal without the plaintext copy: the caller builds the plaintext after
        // the datagram header and 10 reserved bytes and seals it where it lies (what
        // `Session::seal_in_place` offers the engine).
        let mut in_place = Vec::with_capacity(size + 64);
        header.append(&mut in_place);
        let start = in_place.len();
        in_place.extend_from_slice(&[0u8; SealedHeader::LEN]);
        in_place.extend_from_slice(&plaintext);
        let filled = in_place.len();
        group.bench_function(BenchmarkId::new("vcall_in_place", size), |b| {
            b.iter(|| {
                in_place.truncate(filled);
                sender
                    .seal_in_place(kind, None, &mut in_place, start)
                    .expect("seal");
                black_box(&in_place);
            })
        });
        let unsigned = unsigned_key();
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("unsigned", size), |b| {
            b.iter(|| {
                counter += 1;
                in_place.truncate(filled);
                unsigned
                    .seal_in_place(counter, PAIR_SENDER, kind, None, ROOM, &mut in_place, start)
                    .expect("seal");
                black_box(&in_place);
            })
        });
        let mut buf = plaintext.clone();
        group.bench_function(BenchmarkId::new("ring_raw", size), |b| {
            b.iter(|| {
                counter += 1;
                let tag = key
                    .seal_in_place_separate_tag(nonce(counter), Aad::from(&RAW_AAD), &mut buf)
                    .expect("seal");
                let _ = black_box(tag);
            })
        });
    }
    group.finish();
}

fn aead_open(c: &mut Criterion) {
    let (mut sender, mut receiver) = keyed_pair();
    let key = ring_key();
    let mut group = c.benchmark_group("aead_open");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plaintext = vec![0x5Au8; size];
        let kind = kind_for(size);
        group.bench_function(BenchmarkId::new("vcall", size), |b| {
            b.iter_batched(
                || {
                    let mut body = Vec::with_capacity(size + 64);
                    sender
                        .seal(kind, None, &plaintext, &mut body)
                        .expect("seal");
                    body
                },
                |mut body| {
                    let plain = receiver
                        .open(PAIR_SENDER, kind, None, &mut body, T0_MS)
                        .expect("open");
                    black_box(plain.len());
                    body
                },
                BatchSize::SmallInput,
            )
        });
        let unsigned = unsigned_key();
        let mut window = ReplayWindow::new();
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("unsigned", size), |b| {
            b.iter_batched(
                || {
                    counter += 1;
                    let mut body = vec![0u8; SealedHeader::LEN];
                    body.extend_from_slice(&plaintext);
                    unsigned
                        .seal_in_place(counter, PAIR_SENDER, kind, None, ROOM, &mut body, 0)
                        .expect("seal");
                    body
                },
                |mut body| {
                    let header = SealedHeader::decode(&body).expect("header");
                    assert!(window.check(header.counter));
                    let plain = unsigned
                        .open_in_place(&header, PAIR_SENDER, kind, None, ROOM, &mut body)
                        .expect("open");
                    black_box(plain.len());
                    window.accept(header.counter);
                    body
                },
                BatchSize::SmallInput,
            )
        });
        let mut sealed = plaintext.clone();
        key.seal_in_place_append_tag(nonce(1), Aad::from(&RAW_AAD), &mut sealed)
            .expect("seal");
        group.bench_function(BenchmarkId::new("ring_raw", size), |b| {
            b.iter_batched(
                || sealed.clone(),
                |mut body| {
                    let plain = key
                        .open_in_place(nonce(1), Aad::from(&RAW_AAD), &mut body)
                        .expect("open");
                    black_box(plain.len());
                    body
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// One batch of audio: five 100-byte packets sealed, then opened with attribution.
fn audio_batch(c: &mut Criterion) {
    const PACKETS: usize = 5;
    let (mut sender, _) = keyed_pair();
    let mut group = c.benchmark_group("audio_batch");
    group.throughput(Throughput::Elements(PACKETS as u64));
    let plaintext = [0x5Au8; 100];
    let mut out = Vec::with_capacity(512);
    group.bench_function("seal_signed", |b| {
        b.iter(|| {
            for _ in 0..PACKETS {
                out.clear();
                sender
                    .seal(DatagramKind::Audio, None, &plaintext, &mut out)
                    .expect("seal");
                black_box(&out);
            }
        })
    });
    let unsigned = unsigned_key();
    let mut counter = 0u64;
    group.bench_function("seal_unsigned", |b| {
        b.iter(|| {
            for _ in 0..PACKETS {
                counter += 1;
                out.clear();
                out.extend_from_slice(&[0; SealedHeader::LEN]);
                out.extend_from_slice(&plaintext);
                unsigned
                    .seal_in_place(
                        counter,
                        PAIR_SENDER,
                        DatagramKind::Audio,
                        None,
                        ROOM,
                        &mut out,
                        0,
                    )
                    .expect("seal");
                black_box(&out);
            }
        })
    });
    // Open: a fresh batch of five per iteration (sealed in the untimed setup, in order, so
    // the fifth carries the batch signature).
    let (mut sender, mut receiver) = keyed_pair();
    group.bench_function("open_signed", |b| {
        b.iter_batched(
            || {
                (0..PACKETS)
                    .map(|_| {
                        let mut body = Vec::with_capacity(512);
                        sender
                            .seal(DatagramKind::Audio, None, &plaintext, &mut body)
                            .expect("seal");
                        body
                    })
                    .collect::<Vec<_>>()
            },
            |mut bodies| {
                let mut played = 0;
                for body in &mut bodies {
                    if receiver
                        .open(PAIR_SENDER, DatagramKind::Audio, None, body, T0_MS)
                        .is_ok()
                    {
                        played += 1;
                    }
                    while let Some(a) = receiver.take_attributed(T0_MS) {
                        played += 1;
                        receiver.recycle(a);
                    }
                }
                assert_eq!(played, PACKETS);
                bodies
            },
            BatchSize::SmallInput,
        )
    });
    let mut window = ReplayWindow::new();
    let mut counter = 0u64;
    group.bench_function("open_unsigned", |b| {
        b.iter_batched(
            || {
                (0..PACKETS)
                    .map(|_| {
                        counter += 1;
                        let mut body = vec![0u8; SealedHeader::LEN];
                        body.extend_from_slice(&plaintext);
                        unsigned
                            .seal_in_place(
                                counter,
                                PAIR_SENDER,
                                DatagramKind::Audio,
                                None,
                                ROOM,
                                &mut body,
                                0,
                            )
                            .expect("seal");
                        body
                    })
                    .collect::<Vec<_>>()
            },
            |mut bodies| {
                for body in &mut bodies {
                    let header = SealedHeader::decode(body).expect("header");
                    assert!(window.check(header.counter));
                    let plain = unsigned
                        .open_in_place(&header, PAIR_SENDER, DatagramKind::Audio, None, ROOM, body)
                        .expect("open");
                    black_box(plain.len());
                    window.accept(header.counter);
                }
                bodies
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = aead_seal, aead_open, audio_batch
}
criterion_main!(benches);
