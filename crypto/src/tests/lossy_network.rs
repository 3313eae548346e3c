//! Sessions over the shared in-memory network (`vcall-netsim`): control streams with unequal
//! delays per member (ordered, as a QUIC stream is) and datagrams over lossy, jittery,
//! duplicating, reordering links. Keys still flow both ways between every pair, a duplicate
//! is always refused as a replay, and reordered datagrams within the window still open.

use std::time::{Duration, Instant};

use vcall_netsim::{LinkConfig, SimLink};
use vcall_proto::{DatagramHeader, DatagramKind, PeerId, datagram};

use super::{T0, identity, secret_room};
use crate::{Action, OpenError, SeededRandom, Session, SessionConfig};

struct Member {
    id: PeerId,
    s: Session,
    /// Relay → member control stream (ordered: one delay, no jitter) and datagrams.
    control: SimLink<(PeerId, Vec<u8>)>,
    datagrams: SimLink<Vec<u8>>,
}

fn unix_ms(t0: Instant, now: Instant) -> u64 {
    T0 + now.duration_since(t0).as_millis() as u64
}

/// Routes every pending `SendSignal` of member `i` through the relay onto the others' links.
fn route(members: &mut [Member], i: usize, now: Instant) {
    let from = members[i].id;
    while let Some(action) = members[i].s.poll_action() {
        if let Action::SendSignal { to, payload } = action {
            let to = to.to_wire();
            for m in members.iter_mut() {
                if m.id != from && (to == PeerId::NONE || to == m.id) {
                    let len = payload.len();
                    m.control.send(now, (from, payload.clone()), len);
                }
            }
        }
    }
}

/// Delivers what is due at `now`, fires due timers and routes what that produced.
fn step(members: &mut [Member], t0: Instant, now: Instant) {
    let ms = unix_ms(t0, now);
    for j in 0..members.len() {
        while let Some((from, payload)) = members[j].control.poll_deliver(now) {
            let _ = members[j].s.on_signal(from, &payload, ms);
        }
        if members[j].s.next_timeout().is_some_and(|t| t <= ms) {
            members[j].s.on_tick(ms);
        }
        route(members, j, now);
    }
}

#[test]
fn keys_flow_and_replays_are_refused_over_a_lossy_reordering_network() {
    let t0 = Instant::now();
    let mut now = t0;
    let lossy = LinkConfig {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(25),
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.05,
        ..LinkConfig::perfect()
    };
    let mut members: Vec<Member> = Vec::new();
    // Four members join 300 ms apart, each behind a control path of a different delay.
    for i in 0..4usize {
        let id = PeerId(i as u32 + 1);
        let roster: Vec<PeerId> = members.iter().map(|m| m.id).collect();
        let mut s = Session::new(
            identity(i),
            secret_room("lossy"),
            SessionConfig {
                display_name: format!("m{i}"),
                ..SessionConfig::default()
            },
            Box::new(SeededRandom::new(format!("lossy {i}").as_bytes())),
        );
        s.on_welcome(id, &roster, unix_ms(t0, now));
        for m in members.iter_mut() {
            m.s.on_peer_joined(id, unix_ms(t0, now));
        }
        members.push(Member {
            id,
            s,
            control: SimLink::new(
                LinkConfig {
                    delay: Duration::from_millis(5 + 40 * i as u64),
                    ..LinkConfig::perfect()
                },
                i as u64,
            ),
            datagrams: SimLink::new(lossy.clone(), 100 + i as u64),
        });
        for j in 0..members.len() {
            route(&mut members, j, now);
        }
        let until = now + Duration::from_millis(300);
        while now < until {
            now += Duration::from_millis(5);
            step(&mut members, t0, now);
        }
    }
    // Let the exchange settle for 3 s.
    for _ in 0..600 {
        now += Duration::from_millis(5);
        step(&mut members, t0, now);
    }
    for m in &members {
        let peers = m.s.peers();
        assert_eq!(peers.len(), 3, "{} sees everyone", m.id);
        assert!(
            peers
                .iter()
                .all(|p| p.verified && p.key_received && p.key_sent),
            "{}: {peers:?}",
            m.id
        );
    }

    // 200 heartbeats from member 0 to every other member over the lossy datagram links.
    for n in 0..200u32 {
        let mut d = Vec::new();
        DatagramHeader::new(DatagramKind::Heartbeat, None).append(&mut d);
        let plain = n.to_be_bytes();
        members[0]
            .s
            .seal(DatagramKind::Heartbeat, None, &plain, &mut d)
            .unwrap();
        datagram::stamp_sender(&mut d, members[0].id).unwrap();
        for m in members.iter_mut().skip(1) {
            let len = d.len();
            m.datagrams.send(now, d.clone(), len);
        }
        now += Duration::from_millis(10);
    }
    now += Duration::from_secs(1);
    let ms = unix_ms(t0, now);
    for m in members.iter_mut().skip(1) {
        let (mut opened, mut replays) = (Vec::new(), 0u64);
        while let Some(d) = m.datagrams.poll_deliver(now) {
            let (h, off) = DatagramHeader::decode(&d).unwrap();
            let mut body = d[off..].to_vec();
            match m.s.open(h.sender, h.kind, h.target, &mut body, ms) {
                Ok(p) => opened.push(u32::from_be_bytes(p[..4].try_into().unwrap())),
                Err(OpenError::Replayed { .. }) => replays += 1,
                Err(e) => panic!("{}: unexpected {e:?}", m.id),
            }
        }
        let stats = m.datagrams.stats();
        let mut unique = opened.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), opened.len(), "no heartbeat opens twice");
        assert_eq!(
            opened.len() as u64,
            200 - stats.lost(),
            "every delivered one opens"
        );
        assert_eq!(replays, stats.duplicated, "every duplicate is a replay");
        assert!(stats.duplicated > 0 && stats.lost() > 0, "{stats:?}");
        let mut sorted = opened.clone();
        sorted.sort();
        assert_ne!(
            sorted, opened,
            "the link reordered some, and they still opened"
        );
    }
}
