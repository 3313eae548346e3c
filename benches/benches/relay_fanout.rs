//! Relay fan-out benchmark: one sender → 1, 3 and 10 receivers over loopback in one process,
//! datagrams of the protocol's maximum size, the vcall relay beside a bare quinn forwarder of
//! the same topology (receive a datagram, send it to the other connections: no rooms, limits or
//! stamping). Reports forwarded datagrams/s (datagrams that reached a receiver) and the ratio,
//! for the relay in open mode and in token mode (`--access token`: every member joined with an
//! access token, counted per tenant), whose ratio must be the same: tokens are checked at join.
//! Because loopback throughput drifts by ±15% from one criterion benchmark to the next on a
//! shared machine, the token/open ratio is also measured directly: open and token relays in
//! alternating rounds (ABBA order), printing each round's ratio and the median.
//!
//! Run: `cargo bench -p vcall-benches --bench relay_fanout` (add `-- --quick` for a short run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quinn::{Connection, Endpoint, TransportConfig, VarInt};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use vcall_proto::{
    ALPN, ControlDecoder, ControlFrame, DatagramHeader, DatagramKind, MAX_DATAGRAM_SIZE,
    PROTOCOL_VERSION,
};
use vcall_relay::access::{TokenClaims, TokenIssuer};
use vcall_relay::{
    AccessConfig, CertificateSource, Limits, Relay, RelayConfig, RelayHandle, RelayIdentity,
};

const RECEIVER_COUNTS: [usize; 3] = [1, 3, 10];

/// Per (receivers, forwarder): datagrams forwarded and the time it took, over all iterations.
type Totals = BTreeMap<(usize, &'static str), (u64, Duration)>;

/// Counts datagrams received by every receiver and wakes the bench thread at a target.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    reached: Condvar,
}

impl Progress {
    fn record(&self) {
        let now = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        let target = self.target.load(Ordering::Relaxed);
        if now >= target
            && self
                .target
                .compare_exchange(target, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let _guard = self.lock.lock().unwrap();
            self.reached.notify_all();
        }
    }

    /// Blocks until `more` further datagrams were received; returns how long that took.
    fn wait_for(&self, more: u64) -> Duration {
        let start = Instant::now();
        let goal = self.received.load(Ordering::Relaxed) + more;
        let mut guard = self.lock.lock().unwrap();
        self.target.store(goal, Ordering::Release);
        let (mut last, mut last_change) = (self.received.load(Ordering::Relaxed), Instant::now());
        while last < goal {
            let (next, _) = self
                .reached
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap();
            guard = next;
            let now = self.received.load(Ordering::Relaxed);
            if now != last {
                (last, last_change) = (now, Instant::now());
            }
            assert!(
                last_change.elapsed() < Duration::from_secs(10),
                "datagrams stopped flowing"
            );
        }
        start.elapsed()
    }
}

/// One running topology: a forwarder, a blasting sender and counting receivers.
struct Topology {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    relay: Option<RelayHandle>,
    bare: Option<Endpoint>,
    clients: Vec<(Connection, Option<(quinn::SendStream, quinn::RecvStream)>)>,
}

impl Topology {
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for (connection, _) in &self.clients {
            connection.close(VarInt::from_u32(0), b"done");
        }
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await;
        }
        if let Some(bare) = self.bare.take() {
            bare.close(VarInt::from_u32(0), b"done");
        }
    }
}

fn transport(send_buffer: usize) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .datagram_send_buffer_size(send_buffer)
        .datagram_receive_buffer_size(Some(4 * 1024 * 1024))
        .keep_alive_interval(Some(Duration::from_secs(2)));
    transport
}

async fn connect(addr: SocketAddr, fingerprint: &str) -> Connection {
    let tls = vcall_tls::pinning::pinned_client_tls(fingerprint, ALPN);
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    config.transport_config(Arc::new(transport(Limits::default().datagram_send_buffer)));
    let endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint
        .connect_with(config, addr, "vcall-relay")
        .unwrap()
        .await
        .unwrap()
}

/// A maximum-size video datagram as a client sends it.
fn max_size_datagram() -> Bytes {
    let mut datagram = Vec::with_capacity(MAX_DATAGRAM_SIZE);
    DatagramHeader::new(DatagramKind::Video, None).append(&mut datagram);
    datagram.resize(MAX_DATAGRAM_SIZE, 0xA5);
    Bytes::from(datagram)
}

