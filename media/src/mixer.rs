//! Sums the decoded audio of every peer into the one frame the speaker plays, with hard
//! clipping, and keeps that frame as the far-end reference for echo cancellation.
//!
//! Per tick: [`Mixer::begin`], [`Mixer::add`] for each peer's decoded frame, then
//! [`Mixer::finish`]. No allocation after construction.

use super::AUDIO_FRAME_SAMPLES;

/// The output mixer.
#[derive(Debug, Clone)]
pub struct Mixer {
    mix: Vec<f32>,
    far_reference: Vec<f32>,
    sources_in_frame: usize,
    clipped_samples: u64,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new(AUDIO_FRAME_SAMPLES)
    }
}

impl Mixer {
    /// A mixer of frames of `frame_samples` samples.
    pub fn new(frame_samples: usize) -> Self {
        Self {
            mix: vec![0.0; frame_samples],
            far_reference: vec![0.0; frame_samples],
            sources_in_frame: 0,
            clipped_samples: 0,
        }
    }

    /// Starts a new output frame (silence).
    pub fn begin(&mut self) {
        self.mix.fill(0.0);
        self.sources_in_frame = 0;
    }

    /// Adds one peer's frame. A shorter frame fills the start; extra samples are ignored.
    pub fn add(&mut self, frame: &[f32]) {
        for (mixed, &sample) in self.mix.iter_mut().zip(frame) {
            *mixed += sample;
        }
        self.sources_in_frame += 1;
    }

    /// Clips the sum to -1.0..=1.0, stores it as the far-end reference and returns it.
    pub fn finish(&mut self) -> &[f32] {
        for sample in &mut self.mix {
            if sample.is_nan() {
                *sample = 0.0;
            }
            if sample.abs() > 1.0 {
                self.clipped_samples += 1;
                *sample = sample.clamp(-1.0, 1.0);
            }
        }
        self.far_reference.copy_from_slice(&self.mix);
        &self.mix
    }

    /// The last finished mix: what the speaker played, for the echo canceller.
    pub fn far_reference(&self) -> &[f32] {
        &self.far_reference
    }

    /// How many peers were added to the current frame.
    pub fn sources_in_frame(&self) -> usize {
        self.sources_in_frame
    }

    /// Samples clipped since creation.
    pub fn clipped_samples(&self) -> u64 {
        self.clipped_samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_peers_and_keeps_the_reference() {
        let mut mixer = Mixer::new(4);
        mixer.begin();
        mixer.add(&[0.1, 0.2, 0.3, 0.4]);
        mixer.add(&[0.1, -0.2, 0.0, 0.1]);
        assert_eq!(mixer.sources_in_frame(), 2);
        let mixed = mixer.finish().to_vec();
        let expected = [0.2, 0.0, 0.3, 0.5];
        for (a, b) in mixed.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(mixer.far_reference(), &mixed[..]);
        mixer.begin();
        assert_eq!(
            mixer.far_reference(),
            &mixed[..],
            "reference survives begin()"
        );
    }

    #[test]
    fn clips_loud_sums_and_tolerates_short_frames() {
        let mut mixer = Mixer::new(3);
        mixer.begin();
        mixer.add(&[0.8, -0.8, 0.5]);
        mixer.add(&[0.8, -0.8]);
        mixer.add(&[f32::NAN, 0.0, 0.0, 9.0]);
        assert_eq!(mixer.finish(), &[0.0, -1.0, 0.5]);
        assert_eq!(mixer.clipped_samples(), 1);
    }

    #[test]
    fn no_peers_is_silence() {
        let mut mixer = Mixer::default();
        mixer.begin();
        assert!(mixer.finish().iter().all(|&s| s == 0.0));
        assert_eq!(mixer.far_reference().len(), AUDIO_FRAME_SAMPLES);
    }
}
