//! A per-peer audio jitter buffer: Opus packets go in as they arrive (out of order, duplicated,
//! late), and one 20 ms frame comes out per playout tick as a packet, a loss to conceal, or
//! nothing yet. Time is passed in (milliseconds on the receiver's monotonic clock); no clocks,
//! no threads, no allocation after the slots have grown to the largest packet.
//!
//! Playout starts once the first packet has waited the target delay. The target starts at
//! `initial_delay_ms` (40 ms) and grows with the measured arrival jitter (RFC 3550 estimator)
//! up to `max_delay_ms`, and falls again when the jitter does; if the buffer ever holds more
//! than `max_delay_ms` of audio, the oldest frames are dropped down to the target, and when it
//! has held more than the target plus one frame for a whole second (the jitter that built it
//! up is over), one frame is shed, so the delay follows the target down as well as up. After `reset_after_underrun_ms` of an empty buffer
//! (the peer stopped sending) it resets and waits for the stream to start again.

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterBufferConfig {
    /// Duration of one packet (ms).
    pub frame_duration_ms: u64,
    /// Playout delay before any jitter has been measured, and the floor of the target (ms).
    pub initial_delay_ms: u64,
    /// Ceiling of the target delay and of the buffered audio (ms).
    pub max_delay_ms: u64,
    /// An empty buffer for this long resets it to "not started" (ms).
    pub reset_after_underrun_ms: u64,
}

impl Default for JitterBufferConfig {
    fn default() -> Self {
        Self {
            frame_duration_ms: 20,
            initial_delay_ms: 40,
            max_delay_ms: 200,
            reset_after_underrun_ms: 400,
        }
    }
}

/// What to play for one tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Decode this packet.
    Packet {
        sequence: u32,
        capture_time_ms: u64,
        packet: &'a [u8],
    },
    /// The frame is missing: conceal it (Opus PLC), or rebuild it with Opus FEC from
    /// `fec_source`, the following packet, when that one is already here.
    Lost {
        sequence: u32,
        fec_source: Option<&'a [u8]>,
    },
    /// Nothing to play: the stream has not started (or restarted) yet.
    Empty,
}

/// Counters since the buffer was created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets that arrived after their playout time (dropped).
    pub late: u64,
    /// Packets that were already buffered (dropped).
    pub duplicates: u64,
    /// Frames played as missing while later packets were buffered (holes in the stream).
    pub lost: u64,
    /// Frames played as missing because the buffer ran empty.
    pub underruns: u64,
    /// Frames skipped because the buffer held more than the maximum delay.
    pub dropped_overflow: u64,
    /// Frames skipped to bring the delay back down to the target after jitter ended.
    pub shed: u64,
    /// Concealment frames played without consuming a packet, to bring the delay up to the
    /// target (jitter grew, or the buffer ran dry).
    pub stretched: u64,
    /// Times the buffer restarted (long underrun or a jump in sequence numbers).
    pub resets: u64,
    /// Smoothed arrival jitter (ms).
    pub jitter_ms: f64,
    /// Current target playout delay (ms).
    pub target_delay_ms: u64,
}

#[derive(Debug, Default)]
struct Slot {
    sequence: Option<u32>,
    capture_time_ms: u64,
    data: Vec<u8>,
}

/// The jitter buffer of one peer's audio stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterBufferConfig,
    slots: Vec<Slot>,
    playing: bool,
    next_sequence: u32,
    first_arrival_ms: Option<u64>,
    underrun_since_ms: Option<u64>,
    last_transit_ms: Option<i64>,
    /// Consecutive ticks the buffer held more than the target plus one frame.
    above_target_ticks: u64,
    /// A packet arrived since the last stretch frame.
    may_stretch: bool,
    stats: JitterStats,
}

/// Ticks above the target (plus a frame) before one frame is shed: one second at 20 ms.
const SHED_AFTER_TICKS: u64 = 50;