/// Sends as fast as the sender's congestion controller allows until stopped.
fn spawn_sender(connection: Connection, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let datagram = max_size_datagram();
        while !stop.load(Ordering::Relaxed) {
            if connection
                .send_datagram_wait(datagram.clone())
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

fn spawn_receiver(connection: Connection, progress: Arc<Progress>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while connection.read_datagram().await.is_ok() {
            progress.record();
        }
    })
}

/// Joins `room` over a control stream and waits for the Welcome.
async fn join(
    connection: &Connection,
    token: Option<&str>,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = ControlFrame::Hello {
        version: PROTOCOL_VERSION,
        room: Bytes::from_static(b"bench"),
        name: None,
        token: token.map(str::to_owned),
    };
    send.write_all(&hello.to_bytes()).await.unwrap();
    let mut decoder = ControlDecoder::new(1 << 16);
    loop {
        if let Some(frame) = decoder.next_frame().unwrap() {
            assert!(matches!(frame, ControlFrame::Welcome { .. }), "{frame:?}");
            return (send, recv);
        }
        let chunk = recv
            .read_chunk(1 << 16, true)
            .await
            .unwrap()
            .expect("Welcome");
        decoder.push(&chunk.bytes);
    }
}

/// The vcall relay with limits that do not throttle a benchmark (rates unlimited); with
/// `token_mode`, in token mode with every client holding a token of one tenant.
async fn relay_topology(receivers: usize, token_mode: bool) -> Topology {
    let limits = Limits {
        datagrams_per_sec: 0,
        datagram_bytes_per_sec: 0,
        ..Limits::default()
    };
    let issuer = TokenIssuer::generate().unwrap();
    let token = token_mode.then(|| {
        issuer
            .issue(&TokenClaims {
                max_rooms: Some(1),
                max_members_per_room: Some(64),
                ..TokenClaims::new("bench", Duration::from_secs(3600)).unwrap()
            })
            .unwrap()
    });
    let access = if token_mode {
        AccessConfig::Token {
            verifier: issuer.verifier(),
            revocation_file: None,
        }
    } else {
        AccessConfig::Open
    };
    let relay = Relay::bind(RelayConfig {
        limits,
        access,
        ..RelayConfig::loopback()
    })
    .await
    .unwrap();
    let token = token.as_deref();
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..receivers {
        let connection = connect(relay.local_addr(), relay.fingerprint()).await;
        let streams = join(&connection, token).await;
        tasks.push(spawn_receiver(connection.clone(), Arc::clone(&progress)));
        clients.push((connection, Some(streams)));
    }
    let sender = connect(relay.local_addr(), relay.fingerprint()).await;
    let streams = join(&sender, token).await;
    tasks.push(spawn_sender(sender.clone(), Arc::clone(&stop)));
    clients.push((sender, Some(streams)));
    Topology {
        progress,
        stop,
        tasks,
        relay: Some(relay),
        bare: None,
        clients,
    }
}

/// A bare quinn forwarder: same TLS and transport settings, every received datagram is sent
/// to every other connection as is.
async fn bare_topology(receivers: usize) -> Topology {
    let identity = RelayIdentity::load(&CertificateSource::Ephemeral).unwrap();
    let fingerprint = identity.fingerprint.clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
    ));
    server.transport_config(Arc::new(transport(Limits::default().datagram_send_buffer)));
    let endpoint = Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();

    let total = receivers + 1;
    let acceptor = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            let mut accepted = Vec::with_capacity(total);
            while accepted.len() < total {
                accepted.push(endpoint.accept().await.unwrap().await.unwrap());
            }
            accepted
        }
    });
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..receivers {
        let connection = connect(addr, &fingerprint).await;
        tasks.push(spawn_receiver(connection.clone(), Arc::clone(&progress)));
        clients.push((connection, None));
    }
    let sender = connect(addr, &fingerprint).await;
    let server_side: Arc<[Connection]> = acceptor.await.unwrap().into();
    for index in 0..server_side.len() {
        let all = Arc::clone(&server_side);
        tasks.push(tokio::spawn(async move {
            let me = &all[index];
            while let Ok(datagram) = me.read_datagram().await {
                for (other_index, other) in all.iter().enumerate() {
                    if other_index != index {
                        let _ = other.send_datagram(datagram.clone());
                    }
                }
            }
        }));
    }
    tasks.push(spawn_sender(sender.clone(), Arc::clone(&stop)));
    clients.push((sender, None));
    Topology {
        progress,
        stop,
        tasks,
        relay: None,
        bare: Some(endpoint),
        clients,
    }
}

