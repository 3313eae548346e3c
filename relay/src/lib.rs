//! vcall relay: admits QUIC clients into rooms and forwards their control signals and media
//! datagrams to the other members, without ever holding key material.
//!
//! Sans-IO decisions (plain structs, time passed in, unit-tested without sockets):
//! - [`access`]: access tokens, the revocation list and tenant quotas.
//! - [`rooms`]: who is in which room and who receives what.
//! - `conn_state`: one connection's protocol rules (Hello first, version, join deadline,
//!   control rate limits, error codes, Leave).
//! - [`fanout`]: lock-free snapshots of a room's members for the datagram path.
//! - [`rate`]: token buckets.
//! - [`sources`]: per-source connection and handshake limits.
//! - [`cluster`]: node ids, room subjects and the messages relays exchange through NATS.
//!
//! The quinn/tokio shell:
//! - [`server`]: [`Relay::bind`] → [`RelayHandle`]; the endpoint, accepting, graceful shutdown.
//! - `connection`: one task per connection, driving its `ConnState`.
//! - `writer`: each client's bounded control queue and the task writing it to the stream.
//! - `forwarder`: the datagram path (check, stamp the sender, fan out shared bytes).
//! - `access_watch`: reloads the revocation file and tells connections of revoked tokens.
//! - `link`: how the relay reaches a client (the handle the rooms hold).
//! - `nats_link`: the cluster link through NATS (publisher, room listeners, presence).
//! - [`token_store`]: the operator's token files in the state directory.
//! - [`config`], [`cert`], [`metrics`]: limits, TLS identity, Prometheus counters; `http`:
//!   `/metrics` and `/healthz`.
//!
//! Embedding:
//! ```no_run
//! # async fn demo() -> Result<(), vcall_relay::RelayError> {
//! let relay = vcall_relay::Relay::bind(vcall_relay::RelayConfig::loopback()).await?;
//! println!("relay on {} fp={}", relay.local_addr(), relay.fingerprint());
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod access;
mod access_watch;
pub mod cert;
pub mod cluster;
pub mod config;
mod conn_state;
mod connection;
pub mod fanout;
mod forwarder;
mod http;
mod link;
pub mod metrics;
mod nats_link;
pub mod rate;
pub mod rooms;
pub mod server;
mod shedding;
pub mod sources;
pub mod token_store;
mod writer;

pub use cert::{CertError, RelayIdentity, fingerprint};
pub use cluster::NodeId;
pub use config::{
    AccessConfig, CertificateSource, ClusterConfig, DEFAULT_PORT, Limits, NatsAuth, NatsTls,
    RelayConfig,
};
pub use metrics::{ClusterDrop, DropReason, Metrics, RejectReason};
pub use server::{Relay, RelayError, RelayHandle};
