//! Starting a call: parse the link, generate the identity and derive room keys off the async
//! threads, connect and join, then start the codec threads and the network loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use std::ops::ControlFlow;
use tokio::sync::watch;
use vcall_crypto::{Identity, InviteLink, OsRandom, RoomKeys, Session, SessionConfig};
use vcall_proto::PROTOCOL_VERSION;

use vcall_proto::PeerId;
use vcall_proto::control::{ControlDecoder, ControlFrame, DEFAULT_MAX_CONTROL_FRAME, RosterEntry};

use crate::audio::AudioEngine;
use crate::config::CallConfig;
use crate::connect::{ConnectError, connect};
use crate::core::{CallCore, Clock, CoreConfig};
use crate::driver::{Driver, Pipes};
use crate::handle::{CallHandle, Command, ReleasedDevices, VideoFrames, Wake, Waker};
use crate::state::{CallPhase, CallState, EndReason};
use crate::video_recv::VideoReceiver;
use crate::video_send::VideoSender;
use crate::wall_clock_us;

/// How long the relay has to answer our Hello.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounded data queues to the codec threads (a full queue drops media).
const DECODE_QUEUE: usize = 32;
const AUDIO_QUEUE: usize = 512;
const MEDIA_QUEUE: usize = 128;

/// The link with its secret fragment and its relay access token (`t=`) replaced, safe for logs
/// and screens.
pub fn redact_link(link: &str) -> String {
    let (before, fragment) = match link.split_once('#') {
        Some((before, _)) => (before, "#<secret>"),
        None => (link, ""),
    };
    let Some((path, query)) = before.split_once('?') else {
        return format!("{before}{fragment}");
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some(("t", _)) => "t=<token>",
            _ => param,
        })
        .collect();
    format!("{path}?{}{fragment}", query.join("&"))
}

pub(crate) fn start(config: CallConfig, waker: Option<Waker>) -> CallHandle {
    let (commands, command_rx) = tokio::sync::mpsc::unbounded_channel();
    let (publish, state) = watch::channel(Arc::new(CallState {
        my_name: config.display_name.clone(),
        mic_muted: config.mic_muted,
        camera_off: config.camera_off,
        redacted_link: redact_link(&config.link),
        ..CallState::default()
    }));
    let frames = Arc::new(VideoFrames::default());
    let frames2 = frames.clone();
    let spawned = std::thread::Builder::new()
        .name("vcall-network".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let (end, devices) = match runtime {
                Ok(rt) => rt.block_on(join_and_run(
                    config,
                    command_rx,
                    &publish,
                    frames2,
                    waker.clone(),
                )),
                Err(e) => (
                    EndReason::Internal(format!("cannot start the network runtime: {e}")),
                    ReleasedDevices::default(),
                ),
            };
            finish(&publish, end, waker.as_ref());
            devices
        });
    match spawned {
        Ok(thread) => CallHandle::new(commands, state, frames, Some(thread)),
        Err(e) => {
            let (handle, detached) = CallHandle::detached(CallState::default());
            detached.edit(|s| {
                s.phase = CallPhase::Ended(EndReason::Internal(format!(
                    "cannot start the call thread: {e}"
                )))
            });
            handle
        }
    }
}

/// Publishes the end of the call (unless the core already did) and wakes the UI.
fn finish(publish: &watch::Sender<Arc<CallState>>, end: EndReason, waker: Option<&Waker>) {
    if end.is_error() {
        tracing::warn!(reason = %end, "call ended");
    }
    publish.send_modify(|s| {
        if !matches!(s.phase, CallPhase::Ended(_)) || end.is_error() {
            Arc::make_mut(s).phase = CallPhase::Ended(end);
        }
    });
    if let Some(w) = waker {
        w(Wake::State);
    }
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut ControlDecoder,
) -> Result<ControlFrame, EndReason> {
    let mut buf = [0u8; 4096];
    loop {
        match decoder.next_frame() {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(EndReason::Protocol(format!("invalid frame ({e})"))),
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => {
                return Err(EndReason::ConnectionLost(
                    "the relay closed the call before admitting us".into(),
                ));
            }
            Err(e) => return Err(EndReason::ConnectionLost(e.to_string())),
        }
    }
}

