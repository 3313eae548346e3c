//! `CallCore` through the in-memory network: two- and three-party calls (keys, media, leave,
//! rekey), keyframe policy, mute gating and timers. No sockets, threads or sleeps.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vcall_crypto::{Identity, OsRandom, RoomKeys, RoomSecret};
use vcall_netsim::LinkConfig;
use vcall_proto::fragment::FragmentHeader;
use vcall_proto::media::{AudioMeta, NackList, VideoMeta};
use vcall_proto::{DatagramKind, PeerId};

use super::*;
use crate::sim::{MemberLinks, SimCall, sent_of_kind};

/// RSA identities are slow to make: a few, shared by every test.
fn identity(i: usize) -> Arc<Identity> {
    static IDS: OnceLock<Vec<Arc<Identity>>> = OnceLock::new();
    IDS.get_or_init(|| {
        (0..4)
            .map(|_| Arc::new(Identity::generate(2048).expect("identity")))
            .collect()
    })[i]
        .clone()
}

fn room() -> RoomKeys {
    static SECRET: OnceLock<RoomSecret> = OnceLock::new();
    let secret = SECRET.get_or_init(|| RoomSecret::generate(&mut OsRandom::new()));
    RoomKeys::derive("core-tests", Some(secret)).expect("room keys")
}

fn lan() -> MemberLinks {
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(2),
        ..LinkConfig::perfect()
    };
    MemberLinks {
        up: link.clone(),
        down: link,
    }
}

fn video(frame_number: u32, keyframe: bool, size: usize) -> LocalMedia {
    video_at(frame_number, keyframe, size, 0, 0)
}

/// A video frame of temporal layer `layer` captured at `capture_time_us` (the simulated
/// wall clock).
fn video_at(
    frame_number: u32,
    keyframe: bool,
    size: usize,
    layer: u8,
    capture_time_us: u64,
) -> LocalMedia {
    let meta = VideoMeta {
        capture_time_us,
        frame_number,
        keyframe,
        test_pattern: false,
        layer,
        previous_layer: 0,
        width: 640,
        height: 360,
    };
    let au: Vec<u8> = (0..size).map(|i| (i as u32 ^ frame_number) as u8).collect();
    LocalMedia::video(meta, &au)
}

/// An audio frame captured at `capture_time_us` (the simulated wall clock).
fn audio(sequence: u32, capture_time_us: u64) -> LocalMedia {
    LocalMedia::audio(
        AudioMeta {
            capture_time_us,
            sequence,
        },
        &[0xAB; 60],
    )
}

/// Sends 30 fps video (a keyframe first) and 50 fps audio from `from` for `frames` frames.
fn stream(call: &mut SimCall, from: PeerId, first: u32, frames: u32) {
    for n in first..first + frames {
        let now_us = call.unix_us();
        call.send_media(from, video_at(n, n == first, 3000, 0, now_us));
        call.send_media(from, audio(n * 2, now_us));
        call.send_media(from, audio(n * 2 + 1, now_us));
        call.run_for(Duration::from_millis(33));
    }
}

fn state(call: &SimCall, peer: PeerId) -> Arc<CallState> {
    call.member(peer).out.state.clone().expect("published")
}

fn decoded_from(call: &SimCall, at: PeerId, from: PeerId) -> Vec<u32> {
    call.member(at)
        .out
        .decoded
        .iter()
        .filter(|d| d.peer == from)
        .map(|d| d.meta.frame_number)
        .collect()
}

fn keyed_call(n: usize, seed: u64) -> (SimCall, Vec<PeerId>) {
    let mut call = SimCall::new(seed);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(call.join(&format!("member{i}"), identity(i), room(), lan()));
        call.run_for(Duration::from_millis(500));
    }
    call.run_for(Duration::from_secs(2));
    (call, ids)
}

