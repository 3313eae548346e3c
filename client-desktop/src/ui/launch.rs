//! How the app was started: the command line's link, name and device overrides, demo mode,
//! and the switches tests use to run without a settings file or device probing.

use crate::settings::{DeviceChoice, SettingsStore};
use vcall_engine::VideoSettings;

/// Start-up options (from `vcall`'s command line, or from a test).
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Join this call straight away.
    pub link: Option<String>,
    /// Overrides the saved display name.
    pub name: Option<String>,
    /// Override the saved device choices for this run (not saved).
    pub camera: Option<DeviceChoice>,
    pub microphone: Option<DeviceChoice>,
    pub speaker: Option<DeviceChoice>,
    /// Host a call on the embedded relay and add this many demo peers (test pattern + tone).
    pub demo_bots: usize,
    /// Use the test pattern / tone when a camera or microphone is missing (instead of sending
    /// nothing); `--demo` implies it.
    pub test_sources_when_missing: bool,
    /// Where settings live; `None` keeps them in memory only.
    pub settings_store: Option<SettingsStore>,
    /// Look for cameras and sound devices (tests turn it off to stay hermetic).
    pub scan_devices: bool,
    /// Outgoing video settings.
    pub video: VideoSettings,
    /// Video settings of demo peers (smaller, to spare the CPU).
    pub demo_video: VideoSettings,
    /// Print the UI's repaint rate, frame time and texture uploads to stderr this often
    /// (`--print-ui-stats`, for scripts/bench-app.sh).
    pub print_ui_stats: Option<std::time::Duration>,
    /// Capture the window once pictures show, write it, and quit (`--screenshot`).
    pub screenshot: Option<super::screenshot::ScreenshotRequest>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            link: None,
            name: None,
            camera: None,
            microphone: None,
            speaker: None,
            demo_bots: 0,
            test_sources_when_missing: false,
            settings_store: None,
            scan_devices: true,
            video: VideoSettings::default(),
            demo_video: VideoSettings {
                width: 640,
                height: 360,
                fps: 30,
                bitrate_kbps: 600,
            },
            print_ui_stats: None,
            screenshot: None,
        }
    }
}

impl LaunchOptions {
    /// Options for tests: no settings file, no device probing, test sources, no speaker.
    pub fn hermetic() -> Self {
        Self {
            settings_store: None,
            scan_devices: false,
            camera: Some(DeviceChoice::TestSource),
            microphone: Some(DeviceChoice::TestSource),
            speaker: Some(DeviceChoice::Off),
            video: VideoSettings {
                width: 320,
                height: 180,
                fps: 15,
                bitrate_kbps: 300,
            },
            demo_video: VideoSettings {
                width: 320,
                height: 180,
                fps: 15,
                bitrate_kbps: 300,
            },
            ..Self::default()
        }
    }
}
