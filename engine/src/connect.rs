//! Opening the QUIC connection to a relay: certificate pinning (`fp`) or system roots,
//! ALPN `vcall/1`, datagrams and keep-alive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vcall_tls::pinning::{MismatchFlag, pinned_client_tls_with_flag};

use crate::state::ConnectFailure;

/// Why the relay could not be reached; each says what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve the relay address {0}: check the link and your network")]
    Resolve(String),
    #[error(
        "the relay's certificate does not match the link's fingerprint: the link may be outdated, or someone is intercepting the connection; ask for a new link"
    )]
    CertificateMismatch,
    #[error(
        "the relay at {addr} did not answer: is it running and is UDP port {port} open? ({detail})"
    )]
    Unreachable {
        addr: String,
        port: u16,
        detail: String,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("cannot open a local UDP socket: {0}")]
    Socket(std::io::Error),
}

impl ConnectError {
    /// A cloneable summary for the call state.
    pub fn failure(&self) -> ConnectFailure {
        match self {
            Self::Resolve(address) => ConnectFailure::Resolve {
                address: address.clone(),
            },
            Self::CertificateMismatch => ConnectFailure::CertificateMismatch,
            Self::Unreachable { addr, port, detail } => ConnectFailure::Unreachable {
                address: addr.clone(),
                port: *port,
                detail: detail.clone(),
            },
            Self::Tls(e) => ConnectFailure::Tls(e.clone()),
            Self::Socket(e) => ConnectFailure::Socket(e.to_string()),
        }
    }
}

/// Bytes of datagrams quinn may queue for sending (about 1 s at 1.5 Mbit/s).
pub(crate) const DATAGRAM_SEND_BUFFER: usize = 192 * 1024;

fn client_config(
    fingerprint: Option<&str>,
) -> Result<(quinn::ClientConfig, MismatchFlag), ConnectError> {
    let mut mismatch = MismatchFlag::default();
    let tls = match fingerprint {
        Some(fp) => {
            let (tls, flag) = pinned_client_tls_with_flag(fp, vcall_proto::ALPN);
            mismatch = flag;
            tls
        }
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            tls.alpn_protocols = vec![vcall_proto::ALPN.to_vec()];
            tls
        }
    };
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(30)).expect("30 s is a valid timeout"),
    ));
    transport.datagram_receive_buffer_size(Some(4 << 20));
    // Media that waits longer than a few hundred ms is worth less than newer media: a small
    // send buffer makes quinn drop the oldest queued datagrams instead of queueing seconds.
    transport.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    // BBR paces to the measured bottleneck instead of halving on every loss: random loss on
    // Wi-Fi or LTE does not starve a call the way loss-based control (Cubic) does.
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    config.transport_config(Arc::new(transport));
    Ok((config, mismatch))
}

/// Resolves `host:port` and connects with the given pinning (or system roots).
pub async fn connect(
    host: &str,
    port: u16,
    fingerprint: Option<&str>,
) -> Result<(quinn::Endpoint, quinn::Connection), ConnectError> {
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ConnectError::Resolve(format!("{host}:{port}")))?
        .next()
        .ok_or_else(|| ConnectError::Resolve(format!("{host}:{port}")))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(ConnectError::Socket)?;
    let (config, mismatch) = client_config(fingerprint)?;
    endpoint.set_default_client_config(config);
    let server_name = host.trim_start_matches('[').trim_end_matches(']');
    let unreachable = |detail: String| ConnectError::Unreachable {
        addr: format!("{host}:{port}"),
        port,
        detail,
    };
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Err(_) => Err(unreachable("no answer within 10 s".into())),
        Ok(Ok(conn)) => Ok((endpoint, conn)),
        Ok(Err(_)) if mismatch.seen() => Err(ConnectError::CertificateMismatch),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
    }
}
