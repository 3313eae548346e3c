//! A shared audio level (for the lobby's and the toolbar's mic meter) and an `AudioSource`
//! wrapper that measures whatever passes through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use vcall_media::MediaError;
use vcall_media::source::AudioSource;

/// The most recent level of a stream, readable from any thread.
#[derive(Debug, Clone, Default)]
pub struct LevelMeter(Arc<AtomicU32>);

impl LevelMeter {
    /// Records the RMS of one block of samples.
    pub fn record(&self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        let power = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
        self.0.store(power.sqrt().to_bits(), Ordering::Relaxed);
    }

    /// The last block's RMS (0.0 = silence, 1.0 = full scale).
    pub fn rms(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// The level for a meter: -60 dBFS..0 dBFS mapped onto 0.0..1.0.
    pub fn display_level(&self) -> f32 {
        let rms = self.rms();
        if rms <= 1e-6 {
            return 0.0;
        }
        ((20.0 * rms.log10() + 60.0) / 60.0).clamp(0.0, 1.0)
    }
}

/// Measures the level of every block an inner source produces.
pub struct MeteredSource<S> {
    inner: S,
    meter: LevelMeter,
}

impl<S: AudioSource> MeteredSource<S> {
    /// Wraps `inner`, reporting into `meter`.
    pub fn new(inner: S, meter: LevelMeter) -> Self {
        Self { inner, meter }
    }
}

impl<S: AudioSource> AudioSource for MeteredSource<S> {
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError> {
        let more = self.inner.fill(out)?;
        self.meter.record(out);
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_media::source::{SilenceSource, ToneSource};

    #[test]
    fn meter_follows_the_signal() {
        let meter = LevelMeter::default();
        let mut tone = MeteredSource::new(ToneSource::for_name("Ada"), meter.clone());
        let mut block = [0.0; 960];
        tone.fill(&mut block).unwrap();
        assert!(meter.rms() > 0.05, "tone rms {}", meter.rms());
        assert!(meter.display_level() > 0.5);
        let mut silence = MeteredSource::new(SilenceSource, meter.clone());
        silence.fill(&mut block).unwrap();
        assert_eq!(meter.rms(), 0.0);
        assert_eq!(meter.display_level(), 0.0);
    }
}
