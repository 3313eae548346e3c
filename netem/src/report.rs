//! What the proxy did, per direction: packets in and out, drops by reason, duplicates and
//! reorders, as a human line ([`DirectionReport::human`]) or JSON ([`Report`] is
//! `Serialize`; the field names are an interface for scripts).

use std::fmt::Write as _;

use serde::Serialize;
use vcall_netsim::LinkStats;

/// One direction, summed over every client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectionReport {
    /// Packets the proxy received in this direction.
    pub packets_in: u64,
    /// Packets it sent on (duplicates included).
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Dropped by random loss (`--loss`).
    pub dropped_loss: u64,
    /// Dropped by Gilbert–Elliott burst loss (`--burst-loss`).
    pub dropped_burst: u64,
    /// Tail-dropped because the rate-capped queue was full (`--rate`, `--queue`).
    pub dropped_queue: u64,
    /// Dropped inside a blackout (`--blackout`).
    pub dropped_blackout: u64,
    /// Packets sent twice (`--duplicate`).
    pub duplicated: u64,
    /// Packets held back by the reorder delay (`--reorder`; jitter reorders too, uncounted).
    pub reordered: u64,
    /// Copies still in flight when the report was taken (discarded at exit).
    pub pending: u64,
    /// Copies the socket refused to send.
    pub send_errors: u64,
}

impl DirectionReport {
    /// Adds one client's link decisions and forwarding counters.
    pub(crate) fn add(&mut self, link: &LinkStats, forwarded: &Forwarded, pending: usize) {
        self.packets_in += link.sent;
        self.dropped_loss += link.lost_random;
        self.dropped_burst += link.lost_burst;
        self.dropped_queue += link.dropped_queue_full;
        self.dropped_blackout += link.lost_blackout;
        self.duplicated += link.duplicated;
        self.reordered += link.reordered;
        self.packets_out += forwarded.packets;
        self.bytes_in += forwarded.bytes_in;
        self.bytes_out += forwarded.bytes;
        self.send_errors += forwarded.errors;
        self.pending += pending as u64;
    }

    /// Every packet dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_burst + self.dropped_queue + self.dropped_blackout
    }

    /// `in=… out=… dropped: loss=… burst=… queue=… blackout=… duplicated=… reordered=…`
    pub fn human(&self) -> String {
        let mut s = format!(
            "in={} out={} dropped={} (loss={} burst={} queue={} blackout={}) duplicated={} \
             reordered={}",
            self.packets_in,
            self.packets_out,
            self.dropped(),
            self.dropped_loss,
            self.dropped_burst,
            self.dropped_queue,
            self.dropped_blackout,
            self.duplicated,
            self.reordered,
        );
        if self.packets_in > 0 {
            let pct = 100.0 * self.dropped() as f64 / self.packets_in as f64;
            let _ = write!(s, " loss={pct:.1}%");
        }
        if self.pending > 0 {
            let _ = write!(s, " pending={}", self.pending);
        }
        if self.send_errors > 0 {
            let _ = write!(s, " send_errors={}", self.send_errors);
        }
        s
    }
}

/// What one client's direction forwarded (the link model counts the decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub packets: u64,
    pub bytes: u64,
    pub bytes_in: u64,
    pub errors: u64,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub listen: String,
    pub upstream: String,
    pub seed: u64,
    /// Seconds since the proxy started.
    pub duration_s: f64,
    /// Distinct client source addresses seen.
    pub clients: u64,
    /// Upstream sockets replaced (`--rebind-at`), over every client.
    pub rebinds: u64,
    /// Client → upstream.
    pub up: DirectionReport,
    /// Upstream → client.
    pub down: DirectionReport,
}

impl Report {
    /// Two lines, one per direction.
    pub fn human(&self) -> String {
        format!(
            "vcall-netem up (client->upstream): {}\nvcall-netem down (upstream->client): {}\n\
             vcall-netem: {} client(s), {} rebind(s), {:.1} s, seed {}",
            self.up.human(),
            self.down.human(),
            self.clients,
            self.rebinds,
            self.duration_s,
            self.seed
        )
    }
}
