//! vcall-load's pieces without I/O: the probe every synthetic datagram carries (which
//! publisher, which sequence number, when it was sent), the tally of what each receiver got,
//! the relay's CPU and memory read from `/proc`, and the report (printed table and JSON).
//!
//! The relay is blind to payloads, so a load client needs no codec and no E2EE: valid
//! datagram headers and a probe are all it forwards.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Bytes of the probe at the start of every payload: `publisher (4) · sequence (8) · sent_us (8)`.
pub const PROBE_LEN: usize = 20;

/// What a datagram's payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The publisher's index in the run (not its peer id, which the relay assigns).
    pub publisher: u32,
    pub sequence: u64,
    /// Microseconds on the load tool's clock (one process, so one clock for both ends).
    pub sent_us: u64,
}

impl Probe {
    /// Writes the probe into the first [`PROBE_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.publisher.to_be_bytes());
        out[4..12].copy_from_slice(&self.sequence.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_us.to_be_bytes());
    }

    /// Reads a probe; `None` if `payload` is too short.
    pub fn read(payload: &[u8]) -> Option<Self> {
        if payload.len() < PROBE_LEN {
            return None;
        }
        Some(Self {
            publisher: u32::from_be_bytes(payload[0..4].try_into().ok()?),
            sequence: u64::from_be_bytes(payload[4..12].try_into().ok()?),
            sent_us: u64::from_be_bytes(payload[12..20].try_into().ok()?),
        })
    }
}

/// The measured window, on the probe clock: only datagrams sent inside it count, at the
/// publisher and at every receiver alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_us: u64,
    pub end_us: u64,
}

impl Window {
    pub fn contains(&self, sent_us: u64) -> bool {
        (self.start_us..self.end_us).contains(&sent_us)
    }
}

/// What one receiver got from each publisher of its room inside the window.
#[derive(Debug, Clone)]
pub struct ReceiverTally {
    window: Window,
    received: HashMap<u32, u64>,
    duplicates: u64,
    last_sequence: HashMap<u32, u64>,
    latency_us: Histogram<u64>,
}

impl ReceiverTally {
    pub fn new(window: Window) -> Self {
        Self {
            window,
            received: HashMap::new(),
            duplicates: 0,
            last_sequence: HashMap::new(),
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    /// Counts one datagram's probe, received at `now_us`.
    pub fn record(&mut self, probe: Probe, now_us: u64) {
        if !self.window.contains(probe.sent_us) {
            return;
        }
        // Sequences from one publisher only grow; a repeat of the last is a duplicate.
        if self.last_sequence.get(&probe.publisher) == Some(&probe.sequence) {
            self.duplicates += 1;
            return;
        }
        self.last_sequence.insert(probe.publisher, probe.sequence);
        *self.received.entry(probe.publisher).or_default() += 1;
        let _ = self
            .latency_us
            .record(now_us.saturating_sub(probe.sent_us).max(1));
    }

    /// Datagrams from `publisher` counted.
    pub fn received_from(&self, publisher: u32) -> u64 {
        self.received.get(&publisher).copied().unwrap_or(0)
    }
}

/// One publisher's count of what it sent inside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherTally {
    pub sent: u64,
}

/// A relay's CPU time and resident memory, from `/proc/PID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// User + system time in clock ticks.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
}

impl ProcessSample {
    /// Reads `/proc/PID/stat` and `/proc/PID/status`.
    pub fn read(pid: u32) -> std::io::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Self::parse(&stat, &status).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc format")
        })
    }

    /// Parses the two files' text (fields 14 and 15 of `stat` after the command name; the
    /// `VmRSS` line of `status`).
    pub fn parse(stat: &str, status: &str) -> Option<Self> {
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // after_name starts at field 3 (state): utime is field 14, stime 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(Self {
            cpu_ticks: utime + stime,
            rss_bytes: rss_kb * 1024,
        })
    }
}

/// Cores a process used between two samples `elapsed` apart (`ticks_per_sec` from the OS,
/// 100 on Linux).
pub fn cores_used(
    before: ProcessSample,
    after: ProcessSample,
    elapsed: Duration,
    ticks_per_sec: u64,
) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || ticks_per_sec == 0 {
        return 0.0;
    }
    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_sec as f64 / secs
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// The relay's resources over the measured window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RelayUsage {
    pub cores: f64,
    /// Before the first connection.
    pub rss_mib_before: f64,
    /// At the end of the measured window.
    pub rss_mib_after: f64,
    /// (RSS after − RSS before) / connections, KiB.
    pub rss_kib_per_connection: f64,
}

