//! The reassembler fed an arbitrary sequence of fragments (data and repair) with arbitrary
//! time steps: it never panics, never completes a frame twice, and stays within its limits.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vcall_proto::fragment::{FragmentHeader, Reassembler, ReassemblyConfig};

#[derive(Debug, Arbitrary)]
struct Fragment {
    frame_id: u8,
    index: u8,
    count: u8,
    advance_ms: u8,
    chunk: Vec<u8>,
}

fuzz_target!(|fragments: Vec<Fragment>| {
    let config = ReassemblyConfig::default();
    let mut reassembler = Reassembler::new(config);
    let mut now = Instant::now();
    let mut completed = HashSet::new();
    for f in fragments.iter().take(512) {
        now += Duration::from_millis(u64::from(f.advance_ms));
        let header = FragmentHeader {
            frame_id: u32::from(f.frame_id),
            index: u16::from(f.index),
            count: u16::from(f.count),
        };
        if let Some(frame) = reassembler.insert(now, header, &f.chunk) {
            assert!(
                completed.insert(frame.frame_id),
                "frame {} completed twice",
                frame.frame_id
            );
        }
        assert!(reassembler.incomplete().count() <= config.max_frames_in_flight);
    }
});
