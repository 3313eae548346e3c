//! `vcall`: the desktop video-call app.
//!
//! `vcall [LINK] [--name NAME] [--camera DEVICE|testsrc|none] [--mic DEVICE|tone|none]
//! [--speaker DEVICE|none] [--demo] [--test-sources-when-missing]`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vcall_desktop::settings::{DeviceChoice, SettingsStore};
use vcall_desktop::ui::screenshot::ScreenshotRequest;
use vcall_desktop::ui::{self, LaunchOptions};

/// End-to-end encrypted video calls.
#[derive(Debug, Parser)]
#[command(name = "vcall", version, about)]
struct Args {
    /// Join this call straight away (vcall://HOST:PORT/ROOM?fp=…#k=…).
    link: Option<String>,
    /// Your display name (saved for next time).
    #[arg(long)]
    name: Option<String>,
    /// Camera for this run: a device name or number, `testsrc` (moving test pattern) or `none`.
    #[arg(long, value_name = "DEVICE|testsrc|none")]
    camera: Option<String>,
    /// Microphone for this run: a device name, `tone` (a test tone) or `none`.
    #[arg(long, value_name = "DEVICE|tone|none")]
    mic: Option<String>,
    /// Speaker for this run: a device name or `none`.
    #[arg(long, value_name = "DEVICE|none")]
    speaker: Option<String>,
    /// Host a call on the relay inside the app and add a demo participant (test pattern and
    /// tone).
    #[arg(long)]
    demo: bool,
    /// When no camera or microphone can be used, send the test pattern and tone instead of
    /// nothing (and say so). Implied by --demo.
    #[arg(long)]
    test_sources_when_missing: bool,
    /// Number of demo participants with --demo.
    #[arg(long, default_value_t = 1, value_name = "N")]
    demo_bots: usize,
    /// Settings file (default: the user's config directory).
    #[arg(long, value_name = "FILE")]
    settings: Option<std::path::PathBuf>,
    /// Measure the UI's frame time with three synthetic 720p peers for SECONDS, print it, quit.
    #[arg(long, value_name = "SECONDS")]
    ui_bench: Option<u64>,
    /// Print the UI's repaint rate, frame time and texture uploads to stderr every SECONDS.
    #[arg(long, value_name = "SECONDS")]
    print_ui_stats: Option<u64>,
    /// Once pictures show on --screenshot-streams streams, write the window as a PPM to FILE
    /// (and where each picture was drawn to FILE.pictures), then quit.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<std::path::PathBuf>,
    /// How many streams (the self view included) must show pictures before --screenshot.
    #[arg(long, default_value_t = 2, value_name = "N")]
    screenshot_streams: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(seconds) = args.ui_bench {
        return match ui::bench::run(Duration::from_secs(seconds)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("vcall: could not open a window: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let settings_store = match args.settings {
        Some(path) => Some(SettingsStore::at(path)),
        None => match SettingsStore::in_user_config_dir() {
            Ok(store) => Some(store),
            Err(error) => {
                eprintln!("vcall: settings will not be saved: {error}");
                None
            }
        },
    };
    let options = LaunchOptions {
        link: args.link,
        name: args.name,
        camera: args.camera.as_deref().map(DeviceChoice::from_cli),
        microphone: args.mic.as_deref().map(DeviceChoice::from_cli),
        speaker: args.speaker.as_deref().map(DeviceChoice::from_cli),
        demo_bots: if args.demo { args.demo_bots.max(1) } else { 0 },
        test_sources_when_missing: args.test_sources_when_missing,
        settings_store,
        print_ui_stats: args.print_ui_stats.map(|s| Duration::from_secs(s.max(1))),
        screenshot: args.screenshot.map(|path| ScreenshotRequest {
            path,
            streams: args.screenshot_streams,
        }),
        ..LaunchOptions::default()
    };
    match ui::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "vcall: could not open a window: {error}. Is a display available (DISPLAY or WAYLAND_DISPLAY)?"
            );
            ExitCode::FAILURE
        }
    }
}
