//! vcall relay: admits QUIC clients into rooms and forwards their control signals and media
//! datagrams to the other members, without ever holding key material.
//!
//! - [`rooms`]: who is in which room and who receives what (sans-IO, unit-tested).
//! - [`fanout`]: lock-free snapshots of a room's members for the datagram path.
//! - [`rate`]: token buckets with time passed in.
//! - [`server`]: the quinn/tokio shell ([`Relay::bind`] → [`RelayHandle`]).
//! - [`config`], [`cert`], [`metrics`]: limits, TLS identity, Prometheus counters.
//!
//! Embedding:
//! ```no_run
//! # async fn demo() -> Result<(), vcall_relay::RelayError> {
//! let relay = vcall_relay::Relay::bind(vcall_relay::RelayConfig::loopback()).await?;
//! println!("relay on {} fp={}", relay.local_addr(), relay.fingerprint());
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cert;
pub mod config;
pub mod fanout;
pub mod metrics;
pub mod rate;
pub mod rooms;
pub mod server;

pub use cert::{CertError, RelayIdentity, fingerprint};
pub use config::{CertificateSource, DEFAULT_PORT, Limits, RelayConfig};
pub use metrics::{DropReason, Metrics, RejectReason};
pub use server::{Relay, RelayError, RelayHandle};
