//! The proxy on loopback between a test client and an echo server: forwarding both ways,
//! total loss, seeded loss equal to the shared link model's decisions, blackouts, the rate
//! cap's tail drop, one upstream socket per client, and rebinding it on schedule. Timing is only ever bounded loosely.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vcall_netem::{Direction, Proxy, ProxyConfig, Report, StatsHandle, link_seed};
use vcall_netsim::{LinkConfig, LinkModel};

/// What the echo server saw: (source address, payload, when), in order.
type Seen = Arc<Mutex<Vec<(SocketAddr, Vec<u8>, Instant)>>>;

/// A UDP echo server on loopback.
async fn echo_server() -> (SocketAddr, Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            log.lock()
                .unwrap()
                .push((from, buf[..n].to_vec(), Instant::now()));
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, seen)
}

struct Running {
    addr: SocketAddr,
    origin: Instant,
    stats: StatsHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Report>,
}

impl Running {
    async fn finish(self) -> Report {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

async fn start_proxy(upstream: SocketAddr, up: LinkConfig, down: LinkConfig, seed: u64) -> Running {
    start_proxy_with(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        up,
        down,
        seed,
        rebind_at: Vec::new(),
    })
    .await
}

async fn start_proxy_with(config: ProxyConfig) -> Running {
    let proxy = Proxy::bind(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, origin, stats) = (proxy.local_addr(), proxy.origin(), proxy.stats());
    let task = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        origin,
        stats,
        stop,
        task,
    }
}

/// Polls `done` every 10 ms for up to 10 s.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything `socket` receives until it has been quiet for `quiet`.
async fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, socket.recv(&mut buf)).await {
        out.push(buf[..n].to_vec());
    }
    out
}

async fn client(proxy: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(proxy).await.unwrap();
    socket
}

fn seq(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[..4].try_into().unwrap())
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        ..LinkConfig::perfect()
    }
}

#[tokio::test]
async fn forwards_both_ways_between_a_client_and_an_echo_server() {
    let (echo, seen) = echo_server().await;
    let delay = LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::perfect()
    };
    let proxy = start_proxy(echo, delay.clone(), delay, 1).await;
    let socket = client(proxy.addr).await;
    let mut buf = [0u8; 100];
    for i in 0..20u32 {
        let sent = Instant::now();
        let payload = format!("ping {i}");
        socket.send(payload.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("an echo")
            .unwrap();
        assert_eq!(&buf[..n], payload.as_bytes());
        // 10 ms each way, never less (the upper bound is the machine's business).
        assert!(
            sent.elapsed() >= Duration::from_millis(20),
            "{:?}",
            sent.elapsed()
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 20);
    let report = proxy.finish().await;
    assert_eq!(report.clients, 1);
    for d in [report.up, report.down] {
        assert_eq!(
            (d.packets_in, d.packets_out, d.dropped(), d.pending),
            (20, 20, 0, 0),
            "{d:?}"
        );
        assert_eq!(d.bytes_in, d.bytes_out);
    }
}

#[tokio::test]
async fn total_loss_passes_nothing_and_counts_every_packet() {
    let (echo, seen) = echo_server().await;
    let proxy = start_proxy(echo, lossy(1.0), lossy(1.0), 5).await;
    let socket = client(proxy.addr).await;
    for i in 0..50u32 {
        socket.send(&i.to_be_bytes()).await.unwrap();
    }
    let stats = proxy.stats.clone();
    wait_for("50 packets in", || stats.report().up.packets_in == 50).await;
    assert!(drain(&socket, Duration::from_millis(300)).await.is_empty());
    assert!(seen.lock().unwrap().is_empty());
    let report = proxy.finish().await;
    assert_eq!(report.up.dropped_loss, 50, "{report:?}");
    assert_eq!(report.up.packets_out, 0);
    assert_eq!(report.up.dropped(), 50);
    assert_eq!(report.down.packets_in, 0);
}

#[tokio::test]
async fn seeded_loss_drops_exactly_what_the_shared_model_decides() {
    const N: u32 = 300;
    const SEED: u64 = 1234;
    let (echo, seen) = echo_server().await;
    let proxy = start_proxy(echo, lossy(0.3), lossy(0.3), SEED).await;
    let socket = client(proxy.addr).await;
    for i in 0..N {
        socket.send(&i.to_be_bytes()).await.unwrap();
        // Paced so no socket buffer on loopback ever overflows.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // The same decisions from the model: client 0's links, packets in order (random loss
    // depends on neither time nor size).
    let t0 = Instant::now();
    let mut up = LinkModel::new(lossy(0.3), link_seed(SEED, 0, Direction::Up));
    let passed_up: Vec<u32> = (0..N)
        .filter(|_| up.decide(t0, 4).dropped().is_none())
        .collect();
    let mut down = LinkModel::new(lossy(0.3), link_seed(SEED, 0, Direction::Down));
    let passed_down: Vec<u32> = passed_up
        .iter()
        .copied()
        .filter(|_| down.decide(t0, 4).dropped().is_none())
        .collect();

    let stats = proxy.stats.clone();
    let expected_down_in = passed_up.len() as u64;
    wait_for("every packet decided", || {
        let r = stats.report();
        r.up.packets_in == u64::from(N) && r.down.packets_in == expected_down_in
    })
    .await;
    let received: Vec<u32> = drain(&socket, Duration::from_millis(300))
        .await
        .iter()
        .map(|p| seq(p))
        .collect();
    let echoed: Vec<u32> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p, _)| seq(p))
        .collect();
    assert_eq!(echoed, passed_up, "what reached upstream");
    assert_eq!(received, passed_down, "what came back");

    let report = proxy.finish().await;
    assert_eq!(report.up.dropped_loss, up.stats().lost_random);
    assert_eq!(report.down.dropped_loss, down.stats().lost_random);
    assert_eq!(report.up.packets_out, passed_up.len() as u64);
    assert_eq!(report.down.packets_out, passed_down.len() as u64);
    // And 30 % is roughly what happened.
    let rate = report.up.dropped_loss as f64 / f64::from(N);
    assert!((0.2..0.4).contains(&rate), "{rate}");
}

