//! The app's capture and playback devices: cameras (nokhwa, [`camera`]), microphones and
//! speakers (cpal, [`microphone`], [`speaker`]), pixel-format conversion (`vcall_media::convert`),
//! resampling ([`resample`]), level metering ([`level`]) and the lobby's self-preview
//! ([`preview`]). [`open_camera`], [`open_microphone`] and [`open_speaker`] turn a saved
//! [`DeviceChoice`] into something the engine can use, falling back to the test sources or to
//! nothing — with a plain sentence saying so — when a device is missing.
//!
//! Everything that touches a device blocks for a moment: call it off the UI thread.

pub mod audio_thread;
pub mod camera;
pub mod level;
pub mod microphone;
pub mod preview;
pub mod resample;
pub mod speaker;

use crate::settings::DeviceChoice;
use vcall_engine::{AudioInput, AudioOutput, VideoInput, VideoSettings};
use vcall_media::source::{AudioSink, AudioSource, ToneSource, VideoSource};

use camera::{CameraDevice, CameraSource, CaptureMode};
use level::{LevelMeter, MeteredSource};
use microphone::MicrophoneSource;
use speaker::SpeakerSink;
use vcall_media::convert::CameraPixelFormat;

/// Why a device could not be listed or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no camera found")]
    NoCamera,
    #[error("no microphone found")]
    NoMicrophone,
    #[error("no speaker found")]
    NoSpeaker,
    #[error("“{0}” is not connected")]
    NotConnected(String),
    #[error("could not list cameras: {0}")]
    CameraQuery(String),
    #[error("could not open the camera “{name}”: {reason}")]
    CameraOpen { name: String, reason: String },
    #[error("could not open the sound device “{name}”: {reason}")]
    AudioOpen { name: String, reason: String },
    #[error("could not start a device thread: {0}")]
    Thread(String),
}

/// The devices present on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCatalog {
    pub cameras: Vec<CameraDevice>,
    pub microphones: Vec<String>,
    pub speakers: Vec<String>,
}

impl DeviceCatalog {
    /// Asks the system (a second or so with ALSA probing: not on the UI thread).
    pub fn scan() -> Self {
        Self {
            cameras: camera::list_cameras().unwrap_or_default(),
            microphones: audio_thread::list_inputs(),
            speakers: audio_thread::list_outputs(),
        }
    }
}

/// What the camera choice resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraKind {
    Off,
    TestPattern,
    Camera { name: String, mode: CaptureMode },
}

/// A camera choice made real: what to give the engine, and what to tell the user.
pub struct OpenedCamera {
    pub kind: CameraKind,
    /// The running camera (for `Camera`), shared by the preview and then the engine.
    pub source: Option<Box<dyn VideoSource + Send>>,
    /// A sentence for the user when the choice could not be honoured.
    pub notice: Option<String>,
}

impl OpenedCamera {
    /// What the engine should send.
    pub fn into_engine_input(self) -> VideoInput {
        match (self.kind, self.source) {
            (CameraKind::Camera { .. }, Some(source)) => VideoInput::Source(source),
            (CameraKind::TestPattern, _) => VideoInput::TestPattern,
            _ => VideoInput::Off,
        }
    }
}

/// The camera mode wanted for the given encoder settings.
pub fn wanted_mode(video: VideoSettings) -> CaptureMode {
    CaptureMode {
        width: video.width,
        height: video.height,
        fps: video.fps,
        format: CameraPixelFormat::Mjpeg,
    }
}

const CAMERA_OFF_HINT: &str =
    "Your camera is off; pick “Test pattern” in the camera menu to send a moving test picture.";

/// Resolves a camera choice against the cameras present.
pub fn open_camera(
    choice: &DeviceChoice,
    cameras: &[CameraDevice],
    video: VideoSettings,
) -> OpenedCamera {
    let off = |notice: String| OpenedCamera {
        kind: CameraKind::Off,
        source: None,
        notice: Some(notice),
    };
    let device = match choice {
        DeviceChoice::Off => {
            return OpenedCamera {
                kind: CameraKind::Off,
                source: None,
                notice: None,
            };
        }
        DeviceChoice::TestSource => {
            return OpenedCamera {
                kind: CameraKind::TestPattern,
                source: None,
                notice: None,
            };
        }
        DeviceChoice::Auto => match cameras.first() {
            Some(device) => device.clone(),
            None => return off(format!("No camera found. {CAMERA_OFF_HINT}")),
        },
        DeviceChoice::Device(name) => {
            let found = cameras.iter().find(|camera| {
                &camera.name == name
                    || camera.index.to_string() == *name
                    || format!("/dev/video{}", camera.index) == *name
            });
            match found {
                Some(device) => device.clone(),
                None => {
                    return off(format!(
                        "The camera “{name}” is not connected. {CAMERA_OFF_HINT}"
                    ));
                }
            }
        }
    };
    match CameraSource::open(&device, wanted_mode(video)) {
        Ok(source) => OpenedCamera {
            kind: CameraKind::Camera {
                name: device.name.clone(),
                mode: source.mode(),
            },
            source: Some(Box::new(source)),
            notice: None,
        },
        Err(error) => off(format!("{error}. {CAMERA_OFF_HINT}")),
    }
}

