//! `vcall-bot`'s report: the JSON a headless call writes at exit (documented in
//! docs/BOT-REPORT.md; field names are an interface).

use serde::Serialize;

use crate::{CallPhase, CallState, LatencyStats, PeerSecond, SentSecond};

/// What this bot sent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentReport {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub audio_repeats: u64,
    pub datagrams: u64,
    pub bytes: u64,
    pub nacks_received: u64,
    pub retransmissions: u64,
    pub retransmissions_refused: u64,
    /// The video rate control's target at the end of the call (kbit/s).
    pub target_kbps: u32,
    /// Only the base temporal layer (half the frame rate) was being sent at the end.
    pub base_layer_only: bool,
    pub rate_decreases: u64,
    pub timeline: Vec<SentSecondReport>,
}

/// One second of this bot's video sending.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentSecondReport {
    pub t_s: u64,
    pub target_kbps: u32,
    pub layers: u8,
    pub loss_percent: f32,
    pub audio_copies: u8,
}

impl From<&SentSecond> for SentSecondReport {
    fn from(s: &SentSecond) -> Self {
        Self {
            t_s: s.t_s,
            target_kbps: s.target_kbps,
            layers: s.layers,
            loss_percent: s.loss_percent,
            audio_copies: s.audio_copies,
        }
    }
}

/// One second of a peer's video as this bot received it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerSecondReport {
    pub t_s: u64,
    pub frames: u32,
    pub kbps: f64,
    pub latency_p95_ms: Option<f64>,
    pub max_gap_ms: u64,
}

impl From<&PeerSecond> for PeerSecondReport {
    fn from(s: &PeerSecond) -> Self {
        Self {
            t_s: s.t_s,
            frames: s.frames,
            kbps: (s.kbps * 10.0).round() / 10.0,
            latency_p95_ms: s.latency_p95_ms.map(|l| (l * 10.0).round() / 10.0),
            max_gap_ms: s.max_gap_ms,
        }
    }
}

/// Capture→decoded latency in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyReport {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl From<LatencyStats> for LatencyReport {
    fn from(l: LatencyStats) -> Self {
        Self {
            p50: l.p50,
            p95: l.p95,
            max: l.max,
        }
    }
}

/// What this bot saw of one other peer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerReport {
    pub name: Option<String>,
    pub peer_id: u32,
    pub fingerprint: Option<String>,
    pub verified: bool,
    pub key_received: bool,
    pub key_sent: bool,
    pub video_frames_expected: u64,
    pub video_frames_received: u64,
    pub video_frames_decoded: u64,
    pub video_psnr_db: Option<f64>,
    pub audio_frames_expected: u64,
    pub audio_frames_decoded: u64,
    pub audio_frames_fec: u64,
    pub audio_frames_concealed: u64,
    pub audio_peak_hz: Option<f64>,
    pub latency_ms: LatencyReport,
    pub datagrams_lost: u64,
    pub decrypt_failures: u64,
    pub duplicates: u64,
    pub video_freeze_count: u64,
    pub video_freeze_ms_total: u64,
    pub video_max_freeze_ms: u64,
    pub nacks_sent: u64,
    pub retransmissions: u64,
    pub fec_recovered: u64,
    pub video_frames_given_up: u64,
    pub video_playout_delay_ms: u64,
    pub width: u32,
    pub height: u32,
    /// The peer left before this report was written (its figures are from when it left).
    pub left: bool,
    pub timeline: Vec<PeerSecondReport>,
}

/// One key-exchange event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HandshakeLogEntry {
    pub t_ms: u64,
    pub event: String,
    pub peer: Option<u32>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub peer_id: Option<u32>,
    pub fingerprint: String,
    pub room_security_code: String,
    pub sent: SentReport,
    pub peers: Vec<PeerReport>,
    pub handshake_log: Vec<HandshakeLogEntry>,
    pub errors: Vec<String>,
    /// `true` when the call ended with an error (the bot then exits non-zero).
    pub failed: bool,
    /// The link without its secret.
    pub link: String,
    /// Seconds the bot spent in the call.
    pub duration_s: f64,
    /// CPU seconds this process used per second of call (all threads).
    pub cpu_per_second: Option<f64>,
    /// Times the bot reconnected to the relay by itself after losing the connection.
    pub reconnects: u32,
    /// The longest time without remote video across a reconnect (ms).
    pub reconnect_video_gap_ms: u64,
    /// Why the relay denied access (its wire name, e.g. `token-expired`), when it did.
    pub access_denied: Option<String>,
}

