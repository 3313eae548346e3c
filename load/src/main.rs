//! `vcall-load`: the relay load tool. Opens rooms × (publishers + subscribers) QUIC
//! connections to a relay (joins paced at `--join-rate`), publishes synthetic media datagrams
//! with valid headers and a probe at the given rate, and measures per receiver what arrived,
//! the loss and the latency, the join → Welcome time and the relay's CPU and memory
//! (`--relay-pid`), then prints a table and writes JSON (`--report`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use vcall_crypto::InviteLink;
use vcall_load::{
    PROBE_LEN, Probe, ProcessSample, PublisherTally, ReceiverTally, RelayUsage, RoomResult,
    RunTotals, Window, cores_used,
};
use vcall_proto::datagram::{DatagramHeader, DatagramKind};
use vcall_proto::{ControlDecoder, ControlFrame, PROTOCOL_VERSION};

/// Load a vcall relay with synthetic rooms and measure what it delivers.
#[derive(Debug, Parser)]
#[command(name = "vcall-load", version, about)]
struct Args {
    /// An invite link to the relay (only its host, port and fingerprint are used).
    #[arg(long)]
    link: String,
    /// Subscribers join through this relay instead (a second relay of the same cluster).
    #[arg(long)]
    subscriber_link: Option<String>,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// Publishers per room (each also receives the others).
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// Subscribers per room (receive only).
    #[arg(long, default_value_t = 1)]
    subscribers: u32,
    /// Video per publisher, kbit/s (1000-byte datagrams; 0: none).
    #[arg(long, default_value_t = 500)]
    video_kbps: u32,
    /// Each publisher also sends 50 audio datagrams/s of 120 bytes.
    #[arg(long)]
    audio: bool,
    /// Seconds measured (after everyone joined and the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds between the last join and the measured window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Joins per second while ramping up.
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// The relay's process id, to report its CPU and memory (a relay on this machine).
    #[arg(long)]
    relay_pid: Option<u32>,
    /// QUIC endpoints (UDP sockets) the connections are spread over.
    #[arg(long, default_value_t = 8)]
    endpoints: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

const VIDEO_DATAGRAM: usize = 1000;
const AUDIO_DATAGRAM: usize = 120;
const AUDIO_PER_SEC: f64 = 50.0;
/// Publishers send in ticks of this length.
const TICK: Duration = Duration::from_millis(10);

/// Where one member connects.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    server_name: String,
    config: quinn::ClientConfig,
}

/// One member's part in the run.
#[derive(Clone, Copy)]
struct Role {
    room: u32,
    /// `Some(index)` for a publisher.
    publisher: Option<u32>,
}

