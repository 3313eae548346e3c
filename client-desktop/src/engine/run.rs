//! Starting a call: parse the link, generate the identity and derive room keys off the async
//! threads, connect and join, then start the codec threads and the network loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use vcall_crypto::{Identity, InviteLink, OsRandom, Session, SessionConfig};
use vcall_proto::control::{ControlDecoder, ControlFrame, DEFAULT_MAX_CONTROL_FRAME, ErrorCode};
use vcall_proto::{PROTOCOL_VERSION, PeerId};

use super::audio::AudioEngine;
use super::config::CallConfig;
use super::connect::ConnectError;
use super::connect::connect;
use super::handle::{CallHandle, Command, VideoFrames, Waker};
use super::network::{Call, Ending, Pipes};
use super::state::{CallPhase, CallState, EndReason};
use super::stats::MediaBoard;
use super::unix_ms;
use super::video::{VideoReceiver, VideoSender};

/// The link with its secret fragment replaced, safe for logs and screens.
pub fn redact_link(link: &str) -> String {
    match link.split_once('#') {
        Some((before, _)) => format!("{before}#<secret>"),
        None => link.to_owned(),
    }
}

pub(crate) fn start(config: CallConfig, waker: Option<Waker>) -> CallHandle {
    let (commands, command_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = Arc::new(Mutex::new(CallState {
        my_name: config.display_name.clone(),
        mic_muted: config.mic_muted,
        camera_off: config.camera_off,
        redacted_link: redact_link(&config.link),
        ..CallState::default()
    }));
    let frames = Arc::new(VideoFrames::default());
    let (state2, frames2, waker2) = (state.clone(), frames.clone(), waker.clone());
    let spawned = std::thread::Builder::new()
        .name("vcall-network".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let ending = match runtime {
                Ok(rt) => rt.block_on(join_and_run(
                    config,
                    command_rx,
                    state2.clone(),
                    frames2,
                    waker2.clone(),
                )),
                Err(e) => Ending::Failed(
                    EndReason::Internal,
                    format!("cannot start the network runtime: {e}"),
                ),
            };
            finish(&state2, ending, waker2.as_ref());
        });
    if let Err(e) = spawned {
        finish(
            &state,
            Ending::Failed(
                EndReason::Internal,
                format!("cannot start the call thread: {e}"),
            ),
            waker.as_ref(),
        );
    }
    CallHandle {
        commands,
        state,
        frames,
    }
}

fn finish(state: &Mutex<CallState>, ending: Ending, waker: Option<&Waker>) {
    if let Ok(mut s) = state.lock()
        && !matches!(s.phase, CallPhase::Ended { .. })
    {
        s.phase = match ending {
            Ending::Left => CallPhase::Ended {
                reason: String::new(),
                error: false,
                kind: EndReason::Left,
            },
            Ending::Failed(kind, reason) => {
                tracing::warn!(%reason, ?kind, "call ended");
                CallPhase::Ended {
                    reason,
                    error: true,
                    kind,
                }
            }
        };
    }
    if let Some(w) = waker {
        w();
    }
}

/// A join failure: why (as a value) and the sentence for the user.
type Failure = (EndReason, String);

