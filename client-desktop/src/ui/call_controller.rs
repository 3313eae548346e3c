//! The call in progress: owns the engine handle and its latest state snapshot, starts calls and
//! leaves them on a job until the engine has let go of the devices, and runs the demo peers.

use std::sync::Arc;
use std::time::Instant;

use vcall_engine::{
    AudioInput, AudioOutput, CallConfig, CallHandle, CallPhase, CallState, Command, EndReason,
    VideoFrames, VideoInput, VideoSettings, Waker,
};

use crate::devices::CameraKind;
use crate::devices::preview::PreviewSlots;

use super::jobs::{JobDone, Jobs};

/// A call in progress (or starting).
pub struct ActiveCall {
    /// `None` until the engine started.
    pub handle: Option<CallHandle>,
    pub link: String,
    /// Hosted on the relay inside this app.
    pub hosted_here: bool,
    /// The last snapshot of the engine's state.
    pub state: Arc<CallState>,
    pub started: Instant,
}

impl ActiveCall {
    /// The decoded pictures, once the engine runs.
    pub fn frames(&self) -> Option<&Arc<VideoFrames>> {
        self.handle.as_ref().map(CallHandle::frames)
    }

    /// Sends a command to the engine (ignored while starting).
    pub fn send(&self, command: Command) {
        if let Some(handle) = &self.handle {
            handle.send(command);
        }
    }
}

/// The current call, the calls being left, and the demo peers.
#[derive(Default)]
pub struct CallController {
    active: Option<ActiveCall>,
    /// Calls being left (or abandoned while starting) whose engine may still hold devices.
    leaving: usize,
    demo_bots: Vec<CallHandle>,
}

impl CallController {
    /// The call shown, if any (starting or running).
    pub fn active(&self) -> Option<&ActiveCall> {
        self.active.as_ref()
    }

    /// Whether a call is shown (starting or running).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Whether the engine of the shown call runs (it can take device switches).
    pub fn is_running(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|call| call.handle.is_some())
    }

    /// The latest state of the shown call.
    pub fn state(&self) -> Option<&CallState> {
        self.active.as_ref().map(|call| &*call.state)
    }

    /// The invite link of the shown call.
    pub fn link(&self) -> Option<&str> {
        self.active.as_ref().map(|call| call.link.as_str())
    }

    /// Sends a command to the shown call's engine (ignored while starting or without a call).
    pub fn send(&self, command: Command) {
        if let Some(call) = &self.active {
            call.send(command);
        }
    }

    /// True when no call holds the local devices: the lobby may open them.
    pub fn devices_free(&self) -> bool {
        self.active.is_none() && self.leaving == 0
    }

    /// Starts a call on a job: the job takes the lobby's open devices from `slots` and hands
    /// them to the engine (the test pattern instead when `camera_kind` says so).
    pub fn start(
        &mut self,
        jobs: &Jobs,
        mut config: CallConfig,
        camera_kind: CameraKind,
        slots: PreviewSlots,
        waker: Waker,
        hosted_here: bool,
    ) {
        let link = config.link.clone();
        let my_name = config.display_name.clone();
        let engine_link = link.clone();
        jobs.spawn("start-call", move |jobs| {
            let (video, audio, speaker) = slots.take_all();
            config.camera = match camera_kind {
                CameraKind::Camera { .. } => video.map_or(VideoInput::Off, VideoInput::Source),
                CameraKind::TestPattern => VideoInput::TestPattern,
                CameraKind::Off => VideoInput::Off,
            };
            config.mic = audio.map_or(AudioInput::Off, AudioInput::Source);
            config.speaker = speaker.map_or(AudioOutput::Discard, AudioOutput::Sink);
            let handle = CallHandle::start(config, Some(waker));
            jobs.send(JobDone::CallStarted {
                handle,
                link: engine_link,
            });
        });
        self.active = Some(ActiveCall {
            handle: None,
            link,
            hosted_here,
            state: Arc::new(CallState {
                my_name,
                ..CallState::default()
            }),
            started: Instant::now(),
        });
    }

    /// The engine of a call started: shown, or left at once when the user left meanwhile.
    pub fn started(&mut self, jobs: &Jobs, handle: CallHandle, link: &str) {
        match &mut self.active {
            Some(call) if call.link == link && call.handle.is_none() => {
                call.state = handle.state();
                call.handle = Some(handle);
            }
            // Abandoned while starting (already counted in `leaving`).
            _ => leave_in_background(jobs, handle),
        }
    }

    /// Takes the engine's latest snapshot; why the call ended, once it has.
    pub fn poll(&mut self) -> Option<EndReason> {
        let call = self.active.as_mut()?;
        let handle = call.handle.as_ref()?;
        // A reference count, not a copy. Not gated on `state_changed()`: that reports nothing
        // new once the engine has ended, which would hide the final state.
        call.state = handle.state();
        match &call.state.phase {
            CallPhase::Ended(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Stops showing the call and leaves it on a job, which reports [`JobDone::CallLeft`] once
    /// every engine thread has ended. A call still starting is left when its handle arrives.
    pub fn end(&mut self, jobs: &Jobs) {
        if let Some(call) = self.active.take() {
            self.leaving += 1;
            if let Some(handle) = call.handle {
                leave_in_background(jobs, handle);
            }
        }
    }

    /// A call finished leaving; true when the devices are now free for the lobby.
    pub fn left(&mut self) -> bool {
        self.leaving = self.leaving.saturating_sub(1);
        self.devices_free()
    }

    /// Shows an already running (or detached) call, for tests and the UI bench.
    pub fn show(&mut self, handle: CallHandle, link: &str) {
        self.active = Some(ActiveCall {
            state: handle.state(),
            handle: Some(handle),
            link: link.to_owned(),
            hosted_here: true,
            started: Instant::now(),
        });
    }

    /// Starts `count` demo peers in `link`'s call on a job ([`JobDone::DemoBots`]).
    pub fn start_demo_bots(&self, jobs: &Jobs, count: usize, link: &str, video: VideoSettings) {
        let link = link.to_owned();
        jobs.spawn("demo-bots", move |jobs| {
            let bots = (1..=count)
                .map(|n| {
                    let name = if n == 1 {
                        "Demo Bot".to_owned()
                    } else {
                        format!("Demo Bot {n}")
                    };
                    let mut config = CallConfig::new(link.clone(), name);
                    config.video = video;
                    CallHandle::start(config, None)
                })
                .collect();
            jobs.send(JobDone::DemoBots(bots));
        });
    }

    /// The demo peers started.
    pub fn set_demo_bots(&mut self, bots: Vec<CallHandle>) {
        self.demo_bots = bots;
    }

    /// Number of demo peers running.
    pub fn demo_bot_count(&self) -> usize {
        self.demo_bots.len()
    }

    /// Says goodbye from the call and the demo peers (the app is closing; nothing waits).
    pub fn leave_on_exit(&self) {
        self.send(Command::Leave);
        for bot in &self.demo_bots {
            bot.send(Command::Leave);
        }
    }
}

/// Leaves `handle`'s call on a job thread (which waits until every engine thread ended).
fn leave_in_background(jobs: &Jobs, handle: CallHandle) {
    // Say goodbye now, so the others see us leave at once; `leave` then waits.
    handle.send(Command::Leave);
    jobs.spawn("leave-call", move |jobs| {
        let left = handle.leave();
        drop(left.devices);
        jobs.send(JobDone::CallLeft);
    });
}