struct MemberResult {
    role: Role,
    join_us: Option<u64>,
    sent: PublisherTally,
    tally: Option<ReceiverTally>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn target(link: &str) -> anyhow::Result<Target> {
    let invite = InviteLink::parse(link).map_err(|e| anyhow!("bad link: {e}"))?;
    let addr = tokio::net::lookup_host((invite.host.as_str(), invite.port))
        .await
        .with_context(|| format!("cannot resolve {}", invite.host))?
        .next()
        .ok_or_else(|| anyhow!("no address for {}", invite.host))?;
    let tls = match invite.relay_fingerprint {
        Some(fp) => vcall_tls::pinning::pinned_client_tls(&hex(&fp), vcall_proto::ALPN),
        None => bail!("the link has no fp=: vcall-load pins the relay's certificate"),
    };
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(Duration::from_secs(30))?));
    transport.datagram_receive_buffer_size(Some(1 << 20));
    config.transport_config(Arc::new(transport));
    Ok(Target {
        addr,
        server_name: invite.host.clone(),
        config,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Connects, joins, then publishes and receives until `stop`.
async fn member(
    endpoint: quinn::Endpoint,
    target: Target,
    role: Role,
    room_id: Bytes,
    args: Arc<Args>,
    window: watch::Receiver<Option<Window>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<MemberResult> {
    let started = Instant::now();
    let connection = endpoint
        .connect_with(target.config.clone(), target.addr, &target.server_name)?
        .await
        .context("QUIC handshake")?;
    let (mut send, mut recv) = connection.open_bi().await?;
    let hello = ControlFrame::Hello {
        version: PROTOCOL_VERSION,
        room: room_id,
        name: None,
        token: None,
    };
    send.write_all(&hello.to_bytes()).await?;
    let mut decoder = ControlDecoder::new(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = recv
            .read(&mut buf)
            .await?
            .ok_or_else(|| anyhow!("control stream closed before Welcome"))?;
        decoder.push(&buf[..n]);
        match decoder.next_frame()? {
            Some(ControlFrame::Welcome { .. }) => break,
            Some(ControlFrame::Error { code, message }) => bail!("refused: {code}: {message}"),
            _ => continue,
        }
    }
    let join_us = started.elapsed().as_micros() as u64;

    // Keep reading (and discarding) control frames so the relay never sees a slow consumer.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
    });
    let sender = role.publisher.map(|index| {
        let connection = connection.clone();
        let window = window.clone();
        let stop = stop.clone();
        let args = Arc::clone(&args);
        tokio::spawn(publish(connection, index, args, window, stop))
    });
    let mut tally: Option<ReceiverTally> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            datagram = connection.read_datagram() => {
                let Ok(datagram) = datagram else { break };
                let Ok((_, offset)) = DatagramHeader::decode(&datagram) else { continue };
                let Some(probe) = Probe::read(&datagram[offset..]) else { continue };
                if tally.is_none() && let Some(w) = *window.borrow() {
                    tally = Some(ReceiverTally::new(w));
                }
                if let Some(t) = tally.as_mut() {
                    t.record(probe, now_us());
                }
            }
        }
    }
    let sent = match sender {
        Some(task) => task.await.unwrap_or_default(),
        None => PublisherTally::default(),
    };
    let _ = send.finish();
    connection.close(0u32.into(), b"load done");
    drain.abort();
    let tally = tally.or_else(|| (*window.borrow()).map(ReceiverTally::new));
    Ok(MemberResult {
        role,
        join_us: Some(join_us),
        sent,
        tally,
    })
}

/// Sends video (and audio) datagrams at the configured rates until `stop`; counts those sent
/// inside the window.
async fn publish(
    connection: quinn::Connection,
    index: u32,
    args: Arc<Args>,
    window: watch::Receiver<Option<Window>>,
    stop: watch::Receiver<bool>,
) -> PublisherTally {
    let video_per_sec = f64::from(args.video_kbps) * 1000.0 / 8.0 / VIDEO_DATAGRAM as f64;
    let audio_per_sec = if args.audio { AUDIO_PER_SEC } else { 0.0 };
    let mut tally = PublisherTally::default();
    let mut sequence = 0u64;
    let (mut video_due, mut audio_due) = (0.0f64, 0.0f64);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut video = vec![0u8; VIDEO_DATAGRAM];
    let mut audio = vec![0u8; AUDIO_DATAGRAM];
    let video_header = DatagramHeader::new(DatagramKind::Video, None).with_layer(0);
    let audio_header = DatagramHeader::new(DatagramKind::Audio, None);
    let video_offset = video_header.write(&mut video);
    let audio_offset = audio_header.write(&mut audio);
    while !*stop.borrow() {
        ticker.tick().await;
        video_due += video_per_sec * TICK.as_secs_f64();
        audio_due += audio_per_sec * TICK.as_secs_f64();
        let current = *window.borrow();
        for (due, buf, offset) in [
            (&mut video_due, &mut video, video_offset),
            (&mut audio_due, &mut audio, audio_offset),
        ] {
            while *due >= 1.0 {
                *due -= 1.0;
                let sent_us = now_us();
                Probe {
                    publisher: index,
                    sequence,
                    sent_us,
                }
                .write(&mut buf[offset..offset + PROBE_LEN]);
                sequence += 1;
                if connection
                    .send_datagram(Bytes::copy_from_slice(buf))
                    .is_ok()
                    && current.is_some_and(|w| w.contains(sent_us))
                {
                    tally.sent += 1;
                }
            }
        }
    }
    tally
}

