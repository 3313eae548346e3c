//! Measurements for tests and reports: PSNR between two pictures and the dominant frequency of
//! an audio signal. Off the real-time path: `dominant_frequency` allocates its FFT buffers.

use std::f64::consts::PI;

use super::{I420Frame, MediaError, test_pattern};

/// PSNR in dB between two pictures of the same size, over **all three planes** (every Y, U
/// and V sample counts once, so luma weighs 2/3). `f64::INFINITY` when identical.
pub fn psnr_i420(reference: &I420Frame, distorted: &I420Frame) -> Result<f64, MediaError> {
    check_same_size(reference, distorted)?;
    Ok(psnr_of(reference.data(), distorted.data()))
}

/// PSNR in dB over the luma (Y) plane only.
pub fn psnr_luma(reference: &I420Frame, distorted: &I420Frame) -> Result<f64, MediaError> {
    check_same_size(reference, distorted)?;
    Ok(psnr_of(reference.y(), distorted.y()))
}

fn check_same_size(a: &I420Frame, b: &I420Frame) -> Result<(), MediaError> {
    if a.width() == b.width() && a.height() == b.height() {
        Ok(())
    } else {
        Err(MediaError::FrameSizeMismatch {
            expected_width: a.width(),
            expected_height: a.height(),
            actual_width: b.width(),
            actual_height: b.height(),
        })
    }
}

fn psnr_of(a: &[u8], b: &[u8]) -> f64 {
    let squared_error: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let difference = i64::from(x) - i64::from(y);
            (difference * difference) as u64
        })
        .sum();
    if squared_error == 0 || a.is_empty() {
        return f64::INFINITY;
    }
    let mean_squared_error = squared_error as f64 / a.len() as f64;
    10.0 * (255.0 * 255.0 / mean_squared_error).log10()
}

/// Measures decoded test-pattern pictures against the source frame regenerated from the
/// frame number they carry. Keeps one scratch frame, so measuring does not allocate once it
/// has seen the stream's size.
#[derive(Debug, Default)]
pub struct PatternPsnrMeter {
    reference: Option<I420Frame>,
}

impl PatternPsnrMeter {
    /// A meter with no scratch frame yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the frame number from `decoded`, renders that pattern frame at the same size and
    /// returns `(frame number, PSNR over all planes)`; `None` when no number is readable.
    pub fn measure(&mut self, decoded: &I420Frame) -> Option<(u32, f64)> {
        let number = test_pattern::read_frame_number(decoded)?;
        let reference = match &mut self.reference {
            Some(reference) => {
                reference.reshape(decoded.width(), decoded.height()).ok()?;
                reference
            }
            empty => empty.insert(I420Frame::new(decoded.width(), decoded.height()).ok()?),
        };
        test_pattern::render(number, reference);
        Some((number, psnr_i420(reference, decoded).ok()?))
    }
}