fn relay_fanout(c: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    // (forwarder, receivers) → (datagrams received, time) over every measured sample.
    let totals: Arc<Mutex<Totals>> = Arc::default();
    let mut group = c.benchmark_group("relay_fanout");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for receivers in RECEIVER_COUNTS {
        // Throughput per iteration = one datagram reaching each receiver on average.
        group.throughput(Throughput::Elements(receivers as u64));
        for forwarder in ["bare_quinn", "vcall_relay", "vcall_relay_token"] {
            let topology = runtime.block_on(async {
                match forwarder {
                    "vcall_relay" => relay_topology(receivers, false).await,
                    "vcall_relay_token" => relay_topology(receivers, true).await,
                    _ => bare_topology(receivers).await,
                }
            });
            // Let the connections ramp up (congestion windows, path MTU) before measuring.
            topology.progress.wait_for(2000);
            let totals = Arc::clone(&totals);
            group.bench_function(BenchmarkId::new(forwarder, receivers), |b| {
                b.iter_custom(|iters| {
                    let datagrams = iters * receivers as u64;
                    let elapsed = topology.progress.wait_for(datagrams);
                    let mut totals = totals.lock().unwrap();
                    let entry = totals.entry((receivers, forwarder)).or_default();
                    entry.0 += datagrams;
                    entry.1 += elapsed;
                    elapsed
                })
            });
            if let Some(relay) = &topology.relay {
                let m = relay.metrics();
                println!(
                    "relay counters: received {} forwarded {} dropped congested {}",
                    m.datagrams_received(),
                    m.datagrams_forwarded(),
                    m.datagrams_dropped(vcall_relay::DropReason::Congested)
                );
            }
            runtime.block_on(topology.stop());
        }
    }
    group.finish();

    let totals = totals.lock().unwrap();
    let rate = |key| {
        totals
            .get(&key)
            .map(|(n, t): &(u64, Duration)| *n as f64 / t.as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    println!(
        "\nrelay fan-out, {MAX_DATAGRAM_SIZE}-byte datagrams, forwarded datagrams/s (received by all receivers):"
    );
    println!(
        "{:>9} {:>14} {:>14} {:>7} {:>14} {:>7}",
        "receivers", "bare quinn", "vcall open", "ratio", "vcall token", "ratio"
    );
    for receivers in RECEIVER_COUNTS {
        let bare = rate((receivers, "bare_quinn"));
        let relay = rate((receivers, "vcall_relay"));
        let token = rate((receivers, "vcall_relay_token"));
        println!(
            "{receivers:>9} {bare:>14.0} {relay:>14.0} {:>6.2}x {token:>14.0} {:>6.2}x",
            relay / bare,
            token / bare
        );
    }
}

/// Rounds of the interleaved token-vs-open comparison, and datagrams received per measurement.
const AB_ROUNDS: usize = 8;
const AB_DATAGRAMS: u64 = 250_000;

/// Token mode against open mode, measured back to back in alternating order so that drift
/// hits both alike: prints every round's token/open rate ratio and their median.
fn token_vs_open_interleaved(_: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    println!(
        "\nrelay fan-out, --access token / open, interleaved rounds (ABBA), {AB_DATAGRAMS} datagrams each:"
    );
    for receivers in [1, 10] {
        let mut ratios = Vec::with_capacity(AB_ROUNDS);
        for round in 0..AB_ROUNDS {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut rate = [0.0f64; 2];
            for token_mode in order {
                let elapsed = runtime.block_on(async {
                    let topology = relay_topology(receivers, token_mode).await;
                    topology.progress.wait_for(2000);
                    let elapsed = topology.progress.wait_for(AB_DATAGRAMS);
                    topology.stop().await;
                    elapsed
                });
                rate[usize::from(token_mode)] = AB_DATAGRAMS as f64 / elapsed.as_secs_f64();
            }
            ratios.push(rate[1] / rate[0]);
        }
        let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let median = (ratios[AB_ROUNDS / 2 - 1] + ratios[AB_ROUNDS / 2]) / 2.0;
        println!(
            "  1->{receivers:<2} token/open per round: {}  median {median:.2}x",
            rounds.join(" ")
        );
    }
}

criterion_group!(benches, relay_fanout, token_vs_open_interleaved);
criterion_main!(benches);
