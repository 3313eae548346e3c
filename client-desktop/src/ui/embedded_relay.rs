//! The relay that runs inside the app when the user starts a call without a relay of their
//! own: bound on a free UDP port on every interface, announced with this machine's LAN address,
//! with a certificate made for this run (pinned by the invite link). It serves this network
//! only and stops when the app quits. Also makes fresh invite links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use vcall_engine::{fresh_invite_link_with_token, random_room_name};
use vcall_relay::{Relay, RelayConfig, RelayHandle};

/// Where a started embedded relay can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedRelayInfo {
    /// The address other machines on this network use.
    pub public_addr: SocketAddr,
    /// SHA-256 of its certificate (hex), pinned in invite links.
    pub fingerprint: String,
}

/// Why the embedded relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedRelayError {
    #[error("could not start the relay's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("could not start the relay inside the app: {0}")]
    Bind(String),
    /// The relay settings cannot make a link (a malformed fingerprint or access token).
    #[error("cannot make an invite link: {0}")]
    Link(String),
}

/// Owns the tokio runtime and the relay; dropping it shuts the relay down.
pub struct EmbeddedRelay {
    runtime: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
}

impl EmbeddedRelay {
    /// A runtime ready to host the relay (not started yet).
    pub fn new() -> Result<Self, EmbeddedRelayError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("embedded-relay")
            .enable_all()
            .build()
            .map_err(EmbeddedRelayError::Runtime)?;
        Ok(Self {
            runtime,
            handle: None,
        })
    }

    /// Binds the relay (blocks for the bind only; call from a worker thread or at start-up).
    pub fn start(&mut self, config: RelayConfig) -> Result<EmbeddedRelayInfo, EmbeddedRelayError> {
        if let Some(handle) = &self.handle {
            return Ok(info_for(handle));
        }
        let handle = self
            .runtime
            .block_on(Relay::bind(config))
            .map_err(|error| EmbeddedRelayError::Bind(error.to_string()))?;
        let info = info_for(&handle);
        self.handle = Some(handle);
        Ok(info)
    }

    /// The relay for this network: every interface, a free port, an ephemeral certificate.
    pub fn network_config() -> RelayConfig {
        RelayConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            ..RelayConfig::default()
        }
    }

    /// Whether the relay is running.
    pub fn is_running(&self) -> bool {
        self.handle.is_some()
    }
}

impl Drop for EmbeddedRelay {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // Tell clients the relay goes away, without holding up the app's exit for long.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(500), handle.shutdown()).await
            });
        }
    }
}

fn info_for(handle: &RelayHandle) -> EmbeddedRelayInfo {
    let bound = handle.local_addr();
    let host = if bound.ip().is_unspecified() {
        lan_address()
    } else {
        bound.ip()
    };
    EmbeddedRelayInfo {
        public_addr: SocketAddr::new(host, bound.port()),
        fingerprint: handle.fingerprint().to_owned(),
    }
}

/// This machine's address on its network: the source address the OS would use to reach a
/// public address (no packet is sent), or loopback on a machine without a network.
pub fn lan_address() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            socket.local_addr()
        })
        .map(|addr| addr.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A fresh invite link: a random room name and a random 32-byte secret (`#k=`), pinning
/// `fingerprint` (hex) and carrying the relay's `access_token` (`t=`) when given.
pub fn new_room_link(
    host: &str,
    port: u16,
    fingerprint: Option<&str>,
    access_token: Option<&str>,
) -> Result<String, EmbeddedRelayError> {
    fresh_invite_link_with_token(host, port, fingerprint, access_token, &random_room_name())
        .map_err(EmbeddedRelayError::Link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_crypto::{InviteLink, RoomSecret};

    #[test]
    fn new_links_parse_back_with_a_secret_and_the_pinned_fingerprint() {
        let fingerprint = "ab".repeat(32);
        let link = new_room_link("192.168.1.20", 40000, Some(&fingerprint), None).unwrap();
        let parsed = InviteLink::parse(&link).unwrap();
        assert_eq!(parsed.host, "192.168.1.20");
        assert_eq!(parsed.port, 40000);
        assert!(parsed.room.starts_with("room-"));
        assert_eq!(parsed.relay_fingerprint, Some([0xab; 32]));
        assert!(matches!(parsed.secret, Some(RoomSecret::Key(_))));
        let other = new_room_link("192.168.1.20", 40000, Some(&fingerprint), None).unwrap();
        assert_ne!(link, other, "every call gets a fresh room and secret");
        assert!(new_room_link("h", 1, Some("xyz"), None).is_err());
        let token = "v4.public.team-a_token";
        let with_token = new_room_link("relay.example.org", 4433, None, Some(token)).unwrap();
        let parsed = InviteLink::parse(&with_token).unwrap();
        assert_eq!(parsed.access_token.as_deref(), Some(token));
        let bad = new_room_link("h", 1, None, Some("not a token")).unwrap_err();
        assert!(bad.to_string().contains("access token"), "{bad}");
        assert!(
            InviteLink::parse(&new_room_link("relay.example.org", 4433, None, None).unwrap())
                .unwrap()
                .relay_fingerprint
                .is_none()
        );
    }

    #[test]
    fn embedded_relay_starts_on_a_free_port_and_reports_where() {
        let mut relay = EmbeddedRelay::new().unwrap();
        let info = relay.start(RelayConfig::loopback()).unwrap();
        assert!(relay.is_running());
        assert_ne!(info.public_addr.port(), 0);
        assert_eq!(info.fingerprint.len(), 64);
        // Starting again returns the same relay.
        assert_eq!(relay.start(RelayConfig::loopback()).unwrap(), info);
    }
}
