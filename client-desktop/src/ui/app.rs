//! The app's state and what happens on each user action or background result (the call itself
//! is owned by [`CallController`]). Drawing lives in the view modules (`lobby`, `call_view`,
//! `toolbar`, `security_panel`, `settings_window`); they read this state and return
//! [`UiAction`]s, which [`VcallApp::apply`] carries out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vcall_crypto::InviteLink;

use crate::devices::preview::{LocalPreview, PreviewSlots};
use crate::devices::{
    self, CameraKind, DeviceCatalog, MicrophoneKind, camera_or_test_pattern, microphone_or_tone,
    open_camera, open_microphone, open_speaker,
};
use crate::settings::{DeviceChoice, Settings, SettingsStore};
use vcall_engine::{CallConfig, CallHandle, CallState, Command, VideoFrames, Waker};
use vcall_media::source::TestPatternSource;

use super::UiStatsMark;
use super::advice::{Explanation, explain_end};
use super::call_controller::CallController;
use super::embedded_relay::{EmbeddedRelay, EmbeddedRelayInfo, new_room_link};
use super::frame_timer::FrameTimer;
use super::jobs::{
    DeviceSlot, JobDone, Jobs, OpenedCameraInfo, OpenedMicrophoneInfo, OpenedSpeakerInfo,
};
use super::launch::LaunchOptions;
use super::repaint::RepaintPacer;
use super::textures::VideoTextures;

/// Preview size of the test pattern in the lobby.
const PREVIEW_PATTERN: (usize, usize) = (640, 360);

/// Everything the user can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiAction {
    StartCall,
    Join(String),
    ChooseDevice(DeviceSlot, DeviceChoice),
    RescanDevices,
    ToggleMicrophone,
    ToggleCamera,
    Leave,
    ToggleSecurityPanel,
    ToggleStats,
    ToggleSettings,
    CopyInviteLink,
    DismissError,
    SaveSettings,
    ForgetRecentLinks,
}

/// The lobby's form and the last call's outcome.
#[derive(Debug, Clone, Default)]
pub struct LobbyForm {
    pub name: String,
    pub join_link: String,
    /// A problem with what was typed (bad link, empty name).
    pub form_error: Option<String>,
    /// Why the last call ended, when it ended badly.
    pub ended: Option<Explanation>,
}

/// The local devices as the UI knows them.
#[derive(Default)]
pub struct LocalDevices {
    pub camera: Option<OpenedCameraInfo>,
    pub microphone: Option<OpenedMicrophoneInfo>,
    pub speaker: Option<OpenedSpeakerInfo>,
    generations: [Arc<AtomicU64>; 3],
    opening: [bool; 3],
}

impl LocalDevices {
    fn index(slot: DeviceSlot) -> usize {
        match slot {
            DeviceSlot::Camera => 0,
            DeviceSlot::Microphone => 1,
            DeviceSlot::Speaker => 2,
        }
    }

    fn next_generation(&mut self, slot: DeviceSlot) -> (u64, Arc<AtomicU64>) {
        let counter = &self.generations[Self::index(slot)];
        let generation = counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.opening[Self::index(slot)] = true;
        (generation, Arc::clone(counter))
    }

    fn is_current(&self, slot: DeviceSlot, generation: u64) -> bool {
        self.generations[Self::index(slot)].load(Ordering::SeqCst) == generation
    }

    /// True while some device is being opened.
    pub fn busy(&self) -> bool {
        self.opening.iter().any(|opening| *opening)
    }