#[test]
fn two_members_exchange_keys_both_ways_and_media_arrives_in_order() {
    let (mut call, ids) = keyed_call(2, 1);
    let (a, b) = (ids[0], ids[1]);
    for (me, other) in [(a, b), (b, a)] {
        let s = state(&call, me);
        assert_eq!(s.phase, CallPhase::InCall);
        let p = s
            .peers
            .iter()
            .find(|p| p.peer_id == other)
            .expect("peer listed");
        assert!(p.verified && p.key_received && p.key_sent, "{p:?}");
        assert_eq!(p.name.as_deref(), Some(call.member(other).name.as_str()));
    }
    assert_eq!(
        state(&call, a).security.room_security_code,
        state(&call, b).security.room_security_code
    );
    stream(&mut call, a, 0, 60);
    call.run_for(Duration::from_millis(200));
    let frames = decoded_from(&call, b, a);
    assert_eq!(frames, (0..60).collect::<Vec<_>>());
    let d = &call.member(b).out.decoded[0];
    assert_eq!(
        d.access_unit().len(),
        3000,
        "the access unit, without the meta"
    );
    assert_eq!(d.access_unit()[1], 1);
    let played = call
        .member(b)
        .out
        .played
        .iter()
        .filter(|p| p.peer == a)
        .count();
    assert_eq!(played, 120);
    // Heartbeats flow without media, and statistics are published.
    call.run_for(Duration::from_secs(2));
    let s = state(&call, b);
    let p = s.peers.iter().find(|p| p.peer_id == a).unwrap();
    assert_eq!(p.stats.video_frames_received, 60);
    assert_eq!(p.stats.video_frames_expected, 60);
    assert_eq!(p.stats.decrypt_failures, 0);
    assert!(sent_of_kind(&call.member(a).out, DatagramKind::Heartbeat) >= 4);
}

#[test]
fn three_members_all_hold_keys_and_a_leave_rekeys_and_media_goes_on() {
    let (mut call, ids) = keyed_call(3, 2);
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    for &me in &ids {
        let s = state(&call, me);
        assert_eq!(s.peers.len(), 2);
        assert!(
            s.peers
                .iter()
                .all(|p| p.verified && p.key_received && p.key_sent),
            "{s:?}"
        );
    }
    let codes: Vec<String> = ids
        .iter()
        .map(|&p| state(&call, p).security.room_security_code.clone())
        .collect();
    assert!(codes.windows(2).all(|w| w[0] == w[1]), "{codes:?}");
    stream(&mut call, a, 0, 10);
    let rekeys_before = state(&call, a)
        .handshake_log
        .iter()
        .filter(|e| e.event == "rekey")
        .count();

    call.command(c, CoreCommand::Leave);
    assert_eq!(call.member(c).out.ended, Some(EndReason::Left));
    call.run_for(Duration::from_secs(3));
    for &me in &[a, b] {
        let s = state(&call, me);
        assert_eq!(s.peers.len(), 1, "{:?}", s.peers);
        assert_eq!(s.departed.len(), 1);
        assert_eq!(s.departed[0].peer_id, c);
        assert_eq!(call.member(me).out.peers_left, vec![c]);
    }
    let rekeys_after = state(&call, a)
        .handshake_log
        .iter()
        .filter(|e| e.event == "rekey")
        .count();
    assert!(rekeys_after > rekeys_before, "a leave makes A rekey");
    assert_ne!(
        state(&call, a).security.room_security_code,
        codes[0],
        "the code covers the new membership"
    );
    // Media after the rekey still decodes at B.
    stream(&mut call, a, 10, 20);
    call.run_for(Duration::from_millis(200));
    assert_eq!(decoded_from(&call, b, a), (0..30).collect::<Vec<_>>());
}

#[test]
fn a_stream_that_starts_without_a_keyframe_gets_a_keyframe_request() {
    let (mut call, ids) = keyed_call(2, 3);
    let (a, b) = (ids[0], ids[1]);
    for n in 0..5 {
        call.send_media(a, video(n, false, 2000));
        call.run_for(Duration::from_millis(33));
    }
    call.run_for(Duration::from_millis(100));
    assert!(
        decoded_from(&call, b, a).is_empty(),
        "nothing before a keyframe"
    );
    assert_eq!(call.member(b).core.counters().frames_before_keyframe, 5);
    // Rate-limited: one request for five frames, and A's encoder forced once.
    assert_eq!(call.member(b).core.keyframe_policy().counters().0, 1);
    assert_eq!(call.member(a).out.keyframes_forced, 1);
    call.send_media(a, video(5, true, 2000));
    call.run_for(Duration::from_millis(33));
    call.send_media(a, video(6, false, 2000));
    call.run_for(Duration::from_millis(100));
    assert_eq!(decoded_from(&call, b, a), vec![5, 6]);
}

