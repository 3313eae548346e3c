//! The command line: addresses, seed, duration, and the impairments as flags for both
//! directions (`--loss 5`), overridden per direction (`--up-loss 1`, `--down-loss 10`).
//! [`Args::links`] turns them into the two [`LinkConfig`]s, rejecting bad combinations with a
//! message naming the flag.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;
use vcall_netsim::{BurstLoss, LinkConfig};

/// Mean burst length (packets) when `--burst-loss` is given without `--burst-len`.
pub const DEFAULT_BURST_LEN: f64 = 3.0;

/// A UDP impairment proxy: clients send to --listen, packets go to --upstream through their
/// own socket per client, impaired per direction (up = client→upstream, down =
/// upstream→client). Flags without a direction apply to both; --up-*/--down-* override them
/// (blackouts add up). Decisions are seeded and come from vcall-netsim's link model.
#[derive(Debug, Clone, Parser)]
#[command(name = "vcall-netem", version)]
pub struct Args {
    /// Address clients send to (e.g. 127.0.0.1:4434; port 0 picks a free one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address packets are forwarded to (e.g. the relay, 127.0.0.1:4433).
    #[arg(long, value_parser = parse_upstream)]
    pub upstream: SocketAddr,
    /// Seed of every random decision (client k's links use seeds derived from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m); default: until Ctrl-C or
    /// SIGTERM.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Give every client a new upstream socket (a new source port) at this time since the
    /// start, as a NAT rebinding or a network change would (repeatable).
    #[arg(long, value_name = "TIME", value_parser = parse_seconds)]
    pub rebind_at: Vec<Duration>,
    /// Also print the report as one line of JSON (the last line of stdout).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub both: Impairments,
    #[command(flatten)]
    pub up: UpImpairments,
    #[command(flatten)]
    pub down: DownImpairments,
}

/// The impairment flags of one scope (both directions, up or down), as given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub loss: Option<f64>,
    pub burst_loss: Option<f64>,
    pub burst_len: Option<f64>,
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    pub reorder: Option<f64>,
    pub reorder_delay: Option<Duration>,
    pub duplicate: Option<f64>,
    pub rate: Option<u64>,
    pub queue: Option<usize>,
    pub blackouts: Vec<(Duration, Duration)>,
}

macro_rules! impairment_flags {
    ($name:ident, $heading:literal, $prefix:literal, $what:literal) => {
        #[derive(Debug, Clone, Default, clap::Args)]
        #[command(next_help_heading = $heading)]
        pub struct $name {
            #[arg(
                id = concat!($prefix, "loss"),
                long = concat!($prefix, "loss"),
                value_name = "PCT", value_parser = parse_percent,
                help = concat!("Random loss, % of packets ", $what, ".")
            )]
            pub loss: Option<f64>,
            #[arg(
                id = concat!($prefix, "burst-loss"),
                long = concat!($prefix, "burst-loss"),
                value_name = "PCT", value_parser = parse_burst_percent,
                help = concat!("Burst (Gilbert–Elliott) loss: average % of packets lost ", $what, ".")
            )]
            pub burst_loss: Option<f64>,
            #[arg(
                id = concat!($prefix, "burst-len"),
                long = concat!($prefix, "burst-len"),
                value_name = "PACKETS", value_parser = parse_burst_len,
                help = concat!("Mean burst length in packets (default 3) ", $what, ".")
            )]
            pub burst_len: Option<f64>,
            #[arg(
                id = concat!($prefix, "delay"),
                long = concat!($prefix, "delay"),
                value_name = "MS", value_parser = parse_millis,
                help = concat!("One-way delay in ms ", $what, ".")
            )]
            pub delay: Option<Duration>,
            #[arg(
                id = concat!($prefix, "jitter"),
                long = concat!($prefix, "jitter"),
                value_name = "MS", value_parser = parse_millis,
                help = concat!("Jitter in ms: each packet's delay is uniform in delay±jitter (≤ delay) ", $what, ".")
            )]
            pub jitter: Option<Duration>,
            #[arg(
                id = concat!($prefix, "reorder"),
                long = concat!($prefix, "reorder"),
                value_name = "PCT", value_parser = parse_percent,
                help = concat!("% of packets held back by the reorder delay ", $what, ".")
            )]
            pub reorder: Option<f64>,
            #[arg(
                id = concat!($prefix, "reorder-delay"),
                long = concat!($prefix, "reorder-delay"),
                value_name = "MS", value_parser = parse_millis,
                help = concat!("Extra delay of a reordered packet in ms (default 30) ", $what, ".")
            )]
            pub reorder_delay: Option<Duration>,
            #[arg(
                id = concat!($prefix, "duplicate"),
                long = concat!($prefix, "duplicate"),
                value_name = "PCT", value_parser = parse_percent,
                help = concat!("% of packets sent twice ", $what, ".")
            )]
            pub duplicate: Option<f64>,
            #[arg(
                id = concat!($prefix, "rate"),
                long = concat!($prefix, "rate"),
                value_name = "KBIT", value_parser = parse_rate,
                help = concat!("Rate cap in kbit/s ", $what, ".")
            )]
            pub rate: Option<u64>,
            #[arg(
                id = concat!($prefix, "queue"),
                long = concat!($prefix, "queue"),
                value_name = "BYTES", value_parser = parse_queue,
                help = concat!("Bytes the rate-capped queue holds before tail drop (default 262144) ", $what, ".")
            )]
            pub queue: Option<usize>,
            #[arg(
                id = concat!($prefix, "blackout"),
                long = concat!($prefix, "blackout"),
                value_name = "FROM+LEN", value_parser = parse_blackout,
                help = concat!("Drop everything from FROM for LEN (seconds or 500ms, e.g. 10s+1s), repeatable, ", $what, ".")
            )]
            pub blackout: Vec<(Duration, Duration)>,
        }

        impl From<&$name> for Scope {
            fn from(a: &$name) -> Self {
                Scope {
                    loss: a.loss,
                    burst_loss: a.burst_loss,
                    burst_len: a.burst_len,
                    delay: a.delay,
                    jitter: a.jitter,
                    reorder: a.reorder,
                    reorder_delay: a.reorder_delay,
                    duplicate: a.duplicate,
                    rate: a.rate,
                    queue: a.queue,
                    blackouts: a.blackout.clone(),
                }
            }
        }
    };
}

