//! Whole-session tests through an in-memory relay (`Net`): the seed diagram, a malicious relay,
//! a spy, leave/join rekeying and property tests; `lossy_network` runs sessions over the shared
//! in-memory network (`vcall-netsim`) instead.

mod diagram;
mod golden;
mod lifecycle;
mod lossy_network;
mod malicious;
mod membership;
mod secrets;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use vcall_proto::e2ee::{TAG_ANNOUNCEMENT, TAG_KEY_ACK, TAG_KEY_MESSAGE};
use vcall_proto::{DatagramHeader, DatagramKind, PeerId, datagram};

use crate::media::OpenError;
use crate::{Action, Identity, RoomKeys, RoomSecret, SeededRandom, Session, SessionConfig};

/// Pre-generated identities shared by every test (RSA generation is the slow part).
pub(crate) fn identity(i: usize) -> Arc<Identity> {
    static IDS: OnceLock<Vec<Arc<Identity>>> = OnceLock::new();
    IDS.get_or_init(|| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut rng = SeededRandom::new(format!("identity {i}").as_bytes());
                    Arc::new(Identity::generate_with(2048, &mut rng).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })[i]
        .clone()
}

pub(crate) fn secret_room(name: &str) -> RoomKeys {
    RoomKeys::derive(name, Some(&RoomSecret::Key([7; 32]))).unwrap()
}

pub(crate) const T0: u64 = 1_764_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    Ann,
    Key,
    Ack,
    Other,
}

fn what(payload: &[u8]) -> What {
    match payload.first() {
        Some(&TAG_ANNOUNCEMENT) => What::Ann,
        Some(&TAG_KEY_MESSAGE) => What::Key,
        Some(&TAG_KEY_ACK) => What::Ack,
        _ => What::Other,
    }
}

/// One step of what flowed through the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    /// `to == PeerId::NONE`: broadcast.
    Sent {
        msg: usize,
        from: PeerId,
        to: PeerId,
        what: What,
    },
    Delivered {
        msg: usize,
        from: PeerId,
        to: PeerId,
        what: What,
    },
}

enum Msg {
    Signal {
        msg: usize,
        from: PeerId,
        payload: Vec<u8>,
    },
    Joined(PeerId),
    Left(PeerId),
}

pub(crate) struct Client {
    pub name: &'static str,
    pub id: PeerId,
    pub s: Session,
    /// Every action except SendSignal, in order.
    pub events: Vec<Action>,
    pub in_room: bool,
    /// It sends signals and heartbeats (false: it went away, but the relay did not say so and
    /// still delivers to it).
    pub sends: bool,
    /// When its next heartbeat is due (as the engine's, every second while in the room).
    pub next_heartbeat: u64,
}

/// An honest in-memory relay: one room, FIFO delivery, timers fired only when the network is
/// quiet (one client at a time, earliest first, ties in join order). While time advances,
/// every member sends a heartbeat every second from one second after joining (as the engine
/// does), which every other member opens.
pub(crate) struct Net {
    pub now: u64,
    /// The heartbeat period while time advances (`None`: no heartbeats).
    pub heartbeat_ms: Option<u64>,
    pub clients: Vec<Client>,
    queue: VecDeque<(usize, Msg)>,
    pub flow: Vec<Flow>,
    /// Every signal sent: (msg, from, to, payload).
    pub sent: Vec<(usize, PeerId, PeerId, Vec<u8>)>,
    next_peer: u32,
}

impl Net {
    pub fn new() -> Self {
        Self {
            now: T0,
            heartbeat_ms: Some(1_000),
            clients: Vec::new(),
            queue: VecDeque::new(),
            flow: Vec::new(),
            sent: Vec::new(),
            next_peer: 1,
        }
    }

    pub fn session(name: &str, identity: Arc<Identity>, room: RoomKeys) -> Session {
        Session::new(
            identity,
            room,
            SessionConfig {
                display_name: name.to_string(),
                ..SessionConfig::default()
            },
            Box::new(SeededRandom::new(name.as_bytes())),
        )
    }

    /// Joins a client; returns its index.
    pub fn join(&mut self, name: &'static str, identity: Arc<Identity>, room: RoomKeys) -> usize {
        let s = Self::session(name, identity, room);
        self.join_session(name, s)
    }

    pub fn join_session(&mut self, name: &'static str, s: Session) -> usize {
        self.join_as(name, s, true)
    }

