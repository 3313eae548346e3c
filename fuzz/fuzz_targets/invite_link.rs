//! Invite links as pasted by users: parsing never panics, and a parsed link with a secret
//! prints back to one that parses to the same relay, room and secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vcall_crypto::InviteLink;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(link) = InviteLink::parse(text) {
        let printed = link.to_secret_string();
        let again = InviteLink::parse(&printed).expect("a printed link parses");
        assert_eq!(
            (again.host.as_str(), again.port, again.room.as_str()),
            (link.host.as_str(), link.port, link.room.as_str())
        );
        assert_eq!(again.relay_fingerprint, link.relay_fingerprint);
    }
});