#[test]
fn an_outage_longer_than_recovery_makes_the_receiver_ask_for_a_keyframe_once_per_interval() {
    let (mut call, ids) = keyed_call(2, 4);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 5);
    let forced_before = call.member(a).out.keyframes_forced;
    // Frames 5..105 (over three seconds) cross a path that loses everything: more than the
    // sender's history and the receiver's hold. Then the path heals.
    call.member_mut(a).set_links(MemberLinks {
        up: LinkConfig {
            loss: 1.0,
            ..LinkConfig::perfect()
        },
        down: lan().down,
    });
    for n in 5..105 {
        call.send_media(a, video(n, false, 2000));
        call.run_for(Duration::from_millis(33));
    }
    call.member_mut(a).set_links(lan());
    for n in 105..130 {
        call.send_media(a, video(n, false, 2000));
        call.run_for(Duration::from_millis(33));
    }
    call.run_for(Duration::from_millis(300));
    let got = decoded_from(&call, b, a);
    assert!(got.contains(&110) && !got.contains(&10), "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let forced = call.member(a).out.keyframes_forced - forced_before;
    assert!((1..=2).contains(&forced), "{forced}");
    let s = state(&call, b);
    assert!(s.peers[0].stats.video_frames_given_up > 0);
}

/// Loses, at the relay, the first copy of each listed (frame id, fragment index) that `from`
/// sends (`None` as index: every fragment of the frame), or every copy with `always`.
fn lose_at_relay(call: &mut SimCall, from: PeerId, lost: Vec<(u32, Option<u16>)>, always: bool) {
    let mut seen = std::collections::HashSet::new();
    call.relay_loses = Some(Box::new(move |sender, header, body| {
        if sender != from || header.kind != DatagramKind::Video {
            return false;
        }
        let Ok((fh, _)) = FragmentHeader::decode(body) else {
            return false;
        };
        let listed = lost
            .iter()
            .any(|&(f, i)| f == fh.frame_id && i.is_none_or(|i| i == fh.index));
        listed && (always || seen.insert((fh.frame_id, fh.index)))
    }));
}

#[test]
fn lost_fragments_and_frames_are_resent_and_every_frame_decodes_in_order() {
    let (mut call, ids) = keyed_call(2, 11);
    let (a, b) = (ids[0], ids[1]);
    // 3000-byte frames are three fragments: lose one fragment of frame 5 and all of frame 9.
    lose_at_relay(&mut call, a, vec![(5, Some(1)), (9, None)], false);
    stream(&mut call, a, 0, 30);
    call.run_for(Duration::from_millis(500));
    assert_eq!(decoded_from(&call, b, a), (0..30).collect::<Vec<_>>());
    let s = state(&call, b);
    let p = &s.peers[0].stats;
    assert!(p.nacks_sent >= 2, "{p:?}");
    assert!(p.retransmissions >= 4, "{p:?}");
    assert_eq!(p.video_frames_given_up, 0);
    assert_eq!(
        call.member(a).out.keyframes_forced,
        0,
        "recovered without a keyframe"
    );
    let resent = call.member(a).core.retransmit_counters();
    assert!(resent.fragments_resent >= 4, "{resent:?}");
    // Nothing resent beyond what was asked: two copies per distinct request, and requests
    // only for the lost fragments of 5 and 9 (data and repair), three NACKs each at most.
    assert!(
        resent.fragments_resent <= 2 * resent.fragments_requested,
        "{resent:?}"
    );
    assert!(resent.fragments_requested <= 3 * 6, "{resent:?}");
}

#[test]
fn frames_repaired_by_retransmission_play_without_a_pause_once_the_playout_delay_has_learnt() {
    let (mut call, ids) = keyed_call(2, 12);
    let (a, b) = (ids[0], ids[1]);
    // Every 10th frame loses its middle fragment's first copy and every repair fragment:
    // only a NACK's retransmission repairs it, tens of ms late.
    let lost = (10..100)
        .step_by(10)
        .flat_map(|f| [1, 3, 4, 5, 6].map(|i| (f, Some(i))))
        .collect();
    lose_at_relay(&mut call, a, lost, false);
    stream(&mut call, a, 0, 100);
    call.run_for(Duration::from_millis(500));
    assert_eq!(decoded_from(&call, b, a), (0..100).collect::<Vec<_>>());
    let p = state(&call, b).peers[0].stats.clone();
    assert!(p.retransmissions >= 9, "{p:?}");
    assert!(p.video_playout_delay_ms >= 30, "{p:?}");
    let at = &call.member(b).out.decoded_at;
    let gap = |w: &[Instant]| w[1].saturating_duration_since(w[0]);
    // The first repairs taught the playout delay; from the 4th on, frames keep their spacing.
    let late_gap = at[45..].windows(2).map(gap).max().unwrap();
    assert!(late_gap <= Duration::from_millis(50), "{late_gap:?}");
    // The first repair, before anything was learnt, was a pause.
    let first_gap = at[5..15].windows(2).map(gap).max().unwrap();
    assert!(first_gap >= Duration::from_millis(60), "{first_gap:?}");
}

