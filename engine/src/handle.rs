//! The UI's and bot's only door into a running call: commands in (never dropped), an
//! immutable state snapshot out (published only when it changed), the latest pictures, and
//! `leave`, which returns once every engine thread has ended and the devices are released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};
use vcall_media::I420Frame;
use vcall_media::source::{AudioSink, AudioSource, VideoSource};

use crate::config::{AudioInput, AudioOutput, CallConfig, VideoInput};
use crate::state::{CallPhase, CallState, Stream};

/// Called by the engine (from any thread) whenever state or a picture changed, saying which,
/// so a UI can schedule (and coalesce) repaints instead of polling.
pub type Waker = Arc<dyn Fn(Wake) + Send + Sync>;

/// What changed, for a [`Waker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wake {
    /// A new [`CallState`] was published with something people see changed (or the call
    /// ended).
    State,
    /// A new [`CallState`] was published with only its statistics refreshed (every stats
    /// interval): worth a repaint only where statistics are shown.
    Stats,
    /// A new picture of this stream is in [`VideoFrames`].
    Picture(Stream),
}

/// What the UI or bot asks of a running call.
pub enum Command {
    SetMicMuted(bool),
    SetCameraOff(bool),
    /// Switch the outgoing video source without leaving the call.
    SetCamera(VideoInput),
    /// Switch the outgoing audio source without leaving the call.
    SetMic(AudioInput),
    /// Switch where received audio is played.
    SetSpeaker(AudioOutput),
    /// Leave the call (the state ends with `CallPhase::Ended(EndReason::Left)`).
    Leave,
}

/// A picture ready to draw: its I420 planes at about the size the stream is shown at (the
/// display converts colour itself, e.g. in a shader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPicture {
    pub planes: I420Frame,
    /// Increments with every new picture of this stream.
    pub sequence: u64,
}

impl VideoPicture {
    /// Width and height in pixels.
    pub fn size(&self) -> [usize; 2] {
        [self.planes.width(), self.planes.height()]
    }
}

/// Latest decoded picture per stream, only filled when the call was started with `want_pictures`,
/// and the size each stream is shown at (so producers convert straight to that size).
#[derive(Default)]
pub struct VideoFrames {
    latest: Mutex<HashMap<Stream, Arc<VideoPicture>>>,
    shown: Mutex<HashMap<Stream, [u32; 2]>>,
}

impl VideoFrames {
    /// Replaces a stream's latest picture; gives back the one it replaced, whose buffer the
    /// producer may reuse once nobody else holds it (`Arc::try_unwrap`).
    pub fn publish(&self, stream: Stream, frame: Arc<VideoPicture>) -> Option<Arc<VideoPicture>> {
        self.latest.lock().ok()?.insert(stream, frame)
    }

    /// Says that `stream` is drawn `size` physical pixels large (the UI calls this each frame).
    pub fn set_shown_size(&self, stream: Stream, size: [u32; 2]) {
        if let Ok(mut map) = self.shown.lock() {
            map.insert(stream, size);
        }
    }

    /// How large `stream` is drawn, if the UI said so.
    pub fn shown_size(&self, stream: Stream) -> Option<[u32; 2]> {
        self.shown.lock().ok()?.get(&stream).copied()
    }

    /// The latest picture of a stream, if any.
    pub fn latest(&self, stream: Stream) -> Option<Arc<VideoPicture>> {
        self.latest.lock().ok()?.get(&stream).cloned()
    }

    /// Forgets a stream (its peer left).
    pub fn remove(&self, stream: Stream) {
        if let Ok(mut map) = self.latest.lock() {
            map.remove(&stream);
        }
        if let Ok(mut map) = self.shown.lock() {
            map.remove(&stream);
        }
    }
}

/// The devices a call was using, given back when it ends (drop them to release them).
#[derive(Default)]
pub struct ReleasedDevices {
    pub camera: Option<Box<dyn VideoSource + Send>>,
    pub microphone: Option<Box<dyn AudioSource + Send>>,
    pub speaker: Option<Box<dyn AudioSink + Send>>,
}