    /// A malicious relay's hidden member: it gets the roster and its signals are forwarded,
    /// but nobody is told `PeerJoined`.
    pub fn join_hidden(
        &mut self,
        name: &'static str,
        identity: Arc<Identity>,
        room: RoomKeys,
    ) -> usize {
        let s = Self::session(name, identity, room);
        self.join_as(name, s, false)
    }

    fn join_as(&mut self, name: &'static str, s: Session, announce_join: bool) -> usize {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let roster: Vec<PeerId> = self.members().map(|i| self.clients[i].id).collect();
        if announce_join {
            for i in self.members().collect::<Vec<_>>() {
                self.queue.push_back((i, Msg::Joined(id)));
            }
        }
        self.clients.push(Client {
            name,
            id,
            s,
            events: Vec::new(),
            in_room: true,
            sends: true,
            next_heartbeat: self.now + self.heartbeat_ms.unwrap_or(0),
        });
        let idx = self.clients.len() - 1;
        let now = self.now;
        self.clients[idx].s.on_welcome(id, &roster, now);
        self.drain(idx);
        idx
    }

    pub fn leave(&mut self, idx: usize) {
        self.clients[idx].in_room = false;
        let id = self.clients[idx].id;
        self.queue.retain(|(to, _)| *to != idx);
        for i in self.members().collect::<Vec<_>>() {
            self.queue.push_back((i, Msg::Left(id)));
        }
    }

    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.clients.len()).filter(|i| self.clients[*i].in_room)
    }

    pub fn idx(&self, id: PeerId) -> Option<usize> {
        self.clients.iter().position(|c| c.id == id)
    }

    fn drain(&mut self, idx: usize) {
        while let Some(a) = self.clients[idx].s.poll_action() {
            match a {
                Action::SendSignal { to, payload } => self.route(idx, to.to_wire(), payload),
                other => self.clients[idx].events.push(other),
            }
        }
    }

    /// What the relay does with a client's Signal: stamp `from`, fan out, queue.
    pub fn route(&mut self, from_idx: usize, to: PeerId, payload: Vec<u8>) {
        if !self.clients[from_idx].in_room || !self.clients[from_idx].sends {
            return;
        }
        let from = self.clients[from_idx].id;
        self.inject(from, to, payload);
    }

    /// Queues a signal as if `from` had sent it (a malicious relay can do this with any `from`).
    pub fn inject(&mut self, from: PeerId, to: PeerId, payload: Vec<u8>) {
        let msg = self.sent.len();
        self.flow.push(Flow::Sent {
            msg,
            from,
            to,
            what: what(&payload),
        });
        let recipients: Vec<usize> = self
            .members()
            .filter(|i| {
                let id = self.clients[*i].id;
                id != from && (to == PeerId::NONE || to == id)
            })
            .collect();
        for r in recipients {
            self.queue.push_back((
                r,
                Msg::Signal {
                    msg,
                    from,
                    payload: payload.clone(),
                },
            ));
        }
        self.sent.push((msg, from, to, payload));
    }

    /// Delivers until quiet, firing due timers (one client at a time) whenever quiet.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            if let Some((to, m)) = self.queue.pop_front() {
                let now = self.now;
                let c = &mut self.clients[to];
                match m {
                    Msg::Signal { msg, from, payload } => {
                        self.flow.push(Flow::Delivered {
                            msg,
                            from,
                            to: c.id,
                            what: what(&payload),
                        });
                        let _ = c.s.on_signal(from, &payload, now);
                    }
                    Msg::Joined(p) => c.s.on_peer_joined(p, now),
                    Msg::Left(p) => c.s.on_peer_left(p, now),
                }
                self.drain(to);
                continue;
            }
            let due = self
                .members()
                .filter_map(|i| self.clients[i].s.next_timeout().map(|t| (t, i)))
                .filter(|(t, _)| *t <= self.now)
                .min();
            match due {
                Some((_, i)) => {
                    let now = self.now;
                    self.clients[i].s.on_tick(now);
                    self.drain(i);
                }
                None => return,
            }
        }
        panic!("the network never went quiet");
    }

    /// Advances the clock by `ms`, stopping at every timer and heartbeat on the way.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        loop {
            self.heartbeats();
            self.run();
            let next_hb = self
                .members()
                .filter(|i| self.heartbeat_ms.is_some() && self.clients[*i].sends)
                .map(|i| self.clients[i].next_heartbeat)
                .min();
            let next = self
                .members()
                .filter_map(|i| self.clients[i].s.next_timeout())
                .chain(next_hb)
                .min();
            match next {
                Some(t) if t <= target => self.now = self.now.max(t),
                _ => break,
            }
        }
        self.now = target;
        self.heartbeats();
        self.run();
    }

    /// Every member whose heartbeat is due seals one; every other member opens it.
    fn heartbeats(&mut self) {
        let Some(period) = self.heartbeat_ms else {
            return;
        };
        for a in self.members().collect::<Vec<_>>() {
            if !self.clients[a].sends || self.clients[a].next_heartbeat > self.now {
                continue;
            }
            self.clients[a].next_heartbeat = self.now + period;
            let mut d = Vec::new();
            DatagramHeader::new(DatagramKind::Heartbeat, None).append(&mut d);
            if self.clients[a]
                .s
                .seal(DatagramKind::Heartbeat, None, b"heartbeat", &mut d)
                .is_err()
            {
                continue;
            }
            datagram::stamp_sender(&mut d, self.clients[a].id).unwrap();
            for b in self.members().collect::<Vec<_>>() {
                if b != a {
                    let _ = self.open_datagram(b, &d);
                }
            }
        }
    }

    /// Seals `pt` from `from` as a datagram of `kind` (what the relay forwards, sender stamped).
    pub fn seal_datagram(&mut self, from: usize, kind: DatagramKind, pt: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        DatagramHeader::new(kind, None).append(&mut d);
        self.clients[from].s.seal(kind, None, pt, &mut d).unwrap();
        datagram::stamp_sender(&mut d, self.clients[from].id).unwrap();
        d
    }

    /// Delivers a datagram to client `to` and opens it.
    pub fn open_datagram(&mut self, to: usize, d: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (h, off) = DatagramHeader::decode(d).map_err(|_| OpenError::Malformed)?;
        let mut body = d[off..].to_vec();
        let now = self.now;
        let r = self.clients[to]
            .s
            .open(h.sender, h.kind, h.target, &mut body, now)
            .map(|pt| pt.to_vec());
        self.drain(to);
        r
    }

    /// Every member opens a heartbeat and a 60 KB video frame from every other member.
    pub fn assert_all_decrypt(&mut self) {
        let members: Vec<usize> = self.members().collect();
        self.assert_decrypt_among(&members);
    }

    /// Each of `members` opens a heartbeat and a 60 KB video frame from each other one.
    pub fn assert_decrypt_among(&mut self, members: &[usize]) {
        for &a in members {
            let hb = format!("heartbeat from {}", self.clients[a].name).into_bytes();
            let d = self.seal_datagram(a, DatagramKind::Heartbeat, &hb);
            let mut frame = vec![0u8; SealedHeaderLen::LEN];
            frame.extend((0..60_000u32).map(|i| (i * 7 + a as u32) as u8));
            let plain = frame[SealedHeaderLen::LEN..].to_vec();
            self.clients[a]
                .s
                .seal_in_place(DatagramKind::Video, None, &mut frame, 0)
                .unwrap();
            for &b in members {
                if a == b {
                    continue;
                }
                let (na, nb) = (self.clients[a].name, self.clients[b].name);
                assert_eq!(
                    self.open_datagram(b, &d),
                    Ok(hb.clone()),
                    "{nb} opens {na}'s heartbeat"
                );
                let mut f = frame.clone();
                let (sender, now) = (self.clients[a].id, self.now);
                let got = self.clients[b]
                    .s
                    .open(sender, DatagramKind::Video, None, &mut f, now)
                    .map(|p| p.to_vec());
                assert_eq!(got.as_deref(), Ok(&plain[..]), "{nb} opens {na}'s video");
                self.drain(b);
            }
        }
    }

    /// Every key message any client sent: (from, recipient).
    pub fn key_messages(&self) -> Vec<(PeerId, PeerId)> {
        self.key_messages_since(0)
    }

    pub fn key_messages_since(&self, since: usize) -> Vec<(PeerId, PeerId)> {
        self.sent[since..]
            .iter()
            .filter(|(_, _, _, p)| what(p) == What::Key)
            .map(|(_, f, t, _)| (*f, *t))
            .collect()
    }
}

struct SealedHeaderLen;
impl SealedHeaderLen {
    const LEN: usize = vcall_proto::e2ee::SealedHeader::LEN;
}