impairment_flags!(Impairments, "Both directions", "", "each way");
impairment_flags!(
    UpImpairments,
    "Client → upstream (override)",
    "up-",
    "client→upstream"
);
impairment_flags!(
    DownImpairments,
    "Upstream → client (override)",
    "down-",
    "upstream→client"
);

impl Args {
    /// The up and down link configurations, or why the flags do not make sense.
    pub fn links(&self) -> Result<(LinkConfig, LinkConfig), String> {
        let both = Scope::from(&self.both);
        let up = resolve(&both, &Scope::from(&self.up), "up-")?;
        let down = resolve(&both, &Scope::from(&self.down), "down-")?;
        // A flag for both directions that neither direction can use.
        for (flag, set, needs, needed) in [
            (
                "--burst-len",
                both.burst_len.is_some(),
                "--burst-loss",
                up.burst.is_some() || down.burst.is_some(),
            ),
            (
                "--queue",
                both.queue.is_some(),
                "--rate",
                up.rate_bps.is_some() || down.rate_bps.is_some(),
            ),
            (
                "--reorder-delay",
                both.reorder_delay.is_some(),
                "--reorder",
                up.reorder > 0.0 || down.reorder > 0.0,
            ),
        ] {
            if set && !needed {
                return Err(format!("{flag} needs {needs} (in some direction)"));
            }
        }
        Ok((up, down))
    }
}

