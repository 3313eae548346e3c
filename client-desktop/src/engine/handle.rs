//! The UI's and bot's only door into a running call: commands in, state and frames out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vcall_proto::PeerId;

use super::config::{AudioInput, AudioOutput, CallConfig, VideoInput};
use super::state::CallState;

/// Called by the engine (from any thread) whenever state or a frame changed, so a UI can
/// schedule a repaint instead of polling.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

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
    /// Leave the call (the state ends with `CallPhase::Ended`).
    Leave,
}

/// A decoded picture ready to upload into a texture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaFrame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 4` bytes, row-major RGBA.
    pub pixels: Vec<u8>,
    /// Increments with every new picture of this stream.
    pub sequence: u64,
}

/// Latest decoded picture per remote peer (and `PeerId::NONE` for the local preview), only
/// filled when the call was started with `want_rgba`.
#[derive(Default)]
pub struct VideoFrames {
    latest: Mutex<HashMap<PeerId, Arc<RgbaFrame>>>,
}

impl VideoFrames {
    /// Replaces a peer's latest picture.
    pub fn publish(&self, peer: PeerId, frame: Arc<RgbaFrame>) {
        if let Ok(mut map) = self.latest.lock() {
            map.insert(peer, frame);
        }
    }

    /// The latest picture of a peer, if any.
    pub fn latest(&self, peer: PeerId) -> Option<Arc<RgbaFrame>> {
        self.latest.lock().ok()?.get(&peer).cloned()
    }

    /// Forgets a peer (it left).
    pub fn remove(&self, peer: PeerId) {
        if let Ok(mut map) = self.latest.lock() {
            map.remove(&peer);
        }
    }
}

/// A running (or ended) call.
pub struct CallHandle {
    pub(crate) commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub(crate) state: Arc<Mutex<CallState>>,
    pub(crate) frames: Arc<VideoFrames>,
}

impl CallHandle {
    /// Starts a call on its own threads; returns at once. `waker` is called on changes.
    pub fn start(config: CallConfig, waker: Option<Waker>) -> CallHandle {
        super::run::start(config, waker)
    }

    /// Sends a command; ignored when the call has already ended.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// A snapshot of the call's state.
    pub fn state(&self) -> CallState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The latest decoded pictures.
    pub fn frames(&self) -> &Arc<VideoFrames> {
        &self.frames
    }

    /// True once the call has ended (left, failed or closed by the relay).
    pub fn ended(&self) -> bool {
        matches!(
            self.state.lock().map(|s| s.phase.clone()),
            Ok(super::state::CallPhase::Ended { .. })
        )
    }
}