async fn run(args: Args) -> anyhow::Result<vcall_load::Report> {
    let args = Arc::new(args);
    let publisher_target = target(&args.link).await?;
    let subscriber_target = match &args.subscriber_link {
        Some(link) => target(link).await?,
        None => publisher_target.clone(),
    };
    let endpoints: Vec<quinn::Endpoint> = (0..args.endpoints.max(1))
        .map(|_| quinn::Endpoint::client("0.0.0.0:0".parse().expect("valid")))
        .collect::<Result<_, _>>()
        .context("cannot open a UDP socket")?;
    let run_tag = now_us();
    let (window_tx, window_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut roles = Vec::new();
    for room in 0..args.rooms {
        for p in 0..args.publishers {
            roles.push(Role {
                room,
                publisher: Some(room * args.publishers + p),
            });
        }
        for _ in 0..args.subscribers {
            roles.push(Role {
                room,
                publisher: None,
            });
        }
    }
    let connections = roles.len() as u32;
    println!(
        "vcall-load: {} connections into {} rooms at {} joins/s",
        connections, args.rooms, args.join_rate
    );
    // Memory before any connection, so that the growth per connection is the connections'.
    let baseline = args.relay_pid.map(ProcessSample::read).transpose()?;
    let pace = Duration::from_secs_f64(1.0 / args.join_rate.max(0.1));
    let mut tasks = Vec::with_capacity(roles.len());
    let ramp_start = Instant::now();
    for (i, role) in roles.iter().enumerate() {
        let at = ramp_start + pace.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let target = if role.publisher.is_some() {
            publisher_target.clone()
        } else {
            subscriber_target.clone()
        };
        let room_id = Bytes::from(format!("vcall-load-{run_tag}-{}", role.room));
        tasks.push(tokio::spawn(member(
            endpoints[i % endpoints.len()].clone(),
            target,
            *role,
            room_id,
            Arc::clone(&args),
            window_rx.clone(),
            stop_rx.clone(),
        )));
    }
    // Everyone had the time to join (handshake + Welcome) before the window.
    tokio::time::sleep(Duration::from_secs(1) + Duration::from_secs(args.warmup)).await;
    let start_us = now_us();
    let window = Window {
        start_us,
        end_us: start_us + args.duration * 1_000_000,
    };
    let before = args.relay_pid.map(ProcessSample::read).transpose()?;
    let window_started = Instant::now();
    let _ = window_tx.send(Some(window));
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let after = args.relay_pid.map(ProcessSample::read).transpose()?;
    let elapsed = window_started.elapsed();
    // Datagrams in flight at the window's end still count: let them arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);

    let mut failures = 0u32;
    let mut join_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut rooms: Vec<RoomResult> = (0..args.rooms)
        .map(|_| RoomResult {
            publishers: Vec::new(),
            receivers: Vec::new(),
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(Ok(result)) => {
                if let Some(us) = result.join_us {
                    let _ = join_us.record(us.max(1));
                }
                let room = &mut rooms[result.role.room as usize];
                if let Some(index) = result.role.publisher {
                    room.publishers.push((index, result.sent));
                }
                if let Some(tally) = result.tally {
                    room.receivers.push((result.role.publisher, tally));
                }
            }
            Ok(Err(error)) => {
                failures += 1;
                if failures <= 5 {
                    eprintln!("vcall-load: a member failed: {error:#}");
                }
            }
            Err(_) => failures += 1,
        }
    }
    let relay = match (baseline, before, after) {
        (Some(base), Some(b), Some(a)) => Some(RelayUsage {
            cores: cores_used(b, a, elapsed, 100),
            rss_mib_before: base.rss_bytes as f64 / (1 << 20) as f64,
            rss_mib_after: a.rss_bytes as f64 / (1 << 20) as f64,
            rss_kib_per_connection: a.rss_bytes.saturating_sub(base.rss_bytes) as f64
                / 1024.0
                / f64::from(connections.max(1)),
        }),
        _ => None,
    };
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"load done");
    }
    Ok(RunTotals {
        rooms: args.rooms,
        publishers_per_room: args.publishers,
        subscribers_per_room: args.subscribers,
        video_kbps: args.video_kbps,
        audio: args.audio,
        window,
        connections,
        connection_failures: failures,
        join_us: &join_us,
        room_results: &rooms,
        relay,
    }
    .report())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report_path = args.report.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vcall-load: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(path) = report_path {
                let json = serde_json::to_string_pretty(&report).expect("a report serialises");
                if let Err(e) = std::fs::write(&path, json) {
                    eprintln!("vcall-load: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vcall-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
