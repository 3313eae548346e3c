//! The call's protocol core, sans-IO (shaped like quinn-proto's `Connection` and str0m's
//! `Rtc`): it owns the E2EE session, the roster, per-peer reassembly and continuity, keyframe
//! policy, heartbeats, mute gating and the published state. The driver feeds it what arrived
//! (`handle_*`), performs what it asks (`poll_output`) and sleeps until `poll_timeout`.
//! No threads, sockets, channels or clocks inside: time is passed in.
//!
//! ```text
//! control frame ──handle_control──┐                 ┌── Output::Control  → control stream
//! datagram ──────handle_datagram──┤                 ├── Output::Datagram → QUIC datagram
//! encoded media ─handle_local_media┼──▶ CallCore ──▶├── Output::Decode   → video decode thread
//! codec events ──handle_media_event┤                ├── Output::Play     → audio thread
//! command ───────handle_command───┤                 ├── Output::ForceKeyframe / PeerLeft
//! timer ─────────handle_timeout───┘                 └── Output::Publish  → the UI / bot
//! ```

mod audio_redundancy;
mod io;
mod keyframes;
mod playout;
mod rate;
mod recovery;
mod remote;
pub use playout::MAX_PLAYOUT_DELAY;
mod report;
mod retransmit;
mod window_min;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::audio_redundancy::AudioRedundancy;
use bytes::Bytes;
use vcall_crypto::{Action, OpenError, Session};
use vcall_proto::control::{ControlFrame, ErrorCode, RosterEntry};
use vcall_proto::e2ee::SealedHeader;
use vcall_proto::fragment::{FragmentHeader, fragment_frame_with_repair};
use vcall_proto::media::{AudioMeta, Feedback, Heartbeat, NackList, ReceiverReport, VideoMeta};
use vcall_proto::repair::RepairHeader;
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

pub use io::{
    AudioToPlay, Change, Clock, CoreCommand, CoreConfig, CoreCounters, LocalMedia, MediaEvent,
    Output, VideoToDecode,
};
pub use keyframes::{FORCE_INTERVAL, KeyframeNeed, KeyframePolicy, REQUEST_INTERVAL};
pub use rate::{MIN_VIDEO_KBPS, RateController, START_KBPS, VideoTarget, start_kbps};
use recovery::Ordered;
pub use recovery::RecoveryTiming;
use remote::RemotePeer;
pub use report::REPORT_INTERVAL;
pub use retransmit::RetransmitCounters;
use retransmit::{LossEstimate, SentHistory, repair_for, repair_share};

use crate::state::{
    CallPhase, CallState, EndReason, HandshakeLogEntry, MAX_HANDSHAKE_LOG, PeerState,
};

/// Heartbeats (presence, mute, camera, speaking) this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Statistics are published this often (discrete changes at once).
pub const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// The packet loss the audio encoder expects until receivers report any (the Opus encoder's
/// own default setting in `OpusEncoderConfig`).
const DEFAULT_EXPECTED_AUDIO_LOSS: u8 = 10;

/// The loss (percent) to tune Opus in-band FEC for, from the loss receivers report: at least
/// 5 % so that FEC is there when loss starts, at most 40 %.
fn expected_audio_loss(fraction: f64) -> u8 {
    (fraction * 100.0).round().clamp(5.0, 40.0) as u8
}

/// How much longer an addressed datagram header is than a broadcast one (the target id).
const RETRANSMIT_HEADER_GROWTH: usize = DatagramHeader::MAX_LEN - DatagramHeader::MIN_LEN;
/// After a NACK to a sender, its frames' lateness teaches the playout delay for this long.
const RECOVERY_MEMORY: Duration = Duration::from_secs(2);
/// Loss recovery (NACKs, giving up on late frames) runs this often.
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(20);
/// A ping on the control stream this often (the relay answers each with a pong).
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// Nothing at all from the relay (no pong, frame or datagram) for this long: the connection
/// is lost, and the shell reconnects. QUIC's own idle timeout is far longer, and a relay
/// restarted with another certificate cannot reset our connection, so the core watches too.
pub const RELAY_SILENCE_LIMIT: Duration = Duration::from_millis(2000);
/// Departed peers remembered in the state (for reports).
const MAX_DEPARTED: usize = 64;
/// Non-fatal problems remembered in the state.
const MAX_ERRORS: usize = 100;

/// The call's protocol core.
pub struct CallCore {
    session: Session,
    me: PeerId,
    clock: Clock,
    /// The relay's roster: who is present and the clear name each gave (if any).
    roster: BTreeMap<PeerId, Option<String>>,
    remotes: HashMap<PeerId, RemotePeer>,
    keyframes: KeyframePolicy,
    mic_muted: bool,
    camera_off: bool,
    local_level: (bool, u8),
    /// The largest datagram the path takes now.
    datagram_limit: usize,
    rtt: Duration,
    frame_id: u32,
    /// Our sealed video fragments, for NACKs.
    history: SentHistory,
    /// The loss our receivers report through their NACKs (drives repair fragments when they
    /// send no receiver reports).
    loss: LossEstimate,
    /// Our video's target bitrate and layers, from receiver reports and our send queue.
    rate: RateController,
    /// The packet loss our audio encoder was last told to expect (percent).
    audio_loss_told: u8,
    /// Our audio datagrams sent twice while receivers report loss.
    audio_redundancy: AudioRedundancy,
    next_recovery: Instant,
    /// Reused list of what the frame order decided.
    ordered: Vec<Ordered<VideoToDecode>>,
    next_heartbeat: Instant,
    next_ping: Instant,
    ping_value: u64,
    /// When anything last came from the relay.
    last_heard: Instant,
    /// When we last decoded a remote video frame.
    last_video_decoded: Option<Instant>,
    /// Set at a rejoin: the last frame decoded before the connection was lost, to measure
    /// the gap until the first frame after it.
    video_gap_since: Option<Instant>,
    next_stats: Instant,
    stats_at: Instant,
    bytes_sent_at_stats: u64,
    frames_sent_at_stats: u64,
    /// The state as last built; republished when `publish_now` or at the stats interval.
    state: CallState,
    publish_now: bool,
    /// The statistics were refreshed since the last publish (a [`Change::StatsOnly`] one).
    stats_refreshed: bool,
    outputs: VecDeque<Output>,
    /// Reused buffer for opening small datagram bodies.
    scratch: Vec<u8>,
    counters: CoreCounters,
    started_unix_ms: u64,
    /// When the core was created: second 0 of the timelines.
    call_started: Instant,
    /// The temporal layer of the last video frame we sent (written into the next one).
    last_sent_layer: u8,
    /// The first second of the call not yet in `state.sent.timeline`.
    next_sent_second: u64,
    /// Set when the core itself ends the call (the E2EE session ended); see `take_end`.
    ending: Option<EndReason>,
}

