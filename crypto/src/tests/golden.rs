//! A behaviour pin: deterministic scenarios (seeded randomness and identities) whose every
//! signal byte, action, rejection, open result and timeout is written to a transcript, and the
//! transcript's hash compared to a recorded one. A refactor that changes any byte on the wire,
//! any action or any timer changes the hash. Set `VCALL_GOLDEN_DUMP=<file>` to write the
//! transcript for diffing.

use std::fmt::Write as _;

use super::*;
use crate::{HandshakeEvent, Rejection};

/// SHA-256 of the transcript. History: `29a44843…` was the original `session.rs` (before the
/// split, nets without heartbeats); see the git log of this file for each change since
/// (the latest: audio batch signatures every 3rd packet instead of every 5th; an audio packet
/// of the media scenario now carries a batch and opens at once, and a mutated datagram, one
/// batch trailer shorter before it, fails as Forged instead of UnknownKey).
const EXPECTED: &str = "af0c251af81fe17eab088a9ec151890b94ad6c4d07cc776dc16d60568e965c29";

/// The peer of a log line as a wire id (0: none).
fn log_peer(e: &HandshakeEvent) -> u32 {
    e.peer.map_or(0, |p| p.0)
}

fn norm(a: &Action) -> String {
    match a {
        Action::SendSignal { .. } => "signal".into(),
        Action::KeyInstalled { peer, key } => format!("installed {} {key:?}", peer.0),
        Action::KeyRetired { peer, key } => format!("retired {} {key:?}", peer.0),
        Action::SenderKeyChanged { key } => format!("sender {key:?}"),
        Action::PeerChanged { peer } => format!("changed {}", peer.0),
        Action::Log(e) => format!(
            "log {} {} {:?} {}",
            e.kind.as_str(),
            log_peer(e),
            e.key,
            e.at_ms
        ),
        Action::Rejected { peer, reason } => format!("rejected {} {reason:?}", peer.0),
        Action::PeerSilent { peer } => format!("silent {}", peer.0),
        Action::Fatal(f) => format!("fatal {f:?}"),
    }
}

struct Transcript {
    out: String,
    /// Per net: how many signals / events of each client were already written.
    sent_done: usize,
    events_done: Vec<usize>,
}

impl Transcript {
    fn new() -> Self {
        Self {
            out: String::new(),
            sent_done: 0,
            events_done: Vec::new(),
        }
    }

    fn start_net(&mut self, label: &str) {
        self.sent_done = 0;
        self.events_done.clear();
        let _ = writeln!(self.out, "== {label}");
    }

    /// Writes what happened since the last checkpoint and every client's state.
    fn checkpoint(&mut self, net: &Net, label: &str) {
        let _ = writeln!(self.out, "-- {label} at {}", net.now);
        for (msg, from, to, payload) in &net.sent[self.sent_done..] {
            let _ = writeln!(
                self.out,
                "sent {msg} {}->{} {}",
                from.0,
                to.0,
                hex::encode(payload)
            );
        }
        self.sent_done = net.sent.len();
        self.events_done.resize(net.clients.len(), 0);
        for (i, c) in net.clients.iter().enumerate() {
            for e in &c.events[self.events_done[i]..] {
                let _ = writeln!(self.out, "{} {}", c.name, norm(e));
            }
            self.events_done[i] = c.events.len();
            let _ = writeln!(
                self.out,
                "{} state me={:?} key={:?} timeout={:?} code={} peers={:?}",
                c.name,
                c.s.my_peer_id(),
                c.s.sender_key_id(),
                c.s.next_timeout(),
                c.s.security_code().digits(),
                c.s.peers()
            );
        }
    }

    fn line(&mut self, s: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{s}");
    }
}

fn keyed(names: &[&'static str], room: &RoomKeys, first_identity: usize) -> Net {
    let mut net = Net::new();
    for (i, name) in names.iter().enumerate() {
        net.join(name, identity(first_identity + i), room.clone());
        net.advance(500);
    }
    net.advance(1_000);
    net
}

/// A tiny deterministic generator for mutations.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn deliver(net: &mut Net, to: usize, from: PeerId, payload: &[u8]) -> Result<(), Rejection> {
    let now = net.now;
    let r = net.clients[to].s.on_signal(from, payload, now);
    while let Some(a) = net.clients[to].s.poll_action() {
        match a {
            Action::SendSignal { .. } => {}
            other => net.clients[to].events.push(other),
        }
    }
    r
}

