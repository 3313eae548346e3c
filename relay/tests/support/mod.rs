//! Test client for the relay: a real quinn client that pins the relay's certificate
//! fingerprint, speaks the control protocol and sends/receives datagrams.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, TransportConfig, VarInt};
use vcall_proto::control::RosterEntry;
use vcall_proto::{
    ALPN, ControlDecoder, ControlFrame, DatagramHeader, DatagramKind, ErrorCode, PROTOCOL_VERSION,
    PeerId,
};
use vcall_relay::{Metrics, RelayHandle};

/// Longest a test waits for something that must happen (a liveness bound, not a timing check).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Client-side knobs for misbehaving or constrained clients.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub alpn: Vec<u8>,
    /// `None` disables datagrams; a small value lowers the datagram size the peer may send us.
    pub datagram_receive_buffer: Option<usize>,
    /// Flow-control window of the control stream (small = a client that reads slowly).
    pub stream_receive_window: Option<u32>,
    /// The client's local address (another loopback address is another source).
    pub bind: SocketAddr,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            alpn: ALPN.to_vec(),
            datagram_receive_buffer: Some(4 * 1024 * 1024),
            stream_receive_window: None,
            bind: "127.0.0.1:0".parse().unwrap(),
        }
    }
}

/// Opens a QUIC connection to `addr`, pinning `fingerprint`.
pub async fn connect(
    addr: SocketAddr,
    fingerprint: &str,
    options: &ClientOptions,
) -> Result<Connection, ConnectionError> {
    let tls = vcall_tls::pinning::pinned_client_tls(fingerprint, &options.alpn);
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC-capable TLS config");
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(2)))
        .datagram_receive_buffer_size(options.datagram_receive_buffer);
    if let Some(window) = options.stream_receive_window {
        transport.stream_receive_window(VarInt::from_u32(window));
    }
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::client(options.bind).expect("client socket");
    let connecting = endpoint
        .connect_with(config, addr, "vcall-relay")
        .expect("valid connect parameters");
    connecting.await
}

/// A connected client with its control stream open.
pub struct TestClient {
    pub connection: Connection,
    send: SendStream,
    recv: RecvStream,
    decoder: ControlDecoder,
    /// Set after a successful join.
    pub peer: PeerId,
    pub roster: Vec<RosterEntry>,
}

impl TestClient {
    /// Connects and opens the control stream (nothing sent yet).
    pub async fn open(relay: &RelayHandle, options: &ClientOptions) -> Self {
        let connection = connect(relay.local_addr(), relay.fingerprint(), options)
            .await
            .expect("connects to the relay");
        let (send, recv) = connection
            .open_bi()
            .await
            .expect("opens the control stream");
        Self {
            connection,
            send,
            recv,
            decoder: ControlDecoder::new(1 << 20),
            peer: PeerId::NONE,
            roster: Vec::new(),
        }
    }

    /// Connects, joins `room` and waits for the Welcome.
    pub async fn join(relay: &RelayHandle, room: &str, name: Option<&str>) -> Self {
        Self::join_with(relay, room, name, &ClientOptions::default()).await
    }

    pub async fn join_with(
        relay: &RelayHandle,
        room: &str,
        name: Option<&str>,
        options: &ClientOptions,
    ) -> Self {
        Self::join_saying(relay, &hello(room, name), options).await
    }