#[test]
fn on_a_clean_path_frames_wait_for_no_playout_delay() {
    let (mut call, ids) = keyed_call(2, 13);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 60);
    let p = state(&call, b).peers[0].stats.clone();
    assert!(decoded_from(&call, b, a).len() >= 58);
    assert!(
        p.video_playout_delay_ms <= 6,
        "jitter of 2 ms per hop: {p:?}"
    );
}

#[test]
fn a_keyframe_missing_fragments_is_rebuilt_from_its_repair_fragments() {
    let (mut call, ids) = keyed_call(2, 12);
    let (a, b) = (ids[0], ids[1]);
    // Every copy lost, so a retransmission cannot help: only the repair fragments can.
    lose_at_relay(&mut call, a, vec![(0, Some(3)), (0, Some(10))], true);
    call.send_media(a, video(0, true, 30_000));
    call.run_for(Duration::from_millis(33));
    call.send_media(a, video(1, false, 2000));
    call.run_for(Duration::from_millis(300));
    assert_eq!(decoded_from(&call, b, a), vec![0, 1]);
    let s = state(&call, b);
    assert_eq!(s.peers[0].stats.fec_recovered, 1);
    let d = &call.member(b).out.decoded[0];
    assert_eq!(d.access_unit().len(), 30_000);
    assert_eq!(d.access_unit()[5], 5);
}

#[test]
fn a_frame_that_cannot_be_recovered_is_given_up_on_and_a_keyframe_is_asked_for() {
    let (mut call, ids) = keyed_call(2, 13);
    let (a, b) = (ids[0], ids[1]);
    lose_at_relay(&mut call, a, vec![(5, None)], true);
    stream(&mut call, a, 0, 20);
    call.run_for(Duration::from_millis(800));
    let got = decoded_from(&call, b, a);
    let want: Vec<u32> = (0..20).filter(|&n| n != 5).collect();
    assert_eq!(got, want, "the rest in order, after the wait");
    assert_eq!(call.member(a).out.keyframes_forced, 1);
    let s = state(&call, b);
    assert_eq!(s.peers[0].stats.video_frames_given_up, 1);
}

#[test]
fn a_lost_keyframe_request_is_repeated_while_the_stream_stays_broken_and_not_after_a_keyframe() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (mut call, ids) = keyed_call(2, 17);
    let (a, b) = (ids[0], ids[1]);
    // Frame 5 never arrives; while `deaf`, nothing b sends back (NACKs, requests) does either.
    let deaf = Arc::new(AtomicBool::new(true));
    let deaf_at_relay = deaf.clone();
    call.relay_loses = Some(Box::new(move |sender, header, body| {
        if sender == b && header.kind == DatagramKind::Feedback {
            return deaf_at_relay.load(Ordering::Relaxed);
        }
        sender == a
            && header.kind == DatagramKind::Video
            && FragmentHeader::decode(body).is_ok_and(|(fh, _)| fh.frame_id == 5)
    }));
    let send = |call: &mut SimCall, frames: std::ops::Range<u32>, keyframe_at: Option<u32>| {
        for n in frames {
            let now_us = call.unix_us();
            call.send_media(a, video_at(n, Some(n) == keyframe_at, 3000, 0, now_us));
            call.run_for(Duration::from_millis(33));
        }
    };
    send(&mut call, 0..30, Some(0));
    assert_eq!(
        call.member(a).out.keyframes_forced,
        0,
        "the request was lost"
    );
    // The way back heals; the stream is still broken, so b asks again (within 1.5 s), once.
    deaf.store(false, Ordering::Relaxed);
    send(&mut call, 30..70, None);
    assert_eq!(call.member(a).out.keyframes_forced, 1);
    // A keyframe mends it: no more requests.
    send(&mut call, 70..160, Some(70));
    assert_eq!(call.member(a).out.keyframes_forced, 1);
    assert!(decoded_from(&call, b, a).contains(&150));
}

