//! The network task: owns the QUIC connection, the control stream and the E2EE session.
//! Seals what the codec threads produce, opens what arrives and routes it to them, sends
//! heartbeats and keyframe requests, and publishes the call state.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Sender as StdSender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{Receiver, UnboundedReceiver};
use vcall_crypto::{Action, OpenError, Session};
use vcall_proto::control::{ControlDecoder, ControlFrame, ErrorCode};
use vcall_proto::e2ee::SealedHeader;
use vcall_proto::fragment::{FragmentHeader, Reassembler, ReassemblyConfig, fragment_frame};
use vcall_proto::media::{AudioMeta, Feedback, Heartbeat, VideoMeta};
use vcall_proto::{DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE, PeerId};

use super::audio::AudioJob;
use super::handle::{Command, Waker};
use super::state::{CallPhase, CallState, EndReason, HandshakeEvent, PeerState};
use super::stats::MediaBoard;
use super::video::{DecodeJob, VideoControl};
use super::{ToNetwork, unix_ms, wall_clock_us};

/// Keyframe requests to one sender at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Keyframes forced by requests at most this often.
const KEYFRAME_FORCE_INTERVAL: Duration = Duration::from_millis(300);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
const STATE_INTERVAL: Duration = Duration::from_millis(250);
/// Departed peers remembered in the state (for reports).
const MAX_DEPARTED: usize = 64;

/// Per remote peer bookkeeping of the network task.
#[derive(Default)]
struct NetPeer {
    reassembler: Option<Reassembler>,
    last_frame_id: Option<u32>,
    first_keyframe_number: Option<u32>,
    last_frame_number: u32,
    video_frames_received: u64,
    last_audio_sequence: Option<u32>,
    audio_gaps: u64,
    decrypt_failures: u64,
    last_keyframe_request: Option<Instant>,
    bytes_in: u64,
    bytes_in_at_last_state: u64,
    heartbeat: Option<Heartbeat>,
}

/// The codec threads' ends of the channels.
pub(crate) struct Pipes {
    pub from_media: Receiver<ToNetwork>,
    pub video_control: StdSender<VideoControl>,
    pub decode: SyncSender<DecodeJob>,
    pub audio: SyncSender<AudioJob>,
}

/// The joined call the task drives.
pub(crate) struct Call {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub decoder: ControlDecoder,
    pub session: Session,
    pub me: PeerId,
    /// Relay roster: who is present and the clear name each gave (if any).
    pub roster: BTreeMap<PeerId, Option<String>>,
    pub state: Arc<Mutex<CallState>>,
    pub board: Arc<MediaBoard>,
    pub waker: Option<Waker>,
    pub start_unix_ms: u64,
    pub mic_muted: bool,
    pub camera_off: bool,
    /// Reused buffer for opening small datagram bodies in place.
    pub scratch: Vec<u8>,
}

/// How the call loop ended.
pub(crate) enum Ending {
    Left,
    Failed(EndReason, String),
}

