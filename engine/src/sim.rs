//! An in-memory call for tests and benchmarks: [`CallCore`]s joined through a simulated relay
//! (roster, signal routing, sender stamping and fan-out as docs/PROTOCOL.md specifies) over
//! seeded [`vcall_netsim`] links. Deterministic: no sockets, threads or sleeps; time moves
//! only when [`SimCall::run_until`] moves it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vcall_crypto::{Identity, RoomKeys, SeededRandom, Session, SessionConfig};
use vcall_netsim::{LinkConfig, LinkStats, SimLink};
use vcall_proto::control::{ControlFrame, ErrorCode, RosterEntry};
use vcall_proto::datagram::stamp_sender;
use vcall_proto::e2ee::{E2eeSignal, decode_signal};
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

use crate::core::{
    AudioToPlay, CallCore, Clock, CoreCommand, CoreConfig, LocalMedia, MediaEvent, Output,
    VideoToDecode,
};
use crate::state::{CallState, EndReason};

/// The Unix time (µs) the simulated wall clock starts at.
pub const SIM_UNIX_US: u64 = 1_750_000_000_000_000;

/// How one member is connected: its two datagram directions (the control stream is reliable
/// and ordered, with the same one-way delay).
#[derive(Debug, Clone, Default)]
pub struct MemberLinks {
    /// Member → relay.
    pub up: LinkConfig,
    /// Relay → member.
    pub down: LinkConfig,
}

/// What a member's core produced that is not network traffic.
#[derive(Default)]
pub struct MemberOutputs {
    /// Frames handed to the video decoder, in order, and when.
    pub decoded: Vec<VideoToDecode>,
    pub decoded_at: Vec<Instant>,
    /// Audio frames handed to the audio thread, in order.
    pub played: Vec<AudioToPlay>,
    /// How often the core asked our encoder for a keyframe.
    pub keyframes_forced: u64,
    /// The packet loss the core last told our audio encoder to expect.
    pub expected_audio_loss: Option<u8>,
    /// Every new video target rate control gave the encoder.
    pub video_targets: Vec<crate::core::VideoTarget>,
    /// Peers the core told the codec threads to forget.
    pub peers_left: Vec<PeerId>,
    /// The latest published state, and how many were published.
    pub state: Option<Arc<CallState>>,
    pub publishes: u64,
    /// Datagrams this member sent, by kind.
    pub datagrams_sent: BTreeMap<u8, u64>,
    /// Why the call ended for this member, if it did.
    pub ended: Option<EndReason>,
}

/// One simulated member: its core, its links and what came out of it.
pub struct SimMember {
    pub name: String,
    pub core: CallCore,
    pub out: MemberOutputs,
    /// Keep what the core hands to the decoder/audio thread (off in long benches).
    pub keep_media: bool,
    up: SimLink<Bytes>,
    down: SimLink<Bytes>,
    control_up: VecDeque<(Instant, ControlFrame)>,
    control_down: VecDeque<(Instant, ControlFrame)>,
    /// Still connected to the relay.
    connected: bool,
}

impl SimMember {
    pub fn uplink_stats(&self) -> LinkStats {
        self.up.stats()
    }

    pub fn downlink_stats(&self) -> LinkStats {
        self.down.stats()
    }

    /// Changes this member's link impairments from now on; the core learns their round-trip
    /// time, as QUIC's estimate would tell it (no send queue: the sim's links queue instead).
    pub fn set_links(&mut self, links: MemberLinks) {
        let rtt = links.up.delay + links.down.delay;
        self.up.set_config(links.up);
        self.down.set_config(links.down);
        self.core.set_path(Instant::now(), None, rtt, 0);
    }