#[test]
fn nacks_for_frames_never_sent_are_ignored_and_counted() {
    let (mut call, ids) = keyed_call(2, 14);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 3);
    let mut list = NackList::default();
    list.push(vcall_proto::media::NackEntry::whole_frame(1_000));
    call.member_mut(b).core.send_nack(a, list);
    call.run_for(Duration::from_millis(200));
    let c = call.member(a).core.retransmit_counters();
    assert_eq!(
        (c.nacks_received, c.fragments_resent, c.requests_refused),
        (1, 0, 1)
    );
}

#[test]
fn a_muted_microphone_sends_no_audio_whatever_is_queued() {
    let (mut call, ids) = keyed_call(2, 5);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 5);
    let audio_before = sent_of_kind(&call.member(a).out, DatagramKind::Audio);
    assert_eq!(audio_before, 10);
    call.command(a, CoreCommand::SetMicMuted(true));
    // Everything the audio thread had queued (and more) arrives after the mute.
    for seq in 100..600 {
        call.send_media(a, audio(seq, call.unix_us()));
    }
    call.run_for(Duration::from_secs(2));
    assert_eq!(
        sent_of_kind(&call.member(a).out, DatagramKind::Audio),
        audio_before,
        "no audio datagram left while muted"
    );
    assert_eq!(call.member(a).core.counters().audio_gated, 500);
    assert!(state(&call, a).mic_muted);
    // The others learn it from the (sealed) heartbeat, sent at once.
    let s = state(&call, b);
    assert!(s.peers.iter().find(|p| p.peer_id == a).unwrap().mic_muted);
    call.command(a, CoreCommand::SetMicMuted(false));
    call.send_media(a, audio(600, call.unix_us()));
    assert_eq!(
        sent_of_kind(&call.member(a).out, DatagramKind::Audio),
        audio_before + 1
    );
}

#[test]
fn the_camera_off_sends_no_video() {
    let (mut call, ids) = keyed_call(2, 6);
    let a = ids[0];
    call.command(a, CoreCommand::SetCameraOff(true));
    stream(&mut call, a, 0, 10);
    assert_eq!(sent_of_kind(&call.member(a).out, DatagramKind::Video), 0);
    assert_eq!(call.member(a).core.counters().video_gated, 10);
    assert!(state(&call, ids[1]).peers[0].camera_off);
}

#[test]
fn timers_drive_heartbeats_and_epoch_rotation_without_any_input() {
    let (mut call, ids) = keyed_call(2, 7);
    let (a, b) = (ids[0], ids[1]);
    let core = &call.member(a).core;
    assert!(core.poll_timeout() <= call.now + HEARTBEAT_INTERVAL);
    let hb_before = sent_of_kind(&call.member(a).out, DatagramKind::Heartbeat);
    // 21 minutes: heartbeats every second and two scheduled epoch rotations.
    call.run_for(Duration::from_secs(21 * 60));
    let hb = sent_of_kind(&call.member(a).out, DatagramKind::Heartbeat) - hb_before;
    assert!((1250..=1270).contains(&hb), "{hb}");
    let rekeys = state(&call, a)
        .handshake_log
        .iter()
        .filter(|e| e.event == "rekey")
        .count();
    assert!(rekeys >= 2, "{rekeys}");
    // Media still flows under the newest keys.
    stream(&mut call, a, 0, 3);
    call.run_for(Duration::from_millis(200));
    assert_eq!(decoded_from(&call, b, a), vec![0, 1, 2]);
    assert!(state(&call, a).handshake_log.len() <= MAX_HANDSHAKE_LOG);
}

#[test]
fn datagrams_from_strangers_and_garbage_are_counted_not_delivered() {
    let (mut call, ids) = keyed_call(2, 8);
    let a = ids[0];
    let now = call.now;
    let core = &mut call.member_mut(a).core;
    core.handle_datagram(now, Bytes::from_static(b"\x01\x02"));
    let mut stranger = Vec::new();
    DatagramHeader {
        kind: DatagramKind::Audio,
        sender: PeerId(99),
        target: None,
        layer: 0,
    }
    .append(&mut stranger);
    stranger.extend_from_slice(&[0; 40]);
    core.handle_datagram(now, Bytes::from(stranger));
    let counters = core.counters();
    assert_eq!(counters.datagrams_malformed, 1);
    assert_eq!(counters.datagrams_from_strangers, 1);
    while let Some(out) = core.poll_output() {
        assert!(!matches!(out, Output::Play(_) | Output::Decode(_)));
    }
}