/// One direction: its own flags over the flags for both.
fn resolve(both: &Scope, own: &Scope, prefix: &str) -> Result<LinkConfig, String> {
    let mut c = LinkConfig::perfect();
    let pick = |a: Option<f64>, b: Option<f64>| a.or(b).unwrap_or(0.0) / 100.0;
    c.loss = pick(own.loss, both.loss);
    c.reorder = pick(own.reorder, both.reorder);
    c.duplicate = pick(own.duplicate, both.duplicate);
    let burst = own.burst_loss.or(both.burst_loss);
    if own.burst_len.is_some() && burst.is_none() {
        return Err(format!(
            "--{prefix}burst-len needs --{prefix}burst-loss or --burst-loss"
        ));
    }
    if let Some(avg) = burst.filter(|a| *a > 0.0) {
        let len = own
            .burst_len
            .or(both.burst_len)
            .unwrap_or(DEFAULT_BURST_LEN);
        c.burst = Some(BurstLoss::with_average(avg / 100.0, len));
    }
    let delay = own.delay.or(both.delay).unwrap_or(Duration::ZERO);
    let jitter = own.jitter.or(both.jitter).unwrap_or(Duration::ZERO);
    if jitter > delay {
        let flag = |own: bool, name: &str| {
            if own {
                format!("--{prefix}{name}")
            } else {
                format!("--{name}")
            }
        };
        return Err(format!(
            "{} {} ms is more than {} {} ms ({}direction): the delay varies within \
             delay±jitter, so the jitter must be at most the delay",
            flag(own.jitter.is_some(), "jitter"),
            jitter.as_secs_f64() * 1e3,
            flag(own.delay.is_some(), "delay"),
            delay.as_secs_f64() * 1e3,
            prefix.trim_end_matches('-').to_string() + " ",
        ));
    }
    c.delay = delay - jitter;
    c.jitter = jitter * 2;
    if own.reorder_delay.is_some() && c.reorder == 0.0 {
        return Err(format!(
            "--{prefix}reorder-delay needs --{prefix}reorder or --reorder"
        ));
    }
    if let Some(d) = own.reorder_delay.or(both.reorder_delay) {
        c.reorder_delay = d;
    }
    c.rate_bps = own.rate.or(both.rate).map(|kbit| kbit * 1000);
    if own.queue.is_some() && c.rate_bps.is_none() {
        return Err(format!("--{prefix}queue needs --{prefix}rate or --rate"));
    }
    if let Some(q) = own.queue.or(both.queue) {
        c.queue_bytes = q;
    }
    let mut blackouts = both.blackouts.clone();
    blackouts.extend(own.blackouts.iter().copied());
    blackouts.sort();
    c.blackouts = blackouts;
    Ok(c)
}

/// `host:port` or an address, resolved once at start.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn number(s: &str, what: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number ({what})"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?}: {what} must be a non-negative number"));
    }
    Ok(v)
}

/// `5`, `5%` or `0.5`: a percentage in 0..=100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v = number(s.trim().trim_end_matches('%'), "a percentage")?;
    if v > 100.0 {
        return Err(format!("{s}: a percentage is at most 100"));
    }
    Ok(v)
}

/// A burst loss average below 100 % (100 % is `--loss 100`).
pub fn parse_burst_percent(s: &str) -> Result<f64, String> {
    let v = parse_percent(s)?;
    if v >= 100.0 {
        return Err(format!(
            "{s}: burst loss must average below 100% (use --loss 100 to drop everything)"
        ));
    }
    Ok(v)
}

/// A mean burst length of at least one packet.
pub fn parse_burst_len(s: &str) -> Result<f64, String> {
    let v = number(s, "a burst length in packets")?;
    if v < 1.0 {
        return Err(format!("{s}: a mean burst is at least 1 packet"));
    }
    Ok(v)
}

/// A duration in `default_unit` seconds unless it ends in `ms`, `s` or `m`.
fn parse_time(s: &str, default_unit: f64) -> Result<Duration, String> {
    let t = s.trim();
    let (digits, unit) = if let Some(d) = t.strip_suffix("ms") {
        (d, 1e-3)
    } else if let Some(d) = t.strip_suffix('s') {
        (d, 1.0)
    } else if let Some(d) = t.strip_suffix('m') {
        (d, 60.0)
    } else {
        (t, default_unit)
    };
    let v = number(digits, "a time")?;
    Duration::try_from_secs_f64(v * unit).map_err(|e| format!("{s}: {e}"))
}

/// Milliseconds (`20`, `2.5`, `20ms`, `0.02s`).
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    parse_time(s, 1e-3)
}

/// Seconds (`30`, `1.5`, `500ms`, `2m`).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    parse_time(s, 1.0)
}

/// A rate cap in kbit/s, at least 1.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of kbit/s"))?;
    if v == 0 {
        return Err("a rate cap of 0 kbit/s passes nothing: use --loss 100".into());
    }
    v.checked_mul(1000)
        .ok_or_else(|| format!("{s}: rate too large"))?;
    Ok(v)
}

/// A queue size in bytes, at least 1.
pub fn parse_queue(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of bytes"))?;
    if v == 0 {
        return Err("a queue of 0 bytes drops everything: use --loss 100".into());
    }
    Ok(v)
}

