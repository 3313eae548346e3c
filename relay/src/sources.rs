//! Per-source admission without I/O: how many connections one source (an IPv4 address, or an
//! IPv6 /64, what one customer line usually gets) may hold open, and how many new handshakes
//! per second it may start. Applies in every access mode, before any TLS work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::rate::TokenBucket;

/// Most sources tracked at once; past it, idle entries are forgotten, and if none is idle new
/// sources are refused (`HandshakeRate`) until some are.
pub const MAX_TRACKED_SOURCES: usize = 100_000;
/// An entry without open connections is forgotten once its bucket has refilled (its burst is
/// one second's worth).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Why a new connection from a source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceRefusal {
    /// The source already holds its maximum of open connections.
    Connections,
    /// The source started more handshakes per second than allowed.
    HandshakeRate,
}

impl SourceRefusal {
    pub const ALL: [Self; 2] = [Self::Connections, Self::HandshakeRate];

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::HandshakeRate => "handshake_rate",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The per-source limits; 0 disables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    pub max_connections: usize,
    pub handshakes_per_sec: u64,
}

/// A source: an IPv4 address or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl Source {
    pub fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            // The /64 prefix, tagged so that it never equals an IPv4 key.
            IpAddr::V6(v6) => Self((u128::from(v6) & !u128::from(u64::MAX)) | 1),
        }
    }
}

#[derive(Debug)]
struct Entry {
    open: usize,
    handshakes: TokenBucket,
    last_seen: Instant,
}

/// Open connections and handshake budgets per source.
#[derive(Debug)]
pub struct SourceTable {
    limits: SourceLimits,
    entries: HashMap<Source, Entry>,
    capacity: usize,
}

impl SourceTable {
    pub fn new(limits: SourceLimits) -> Self {
        Self::with_capacity(limits, MAX_TRACKED_SOURCES)
    }

    fn with_capacity(limits: SourceLimits, capacity: usize) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            capacity,
        }
    }

    /// True when neither limit applies (nothing is tracked).
    pub fn is_unlimited(&self) -> bool {
        self.limits.max_connections == 0 && self.limits.handshakes_per_sec == 0
    }

    /// Admits a new connection from `source` at `now` (release it with
    /// [`release`](Self::release)), or says which limit it is over.
    pub fn admit(&mut self, source: Source, now: Instant) -> Result<(), SourceRefusal> {
        if self.is_unlimited() {
            return Ok(());
        }
        if !self.entries.contains_key(&source) && self.entries.len() >= self.capacity {
            self.forget_idle(now);
            if self.entries.len() >= self.capacity {
                return Err(SourceRefusal::HandshakeRate);
            }
        }
        let rate = self.limits.handshakes_per_sec;
        let entry = self.entries.entry(source).or_insert_with(|| Entry {
            open: 0,
            handshakes: TokenBucket::per_second(rate, now),
            last_seen: now,
        });
        entry.last_seen = now;
        let max = self.limits.max_connections;
        if max != 0 && entry.open >= max {
            return Err(SourceRefusal::Connections);
        }
        if !entry.handshakes.try_take(1, now) {
            return Err(SourceRefusal::HandshakeRate);
        }
        entry.open += 1;
        Ok(())
    }

    /// A connection admitted from `source` ended.
    pub fn release(&mut self, source: Source) {
        if let Some(entry) = self.entries.get_mut(&source) {
            entry.open = entry.open.saturating_sub(1);
        }
    }

    /// Connections open from `source`.
    pub fn open(&self, source: Source) -> usize {
        self.entries.get(&source).map_or(0, |e| e.open)
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget_idle(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| e.open > 0 || now.saturating_duration_since(e.last_seen) < IDLE_AFTER);
    }
}

/// Shared by the accept loop and the connections it admitted.
pub(crate) type SharedSources = Arc<Mutex<SourceTable>>;

/// Admits a connection from `addr` at `now`; the guard gives its slot back when dropped.
pub(crate) fn admit(
    table: &SharedSources,
    addr: IpAddr,
    now: Instant,
) -> Result<SourceGuard, SourceRefusal> {
    let source = Source::of(addr);
    lock(table).admit(source, now)?;
    Ok(SourceGuard {
        table: Arc::clone(table),
        source,
    })
}

fn lock(table: &SharedSources) -> std::sync::MutexGuard<'_, SourceTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One admitted connection's slot in its source's count.
#[derive(Debug)]
pub(crate) struct SourceGuard {
    table: SharedSources,
    source: Source,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        lock(&self.table).release(self.source);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn a_source_over_its_connection_limit_is_refused_while_others_are_not() {
        let now = Instant::now();
        let mut table = SourceTable::new(SourceLimits {
            max_connections: 2,
            handshakes_per_sec: 0,
        });
        table.admit(v4(1), now).unwrap();
        table.admit(v4(1), now).unwrap();
        assert_eq!(table.admit(v4(1), now), Err(SourceRefusal::Connections));
        table.admit(v4(2), now).unwrap();
        table.release(v4(1));
        assert_eq!(table.open(v4(1)), 1);
        table.admit(v4(1), now).unwrap();
    }

    #[test]
    fn handshakes_per_second_refill_with_time() {
        let t0 = Instant::now();
        let mut table = SourceTable::new(SourceLimits {
            max_connections: 0,
            handshakes_per_sec: 3,
        });
        for _ in 0..3 {
            table.admit(v4(1), t0).unwrap();
        }
        assert_eq!(table.admit(v4(1), t0), Err(SourceRefusal::HandshakeRate));
        table.admit(v4(1), t0 + Duration::from_millis(400)).unwrap();
    }

    #[test]
    fn ipv6_sources_are_their_64_prefix_and_mapped_ipv4_is_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(c.into()));
        let mapped = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped();
        assert_eq!(Source::of(mapped.into()), v4(1));
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_idle_sources() {
        let t0 = Instant::now();
        let limits = SourceLimits {
            max_connections: 4,
            handshakes_per_sec: 10,
        };
        let mut table = SourceTable::with_capacity(limits, 2);
        table.admit(v4(1), t0).unwrap();
        table.admit(v4(2), t0).unwrap();
        table.release(v4(2));
        assert_eq!(table.admit(v4(3), t0), Err(SourceRefusal::HandshakeRate));
        // Source 2 is idle a second later and makes room; source 1 still holds a connection.
        table.admit(v4(3), t0 + IDLE_AFTER).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.open(v4(1)), 1);
    }

    #[test]
    fn no_limits_track_nothing() {
        let mut table = SourceTable::new(SourceLimits {
            max_connections: 0,
            handshakes_per_sec: 0,
        });
        for _ in 0..1000 {
            table.admit(v4(1), Instant::now()).unwrap();
        }
        assert!(table.is_empty());
    }
}
