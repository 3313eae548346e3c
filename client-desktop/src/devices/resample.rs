//! A streaming linear-interpolation resampler for mono audio (device rate ↔ 48 kHz).
//!
//! Linear interpolation is plenty for speech between the usual device rates (44.1/48/96 kHz);
//! it keeps state between blocks so block boundaries leave no clicks.

/// Converts a continuous mono stream from one sample rate to another, block by block.
#[derive(Debug, Clone)]
pub struct LinearResampler {
    from_rate: u32,
    to_rate: u32,
    /// Position of the next output sample, in input samples, relative to `previous`.
    position: f64,
    /// The last input sample of the previous block (index -1 of the current one).
    previous: f32,
}

impl LinearResampler {
    /// A resampler from `from_rate` Hz to `to_rate` Hz (both non-zero; zero is treated as 1).
    pub fn new(from_rate: u32, to_rate: u32) -> Self {
        Self {
            from_rate: from_rate.max(1),
            to_rate: to_rate.max(1),
            position: 1.0,
            previous: 0.0,
        }
    }

    /// True when input and output rates are the same (samples pass through unchanged).
    pub fn is_passthrough(&self) -> bool {
        self.from_rate == self.to_rate
    }

    /// Input rate (Hz).
    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    /// Output rate (Hz).
    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Resamples `input` and appends the result to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) {
        if self.is_passthrough() {
            output.extend_from_slice(input);
            return;
        }
        if input.is_empty() {
            return;
        }
        let step = f64::from(self.from_rate) / f64::from(self.to_rate);
        // Sample at virtual index i: i == 0 is `previous`, i >= 1 is input[i - 1].
        let sample_at = |index: usize, previous: f32| -> f32 {
            if index == 0 {
                previous
            } else {
                input[index - 1]
            }
        };
        let last_index = input.len(); // virtual index of input's last sample
        while self.position <= last_index as f64 {
            let base = self.position.floor();
            let fraction = (self.position - base) as f32;
            let base = base as usize;
            let left = sample_at(base, self.previous);
            let right = if base < last_index {
                sample_at(base + 1, self.previous)
            } else {
                left
            };
            output.push(left + (right - left) * fraction);
            self.position += step;
        }
        self.position -= last_index as f64;
        self.previous = input[input.len() - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_media::analysis::dominant_frequency;

    fn sine(rate: u32, frequency: f64, samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|n| {
                (2.0 * std::f64::consts::PI * frequency * n as f64 / f64::from(rate)).sin() as f32
            })
            .collect()
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut resampler = LinearResampler::new(48_000, 48_000);
        let mut out = Vec::new();
        resampler.process(&[0.1, 0.2, 0.3], &mut out);
        assert_eq!(out, [0.1, 0.2, 0.3]);
        assert!(resampler.is_passthrough());
    }

    #[test]
    fn upsampling_44k1_keeps_frequency_and_length_ratio() {
        let input = sine(44_100, 1000.0, 44_100);
        let mut resampler = LinearResampler::new(44_100, 48_000);
        let mut out = Vec::new();
        // Odd block sizes exercise the state carried between blocks.
        for block in input.chunks(441) {
            resampler.process(block, &mut out);
        }
        assert!(
            (out.len() as i64 - 48_000).abs() <= 2,
            "got {} samples",
            out.len()
        );
        let peak = dominant_frequency(&out, 48_000);
        assert!((peak - 1000.0).abs() < 5.0, "peak {peak} Hz");
    }

    #[test]
    fn downsampling_96k_keeps_frequency() {
        let input = sine(96_000, 440.0, 96_000);
        let mut resampler = LinearResampler::new(96_000, 48_000);
        let mut out = Vec::new();
        for block in input.chunks(1000) {
            resampler.process(block, &mut out);
        }
        assert!((out.len() as i64 - 48_000).abs() <= 2);
        let peak = dominant_frequency(&out, 48_000);
        assert!((peak - 440.0).abs() < 5.0, "peak {peak} Hz");
    }

    #[test]
    fn block_boundaries_are_continuous() {
        let input: Vec<f32> = (0..100).map(|n| n as f32).collect();
        let mut whole = Vec::new();
        LinearResampler::new(44_100, 48_000).process(&input, &mut whole);
        let mut pieces = Vec::new();
        let mut resampler = LinearResampler::new(44_100, 48_000);
        for block in input.chunks(7) {
            resampler.process(block, &mut pieces);
        }
        assert_eq!(whole.len(), pieces.len());
        for (a, b) in whole.iter().zip(&pieces) {
            assert!((a - b).abs() < 1e-3);
        }
        // A ramp stays monotonic through resampling.
        assert!(pieces.windows(2).all(|w| w[1] >= w[0]));
    }
}