async fn join_and_run(
    config: CallConfig,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    publish: &watch::Sender<Arc<CallState>>,
    frames: Arc<VideoFrames>,
    waker: Option<Waker>,
) -> (EndReason, ReleasedDevices) {
    match join(config, commands, publish, frames, waker).await {
        Ok(done) => done,
        Err(end) => (end, ReleasedDevices::default()),
    }
}

fn edit(publish: &watch::Sender<Arc<CallState>>, change: impl FnOnce(&mut CallState)) {
    publish.send_modify(|s| change(Arc::make_mut(s)));
}

async fn join(
    config: CallConfig,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    publish: &watch::Sender<Arc<CallState>>,
    frames: Arc<VideoFrames>,
    waker: Option<Waker>,
) -> Result<(EndReason, ReleasedDevices), EndReason> {
    let internal = |why: String| EndReason::Internal(why);
    let mut link =
        InviteLink::parse(&config.link).map_err(|e| EndReason::InvalidLink(e.to_string()))?;
    edit(publish, |s| {
        s.relay = link.authority();
        s.room = link.room.clone();
        s.security.room_secret = link.secret.is_some();
    });
    tracing::info!(link = %redact_link(&config.link), "joining");

    // Slow work (RSA key generation, Argon2id) off the async thread, while we connect.
    let bits = config.rsa_bits;
    let identity_task = tokio::task::spawn_blocking(move || Identity::generate(bits));
    // The secret moves to the key derivation (not copied: `RoomSecret` is not `Clone`).
    let (room_name, secret) = (link.room.clone(), link.secret.take());
    let keys_task =
        tokio::task::spawn_blocking(move || RoomKeys::derive(&room_name, secret.as_ref()));
    let fingerprint = link.relay_fingerprint.map(hex::encode);
    let (endpoint, conn) = connect(&link.host, link.port, fingerprint.as_deref())
        .await
        .map_err(|e| EndReason::Connect(e.failure()))?;
    let room_keys = keys_task
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| EndReason::InvalidLink(format!("cannot derive the room keys: {e}")))?;
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
        token: link.access_token.take(),
    };
    let admitted = admit(&conn, &hello).await?;
    let identity = identity_task
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("cannot create the session keys: {e}")))?;
    let identity = Arc::new(identity);
    let Admitted {
        send,
        recv,
        decoder,
        me,
        roster,
    } = admitted;
    let session = Session::new(
        Arc::clone(&identity),
        room_keys,
        SessionConfig {
            display_name: config.display_name.clone(),
            ..SessionConfig::default()
        },
        Box::new(OsRandom::new()),
    );
    tracing::info!(peer = %me, peers = roster.len(), "joined");
    let now = Instant::now();
    let core = CallCore::new(
        session,
        CoreConfig {
            me,
            roster,
            mic_muted: config.mic_muted,
            camera_off: config.camera_off,
            max_video_kbps: config.video.bitrate_kbps,
            initial_state: (**publish.borrow()).clone(),
        },
        Clock::new(now, wall_clock_us()),
        now,
    );

    // Codec threads.
    let (media_tx, media) = tokio::sync::mpsc::channel(MEDIA_QUEUE);
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (video_control, video_control_rx) = std::sync::mpsc::channel();
    let (decoder_control, decoder_control_rx) = crossbeam_channel::unbounded();
    let (decode, decode_rx) = crossbeam_channel::bounded(DECODE_QUEUE);
    let (audio_control, audio_control_rx) = std::sync::mpsc::channel();
    let (audio, audio_rx) = std::sync::mpsc::sync_channel(AUDIO_QUEUE);
    let sender = VideoSender {
        settings: config.video,
        input: config.camera,
        camera_off: config.camera_off,
        control: video_control_rx,
        media: media_tx.clone(),
        events: events_tx.clone(),
        preview: config
            .want_pictures
            .then(|| (frames.clone(), waker.clone())),
    };
    let receiver = VideoReceiver {
        control: decoder_control_rx,
        frames_in: decode_rx,
        events: events_tx.clone(),
        frames: frames.clone(),
        want_pictures: config.want_pictures,
        record_dir: config.record_dir.clone(),
        fps: config.video.fps,
        waker: waker.clone(),
    };
    let audio_engine = AudioEngine {
        name: config.display_name.clone(),
        input: config.mic,
        output: config.speaker,
        muted: config.mic_muted,
        control: audio_control_rx,
        packets: audio_rx,
        media: media_tx,
        events: events_tx,
        record_dir: config.record_dir.clone(),
    };
    if let Some(dir) = &config.record_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let spawn_error = |e: std::io::Error| internal(format!("cannot start a media thread: {e}"));
    let video_send = std::thread::Builder::new()
        .name("vcall-video-send".into())
        .spawn(move || sender.run())
        .map_err(spawn_error)?;
    // Without a decoder thread the driver's hand-offs to it fail at once and are dropped.
    let video_recv = if config.decode_video {
        let thread = std::thread::Builder::new()
            .name("vcall-video-recv".into())
            .spawn(move || receiver.run())
            .map_err(spawn_error)?;
        Some(thread)
    } else {
        drop(receiver);
        None
    };
    let audio_thread = std::thread::Builder::new()
        .name("vcall-audio".into())
        .spawn(move || audio_engine.run())
        .map_err(spawn_error)?;

    let mut driver = Driver {
        conn: conn.clone(),
        send,
        recv,
        decoder,
        core,
        pipes: Pipes {
            media,
            events,
            video_control,
            decoder_control,
            decode,
            audio_control,
            audio,
        },
        publish: publish.clone(),
        waker,
    };
    let mut commands = commands;
    let mut endpoint = endpoint;
    let end = loop {
        let end = driver.run(&mut commands).await;
        if !end.is_reconnectable() {
            break end;
        }
        driver.conn.close(0u32.into(), b"reconnecting");
        tracing::warn!(reason = %end, "connection lost: reconnecting");
        match reconnect(&mut driver, &link, &hello, &mut commands, end).await {
            Ok(new_endpoint) => endpoint = new_endpoint,
            Err(end) => break end,
        }
    };
    driver.conn.close(0u32.into(), b"bye");
    // Dropping the driver closes every channel to the codec threads, which then end.
    drop(driver);
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    // The driver (and with it every channel) is gone: each codec thread ends within a frame.
    let devices = tokio::task::spawn_blocking(move || {
        let camera = video_send.join().ok().flatten();
        if let Some(thread) = video_recv {
            let _ = thread.join();
        }
        let (microphone, speaker) = audio_thread.join().unwrap_or((None, None));
        ReleasedDevices {
            camera,
            microphone,
            speaker,
        }
    })
    .await
    .unwrap_or_default();
    Ok((end, devices))
}