/// What the microphone choice resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicrophoneKind {
    Off,
    Tone,
    Device(String),
}

/// A microphone choice made real.
pub struct OpenedMicrophone {
    pub kind: MicrophoneKind,
    /// Metered source (tone or device); `None` when off.
    pub source: Option<Box<dyn AudioSource + Send>>,
    /// The level of what is sent (the tone or the microphone).
    pub meter: LevelMeter,
    pub notice: Option<String>,
}

impl OpenedMicrophone {
    /// What the engine should send.
    pub fn into_engine_input(self) -> AudioInput {
        match self.source {
            Some(source) => AudioInput::Source(source),
            None => AudioInput::Off,
        }
    }
}

const MIC_OFF_HINT: &str =
    "Others won't hear you; pick “Test tone” in the microphone menu to send a tone.";

/// Resolves a microphone choice; the tone is the one for `display_name`.
pub fn open_microphone(choice: &DeviceChoice, display_name: &str) -> OpenedMicrophone {
    let meter = LevelMeter::default();
    let off = |notice: Option<String>, meter: LevelMeter| OpenedMicrophone {
        kind: MicrophoneKind::Off,
        source: None,
        meter,
        notice,
    };
    let name = match choice {
        DeviceChoice::Off => return off(None, meter),
        DeviceChoice::TestSource => {
            let source = MeteredSource::new(ToneSource::for_name(display_name), meter.clone());
            return OpenedMicrophone {
                kind: MicrophoneKind::Tone,
                source: Some(Box::new(source)),
                meter,
                notice: None,
            };
        }
        DeviceChoice::Auto => None,
        DeviceChoice::Device(name) => Some(name.as_str()),
    };
    match MicrophoneSource::open(name) {
        Ok(microphone) => OpenedMicrophone {
            kind: MicrophoneKind::Device(microphone.name().to_owned()),
            source: Some(Box::new(MeteredSource::new(microphone, meter.clone()))),
            meter,
            notice: None,
        },
        Err(DeviceError::NoMicrophone) => {
            off(Some(format!("No microphone found. {MIC_OFF_HINT}")), meter)
        }
        Err(error) => off(Some(format!("{error}. {MIC_OFF_HINT}")), meter),
    }
}

/// When a camera could not be used (missing or failing, not switched off by the user), the
/// test pattern instead, saying so. For demos and machines without devices.
pub fn camera_or_test_pattern(opened: OpenedCamera) -> OpenedCamera {
    match (&opened.kind, &opened.notice) {
        (CameraKind::Off, Some(notice)) => {
            let reason = notice.split(". ").next().unwrap_or("No camera found");
            OpenedCamera {
                kind: CameraKind::TestPattern,
                source: None,
                notice: Some(format!("{reason} — sending the test pattern instead.")),
            }
        }
        _ => opened,
    }
}

/// When a microphone could not be used (not muted by choice), the test tone for
/// `display_name` instead, saying so.
pub fn microphone_or_tone(opened: OpenedMicrophone, display_name: &str) -> OpenedMicrophone {
    match (&opened.kind, &opened.notice) {
        (MicrophoneKind::Off, Some(notice)) => {
            let reason = notice
                .split(". ")
                .next()
                .unwrap_or("No microphone found")
                .to_owned();
            let mut tone = open_microphone(&DeviceChoice::TestSource, display_name);
            tone.notice = Some(format!("{reason} — sending a test tone instead."));
            tone
        }
        _ => opened,
    }
}

/// What the speaker choice resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerKind {
    Off,
    Device(String),
}

/// A speaker choice made real.
pub struct OpenedSpeaker {
    pub kind: SpeakerKind,
    pub sink: Option<Box<dyn AudioSink + Send>>,
    pub notice: Option<String>,
}

impl OpenedSpeaker {
    /// Where the engine should play the others.
    pub fn into_engine_output(self) -> AudioOutput {
        match self.sink {
            Some(sink) => AudioOutput::Sink(sink),
            None => AudioOutput::Discard,
        }
    }
}

