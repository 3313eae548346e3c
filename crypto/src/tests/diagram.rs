//! The seed diagram (shared/e2ee-sequence.txt) as a test: Alice, Bob and Casey join in order
//! through an in-memory relay; the diagram's arrows appear in causal order.

use super::*;
use crate::HandshakeEventKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrow {
    /// `X->Server`: X sends (`to = None`: broadcast).
    Send(&'static str, Option<&'static str>, What),
    /// `Server->Y`: Y receives a message from X.
    Recv(&'static str, &'static str, What),
}
use Arrow::{Recv, Send};

/// The diagram, arrow by arrow (its "joins room" and "starts heartbeats" lines are the join and
/// the engine's heartbeats, checked separately).
const DIAGRAM: &[Arrow] = &[
    Send("Alice", None, What::Ann),
    Send("Bob", None, What::Ann),
    Recv("Bob", "Alice", What::Ann),
    Send("Alice", Some("Bob"), What::Key),
    Recv("Alice", "Bob", What::Key),
    Send("Alice", None, What::Ann),
    Recv("Alice", "Bob", What::Ann),
    Send("Bob", Some("Alice"), What::Key),
    Recv("Bob", "Alice", What::Key),
    Send("Casey", None, What::Ann),
    Recv("Casey", "Alice", What::Ann),
    Send("Alice", Some("Casey"), What::Key),
    Recv("Alice", "Casey", What::Key),
    Recv("Casey", "Bob", What::Ann),
    Send("Bob", Some("Casey"), What::Key),
    Recv("Bob", "Casey", What::Key),
    Send("Alice", None, What::Ann),
    Recv("Alice", "Casey", What::Ann),
    Send("Casey", Some("Alice"), What::Key),
    Recv("Casey", "Alice", What::Key),
    Recv("Alice", "Bob", What::Ann),
    Send("Bob", Some("Alice"), What::Key),
    Recv("Bob", "Alice", What::Key),
    Send("Bob", None, What::Ann),
    Recv("Bob", "Casey", What::Ann),
    Send("Casey", Some("Bob"), What::Key),
    Recv("Casey", "Bob", What::Key),
    Recv("Bob", "Alice", What::Ann),
    Send("Alice", Some("Bob"), What::Key),
    Recv("Alice", "Bob", What::Key),
];

impl Arrow {
    /// The client whose lifeline this arrow is on.
    fn lifeline(self) -> &'static str {
        match self {
            Send(x, _, _) => x,
            Recv(_, y, _) => y,
        }
    }
}

/// Matches every arrow to a flow event, in causal order (see below) and, for a delivery, to the
/// very message its send arrow matched. The relay lifeline imposes no order: it forwards on
/// independent per-client streams.
fn match_diagram(net: &Net) -> Result<Vec<usize>, String> {
    let id = |name: &str| net.clients.iter().find(|c| c.name == name).unwrap().id;
    let mut matched: Vec<usize> = Vec::new();
    let mut used = vec![false; net.flow.len()];
    for (i, arrow) in DIAGRAM.iter().enumerate() {
        // A send follows everything before it on its lifeline; a receive follows its send and
        // the previous send on its lifeline (arrivals from different senders are concurrent).
        let is_send = matches!(arrow, Send(..));
        let mut lower: Option<usize> = DIAGRAM[..i]
            .iter()
            .rposition(|a| a.lifeline() == arrow.lifeline() && (is_send || matches!(a, Send(..))))
            .map(|j| matched[j]);
        let mut send_msg = None;
        if let Recv(x, y, w) = *arrow {
            let j = DIAGRAM[..i]
                .iter()
                .rposition(|a| match *a {
                    Send(s, to, sw) => s == x && sw == w && (to.is_none() || to == Some(y)),
                    _ => false,
                })
                .ok_or(format!("arrow {i} has no send"))?;
            lower = lower.max(Some(matched[j]));
            let Flow::Sent { msg, .. } = net.flow[matched[j]] else {
                unreachable!()
            };
            send_msg = Some(msg);
        }
        let start = lower.map_or(0, |l| l + 1);
        let found = (start..net.flow.len()).find(|&f| {
            !used[f]
                && match (*arrow, &net.flow[f]) {
                    (
                        Send(x, to, w),
                        Flow::Sent {
                            from, to: t, what, ..
                        },
                    ) => *from == id(x) && *t == to.map_or(PeerId::NONE, id) && *what == w,
                    (
                        Recv(x, y, w),
                        Flow::Delivered {
                            msg,
                            from,
                            to,
                            what,
                        },
                    ) => *from == id(x) && *to == id(y) && *what == w && Some(*msg) == send_msg,
                    _ => false,
                }
        });
        match found {
            Some(f) => {
                used[f] = true;
                matched.push(f);
            }
            None => {
                return Err(format!(
                    "arrow {i} {arrow:?} not found after flow index {start}"
                ));
            }
        }
    }
    Ok(matched)
}