impl CallCore {
    /// A core for a call the relay just admitted us to (`Welcome { me, roster }`).
    pub fn new(mut session: Session, config: CoreConfig, clock: Clock, now: Instant) -> Self {
        let started_unix_ms = clock.unix_ms(now);
        let roster_ids: Vec<PeerId> = config.roster.iter().map(|e| e.peer).collect();
        session.on_welcome(config.me, &roster_ids, started_unix_ms);
        let mut state = config.initial_state;
        state.my_peer_id = Some(config.me);
        state.phase = CallPhase::InCall;
        state.mic_muted = config.mic_muted;
        state.camera_off = config.camera_off;
        state.security.my_fingerprint = session.my_fingerprint().to_hex();
        let mut core = Self {
            session,
            me: config.me,
            clock,
            roster: config
                .roster
                .into_iter()
                .map(|e| (e.peer, e.name))
                .collect(),
            remotes: HashMap::new(),
            keyframes: KeyframePolicy::default(),
            mic_muted: config.mic_muted,
            camera_off: config.camera_off,
            local_level: (false, 0),
            datagram_limit: MAX_DATAGRAM_SIZE,
            rtt: Duration::ZERO,
            frame_id: 0,
            history: SentHistory::default(),
            loss: LossEstimate::default(),
            rate: RateController::new(config.max_video_kbps),
            audio_loss_told: DEFAULT_EXPECTED_AUDIO_LOSS,
            audio_redundancy: AudioRedundancy::default(),
            next_recovery: now + RECOVERY_INTERVAL,
            ordered: Vec::new(),
            next_heartbeat: now,
            next_ping: now + PING_INTERVAL,
            ping_value: 0,
            last_heard: now,
            last_video_decoded: None,
            video_gap_since: None,
            next_stats: now + STATS_INTERVAL,
            stats_at: now,
            bytes_sent_at_stats: 0,
            frames_sent_at_stats: 0,
            state,
            publish_now: true,
            stats_refreshed: false,
            outputs: VecDeque::new(),
            scratch: Vec::with_capacity(MAX_DATAGRAM_SIZE),
            counters: CoreCounters::default(),
            started_unix_ms,
            call_started: now,
            last_sent_layer: 0,
            next_sent_second: 0,
            ending: None,
        };
        for peer in core.roster.keys().copied().collect::<Vec<_>>() {
            core.remotes.insert(peer, RemotePeer::new(now, now));
        }
        core.state.sent.target_kbps = core.rate.target().bitrate_kbps;
        core.drain_session(now);
        core
    }

    /// Why the core ended the call (or its connection) by itself, once. For an E2EE failure
    /// the `Leave` frame is already queued; for [`EndReason::ConnectionLost`] (the relay went
    /// silent) the shell may reconnect and [`rejoin`](Self::rejoin).
    pub fn take_end(&mut self) -> Option<EndReason> {
        self.ending.take()
    }

    /// The connection is lost and the shell is reconnecting (attempt `attempt`, from 1): the
    /// call screen shows it, with the tiles kept until the rejoin.
    pub fn set_reconnecting(&mut self, attempt: u32, last_error: &str) {
        self.state.phase = CallPhase::Reconnecting {
            attempt,
            last_error: last_error.to_owned(),
        };
        self.publish_now = true;
    }

    /// Joined again after the connection was lost (a new `Welcome { me, roster }`): the E2EE
    /// session starts over with the same identity ([`Session::renew`]), the peers of the old
    /// connection are gone (their codec state dropped, their figures kept among the
    /// departed), keys are exchanged anew (a new epoch for everyone), and our encoder makes a
    /// keyframe for the new receivers.
    pub fn rejoin(&mut self, now: Instant, me: PeerId, roster: Vec<RosterEntry>) {
        let now_ms = self.clock.unix_ms(now);
        self.refresh_stats(now);
        for peer in std::mem::take(&mut self.roster).into_keys() {
            self.outputs.push_back(Output::PeerLeft(peer));
        }
        for gone in std::mem::take(&mut self.state.peers) {
            if self.state.departed.len() >= MAX_DEPARTED {
                self.state.departed.remove(0);
            }
            self.state.departed.push(gone);
        }
        let ids: Vec<PeerId> = roster.iter().map(|e| e.peer).collect();
        self.session.renew();
        self.session.on_welcome(me, &ids, now_ms);
        self.me = me;
        self.roster = roster.into_iter().map(|e| (e.peer, e.name)).collect();
        self.remotes = self
            .roster
            .keys()
            .map(|&p| (p, RemotePeer::new(now, self.call_started)))
            .collect();
        self.keyframes = KeyframePolicy::default();
        self.history = SentHistory::default();
        self.loss = LossEstimate::default();
        self.ending = None;
        self.video_gap_since = self.last_video_decoded;
        self.last_heard = now;
        self.next_heartbeat = now;
        self.state.my_peer_id = Some(me);
        self.state.phase = CallPhase::InCall;
        self.state.reconnects += 1;
        self.outputs.push_back(Output::ForceKeyframe);
        self.publish_now = true;
        self.drain_session(now);
        self.refresh_peers();
    }

    /// Our peer id in this call.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// The E2EE session (read-only: peers, security code, fingerprints).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The E2EE session, taking the core apart (benchmarks of the crypto alone).
    pub fn into_session(self) -> Session {
        self.session
    }

    pub fn counters(&self) -> CoreCounters {
        self.counters
    }