impl Report {
    /// Builds the report from the call's final state.
    pub fn from_state(state: &CallState, duration_s: f64, cpu_per_second: Option<f64>) -> Self {
        let mut errors = state.errors.clone();
        let failed = match &state.phase {
            CallPhase::Ended(reason) if reason.is_error() => {
                errors.push(reason.to_string());
                true
            }
            CallPhase::Connecting => {
                errors.push("never joined the call".into());
                true
            }
            _ => false,
        };
        Self {
            name: state.my_name.clone(),
            peer_id: state.my_peer_id.map(|p| p.0),
            fingerprint: state.security.my_fingerprint.clone(),
            room_security_code: state.security.room_security_code.clone(),
            reconnects: state.reconnects,
            reconnect_video_gap_ms: state.reconnect_video_gap_ms,
            access_denied: match &state.phase {
                CallPhase::Ended(reason) => reason.access_denied().map(|r| r.as_str().to_owned()),
                _ => None,
            },
            sent: SentReport {
                video_frames: state.sent.video_frames,
                audio_frames: state.sent.audio_frames,
                audio_repeats: state.sent.audio_repeats,
                datagrams: state.sent.datagrams,
                bytes: state.sent.bytes,
                nacks_received: state.sent.nacks_received,
                retransmissions: state.sent.retransmissions,
                retransmissions_refused: state.sent.retransmissions_refused,
                target_kbps: state.sent.target_kbps,
                base_layer_only: state.sent.base_layer_only,
                rate_decreases: state.sent.rate_decreases,
                timeline: state.sent.timeline.iter().map(Into::into).collect(),
            },
            peers: state
                .peers
                .iter()
                .map(|p| (p, false))
                .chain(state.departed.iter().map(|p| (p, true)))
                .map(|(p, left)| PeerReport {
                    name: p.name.clone(),
                    peer_id: p.peer_id.0,
                    fingerprint: p.fingerprint.clone(),
                    verified: p.verified,
                    key_received: p.key_received,
                    key_sent: p.key_sent,
                    video_frames_expected: p.stats.video_frames_expected,
                    video_frames_received: p.stats.video_frames_received,
                    video_frames_decoded: p.stats.video_frames_decoded,
                    video_psnr_db: p.stats.video_psnr_db,
                    audio_frames_expected: p.stats.audio_frames_expected,
                    audio_frames_decoded: p.stats.audio_frames_decoded,
                    audio_frames_fec: p.stats.audio_frames_fec,
                    audio_frames_concealed: p.stats.audio_frames_concealed,
                    audio_peak_hz: p.stats.audio_peak_hz,
                    latency_ms: p.stats.latency_ms.into(),
                    datagrams_lost: p.stats.datagrams_lost,
                    decrypt_failures: p.stats.decrypt_failures,
                    duplicates: p.stats.duplicates,
                    video_freeze_count: p.stats.video_freeze_count,
                    video_freeze_ms_total: p.stats.video_freeze_ms_total,
                    video_max_freeze_ms: p.stats.video_max_freeze_ms,
                    nacks_sent: p.stats.nacks_sent,
                    retransmissions: p.stats.retransmissions,
                    fec_recovered: p.stats.fec_recovered,
                    video_frames_given_up: p.stats.video_frames_given_up,
                    video_playout_delay_ms: p.stats.video_playout_delay_ms,
                    width: p.stats.width,
                    height: p.stats.height,
                    left,
                    timeline: p.stats.timeline.iter().map(Into::into).collect(),
                })
                .collect(),
            handshake_log: state
                .handshake_log
                .iter()
                .map(|e| HandshakeLogEntry {
                    t_ms: e.t_ms,
                    event: e.event.clone(),
                    peer: e.peer.map(|p| p.0),
                })
                .collect(),
            errors,
            failed,
            link: state.redacted_link.clone(),
            duration_s,
            cpu_per_second,
        }
    }
}

