//! Work the UI thread must not wait for (device scans and opens, starting the embedded relay,
//! starting and leaving a call, saving settings) runs here on short-lived threads; results come back over a
//! channel and wake the UI.

use std::sync::mpsc;

use crate::devices::{DeviceCatalog, OpenedCamera, OpenedMicrophone, OpenedSpeaker};
use vcall_engine::{AudioInput, AudioOutput, CallHandle, VideoInput, Wake, Waker};

use super::embedded_relay::{EmbeddedRelay, EmbeddedRelayInfo};

/// Which local device a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSlot {
    Camera,
    Microphone,
    Speaker,
}

/// The outcome of a background job.
pub enum JobDone {
    /// The devices present.
    Catalog(DeviceCatalog),
    /// A device was (re)opened for the lobby; its source went into the preview.
    LobbyCamera {
        generation: u64,
        opened: OpenedCameraInfo,
    },
    LobbyMicrophone {
        generation: u64,
        opened: OpenedMicrophoneInfo,
    },
    LobbySpeaker {
        generation: u64,
        opened: OpenedSpeakerInfo,
    },
    /// A device was opened during a call, to hand to the engine.
    CallCamera(OpenedCameraInfo, VideoInput),
    CallMicrophone(OpenedMicrophoneInfo, AudioInput),
    CallSpeaker(OpenedSpeakerInfo, AudioOutput),
    /// The embedded relay started (or failed to).
    Relay(Result<(EmbeddedRelay, EmbeddedRelayInfo), String>),
    /// The engine started a call.
    CallStarted {
        handle: CallHandle,
        link: String,
    },
    /// A call was left: every engine thread ended and its devices are released.
    CallLeft,
    /// Demo peers joined.
    DemoBots(Vec<CallHandle>),
    /// Settings were written (or not).
    Saved(Result<(), String>),
}

/// What the UI keeps of an opened camera (the source itself went elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCameraInfo {
    pub kind: crate::devices::CameraKind,
    pub notice: Option<String>,
}

/// What the UI keeps of an opened microphone.
#[derive(Debug, Clone)]
pub struct OpenedMicrophoneInfo {
    pub kind: crate::devices::MicrophoneKind,
    pub meter: crate::devices::level::LevelMeter,
    pub notice: Option<String>,
}

/// What the UI keeps of an opened speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSpeakerInfo {
    pub kind: crate::devices::SpeakerKind,
    pub notice: Option<String>,
}

impl OpenedCameraInfo {
    pub fn of(opened: &OpenedCamera) -> Self {
        Self {
            kind: opened.kind.clone(),
            notice: opened.notice.clone(),
        }
    }
}

impl OpenedMicrophoneInfo {
    pub fn of(opened: &OpenedMicrophone) -> Self {
        Self {
            kind: opened.kind.clone(),
            meter: opened.meter.clone(),
            notice: opened.notice.clone(),
        }
    }
}

impl OpenedSpeakerInfo {
    pub fn of(opened: &OpenedSpeaker) -> Self {
        Self {
            kind: opened.kind.clone(),
            notice: opened.notice.clone(),
        }
    }
}

/// Hands results back to the UI from a job thread.
#[derive(Clone)]
pub struct JobSender {
    sender: mpsc::Sender<JobDone>,
    waker: Waker,
}

impl JobSender {
    /// Delivers one result and wakes the UI.
    pub fn send(&self, done: JobDone) {
        let _ = self.sender.send(done);
        (self.waker)(Wake::State);
    }
}

/// Spawns jobs and collects their results.
pub struct Jobs {
    sender: JobSender,
    receiver: mpsc::Receiver<JobDone>,
}

impl Jobs {
    /// Results wake the UI through `waker`.
    pub fn new(waker: Waker) -> Self {
        let (sender, receiver) = mpsc::channel();
        Self {
            sender: JobSender { sender, waker },
            receiver,
        }
    }

    /// Runs `job` on its own thread; it may deliver any number of results.
    pub fn spawn(&self, name: &str, job: impl FnOnce(&JobSender) + Send + 'static) {
        let sender = self.sender.clone();
        // Failing to spawn (out of threads) leaves the UI in its current state, which says
        // what it waits for; there is nothing better to do.
        let _ = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || job(&sender));
    }

    /// Finished results, without waiting.
    pub fn finished(&self) -> Vec<JobDone> {
        self.receiver.try_iter().collect()
    }
}