/// Resolves a speaker choice (the test-source choice means "default device" here).
pub fn open_speaker(choice: &DeviceChoice) -> OpenedSpeaker {
    let name = match choice {
        DeviceChoice::Off => {
            return OpenedSpeaker {
                kind: SpeakerKind::Off,
                sink: None,
                notice: None,
            };
        }
        DeviceChoice::Auto | DeviceChoice::TestSource => None,
        DeviceChoice::Device(name) => Some(name.as_str()),
    };
    match SpeakerSink::open(name) {
        Ok(sink) => OpenedSpeaker {
            kind: SpeakerKind::Device(sink.name().to_owned()),
            sink: Some(Box::new(sink)),
            notice: None,
        },
        Err(error) => {
            let reason = match error {
                DeviceError::NoSpeaker => "No speaker found".to_owned(),
                other => other.to_string(),
            };
            OpenedSpeaker {
                kind: SpeakerKind::Off,
                sink: None,
                notice: Some(format!("{reason}. You won't hear the others.")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_camera_falls_back_to_off_with_a_plain_notice() {
        let opened = open_camera(&DeviceChoice::Auto, &[], VideoSettings::default());
        assert_eq!(opened.kind, CameraKind::Off);
        assert!(opened.source.is_none());
        let notice = opened.notice.clone().unwrap();
        assert!(notice.starts_with("No camera found"), "{notice}");
        assert!(notice.contains("Test pattern"));
        assert!(matches!(opened.into_engine_input(), VideoInput::Off));

        let named = open_camera(
            &DeviceChoice::Device("Webcam".into()),
            &[],
            VideoSettings::default(),
        );
        assert!(named.notice.unwrap().contains("“Webcam” is not connected"));
    }

    #[test]
    fn test_sources_and_off_need_no_device() {
        let pattern = open_camera(&DeviceChoice::TestSource, &[], VideoSettings::default());
        assert_eq!(pattern.kind, CameraKind::TestPattern);
        assert!(pattern.notice.is_none());
        assert!(matches!(
            pattern.into_engine_input(),
            VideoInput::TestPattern
        ));

        let mut tone = open_microphone(&DeviceChoice::TestSource, "Ada");
        assert_eq!(tone.kind, MicrophoneKind::Tone);
        let mut block = [0.0; 960];
        tone.source.as_mut().unwrap().fill(&mut block).unwrap();
        assert!(tone.meter.rms() > 0.05);

        let off = open_microphone(&DeviceChoice::Off, "Ada");
        assert_eq!(off.kind, MicrophoneKind::Off);
        assert!(off.notice.is_none());
        assert!(matches!(off.into_engine_input(), AudioInput::Off));

        let speaker = open_speaker(&DeviceChoice::Off);
        assert_eq!(speaker.kind, SpeakerKind::Off);
        assert!(matches!(speaker.into_engine_output(), AudioOutput::Discard));
    }

    /// The real no-sound-card path: without a sound server the default microphone is
    /// reported missing in a sentence (no crash, no hang); with one, it opens.
    #[test]
    fn default_microphone_opens_or_is_explained() {
        let opened = open_microphone(&DeviceChoice::Auto, "Ada");
        match &opened.kind {
            MicrophoneKind::Off => {
                let notice = opened.notice.as_deref().unwrap_or_default();
                assert!(notice.contains("Others won't hear you"), "{notice}");
                assert!(opened.source.is_none());
            }
            MicrophoneKind::Device(name) => {
                eprintln!("this machine has a microphone: {name}");
                assert!(opened.source.is_some());
            }
            MicrophoneKind::Tone => panic!("Auto never means the tone"),
        }
    }

    #[test]
    fn missing_devices_can_fall_back_to_the_test_sources_honestly() {
        let camera = camera_or_test_pattern(open_camera(
            &DeviceChoice::Auto,
            &[],
            VideoSettings::default(),
        ));
        assert_eq!(camera.kind, CameraKind::TestPattern);
        assert_eq!(
            camera.notice.as_deref(),
            Some("No camera found — sending the test pattern instead.")
        );
        // Switched off on purpose: stays off.
        let off = camera_or_test_pattern(open_camera(
            &DeviceChoice::Off,
            &[],
            VideoSettings::default(),
        ));
        assert_eq!(off.kind, CameraKind::Off);

        let failed = OpenedMicrophone {
            kind: MicrophoneKind::Off,
            source: None,
            meter: LevelMeter::default(),
            notice: Some(format!("No microphone found. {MIC_OFF_HINT}")),
        };
        let tone = microphone_or_tone(failed, "Ada");
        assert_eq!(tone.kind, MicrophoneKind::Tone);
        assert!(tone.source.is_some());
        assert_eq!(
            tone.notice.as_deref(),
            Some("No microphone found — sending a test tone instead.")
        );
        let muted = microphone_or_tone(open_microphone(&DeviceChoice::Off, "Ada"), "Ada");
        assert_eq!(muted.kind, MicrophoneKind::Off);
    }
}
