//! The relays' cluster messages from NATS: a message that decodes re-encodes to the same.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vcall_relay::cluster::ClusterMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ClusterMessage::decode(&Bytes::copy_from_slice(data)) {
        let again = ClusterMessage::decode(&message.encode()).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
});