    /// Opens a connection, sends `hello` and expects a `Welcome`.
    pub async fn join_saying(
        relay: &RelayHandle,
        hello: &ControlFrame,
        options: &ClientOptions,
    ) -> Self {
        let mut client = Self::open(relay, options).await;
        client.send_frame(hello).await;
        match client.next_frame().await {
            Some(ControlFrame::Welcome { peer, roster }) => {
                client.peer = peer;
                client.roster = roster;
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
        client
    }

    pub async fn send_frame(&mut self, frame: &ControlFrame) {
        self.send_raw(&frame.to_bytes()).await;
    }

    /// Sends a frame unless the relay already stopped our stream (a client it is
    /// disconnecting); says whether it went.
    pub async fn try_send_frame(&mut self, frame: &ControlFrame) -> bool {
        self.send.write_all(&frame.to_bytes()).await.is_ok()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send
            .write_all(bytes)
            .await
            .expect("control stream writable");
    }

    pub async fn finish_stream(&mut self) {
        self.send.finish().expect("stream finishes");
    }

    /// The next control frame, or `None` once the stream or connection ends.
    pub async fn next_frame(&mut self) -> Option<ControlFrame> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(frame) = self.decoder.next_frame().expect("relay frames decode") {
                    return Some(frame);
                }
                match self.recv.read_chunk(64 * 1024, true).await {
                    Ok(Some(chunk)) => self.decoder.push(&chunk.bytes),
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await
        .expect("a control frame (or the end of the stream) within the patience bound")
    }

    /// Asserts that nothing else is queued for this client: a Ping's Pong is the next frame.
    pub async fn assert_nothing_pending(&mut self, nonce: u64) {
        self.send_frame(&ControlFrame::Ping(nonce)).await;
        assert_eq!(
            self.next_frame().await,
            Some(ControlFrame::Pong(nonce)),
            "peer {}",
            self.peer
        );
    }

    /// Sends a datagram with a header as a client writes it (`forged_sender` is normally NONE).
    pub fn send_datagram(&self, target: Option<PeerId>, forged_sender: PeerId, body: &[u8]) {
        self.connection
            .send_datagram(datagram(target, forged_sender, body))
            .expect("datagram accepted by quinn");
    }

    /// The next datagram as (header, body), or `None` after `wait` without one.
    pub async fn recv_datagram(&self, wait: Duration) -> Option<(DatagramHeader, Bytes)> {
        let datagram = tokio::time::timeout(wait, self.connection.read_datagram())
            .await
            .ok()?
            .ok()?;
        let (header, offset) =
            DatagramHeader::decode(&datagram).expect("relay forwards valid datagrams");
        Some((header, datagram.slice(offset..)))
    }

    /// Waits for the connection to close and returns the application close code.
    pub async fn closed_with(&self) -> Option<u64> {
        let error = tokio::time::timeout(PATIENCE, self.connection.closed())
            .await
            .expect("the relay closes the connection");
        match error {
            ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        }
    }

    /// Expects an `Error` frame with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) {
        match self.next_frame().await {
            Some(ControlFrame::Error { code: got, .. }) => assert_eq!(got, code),
            other => panic!("expected Error {code:?}, got {other:?}"),
        }
    }
}

pub fn hello(room: &str, name: Option<&str>) -> ControlFrame {
    hello_with_token(room, name, None)
}

pub fn hello_with_token(room: &str, name: Option<&str>, token: Option<&str>) -> ControlFrame {
    ControlFrame::Hello {
        version: PROTOCOL_VERSION,
        room: Bytes::copy_from_slice(room.as_bytes()),
        name: name.map(str::to_owned),
        token: token.map(str::to_owned),
    }
}

pub fn signal(to: PeerId, payload: &[u8]) -> ControlFrame {
    ControlFrame::Signal {
        to,
        from: PeerId::NONE,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A video datagram with the given target, (possibly forged) sender and body.
pub fn datagram(target: Option<PeerId>, sender: PeerId, body: &[u8]) -> Bytes {
    let header = DatagramHeader {
        kind: DatagramKind::Video,
        sender,
        target,
        layer: 0,
    };
    let mut out = Vec::with_capacity(header.len() + body.len());
    header.append(&mut out);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Polls `probe` until it holds (bounded by [`PATIENCE`]); for counters updated by tasks.
pub async fn eventually(what: &str, metrics: &Metrics, probe: impl Fn(&Metrics) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !probe(metrics) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