/// CPU seconds (user + system) this process has used, from /proc (Linux only).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PeerState, SecurityState};
    use vcall_proto::PeerId;

    #[test]
    fn report_has_the_documented_field_names() {
        let state = CallState {
            phase: CallPhase::InCall,
            my_name: "alice".into(),
            my_peer_id: Some(PeerId(1)),
            security: SecurityState {
                room_secret: true,
                my_fingerprint: "ab".into(),
                room_security_code: "12345".into(),
                ..SecurityState::default()
            },
            peers: vec![PeerState {
                peer_id: PeerId(2),
                name: Some("bob".into()),
                verified: true,
                ..PeerState::default()
            }],
            ..CallState::default()
        };
        let json = serde_json::to_value(Report::from_state(&state, 1.0, None)).unwrap();
        for key in [
            "name",
            "peer_id",
            "fingerprint",
            "room_security_code",
            "sent",
            "peers",
            "handshake_log",
            "errors",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        for key in [
            "video_frames",
            "audio_frames",
            "audio_repeats",
            "datagrams",
            "bytes",
            "nacks_received",
            "retransmissions",
            "retransmissions_refused",
            "target_kbps",
            "base_layer_only",
            "rate_decreases",
            "timeline",
        ] {
            assert!(json["sent"].get(key).is_some(), "missing sent.{key}");
        }
        let peer = &json["peers"][0];
        for key in [
            "name",
            "peer_id",
            "fingerprint",
            "verified",
            "key_received",
            "key_sent",
            "video_frames_expected",
            "video_frames_received",
            "video_frames_decoded",
            "video_psnr_db",
            "audio_frames_expected",
            "audio_frames_decoded",
            "audio_frames_fec",
            "audio_frames_concealed",
            "audio_peak_hz",
            "latency_ms",
            "datagrams_lost",
            "decrypt_failures",
            "duplicates",
            "video_freeze_count",
            "video_freeze_ms_total",
            "video_max_freeze_ms",
            "nacks_sent",
            "retransmissions",
            "fec_recovered",
            "video_frames_given_up",
            "video_playout_delay_ms",
            "timeline",
        ] {
            assert!(peer.get(key).is_some(), "missing peers[].{key}");
        }
        assert_eq!(peer["name"], "bob");
        assert_eq!(peer["verified"], true);
        assert!(peer["latency_ms"].get("p95").is_some());
        assert_eq!(json["failed"], false);
        assert_eq!(peer["left"], false);
    }

    #[test]
    fn peers_who_left_stay_in_the_report() {
        let state = CallState {
            phase: CallPhase::InCall,
            peers: vec![PeerState {
                peer_id: PeerId(2),
                ..PeerState::default()
            }],
            departed: vec![PeerState {
                peer_id: PeerId(3),
                name: Some("casey".into()),
                ..PeerState::default()
            }],
            ..CallState::default()
        };
        let r = Report::from_state(&state, 1.0, None);
        assert_eq!(r.peers.len(), 2);
        assert!(!r.peers[0].left);
        assert!(r.peers[1].left);
        assert_eq!(r.peers[1].name.as_deref(), Some("casey"));
    }

    #[test]
    fn an_ended_call_with_an_error_is_a_failure_with_its_reason() {
        let state = CallState {
            phase: CallPhase::Ended(crate::EndReason::RelayRefused {
                code: vcall_proto::control::ErrorCode::RoomFull,
                message: "room full".into(),
            }),
            ..CallState::default()
        };
        let r = Report::from_state(&state, 0.0, None);
        assert!(r.failed);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("room full"), "{:?}", r.errors);
        assert_eq!(r.access_denied, None);
    }

    #[test]
    fn an_access_denial_names_its_reason() {
        for reason in vcall_proto::DenyReason::ALL {
            let state = CallState {
                phase: CallPhase::Ended(crate::EndReason::RelayRefused {
                    code: vcall_proto::control::ErrorCode::AccessDenied,
                    message: reason.message("for team-a"),
                }),
                ..CallState::default()
            };
            let r = Report::from_state(&state, 0.0, None);
            assert!(r.failed);
            assert_eq!(r.access_denied.as_deref(), Some(reason.as_str()));
        }
    }

    #[test]
    fn cpu_time_is_readable_on_linux() {
        let t = process_cpu_seconds().expect("/proc/self/stat");
        assert!(t >= 0.0);
    }
}
