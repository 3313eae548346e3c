//! `vcall-netem`: a UDP impairment proxy. Clients send to its listen address; it forwards
//! each client (by source address, through its own upstream socket, so the relay sees
//! distinct clients) to the upstream address and the replies back, impairing each direction
//! with a seeded [`vcall_netsim::LinkModel`], the same decisions the in-memory network makes
//! in unit tests.
//!
//! * [`proxy`]: the proxy itself ([`Proxy`]), and how each client's link is seeded.
//! * [`report`]: what it did per direction ([`Report`]), as a human line or JSON.
//! * [`cli`]: the command line and how its flags become two [`vcall_netsim::LinkConfig`]s.
#![forbid(unsafe_code)]

pub mod cli;
pub mod proxy;
pub mod report;

pub use proxy::{Direction, Proxy, ProxyConfig, StatsHandle, link_seed};
pub use report::{DirectionReport, Report};
