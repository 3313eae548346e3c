//! Control frames: the body decoder (a frame that decodes re-encodes to one that decodes the
//! same) and the incremental stream decoder fed the same bytes in arbitrary chunks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vcall_proto::{ControlDecoder, ControlFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ControlFrame::decode(Bytes::copy_from_slice(data)) {
        let wire = frame.to_bytes();
        // `to_bytes` is the framed form: a length prefix, then the body.
        let again = ControlFrame::decode(wire.slice(4..)).expect("an encoded frame decodes");
        assert_eq!(again, frame);
    }
    // The first byte picks the chunk size; the decoder never panics or grows unbounded.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = ControlDecoder::new(4096);
    for chunk in rest.chunks(usize::from(split).max(1)) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert!(decoder.buffered() <= rest.len());
    }
});