/// What [`CallHandle::leave`] gives back.
pub struct LeftCall {
    /// The final state (its phase says how the call ended).
    pub state: Arc<CallState>,
    pub devices: ReleasedDevices,
}

/// A running (or ended) call.
pub struct CallHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<Arc<CallState>>,
    frames: Arc<VideoFrames>,
    thread: Option<JoinHandle<ReleasedDevices>>,
    /// `take_state` returned an ended state.
    ended_seen: bool,
}

impl CallHandle {
    /// Starts a call on its own threads; returns at once. `waker` is called on changes.
    pub fn start(config: CallConfig, waker: Option<Waker>) -> CallHandle {
        crate::run::start(config, waker)
    }

    pub(crate) fn new(
        commands: mpsc::UnboundedSender<Command>,
        state: watch::Receiver<Arc<CallState>>,
        frames: Arc<VideoFrames>,
        thread: Option<JoinHandle<ReleasedDevices>>,
    ) -> Self {
        Self {
            commands,
            state,
            frames,
            thread,
            ended_seen: false,
        }
    }

    /// A handle with no engine behind it, for UI tests and demos: the returned
    /// [`DetachedCall`] receives the commands and sets the state.
    pub fn detached(state: CallState) -> (CallHandle, DetachedCall) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(Arc::new(state));
        let frames = Arc::new(VideoFrames::default());
        (
            CallHandle::new(commands, state_rx, frames.clone(), None),
            DetachedCall {
                commands: command_rx,
                state: state_tx,
                frames,
            },
        )
    }

    /// Sends a command; ignored when the call has already ended. Never dropped otherwise.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The latest state snapshot (cheap: a reference count).
    pub fn state(&self) -> Arc<CallState> {
        self.state.borrow().clone()
    }

    /// Whether a new state was published since the last [`CallHandle::take_state`]
    /// (also true when the engine has ended and its last state was not taken yet).
    pub fn state_changed(&self) -> bool {
        match self.state.has_changed() {
            Ok(changed) => changed,
            // The engine is gone: its final state may still be unseen.
            Err(_) => !self.ended_seen,
        }
    }

    /// The latest state, marking it as seen.
    pub fn take_state(&mut self) -> Arc<CallState> {
        let state = self.state.borrow_and_update().clone();
        self.ended_seen = matches!(state.phase, CallPhase::Ended(_));
        state
    }

    /// The latest decoded pictures.
    pub fn frames(&self) -> &Arc<VideoFrames> {
        &self.frames
    }

    /// True once the call has ended (left, failed or closed by the relay).
    pub fn ended(&self) -> bool {
        matches!(self.state.borrow().phase, CallPhase::Ended(_))
    }

    /// Leaves the call (if it is still running) and waits until every engine thread has
    /// ended: the returned devices are no longer used by anything.
    pub fn leave(mut self) -> LeftCall {
        self.send(Command::Leave);
        let devices = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        LeftCall {
            state: self.state(),
            devices,
        }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        // Dropping a handle leaves the call; its threads end on their own.
        let _ = self.commands.send(Command::Leave);
    }
}

/// The other end of [`CallHandle::detached`].
pub struct DetachedCall {
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<Arc<CallState>>,
    frames: Arc<VideoFrames>,
}

impl DetachedCall {
    /// The next command the handle sent, if any.
    pub fn next_command(&mut self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// Changes the published state.
    pub fn edit(&self, change: impl FnOnce(&mut CallState)) {
        self.state.send_modify(|s| change(Arc::make_mut(s)));
    }

    /// The pictures the handle shows.
    pub fn frames(&self) -> &Arc<VideoFrames> {
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EndReason;

    #[test]
    fn a_final_state_left_by_an_ended_engine_is_reported_until_taken() {
        let (mut handle, engine) = CallHandle::detached(CallState::default());
        assert!(!handle.state_changed());
        engine.edit(|s| s.phase = CallPhase::Ended(EndReason::ConnectionLost("x".into())));
        drop(engine); // the engine thread ends and drops its sender
        assert!(handle.state_changed(), "the unseen end must not be lost");
        assert!(matches!(handle.take_state().phase, CallPhase::Ended(_)));
        assert!(!handle.state_changed());
    }
}
