//! The relay's link to the other relays of its cluster through NATS (`async-nats`): connects
//! with the operator's credentials and TLS, publishes what [`Rooms`] queues ([`ClusterOut`])
//! and the datagrams the forwarders hand it, listens to the subject of each room this relay has
//! members in, repeats this relay's member lists (presence) and expires silent nodes.
//!
//! Nothing here blocks the datagram path or a control stream: forwarders and connection tasks
//! only `try_send` into bounded queues (a full queue drops and counts), and only this module's
//! tasks wait on NATS. When NATS is down, local rooms go on; what would cross is dropped
//! (counted) and the other relays' members expire after [`PRESENCE_EXPIRY`].
//!
//! [`PRESENCE_EXPIRY`]: crate::rooms::PRESENCE_EXPIRY

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vcall_proto::datagram::DatagramHeader;
use vcall_proto::{ControlFrame, PeerId};

use crate::cluster::{ClusterMessage, NodeId, room_subject};
use crate::config::{ClusterConfig, NatsAuth};
use crate::fanout::FanoutReader;
use crate::forwarder::deliver_locally;
use crate::link::PeerLink;
use crate::metrics::{ClusterDrop, DropReason, Metrics};
use crate::rooms::{ClusterOut, PRESENCE_INTERVAL, RemoteChange, RoomId, Rooms};
use crate::server::{Shared, stopping};

/// Control-plane messages (members, signals, subscriptions) queued towards NATS.
const CONTROL_QUEUE: usize = 4096;
/// Datagrams queued towards NATS (about a second of a busy relay's media crossing).
const DATAGRAM_QUEUE: usize = 8192;
/// How often silent nodes are looked for.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// Why the cluster link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
}

/// One message towards NATS.
struct Outbound {
    subject: Subject,
    payload: Bytes,
}

/// What the relay's other tasks use to reach the cluster (held in [`Shared`]).
#[derive(Debug)]
pub(crate) struct ClusterLink {
    node: NodeId,
    prefix: String,
    control: mpsc::Sender<ClusterOut>,
    datagrams: mpsc::Sender<Outbound>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Outbound({}, {} bytes)",
            self.subject,
            self.payload.len()
        )
    }
}

/// The queues' other ends, for the tasks [`start`] spawns.
pub(crate) struct ClusterQueues {
    control: mpsc::Receiver<ClusterOut>,
    datagrams: mpsc::Receiver<Outbound>,
}

impl ClusterLink {
    /// The link and the queues its tasks will drain.
    pub(crate) fn new(config: &ClusterConfig, metrics: Arc<Metrics>) -> (Self, ClusterQueues) {
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let (datagram_tx, datagrams) = mpsc::channel(DATAGRAM_QUEUE);
        metrics.cluster_enabled();
        (
            Self {
                node: config.node,
                prefix: config.subject_prefix.clone(),
                control: control_tx,
                datagrams: datagram_tx,
                metrics,
            },
            ClusterQueues { control, datagrams },
        )
    }

    /// Queues what `Rooms` has for the cluster (called with the rooms locked, so in order).
    pub(crate) fn take_from(&self, rooms: &mut Rooms<PeerLink>) {
        while let Some(out) = rooms.poll_cluster() {
            self.queue(out);
        }
    }

    fn queue(&self, out: ClusterOut) {
        if let Err(TrySendError::Full(_)) = self.control.try_send(out) {
            self.metrics.cluster_dropped(ClusterDrop::QueueFull);
        }
    }

