//! The proxy: one listening UDP socket; per client source address, one connected upstream
//! socket and one task that owns that client's two [`SimLink`]s (up and down). A packet is
//! offered to its link when it arrives (the wall clock is the link's clock) and sent on when
//! the link delivers it, so every drop, delay, duplicate and reorder is decided by
//! [`vcall_netsim::LinkModel`]. Client `k` (numbered in order of first packet) uses the seeds
//! [`link_seed`]`(seed, k, Up / Down)`, and blackouts count from the proxy's start
//! ([`Proxy::origin`]): a test can rebuild the exact same decisions from the same seed.
//! At each [`ProxyConfig::rebind_at`] every client's upstream socket is replaced by a new
//! one (a new source port upstream sees), as a NAT rebinding or a network change would.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, trace, warn};
use vcall_netsim::{Fate, LinkConfig, LinkModel, LinkStats, SimLink};

use crate::report::{DirectionReport, Forwarded, Report};

/// Largest UDP payload accepted.
const MAX_DATAGRAM: usize = 65_535;

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

/// The seed of client `client`'s link in `direction` (clients numbered from 0 in order of
/// their first packet): a SplitMix64 step over `seed`, the client and the direction.
pub fn link_seed(seed: u64, client: u64, direction: Direction) -> u64 {
    let lane = client * 2 + u64::from(direction == Direction::Down);
    let mut z = seed ^ lane.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What to proxy and how to impair it.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients send (port 0: any free port, see [`Proxy::local_addr`]).
    pub listen: SocketAddr,
    /// Where their packets go.
    pub upstream: SocketAddr,
    /// Client → upstream impairments.
    pub up: LinkConfig,
    /// Upstream → client impairments.
    pub down: LinkConfig,
    pub seed: u64,
    /// Times since the proxy's start at which each client gets a new upstream socket.
    pub rebind_at: Vec<Duration>,
}

/// One client's figures, refreshed by its task after every event.
#[derive(Debug, Clone, Copy, Default)]
struct ClientFigures {
    up: LinkStats,
    down: LinkStats,
    up_out: Forwarded,
    down_out: Forwarded,
    up_pending: usize,
    down_pending: usize,
    rebinds: u64,
}

#[derive(Debug, Default)]
struct Shared {
    clients: Vec<ClientFigures>,
}

/// A live view of a running proxy's figures (cheap to clone).
#[derive(Debug, Clone)]
pub struct StatsHandle {
    shared: Arc<Mutex<Shared>>,
    config: Arc<ProxyConfig>,
    local: SocketAddr,
    origin: Instant,
}

impl StatsHandle {
    /// The figures so far.
    pub fn report(&self) -> Report {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut up = DirectionReport::default();
        let mut down = DirectionReport::default();
        let mut rebinds = 0;
        for c in &shared.clients {
            rebinds += c.rebinds;
            up.add(&c.up, &c.up_out, c.up_pending);
            down.add(&c.down, &c.down_out, c.down_pending);
        }
        Report {
            listen: self.local.to_string(),
            upstream: self.config.upstream.to_string(),
            seed: self.config.seed,
            duration_s: self.origin.elapsed().as_secs_f64(),
            clients: shared.clients.len() as u64,
            rebinds,
            up,
            down,
        }
    }
}

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    socket: Arc<UdpSocket>,
    config: Arc<ProxyConfig>,
    origin: Instant,
    stats: StatsHandle,
}