fn scenario_membership(t: &mut Transcript) {
    let room = secret_room("golden");
    let mut net = keyed(&["Alice", "Bob", "Casey"], &room, 0);
    t.start_net("membership");
    t.checkpoint(&net, "three keyed");
    net.assert_all_decrypt();
    t.checkpoint(&net, "all decrypt");
    let dave = net.join("Dave", identity(3), room.clone());
    net.advance(2_000);
    t.checkpoint(&net, "dave joined");
    net.assert_all_decrypt();
    net.leave(1);
    net.run();
    t.checkpoint(&net, "bob left");
    net.advance(3_000);
    t.checkpoint(&net, "after switch");
    net.assert_all_decrypt();
    net.advance(600_000);
    t.checkpoint(&net, "epoch rotation");
    net.assert_all_decrypt();
    net.advance(15_000);
    t.checkpoint(&net, "old keys retired");
    // Leave without acks: the switch waits for the deadline.
    net.leave(dave);
    let now = net.now;
    let d = net.clients[dave].id;
    net.clients[0].s.on_peer_left(d, now);
    net.drain(0);
    t.checkpoint(&net, "pending without acks");
    net.now += 2_000;
    let now = net.now;
    net.clients[0].s.on_tick(now);
    net.drain(0);
    t.checkpoint(&net, "switched at deadline");
    // A simultaneous leave and join.
    net.leave(2);
    net.join("Erin", identity(4), room.clone());
    net.run();
    t.checkpoint(&net, "leave+join");
    net.advance(5_000);
    t.checkpoint(&net, "settled");
    net.assert_all_decrypt();
    t.checkpoint(&net, "final decrypt");
}

fn scenario_spies_and_open_room(t: &mut Transcript) {
    let room = secret_room("golden spies");
    let mut net = keyed(&["Alice", "Bob"], &room, 0);
    t.start_net("spies");
    let wrong = RoomKeys::derive("golden spies", Some(&RoomSecret::Key([8; 32]))).unwrap();
    net.join("Spy", identity(3), wrong.with_room_id(room.room_id()));
    net.join(
        "Eve",
        identity(4),
        RoomKeys::derive("golden spies", None).unwrap(),
    );
    net.advance(5_000);
    t.checkpoint(&net, "spies joined");
    for (a, b) in [(0, 2), (0, 3), (2, 0), (3, 1), (0, 1)] {
        let d = net.seal_datagram(a, DatagramKind::Feedback, b"spied");
        let r = net.open_datagram(b, &d);
        t.line(format_args!("open {a}->{b} {r:?}"));
    }
    net.advance(3_000);
    t.checkpoint(&net, "after spied media");

    let open = RoomKeys::derive("golden open", None).unwrap();
    let mut net = keyed(&["Ann", "Ben", "Cat"], &open, 1);
    t.start_net("open room");
    t.checkpoint(&net, "open keyed");
    net.assert_all_decrypt();
    net.leave(0);
    net.advance(3_000);
    t.checkpoint(&net, "open leave");
}