/// Signed distance from `from` to `to` in sequence space (wrap-around safe).
fn distance(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

impl JitterBuffer {
    /// An empty buffer; it holds up to `max_delay_ms` of audio plus a margin for reordering.
    pub fn new(config: JitterBufferConfig) -> Self {
        let frame = config.frame_duration_ms.max(1);
        let config = JitterBufferConfig {
            frame_duration_ms: frame,
            initial_delay_ms: config.initial_delay_ms.max(frame),
            max_delay_ms: config.max_delay_ms.max(config.initial_delay_ms.max(frame)),
            ..config
        };
        let capacity = (config.max_delay_ms / frame) as usize * 2 + 4;
        let mut buffer = Self {
            config,
            slots: (0..capacity).map(|_| Slot::default()).collect(),
            playing: false,
            next_sequence: 0,
            first_arrival_ms: None,
            underrun_since_ms: None,
            last_transit_ms: None,
            above_target_ticks: 0,
            may_stretch: false,
            stats: JitterStats::default(),
        };
        buffer.stats.target_delay_ms = buffer.config.initial_delay_ms;
        buffer
    }

    /// Counters and the current jitter and target delay.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Whether playout has started.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Packets currently buffered.
    pub fn buffered_packets(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.sequence.is_some())
            .count()
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn slot_index(&self, sequence: u32) -> usize {
        sequence as usize % self.capacity()
    }

    fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.sequence = None;
        }
        self.playing = false;
        self.first_arrival_ms = None;
        self.underrun_since_ms = None;
        self.last_transit_ms = None;
    }

    fn reset(&mut self) {
        self.clear();
        self.stats.resets += 1;
    }

    /// Lowest and highest buffered sequence numbers.
    fn buffered_range(&self) -> Option<(u32, u32)> {
        let reference = self.slots.iter().find_map(|slot| slot.sequence)?;
        let (mut lowest, mut highest) = (0i64, 0i64);
        for sequence in self.slots.iter().filter_map(|slot| slot.sequence) {
            let offset = distance(reference, sequence);
            lowest = lowest.min(offset);
            highest = highest.max(offset);
        }
        Some((
            reference.wrapping_add(lowest as i32 as u32),
            reference.wrapping_add(highest as i32 as u32),
        ))
    }

    fn update_jitter(&mut self, capture_time_ms: u64, now_ms: u64) {
        let transit = now_ms as i64 - capture_time_ms as i64;
        if let Some(last) = self.last_transit_ms {
            let variation = (transit - last).unsigned_abs() as f64;
            self.stats.jitter_ms += (variation - self.stats.jitter_ms) / 16.0;
        }
        self.last_transit_ms = Some(transit);
        let frame = self.config.frame_duration_ms;
        let wanted = frame as f64 + 3.0 * self.stats.jitter_ms;
        let rounded = (wanted / frame as f64).ceil() as u64 * frame;
        self.stats.target_delay_ms =
            rounded.clamp(self.config.initial_delay_ms, self.config.max_delay_ms);
    }

    /// Adds a packet that arrived at `now_ms`. `capture_time_ms` is the sender's capture clock
    /// (any origin: only its differences are used, for the jitter estimate).
    pub fn push(&mut self, sequence: u32, capture_time_ms: u64, packet: &[u8], now_ms: u64) {
        self.stats.received += 1;
        let capacity = self.capacity() as i64;
        if self.playing {
            let ahead = distance(self.next_sequence, sequence);
            if ahead < 0 {
                self.stats.late += 1;
                return;
            }
            if ahead >= capacity {
                self.reset();
            }
        } else if let Some((lowest, highest)) = self.buffered_range()
            && (distance(lowest, sequence) >= capacity || distance(sequence, highest) >= capacity)
        {
            self.reset();
        }
        let index = self.slot_index(sequence);
        if self.slots[index].sequence == Some(sequence) {
            self.stats.duplicates += 1;
            return;
        }
        self.update_jitter(capture_time_ms, now_ms);
        self.may_stretch = true;
        if !self.playing && self.first_arrival_ms.is_none() {
            self.first_arrival_ms = Some(now_ms);
        }
        let slot = &mut self.slots[index];
        slot.sequence = Some(sequence);
        slot.capture_time_ms = capture_time_ms;
        slot.data.clear();
        slot.data.extend_from_slice(packet);
    }

    /// What to play for the tick at `now_ms` (call once every frame duration).
    pub fn pop(&mut self, now_ms: u64) -> Playout<'_> {
        if !self.playing {
            let Some(first_arrival) = self.first_arrival_ms else {
                return Playout::Empty;
            };
            let Some((lowest, _)) = self.buffered_range() else {
                return Playout::Empty;
            };
            if now_ms.saturating_sub(first_arrival) < self.stats.target_delay_ms {
                return Playout::Empty;
            }
            self.playing = true;
            self.next_sequence = lowest;
            self.underrun_since_ms = None;
        }
        self.drop_excess();
        self.shed_above_target();

        // Less buffered than the target while packets keep coming (the jitter grew): conceal
        // one frame without consuming one, so the delay grows to the target. At most one such
        // frame per packet that arrived, so a stream that stops drains instead of stalling.
        let frame = self.config.frame_duration_ms;
        let target = (self.stats.target_delay_ms / frame) as i64;
        let depth = self.buffered_range().map_or(0, |(_, highest)| {
            (distance(self.next_sequence, highest) + 1).max(0)
        });
        if self.may_stretch && depth >= 1 && depth + 1 < target {
            self.may_stretch = false;
            self.stats.stretched += 1;
            return Playout::Lost {
                sequence: self.next_sequence.wrapping_sub(1),
                fec_source: None,
            };
        }

        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        let index = self.slot_index(sequence);
        if self.slots[index].sequence == Some(sequence) {
            self.underrun_since_ms = None;
            let slot = &mut self.slots[index];
            slot.sequence = None;
            return Playout::Packet {
                sequence,
                capture_time_ms: slot.capture_time_ms,
                packet: &slot.data,
            };
        }

        if self.buffered_packets() > 0 {
            self.stats.lost += 1;
            self.underrun_since_ms = None;
        } else {
            self.stats.underruns += 1;
            let since = *self.underrun_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= self.config.reset_after_underrun_ms {
                self.reset();
                return Playout::Empty;
            }
        }
        let next_index = self.slot_index(self.next_sequence);
        let next_slot = &self.slots[next_index];
        let fec_source =
            (next_slot.sequence == Some(self.next_sequence)).then_some(next_slot.data.as_slice());
        Playout::Lost {
            sequence,
            fec_source,
        }
    }

    /// Sheds the oldest frame once the buffer has stayed above the target plus one frame for
    /// [`SHED_AFTER_TICKS`] ticks in a row.
    fn shed_above_target(&mut self) {
        let Some((_, highest)) = self.buffered_range() else {
            self.above_target_ticks = 0;
            return;
        };
        let frame = self.config.frame_duration_ms;
        let depth = distance(self.next_sequence, highest) + 1;
        let target = (self.stats.target_delay_ms / frame) as i64;
        if depth <= target + 1 {
            self.above_target_ticks = 0;
            return;
        }
        self.above_target_ticks += 1;
        if self.above_target_ticks < SHED_AFTER_TICKS {
            return;
        }
        self.above_target_ticks = 0;
        let index = self.slot_index(self.next_sequence);
        if self.slots[index].sequence == Some(self.next_sequence) {
            self.slots[index].sequence = None;
        }
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.stats.shed += 1;
    }

    /// Skips the oldest frames while more than `max_delay_ms` of audio is buffered.
    fn drop_excess(&mut self) {
        let Some((_, highest)) = self.buffered_range() else {
            return;
        };
        let frame = self.config.frame_duration_ms;
        let depth = distance(self.next_sequence, highest) + 1;
        let max_frames = (self.config.max_delay_ms / frame) as i64;
        if depth <= max_frames {
            return;
        }
        let keep = (self.stats.target_delay_ms / frame) as i64;
        let skip = depth - keep;
        for _ in 0..skip {
            let index = self.slot_index(self.next_sequence);
            if self.slots[index].sequence == Some(self.next_sequence) {
                self.slots[index].sequence = None;
            }
            self.next_sequence = self.next_sequence.wrapping_add(1);
            self.stats.dropped_overflow += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(JitterBufferConfig::default())
    }

    fn packet(sequence: u32) -> Vec<u8> {
        sequence.to_be_bytes().to_vec()
    }

    /// Pops once and describes the result: Some(sequence) for packets, None for losses/empty.
    fn pop_sequence(buffer: &mut JitterBuffer, now_ms: u64) -> String {
        match buffer.pop(now_ms) {
            Playout::Packet {
                sequence, packet, ..
            } => {
                assert_eq!(packet, &sequence.to_be_bytes());
                format!("P{sequence}")
            }
            Playout::Lost { sequence, .. } => format!("L{sequence}"),
            Playout::Empty => "E".into(),
        }
    }

    #[test]
    fn in_order_stream_starts_after_the_initial_delay_and_plays_everything() {
        let mut buffer = buffer();
        let mut played = Vec::new();
        for tick in 0..10u32 {
            let now = u64::from(tick) * 20;
            buffer.push(tick, now, &packet(tick), now + 5);
            played.push(pop_sequence(&mut buffer, now + 10));
        }
        assert_eq!(played[..2], ["E", "E"]);
        assert_eq!(
            played[2..],
            ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7"]
        );
        let stats = buffer.stats();
        assert_eq!((stats.lost, stats.late, stats.duplicates), (0, 0, 0));
        assert_eq!(stats.target_delay_ms, 40);
    }

    #[test]
    fn reordered_and_duplicated_packets_play_once_in_order() {
        let mut buffer = buffer();
        for sequence in [0, 2, 1, 1, 3, 2] {
            buffer.push(sequence, u64::from(sequence) * 20, &packet(sequence), 0);
        }
        assert_eq!(buffer.stats().duplicates, 2);
        let played: Vec<String> = (0..4)
            .map(|i| pop_sequence(&mut buffer, 40 + i * 20))
            .collect();
        assert_eq!(played, ["P0", "P1", "P2", "P3"]);
    }

    #[test]
    fn missing_packet_is_lost_with_the_next_packet_offered_for_fec() {
        let mut buffer = buffer();
        for sequence in [0, 2, 3] {
            buffer.push(sequence, u64::from(sequence) * 20, &packet(sequence), 0);
        }
        assert_eq!(pop_sequence(&mut buffer, 40), "P0");
        assert_eq!(
            buffer.pop(60),
            Playout::Lost {
                sequence: 1,
                fec_source: Some(&2u32.to_be_bytes()[..])
            }
        );
        assert_eq!(pop_sequence(&mut buffer, 80), "P2");
        // Packet 1 shows up after its slot was played.
        buffer.push(1, 20, &packet(1), 90);
        assert_eq!(pop_sequence(&mut buffer, 100), "P3");
        let stats = buffer.stats();
        assert_eq!((stats.lost, stats.late), (1, 1));
    }

    #[test]
    fn a_stopped_stream_underruns_then_resets_and_restarts() {
        let mut buffer = buffer();
        buffer.push(0, 0, &packet(0), 0);
        assert_eq!(pop_sequence(&mut buffer, 40), "P0");
        let mut now = 40;
        let mut outcomes = Vec::new();
        for _ in 0..25 {
            now += 20;
            outcomes.push(pop_sequence(&mut buffer, now));
        }
        assert!(outcomes[0].starts_with('L'));
        assert_eq!(outcomes.last().unwrap(), "E");
        assert!(!buffer.is_playing());
        let stats = buffer.stats();
        assert_eq!(stats.lost, 0);
        assert!(stats.underruns >= 20);
        assert_eq!(stats.resets, 1);

        // The peer comes back with later sequence numbers: a fresh start after the delay.
        buffer.push(500, 10_000, &packet(500), now);
        assert_eq!(pop_sequence(&mut buffer, now + 20), "E");
        assert_eq!(pop_sequence(&mut buffer, now + 40), "P500");
    }

    #[test]
    fn a_jump_in_sequence_numbers_resets() {
        let mut buffer = buffer();
        buffer.push(0, 0, &packet(0), 0);
        assert_eq!(pop_sequence(&mut buffer, 40), "P0");
        buffer.push(100_000, 0, &packet(100_000), 50);
        assert_eq!(buffer.stats().resets, 1);
        assert_eq!(pop_sequence(&mut buffer, 60), "E");
        assert_eq!(pop_sequence(&mut buffer, 90), "P100000");
    }

    #[test]
    fn a_burst_beyond_the_maximum_delay_is_trimmed_to_the_target() {
        let mut buffer = buffer();
        // Playout stalls (e.g. the audio thread was blocked) while 400 ms arrive.
        for sequence in 0..20 {
            let now = u64::from(sequence) * 20;
            buffer.push(sequence, now, &packet(sequence), now);
        }
        // 400 ms buffered > 200 ms max: keep the newest 40 ms (the target).
        assert_eq!(pop_sequence(&mut buffer, 400), "P18");
        assert_eq!(pop_sequence(&mut buffer, 420), "P19");
        assert_eq!(buffer.stats().dropped_overflow, 18);
    }

    #[test]
    fn target_delay_grows_with_jitter_and_stays_bounded() {
        let mut buffer = buffer();
        for sequence in 0..200u32 {
            let capture = u64::from(sequence) * 20;
            let delay = if sequence % 2 == 0 { 0 } else { 60 };
            buffer.push(sequence, capture, &packet(sequence), capture + delay);
        }
        let stats = buffer.stats();
        assert!(stats.jitter_ms > 30.0, "{stats:?}");
        assert!(
            stats.target_delay_ms > 40 && stats.target_delay_ms <= 200,
            "{stats:?}"
        );
    }

    #[test]
    fn after_jitter_ends_the_target_and_the_delay_come_back_down() {
        let mut buffer = buffer();
        let mut delays = Vec::new();
        // Three seconds with arrivals jittering by up to 60 ms, then ten steady seconds.
        for tick in 0..650u32 {
            let capture = u64::from(tick) * 20;
            let jitter = if tick < 150 {
                u64::from(tick * 37 % 4) * 20
            } else {
                0
            };
            buffer.push(tick, capture, &packet(tick), capture + 5 + jitter);
            let now = capture + 10;
            if let Playout::Packet {
                capture_time_ms, ..
            } = buffer.pop(now)
            {
                delays.push(now - capture_time_ms);
            }
        }
        let stats = buffer.stats();
        let peak = *delays[100..200].iter().max().unwrap();
        let end = *delays.last().unwrap();
        assert!(peak >= 80, "the jitter built the delay up: {peak} ms");
        assert_eq!(stats.target_delay_ms, 40, "the target fell back: {stats:?}");
        assert!(
            end <= 60,
            "the delay followed it down: {end} ms ({stats:?})"
        );
        assert!(stats.shed > 0 && stats.shed < 20, "{stats:?}");
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut buffer = buffer();
        let start = u32::MAX - 1;
        for offset in 0..4u32 {
            let sequence = start.wrapping_add(offset);
            buffer.push(sequence, u64::from(offset) * 20, &packet(sequence), 0);
        }
        let played: Vec<String> = (0..4)
            .map(|i| pop_sequence(&mut buffer, 40 + i * 20))
            .collect();
        assert_eq!(
            played,
            [
                format!("P{}", u32::MAX - 1),
                format!("P{}", u32::MAX),
                "P0".into(),
                "P1".into()
            ]
        );
    }
}