/// The whole run's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub rooms: u32,
    pub publishers_per_room: u32,
    pub subscribers_per_room: u32,
    pub video_kbps: u32,
    pub audio: bool,
    pub measured_secs: f64,
    pub connections: u32,
    pub connection_failures: u32,
    pub join_ms: LatencyMs,
    /// (receiver, publisher track) pairs: every member receives every other publisher's
    /// track (its video and audio datagrams).
    pub subscriber_tracks: u64,
    pub datagrams_sent: u64,
    pub datagrams_expected: u64,
    pub datagrams_received: u64,
    pub duplicates: u64,
    /// Received / expected over every track.
    pub delivered: f64,
    /// The worst track's delivery.
    pub worst_track_delivered: f64,
    /// Tracks with ≥ 99.5 % delivered.
    pub tracks_at_995: u64,
    pub latency_ms: LatencyMs,
    pub received_datagrams_per_sec: f64,
    pub relay: Option<RelayUsage>,
    /// Tracks at ≥ 99.5 % per relay core (when the relay's usage is known).
    pub subscriber_tracks_per_core: Option<f64>,
}

/// Everything the run gathered, folded into a [`Report`].
pub struct RunTotals<'a> {
    pub rooms: u32,
    pub publishers_per_room: u32,
    pub subscribers_per_room: u32,
    pub video_kbps: u32,
    pub audio: bool,
    pub window: Window,
    pub connections: u32,
    pub connection_failures: u32,
    pub join_us: &'a Histogram<u64>,
    /// Per room: each publisher's index and tally, and each receiver's tally with the index of
    /// the publisher it is itself (receivers do not receive their own datagrams).
    pub room_results: &'a [RoomResult],
    pub relay: Option<RelayUsage>,
}

/// What one room's members measured.
pub struct RoomResult {
    pub publishers: Vec<(u32, PublisherTally)>,
    pub receivers: Vec<(Option<u32>, ReceiverTally)>,
}