    /// Sentences about devices that could not be used as chosen.
    pub fn notices(&self) -> Vec<String> {
        [
            self.camera.as_ref().and_then(|c| c.notice.clone()),
            self.microphone.as_ref().and_then(|m| m.notice.clone()),
            self.speaker.as_ref().and_then(|s| s.notice.clone()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The camera's state for display.
    pub fn camera_kind(&self) -> CameraKind {
        self.camera
            .as_ref()
            .map_or(CameraKind::Off, |c| c.kind.clone())
    }

    /// The microphone's state for display.
    pub fn microphone_kind(&self) -> MicrophoneKind {
        self.microphone
            .as_ref()
            .map_or(MicrophoneKind::Off, |m| m.kind.clone())
    }
}

/// The embedded relay's life.
pub enum RelayState {
    Stopped,
    Starting,
    Running(Box<EmbeddedRelay>, EmbeddedRelayInfo),
    Failed(String),
}

/// Which side panels and windows are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Panels {
    pub security: bool,
    pub stats: bool,
    pub settings: bool,
}

/// What to do once the devices (and the relay) are ready.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Nothing,
    Host,
    Join(String),
}

/// Device choices in force for this run (saved choices, overridden by the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    pub camera: DeviceChoice,
    pub microphone: DeviceChoice,
    pub speaker: DeviceChoice,
}

impl Choices {
    /// The choice for one slot.
    pub fn get(&self, slot: DeviceSlot) -> &DeviceChoice {
        match slot {
            DeviceSlot::Camera => &self.camera,
            DeviceSlot::Microphone => &self.microphone,
            DeviceSlot::Speaker => &self.speaker,
        }
    }
}

/// The `vcall` app.
pub struct VcallApp {
    pub settings: Settings,
    store: Option<SettingsStore>,
    pub(crate) options: LaunchOptions,
    pub choices: Choices,
    ctx: egui::Context,
    waker: Waker,
    /// Coalesces every wake-up into as few repaints as show it (see [`RepaintPacer`]).
    pub(crate) pacer: RepaintPacer,
    jobs: Jobs,
    /// `None` while the devices are being listed.
    pub catalog: Option<DeviceCatalog>,
    pub local: LocalDevices,
    preview: LocalPreview,
    pub(crate) preview_frames: Arc<VideoFrames>,
    pub relay: RelayState,
    pub lobby: LobbyForm,
    /// The call shown (starting or running), calls being left, and the demo peers.
    pub call: CallController,
    pub(crate) textures: VideoTextures,
    pub panels: Panels,
    pending: Pending,
    /// The last invite link made or joined (shown in the lobby after a call, copyable).
    pub last_link: Option<String>,
    /// Transient messages (settings saved, link copied, device problems in a call).
    pub toast: Option<(String, Instant)>,
    pub(crate) frame_timer: FrameTimer,
    /// When the UI's figures were last printed (`--print-ui-stats`).
    pub(crate) ui_stats_printed: Option<UiStatsMark>,
    /// `--screenshot`'s progress.
    pub(crate) screenshot: super::screenshot::Screenshot,
}

impl VcallApp {
    /// The app in a native window: pictures are drawn by the GL shader when the window's GL
    /// runs it, else through RGBA textures (also when `VCALL_PICTURES=rgba`, for comparing the
    /// two in scripts/bench-app.sh).
    pub fn for_window(cc: &eframe::CreationContext<'_>, options: LaunchOptions) -> Self {
        let mut app = Self::new(&cc.egui_ctx, options);
        let rgba_asked = std::env::var("VCALL_PICTURES").is_ok_and(|way| way == "rgba");
        if let Some(gl) = &cc.gl
            && !rgba_asked
            && super::i420_gl::supported(gl)
        {
            app.textures = VideoTextures::with_renderer(super::i420_gl::I420Renderer::shared());
        }
        app
    }