    pub fn keyframe_policy(&self) -> &KeyframePolicy {
        &self.keyframes
    }

    /// What our retransmission history did with receivers' NACKs.
    pub fn retransmit_counters(&self) -> RetransmitCounters {
        self.history.counters()
    }

    /// The state as the core sees it now (what the next `Publish` will carry, minus stats
    /// computed at publish time).
    pub fn state(&self) -> &CallState {
        &self.state
    }

    /// What the path allows now: the largest datagram, the round-trip time, and how many
    /// bytes wait in our QUIC datagram send buffer (a standing queue means our uplink is full).
    pub fn set_path(
        &mut self,
        now: Instant,
        max_datagram: Option<usize>,
        rtt: Duration,
        send_queue_bytes: usize,
    ) {
        self.datagram_limit = max_datagram.map_or(MAX_DATAGRAM_SIZE, |m| m.min(MAX_DATAGRAM_SIZE));
        self.rtt = rtt;
        self.rate
            .on_send_queue(now, send_queue_bytes, self.state.sent.bytes);
    }

    /// The video rate controller (read-only: its target and decisions).
    pub fn rate(&self) -> &RateController {
        &self.rate
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        let change = if self.publish_now {
            Change::State
        } else if self.stats_refreshed {
            Change::StatsOnly
        } else {
            return None;
        };
        self.publish_now = false;
        self.stats_refreshed = false;
        Some(Output::Publish(Arc::new(self.state.clone()), change))
    }

    /// When `handle_timeout` must be called next: the soonest of the heartbeat, the stats
    /// interval (which also sweeps stale reassembly) and the session's own timers.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self
            .next_heartbeat
            .min(self.next_stats)
            .min(self.next_recovery)
            .min(self.next_ping);
        for remote in self.remotes.values() {
            if let Some(due) = remote.playout.next_due() {
                next = next.min(due);
            }
        }
        if let Some(ms) = self.session.next_timeout() {
            next = next.min(self.clock.instant_of_unix_ms(ms));
        }
        next
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_ms = self.clock.unix_ms(now);
        if self.session.next_timeout().is_some_and(|t| t <= now_ms) {
            self.session.on_tick(now_ms);
            self.drain_session(now);
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            self.send_heartbeat(now);
        }
        self.release_due_frames(now);
        if now >= self.next_recovery {
            self.next_recovery = now + RECOVERY_INTERVAL;
            self.run_recovery(now);
        }
        if now >= self.next_ping {
            self.next_ping = now + PING_INTERVAL;
            self.ping_value = self.ping_value.wrapping_add(1);
            self.outputs
                .push_back(Output::Control(ControlFrame::Ping(self.ping_value)));
            let silent = now.saturating_duration_since(self.last_heard);
            if silent >= RELAY_SILENCE_LIMIT && self.ending.is_none() {
                self.ending = Some(EndReason::ConnectionLost(format!(
                    "nothing from the relay for {:.1} s",
                    silent.as_secs_f64()
                )));
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            for remote in self.remotes.values_mut() {
                remote.reassembler.expire(now);
            }
            self.send_reports(now);
            self.rate
                .set_repair_share(repair_share(self.video_loss(now)));
            if let Some(target) = self.rate.poll(now) {
                self.outputs.push_back(Output::VideoTarget(target));
            }
            let target = self.rate.target();
            let sent = &mut self.state.sent;
            sent.target_kbps = target.bitrate_kbps;
            sent.base_layer_only = target.base_layer_only;
            sent.rate_decreases = self.rate.decreases;
            let second = now.saturating_duration_since(self.call_started).as_secs();
            while self.next_sent_second < second {
                if sent.timeline.len() >= crate::state::MAX_TIMELINE {
                    sent.timeline.remove(0);
                }
                sent.timeline.push(crate::state::SentSecond {
                    t_s: self.next_sent_second,
                    target_kbps: target.bitrate_kbps,
                    layers: if target.base_layer_only { 1 } else { 2 },
                    loss_percent: (sent.loss_reported * 100.0) as f32,
                    audio_copies: self.audio_redundancy.copies(),
                });
                self.next_sent_second += 1;
            }
            self.refresh_stats(now);
        }
    }

    /// A frame from the relay on the control stream. `Break` ends the call with the reason.
    pub fn handle_control(&mut self, now: Instant, frame: ControlFrame) -> ControlFlow<EndReason> {
        let now_ms = self.clock.unix_ms(now);
        self.last_heard = now;
        match frame {
            ControlFrame::PeerJoined(entry) => {
                if entry.peer == self.me || entry.peer == PeerId::NONE {
                    return ControlFlow::Break(EndReason::Protocol(format!(
                        "the relay announced peer {} joining, which is us or nobody",
                        entry.peer
                    )));
                }
                self.roster.insert(entry.peer, entry.name);
                let call_started = self.call_started;
                self.remotes
                    .entry(entry.peer)
                    .or_insert_with(|| RemotePeer::new(now, call_started));
                self.session.on_peer_joined(entry.peer, now_ms);
                self.publish_now = true;
            }
            ControlFrame::PeerLeft { peer } => {
                if self.roster.remove(&peer).is_some() {
                    self.remotes.remove(&peer);
                    self.history.forget(peer);
                    self.keyframes.forget(peer);
                    self.rate.forget(peer);
                    if let Some(i) = self.state.peers.iter().position(|p| p.peer_id == peer) {
                        let gone = self.state.peers.remove(i);
                        if self.state.departed.len() >= MAX_DEPARTED {
                            self.state.departed.remove(0);
                        }
                        self.state.departed.push(gone);
                    }
                    self.outputs.push_back(Output::PeerLeft(peer));
                    self.publish_now = true;
                }
                self.session.on_peer_left(peer, now_ms);
            }
            ControlFrame::Signal { from, payload, .. } => {
                // Rejections come back as actions (counted, logged); never fatal.
                let _ = self.session.on_signal(from, &payload, now_ms);
            }
            ControlFrame::Ping(v) => self
                .outputs
                .push_back(Output::Control(ControlFrame::Pong(v))),
            ControlFrame::Pong(_) => {}
            ControlFrame::GoAway { code, message } => {
                return ControlFlow::Break(EndReason::RelayShutDown { code, message });
            }
            ControlFrame::Error { code, message } => {
                // A signal that raced with its addressee leaving is harmless, and a rate-limit
                // notice only says datagrams were dropped (the relay closes the connection
                // when it means to end it).
                if !matches!(code, ErrorCode::UnknownPeer | ErrorCode::RateLimited) {
                    return ControlFlow::Break(EndReason::RelayRefused { code, message });
                }
            }
            ControlFrame::Hello { .. } | ControlFrame::Welcome { .. } | ControlFrame::Leave => {
                return ControlFlow::Break(EndReason::Protocol(
                    "the relay sent a frame only clients send, or a second Welcome".into(),
                ));
            }
        }
        self.drain_session(now);
        ControlFlow::Continue(())
    }