impl Call {
    /// Runs the joined call until it ends.
    pub async fn run(
        mut self,
        mut commands: UnboundedReceiver<Command>,
        mut pipes: Pipes,
    ) -> Ending {
        let mut peers: HashMap<PeerId, NetPeer> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now() - HEARTBEAT_INTERVAL;
        let mut last_state = Instant::now();
        let mut last_forced_keyframe: Option<Instant> = None;
        let mut frame_id: u32 = 0;
        let mut local_level = (false, 0u8);
        let mut read_buf = vec![0u8; 16 * 1024];
        let mut sent_bytes_at_last_state = 0u64;
        let mut sent_frames_at_last_state = 0u64;
        self.drain_actions().await;
        self.publish(&mut peers, 1.0, 0.0);

        let ending = loop {
            tokio::select! {
                read = self.recv.read(&mut read_buf) => {
                    match read {
                        Ok(Some(n)) => {
                            self.decoder.push(&read_buf[..n]);
                            loop {
                                match self.decoder.next_frame() {
                                    Ok(Some(frame)) => {
                                        if self.on_control(frame, &mut peers, &pipes).await.is_some() {
                                            break;
                                        }
                                    }
                                    Ok(None) => break,
                                    Err(e) => {
                                        return Ending::Failed(EndReason::Internal, format!("the relay sent an invalid control frame ({e}); please report this"));
                                    }
                                }
                            }
                            if let Some(ending) = self.take_ending() {
                                break ending;
                            }
                        }
                        Ok(None) => break Ending::Failed(EndReason::ConnectionLost, "the relay closed the call".into()),
                        Err(e) => break Ending::Failed(EndReason::ConnectionLost, connection_lost(&e.to_string())),
                    }
                }
                datagram = self.conn.read_datagram() => {
                    match datagram {
                        Ok(d) => self.on_datagram(d, &mut peers, &pipes, &mut last_forced_keyframe),
                        Err(e) => break Ending::Failed(EndReason::ConnectionLost, connection_lost(&e.to_string())),
                    }
                }
                cmd = commands.recv() => {
                    match cmd {
                        None | Some(Command::Leave) => break Ending::Left,
                        Some(cmd) => self.on_command(cmd, &pipes),
                    }
                }
                Some(out) = pipes.from_media.recv() => {
                    match out {
                        ToNetwork::Video { frame } => {
                            self.send_video(frame, frame_id);
                            frame_id = frame_id.wrapping_add(1);
                            self.update(|s| s.sent.video_frames += 1);
                        }
                        ToNetwork::Audio { plain } => {
                            if self.send_sealed(DatagramKind::Audio, None, &plain) {
                                self.update(|s| s.sent.audio_frames += 1);
                            }
                        }
                        ToNetwork::KeyframeRequest { peer } => {
                            self.request_keyframe(peer, &mut peers);
                        }
                        ToNetwork::LocalLevel { speaking, level } => local_level = (speaking, level),
                        ToNetwork::Error(e) => self.update(|s| push_error(s, e)),
                    }
                }
                _ = tick.tick() => {
                    let now_ms = unix_ms();
                    self.session.on_tick(now_ms);
                    self.drain_actions().await;
                    let now = Instant::now();
                    for p in peers.values_mut() {
                        if let Some(r) = p.reassembler.as_mut() {
                            r.expire(now);
                        }
                    }
                    if now.duration_since(last_heartbeat) >= HEARTBEAT_INTERVAL {
                        last_heartbeat = now;
                        let hb = Heartbeat {
                            sent_time_us: wall_clock_us(),
                            mic_muted: self.mic_muted,
                            camera_off: self.camera_off,
                            speaking: local_level.0,
                            audio_level: local_level.1,
                        };
                        let mut plain = Vec::with_capacity(Heartbeat::LEN);
                        hb.append(&mut plain);
                        self.send_sealed(DatagramKind::Heartbeat, None, &plain);
                    }
                    if now.duration_since(last_state) >= STATE_INTERVAL {
                        let secs = now.duration_since(last_state).as_secs_f64();
                        last_state = now;
                        let (sent_bytes, sent_frames) = self
                            .state
                            .lock()
                            .map(|s| (s.sent.bytes, s.sent.video_frames))
                            .unwrap_or_default();
                        let out_kbps = sent_bytes.saturating_sub(sent_bytes_at_last_state) as f64 * 8.0 / 1000.0 / secs;
                        let fps = sent_frames.saturating_sub(sent_frames_at_last_state) as f64 / secs;
                        sent_bytes_at_last_state = sent_bytes;
                        sent_frames_at_last_state = sent_frames;
                        self.update(|s| {
                            s.speaking = local_level.0;
                            s.sent.fps = fps;
                            if fps == 0.0 {
                                s.sent.width = 0;
                                s.sent.height = 0;
                            }
                        });
                        self.publish(&mut peers, secs, out_kbps);
                    }
                }
            }
        };
        if matches!(ending, Ending::Left) {
            let _ = self.send.write_all(&ControlFrame::Leave.to_bytes()).await;
            let _ = self.send.finish();
        }
        // Publish the final statistics before the caller marks the call ended.
        self.publish(&mut peers, 1.0, 0.0);
        ending
    }