    /// Builds the app; starts listing and opening devices, and the start-up call if any.
    pub fn new(ctx: &egui::Context, options: LaunchOptions) -> Self {
        let (mut settings, load_error) = match &options.settings_store {
            Some(store) => match store.load() {
                Ok(settings) => (settings, None),
                Err(error) => (
                    Settings::default(),
                    Some(format!(
                        "Your saved settings could not be read ({error}); using defaults."
                    )),
                ),
            },
            None => (Settings::default(), None),
        };
        // A file of an older version may hold links with their secrets: rewrite it without.
        let scrubbed = settings.strip_link_secrets();
        if let Some(name) = &options.name {
            settings.display_name = name.clone();
        }
        if settings.display_name.trim().is_empty() {
            settings.display_name = default_display_name();
        }
        let choices = Choices {
            camera: options
                .camera
                .clone()
                .unwrap_or_else(|| settings.camera.clone()),
            microphone: options
                .microphone
                .clone()
                .unwrap_or_else(|| settings.microphone.clone()),
            speaker: options
                .speaker
                .clone()
                .unwrap_or_else(|| settings.speaker.clone()),
        };
        let pacer = RepaintPacer::new(ctx);
        let waker = pacer.waker();
        let preview_frames = Arc::new(VideoFrames::default());
        let preview = LocalPreview::start(Arc::clone(&preview_frames), Some(Arc::clone(&waker)));
        let pending = if options.demo_bots > 0 {
            Pending::Host
        } else if let Some(link) = &options.link {
            Pending::Join(link.clone())
        } else {
            Pending::Nothing
        };
        let mut app = Self {
            lobby: LobbyForm {
                name: settings.display_name.clone(),
                join_link: options.link.clone().unwrap_or_default(),
                ..LobbyForm::default()
            },
            store: options.settings_store.clone(),
            choices,
            ctx: ctx.clone(),
            jobs: Jobs::new(Arc::clone(&waker)),
            waker,
            pacer,
            catalog: None,
            local: LocalDevices::default(),
            preview,
            preview_frames,
            relay: RelayState::Stopped,
            call: CallController::default(),
            textures: VideoTextures::default(),
            panels: Panels {
                stats: settings.show_stats,
                ..Panels::default()
            },
            pending,
            last_link: None,
            toast: load_error.map(|message| (message, Instant::now())),
            frame_timer: FrameTimer::default(),
            ui_stats_printed: None,
            screenshot: super::screenshot::Screenshot::Waiting(None),
            settings,
            options,
        };
        if app.options.scan_devices {
            app.jobs.spawn("scan-devices", |jobs| {
                jobs.send(JobDone::Catalog(DeviceCatalog::scan()))
            });
        } else {
            app.catalog = Some(DeviceCatalog::default());
            app.open_lobby_devices();
        }
        if app.pending == Pending::Host {
            app.start_relay_if_needed();
        }
        if scrubbed {
            app.save_settings();
        }
        app
    }

    /// The display name in use.
    pub fn display_name(&self) -> String {
        let typed = self.lobby.name.trim();
        if typed.is_empty() {
            self.settings.display_name.clone()
        } else {
            typed.to_owned()
        }
    }

    /// The invite link of the current call, if any.
    pub fn invite_link(&self) -> Option<&str> {
        self.call.link()
    }

    /// The engine's state of the current call, if any.
    pub fn call_state(&self) -> Option<&CallState> {
        self.call.state()
    }

    /// Whether a call is shown (starting or running) rather than the lobby.
    pub fn in_call(&self) -> bool {
        self.call.is_active()
    }

    /// The repaint callback handed to the engine.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Shows a short message at the bottom of the window.
    pub fn show_toast(&mut self, message: impl Into<String>) {
        self.toast = Some((message.into(), Instant::now()));
    }

    /// Per-frame bookkeeping before drawing: background results, engine state, pending starts.
    pub fn update_state(&mut self) {
        for done in self.jobs.finished() {
            self.on_job_done(done);
        }
        if let Some(reason) = self.call.poll() {
            self.return_to_lobby(reason.is_error().then(|| explain_end(&reason)));
        }
        self.run_pending();
        if let Some((_, shown)) = &self.toast
            && shown.elapsed() > Duration::from_secs(6)
        {
            self.toast = None;
        }
    }