    /// A command from the UI or bot. `Break` when the call ends (leave).
    pub fn handle_command(&mut self, now: Instant, command: CoreCommand) -> ControlFlow<EndReason> {
        match command {
            CoreCommand::SetMicMuted(muted) => {
                self.mic_muted = muted;
                self.state.mic_muted = muted;
                if muted {
                    self.state.speaking = false;
                }
            }
            CoreCommand::SetCameraOff(off) => {
                self.camera_off = off;
                self.state.camera_off = off;
                if off {
                    self.state.sent.width = 0;
                    self.state.sent.height = 0;
                }
            }
            CoreCommand::Leave => {
                self.outputs.push_back(Output::Control(ControlFrame::Leave));
                self.refresh_stats(now);
                self.state.phase = CallPhase::Ended(EndReason::Left);
                self.publish_now = true;
                return ControlFlow::Break(EndReason::Left);
            }
        }
        // Tell the others at once, not at the next heartbeat.
        self.next_heartbeat = now;
        self.publish_now = true;
        ControlFlow::Continue(())
    }

    /// Encoded media from our own capture: sealed and sent unless muted / camera off.
    pub fn handle_local_media(&mut self, now: Instant, media: LocalMedia) {
        match media {
            LocalMedia::Video { meta, frame } => {
                if self.camera_off {
                    self.counters.video_gated += 1;
                    return;
                }
                self.state.sent.width = u32::from(meta.width);
                self.state.sent.height = u32::from(meta.height);
                self.send_video(now, meta, frame);
            }
            LocalMedia::Audio { plain } => {
                // Mute is enforced here, where packets leave: whatever was queued before the
                // mute (or whatever the audio thread does) never reaches the network.
                if self.mic_muted {
                    self.counters.audio_gated += 1;
                    self.audio_redundancy.forget();
                    return;
                }
                let Some(sent) = self.send_sealed(DatagramKind::Audio, None, &plain) else {
                    return;
                };
                self.state.sent.audio_frames += 1;
                let outputs = &mut self.outputs;
                let sent_stats = &mut self.state.sent;
                self.audio_redundancy.on_sent(&sent, |copy| {
                    sent_stats.audio_repeats += 1;
                    sent_stats.datagrams += 1;
                    sent_stats.bytes += copy.len() as u64;
                    outputs.push_back(Output::Datagram(copy));
                });
            }
        }
    }

