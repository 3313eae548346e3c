//! What the call core knows about one remote peer's media: its fragment reassembler, loss
//! recovery (NACKs, frame order), its video playout delay, sequence continuity, what its heartbeats say, and its
//! media statistics.

use std::time::Instant;

use vcall_proto::fragment::{Reassembler, ReassemblyConfig};
use vcall_proto::media::Heartbeat;

use super::VideoToDecode;
use super::playout::VideoPlayout;
use super::recovery::{FrameLayers, FrameOrder, NackScheduler};
use super::report::ReportMeter;
use crate::stats::PeerMedia;

/// Receive-side state of one remote peer (created when the relay announces it).
pub struct RemotePeer {
    pub reassembler: Reassembler,
    pub nacks: NackScheduler,
    /// Its frames in frame-id order, waiting for late ones.
    pub order: FrameOrder<VideoToDecode>,
    /// The temporal layer of its recent frames, and which frames a loss makes undecodable.
    pub layers: FrameLayers,
    /// Its frames in order, waiting for their playout time (then decoded).
    pub playout: VideoPlayout<VideoToDecode>,
    /// What we measure of its path, for our receiver reports to it.
    pub meter: ReportMeter,
    /// Video fragments it resent to us (addressed to us) that arrived.
    pub retransmissions_received: u64,
    /// The frame number of the first keyframe we accepted (nothing before it is decodable).
    pub first_keyframe_number: Option<u32>,
    pub last_frame_number: u32,
    pub video_frames_received: u64,
    pub last_audio_sequence: Option<u32>,
    pub audio_gaps: u64,
    pub decrypt_failures: u64,
    pub bytes_in: u64,
    pub bytes_in_at_last_report: u64,
    pub heartbeat: Option<Heartbeat>,
    pub last_heartbeat_at: Option<Instant>,
    pub media: PeerMedia,
}

impl RemotePeer {
    /// A peer met at `now` in a call that started at `call_started`.
    pub fn new(now: Instant, call_started: Instant) -> Self {
        Self {
            reassembler: Reassembler::new(ReassemblyConfig::default()),
            nacks: NackScheduler::default(),
            order: FrameOrder::default(),
            layers: FrameLayers::default(),
            playout: VideoPlayout::default(),
            meter: ReportMeter::new(now),
            retransmissions_received: 0,
            first_keyframe_number: None,
            last_frame_number: 0,
            video_frames_received: 0,
            last_audio_sequence: None,
            audio_gaps: 0,
            decrypt_failures: 0,
            bytes_in: 0,
            bytes_in_at_last_report: 0,
            heartbeat: None,
            last_heartbeat_at: None,
            media: PeerMedia::new(call_started),
        }
    }

    /// Notes an audio sequence number: a step ahead of the highest seen by `n` (< 1000)
    /// counts `n - 1` frames lost, a late frame behind it (audio held for its batch signature
    /// comes out of order) fills one of them again, and any larger jump is a restart.
    pub fn note_audio_sequence(&mut self, sequence: u32) {
        let Some(highest) = self.last_audio_sequence else {
            self.last_audio_sequence = Some(sequence);
            return;
        };
        let ahead = sequence.wrapping_sub(highest);
        let behind = highest.wrapping_sub(sequence);
        if ahead == 0 {
        } else if ahead < 1000 {
            self.audio_gaps += u64::from(ahead - 1);
            self.last_audio_sequence = Some(sequence);
        } else if behind < 1000 {
            self.audio_gaps = self.audio_gaps.saturating_sub(1);
        } else {
            self.last_audio_sequence = Some(sequence);
        }
    }

    /// Video frames the sender produced since its first keyframe we saw.
    pub fn video_frames_expected(&self) -> u64 {
        self.first_keyframe_number.map_or(0, |first| {
            u64::from(self.last_frame_number.wrapping_sub(first)) + 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_losses_are_counted() {
        let mut p = RemotePeer::new(Instant::now(), Instant::now());
        p.note_audio_sequence(1);
        p.note_audio_sequence(2);
        p.note_audio_sequence(5);
        assert_eq!(p.audio_gaps, 2);
        p.note_audio_sequence(3); // late, out of order: not lost after all
        assert_eq!(p.audio_gaps, 1);
        p.note_audio_sequence(6);
        assert_eq!(p.audio_gaps, 1);
        p.note_audio_sequence(100_000); // a restart
        assert_eq!(p.audio_gaps, 1);
        p.note_audio_sequence(100_002);
        assert_eq!(p.audio_gaps, 2);
    }

    #[test]
    fn expected_frames_count_from_the_first_keyframe() {
        let mut p = RemotePeer::new(Instant::now(), Instant::now());
        assert_eq!(p.video_frames_expected(), 0);
        p.first_keyframe_number = Some(10);
        p.last_frame_number = 19;
        assert_eq!(p.video_frames_expected(), 10);
    }
}
