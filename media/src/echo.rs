//! The place for acoustic echo cancellation between capture and the Opus encoder: a trait fed
//! with the microphone frame and the mixer's far-end reference, and a pass-through
//! implementation until a real canceller is plugged in.

/// Removes the far end's voice (played by the speaker) from the microphone signal.
pub trait EchoCanceller: Send {
    /// Processes one microphone frame in place; `far_reference` is what the speaker played
    /// for the same period (the mixer's last output).
    fn process(&mut self, near: &mut [f32], far_reference: &[f32]);
}

/// Leaves the microphone signal unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThroughEchoCanceller;

impl EchoCanceller for PassThroughEchoCanceller {
    fn process(&mut self, _near: &mut [f32], _far_reference: &[f32]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_leaves_the_signal_alone() {
        let mut canceller: Box<dyn EchoCanceller> = Box::new(PassThroughEchoCanceller);
        let mut near = [0.1, -0.2, 0.3];
        canceller.process(&mut near, &[0.5, 0.5, 0.5]);
        assert_eq!(near, [0.1, -0.2, 0.3]);
    }
}