    /// A statistic or need reported by a codec thread.
    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::VideoDecoded {
                peer,
                width,
                height,
                latency_ms,
                psnr_db,
            } => {
                if let Some(since) = self.video_gap_since.take() {
                    let gap = now.saturating_duration_since(since).as_millis() as u64;
                    self.state.reconnect_video_gap_ms = self.state.reconnect_video_gap_ms.max(gap);
                }
                self.last_video_decoded = Some(now);
                if let Some(r) = self.remotes.get_mut(&peer) {
                    r.media.record_decoded(now, latency_ms);
                    r.media.width = width;
                    r.media.height = height;
                    if let Some(db) = psnr_db {
                        r.media.psnr_sum_db += db;
                        r.media.psnr_samples += 1;
                    }
                }
            }
            MediaEvent::DecoderNeedsKeyframe { peer } => {
                self.request_keyframe(now, peer, KeyframeNeed::DecoderFailed);
            }
            MediaEvent::AudioPlayed { peer } => {
                if let Some(r) = self.remotes.get_mut(&peer) {
                    r.media.audio_frames_decoded += 1;
                }
            }
            MediaEvent::AudioRepaired { peer, fec } => {
                if let Some(r) = self.remotes.get_mut(&peer) {
                    if fec {
                        r.media.audio_frames_fec += 1;
                    } else {
                        r.media.audio_frames_concealed += 1;
                    }
                }
            }
            MediaEvent::AudioPeak { peer, hz } => {
                if let Some(r) = self.remotes.get_mut(&peer) {
                    r.media.audio_peak_hz = hz;
                }
            }
            MediaEvent::LocalLevel { speaking, level } => {
                let speaking = speaking && !self.mic_muted;
                self.local_level = (speaking, if self.mic_muted { 0 } else { level });
                if self.state.speaking != speaking {
                    self.state.speaking = speaking;
                    self.publish_now = true;
                }
            }
            MediaEvent::VideoEncoded { width, height } => {
                self.state.sent.width = width;
                self.state.sent.height = height;
            }
            MediaEvent::Warning(text) => {
                if self.state.errors.len() < MAX_ERRORS && !self.state.errors.contains(&text) {
                    self.state.errors.push(text);
                    self.publish_now = true;
                }
            }
        }
    }

    /// A datagram from the relay.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Bytes) {
        self.last_heard = now;
        let Ok((header, offset)) = DatagramHeader::decode(&datagram) else {
            self.counters.datagrams_malformed += 1;
            return;
        };
        let sender = header.sender;
        if sender == PeerId::NONE || sender == self.me {
            self.counters.datagrams_malformed += 1;
            return;
        }
        let Some(remote) = self.remotes.get_mut(&sender) else {
            self.counters.datagrams_from_strangers += 1;
            return;
        };
        remote.bytes_in += datagram.len() as u64;
        if header.kind == DatagramKind::Video {
            remote.media.record_video_bytes(now, datagram.len());
        }
        let body = &datagram[offset..];
        match header.kind {
            DatagramKind::Video => {
                let retransmission = header.target == Some(self.me);
                if retransmission {
                    remote.retransmissions_received += 1;
                }
                self.on_video_fragment(now, sender, header.layer, retransmission, body)
            }
            kind => self.on_small_datagram(now, sender, kind, header.target, body),
        }
    }

    fn on_video_fragment(
        &mut self,
        now: Instant,
        sender: PeerId,
        layer: u8,
        retransmission: bool,
        body: &[u8],
    ) {
        let now_ms = self.clock.unix_ms(now);
        let Some(remote) = self.remotes.get_mut(&sender) else {
            return;
        };
        let Ok((fragment, chunk)) = FragmentHeader::decode(body) else {
            remote.decrypt_failures += 1;
            return;
        };
        let repair_count = if fragment.index >= fragment.count {
            RepairHeader::decode(chunk)
                .ok()
                .map(|(h, _)| h.repair_count)
        } else {
            None
        };
        remote.meter.on_video_fragment(
            fragment.frame_id,
            fragment.index,
            fragment.count,
            repair_count,
            retransmission,
            body.len() + DatagramHeader::MIN_LEN,
        );
        remote.layers.note(fragment.frame_id, layer);
        remote.nacks.on_fragment(fragment.frame_id);
        let Some(mut frame) = remote.reassembler.insert(now, fragment, chunk) else {
            return;
        };
        let base = frame.data.as_ptr() as usize;
        let plain =
            match self
                .session
                .open(sender, DatagramKind::Video, None, &mut frame.data, now_ms)
            {
                Ok(plain) => {
                    let start = plain.as_ptr() as usize - base;
                    start..start + plain.len()
                }
                Err(e) => {
                    self.note_open_error(sender, &e);
                    self.drain_session(now);
                    return;
                }
            };
        let Some(remote) = self.remotes.get_mut(&sender) else {
            return;
        };
        let Ok((meta, _)) = VideoMeta::decode(&frame.data[plain.clone()]) else {
            remote.decrypt_failures += 1;
            return;
        };
        if remote.first_keyframe_number.is_none() {
            if !meta.keyframe {
                self.counters.frames_before_keyframe += 1;
                self.request_keyframe(now, sender, KeyframeNeed::NoKeyframeYet);
                return;
            }
            remote.first_keyframe_number = Some(meta.frame_number);
        }
        remote.video_frames_received += 1;
        remote.last_frame_number = remote.last_frame_number.max(meta.frame_number);
        let to_decode = VideoToDecode {
            peer: sender,
            meta,
            access_unit: plain.start + VideoMeta::LEN..plain.end,
            frame: frame.data,
        };
        let mut ordered = std::mem::take(&mut self.ordered);
        remote
            .order
            .push(now, frame.frame_id, meta.keyframe, to_decode, &mut |o| {
                ordered.push(o)
            });
        self.apply_order(now, sender, &mut ordered);
        self.ordered = ordered;
    }

    /// Performs what `sender`'s frame order decided: frames to decode, and frames given up on
    /// (forgotten by reassembly and NACKs; a keyframe request unless a keyframe follows).
    fn apply_order(
        &mut self,
        now: Instant,
        sender: PeerId,
        ordered: &mut Vec<Ordered<VideoToDecode>>,
    ) {
        // Which give-ups need no keyframe: every frame of upper layers (known from their
        // fragments, or from the frame delivered right after them).
        let mut upper_only = Vec::new();
        if let Some(remote) = self.remotes.get_mut(&sender) {
            for (i, o) in ordered.iter().enumerate() {
                if let Ordered::GaveUp { from, to } = *o {
                    let next = match ordered.get(i + 1) {
                        Some(Ordered::Deliver(frame)) => Some(&frame.meta),
                        _ => None,
                    };
                    let next_meta = |id: u32| next.filter(|_| id == to);
                    upper_only.push(remote.layers.lost(from, to, next_meta));
                }
            }
        }
        let mut upper_only = upper_only.into_iter();
        let mut need_keyframe = false;
        let mut still_waiting = false;
        for o in ordered.drain(..) {
            match o {
                Ordered::Deliver(frame) => {
                    need_keyframe &= !frame.meta.keyframe;
                    if let Some(remote) = self.remotes.get_mut(&sender) {
                        if frame.meta.keyframe {
                            remote.awaiting_keyframe = false;
                        } else if remote.awaiting_keyframe {
                            still_waiting = true;
                        }
                    }
                    let skip = self
                        .remotes
                        .get_mut(&sender)
                        .is_some_and(|r| r.layers.skips(&frame.meta));
                    if skip {
                        self.counters.video_frames_skipped += 1;
                    } else if let Some(remote) = self.remotes.get_mut(&sender) {
                        let now_us = self.clock.unix_us(now);
                        let capture_us = frame.meta.capture_time_us;
                        let recovering = remote
                            .last_nack_at
                            .is_some_and(|at| now.saturating_duration_since(at) < RECOVERY_MEMORY);
                        remote
                            .playout
                            .push(now, now_us, capture_us, frame, recovering);
                    }
                }
                Ordered::GaveUp { from, to } => {
                    // Frames of upper temporal layers are no reference for the base: losing
                    // them needs no keyframe (PROTOCOL.md §5).
                    need_keyframe |= !upper_only.next().unwrap_or(false);
                    if let Some(remote) = self.remotes.get_mut(&sender) {
                        let mut id = from;
                        while id != to {
                            remote.reassembler.abandon(id);
                            id = id.wrapping_add(1);
                        }
                    }
                }
            }
        }
        if let Some(remote) = self.remotes.get_mut(&sender)
            && let Some(next) = remote.order.next()
        {
            remote.nacks.set_floor(next);
        }
        if need_keyframe {
            if let Some(remote) = self.remotes.get_mut(&sender) {
                remote.awaiting_keyframe = true;
            }
            self.request_keyframe(now, sender, KeyframeNeed::FrameLost);
        } else if still_waiting {
            // The request (or the keyframe) may have been lost: ask again, more patiently.
            self.request_keyframe(now, sender, KeyframeNeed::StillWaiting);
        }
        self.release_due_frames(now);
    }

    /// Hands the decoder every frame whose playout time has come (PROTOCOL.md §5, "Playout").
    fn release_due_frames(&mut self, now: Instant) {
        for remote in self.remotes.values_mut() {
            while let Some(frame) = remote.playout.pop_due(now) {
                self.outputs.push_back(Output::Decode(frame));
            }
        }
    }

    /// Timer: NACKs what is missing, and gives up on frames waited for too long.
    fn run_recovery(&mut self, now: Instant) {
        let timing = RecoveryTiming::from_rtt(self.rtt);
        let peers: Vec<PeerId> = self.remotes.keys().copied().collect();
        let mut ordered = std::mem::take(&mut self.ordered);
        for peer in peers {
            let Some(remote) = self.remotes.get_mut(&peer) else {
                continue;
            };
            // Only upper-layer frames missing: nothing waits for them, wait less.
            let upper = remote.order.missing().is_some_and(|(from, to)| {
                remote
                    .layers
                    .all_upper(from, to, |id| remote.order.held(id).map(|f| &f.meta))
            });
            // An upper-layer frame is waited for at least as long as the playout delay hides
            // the wait: the frames behind it still play on time.
            let give_up = if upper {
                timing.give_up_upper.max(remote.playout.target())
            } else {
                timing.give_up
            };
            remote.order.poll(now, give_up, &mut |o| ordered.push(o));
            if !ordered.is_empty() {
                self.apply_order(now, peer, &mut ordered);
            }
            let Some(remote) = self.remotes.get_mut(&peer) else {
                continue;
            };
            if let Some(list) = remote.nacks.poll(now, &remote.reassembler, timing) {
                remote.last_nack_at = Some(now);
                // Twice (each sealed on its own): a lost NACK would cost a round trip.
                self.send_nack(peer, list);
                self.send_nack(peer, list);
            }
        }
        self.ordered = ordered;
    }

    /// Every [`REPORT_INTERVAL`], a receiver report to each peer whose video reached us.
    fn send_reports(&mut self, now: Instant) {
        let due: Vec<(PeerId, ReceiverReport)> = self
            .remotes
            .iter_mut()
            .filter_map(|(&peer, r)| r.meter.take(now).map(|report| (peer, report)))
            .filter(|(_, report)| report.video_bytes > 0)
            .collect();
        for (peer, report) in due {
            let mut plain = Vec::with_capacity(16);
            Feedback::ReceiverReport(report).append(&mut plain);
            if self
                .send_sealed(DatagramKind::Feedback, Some(peer), &plain)
                .is_some()
            {
                self.counters.reports_sent += 1;
            }
        }
    }

    fn send_nack(&mut self, peer: PeerId, list: NackList) {
        let mut plain = Vec::with_capacity(2 + 8 * list.entries().len());
        Feedback::Nack(list).append(&mut plain);
        self.send_sealed(DatagramKind::Feedback, Some(peer), &plain);
    }

    fn on_small_datagram(
        &mut self,
        now: Instant,
        sender: PeerId,
        kind: DatagramKind,
        target: Option<PeerId>,
        body: &[u8],
    ) {
        let now_ms = self.clock.unix_ms(now);
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        let opened = self
            .session
            .open(sender, kind, target, &mut self.scratch, now_ms);
        let plain = match opened {
            Ok(plain) => plain,
            Err(e) => {
                self.note_open_error(sender, &e);
                // Audio held for its batch signature may have been released by this body.
                self.play_attributed_audio(now_ms);
                // A body under an unknown key makes the session re-announce.
                self.drain_session(now);
                return;
            }
        };
        let Some(remote) = self.remotes.get_mut(&sender) else {
            return;
        };
        match kind {
            DatagramKind::Audio => {
                if let Ok((meta, opus)) = AudioMeta::decode(plain) {
                    remote
                        .meter
                        .on_audio(now, meta.capture_time_us, self.clock.unix_us(now));
                    remote.note_audio_sequence(meta.sequence);
                    self.outputs.push_back(Output::Play(AudioToPlay {
                        peer: sender,
                        meta,
                        opus: opus.to_vec(),
                    }));
                }
                // This packet's batch signature attributed the held ones it covers.
                self.play_attributed_audio(now_ms);
                self.drain_session(now);
            }
            DatagramKind::Heartbeat => {
                if let Ok(hb) = Heartbeat::decode(plain) {
                    let changed = remote.heartbeat.is_none_or(|old| {
                        (old.mic_muted, old.camera_off, old.speaking)
                            != (hb.mic_muted, hb.camera_off, hb.speaking)
                    });
                    remote.heartbeat = Some(hb);
                    remote.last_heartbeat_at = Some(now);
                    if changed {
                        self.refresh_peers();
                        self.publish_now = true;
                    }
                }
            }
            DatagramKind::Feedback => match Feedback::decode(plain) {
                Ok(Feedback::KeyframeRequest { .. }) => {
                    if self.keyframes.on_request_received(now) {
                        self.outputs.push_back(Output::ForceKeyframe);
                    }
                }
                Ok(Feedback::Nack(list)) => {
                    let outputs = &mut self.outputs;
                    let sent = &mut self.state.sent;
                    self.history.on_nack(now, sender, &list, |d| {
                        sent.datagrams += 1;
                        sent.bytes += d.len() as u64;
                        outputs.push_back(Output::Datagram(d));
                    });
                }
                Ok(Feedback::ReceiverReport(report)) => {
                    self.counters.reports_received += 1;
                    self.rate.on_report(now, sender, report);
                }
                Err(_) => self.counters.feedback_malformed += 1,
            },
            DatagramKind::Video => {}
        }
    }

    /// Plays the held audio packets that a batch signature attributed to their sender.
    fn play_attributed_audio(&mut self, now_ms: u64) {
        while let Some(audio) = self.session.take_attributed(now_ms) {
            if let Some(remote) = self.remotes.get_mut(&audio.sender)
                && let Ok((meta, opus)) = AudioMeta::decode(&audio.plaintext)
            {
                remote.note_audio_sequence(meta.sequence);
                self.outputs.push_back(Output::Play(AudioToPlay {
                    peer: audio.sender,
                    meta,
                    opus: opus.to_vec(),
                }));
            }
            self.session.recycle(audio);
        }
    }

    fn note_open_error(&mut self, sender: PeerId, e: &OpenError) {
        match e {
            // No key yet (the session re-announces), not addressed to us, or audio waiting for
            // its batch signature: not a failure.
            OpenError::UnknownKey { .. }
            | OpenError::NotForMe
            | OpenError::NotJoined
            | OpenError::AwaitingSignature => {}
            // A second copy (audio redundancy) or a duplicate on the path.
            OpenError::Replayed { .. } => {
                if let Some(r) = self.remotes.get_mut(&sender) {
                    r.duplicates += 1;
                }
            }
            _ => {
                if let Some(r) = self.remotes.get_mut(&sender) {
                    r.decrypt_failures += 1;
                }
            }
        }
    }

    /// The fraction of our video fragments receivers lose: the median receiver's report
    /// (reports see the loss FEC repaired too; [`RateController::repair_loss`]), or, while none
    /// reports, the share NACKed.
    fn video_loss(&self, now: Instant) -> f64 {
        self.rate
            .repair_loss(now)
            .unwrap_or_else(|| self.loss.fraction())
    }

    fn request_keyframe(&mut self, now: Instant, peer: PeerId, need: KeyframeNeed) {
        if !self.remotes.contains_key(&peer) || !self.keyframes.should_request(now, peer, need) {
            return;
        }
        let last_frame_number = self.remotes.get(&peer).map_or(0, |r| r.last_frame_number);
        let mut plain = Vec::with_capacity(8);
        Feedback::KeyframeRequest { last_frame_number }.append(&mut plain);
        self.send_sealed(DatagramKind::Feedback, Some(peer), &plain);
    }

    fn send_heartbeat(&mut self, now: Instant) {
        let hb = Heartbeat {
            sent_time_us: self.clock.unix_us(now),
            mic_muted: self.mic_muted,
            camera_off: self.camera_off,
            speaking: self.local_level.0,
            audio_level: self.local_level.1,
        };
        let mut plain = Vec::with_capacity(Heartbeat::LEN);
        hb.append(&mut plain);
        self.send_sealed(DatagramKind::Heartbeat, None, &plain);
    }

    /// Seals a frame in place (its first `SealedHeader::LEN` bytes are reserved), fragments it
    /// (keyframes with repair fragments), queues the datagrams and keeps them for NACKs.
    fn send_video(&mut self, now: Instant, meta: VideoMeta, mut frame: Vec<u8>) {
        let keyframe = meta.keyframe;
        if meta.layer > 0 && !keyframe && self.rate.shed_upper() {
            // Our uplink queue stands: nothing refers to this frame, so it need not wait in it.
            self.counters.video_shed_at_source += 1;
            return;
        }
        if let Some(plain) = frame.get_mut(SealedHeader::LEN..) {
            VideoMeta::set_previous_layer(plain, self.last_sent_layer);
        }
        if self
            .session
            .seal_in_place(DatagramKind::Video, None, &mut frame, 0)
            .is_err()
        {
            self.counters.not_sent += 1;
            return;
        }
        let header = DatagramHeader::new(DatagramKind::Video, None).with_layer(meta.layer);
        let approx_count = frame
            .len()
            .div_ceil(self.datagram_limit.saturating_sub(30).max(1));
        let repair = repair_for(
            approx_count,
            keyframe,
            meta.layer == 0,
            self.video_loss(now),
        );
        // Room for a target id: a retransmission is the same body behind an addressed header.
        let limit = self.datagram_limit - RETRANSMIT_HEADER_GROWTH;
        let Ok(fragments) =
            fragment_frame_with_repair(&header, self.frame_id, &frame, limit, repair)
        else {
            self.counters.not_sent += 1;
            self.handle_media_event(
                now,
                MediaEvent::Warning("a video frame was too large to send".into()),
            );
            return;
        };
        let mut kept = Vec::with_capacity(fragments.len());
        for datagram in fragments {
            self.state.sent.datagrams += 1;
            self.state.sent.bytes += datagram.len() as u64;
            kept.push(datagram.clone());
            self.outputs.push_back(Output::Datagram(datagram));
        }
        self.history.record(self.frame_id, kept);
        self.frame_id = self.frame_id.wrapping_add(1);
        self.last_sent_layer = meta.layer;
        self.state.sent.video_frames += 1;
    }

    /// Seals `plain` and queues it as a datagram; returns the datagram (None when it could not
    /// be sealed or is too large for the path).
    fn send_sealed(
        &mut self,
        kind: DatagramKind,
        target: Option<PeerId>,
        plain: &[u8],
    ) -> Option<Bytes> {
        let header = DatagramHeader::new(kind, target);
        let mut out = Vec::with_capacity(
            header.len()
                + plain.len()
                + vcall_crypto::SEAL_OVERHEAD
                + vcall_crypto::sender_auth::MAX_TRAILER_LEN,
        );
        header.append(&mut out);
        if self.session.seal(kind, target, plain, &mut out).is_err()
            || out.len() > self.datagram_limit
        {
            self.counters.not_sent += 1;
            return None;
        }
        self.state.sent.datagrams += 1;
        self.state.sent.bytes += out.len() as u64;
        let datagram = Bytes::from(out);
        self.outputs.push_back(Output::Datagram(datagram.clone()));
        Some(datagram)
    }

    /// Performs every pending action of the E2EE session.
    fn drain_session(&mut self, _now: Instant) {
        let mut peers_changed = false;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::SendSignal { to, payload } => {
                    self.outputs
                        .push_back(Output::Control(ControlFrame::Signal {
                            to: to.to_wire(),
                            from: PeerId::NONE,
                            payload: Bytes::from(payload),
                        }));
                }
                Action::Log(event) => {
                    let log = &mut self.state.handshake_log;
                    if log.len() >= MAX_HANDSHAKE_LOG {
                        log.remove(0);
                    }
                    log.push(HandshakeLogEntry {
                        t_ms: event.at_ms.saturating_sub(self.started_unix_ms),
                        event: event.kind.as_str().to_owned(),
                        peer: event.peer,
                    });
                    self.publish_now = true;
                }
                Action::Rejected { peer, reason } => {
                    self.counters.signals_rejected += 1;
                    tracing::debug!(%peer, ?reason, "E2EE message rejected");
                }
                Action::KeyInstalled { .. }
                | Action::KeyRetired { .. }
                | Action::SenderKeyChanged { .. }
                | Action::PeerChanged { .. }
                | Action::PeerSilent { .. } => peers_changed = true,
                Action::Fatal(fatal) => {
                    // The session can no longer seal: the call ends with the reason.
                    let reason = EndReason::EncryptionEnded(fatal.to_string());
                    self.outputs.push_back(Output::Control(ControlFrame::Leave));
                    self.state.phase = CallPhase::Ended(reason.clone());
                    self.ending = Some(reason);
                    self.publish_now = true;
                }
            }
        }
        if peers_changed {
            self.refresh_peers();
            self.publish_now = true;
        }
    }

    /// Rebuilds the peer list and the security code from the roster, the session and the
    /// per-peer media state.
    fn refresh_peers(&mut self) {
        let infos = self.session.peers();
        let rtt_ms = self.rtt.as_secs_f64() * 1000.0;
        let old = std::mem::take(&mut self.state.peers);
        let mut list = Vec::with_capacity(self.roster.len());
        for (&peer_id, clear_name) in &self.roster {
            let info = infos.iter().find(|i| i.peer == peer_id);
            let remote = self.remotes.get(&peer_id);
            let hb = remote.and_then(|r| r.heartbeat).unwrap_or_default();
            let stats = old
                .iter()
                .find(|p| p.peer_id == peer_id)
                .map(|p| p.stats.clone())
                .unwrap_or_default();
            let mut state = PeerState {
                peer_id,
                name: info
                    .and_then(|i| i.display_name.clone())
                    .or_else(|| clear_name.clone()),
                fingerprint: info.and_then(|i| i.fingerprint.map(|f| f.to_hex())),
                verified: info.is_some_and(|i| i.verified),
                key_received: info.is_some_and(|i| i.key_received),
                key_sent: info.is_some_and(|i| i.key_sent),
                member: info.is_some_and(|i| i.member),
                silent: info.is_some_and(|i| i.silent),
                mic_muted: hb.mic_muted,
                camera_off: hb.camera_off,
                speaking: hb.speaking,
                stats,
            };
            state.stats.rtt_ms = rtt_ms;
            list.push(state);
        }
        self.state.peers = list;
        self.state.security.room_security_code = self.session.security_code().digits();
        self.state.security.member_count = self.session.member_count();
    }

    /// Recomputes rates and per-peer statistics and publishes them.
    fn refresh_stats(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.stats_at)
            .as_secs_f64()
            .max(1e-3);
        self.stats_at = now;
        let sent = &mut self.state.sent;
        sent.bitrate_out_kbps = (sent.bytes.saturating_sub(self.bytes_sent_at_stats) as f64 * 8.0
            / 1000.0
            / secs) as u64;
        sent.fps = sent.video_frames.saturating_sub(self.frames_sent_at_stats) as f64 / secs;
        if sent.fps == 0.0 {
            sent.width = 0;
            sent.height = 0;
        }
        self.bytes_sent_at_stats = sent.bytes;
        self.frames_sent_at_stats = sent.video_frames;
        let resent = self.history.counters();
        self.loss.update(&resent);
        let loss = self.video_loss(now);
        let sent = &mut self.state.sent;
        sent.loss_reported = loss;
        self.audio_redundancy.on_reported_loss(loss);
        let expected = expected_audio_loss(loss);
        if expected.abs_diff(self.audio_loss_told) >= 2 {
            self.audio_loss_told = expected;
            self.outputs.push_back(Output::ExpectedAudioLoss(expected));
        }
        sent.nacks_received = resent.nacks_received;
        sent.retransmissions = resent.fragments_resent;
        sent.retransmissions_refused = resent.requests_refused;
        self.refresh_peers();
        for peer in &mut self.state.peers {
            let Some(remote) = self.remotes.get_mut(&peer.peer_id) else {
                continue;
            };
            remote.media.roll(now);
            let s = &mut peer.stats;
            let media = &remote.media;
            s.timeline.clone_from(&media.timeline);
            s.width = media.width;
            s.height = media.height;
            s.fps = media.fps_at(now);
            s.bitrate_in_kbps = remote
                .bytes_in
                .saturating_sub(remote.bytes_in_at_last_report)
                as f64
                * 8.0
                / 1000.0
                / secs;
            remote.bytes_in_at_last_report = remote.bytes_in;
            s.video_frames_expected = remote.video_frames_expected();
            s.video_frames_received = remote.video_frames_received;
            s.video_frames_decoded = media.video_frames_decoded;
            s.video_psnr_db = media.psnr_db();
            s.audio_frames_expected = remote.audio_frames_expected();
            s.audio_frames_decoded = media.audio_frames_decoded;
            s.audio_frames_fec = media.audio_frames_fec;
            s.audio_frames_concealed = media.audio_frames_concealed;
            s.audio_peak_hz = media.audio_peak_hz;
            s.latency_ms = media.latency();
            let reassembly = remote.reassembler.stats();
            s.datagrams_lost = remote.audio_gaps + reassembly.frames_dropped;
            s.decrypt_failures = remote.decrypt_failures;
            s.duplicates = remote.duplicates;
            s.video_freeze_count = media.freeze_count;
            s.video_freeze_ms_total = media.freeze_ms_total;
            s.video_max_freeze_ms = media.max_freeze_ms;
            s.nacks_sent = remote.nacks.nacks_sent;
            s.retransmissions = remote.retransmissions_received;
            s.fec_recovered = reassembly.frames_repaired;
            s.video_frames_given_up = remote.order.given_up;
            s.video_playout_delay_ms = remote.playout.target().as_millis() as u64;
        }
        self.stats_refreshed = true;
    }
}

#[cfg(test)]
mod tests;