    fn take_ending(&mut self) -> Option<Ending> {
        self.state.lock().ok().and_then(|s| match &s.phase {
            CallPhase::Ended { reason, kind, .. } => Some(Ending::Failed(*kind, reason.clone())),
            _ => None,
        })
    }

    /// Handles one control frame; a fatal one records the ending in the state.
    async fn on_control(
        &mut self,
        frame: ControlFrame,
        peers: &mut HashMap<PeerId, NetPeer>,
        pipes: &Pipes,
    ) -> Option<()> {
        let now_ms = unix_ms();
        match frame {
            ControlFrame::PeerJoined(entry) => {
                self.roster.insert(entry.peer, entry.name);
                self.session.on_peer_joined(entry.peer, now_ms);
            }
            ControlFrame::PeerLeft { peer } => {
                self.roster.remove(&peer);
                self.update(|s| {
                    if let Some(i) = s.peers.iter().position(|p| p.peer_id == peer) {
                        let gone = s.peers.remove(i);
                        if s.departed.len() >= MAX_DEPARTED {
                            s.departed.remove(0);
                        }
                        s.departed.push(gone);
                    }
                });
                peers.remove(&peer);
                self.session.on_peer_left(peer, now_ms);
                let _ = pipes.decode.try_send(DecodeJob::PeerLeft(peer));
                let _ = pipes.audio.try_send(AudioJob::PeerLeft(peer));
            }
            ControlFrame::Signal { from, payload, .. } => {
                // Rejections are reported as actions and visible in the log; never fatal.
                let _ = self.session.on_signal(from, &payload, now_ms);
            }
            ControlFrame::Ping(v) => {
                let _ = self.send.write_all(&ControlFrame::Pong(v).to_bytes()).await;
            }
            ControlFrame::Pong(_) => {}
            ControlFrame::GoAway { code, message } => {
                self.end(EndReason::RelayShutDown, format!(
                    "The relay is shutting down ({code}{}). Rejoin in a moment, or use another relay.",
                    if message.is_empty() { String::new() } else { format!(": {message}") }
                ));
                return Some(());
            }
            ControlFrame::Error { code, message } => {
                if code == ErrorCode::UnknownPeer {
                    // A signal raced with that peer leaving: harmless.
                } else {
                    let kind = if code == ErrorCode::RoomFull {
                        EndReason::RoomFull
                    } else {
                        EndReason::RelayRefused
                    };
                    self.end(
                        kind,
                        format!("The relay reported an error: {code} ({message})."),
                    );
                    return Some(());
                }
            }
            ControlFrame::Hello { .. } | ControlFrame::Welcome { .. } | ControlFrame::Leave => {
                self.end(
                    EndReason::Internal,
                    "The relay sent an unexpected frame; please report this.".into(),
                );
                return Some(());
            }
        }
        self.drain_actions().await;
        None
    }

    fn end(&self, kind: EndReason, reason: String) {
        if let Ok(mut s) = self.state.lock() {
            s.phase = CallPhase::Ended {
                reason,
                error: true,
                kind,
            };
        }
    }