/// `FROM+LEN`, each in seconds unless given a unit: the interval `(FROM, FROM+LEN)`.
pub fn parse_blackout(s: &str) -> Result<(Duration, Duration), String> {
    let (from, len) = s
        .split_once('+')
        .ok_or_else(|| format!("{s:?}: a blackout is FROM+LEN, e.g. 10s+1s"))?;
    let from = parse_seconds(from)?;
    let len = parse_seconds(len)?;
    if len.is_zero() {
        return Err(format!("{s}: a blackout lasts longer than 0"));
    }
    Ok((from, from + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec![
            "vcall-netem",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ];
        all.extend_from_slice(flags);
        Args::try_parse_from(all)
    }

    fn links(flags: &[&str]) -> Result<(LinkConfig, LinkConfig), String> {
        args(flags).map_err(|e| e.to_string())?.links()
    }

    #[test]
    fn flags_for_both_directions_are_overridden_per_direction() {
        let (up, down) = links(&[
            "--loss",
            "5",
            "--down-loss",
            "20%",
            "--delay",
            "20",
            "--jitter",
            "5",
            "--up-rate",
            "600",
            "--queue",
            "3000",
            "--blackout",
            "10s+1s",
            "--down-blackout",
            "500ms+0.25",
            "--burst-loss",
            "5",
        ])
        .unwrap();
        assert_eq!(up.loss, 0.05);
        assert_eq!(down.loss, 0.2);
        // 20 ms ± 5 ms: 15 ms plus uniform 0..=10 ms.
        assert_eq!(up.delay, Duration::from_millis(15));
        assert_eq!(up.jitter, Duration::from_millis(10));
        assert_eq!(up.rate_bps, Some(600_000));
        assert_eq!(up.queue_bytes, 3000);
        assert_eq!(down.rate_bps, None);
        assert_eq!(
            up.blackouts,
            vec![(Duration::from_secs(10), Duration::from_secs(11))]
        );
        assert_eq!(
            down.blackouts,
            vec![
                (Duration::from_millis(500), Duration::from_millis(750)),
                (Duration::from_secs(10), Duration::from_secs(11)),
            ]
        );
        assert_eq!(
            up.burst,
            Some(BurstLoss::with_average(0.05, DEFAULT_BURST_LEN))
        );
        assert_eq!(up.reorder, 0.0);
    }

    #[test]
    fn no_flags_is_a_perfect_link_both_ways() {
        let (up, down) = links(&[]).unwrap();
        assert_eq!(up, LinkConfig::perfect());
        assert_eq!(down, LinkConfig::perfect());
        let a = args(&["--duration", "1.5", "--seed", "9", "--json"]).unwrap();
        assert_eq!(a.duration, Some(Duration::from_millis(1500)));
        assert_eq!((a.seed, a.json), (9, true));
    }

    #[test]
    fn bad_flags_are_refused_with_a_message_naming_them() {
        for (flags, needle) in [
            (&["--loss", "150"][..], "at most 100"),
            (&["--loss", "abc"], "not a number"),
            (&["--up-loss=-1"], "non-negative"),
            (&["--blackout", "10s"], "FROM+LEN"),
            (&["--blackout", "1+0"], "longer than 0"),
            (&["--rate", "0"], "0 kbit/s"),
            (&["--burst-loss", "100"], "below 100%"),
            (
                &["--burst-len", "0.5", "--burst-loss", "5"],
                "at least 1 packet",
            ),
            (&["--nonsense"], "--nonsense"),
        ] {
            let err = args(flags).unwrap_err().to_string();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
        for (flags, needle) in [
            (
                &["--delay", "2", "--jitter", "5"][..],
                "--jitter 5 ms is more than --delay 2 ms",
            ),
            (
                &["--delay", "2", "--down-jitter", "3"],
                "--down-jitter 3 ms is more than --delay 2 ms (down direction)",
            ),
            (
                &["--up-queue", "100"],
                "--up-queue needs --up-rate or --rate",
            ),
            (&["--queue", "100"], "--queue needs --rate"),
            (&["--down-burst-len", "4"], "--down-burst-len needs"),
            (&["--reorder-delay", "4"], "--reorder-delay needs --reorder"),
        ] {
            let err = links(flags).unwrap_err();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
        let missing = Args::try_parse_from(["vcall-netem", "--listen", "127.0.0.1:0"]);
        assert!(missing.unwrap_err().to_string().contains("--upstream"));
    }
}