#[test]
fn a_relay_error_ends_the_call_with_its_code_and_unknown_peer_or_rate_limited_does_not() {
    let (mut call, ids) = keyed_call(1, 9);
    let now = call.now;
    let core = &mut call.member_mut(ids[0]).core;
    for code in [ErrorCode::UnknownPeer, ErrorCode::RateLimited] {
        let flow = core.handle_control(
            now,
            ControlFrame::Error {
                code,
                message: "notice".into(),
            },
        );
        assert_eq!(flow, ControlFlow::Continue(()), "{code:?}");
    }
    let flow = core.handle_control(
        now,
        ControlFrame::GoAway {
            code: ErrorCode::ShuttingDown,
            message: "upgrade".into(),
        },
    );
    assert_eq!(
        flow,
        ControlFlow::Break(EndReason::RelayShutDown {
            code: ErrorCode::ShuttingDown,
            message: "upgrade".into()
        })
    );
}

#[test]
fn an_unchanged_call_publishes_only_at_the_stats_interval() {
    let (mut call, ids) = keyed_call(2, 10);
    let before = call.member(ids[0]).out.publishes;
    call.run_for(Duration::from_secs(10));
    let published = call.member(ids[0]).out.publishes - before;
    // 4 a second at most (STATS_INTERVAL), not once per datagram.
    assert!((38..=42).contains(&published), "{published}");
}

#[test]
fn a_relay_that_goes_silent_ends_the_connection_so_the_shell_can_reconnect() {
    let (mut call, ids) = keyed_call(2, 15);
    call.run_for(Duration::from_secs(3));
    assert_eq!(
        call.member(ids[0]).out.ended,
        None,
        "pongs keep a quiet call alive"
    );
    call.relay_down = true;
    call.run_for(RELAY_SILENCE_LIMIT + PING_INTERVAL * 2);
    for &p in &ids {
        assert!(
            matches!(call.member(p).out.ended, Some(EndReason::ConnectionLost(_))),
            "{:?}",
            call.member(p).out.ended
        );
    }
}

#[test]
fn after_a_relay_restart_members_rejoin_with_new_keys_and_media_resumes() {
    let (mut call, ids) = keyed_call(2, 16);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 10);
    let code_before = state(&call, a).security.room_security_code.clone();
    let fingerprint_before = state(&call, a).security.my_fingerprint.clone();
    call.restart_relay();
    assert!(
        call.run_until_keyed(Duration::from_secs(5)),
        "keys exchanged again"
    );
    stream(&mut call, a, 10, 30);
    call.run_for(Duration::from_millis(300));
    let got = decoded_from(&call, b, a);
    assert!(got.ends_with(&(10..40).collect::<Vec<_>>()), "{got:?}");
    let s = state(&call, a);
    assert_eq!(s.reconnects, 1);
    assert_eq!(s.phase, CallPhase::InCall);
    assert_eq!(s.peers.len(), 1);
    assert!(s.peers[0].key_received && s.peers[0].key_sent);
    assert_eq!(
        s.departed.len(),
        1,
        "the old connection's peer, with its figures"
    );
    assert_eq!(
        s.security.my_fingerprint, fingerprint_before,
        "the same identity"
    );
    assert_eq!(
        s.security.room_security_code, code_before,
        "the same members"
    );
    assert!(
        call.member(a).out.keyframes_forced >= 1,
        "a keyframe for the new receivers"
    );
    assert_eq!(
        call.member(b).out.peers_left,
        vec![a],
        "codec state of the old peer dropped"
    );
}