    fn next_event(&self) -> Option<Instant> {
        [
            self.connected.then(|| self.core.poll_timeout()),
            self.up.next_delivery(),
            self.down.next_delivery(),
            self.control_up.front().map(|(t, _)| *t),
            self.control_down.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the simulated relay routed on the control streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Signal copies delivered (one per receiving member).
    pub signals_delivered: u64,
    /// Of those: announcements, key messages (one RSA-OAEP unwrap each) and key acks.
    pub announcements: u64,
    pub key_messages: u64,
    pub acks: u64,
}

#[derive(Clone, Copy)]
enum SignalKind {
    Announcement,
    Key,
    Ack,
}

/// A predicate over a datagram at the relay: (sender, clear header, body).
pub type DatagramFilter = Box<dyn FnMut(PeerId, &DatagramHeader, &[u8]) -> bool>;

/// A simulated call: a relay and its members, member `i` having peer id `i + 1`.
pub struct SimCall {
    pub now: Instant,
    pub relay: RelayCounters,
    /// Decides, per datagram reaching the relay (sender, header, body), to lose it there.
    pub relay_loses: Option<DatagramFilter>,
    /// The relay process is gone: everything sent to it is lost, nothing comes from it.
    pub relay_down: bool,
    clock: Clock,
    members: Vec<SimMember>,
    seed: u64,
}

impl SimCall {
    /// An empty call whose links draw their randomness from `seed`.
    pub fn new(seed: u64) -> Self {
        let now = Instant::now();
        Self {
            now,
            relay: RelayCounters::default(),
            relay_loses: None,
            relay_down: false,
            clock: Clock::new(now, SIM_UNIX_US),
            members: Vec::new(),
            seed,
        }
    }

    /// A member joins with `identity` and the room's keys: the relay welcomes it with the
    /// current roster and announces it to the others.
    pub fn join(
        &mut self,
        name: &str,
        identity: Arc<Identity>,
        room: RoomKeys,
        links: MemberLinks,
    ) -> PeerId {
        let me = PeerId(self.members.len() as u32 + 1);
        let has_secret = room.has_secret();
        let roster: Vec<RosterEntry> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.connected)
            .map(|(i, m)| RosterEntry {
                peer: PeerId(i as u32 + 1),
                name: (!has_secret).then(|| m.name.clone()),
            })
            .collect();
        let session = Session::new(
            identity,
            room,
            SessionConfig {
                display_name: name.to_owned(),
                ..SessionConfig::default()
            },
            Box::new(SeededRandom::new(
                &self.seed.wrapping_add(u64::from(me.0)).to_le_bytes(),
            )),
        );
        let core = CallCore::new(
            session,
            CoreConfig {
                me,
                roster,
                mic_muted: false,
                camera_off: false,
                max_video_kbps: 1500,
                initial_state: CallState {
                    my_name: name.to_owned(),
                    ..CallState::default()
                },
            },
            self.clock,
            self.now,
        );
        let seed = self.seed ^ (u64::from(me.0) << 32);
        let announce = ControlFrame::PeerJoined(RosterEntry {
            peer: me,
            name: (!has_secret).then(|| name.to_owned()),
        });
        for i in 0..self.members.len() {
            if self.members[i].connected {
                let at = self.now + self.members[i].down.config().delay;
                self.members[i]
                    .control_down
                    .push_back((at, announce.clone()));
            }
        }
        self.members.push(SimMember {
            name: name.to_owned(),
            core,
            out: MemberOutputs::default(),
            keep_media: true,
            up: SimLink::new(links.up, seed),
            down: SimLink::new(links.down, seed ^ 0x5eed),
            control_up: VecDeque::new(),
            control_down: VecDeque::new(),
            connected: true,
        });
        self.drain(me);
        me
    }

    /// The relay restarts: every control stream in flight is lost, and each member still
    /// connected joins again in peer-id order (keeping its id, as a restarted relay numbering
    /// from 1 would give them), the members before it as its roster.
    pub fn restart_relay(&mut self) {
        let now = self.now;
        for m in &mut self.members {
            m.control_up.clear();
            m.control_down.clear();
        }
        let mut rejoined: Vec<PeerId> = Vec::new();
        for i in 0..self.members.len() {
            if !self.members[i].connected {
                continue;
            }
            let me = PeerId(i as u32 + 1);
            let name = self.members[i].name.clone();
            let has_secret = self.members[i].core.session().room().has_secret();
            let roster = rejoined
                .iter()
                .map(|&peer| RosterEntry {
                    peer,
                    name: (!has_secret).then(|| self.members[peer.0 as usize - 1].name.clone()),
                })
                .collect();
            self.members[i].core.rejoin(now, me, roster);
            let announce = ControlFrame::PeerJoined(RosterEntry {
                peer: me,
                name: (!has_secret).then(|| name.clone()),
            });
            for &peer in &rejoined {
                self.send_control(peer, announce.clone());
            }
            self.drain(me);
            rejoined.push(me);
        }
    }

    /// The simulated wall clock now (µs since the Unix epoch), as capture timestamps use.
    pub fn unix_us(&self) -> u64 {
        self.clock.unix_us(self.now)
    }

    pub fn member(&self, peer: PeerId) -> &SimMember {
        &self.members[peer.0 as usize - 1]
    }

    pub fn member_mut(&mut self, peer: PeerId) -> &mut SimMember {
        &mut self.members[peer.0 as usize - 1]
    }

    /// Members still connected.
    pub fn connected(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.connected)
            .map(|(i, _)| PeerId(i as u32 + 1))
    }