/// What the relay's `Welcome` gave us on one connection.
struct Admitted {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: ControlDecoder,
    me: PeerId,
    roster: Vec<RosterEntry>,
}

/// Opens the control stream, sends `hello` and waits for the relay's answer.
async fn admit(conn: &quinn::Connection, hello: &ControlFrame) -> Result<Admitted, EndReason> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| EndReason::ConnectionLost(format!("cannot open the control stream: {e}")))?;
    send.write_all(&hello.to_bytes())
        .await
        .map_err(|e| EndReason::ConnectionLost(format!("cannot send to the relay: {e}")))?;
    let mut decoder = ControlDecoder::new(DEFAULT_MAX_CONTROL_FRAME);
    let first = tokio::time::timeout(ADMIT_TIMEOUT, read_frame(&mut recv, &mut decoder))
        .await
        .map_err(|_| EndReason::AdmitTimeout {
            seconds: ADMIT_TIMEOUT.as_secs(),
        })??;
    let (me, roster) = match first {
        ControlFrame::Welcome { peer, roster } => (peer, roster),
        ControlFrame::Error { code, message } => {
            return Err(EndReason::RelayRefused { code, message });
        }
        ControlFrame::GoAway { code, message } => {
            return Err(EndReason::RelayShutDown { code, message });
        }
        _ => {
            return Err(EndReason::Protocol(
                "the relay answered Hello with an unexpected frame".into(),
            ));
        }
    };
    Ok(Admitted {
        send,
        recv,
        decoder,
        me,
        roster,
    })
}