/// A member whose network vanishes (no Leave, and the relay has not noticed yet) is treated as
/// gone after the liveness timeout: the others rekey without it and their security code drops
/// it; when the relay's own timeout removes it, it is listed as departed.
#[test]
fn a_peer_that_never_comes_back_is_removed_after_a_timeout() {
    let (mut call, ids) = keyed_call(3, 24);
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let code_with_c = state(&call, a).security.room_security_code.clone();
    let rekeys = |call: &SimCall| {
        state(call, a)
            .handshake_log
            .iter()
            .filter(|e| e.event == "rekey")
            .count()
    };
    let rekeys_before = rekeys(&call);
    let gone = LinkConfig {
        loss: 1.0,
        ..LinkConfig::perfect()
    };
    call.member_mut(c).set_links(MemberLinks {
        up: gone.clone(),
        down: gone,
    });
    stream(&mut call, a, 0, 150); // 5 s: C is still a member
    let s = state(&call, a);
    let peer_c = s.peers.iter().find(|p| p.peer_id == c).unwrap();
    assert!(!peer_c.silent && peer_c.member, "{peer_c:?}");
    stream(&mut call, a, 150, 210); // 12 s in all: past the 10 s liveness timeout
    for me in [a, b] {
        let s = state(&call, me);
        let peer_c = s.peers.iter().find(|p| p.peer_id == c).unwrap();
        assert!(peer_c.silent && !peer_c.member, "{peer_c:?}");
        assert_ne!(
            s.security.room_security_code, code_with_c,
            "C is not covered"
        );
    }
    assert!(rekeys(&call) > rekeys_before, "A rekeyed without C");
    assert_eq!(
        state(&call, a).security.room_security_code,
        state(&call, b).security.room_security_code,
        "A and B agree on who is in the call"
    );
    // Media goes on between A and B under the new key.
    let decoded_before = decoded_from(&call, b, a).len();
    stream(&mut call, a, 360, 30);
    call.run_for(Duration::from_millis(300));
    assert!(decoded_from(&call, b, a).len() >= decoded_before + 30);
    // The relay's idle timeout finally drops C: it is departed, not a peer.
    call.disconnect(c);
    call.run_for(Duration::from_millis(200));
    for me in [a, b] {
        let s = state(&call, me);
        assert!(s.peers.iter().all(|p| p.peer_id != c), "{:?}", s.peers);
        assert!(s.departed.iter().any(|p| p.peer_id == c));
    }
}

#[test]
fn under_loss_p_frames_carry_repair_fragments_and_without_loss_they_do_not() {
    let (mut call, ids) = keyed_call(2, 22);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 60);
    let clean = call.member(b).out.state.clone().unwrap().peers[0]
        .stats
        .fec_recovered;
    assert!(
        clean <= 1,
        "only the first keyframe is protected on a clean path: {clean}"
    );
    assert_eq!(
        call.member(a).out.expected_audio_loss,
        Some(5),
        "a clean path tunes Opus FEC down to its floor"
    );
    let lossy = LinkConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss: 0.08,
        ..LinkConfig::perfect()
    };
    for p in [a, b] {
        call.member_mut(p).set_links(MemberLinks {
            up: lossy.clone(),
            down: lossy.clone(),
        });
    }
    stream(&mut call, a, 60, 300);
    call.run_for(Duration::from_millis(500));
    let sent = state(&call, a).sent.clone();
    assert!(sent.loss_reported > 0.03, "{sent:?}");
    let p = &state(&call, b).peers[0].stats;
    assert!(p.fec_recovered >= 20, "P-frames rebuilt from repair: {p:?}");
    let got = decoded_from(&call, b, a);
    assert!(got.len() >= 345, "{} of 360 decoded", got.len());
    let told = call.member(a).out.expected_audio_loss.unwrap();
    assert!(
        told > 5,
        "the audio encoder is told the loss: {told} % ({sent:?})"
    );
}

#[test]
fn under_loss_audio_goes_out_twice_and_a_frame_is_lost_only_when_both_copies_are() {
    let (mut call, ids) = keyed_call(2, 23);
    let (a, b) = (ids[0], ids[1]);
    stream(&mut call, a, 0, 60);
    assert_eq!(
        state(&call, a).sent.audio_repeats,
        0,
        "no copies on a clean path"
    );
    let lossy = LinkConfig {
        delay: Duration::from_millis(20),
        loss: 0.05,
        ..LinkConfig::perfect()
    };
    for p in [a, b] {
        call.member_mut(p).set_links(MemberLinks {
            up: lossy.clone(),
            down: lossy.clone(),
        });
    }
    // Until the first receiver reports arrive, one copy of each; then two.
    stream(&mut call, a, 60, 60);
    assert!(
        state(&call, a).sent.audio_repeats > 0,
        "copies once loss is reported"
    );
    let first_measured = 240;
    stream(&mut call, a, 120, 300);
    call.run_for(Duration::from_secs(1));
    let played: std::collections::BTreeSet<u32> = call
        .member(b)
        .out
        .played
        .iter()
        .filter(|p| p.peer == a && p.meta.sequence >= first_measured)
        .map(|p| p.meta.sequence)
        .collect();
    let sent = 2 * (120 + 300) - first_measured;
    // One copy over two 5 % hops keeps about 90 %; two copies about 99 %.
    assert!(
        played.len() as u32 * 100 >= sent * 97,
        "{} of {sent} audio frames played",
        played.len()
    );
    let p = &state(&call, b).peers[0].stats;
    assert!(
        p.duplicates > 100,
        "second copies dropped as duplicates: {p:?}"
    );
    assert_eq!(p.decrypt_failures, 0, "a copy is not a failure");
    assert_eq!(
        call.member(b)
            .out
            .played
            .iter()
            .filter(|p| p.peer == a)
            .count(),
        call.member(b)
            .out
            .played
            .iter()
            .filter(|p| p.peer == a)
            .map(|p| p.meta.sequence)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "each frame is played once"
    );
}