fn run_diagram(room: RoomKeys) -> Net {
    let mut net = Net::new();
    net.join("Alice", identity(0), room.clone());
    net.run();
    net.advance(1_000);
    net.join("Bob", identity(1), room.clone());
    net.run();
    net.advance(1_000);
    net.join("Casey", identity(2), room);
    net.run();
    net.advance(1_000);
    net
}

fn print_flow(net: &Net) -> String {
    let name = |id: PeerId| {
        net.clients
            .iter()
            .find(|c| c.id == id)
            .map_or("all", |c| c.name)
    };
    net.flow
        .iter()
        .enumerate()
        .map(|(i, f)| match f {
            Flow::Sent { from, to, what, .. } => {
                format!("{i}: {} -> {} {what:?}", name(*from), name(*to))
            }
            Flow::Delivered { from, to, what, .. } => {
                format!(
                    "{i}:     delivered {} -> {} {what:?}",
                    name(*from),
                    name(*to)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_seed_diagram_runs_in_causal_order_and_everyone_decrypts_everyone() {
    for room in [
        secret_room("room 1"),
        RoomKeys::derive("room 1", None).unwrap(),
    ] {
        let secret = room.has_secret();
        let mut net = run_diagram(room);
        if let Err(e) = match_diagram(&net) {
            panic!("{e}\nflow:\n{}", print_flow(&net));
        }
        // All six directed keys are installed; everyone sees everyone with the right status.
        for a in 0..3 {
            for b in 0..3 {
                if a == b {
                    continue;
                }
                let info = net.clients[a].s.peer(net.clients[b].id).unwrap();
                assert!(
                    info.key_received && info.key_sent,
                    "{} <-> {}",
                    net.clients[a].name,
                    net.clients[b].name
                );
                assert_eq!(info.verified, secret);
                assert_eq!(info.display_name.as_deref(), Some(net.clients[b].name));
                assert_eq!(info.fingerprint, Some(net.clients[b].s.my_fingerprint()));
                assert!(net.clients[a].events.iter().any(|e| matches!(e,
                    Action::KeyInstalled { peer, .. } if *peer == net.clients[b].id)));
            }
        }
        // One security code for the whole room.
        let code = net.clients[0].s.security_code();
        assert!(net.clients.iter().all(|c| c.s.security_code() == code));
        assert_eq!(code.digits().len(), 6 * 5 + 5);
        // Every handshake log kind of the diagram shows up, with vcall-bot's names.
        let kinds: Vec<&str> = net.clients[0]
            .events
            .iter()
            .filter_map(|e| match e {
                Action::Log(l) => Some(l.kind.as_str()),
                _ => None,
            })
            .collect();
        for k in [
            "sent_pubkey",
            "recv_pubkey",
            "sent_key",
            "recv_key",
            "reannounce_new_peer",
            "rekey",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        assert!(net.clients.iter().all(|c| {
            c.events
                .iter()
                .all(|e| !matches!(e, Action::Rejected { .. }))
        }));
        // Key messages go to one peer, never to everyone.
        assert!(net.key_messages().iter().all(|(_, to)| *to != PeerId::NONE));
        net.assert_all_decrypt();
        // A second round, after a while: still fine (the counter moves on, windows hold).
        net.advance(5_000);
        net.assert_all_decrypt();
        let _ = HandshakeEventKind::Rekey;
    }
}

#[test]
fn heartbeats_from_a_peer_whose_key_we_lack_trigger_a_reannouncement() {
    let room = secret_room("hb");
    let mut net = Net::new();
    let a = net.join("Alice", identity(0), room.clone());
    net.run();
    // Bob joins but the relay loses his announcement.
    let b = net.join("Bob", identity(1), room);
    net.queue.retain(|(_, m)| !matches!(m, Msg::Signal { .. }));
    net.run(); // PeerJoined reaches Alice; her 500 ms notice timer is not due yet
    let before = net.flow.len();
    // Bob's heartbeat reaches Alice, who lacks his key: she re-announces at once.
    let hb = net.seal_datagram(b, DatagramKind::Heartbeat, b"hb");
    assert!(matches!(
        net.open_datagram(a, &hb),
        Err(OpenError::UnknownKey { .. })
    ));
    net.run();
    assert_eq!(net.now, T0, "no time passed");
    assert!(net.flow[before..].iter().any(|f| matches!(f,
        Flow::Sent { from, what: What::Ann, .. } if *from == net.clients[a].id)));
    assert!(net.clients[a].events.iter().any(|e| matches!(e,
        Action::Log(l) if l.kind == HandshakeEventKind::ReannounceNewPeer)));
    // Bob answered with his key and re-announced in turn: both ways work now.
    net.assert_all_decrypt();
}
