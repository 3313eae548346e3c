//! Proto: the wire codecs on the media path, in packets/s.
//!
//! - `proto_header`: `DatagramHeader::write` / `decode` (the clear header every datagram
//!   carries and the relay parses) and `FragmentHeader::write` / `decode`, one packet per
//!   iteration.
//! - `proto_fragment/{vcall,memcpy}/N`: `fragment_frame` of an N-byte sealed frame into
//!   ≤ 1100-byte datagrams, beside the floor of copying the same N bytes once into one buffer
//!   (what any fragmenter must at least do).
//! - `proto_reassemble/{vcall,memcpy}/N`: parsing every fragment's headers and
//!   `Reassembler::insert` until the frame completes, beside copying the chunks once into one
//!   buffer.
//!
//! Throughput is datagrams per iteration, so all figures read as packets/s.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vcall_benches::config;
use vcall_proto::fragment::{
    FRAGMENT_HEADER_LEN, FragmentHeader, Reassembler, ReassemblyConfig, fragment_frame,
};
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

const FRAME_SIZES: [usize; 2] = [8 * 1024, 64 * 1024];

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("proto_header");
    group.throughput(Throughput::Elements(1));
    let header = DatagramHeader {
        kind: DatagramKind::Video,
        sender: PeerId(3),
        target: None,
        layer: 0,
    };
    let mut out = [0u8; DatagramHeader::MAX_LEN];
    group.bench_function("datagram_write", |b| {
        b.iter(|| black_box(black_box(&header).write(&mut out)))
    });
    let mut datagram = vec![0u8; MAX_DATAGRAM_SIZE];
    header.write(&mut datagram);
    group.bench_function("datagram_decode", |b| {
        b.iter(|| black_box(DatagramHeader::decode(black_box(&datagram)).expect("decode")))
    });
    let frag = FragmentHeader {
        frame_id: 77,
        index: 3,
        count: 8,
    };
    let mut fh = [0u8; FRAGMENT_HEADER_LEN];
    group.bench_function("fragment_write", |b| {
        b.iter(|| {
            black_box(&frag).write(&mut fh);
            black_box(fh)
        })
    });
    let body = &datagram[DatagramHeader::MIN_LEN..];
    let mut body = body.to_vec();
    body[..FRAGMENT_HEADER_LEN].copy_from_slice(&fh);
    group.bench_function("fragment_decode", |b| {
        b.iter(|| black_box(FragmentHeader::decode(black_box(&body)).expect("decode")))
    });
    group.finish();
}

fn datagrams_of(frame: &[u8], frame_id: u32) -> Vec<Bytes> {
    let header = DatagramHeader::new(DatagramKind::Video, None);
    fragment_frame(&header, frame_id, frame, MAX_DATAGRAM_SIZE)
        .expect("fragment")
        .collect()
}

fn fragmentation(c: &mut Criterion) {
    let mut group = c.benchmark_group("proto_fragment");
    for size in FRAME_SIZES {
        let frame = vec![0xC3u8; size];
        let count = datagrams_of(&frame, 0).len();
        group.throughput(Throughput::Elements(count as u64));
        let header = DatagramHeader::new(DatagramKind::Video, None);
        let mut frame_id = 0u32;
        group.bench_function(BenchmarkId::new("vcall", size), |b| {
            b.iter(|| {
                frame_id = frame_id.wrapping_add(1);
                let fragments =
                    fragment_frame(&header, frame_id, black_box(&frame), MAX_DATAGRAM_SIZE)
                        .expect("fragment");
                for d in fragments {
                    black_box(d);
                }
            })
        });
        group.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                let mut buf = Vec::with_capacity(size);
                buf.extend_from_slice(black_box(&frame));
                black_box(buf)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("proto_reassemble");
    for size in FRAME_SIZES {
        let frame = vec![0xC3u8; size];
        // 256 frames with distinct ids: the reassembler rejects ids it finished recently.
        let frames: Vec<Vec<Bytes>> = (0..256).map(|id| datagrams_of(&frame, id)).collect();
        let count = frames[0].len();
        group.throughput(Throughput::Elements(count as u64));
        let mut reassembler = Reassembler::new(ReassemblyConfig::default());
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("vcall", size), |b| {
            b.iter(|| {
                let now = Instant::now();
                let mut done = None;
                for d in &frames[i % frames.len()] {
                    let (_, offset) = DatagramHeader::decode(d).expect("header");
                    let (fh, chunk) = FragmentHeader::decode(&d[offset..]).expect("fragment");
                    done = reassembler.insert(now, fh, chunk);
                }
                i += 1;
                black_box(done.expect("complete"))
            })
        });
        let skip = DatagramHeader::MIN_LEN + FRAGMENT_HEADER_LEN;
        group.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(size);
                for d in &frames[i % frames.len()] {
                    out.extend_from_slice(&d[skip..]);
                }
                i += 1;
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = headers, fragmentation
}
criterion_main!(benches);