/// Sends 30 fps video in two temporal layers (even frames layer 0, odd ones layer 1; a
/// keyframe first) and 50 fps audio, following the sender's rate control as an encoder
/// would: frames sized for its latest target, layer-1 frames dropped when it asks for the
/// base layer only. Returns the layer-1 frames dropped.
fn stream_layered(call: &mut SimCall, from: PeerId, first: u32, frames: u32) -> u32 {
    let mut dropped = 0;
    for n in first..first + frames {
        let target = call.member(from).out.video_targets.last().copied();
        let kbps = target.map_or(1500, |t| t.bitrate_kbps) as usize;
        let layer = (n % 2) as u8;
        if layer == 1 && target.is_some_and(|t| t.base_layer_only) {
            dropped += 1;
        } else {
            let size = kbps * 1000 / 8 / 30;
            let now_us = call.unix_us();
            call.send_media(from, video_at(n, n == first, size, layer, now_us));
        }
        let now_us = call.unix_us();
        call.send_media(from, audio(n * 2, now_us));
        call.send_media(from, audio(n * 2 + 1, now_us));
        call.run_for(Duration::from_millis(33));
    }
    dropped
}

#[test]
fn a_lost_upper_layer_frame_costs_that_frame_only_and_no_keyframe() {
    let (mut call, ids) = keyed_call(2, 23);
    let (a, b) = (ids[0], ids[1]);
    // Frame 7 (layer 1) never arrives, whatever is resent.
    lose_at_relay(&mut call, a, vec![(7, None)], true);
    stream_layered(&mut call, a, 0, 30);
    call.run_for(Duration::from_millis(500));
    let want: Vec<u32> = (0..30).filter(|&n| n != 7).collect();
    assert_eq!(decoded_from(&call, b, a), want);
    assert_eq!(
        call.member(a).out.keyframes_forced,
        0,
        "a non-reference frame's loss needs no keyframe"
    );
    let p = &state(&call, b).peers[0].stats;
    assert_eq!(p.video_frames_given_up, 1, "{p:?}");
    assert_eq!(call.member(b).core.counters().video_frames_skipped, 0);
}

#[test]
fn a_rate_cap_makes_the_sender_step_down_and_lifting_it_makes_it_step_up() {
    let (mut call, ids) = keyed_call(2, 24);
    let (a, b) = (ids[0], ids[1]);
    let base = lan().up;
    let capped = LinkConfig {
        rate_bps: Some(800_000),
        queue_bytes: 40_000,
        ..base.clone()
    };
    call.member_mut(a).set_links(MemberLinks {
        up: capped,
        down: base.clone(),
    });
    stream_layered(&mut call, a, 0, 300);
    let down = state(&call, a).sent.clone();
    assert!(down.rate_decreases >= 1, "{down:?}");
    assert!(
        down.target_kbps <= 800,
        "below the cap after 10 s: {} kbit/s",
        down.target_kbps
    );
    assert!(down.target_kbps >= 100, "{down:?}");
    // What gets through is still a call: the last 3 s decode at a steady rate (once the
    // frames waiting for their playout time have left).
    call.run_for(MAX_PLAYOUT_DELAY);
    let decoded = decoded_from(&call, b, a);
    let recent = decoded.iter().filter(|&&n| n >= 210).count();
    assert!(recent >= 45, "{recent} of the last 90 frames decoded");

    call.member_mut(a).set_links(MemberLinks {
        up: base.clone(),
        down: base,
    });
    stream_layered(&mut call, a, 300, 600);
    let up = state(&call, a).sent.clone();
    assert!(
        up.target_kbps >= 1200,
        "back up once the cap is lifted: {} kbit/s",
        up.target_kbps
    );
    assert!(!up.base_layer_only);
    let timeline: Vec<u32> = up.timeline.iter().map(|s| s.target_kbps).collect();
    assert!(
        timeline.iter().any(|&k| k <= 800) && timeline.last().is_some_and(|&k| k >= 1200),
        "{timeline:?}"
    );
}