fn scenario_mutations(t: &mut Transcript) {
    let room = secret_room("golden mutations");
    let mut net = keyed(&["Alice", "Bob", "Casey"], &room, 0);
    t.start_net("mutations");
    t.checkpoint(&net, "keyed");
    let mut rng = Lcg(42);
    let ids: Vec<PeerId> = net.clients.iter().map(|c| c.id).collect();
    let sent = net.sent.clone();
    for (i, (_, from, _, payload)) in sent.iter().enumerate() {
        for _ in 0..3 {
            let mut p = payload.clone();
            match rng.next() % 4 {
                0 if !p.is_empty() => {
                    let pos = rng.next() as usize % p.len();
                    p[pos] ^= 1 << (rng.next() % 8);
                }
                1 => p.truncate(rng.next() as usize % (p.len() + 1)),
                2 => {}
                _ => p.push(rng.next() as u8),
            }
            let to = rng.next() as usize % 3;
            let from = if rng.next().is_multiple_of(4) {
                ids[rng.next() as usize % 3]
            } else {
                *from
            };
            let r = deliver(&mut net, to, from, &p);
            t.line(format_args!("mut {i} to {to} from {} {r:?}", from.0));
        }
    }
    t.checkpoint(&net, "after signal mutations");
    for i in 0..30u64 {
        let a = (i % 3) as usize;
        let kind = DatagramKind::ALL[i as usize % DatagramKind::ALL.len()];
        let mut d = net.seal_datagram(a, kind, format!("pt {i}").as_bytes());
        let b = (a + 1 + (rng.next() % 2) as usize) % 3;
        if rng.next().is_multiple_of(2) {
            let pos = rng.next() as usize % d.len();
            d[pos] ^= 1 << (rng.next() % 8);
        }
        let r = net.open_datagram(b, &d);
        let r2 = net.open_datagram(b, &d);
        t.line(format_args!("dgram {i} {a}->{b} {r:?} {r2:?}"));
    }
    net.advance(20_000);
    t.checkpoint(&net, "after media mutations");

    // A key message that arrives before its sender's announcement is buffered, then used.
    let (alice, bob) = (ids[0], ids[1]);
    let km = sent
        .iter()
        .find(|(_, f, to, p)| *f == alice && *to == bob && p[0] == TAG_KEY_MESSAGE)
        .map(|(_, _, _, p)| p.clone())
        .unwrap();
    let ann = sent
        .iter()
        .rev()
        .find(|(_, f, _, p)| *f == alice && p[0] == TAG_ANNOUNCEMENT)
        .map(|(_, _, _, p)| p.clone())
        .unwrap();
    let mut bob2 = Net::session("Bob", identity(1), room.clone());
    let now = net.now;
    bob2.on_welcome(bob, &[alice], now);
    let r1 = bob2.on_signal(alice, &km, now);
    let timeout = bob2.next_timeout();
    let r2 = bob2.on_signal(alice, &ann, now);
    let mut acts = Vec::new();
    while let Some(a) = bob2.poll_action() {
        acts.push(match &a {
            Action::SendSignal { payload, .. } => format!("signal {}", hex::encode(payload)),
            other => norm(other),
        });
    }
    t.line(format_args!(
        "buffered {r1:?} {timeout:?} {r2:?} {acts:?} {:?}",
        bob2.next_timeout()
    ));
    bob2.on_tick(now + 10_001);
    while let Some(a) = bob2.poll_action() {
        t.line(norm(&a));
    }
    t.line(format_args!("bob2 {:?}", bob2.peers()));
}

fn scenario_buffered_fresh(t: &mut Transcript) {
    // The same, within the freshness window: the buffered key is used once the announcement
    // arrives.
    let room = secret_room("golden buffered");
    let mut net = Net::new();
    net.join("Alice", identity(0), room.clone());
    net.join("Bob", identity(1), room.clone());
    net.run();
    t.start_net("buffered");
    t.checkpoint(&net, "two joined");
    let (alice, bob) = (net.clients[0].id, net.clients[1].id);
    let km = net
        .sent
        .iter()
        .find(|(_, f, to, p)| *f == alice && *to == bob && p[0] == TAG_KEY_MESSAGE)
        .map(|(_, _, _, p)| p.clone())
        .unwrap();
    let ann = net
        .sent
        .iter()
        .find(|(_, f, _, p)| *f == alice && p[0] == TAG_ANNOUNCEMENT)
        .map(|(_, _, _, p)| p.clone())
        .unwrap();
    let mut bob2 = Net::session("Bob", identity(1), room.clone());
    let now = net.now + 10;
    bob2.on_welcome(bob, &[alice], now);
    bob2.on_peer_joined(PeerId(99), now);
    let r1 = bob2.on_signal(alice, &km, now);
    let r1b = bob2.on_signal(alice, &km, now + 1);
    let t1 = bob2.next_timeout();
    let r2 = bob2.on_signal(alice, &ann, now + 2);
    let t2 = bob2.next_timeout();
    t.line(format_args!("{r1:?} {r1b:?} {t1:?} {r2:?} {t2:?}"));
    for step in [0, 500, 2_000, 2_500, 10_000, 20_000] {
        bob2.on_tick(now + step);
        t.line(format_args!("tick {step} -> {:?}", bob2.next_timeout()));
    }
    while let Some(a) = bob2.poll_action() {
        t.line(match &a {
            Action::SendSignal { payload, .. } => format!("signal {}", hex::encode(payload)),
            other => norm(other),
        });
    }
    t.line(format_args!("bob2 {:?}", bob2.peers()));
}

use vcall_proto::e2ee::{TAG_ANNOUNCEMENT, TAG_KEY_MESSAGE};

use crate::RoomSecret;

#[test]
fn the_transcript_of_every_scenario_is_unchanged() {
    let mut t = Transcript::new();
    scenario_membership(&mut t);
    scenario_spies_and_open_room(&mut t);
    scenario_mutations(&mut t);
    scenario_buffered_fresh(&mut t);
    if let Ok(path) = std::env::var("VCALL_GOLDEN_DUMP") {
        std::fs::write(path, &t.out).unwrap();
    }
    let hash = hex::encode(crate::kdf::sha256(&[t.out.as_bytes()]));
    assert_eq!(hash, EXPECTED, "transcript changed ({} bytes)", t.out.len());
}