impl Proxy {
    /// Binds the listening socket; the proxy's clock (blackouts) starts now.
    pub async fn bind(config: ProxyConfig) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        let local = socket.local_addr()?;
        let origin = Instant::now();
        let config = Arc::new(config);
        let stats = StatsHandle {
            shared: Arc::default(),
            config: config.clone(),
            local,
            origin,
        };
        Ok(Self {
            socket,
            config,
            origin,
            stats,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.stats.local
    }

    /// The instant blackouts count from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Forwards until `shutdown` completes, then stops every client task and returns what
    /// was done (packets still in flight are discarded and reported as `pending`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Report {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut clients: HashMap<SocketAddr, mpsc::UnboundedSender<(Instant, Vec<u8>)>> =
            HashMap::new();
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                received = self.socket.recv_from(&mut buf) => {
                    let (n, from) = match received {
                        Ok(r) => r,
                        Err(e) => {
                            debug!("listen socket: {e}");
                            continue;
                        }
                    };
                    let now = Instant::now();
                    let packet = buf[..n].to_vec();
                    if let Some(tx) = clients.get(&from) {
                        // A send error means the task ended (its upstream socket failed).
                        let _ = tx.send((now, packet));
                        continue;
                    }
                    match self.start_client(from, clients.len(), stop_rx.clone(), &mut tasks).await {
                        Ok(tx) => {
                            let _ = tx.send((now, packet));
                            clients.insert(from, tx);
                        }
                        Err(e) => warn!("client {from}: cannot open an upstream socket: {e}"),
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        self.stats.report()
    }

    async fn start_client(
        &self,
        client: SocketAddr,
        index: usize,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> io::Result<mpsc::UnboundedSender<(Instant, Vec<u8>)>> {
        let upstream = open_upstream(self.config.upstream).await?;
        info!(
            "client {index} {client}: upstream socket {}",
            upstream.local_addr()?
        );
        let seed = self.config.seed;
        let links = ClientLinks {
            up: SimLink::from_model(
                LinkModel::new(
                    self.config.up.clone(),
                    link_seed(seed, index as u64, Direction::Up),
                )
                .with_origin(self.origin),
            ),
            down: SimLink::from_model(
                LinkModel::new(
                    self.config.down.clone(),
                    link_seed(seed, index as u64, Direction::Down),
                )
                .with_origin(self.origin),
            ),
            figures: ClientFigures::default(),
        };
        let slot = {
            let mut shared = self.stats.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.clients.push(ClientFigures::default());
            shared.clients.len() - 1
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut rebinds: Vec<Instant> = self
            .config
            .rebind_at
            .iter()
            .map(|d| self.origin + *d)
            .filter(|at| *at > now)
            .collect();
        rebinds.sort();
        let task = ClientTask {
            client,
            index,
            listen: self.socket.clone(),
            upstream_addr: self.config.upstream,
            upstream,
            rebinds: rebinds.into(),
            links,
            shared: self.stats.shared.clone(),
            slot,
        };
        tasks.spawn(task.run(rx, stop));
        Ok(tx)
    }
}

struct ClientLinks {
    up: SimLink<Vec<u8>>,
    down: SimLink<Vec<u8>>,
    figures: ClientFigures,
}

struct ClientTask {
    client: SocketAddr,
    index: usize,
    listen: Arc<UdpSocket>,
    upstream_addr: SocketAddr,
    upstream: UdpSocket,
    /// When this client's upstream socket is replaced next (earliest first).
    rebinds: VecDeque<Instant>,
    links: ClientLinks,
    shared: Arc<Mutex<Shared>>,
    slot: usize,
}

impl ClientTask {
    async fn run(
        mut self,
        mut from_client: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let next = match (
                self.links.up.next_delivery(),
                self.links.down.next_delivery(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                packet = from_client.recv() => {
                    let Some((at, packet)) = packet else { break };
                    self.offer(Direction::Up, at, packet);
                }
                received = self.upstream.recv(&mut buf) => match received {
                    Ok(n) => self.offer(Direction::Down, Instant::now(), buf[..n].to_vec()),
                    // An ICMP "port unreachable" from upstream (e.g. not started yet).
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        debug!("client {}: upstream refused", self.index);
                    }
                    Err(e) => {
                        warn!("client {}: upstream socket: {e}", self.index);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                () = sleep_until(next) => {}
                () = sleep_until(self.rebinds.front().copied()) => self.rebind().await,
            }
            self.flush(Instant::now()).await;
            self.publish();
        }
        self.publish();
    }

    /// Replaces the upstream socket (packets in flight down the old one are lost with it).
    async fn rebind(&mut self) {
        self.rebinds.pop_front();
        match open_upstream(self.upstream_addr).await {
            Ok(socket) => {
                info!(
                    "client {} {}: rebound upstream {:?} -> {:?}",
                    self.index,
                    self.client,
                    self.upstream.local_addr().ok(),
                    socket.local_addr().ok()
                );
                self.upstream = socket;
                self.links.figures.rebinds += 1;
            }
            Err(e) => warn!("client {}: cannot rebind upstream: {e}", self.index),
        }
    }

    fn offer(&mut self, direction: Direction, at: Instant, packet: Vec<u8>) {
        let size = packet.len();
        let (link, out) = match direction {
            Direction::Up => (&mut self.links.up, &mut self.links.figures.up_out),
            Direction::Down => (&mut self.links.down, &mut self.links.figures.down_out),
        };
        out.bytes_in += size as u64;
        let fate = link.send(at, packet, size);
        if let Fate::Dropped(reason) = fate {
            trace!(
                "client {} {direction:?}: dropped {size} bytes ({reason:?})",
                self.index
            );
        }
    }

    /// Sends everything due at `now`, in delivery order.
    async fn flush(&mut self, now: Instant) {
        while let Some(packet) = self.links.up.poll_deliver(now) {
            let out = &mut self.links.figures.up_out;
            match self.upstream.send(&packet).await {
                Ok(_) => {
                    out.packets += 1;
                    out.bytes += packet.len() as u64;
                }
                Err(e) => {
                    out.errors += 1;
                    debug!("client {}: send upstream: {e}", self.index);
                }
            }
        }
        while let Some(packet) = self.links.down.poll_deliver(now) {
            let out = &mut self.links.figures.down_out;
            match self.listen.send_to(&packet, self.client).await {
                Ok(_) => {
                    out.packets += 1;
                    out.bytes += packet.len() as u64;
                }
                Err(e) => {
                    out.errors += 1;
                    debug!("client {}: send to {}: {e}", self.index, self.client);
                }
            }
        }
    }

    fn publish(&mut self) {
        let f = &mut self.links.figures;
        f.up = self.links.up.stats();
        f.down = self.links.down.stats();
        f.up_pending = self.links.up.in_flight();
        f.down_pending = self.links.down.in_flight();
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.clients[self.slot] = *f;
    }
}

/// A new UDP socket on any local port, connected to `upstream`.
async fn open_upstream(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let any = match upstream.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(upstream).await?;
    Ok(socket)
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_seeds_differ_by_client_and_direction_and_follow_the_seed() {
        let seeds = [
            link_seed(1, 0, Direction::Up),
            link_seed(1, 0, Direction::Down),
            link_seed(1, 1, Direction::Up),
            link_seed(1, 1, Direction::Down),
            link_seed(2, 0, Direction::Up),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(link_seed(1, 0, Direction::Up), seeds[0]);
    }
}