    fn run_pending(&mut self) {
        if !self.call.devices_free() || self.catalog.is_none() || self.local.busy() {
            return;
        }
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => {}
            Pending::Join(link) => self.join(link),
            Pending::Host => self.host(),
        }
    }

    /// Carries out a user action.
    pub fn apply(&mut self, action: UiAction) {
        match action {
            UiAction::StartCall => {
                if self.check_name() {
                    self.lobby.ended = None;
                    self.pending = Pending::Host;
                    self.start_relay_if_needed();
                }
            }
            UiAction::Join(link) => {
                if self.check_name() {
                    self.lobby.ended = None;
                    match InviteLink::parse(&link) {
                        Ok(_) => self.pending = Pending::Join(link.trim().to_owned()),
                        Err(error) => {
                            self.lobby.form_error =
                                Some(format!("That link doesn't work: {error}."))
                        }
                    }
                }
            }
            UiAction::ChooseDevice(slot, choice) => self.choose_device(slot, choice),
            UiAction::RescanDevices => {
                self.catalog = None;
                self.jobs.spawn("scan-devices", |jobs| {
                    jobs.send(JobDone::Catalog(DeviceCatalog::scan()))
                });
            }
            UiAction::ToggleMicrophone => self.toggle_microphone(),
            UiAction::ToggleCamera => self.toggle_camera(),
            UiAction::Leave => self.leave(),
            UiAction::ToggleSecurityPanel => self.panels.security = !self.panels.security,
            UiAction::ToggleStats => {
                self.panels.stats = !self.panels.stats;
                self.settings.show_stats = self.panels.stats;
                self.save_settings();
            }
            UiAction::ToggleSettings => self.panels.settings = !self.panels.settings,
            UiAction::CopyInviteLink => {
                if let Some(link) = self
                    .invite_link()
                    .or(self.last_link.as_deref())
                    .map(str::to_owned)
                {
                    self.ctx.copy_text(link);
                    self.show_toast("Invite link copied. Share it only with the people you invite: it holds the room's secret.");
                }
            }
            UiAction::DismissError => {
                self.lobby.ended = None;
                self.lobby.form_error = None;
            }
            UiAction::SaveSettings => self.save_settings(),
            UiAction::ForgetRecentLinks => {
                self.settings.recent_links.clear();
                self.save_settings();
            }
        }
    }

    fn check_name(&mut self) -> bool {
        let name = self.lobby.name.trim().to_owned();
        if name.is_empty() {
            self.lobby.form_error =
                Some("Enter your name first, so the others know who joined.".into());
            return false;
        }
        self.lobby.form_error = None;
        if name != self.settings.display_name {
            self.settings.display_name = name;
            self.save_settings();
        }
        true
    }

    fn start_relay_if_needed(&mut self) {
        if !self.settings.uses_embedded_relay() {
            return;
        }
        if matches!(self.relay, RelayState::Stopped | RelayState::Failed(_)) {
            self.relay = RelayState::Starting;
            self.jobs.spawn("embedded-relay", |jobs| {
                let started = EmbeddedRelay::new().and_then(|mut relay| {
                    let info = relay.start(EmbeddedRelay::network_config())?;
                    Ok((relay, info))
                });
                jobs.send(JobDone::Relay(started.map_err(|error| error.to_string())));
            });
        }
    }

    /// Makes a room with a fresh secret and joins it (waiting for the relay if needed).
    fn host(&mut self) {
        let link = if self.settings.uses_embedded_relay() {
            match &self.relay {
                RelayState::Running(_, info) => new_room_link(
                    &info.public_addr.ip().to_string(),
                    info.public_addr.port(),
                    Some(&info.fingerprint),
                    None,
                ),
                RelayState::Starting | RelayState::Stopped => {
                    self.pending = Pending::Host;
                    self.start_relay_if_needed();
                    return;
                }
                RelayState::Failed(error) => {
                    self.lobby.ended = Some(Explanation {
                        title: "Couldn't start a call on this computer".into(),
                        detail: error.clone(),
                        next_step: "Another program may be blocking network access. Set a relay address in Settings to host on a server instead.".into(),
                    });
                    return;
                }
            }
        } else {
            match split_host_port(&self.settings.relay_address) {
                Some((host, port)) => new_room_link(
                    &host,
                    port,
                    Some(&self.settings.relay_fingerprint),
                    self.settings.relay_access_token().as_deref(),
                ),
                None => {
                    self.lobby.form_error = Some(format!(
                        "The relay address “{}” in Settings needs the form HOST:PORT, e.g. relay.example.org:4433.",
                        self.settings.relay_address
                    ));
                    return;
                }
            }
        };
        match link {
            Ok(link) => {
                if self.options.demo_bots > 0 && self.call.demo_bot_count() == 0 {
                    self.call.start_demo_bots(
                        &self.jobs,
                        self.options.demo_bots,
                        &link,
                        self.options.demo_video,
                    );
                }
                self.join(link);
            }
            Err(error) => {
                self.lobby.form_error = Some(format!(
                    "{error}. Check the relay settings (Settings, “Relay for new calls”)."
                ))
            }
        }
    }

    /// Joins `link` with the devices currently open. The link is remembered without its
    /// secret (the full link stays in memory only, as [`VcallApp::last_link`]).
    fn join(&mut self, link: String) {
        let hosted_here = self.settings.uses_embedded_relay()
            && matches!(&self.relay, RelayState::Running(_, info) if InviteLink::parse(&link).is_ok_and(|l| l.port == info.public_addr.port()));
        self.settings.remember_link(&link);
        self.save_settings();
        self.last_link = Some(link.clone());
        let mut config = CallConfig::new(link.clone(), self.display_name());
        config.video = self.options.video;
        config.want_pictures = true;
        let camera_kind = self.local.camera_kind();
        config.camera_off = camera_kind == CameraKind::Off;
        config.mic_muted = self.local.microphone_kind() == MicrophoneKind::Off;
        self.call.start(
            &self.jobs,
            config,
            camera_kind,
            self.preview.slots().clone(),
            Arc::clone(&self.waker),
            hosted_here,
        );
        self.panels.security = false;
    }

    fn leave(&mut self) {
        self.return_to_lobby(None);
    }

    /// Ends the call view. The engine leaves and releases the devices in the background; the
    /// lobby devices reopen when that is done ([`JobDone::CallLeft`]).
    fn return_to_lobby(&mut self, explanation: Option<Explanation>) {
        self.lobby.ended = explanation;
        self.textures.retain(|_| false);
        self.call.end(&self.jobs);
    }

    fn choose_device(&mut self, slot: DeviceSlot, choice: DeviceChoice) {
        match slot {
            DeviceSlot::Camera => {
                self.choices.camera = choice.clone();
                self.settings.camera = choice;
            }
            DeviceSlot::Microphone => {
                self.choices.microphone = choice.clone();
                self.settings.microphone = choice;
            }
            DeviceSlot::Speaker => {
                self.choices.speaker = choice.clone();
                self.settings.speaker = choice;
            }
        }
        self.save_settings();
        if self.call.is_running() {
            self.open_call_device(slot);
        } else if self.call.devices_free() {
            self.open_lobby_device(slot);
        }
        // Otherwise a call is starting or being left: the choice applies when the lobby
        // devices reopen.
    }

    fn open_lobby_devices(&mut self) {
        for slot in [
            DeviceSlot::Camera,
            DeviceSlot::Microphone,
            DeviceSlot::Speaker,
        ] {
            self.open_lobby_device(slot);
        }
    }

    /// What opening the device of `slot` needs, for a job thread.
    fn device_request(&self, slot: DeviceSlot) -> DeviceRequest {
        DeviceRequest {
            slot,
            choice: self.choices.get(slot).clone(),
            cameras: self
                .catalog
                .as_ref()
                .map(|c| c.cameras.clone())
                .unwrap_or_default(),
            video: self.options.video,
            name: self.display_name(),
            test_sources_when_missing: self.options.test_sources_when_missing
                || self.options.demo_bots > 0,
        }
    }

    /// Opens a device for the lobby in the background; it goes into the preview slots.
    fn open_lobby_device(&mut self, slot: DeviceSlot) {
        let (generation, counter) = self.local.next_generation(slot);
        let request = self.device_request(slot);
        let slots = self.preview.slots().clone();
        self.jobs.spawn("open-device", move |jobs| {
            let current = || counter.load(Ordering::SeqCst) == generation;
            jobs.send(request.open_for_lobby(&slots, generation, &current));
        });
    }

    /// Opens a device during a call in the background; it is then handed to the engine.
    fn open_call_device(&mut self, slot: DeviceSlot) {
        let request = self.device_request(slot);
        self.jobs.spawn("switch-device", move |jobs| {
            let done = match slot {
                DeviceSlot::Camera => {
                    let opened = request.camera();
                    JobDone::CallCamera(OpenedCameraInfo::of(&opened), opened.into_engine_input())
                }
                DeviceSlot::Microphone => {
                    let opened = request.microphone();
                    JobDone::CallMicrophone(
                        OpenedMicrophoneInfo::of(&opened),
                        opened.into_engine_input(),
                    )
                }
                DeviceSlot::Speaker => {
                    let opened = open_speaker(&request.choice);
                    JobDone::CallSpeaker(
                        OpenedSpeakerInfo::of(&opened),
                        opened.into_engine_output(),
                    )
                }
            };
            jobs.send(done);
        });
    }

    fn toggle_microphone(&mut self) {
        let Some(call) = self.call.active() else {
            return;
        };
        if self.local.microphone_kind() == MicrophoneKind::Off && call.state.mic_muted {
            self.show_toast(
                "No microphone is in use: pick one, or “Test tone”, in the microphone menu.",
            );
            return;
        }
        call.send(Command::SetMicMuted(!call.state.mic_muted));
    }

    fn toggle_camera(&mut self) {
        let Some(call) = self.call.active() else {
            return;
        };
        if self.local.camera_kind() == CameraKind::Off && call.state.camera_off {
            self.show_toast(
                "No camera is in use: pick one, or “Test pattern”, in the camera menu.",
            );
            return;
        }
        call.send(Command::SetCameraOff(!call.state.camera_off));
    }

    fn save_settings(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let settings = self.settings.clone();
        self.jobs.spawn("save-settings", move |jobs| {
            jobs.send(JobDone::Saved(
                store.save(&settings).map_err(|error| error.to_string()),
            ));
        });
    }

    fn on_job_done(&mut self, done: JobDone) {
        match done {
            JobDone::Catalog(catalog) => {
                let first_scan = self.catalog.is_none() && self.local.camera.is_none();
                self.catalog = Some(catalog);
                if first_scan || self.call.devices_free() {
                    self.open_lobby_devices();
                }
            }
            JobDone::LobbyCamera { generation, opened } => {
                if self.local.is_current(DeviceSlot::Camera, generation) {
                    self.local.opening[0] = false;
                    self.local.camera = Some(opened);
                }
            }
            JobDone::LobbyMicrophone { generation, opened } => {
                if self.local.is_current(DeviceSlot::Microphone, generation) {
                    self.local.opening[1] = false;
                    self.local.microphone = Some(opened);
                }
            }
            JobDone::LobbySpeaker { generation, opened } => {
                if self.local.is_current(DeviceSlot::Speaker, generation) {
                    self.local.opening[2] = false;
                    self.local.speaker = Some(opened);
                }
            }
            JobDone::CallCamera(info, input) => {
                let off = info.kind == CameraKind::Off;
                self.call.send(Command::SetCamera(input));
                self.call.send(Command::SetCameraOff(off));
                if let Some(notice) = &info.notice {
                    self.show_toast(notice.clone());
                }
                self.local.camera = Some(info);
            }
            JobDone::CallMicrophone(info, input) => {
                self.call.send(Command::SetMic(input));
                if info.kind == MicrophoneKind::Off {
                    self.call.send(Command::SetMicMuted(true));
                }
                if let Some(notice) = &info.notice {
                    self.show_toast(notice.clone());
                }
                self.local.microphone = Some(info);
            }
            JobDone::CallSpeaker(info, output) => {
                self.call.send(Command::SetSpeaker(output));
                if let Some(notice) = &info.notice {
                    self.show_toast(notice.clone());
                }
                self.local.speaker = Some(info);
            }
            JobDone::Relay(result) => {
                self.relay = match result {
                    Ok((relay, info)) => RelayState::Running(Box::new(relay), info),
                    Err(error) => RelayState::Failed(error),
                };
                if self.pending == Pending::Host && matches!(self.relay, RelayState::Failed(_)) {
                    self.pending = Pending::Nothing;
                    self.host(); // explains the failure
                }
            }
            JobDone::CallStarted { handle, link } => self.call.started(&self.jobs, handle, &link),
            JobDone::CallLeft => {
                if self.call.left() {
                    self.open_lobby_devices();
                }
            }
            JobDone::DemoBots(bots) => self.call.set_demo_bots(bots),
            JobDone::Saved(Err(error)) => {
                self.show_toast(format!("Settings could not be saved: {error}"))
            }
            JobDone::Saved(Ok(())) => {}
        }
    }

    /// Leaves the call, if any, and lets the demo peers go (the app is closing).
    pub fn leave_on_exit(&mut self) {
        self.call.leave_on_exit();
    }

    /// Number of demo peers running.
    pub fn demo_bot_count(&self) -> usize {
        self.call.demo_bot_count()
    }

    /// Test hook: shows an already running (or handcrafted) call.
    #[cfg(test)]
    pub(crate) fn show_call_for_test(&mut self, handle: CallHandle, link: &str) {
        self.call.show(handle, link);
    }

    /// Bench hook: shows a synthetic call.
    pub(crate) fn show_synthetic_call(&mut self, handle: CallHandle) {
        self.call.show(
            handle,
            "vcall://127.0.0.1:4433/bench#k=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
    }
}

