//! Property tests: arbitrary bytes never panic any vcall-proto decoder, and valid messages
//! survive arbitrary stream chunking.

use bytes::Bytes;
use proptest::prelude::*;
use vcall_proto::control::{ControlDecoder, ControlFrame, DEFAULT_MAX_CONTROL_FRAME};
use vcall_proto::fragment::{FragmentHeader, Reassembler, ReassemblyConfig, fragment_frame};
use vcall_proto::media::{AudioMeta, Feedback, Heartbeat, VideoMeta};
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId, datagram};

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = DatagramHeader::decode(&bytes);
        let mut copy = bytes.clone();
        let _ = datagram::stamp_sender(&mut copy, PeerId(1));
        let _ = ControlFrame::decode(Bytes::from(bytes.clone()));
        let mut dec = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
        dec.push(&bytes);
        while let Ok(Some(_)) = dec.next_frame() {}
        let _ = FragmentHeader::decode(&bytes);
        let _ = VideoMeta::decode(&bytes);
        let _ = AudioMeta::decode(&bytes);
        let _ = Heartbeat::decode(&bytes);
        let _ = Feedback::decode(&bytes);
        let _ = vcall_proto::e2ee::decode_any(&bytes);
    }

    #[test]
    fn arbitrary_fragments_never_panic_the_reassembler(
        frags in proptest::collection::vec((0u32..4, 0u16..8, 1u16..8, proptest::collection::vec(any::<u8>(), 0..40)), 0..64)
    ) {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = std::time::Instant::now();
        for (frame_id, index, count, chunk) in frags {
            if let Some(done) = r.insert(now, FragmentHeader { frame_id, index, count }, &chunk) {
                prop_assert_eq!(done.frame_id, frame_id);
            }
        }
    }

    #[test]
    fn any_frame_survives_fragmentation_and_shuffling(
        data in proptest::collection::vec(any::<u8>(), 1..20_000),
        seed in any::<u64>(),
    ) {
        let h = DatagramHeader::new(DatagramKind::Video, None);
        let mut dgrams: Vec<Bytes> = fragment_frame(&h, 3, &data, MAX_DATAGRAM_SIZE).unwrap().collect();
        prop_assert!(dgrams.iter().all(|d| d.len() <= MAX_DATAGRAM_SIZE));
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..dgrams.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            dgrams.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut out = None;
        for d in &dgrams {
            let (_, off) = DatagramHeader::decode(d).unwrap();
            let (fh, chunk) = FragmentHeader::decode(&d[off..]).unwrap();
            if let Some(f) = r.insert(std::time::Instant::now(), fh, chunk) { out = Some(f.data); }
        }
        prop_assert_eq!(out, Some(data));
    }

    #[test]
    fn control_stream_survives_arbitrary_chunking(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(1usize..200, 1..40),
    ) {
        let frame = ControlFrame::Signal { to: PeerId(2), from: PeerId(1), payload: Bytes::from(payload) };
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        frame.encode(&mut wire);
        let mut dec = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
        let mut got = Vec::new();
        let mut rest = &wire[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let n = (*c).min(rest.len());
            dec.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = dec.next_frame().unwrap() { got.push(f); }
        }
        prop_assert_eq!(got, vec![frame.clone(), frame]);
    }
}