    /// Performs every pending action of the E2EE session.
    async fn drain_actions(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::SendSignal { to, payload } => {
                    let frame = ControlFrame::Signal {
                        to,
                        from: PeerId::NONE,
                        payload: Bytes::from(payload),
                    };
                    if self.send.write_all(&frame.to_bytes()).await.is_err() {
                        return;
                    }
                }
                Action::Log(event) => {
                    let entry = HandshakeEvent {
                        t_ms: event.at_ms.saturating_sub(self.start_unix_ms),
                        event: event.kind.as_str().to_owned(),
                        peer: (event.peer != PeerId::NONE).then_some(event.peer),
                    };
                    self.update(|s| s.handshake_log.push(entry));
                }
                Action::Rejected { peer, reason } => {
                    tracing::debug!(%peer, ?reason, "E2EE message rejected");
                }
                Action::KeyInstalled { .. }
                | Action::KeyRetired { .. }
                | Action::SenderKeyChanged { .. }
                | Action::PeerChanged { .. } => {}
            }
        }
    }

    fn on_command(&mut self, cmd: Command, pipes: &Pipes) {
        match cmd {
            Command::SetMicMuted(m) => {
                self.mic_muted = m;
                let _ = pipes.audio.try_send(AudioJob::SetMuted(m));
                self.update(|s| s.mic_muted = m);
            }
            Command::SetCameraOff(off) => {
                self.camera_off = off;
                let _ = pipes.video_control.send(VideoControl::SetCameraOff(off));
                self.update(|s| s.camera_off = off);
            }
            Command::SetCamera(input) => {
                let _ = pipes.video_control.send(VideoControl::SetInput(input));
            }
            Command::SetMic(input) => {
                let _ = pipes.audio.try_send(AudioJob::SetInput(input));
            }
            Command::SetSpeaker(output) => {
                let _ = pipes.audio.try_send(AudioJob::SetOutput(output));
            }
            Command::Leave => {}
        }
        self.wake();
    }

    /// Largest datagram to send now: the protocol limit, or less if this path allows less.
    fn datagram_limit(&self) -> usize {
        self.conn
            .max_datagram_size()
            .map_or(MAX_DATAGRAM_SIZE, |m| m.min(MAX_DATAGRAM_SIZE))
    }

    /// Seals a frame in place (its first `SealedHeader::LEN` bytes are reserved), fragments it
    /// and sends the datagrams.
    fn send_video(&mut self, mut sealed: Vec<u8>, frame_id: u32) {
        if let Some(Ok((meta, _))) = sealed.get(SealedHeader::LEN..).map(VideoMeta::decode) {
            self.update(|s| {
                s.sent.width = u32::from(meta.width);
                s.sent.height = u32::from(meta.height);
            });
        }
        if self
            .session
            .seal_in_place(DatagramKind::Video, None, &mut sealed, 0)
            .is_err()
        {
            return;
        }
        let header = DatagramHeader::new(DatagramKind::Video, None);
        let Ok(fragments) = fragment_frame(&header, frame_id, &sealed, self.datagram_limit())
        else {
            self.update(|s| push_error(s, "a video frame was too large to send".into()));
            return;
        };
        let (mut n, mut bytes) = (0u64, 0u64);
        for d in fragments {
            bytes += d.len() as u64;
            n += 1;
            // Dropped by quinn when congested: that is the right behaviour for media.
            let _ = self.conn.send_datagram(d);
        }
        self.update(|s| {
            s.sent.datagrams += n;
            s.sent.bytes += bytes;
        });
    }

    /// Seals one datagram body and sends it; false if it could not be sealed.
    fn send_sealed(&mut self, kind: DatagramKind, target: Option<PeerId>, plain: &[u8]) -> bool {
        let header = DatagramHeader::new(kind, target);
        let mut out = Vec::with_capacity(header.len() + plain.len() + vcall_crypto::SEAL_OVERHEAD);
        header.append(&mut out);
        if self.session.seal(kind, target, plain, &mut out).is_err() {
            return false;
        }
        if out.len() > self.datagram_limit() {
            return false;
        }
        let len = out.len() as u64;
        let _ = self.conn.send_datagram(Bytes::from(out));
        self.update(|s| {
            s.sent.datagrams += 1;
            s.sent.bytes += len;
        });
        true
    }

    fn request_keyframe(&mut self, peer: PeerId, peers: &mut HashMap<PeerId, NetPeer>) {
        let p = peers.entry(peer).or_default();
        let now = Instant::now();
        if p.last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        p.last_keyframe_request = Some(now);
        let mut plain = Vec::with_capacity(8);
        Feedback::KeyframeRequest {
            last_frame_number: p.last_frame_number,
        }
        .append(&mut plain);
        self.send_sealed(DatagramKind::Feedback, Some(peer), &plain);
    }

    fn on_datagram(
        &mut self,
        datagram: Bytes,
        peers: &mut HashMap<PeerId, NetPeer>,
        pipes: &Pipes,
        last_forced_keyframe: &mut Option<Instant>,
    ) {
        let Ok((header, offset)) = DatagramHeader::decode(&datagram) else {
            return;
        };
        let sender = header.sender;
        if sender == PeerId::NONE || sender == self.me {
            return;
        }
        let now = Instant::now();
        let now_ms = unix_ms();
        let p = peers.entry(sender).or_default();
        p.bytes_in += datagram.len() as u64;
        let body = &datagram[offset..];
        match header.kind {
            DatagramKind::Video => {
                let Ok((frag, chunk)) = FragmentHeader::decode(body) else {
                    return;
                };
                let reassembler = p
                    .reassembler
                    .get_or_insert_with(|| Reassembler::new(ReassemblyConfig::default()));
                let dropped_before = reassembler.stats().frames_dropped;
                let complete = reassembler.insert(now, frag, chunk);
                let dropped = reassembler.stats().frames_dropped > dropped_before;
                let Some(mut frame) = complete else {
                    if dropped {
                        self.request_keyframe(sender, peers);
                    }
                    return;
                };
                let gap = p
                    .last_frame_id
                    .is_some_and(|last| frame.frame_id != last.wrapping_add(1));
                p.last_frame_id = Some(frame.frame_id);
                let base = frame.data.as_ptr() as usize;
                let opened =
                    self.session
                        .open(sender, DatagramKind::Video, None, &mut frame.data, now_ms);
                let range = match opened {
                    Ok(plain) => {
                        let start = plain.as_ptr() as usize - base;
                        start..start + plain.len()
                    }
                    Err(e) => {
                        note_open_error(p, &e);
                        return;
                    }
                };
                let Ok((meta, _)) = VideoMeta::decode(&frame.data[range.clone()]) else {
                    p.decrypt_failures += 1;
                    return;
                };
                if p.first_keyframe_number.is_none() {
                    if !meta.keyframe {
                        self.request_keyframe(sender, peers);
                        return;
                    }
                    p.first_keyframe_number = Some(meta.frame_number);
                }
                p.video_frames_received += 1;
                p.last_frame_number = p.last_frame_number.max(meta.frame_number);
                frame.data.truncate(range.end);
                frame.data.drain(..range.start);
                let _ = pipes.decode.try_send(DecodeJob::Frame {
                    peer: sender,
                    meta,
                    plain: frame.data,
                });
                if gap {
                    self.request_keyframe(sender, peers);
                }
            }
            DatagramKind::Audio => {
                self.scratch.clear();
                self.scratch.extend_from_slice(body);
                match self.session.open(
                    sender,
                    DatagramKind::Audio,
                    header.target,
                    &mut self.scratch,
                    now_ms,
                ) {
                    Ok(plain) => {
                        if let Ok((meta, opus)) = AudioMeta::decode(plain) {
                            if let Some(last) = p.last_audio_sequence {
                                let step = meta.sequence.wrapping_sub(last);
                                if step > 1 && step < 1000 {
                                    p.audio_gaps += u64::from(step - 1);
                                }
                            }
                            p.last_audio_sequence = Some(meta.sequence);
                            let _ = pipes.audio.try_send(AudioJob::Packet {
                                peer: sender,
                                meta,
                                opus: opus.to_vec(),
                            });
                        }
                    }
                    Err(e) => note_open_error(p, &e),
                }
            }
            DatagramKind::Heartbeat => {
                self.scratch.clear();
                self.scratch.extend_from_slice(body);
                match self.session.open(
                    sender,
                    DatagramKind::Heartbeat,
                    header.target,
                    &mut self.scratch,
                    now_ms,
                ) {
                    Ok(plain) => {
                        if let Ok(hb) = Heartbeat::decode(plain) {
                            p.heartbeat = Some(hb);
                        }
                    }
                    Err(e) => note_open_error(p, &e),
                }
            }
            DatagramKind::Feedback => {
                self.scratch.clear();
                self.scratch.extend_from_slice(body);
                match self.session.open(
                    sender,
                    DatagramKind::Feedback,
                    header.target,
                    &mut self.scratch,
                    now_ms,
                ) {
                    Ok(plain) => {
                        if let Ok(Feedback::KeyframeRequest { .. }) = Feedback::decode(plain)
                            && last_forced_keyframe
                                .is_none_or(|t| now.duration_since(t) >= KEYFRAME_FORCE_INTERVAL)
                        {
                            *last_forced_keyframe = Some(now);
                            let _ = pipes.video_control.send(VideoControl::ForceKeyframe);
                        }
                    }
                    Err(e) => note_open_error(p, &e),
                }
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut CallState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w();
        }
    }

    /// Rebuilds the peer list and security state from the session, the relay roster and the
    /// media statistics, then wakes the UI.
    fn publish(&self, peers: &mut HashMap<PeerId, NetPeer>, secs: f64, out_kbps: f64) {
        let infos = self.session.peers();
        let rtt_ms = self.conn.rtt().as_secs_f64() * 1000.0;
        let code = self.session.security_code().digits();
        let mut list = Vec::with_capacity(self.roster.len());
        for (&peer_id, clear_name) in &self.roster {
            let info = infos.iter().find(|i| i.peer == peer_id);
            let media = self.board.get(peer_id).unwrap_or_default();
            let net = peers.entry(peer_id).or_default();
            let bitrate_in_kbps =
                (net.bytes_in - net.bytes_in_at_last_state) as f64 * 8.0 / 1000.0 / secs.max(1e-3);
            net.bytes_in_at_last_state = net.bytes_in;
            let reassembly = net
                .reassembler
                .as_ref()
                .map(|r| r.stats())
                .unwrap_or_default();
            let hb = net.heartbeat.unwrap_or_default();
            let mut state = PeerState {
                peer_id,
                name: info
                    .and_then(|i| i.display_name.clone())
                    .or_else(|| clear_name.clone()),
                fingerprint: info.and_then(|i| i.fingerprint.map(|f| f.to_hex())),
                verified: info.is_some_and(|i| i.verified),
                key_received: info.is_some_and(|i| i.key_received),
                key_sent: info.is_some_and(|i| i.key_sent),
                mic_muted: hb.mic_muted,
                camera_off: hb.camera_off,
                speaking: hb.speaking,
                ..PeerState::default()
            };
            let s = &mut state.stats;
            s.width = media.width;
            s.height = media.height;
            s.fps = media.fps();
            s.bitrate_in_kbps = bitrate_in_kbps;
            s.rtt_ms = rtt_ms;
            s.video_frames_expected = net.first_keyframe_number.map_or(0, |first| {
                u64::from(net.last_frame_number.wrapping_sub(first)) + 1
            });
            s.video_frames_received = net.video_frames_received;
            s.video_frames_decoded = media.video_frames_decoded;
            s.video_psnr_db = media.psnr_db();
            s.audio_frames_decoded = media.audio_frames_decoded;
            s.audio_peak_hz = media.audio_peak_hz;
            s.latency_ms = media.latency();
            s.datagrams_lost = net.audio_gaps + reassembly.frames_dropped;
            s.decrypt_failures = net.decrypt_failures;
            list.push(state);
        }
        self.update(|s| {
            s.peers = list;
            s.security.room_security_code = code;
            s.sent.bitrate_out_kbps = out_kbps as u64;
        });
        self.wake();
    }
}

fn note_open_error(p: &mut NetPeer, e: &OpenError) {
    match e {
        // No key yet (the session re-announces) or not addressed to us: not a failure.
        OpenError::UnknownKey { .. } | OpenError::NotForMe | OpenError::NotJoined => {}
        _ => p.decrypt_failures += 1,
    }
}

fn push_error(s: &mut CallState, e: String) {
    if s.errors.len() < 100 && !s.errors.contains(&e) {
        s.errors.push(e);
    }
}

fn connection_lost(detail: &str) -> String {
    format!("Lost the connection to the relay ({detail}). Check your network and rejoin.")
}