/// The frequency (Hz) of the strongest spectral peak in `samples`, or 0.0 for silence or fewer
/// than 16 samples. Hann window, zero-padded FFT (≥ 2× the length, power of two) and parabolic
/// interpolation of the log-magnitude peak: within a fraction of a hertz on 1 s of a tone.
/// Frequencies below 20 Hz (DC, rumble) are ignored.
pub fn dominant_frequency(samples: &[f32], sample_rate: u32) -> f64 {
    if samples.len() < 16 || sample_rate == 0 {
        return 0.0;
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
    let size = (samples.len() * 2).next_power_of_two();
    let mut real = vec![0.0; size];
    let mut imaginary = vec![0.0; size];
    let span = (samples.len() - 1) as f64;
    for (index, (&sample, slot)) in samples.iter().zip(real.iter_mut()).enumerate() {
        let window = 0.5 - 0.5 * (2.0 * PI * index as f64 / span).cos();
        *slot = (f64::from(sample) - mean) * window;
    }
    fft_in_place(&mut real, &mut imaginary);

    let bin_hz = f64::from(sample_rate) / size as f64;
    let first_bin = ((20.0 / bin_hz).ceil() as usize).max(1);
    let last_bin = size / 2 - 1;
    if first_bin >= last_bin {
        return 0.0;
    }
    let magnitude = |bin: usize| (real[bin] * real[bin] + imaginary[bin] * imaginary[bin]).sqrt();
    let (peak_bin, peak) =
        (first_bin..last_bin)
            .map(|bin| (bin, magnitude(bin)))
            .fold((0, 0.0), |best, candidate| {
                if candidate.1 > best.1 {
                    candidate
                } else {
                    best
                }
            });
    if peak <= 1e-9 {
        return 0.0;
    }
    let (left, right) = (
        magnitude(peak_bin - 1).max(1e-300).ln(),
        magnitude(peak_bin + 1).max(1e-300).ln(),
    );
    let centre = peak.ln();
    let curvature = left - 2.0 * centre + right;
    let offset = if curvature.abs() > f64::EPSILON {
        (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    (peak_bin as f64 + offset) * bin_hz
}

/// In-place iterative radix-2 FFT; `real.len()` must be a power of two.
fn fft_in_place(real: &mut [f64], imaginary: &mut [f64]) {
    let size = real.len();
    let bits = size.trailing_zeros();
    for index in 0..size {
        let reversed = index.reverse_bits() >> (usize::BITS - bits);
        if reversed > index {
            real.swap(index, reversed);
            imaginary.swap(index, reversed);
        }
    }
    let mut length = 2;
    while length <= size {
        let angle = -2.0 * PI / length as f64;
        let (step_sin, step_cos) = angle.sin_cos();
        for start in (0..size).step_by(length) {
            let (mut twiddle_real, mut twiddle_imaginary) = (1.0, 0.0);
            for offset in 0..length / 2 {
                let even = start + offset;
                let odd = even + length / 2;
                let odd_real = real[odd] * twiddle_real - imaginary[odd] * twiddle_imaginary;
                let odd_imaginary = real[odd] * twiddle_imaginary + imaginary[odd] * twiddle_real;
                real[odd] = real[even] - odd_real;
                imaginary[odd] = imaginary[even] - odd_imaginary;
                real[even] += odd_real;
                imaginary[even] += odd_imaginary;
                let next_real = twiddle_real * step_cos - twiddle_imaginary * step_sin;
                twiddle_imaginary = twiddle_real * step_sin + twiddle_imaginary * step_cos;
                twiddle_real = next_real;
            }
        }
        length *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::Tone;

    #[test]
    fn psnr_of_identical_and_shifted_frames() {
        let a = I420Frame::new(8, 8).unwrap();
        assert_eq!(psnr_i420(&a, &a).unwrap(), f64::INFINITY);
        let mut b = a.clone();
        for value in b.data_mut() {
            *value += 5; // MSE 25 everywhere
        }
        let expected = 10.0 * (255.0f64 * 255.0 / 25.0).log10();
        assert!((psnr_i420(&a, &b).unwrap() - expected).abs() < 1e-9);
        assert!((psnr_luma(&a, &b).unwrap() - expected).abs() < 1e-9);
        let c = I420Frame::new(8, 4).unwrap();
        assert!(psnr_i420(&a, &c).is_err());
    }

    #[test]
    fn pattern_meter_reads_the_number_and_scores_the_picture() {
        let mut picture = I420Frame::new(320, 180).unwrap();
        test_pattern::render(321, &mut picture);
        let mut meter = PatternPsnrMeter::new();
        assert_eq!(meter.measure(&picture), Some((321, f64::INFINITY)));
        // Distort the shapes area (not the code): PSNR drops but stays finite.
        for value in &mut picture.data_mut()[320 * 100..320 * 110] {
            *value = value.wrapping_add(40);
        }
        let (number, psnr) = meter.measure(&picture).unwrap();
        assert_eq!(number, 321);
        assert!(psnr.is_finite() && psnr > 20.0 && psnr < 40.0, "{psnr}");
        assert_eq!(meter.measure(&I420Frame::new(320, 180).unwrap()), None);
    }

    #[test]
    fn finds_tones_within_a_fraction_of_a_hertz() {
        for frequency in [300.0, 440.0, 777.0, 1200.0, 1234.5] {
            let mut tone = Tone::new(frequency, 48_000, 0.3);
            let mut samples = vec![0.0; 48_000];
            tone.fill(&mut samples);
            let found = dominant_frequency(&samples, 48_000);
            assert!((found - frequency).abs() < 0.5, "{frequency} → {found}");
        }
    }

    #[test]
    fn finds_the_louder_of_two_tones() {
        let mut loud = Tone::new(600.0, 48_000, 0.4);
        let mut quiet = Tone::new(900.0, 48_000, 0.1);
        let mut samples = vec![0.0; 24_000];
        let mut other = vec![0.0; 24_000];
        loud.fill(&mut samples);
        quiet.fill(&mut other);
        for (sample, extra) in samples.iter_mut().zip(&other) {
            *sample += extra + 0.2; // with a DC offset to ignore
        }
        let found = dominant_frequency(&samples, 48_000);
        assert!((found - 600.0).abs() < 1.0, "{found}");
    }

    #[test]
    fn silence_and_tiny_inputs_give_zero() {
        assert_eq!(dominant_frequency(&[0.0; 4800], 48_000), 0.0);
        assert_eq!(dominant_frequency(&[0.5; 8], 48_000), 0.0);
        assert_eq!(dominant_frequency(&[], 48_000), 0.0);
    }
}
