//! Finding 2 of issue 12: the room id of a `#p=` room is a passphrase oracle. Whoever sees it
//! (the relay) and knows or guesses the room name can test passphrases offline, one Argon2id
//! each, and a found passphrase gives it the announce key (so it could forge verified
//! announcements). The fix keeps the design and refuses guessable passphrases.

use crate::kdf::{self, Argon2Cost, ROOM_ARGON2, passphrase_salt};
use crate::link::{InviteLink, LinkError, PASSPHRASE_MIN_GUESSES_LOG10, RoomKeys, RoomSecret};

/// Argon2id with the protocol's structure but 8 KiB and one pass, so a dictionary runs in a test.
const CHEAP: Argon2Cost = Argon2Cost {
    memory_kib: 8,
    passes: 1,
    lanes: 1,
};

fn room_with(passphrase: &str, room: &str, cost: Argon2Cost) -> RoomKeys {
    let rkm = kdf::argon2id(passphrase.as_bytes(), &passphrase_salt(room), cost);
    RoomKeys::from_room_key_material(room, &rkm)
}

/// What an attacker tries: common passwords, words, and each with a year appended.
fn dictionary() -> Vec<String> {
    let base = [
        "password", "123456", "qwerty", "letmein", "welcome", "monkey", "dragon", "sunshine",
        "princess", "football", "standup", "team", "secret", "hunter2", "iloveyou", "admin",
    ];
    let mut out: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    for b in base {
        for year in 1970..=2030 {
            out.push(format!("{b}{year}"));
        }
    }
    out
}

#[test]
fn a_relay_with_the_room_id_cracks_a_weak_passphrase_offline() {
    // The victim's room (the cheap cost stands in for the real one, same derivation).
    let victim = room_with("sunshine2024", "standup", CHEAP);
    // The relay sees only the room id (in Hello) and guesses the name "standup".
    let seen_room_id = victim.room_id().to_vec();
    let dictionary = dictionary();
    let found = dictionary
        .iter()
        .find(|guess| room_with(guess, "standup", CHEAP).room_id() == seen_room_id);
    assert_eq!(found.map(String::as_str), Some("sunshine2024"));
    // The found passphrase gives the whole room: the same announce key as the members.
    assert!(room_with(found.unwrap(), "standup", CHEAP) == victim);
    // The same salt for every room of that name: a table built once serves them all.
    assert_eq!(
        room_with("sunshine2024", "standup", CHEAP).room_id(),
        victim.room_id()
    );
}

#[test]
fn with_the_real_parameters_one_guess_is_one_argon2id_and_a_comparison() {
    let room_id = |p: &str| {
        let rkm = kdf::room_key_material_from_passphrase(p, "standup");
        assert_eq!(
            *rkm,
            *kdf::argon2id(p.as_bytes(), &passphrase_salt("standup"), ROOM_ARGON2)
        );
        RoomKeys::from_room_key_material("standup", &rkm)
            .room_id()
            .to_vec()
    };
    let seen = room_id("sunshine2024");
    assert_eq!(
        room_id("sunshine2024"),
        seen,
        "the right guess is recognised"
    );
    assert_ne!(room_id("sunshine2023"), seen);
}

#[test]
fn such_a_room_can_no_longer_be_made_or_joined() {
    let link = "vcall://relay.example/standup#p=sunshine2024";
    let Err(LinkError::WeakPassphrase { estimated_log10 }) = InviteLink::parse(link) else {
        panic!("a weak passphrase link was accepted");
    };
    assert!(estimated_log10 < PASSPHRASE_MIN_GUESSES_LOG10);
    assert!(matches!(
        RoomKeys::derive(
            "standup",
            Some(&RoomSecret::Passphrase("sunshine2024".into()))
        ),
        Err(LinkError::WeakPassphrase { .. })
    ));
    // Every entry of the attack's dictionary is refused.
    for guess in dictionary() {
        assert!(RoomSecret::passphrase(&guess).is_err(), "{guess}");
    }
}