    /// Every connected member holds a sender key of every other connected member.
    pub fn all_keyed(&self) -> bool {
        let present: Vec<PeerId> = self.connected().collect();
        present.iter().all(|&me| {
            let peers = self.member(me).core.session().peers();
            present
                .iter()
                .filter(|p| **p != me)
                .all(|p| peers.iter().any(|i| i.peer == *p && i.key_received))
        })
    }

    /// Runs until [`SimCall::all_keyed`], then a little longer for the acks in flight;
    /// false if that takes longer than `limit`.
    pub fn run_until_keyed(&mut self, limit: Duration) -> bool {
        let deadline = self.now + limit;
        while !self.all_keyed() {
            if self.now >= deadline {
                return false;
            }
            self.run_for(Duration::from_millis(10));
        }
        self.run_for(Duration::from_millis(200));
        true
    }

    /// The members' cores, in peer-id order (e.g. to drive them by hand in a benchmark).
    pub fn into_cores(self) -> Vec<CallCore> {
        self.members.into_iter().map(|m| m.core).collect()
    }

    /// Encoded media from `peer`'s capture side.
    pub fn send_media(&mut self, peer: PeerId, media: LocalMedia) {
        let now = self.now;
        self.member_mut(peer).core.handle_local_media(now, media);
        self.drain(peer);
    }

    /// A codec-thread event at `peer`.
    pub fn media_event(&mut self, peer: PeerId, event: MediaEvent) {
        let now = self.now;
        self.member_mut(peer).core.handle_media_event(now, event);
        self.drain(peer);
    }

    /// A UI command at `peer`.
    pub fn command(&mut self, peer: PeerId, command: CoreCommand) {
        let now = self.now;
        if let ControlFlow::Break(reason) = self.member_mut(peer).core.handle_command(now, command)
        {
            self.member_mut(peer).out.ended = Some(reason);
        }
        self.drain(peer);
    }

    /// `peer`'s connection drops without a Leave: the relay removes it at once.
    pub fn disconnect(&mut self, peer: PeerId) {
        self.relay_remove(peer);
    }

    /// Advances time to `until`, delivering everything due on the way, in time order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next = self
                .members
                .iter()
                .filter_map(SimMember::next_event)
                .min()
                .filter(|t| *t <= until);
            let Some(next) = next else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Advances time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn step(&mut self) {
        let now = self.now;
        for i in 0..self.members.len() {
            let peer = PeerId(i as u32 + 1);
            // Relay side: what this member sent that is due at the relay.
            while let Some(datagram) = self.members[i].up.poll_deliver(now) {
                self.relay_datagram(peer, datagram);
            }
            while self.members[i]
                .control_up
                .front()
                .is_some_and(|(t, _)| *t <= now)
            {
                if let Some((_, frame)) = self.members[i].control_up.pop_front() {
                    self.relay_control(peer, frame);
                }
            }
            // Member side.
            if !self.members[i].connected {
                continue;
            }
            while let Some(datagram) = self.members[i].down.poll_deliver(now) {
                self.members[i].core.handle_datagram(now, datagram);
            }
            while self.members[i]
                .control_down
                .front()
                .is_some_and(|(t, _)| *t <= now)
            {
                if let Some((_, frame)) = self.members[i].control_down.pop_front()
                    && let ControlFlow::Break(reason) =
                        self.members[i].core.handle_control(now, frame)
                {
                    self.members[i].out.ended = Some(reason);
                    self.members[i].connected = false;
                }
            }
            if self.members[i].connected && self.members[i].core.poll_timeout() <= now {
                self.members[i].core.handle_timeout(now);
            }
            self.drain(peer);
        }
    }

