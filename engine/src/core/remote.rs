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
    /// When we last NACKed its video (loss recovery at work, for the playout delay).
    pub last_nack_at: Option<Instant>,
    /// Video fragments it resent to us (addressed to us) that arrived.
    pub retransmissions_received: u64,
    /// The frame number of the first keyframe we accepted (nothing before it is decodable).
    pub first_keyframe_number: Option<u32>,
    pub last_frame_number: u32,
    /// A loss left its stream undecodable and no keyframe came since (we ask again).
    pub awaiting_keyframe: bool,
    pub video_frames_received: u64,
    pub last_audio_sequence: Option<u32>,
    /// The first audio sequence number of the current run (since the sender's last restart).
    first_audio_sequence: Option<u32>,
    /// Audio frames expected in the runs before the current one.
    audio_expected_before: u64,
    pub audio_gaps: u64,
    /// Bodies that arrived again after their first copy (a sender's redundant audio copy, or
    /// a duplicate on the path): dropped, not a failure.
    pub duplicates: u64,
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
            last_nack_at: None,
            retransmissions_received: 0,
            first_keyframe_number: None,
            awaiting_keyframe: false,
            last_frame_number: 0,
            video_frames_received: 0,
            last_audio_sequence: None,
            first_audio_sequence: None,
            audio_expected_before: 0,
            audio_gaps: 0,
            duplicates: 0,
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
            self.first_audio_sequence = Some(sequence);
            return;
        };
        let ahead = sequence.wrapping_sub(highest);
        let behind = highest.wrapping_sub(sequence);
        if ahead == 0 {
        } else if ahead < 1000 {
            self.audio_gaps += u64::from(ahead - 1);
            self.last_audio_sequence = Some(sequence);
        } else if behind < 1000 {
            let first = self.first_audio_sequence.unwrap_or(highest);
            let before_first = first.wrapping_sub(sequence);
            if before_first > 0 && before_first < 1000 {
                // From before the first frame seen (held for its batch signature): the run
                // starts earlier, and the frames between are gaps.
                self.audio_gaps += u64::from(before_first - 1);
                self.first_audio_sequence = Some(sequence);
            } else {
                // Late, out of order: one counted gap filled again.
                self.audio_gaps = self.audio_gaps.saturating_sub(1);
            }
        } else {
            self.audio_expected_before = self.audio_frames_expected();
            self.last_audio_sequence = Some(sequence);
            self.first_audio_sequence = Some(sequence);
        }
    }

    /// Audio frames the sender sent since the first one that reached us (RTP's "expected":
    /// highest sequence number minus the first, plus one, summed over the sender's restarts).
    pub fn audio_frames_expected(&self) -> u64 {
        let run = match (self.first_audio_sequence, self.last_audio_sequence) {
            (Some(first), Some(last)) => u64::from(last.wrapping_sub(first)) + 1,
            _ => 0,
        };
        self.audio_expected_before + run
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
    fn expected_audio_frames_count_from_the_first_received_across_restarts() {
        let mut p = RemotePeer::new(Instant::now(), Instant::now());
        assert_eq!(p.audio_frames_expected(), 0);
        p.note_audio_sequence(10);
        p.note_audio_sequence(14);
        assert_eq!(p.audio_frames_expected(), 5);
        // A frame from before the first one seen, released late: two more expected, one
        // of them lost.
        p.note_audio_sequence(8);
        assert_eq!(p.audio_frames_expected(), 7);
        assert_eq!(p.audio_gaps, 3 + 1);
        // Long into the run, a late frame is just late.
        for n in 15..2000 {
            p.note_audio_sequence(n);
        }
        p.note_audio_sequence(2005);
        p.note_audio_sequence(2001);
        assert_eq!(p.audio_gaps, 4 + 5 - 1);
        assert_eq!(p.audio_frames_expected(), 2005 - 8 + 1);
        // The sender restarted its sequence: 6 from the first run, then the new run's.
        p.note_audio_sequence(500_000);
        p.note_audio_sequence(500_002);
        assert_eq!(p.audio_frames_expected(), 1998 + 3);
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