/// Everything a job thread needs to open one local device.
struct DeviceRequest {
    slot: DeviceSlot,
    choice: DeviceChoice,
    cameras: Vec<devices::camera::CameraDevice>,
    video: vcall_engine::VideoSettings,
    name: String,
    test_sources_when_missing: bool,
}

impl DeviceRequest {
    fn camera(&self) -> devices::OpenedCamera {
        let opened = open_camera(&self.choice, &self.cameras, self.video);
        if self.test_sources_when_missing {
            camera_or_test_pattern(opened)
        } else {
            opened
        }
    }

    fn microphone(&self) -> devices::OpenedMicrophone {
        let opened = open_microphone(&self.choice, &self.name);
        if self.test_sources_when_missing {
            microphone_or_tone(opened, &self.name)
        } else {
            opened
        }
    }

    /// Opens the device and puts it in the preview slots if it is still wanted.
    fn open_for_lobby(
        &self,
        slots: &PreviewSlots,
        generation: u64,
        current: &dyn Fn() -> bool,
    ) -> JobDone {
        match self.slot {
            DeviceSlot::Camera => {
                let mut opened = self.camera();
                let info = OpenedCameraInfo::of(&opened);
                if current() {
                    let preview = match opened.kind {
                        CameraKind::Camera { .. } => opened.source.take(),
                        CameraKind::TestPattern => {
                            TestPatternSource::new(PREVIEW_PATTERN.0, PREVIEW_PATTERN.1)
                                .ok()
                                .map(|source| Box::new(source) as _)
                        }
                        CameraKind::Off => None,
                    };
                    drop(slots.put_video(preview));
                }
                JobDone::LobbyCamera {
                    generation,
                    opened: info,
                }
            }
            DeviceSlot::Microphone => {
                let mut opened = self.microphone();
                let info = OpenedMicrophoneInfo::of(&opened);
                if current() {
                    drop(slots.put_audio(opened.source.take()));
                }
                JobDone::LobbyMicrophone {
                    generation,
                    opened: info,
                }
            }
            DeviceSlot::Speaker => {
                let mut opened = open_speaker(&self.choice);
                let info = OpenedSpeakerInfo::of(&opened);
                if current() {
                    drop(slots.put_speaker(opened.sink.take()));
                }
                JobDone::LobbySpeaker {
                    generation,
                    opened: info,
                }
            }
        }
    }
}

/// `HOST:PORT` (IPv6 in brackets) split in two.
pub fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.trim().rsplit_once(':')?;
    let port = port.parse().ok().filter(|port| *port != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The OS user's name, or "Guest".
fn default_display_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty() && name != "root")
        .map(|name| {
            let mut chars = name.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        })
        .unwrap_or_else(|| "Guest".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("relay.example.org:4433"),
            Some(("relay.example.org".into(), 4433))
        );
        assert_eq!(split_host_port("[::1]:9000"), Some(("::1".into(), 9000)));
        assert_eq!(split_host_port("relay.example.org"), None);
        assert_eq!(split_host_port(":4433"), None);
        assert_eq!(split_host_port("h:0"), None);
    }
}
