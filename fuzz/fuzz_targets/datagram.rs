//! Datagram headers (and the relay's in-place sender stamp), fragment headers, and every
//! media plaintext and E2EE message decoder on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vcall_proto::PeerId;
use vcall_proto::datagram::{DatagramHeader, stamp_sender};
use vcall_proto::fragment::FragmentHeader;
use vcall_proto::media::{AudioMeta, Feedback, Heartbeat, VideoMeta};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, offset)) = DatagramHeader::decode(data) {
        assert!(offset <= data.len());
        let mut stamped = data.to_vec();
        let after = stamp_sender(&mut stamped, PeerId(0xabcd)).expect("a valid header stamps");
        assert_eq!(after.sender, PeerId(0xabcd));
        assert_eq!(
            (after.kind, after.target, after.layer),
            (header.kind, header.target, header.layer)
        );
        assert_eq!(stamped.len(), data.len(), "stamping never resizes");
    }
    let _ = FragmentHeader::decode(data);
    let _ = VideoMeta::decode(data);
    let _ = AudioMeta::decode(data);
    let _ = Heartbeat::decode(data);
    let _ = Feedback::decode(data);
    let _ = vcall_proto::e2ee::decode_any(data);
    let _ = vcall_proto::e2ee::decode_signal(data);
});