/// First wait before reconnecting, doubled per failed attempt up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(200);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Reconnecting gives up after this long without success.
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(120);

/// The wait before reconnect attempt `attempt` (from 1).
fn reconnect_delay(attempt: u32) -> Duration {
    RECONNECT_FIRST_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(RECONNECT_MAX_DELAY)
}

/// Reconnects to the relay with backoff and joins again (the core starts a new E2EE session
/// with the same identity); returns the new endpoint. Fails when the user leaves, when the
/// relay refuses us or its certificate no longer matches, or after [`RECONNECT_GIVE_UP`].
async fn reconnect(
    driver: &mut Driver,
    link: &InviteLink,
    hello: &ControlFrame,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
    cause: EndReason,
) -> Result<quinn::Endpoint, EndReason> {
    let started = Instant::now();
    let mut last_error = cause.to_string();
    let fingerprint = link.relay_fingerprint.map(hex::encode);
    for attempt in 1.. {
        driver.core.set_reconnecting(attempt, &last_error);
        if let ControlFlow::Break(end) = driver
            .wait_offline(reconnect_delay(attempt), commands)
            .await
        {
            return Err(end);
        }
        if started.elapsed() >= RECONNECT_GIVE_UP {
            return Err(EndReason::ConnectionLost(format!(
                "could not reconnect within {} s: {last_error}",
                RECONNECT_GIVE_UP.as_secs()
            )));
        }
        let (endpoint, conn) = match connect(&link.host, link.port, fingerprint.as_deref()).await {
            Ok(connected) => connected,
            Err(e @ ConnectError::CertificateMismatch) => {
                return Err(EndReason::Connect(e.failure()));
            }
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        match admit(&conn, hello).await {
            Ok(admitted) => {
                tracing::info!(peer = %admitted.me, attempt, "rejoined");
                driver
                    .core
                    .rejoin(Instant::now(), admitted.me, admitted.roster);
                driver.replace_connection(conn, admitted.send, admitted.recv, admitted.decoder);
                return Ok(endpoint);
            }
            Err(end @ (EndReason::RelayRefused { .. } | EndReason::Protocol(_))) => {
                return Err(end);
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    unreachable!("the attempts never run out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_grow_from_200_ms_to_5_s() {
        let waits: Vec<u64> = (1..=7)
            .map(|a| reconnect_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(reconnect_delay(1000), RECONNECT_MAX_DELAY);
    }

    #[test]
    fn redaction_removes_the_secret_only() {
        assert_eq!(
            redact_link("vcall://h:1/r?fp=ab#k=SECRET"),
            "vcall://h:1/r?fp=ab#<secret>"
        );
        assert_eq!(redact_link("vcall://h:1/r"), "vcall://h:1/r");
    }

    #[test]
    fn redaction_removes_the_access_token() {
        assert_eq!(
            redact_link("vcall://h:1/r?fp=ab&t=v4.public.TOKEN#k=SECRET"),
            "vcall://h:1/r?fp=ab&t=<token>#<secret>"
        );
        assert_eq!(
            redact_link("vcall://h:1/r?t=TOKEN&x=1"),
            "vcall://h:1/r?t=<token>&x=1"
        );
        assert!(!redact_link("vcall://h:1/r?t=TOKEN").contains("TOKEN"));
    }
}