fn refusal(code: ErrorCode, message: &str) -> Failure {
    let kind = match code {
        ErrorCode::RoomFull => EndReason::RoomFull,
        ErrorCode::ShuttingDown => EndReason::RelayShutDown,
        _ => EndReason::RelayRefused,
    };
    let what_next = match code {
        ErrorCode::RoomFull => "This call is full. Try again later.",
        ErrorCode::UnsupportedVersion => "This relay runs another vcall version. Update the app.",
        ErrorCode::TooManyRooms | ErrorCode::RateLimited => {
            "The relay is at capacity. Try again later or use another relay."
        }
        ErrorCode::ShuttingDown => "The relay is shutting down. Rejoin in a moment.",
        _ => "The relay refused the call.",
    };
    (kind, format!("{what_next} (relay said: {code}: {message})"))
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut ControlDecoder,
) -> Result<ControlFrame, Failure> {
    let lost = |why: String| (EndReason::ConnectionLost, why);
    let mut buf = [0u8; 4096];
    loop {
        match decoder.next_frame() {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => {
                return Err((
                    EndReason::Internal,
                    format!("the relay sent an invalid frame ({e})"),
                ));
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => return Err(lost("the relay closed the call before admitting us".into())),
            Err(e) => return Err(lost(format!("the relay closed the call: {e}"))),
        }
    }
}

async fn join_and_run(
    config: CallConfig,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    state: Arc<Mutex<CallState>>,
    frames: Arc<VideoFrames>,
    waker: Option<Waker>,
) -> Ending {
    match join(config, commands, state, frames, waker).await {
        Ok(ending) => ending,
        Err((kind, reason)) => Ending::Failed(kind, reason),
    }
}

async fn join(
    config: CallConfig,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    state: Arc<Mutex<CallState>>,
    frames: Arc<VideoFrames>,
    waker: Option<Waker>,
) -> Result<Ending, Failure> {
    let internal = |why: String| (EndReason::Internal, why);
    let start_unix_ms = unix_ms();
    let link = InviteLink::parse(&config.link).map_err(|e| {
        (
            EndReason::InvalidLink,
            format!("This invite link is not valid: {e}. Ask for a new one."),
        )
    })?;
    if let Ok(mut s) = state.lock() {
        s.relay = link.authority();
        s.room = link.room.clone();
        s.security.room_secret = link.secret.is_some();
    }
    tracing::info!(link = %redact_link(&config.link), "joining");

    // Slow work (RSA key generation, Argon2id) off the async thread, while we connect.
    let bits = config.rsa_bits;
    let identity_task = tokio::task::spawn_blocking(move || Identity::generate(bits));
    let link_for_keys = link.clone();
    let keys_task = tokio::task::spawn_blocking(move || link_for_keys.room_keys());
    let fingerprint = link.relay_fingerprint.map(hex::encode);
    let (endpoint, conn) = connect(&link.host, link.port, fingerprint.as_deref())
        .await
        .map_err(|e| {
            let kind = match e {
                ConnectError::CertificateMismatch => EndReason::CertificateMismatch,
                ConnectError::Tls(_) | ConnectError::Socket(_) => EndReason::Internal,
                ConnectError::Resolve(_) | ConnectError::Unreachable { .. } => {
                    EndReason::Unreachable
                }
            };
            (kind, e.to_string())
        })?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| {
        (
            EndReason::ConnectionLost,
            format!("cannot open the control stream: {e}"),
        )
    })?;
    let room_keys = keys_task
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| {
            (
                EndReason::InvalidLink,
                format!("cannot derive the room keys: {e}"),
            )
        })?;
    let hello = ControlFrame::Hello {
        version: PROTOCOL_VERSION,
        room: Bytes::copy_from_slice(
            config
                .room_id_override
                .as_deref()
                .unwrap_or(room_keys.room_id()),
        ),
        // With a room secret, names travel only inside sealed announcements.
        name: (!room_keys.has_secret()).then(|| config.display_name.clone()),
    };
    send.write_all(&hello.to_bytes()).await.map_err(|e| {
        (
            EndReason::ConnectionLost,
            format!("cannot send to the relay: {e}"),
        )
    })?;
    let mut decoder = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
    let first = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut recv, &mut decoder))
        .await
        .map_err(|_| {
            (
                EndReason::Unreachable,
                "the relay did not admit us within 10 s; try again".to_string(),
            )
        })??;
    let (me, roster) = match first {
        ControlFrame::Welcome { peer, roster } => (peer, roster),
        ControlFrame::Error { code, message } | ControlFrame::GoAway { code, message } => {
            return Err(refusal(code, &message));
        }
        _ => {
            return Err(internal(
                "the relay answered with an unexpected frame".into(),
            ));
        }
    };
    let identity = identity_task
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("cannot create the session keys: {e}")))?;
    let mut session = Session::new(
        Arc::new(identity),
        room_keys,
        SessionConfig {
            display_name: config.display_name.clone(),
            ..SessionConfig::default()
        },
        Box::new(OsRandom::new()),
    );
    let roster_ids: Vec<PeerId> = roster.iter().map(|e| e.peer).collect();
    session.on_welcome(me, &roster_ids, unix_ms());
    if let Ok(mut s) = state.lock() {
        s.my_peer_id = Some(me);
        s.phase = CallPhase::InCall;
        s.security.my_fingerprint = session.my_fingerprint().to_hex();
    }
    tracing::info!(peer = %me, peers = roster.len(), "joined");

    // Codec threads.
    let board = Arc::new(MediaBoard::default());
    let (to_network, from_media) = tokio::sync::mpsc::channel(128);
    let (video_control, video_control_rx) = std::sync::mpsc::channel();
    let (decode, decode_rx) = std::sync::mpsc::sync_channel(32);
    let (audio, audio_rx) = std::sync::mpsc::sync_channel(512);
    let sender = VideoSender {
        settings: config.video,
        input: config.camera,
        camera_off: config.camera_off,
        control: video_control_rx,
        to_network: to_network.clone(),
        preview: config.want_rgba.then(|| (frames.clone(), waker.clone())),
    };
    let receiver = VideoReceiver {
        jobs: decode_rx,
        to_network: to_network.clone(),
        board: board.clone(),
        frames: frames.clone(),
        want_rgba: config.want_rgba,
        record_dir: config.record_dir.clone(),
        fps: config.video.fps,
        waker: waker.clone(),
    };
    let audio_engine = AudioEngine {
        name: config.display_name.clone(),
        input: config.mic,
        output: config.speaker,
        muted: config.mic_muted,
        jobs: audio_rx,
        to_network,
        board: board.clone(),
        record_dir: config.record_dir.clone(),
    };
    if let Some(dir) = &config.record_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let threads = [
        std::thread::Builder::new()
            .name("vcall-video-send".into())
            .spawn(move || sender.run()),
        std::thread::Builder::new()
            .name("vcall-video-recv".into())
            .spawn(move || receiver.run()),
        std::thread::Builder::new()
            .name("vcall-audio".into())
            .spawn(move || audio_engine.run()),
    ];
    let mut handles = Vec::new();
    for t in threads {
        handles.push(t.map_err(|e| internal(format!("cannot start a media thread: {e}")))?);
    }

    let call = Call {
        conn: conn.clone(),
        send,
        recv,
        decoder,
        session,
        me,
        roster: roster
            .into_iter()
            .map(|e| (e.peer, e.name))
            .collect::<BTreeMap<_, _>>(),
        state,
        board,
        waker,
        start_unix_ms,
        mic_muted: config.mic_muted,
        camera_off: config.camera_off,
        scratch: Vec::with_capacity(vcall_proto::MAX_DATAGRAM_SIZE),
    };
    let pipes = Pipes {
        from_media,
        video_control,
        decode,
        audio,
    };
    let ending = call.run(commands, pipes).await;
    conn.close(0u32.into(), b"bye");
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    // The pipes are dropped: every codec thread ends within one frame.
    let _ = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    })
    .await;
    Ok(ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_secret_only() {
        assert_eq!(
            redact_link("vcall://h:1/r?fp=ab#k=SECRET"),
            "vcall://h:1/r?fp=ab#<secret>"
        );
        assert_eq!(redact_link("vcall://h:1/r"), "vcall://h:1/r");
    }
}