#[tokio::test]
async fn a_blackout_drops_exactly_the_packets_sent_inside_it() {
    let (echo, seen) = echo_server().await;
    let ms = Duration::from_millis;
    let up = LinkConfig {
        blackouts: vec![(ms(600), ms(1200))],
        ..LinkConfig::perfect()
    };
    let proxy = start_proxy(echo, up, LinkConfig::perfect(), 1).await;
    let socket = client(proxy.addr).await;
    // One packet every 10 ms until 1.8 s after the proxy started, noting when each left.
    let mut sent_at = Vec::new();
    let mut i = 0u32;
    while proxy.origin.elapsed() < ms(1800) {
        sent_at.push(proxy.origin.elapsed());
        socket.send(&i.to_be_bytes()).await.unwrap();
        i += 1;
        tokio::time::sleep(ms(10)).await;
    }
    let stats = proxy.stats.clone();
    wait_for("every packet in", || {
        stats.report().up.packets_in == u64::from(i)
    })
    .await;
    tokio::time::sleep(ms(100)).await;
    let through: BTreeSet<u32> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p, _)| seq(p))
        .collect();
    // 100 ms margins either side for the time between sending and the proxy's decision.
    for (n, at) in sent_at.iter().enumerate() {
        let n = n as u32;
        if *at < ms(500) || *at >= ms(1300) {
            assert!(
                through.contains(&n),
                "packet {n} sent at {at:?} was dropped"
            );
        } else if *at >= ms(700) && *at < ms(1100) {
            assert!(
                !through.contains(&n),
                "packet {n} sent at {at:?} got through"
            );
        }
    }
    let report = proxy.finish().await;
    assert_eq!(
        report.up.dropped_blackout,
        u64::from(i) - through.len() as u64
    );
    assert_eq!(report.up.dropped(), report.up.dropped_blackout);
    // About 60 packets fall in 600 ms at one per 10 ms (or a bit more).
    assert!(
        (35..=65).contains(&report.up.dropped_blackout),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_rate_cap_with_a_tiny_queue_tail_drops() {
    let (echo, seen) = echo_server().await;
    // 80 kbit/s: a 1000-byte packet takes 100 ms on the wire; the queue holds 2.5 of them.
    let up = LinkConfig {
        rate_bps: Some(80_000),
        queue_bytes: 2_500,
        ..LinkConfig::perfect()
    };
    let proxy = start_proxy(echo, up, LinkConfig::perfect(), 1).await;
    let socket = client(proxy.addr).await;
    for i in 0..40u32 {
        let mut packet = vec![0u8; 1000];
        packet[..4].copy_from_slice(&i.to_be_bytes());
        socket.send(&packet).await.unwrap();
    }
    let stats = proxy.stats.clone();
    wait_for("the queue to drain", || {
        let r = stats.report().up;
        r.packets_in == 40 && r.pending == 0
    })
    .await;
    let report = proxy.finish().await;
    let through = seen.lock().unwrap().clone();
    let up = report.up;
    assert_eq!(up.packets_out, through.len() as u64);
    assert_eq!(up.dropped_queue + up.packets_out, 40, "{up:?}");
    assert!(
        up.dropped_queue >= 30,
        "a burst of 40 into a 2.5-packet queue: {up:?}"
    );
    assert!(up.packets_out >= 2, "{up:?}");
    // Paced: 100 ms per packet on the wire (bounded loosely).
    let span = through.last().unwrap().2 - through[0].2;
    assert!(
        span >= Duration::from_millis(50) * (through.len() as u32 - 1),
        "{span:?}"
    );
}

#[tokio::test]
async fn distinct_client_ports_get_distinct_upstream_sockets() {
    let (echo, seen) = echo_server().await;
    let proxy = start_proxy(echo, LinkConfig::perfect(), LinkConfig::perfect(), 1).await;
    let a = client(proxy.addr).await;
    let b = client(proxy.addr).await;
    for i in 0..5 {
        a.send(format!("a{i}").as_bytes()).await.unwrap();
        b.send(format!("b{i}").as_bytes()).await.unwrap();
    }
    let from_a = drain(&a, Duration::from_millis(300)).await;
    let from_b = drain(&b, Duration::from_millis(300)).await;
    assert_eq!(from_a.len(), 5);
    assert!(
        from_a.iter().all(|p| p[0] == b'a'),
        "a gets only its own replies"
    );
    assert_eq!(from_b.len(), 5);
    assert!(
        from_b.iter().all(|p| p[0] == b'b'),
        "b gets only its own replies"
    );
    let mut sources: HashMap<u8, BTreeSet<SocketAddr>> = HashMap::new();
    for (from, payload, _) in seen.lock().unwrap().iter() {
        sources.entry(payload[0]).or_default().insert(*from);
    }
    assert_eq!(sources[&b'a'].len(), 1, "one upstream socket per client");
    assert_eq!(sources[&b'b'].len(), 1);
    assert_ne!(sources[&b'a'], sources[&b'b']);
    assert!(!sources[&b'a'].contains(&proxy.addr));
    let report = proxy.finish().await;
    assert_eq!(report.clients, 2);
    assert_eq!((report.up.packets_out, report.down.packets_out), (10, 10));
}

#[tokio::test]
async fn a_rebind_gives_the_client_a_new_source_port_upstream_and_replies_still_arrive() {
    let (echo, seen) = echo_server().await;
    let proxy = start_proxy_with(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: echo,
        up: LinkConfig::perfect(),
        down: LinkConfig::perfect(),
        seed: 1,
        rebind_at: vec![Duration::from_millis(300)],
    })
    .await;
    let socket = client(proxy.addr).await;
    let mut buf = [0u8; 100];
    let mut echoed = 0;
    for i in 0..10u32 {
        socket.send(&i.to_be_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("an echo")
            .unwrap();
        assert_eq!(seq(&buf[..n]), i);
        echoed += 1;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(echoed, 10);
    let seen = seen.lock().unwrap().clone();
    let sources: Vec<SocketAddr> = seen.iter().map(|(from, _, _)| *from).collect();
    let distinct: BTreeSet<SocketAddr> = sources.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        2,
        "one source before the rebind, one after: {sources:?}"
    );
    // The change happens once, at the scheduled time, and never goes back.
    let switch = sources.iter().position(|s| *s != sources[0]).unwrap();
    assert!(sources[switch..].iter().all(|s| *s == sources[switch]));
    assert!(seen[switch].2 >= proxy.origin + Duration::from_millis(300));
    let report = proxy.finish().await;
    assert_eq!((report.clients, report.rebinds), (1, 1));
}
