//! Handshake: the public-key operations of vcall's E2EE key exchange and the whole exchange of
//! a 10-peer room, in ms.
//!
//! - `handshake/identity_generate_2048`: `Identity::generate(2048)` (RSA-2048 + Ed25519).
//! - `handshake/oaep_wrap` / `oaep_unwrap`: `PeerKeys::wrap_secret` / `Identity::unwrap_secret`
//!   of a 32-byte sender secret (RSA-OAEP-SHA256).
//! - `handshake/sign` / `verify`: `Identity::sign` / `PeerKeys::verify` of a key message's
//!   signed bytes. vcall signs key messages and acks with Ed25519 (not RSA-PSS as the issue's
//!   wording assumed), so that is what is measured.
//! - `handshake/room_10_full_exchange`: 10 fresh `Session`s (identities pre-generated) join one
//!   after another through the engine's in-memory call ([`vcall_benches::keyed_call`]: real `CallCore`s) until every member
//!   holds every other member's sender key: announcements sealed under the room secret, 90 key
//!   messages (wrap + sign, verify + unwrap), 90 signed acks, join ratchets, timers.
//!
//! The in-run baseline of the room figure is the sum of its primitives measured here
//! (90 × (wrap + unwrap + 2 sign + 2 verify)): `scripts/bench-ratios.sh` prints it beside the
//! room figure, so the state machine's own overhead shows as the ratio.

use std::hint::black_box;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use vcall_benches::{config, identities, keyed_call, room_keys};
use vcall_crypto::{Identity, OsRandom};

/// Members of the benchmarked room.
const ROOM_SIZE: usize = 10;

fn primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("identity_generate_2048", |b| {
        b.iter(|| black_box(Identity::generate(2048).expect("identity")))
    });

    let ids = identities(2);
    let alice = &ids[0];
    let bob_public = ids[1].public_keys();
    let alice_public = alice.public_keys();
    let mut rng = OsRandom::new();
    let secret = [0x42u8; 32];
    let wrapped_to_alice = alice_public.wrap_secret(&secret, &mut rng);
    group.sampling_mode(SamplingMode::Auto);
    group.bench_function("oaep_wrap", |b| {
        b.iter(|| black_box(bob_public.wrap_secret(black_box(&secret), &mut rng)))
    });
    group.bench_function("oaep_unwrap", |b| {
        b.iter(|| {
            let s = alice
                .unwrap_secret(black_box(&wrapped_to_alice), &mut rng)
                .expect("unwrap");
            black_box(s)
        })
    });
    // About the size of a key message's signed bytes (ids, room id, key id, 256-byte wrap).
    let message = vec![0x17u8; 300];
    let signature = alice.sign(&message);
    group.bench_function("sign", |b| {
        b.iter(|| black_box(alice.sign(black_box(&message))))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(alice_public.verify(black_box(&message), &signature)))
    });
    group.finish();
}

fn room_exchange(c: &mut Criterion) {
    let ids = identities(ROOM_SIZE);
    let keys = room_keys();
    // Report what one exchange routes, once (outside the measurement).
    let started = std::time::Instant::now();
    let room = keyed_call(&ids, &keys);
    let r = room.relay;
    println!(
        "room of {ROOM_SIZE}: {} control signals delivered ({} announcements, {} key messages, \
         {} acks), {} ms simulated",
        r.signals_delivered,
        r.announcements,
        r.key_messages,
        r.acks,
        room.now.saturating_duration_since(started).as_millis()
    );
    let mut group = c.benchmark_group("handshake");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("room_10_full_exchange", |b| {
        b.iter(|| {
            let room = keyed_call(&ids, &keys);
            assert!(room.all_keyed());
            black_box(room.relay.signals_delivered)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = primitives, room_exchange
}
criterion_main!(benches);