    /// The publisher of one room's datagrams, for that room's forwarders.
    pub(crate) fn room_publisher(&self, room: &RoomId) -> RoomPublisher {
        RoomPublisher {
            subject: Subject::from(room_subject(&self.prefix, room)),
            node: self.node,
            queue: self.datagrams.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// Puts one room's datagrams on its subject (one copy per datagram, whatever the number of
/// relays listening).
#[derive(Debug, Clone)]
pub(crate) struct RoomPublisher {
    subject: Subject,
    node: NodeId,
    queue: mpsc::Sender<Outbound>,
    metrics: Arc<Metrics>,
}

impl RoomPublisher {
    /// Queues a stamped datagram for the other relays; dropped (counted) when the link is down
    /// or its queue is full.
    pub(crate) fn datagram(&self, stamped: &Bytes) {
        if self.metrics.cluster_link_up() != Some(true) {
            self.metrics.cluster_dropped(ClusterDrop::LinkDown);
            return;
        }
        let payload = ClusterMessage::Datagram {
            node: self.node,
            datagram: stamped.clone(),
        }
        .encode();
        let outbound = Outbound {
            subject: self.subject.clone(),
            payload,
        };
        if self.queue.try_send(outbound).is_err() {
            self.metrics.cluster_dropped(ClusterDrop::QueueFull);
        }
    }
}

/// Connects to NATS (retrying in the background when it is not reachable yet) with the
/// configured credentials and TLS.
pub(crate) async fn connect(
    config: &ClusterConfig,
    metrics: Arc<Metrics>,
) -> Result<Client, ClusterError> {
    let mut options = match &config.auth {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
        NatsAuth::NkeySeed(seed) => ConnectOptions::with_nkey(seed.clone()),
        NatsAuth::CredentialsFile(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| ClusterError::Credentials {
                path: path.display().to_string(),
                source,
            })?,
    };
    if config.tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let events = Arc::clone(&metrics);
    options = options
        .name(format!("vcall-relay node {}", config.node))
        // A relay never needs its own messages back.
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .ping_interval(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(1000))
        })
        .event_callback(move |event| {
            let metrics = Arc::clone(&events);
            async move {
                match event {
                    Event::Connected => {
                        metrics.set_cluster_connected(true);
                        info!("cluster link up (NATS connected)");
                    }
                    Event::Disconnected | Event::Closed => {
                        metrics.set_cluster_connected(false);
                        warn!("cluster link down (NATS {event}); local rooms go on");
                    }
                    Event::SlowConsumer(_) => metrics.cluster_dropped(ClusterDrop::QueueFull),
                    other => warn!("NATS: {other}"),
                }
            }
        });
    let client = options
        .connect(config.nats_url.as_str())
        .await
        .map_err(|e| ClusterError::Connect {
            url: config.nats_url.clone(),
            message: e.to_string(),
        })?;
    if client.connection_state() == async_nats::connection::State::Connected {
        metrics.set_cluster_connected(true);
    }
    Ok(client)
}

/// Spawns the cluster's tasks: the publisher (in order: subscriptions, member lists, signals;
/// datagrams beside them) and the presence timer. They end with the relay.
pub(crate) fn start(client: Client, queues: ClusterQueues, shared: Arc<Shared>) -> JoinHandle<()> {
    let presence = tokio::spawn(presence(Arc::clone(&shared)));
    tokio::spawn(async move {
        publish(client, queues, shared).await;
        presence.abort();
    })
}

async fn publish(client: Client, queues: ClusterQueues, shared: Arc<Shared>) {
    let ClusterQueues {
        mut control,
        mut datagrams,
    } = queues;
    let Some(link) = shared.cluster.as_ref() else {
        return;
    };
    let metrics = &shared.metrics;
    let mut listeners: HashMap<RoomId, JoinHandle<()>> = HashMap::new();
    let mut shutdown = shared.shutdown.clone();
    let mut stopping_since: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            out = control.recv() => {
                let Some(out) = out else { break };
                match out {
                    ClusterOut::Subscribe(room) => {
                        let subject = room_subject(&link.prefix, &room);
                        match client.subscribe(subject).await {
                            Ok(subscriber) => {
                                let fanout = shared.rooms().fanout_of(&room);
                                if let Some(fanout) = fanout {
                                    let task = tokio::spawn(listen(room.clone(), subscriber, fanout, Arc::clone(&shared)));
                                    if let Some(old) = listeners.insert(room, task) {
                                        old.abort();
                                    }
                                }
                            }
                            Err(error) => warn!(%error, "cannot subscribe to a room's subject"),
                        }
                    }
                    ClusterOut::Unsubscribe(room) => {
                        if let Some(task) = listeners.remove(&room) {
                            task.abort();
                        }
                    }
                    ClusterOut::Members { room, members } => {
                        let payload = ClusterMessage::Members { node: link.node, members }.encode();
                        send(&client, room_subject(&link.prefix, &room).into(), payload, metrics).await;
                    }
                    ClusterOut::Signal { room, from, to, payload } => {
                        let payload = ClusterMessage::Signal { node: link.node, from, to, payload }.encode();
                        send(&client, room_subject(&link.prefix, &room).into(), payload, metrics).await;
                    }
                }
            }
            outbound = datagrams.recv() => {
                let Some(Outbound { subject, payload }) = outbound else { break };
                send(&client, subject, payload, metrics).await;
            }
            _ = stopping(&mut shutdown), if stopping_since.is_none() => {
                stopping_since = Some(Instant::now());
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if stopping_since.is_some() => {
                // Shutting down: once every connection has left (its empty member lists
                // queued and sent above), flush them to NATS and end.
                let drained = shared.rooms().room_count() == 0 && control.is_empty();
                let waited = stopping_since.is_some_and(|t| t.elapsed() > shared.limits.shutdown_grace * 2);
                if drained || waited {
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    for (_, task) in listeners {
        task.abort();
    }
}

async fn send(client: &Client, subject: Subject, payload: Bytes, metrics: &Metrics) {
    if metrics.cluster_link_up() != Some(true) {
        metrics.cluster_dropped(ClusterDrop::LinkDown);
        return;
    }
    match client.publish(subject, payload).await {
        Ok(()) => metrics.cluster_message_out(),
        Err(_) => metrics.cluster_dropped(ClusterDrop::LinkDown),
    }
}

/// Repeats this relay's member lists every [`PRESENCE_INTERVAL`] and removes the members of
/// nodes that went silent.
async fn presence(shared: Arc<Shared>) {
    let Some(link) = shared.cluster.as_ref() else {
        return;
    };
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_presence = Instant::now() + PRESENCE_INTERVAL;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut rooms = shared.rooms();
        for change in rooms.expire_nodes(now) {
            info!(
                left = change.left.len(),
                "members on a silent relay removed from a room"
            );
            announce(&change, &shared.metrics);
        }
        shared
            .metrics
            .set_remote_members(rooms.remote_member_count());
        if now >= next_presence {
            next_presence = now + PRESENCE_INTERVAL;
            for (room, members) in rooms.local_member_lists() {
                link.queue(ClusterOut::Members { room, members });
            }
        }
    }
}

/// Tells this relay's members of a room who appeared on, or vanished from, other relays.
fn announce(change: &RemoteChange<PeerLink>, metrics: &Metrics) {
    for entry in &change.joined {
        let frame = ControlFrame::PeerJoined(entry.clone()).to_bytes();
        for link in &change.notify {
            link.deliver(frame.clone(), metrics);
        }
    }
    for &peer in &change.left {
        let frame = ControlFrame::PeerLeft { peer }.to_bytes();
        for link in &change.notify {
            link.deliver(frame.clone(), metrics);
        }
    }
}

/// Handles what the other relays say about one room, until unsubscribed.
async fn listen(
    room: RoomId,
    mut subscriber: Subscriber,
    mut fanout: FanoutReader<PeerLink>,
    shared: Arc<Shared>,
) {
    let metrics = &shared.metrics;
    let send_buffer = shared.limits.datagram_send_buffer;
    while let Some(message) = subscriber.next().await {
        metrics.cluster_message_in();
        let message = match ClusterMessage::decode(&message.payload) {
            Ok(message) => message,
            Err(error) => {
                metrics.cluster_dropped(ClusterDrop::Malformed);
                tracing::debug!(%error, "cluster message dropped");
                continue;
            }
        };
        if shared.cluster.as_ref().map(|c| c.node) == Some(message.node()) {
            // NATS never echoes this relay's own messages (no_echo): another relay uses its id.
            metrics.cluster_dropped(ClusterDrop::Unverified);
            warn!(node = %message.node(), "another relay uses this relay's node id: give every relay its own --node-id");
            continue;
        }
        match message {
            ClusterMessage::Datagram { node, datagram } => {
                let Ok((header, _)) = DatagramHeader::decode(&datagram) else {
                    metrics.cluster_dropped(ClusterDrop::Malformed);
                    continue;
                };
                // The sender's relay stamped it; it must be one of that relay's members here.
                if !fanout.is_remote_member(header.sender, node) {
                    metrics.cluster_dropped(ClusterDrop::Unverified);
                    continue;
                }
                match fanout.recipients(header.sender, header.target) {
                    Ok(delivery) => deliver_locally(
                        delivery.local,
                        header.sender,
                        &header,
                        &datagram,
                        Instant::now(),
                        send_buffer,
                        metrics,
                    ),
                    Err(_) => metrics.datagram_dropped(DropReason::UnknownTarget, datagram.len()),
                }
            }
            ClusterMessage::Members { node, members } => {
                let mut rooms = shared.rooms();
                match rooms.cluster_members(&room, node, &members, Instant::now()) {
                    Ok(Some(change)) => {
                        announce(&change, metrics);
                        if change.answer
                            && let Some(link) = shared.cluster.as_ref()
                        {
                            let members = rooms.local_members(&room);
                            link.queue(ClusterOut::Members {
                                room: room.clone(),
                                members,
                            });
                        }
                        metrics.set_remote_members(rooms.remote_member_count());
                    }
                    Ok(None) => {}
                    Err(error) => {
                        metrics.cluster_dropped(ClusterDrop::Unverified);
                        warn!(%error, "member list from the cluster refused");
                    }
                }
            }
            ClusterMessage::Signal {
                node,
                from,
                to,
                payload,
            } => {
                let rooms = shared.rooms();
                let links = rooms.cluster_signal(&room, node, from, to);
                if links.is_empty() && to != PeerId::NONE {
                    // Not for this relay's members (or from a sender never announced).
                    continue;
                }
                metrics.signal_copies_queued(links.len());
                let frame = ControlFrame::Signal { to, from, payload }.to_bytes();
                for link in &links {
                    link.deliver(frame.clone(), metrics);
                }
            }
        }
    }
}