impl RunTotals<'_> {
    pub fn report(&self) -> Report {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid");
        let (mut tracks, mut at_995, mut sent, mut expected, mut received, mut duplicates) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut worst = 1.0f64;
        for room in self.room_results {
            sent += room.publishers.iter().map(|(_, t)| t.sent).sum::<u64>();
            for (own, tally) in &room.receivers {
                let _ = latency.add(&tally.latency_us);
                duplicates += tally.duplicates;
                for (index, publisher) in &room.publishers {
                    if Some(*index) == *own || publisher.sent == 0 {
                        continue;
                    }
                    tracks += 1;
                    let got = tally.received_from(*index).min(publisher.sent);
                    expected += publisher.sent;
                    received += got;
                    let share = got as f64 / publisher.sent as f64;
                    worst = worst.min(share);
                    if share >= 0.995 {
                        at_995 += 1;
                    }
                }
            }
        }
        let secs = (self.window.end_us - self.window.start_us) as f64 / 1e6;
        Report {
            rooms: self.rooms,
            publishers_per_room: self.publishers_per_room,
            subscribers_per_room: self.subscribers_per_room,
            video_kbps: self.video_kbps,
            audio: self.audio,
            measured_secs: secs,
            connections: self.connections,
            connection_failures: self.connection_failures,
            join_ms: LatencyMs::of(self.join_us),
            subscriber_tracks: tracks,
            datagrams_sent: sent,
            datagrams_expected: expected,
            datagrams_received: received,
            duplicates,
            delivered: if expected == 0 {
                0.0
            } else {
                received as f64 / expected as f64
            },
            worst_track_delivered: if tracks == 0 { 0.0 } else { worst },
            tracks_at_995: at_995,
            latency_ms: LatencyMs::of(&latency),
            received_datagrams_per_sec: if secs > 0.0 {
                received as f64 / secs
            } else {
                0.0
            },
            relay: self.relay,
            subscriber_tracks_per_core: self
                .relay
                .filter(|r| r.cores > 0.0)
                .map(|r| at_995 as f64 / r.cores),
        }
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k:<34} {v}\n"));
        row(
            "rooms × (publishers + subscribers)",
            format!(
                "{} × ({} + {}) = {} connections, {} failed",
                self.rooms,
                self.publishers_per_room,
                self.subscribers_per_room,
                self.connections,
                self.connection_failures
            ),
        );
        row(
            "media per publisher",
            format!(
                "{} kbit/s video{}",
                self.video_kbps,
                if self.audio { " + audio" } else { "" }
            ),
        );
        row(
            "join → Welcome ms",
            format!(
                "p50 {:.2}  p99 {:.2}  max {:.2}",
                self.join_ms.p50, self.join_ms.p99, self.join_ms.max
            ),
        );
        row("subscriber tracks", self.subscriber_tracks.to_string());
        row(
            "delivered",
            format!(
                "{:.3} % (worst track {:.3} %, {} tracks ≥ 99.5 %)",
                self.delivered * 100.0,
                self.worst_track_delivered * 100.0,
                self.tracks_at_995
            ),
        );
        row(
            "latency ms",
            format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
                self.latency_ms.p50, self.latency_ms.p95, self.latency_ms.p99, self.latency_ms.max
            ),
        );
        row(
            "received datagrams/s",
            format!("{:.0}", self.received_datagrams_per_sec),
        );
        if let Some(relay) = &self.relay {
            row(
                "relay CPU",
                format!(
                    "{:.3} cores; RSS {:.1} → {:.1} MiB ({:.1} KiB per connection)",
                    relay.cores,
                    relay.rss_mib_before,
                    relay.rss_mib_after,
                    relay.rss_kib_per_connection
                ),
            );
        }
        if let Some(per_core) = self.subscriber_tracks_per_core {
            row("subscriber-tracks per relay core", format!("{per_core:.0}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_round_trips_and_short_payloads_have_none() {
        let probe = Probe {
            publisher: 7,
            sequence: 1 << 40,
            sent_us: 123_456_789,
        };
        let mut bytes = [0u8; 32];
        probe.write(&mut bytes);
        assert_eq!(Probe::read(&bytes), Some(probe));
        assert_eq!(Probe::read(&bytes[..PROBE_LEN - 1]), None);
    }

    #[test]
    fn a_tally_counts_inside_the_window_only_and_skips_duplicates() {
        let window = Window {
            start_us: 1_000,
            end_us: 2_000,
        };
        let mut tally = ReceiverTally::new(window);
        let probe = |sequence, sent_us| Probe {
            publisher: 1,
            sequence,
            sent_us,
        };
        tally.record(probe(1, 500), 600); // before the window
        tally.record(probe(2, 1_000), 1_500);
        tally.record(probe(2, 1_000), 1_600); // duplicate
        tally.record(probe(3, 1_999), 2_100);
        tally.record(probe(4, 2_000), 2_100); // after
        assert_eq!(tally.received_from(1), 2);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.received_from(9), 0);
        assert_eq!(LatencyMs::of(&tally.latency_us).max, 0.5);
    }

    #[test]
    fn the_report_counts_every_member_but_the_publisher_itself() {
        let window = Window {
            start_us: 0,
            end_us: 1_000_000,
        };
        // One room: publishers 0 and 1 (each also a receiver), one pure subscriber.
        let mut r0 = ReceiverTally::new(window);
        let mut r1 = ReceiverTally::new(window);
        let mut sub = ReceiverTally::new(window);
        for seq in 0..100 {
            let p0 = Probe {
                publisher: 0,
                sequence: seq,
                sent_us: seq * 1000,
            };
            let p1 = Probe { publisher: 1, ..p0 };
            r1.record(p0, p0.sent_us + 2_000);
            if seq % 10 != 0 {
                r0.record(p1, p1.sent_us + 2_000); // 10 % lost
            }
            sub.record(p0, p0.sent_us + 2_000);
            sub.record(p1, p1.sent_us + 2_000);
        }
        let rooms = [RoomResult {
            publishers: vec![
                (0, PublisherTally { sent: 100 }),
                (1, PublisherTally { sent: 100 }),
            ],
            receivers: vec![(Some(0), r0), (Some(1), r1), (None, sub)],
        }];
        let join = Histogram::<u64>::new(3).unwrap();
        let report = RunTotals {
            rooms: 1,
            publishers_per_room: 2,
            subscribers_per_room: 1,
            video_kbps: 500,
            audio: false,
            window,
            connections: 3,
            connection_failures: 0,
            join_us: &join,
            room_results: &rooms,
            relay: Some(RelayUsage {
                cores: 0.5,
                rss_mib_before: 10.0,
                rss_mib_after: 11.0,
                rss_kib_per_connection: 341.3,
            }),
        }
        .report();
        assert_eq!(report.subscriber_tracks, 4, "r0←1, r1←0, sub←0, sub←1");
        assert_eq!(report.datagrams_expected, 400);
        assert_eq!(report.datagrams_received, 390);
        assert!((report.worst_track_delivered - 0.9).abs() < 1e-9);
        assert_eq!(report.tracks_at_995, 3);
        assert_eq!(report.subscriber_tracks_per_core, Some(6.0));
        assert!((report.latency_ms.p50 - 2.0).abs() < 0.01);
        assert!(report.table().contains("subscriber-tracks per relay core"));
    }

    #[test]
    fn proc_files_give_cpu_ticks_and_rss() {
        let stat = "4242 (vcall relay) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 1000000 300 18446744073709551615";
        let status = "Name:\tvcall-relay\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\n";
        let sample = ProcessSample::parse(stat, status).unwrap();
        assert_eq!(sample.cpu_ticks, 300);
        assert_eq!(sample.rss_bytes, 2048 * 1024);
        let later = ProcessSample {
            cpu_ticks: 500,
            ..sample
        };
        assert!((cores_used(sample, later, Duration::from_secs(2), 100) - 1.0).abs() < 1e-9);
        assert_eq!(ProcessSample::parse("garbage", status), None);
    }
}