    /// Routes everything `peer`'s core asks for.
    fn drain(&mut self, peer: PeerId) {
        let now = self.now;
        let m = &mut self.members[peer.0 as usize - 1];
        while let Some(output) = m.core.poll_output() {
            match output {
                Output::Datagram(d) => {
                    if let Ok((h, _)) = DatagramHeader::decode(&d) {
                        *m.out.datagrams_sent.entry(h.kind as u8).or_default() += 1;
                    }
                    let len = d.len();
                    m.up.send(now, d, len);
                }
                Output::Control(frame) => {
                    let at = now + m.up.config().delay;
                    m.control_up.push_back((at, frame));
                }
                Output::Decode(v) => {
                    if m.keep_media {
                        m.out.decoded.push(v);
                        m.out.decoded_at.push(now);
                    }
                }
                Output::Play(a) => {
                    if m.keep_media {
                        m.out.played.push(a);
                    }
                }
                Output::ForceKeyframe => m.out.keyframes_forced += 1,
                Output::ExpectedAudioLoss(p) => m.out.expected_audio_loss = Some(p),
                Output::VideoTarget(t) => m.out.video_targets.push(t),
                Output::PeerLeft(p) => m.out.peers_left.push(p),
                Output::Publish(state, _) => {
                    m.out.publishes += 1;
                    m.out.state = Some(state);
                }
            }
        }
        if let Some(reason) = m.core.take_end() {
            m.out.ended = Some(reason);
            m.connected = false;
        }
    }

    fn is_present(&self, peer: PeerId) -> bool {
        peer.0 >= 1
            && self
                .members
                .get(peer.0 as usize - 1)
                .is_some_and(|m| m.connected)
    }

    fn relay_datagram(&mut self, from: PeerId, datagram: Bytes) {
        // Like the real relay: nothing over the protocol's datagram size is forwarded.
        if self.relay_down || !self.is_present(from) || datagram.len() > MAX_DATAGRAM_SIZE {
            return;
        }
        let mut stamped = BytesMut::from(&datagram[..]);
        let Ok(header) = stamp_sender(&mut stamped, from) else {
            return;
        };
        let stamped = stamped.freeze();
        if let Some(loses) = &mut self.relay_loses
            && loses(from, &header, &stamped[header.len()..])
        {
            return;
        }
        let now = self.now;
        for (i, m) in self.members.iter_mut().enumerate() {
            let to = PeerId(i as u32 + 1);
            if to == from || !m.connected || header.target.is_some_and(|t| t != to) {
                continue;
            }
            let len = stamped.len();
            m.down.send(now, stamped.clone(), len);
        }
    }

    fn relay_control(&mut self, from: PeerId, frame: ControlFrame) {
        if self.relay_down || !self.is_present(from) {
            return;
        }
        match frame {
            ControlFrame::Signal { to, payload, .. } => {
                let kind = match decode_signal(&payload) {
                    Ok(E2eeSignal::Announcement(_)) => Some(SignalKind::Announcement),
                    Ok(E2eeSignal::Key(_)) => Some(SignalKind::Key),
                    Ok(E2eeSignal::Ack(_)) => Some(SignalKind::Ack),
                    Err(_) => None,
                };
                let forwarded = ControlFrame::Signal { to, from, payload };
                if to != PeerId::NONE && !self.is_present(to) {
                    self.send_control(
                        from,
                        ControlFrame::Error {
                            code: ErrorCode::UnknownPeer,
                            message: "no such peer".into(),
                        },
                    );
                    return;
                }
                for i in 0..self.members.len() {
                    let peer = PeerId(i as u32 + 1);
                    if peer != from && (to == PeerId::NONE || to == peer) && self.is_present(peer) {
                        self.relay.signals_delivered += 1;
                        match kind {
                            Some(SignalKind::Announcement) => self.relay.announcements += 1,
                            Some(SignalKind::Key) => self.relay.key_messages += 1,
                            Some(SignalKind::Ack) => self.relay.acks += 1,
                            None => {}
                        }
                        self.send_control(peer, forwarded.clone());
                    }
                }
            }
            ControlFrame::Ping(v) => self.send_control(from, ControlFrame::Pong(v)),
            ControlFrame::Leave => self.relay_remove(from),
            _ => {}
        }
    }

    fn send_control(&mut self, to: PeerId, frame: ControlFrame) {
        if !self.is_present(to) {
            return;
        }
        let now = self.now;
        let m = &mut self.members[to.0 as usize - 1];
        let at = now + m.down.config().delay;
        m.control_down.push_back((at, frame));
    }

    fn relay_remove(&mut self, peer: PeerId) {
        if !self.is_present(peer) {
            return;
        }
        self.members[peer.0 as usize - 1].connected = false;
        for i in 0..self.members.len() {
            let other = PeerId(i as u32 + 1);
            if other != peer {
                self.send_control(other, ControlFrame::PeerLeft { peer });
            }
        }
    }
}

/// Counts the datagrams of `kind` a member sent.
pub fn sent_of_kind(out: &MemberOutputs, kind: DatagramKind) -> u64 {
    out.datagrams_sent.get(&(kind as u8)).copied().unwrap_or(0)
}
