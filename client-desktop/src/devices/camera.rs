//! Camera capture with nokhwa on a thread of its own: lists cameras and their formats, picks a
//! mode that reaches 720p30 (MJPEG, then NV12, then YUYV), converts every frame to I420 and
//! hands the latest one to whoever pulls ([`CameraSource`] implements `VideoSource`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use nokhwa::Camera;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};

use super::DeviceError;
use vcall_media::convert::{CameraPixelFormat, Converter};
use vcall_media::source::VideoSource;
use vcall_media::{I420Frame, MediaError};

/// How long opening a camera may take before it is reported as not responding.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first pull waits for the camera's first picture.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// How long closing waits for the capture thread to release the device.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive undecodable frames after which the camera is reported as failing.
const MAX_BAD_FRAMES: u32 = 30;

/// A camera as listed by the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraDevice {
    /// Human name, e.g. "HD Pro Webcam C920".
    pub name: String,
    /// Backend index (the N of /dev/videoN on Linux).
    pub index: u32,
}

/// One capture mode a camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: CameraPixelFormat,
}

impl std::fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} {:?} @ {} fps",
            self.width, self.height, self.format, self.fps
        )
    }
}

/// Lists the cameras the system knows about (none on a machine without /dev/video*).
pub fn list_cameras() -> Result<Vec<CameraDevice>, DeviceError> {
    let cameras =
        nokhwa::query(ApiBackend::Auto).map_err(|e| DeviceError::CameraQuery(e.to_string()))?;
    Ok(cameras
        .into_iter()
        .enumerate()
        .map(|(position, info)| CameraDevice {
            name: info.human_name(),
            index: info.index().as_index().unwrap_or(position as u32),
        })
        .collect())
}

fn pixel_format(format: FrameFormat) -> Option<CameraPixelFormat> {
    match format {
        FrameFormat::MJPEG => Some(CameraPixelFormat::Mjpeg),
        FrameFormat::NV12 => Some(CameraPixelFormat::Nv12),
        FrameFormat::YUYV => Some(CameraPixelFormat::Yuyv),
        _ => None,
    }
}

fn frame_format(format: CameraPixelFormat) -> FrameFormat {
    match format {
        CameraPixelFormat::Mjpeg => FrameFormat::MJPEG,
        CameraPixelFormat::Nv12 => FrameFormat::NV12,
        CameraPixelFormat::Yuyv => FrameFormat::YUYV,
    }
}

/// Picks the mode closest to `wanted` (size and rate) among those vcall can convert: first the
/// modes that reach the wanted rate, then the smallest size at least as large as wanted (or
/// else the largest), then MJPEG before NV12 before YUYV.
pub fn choose_mode(modes: &[CaptureMode], wanted: CaptureMode) -> Option<CaptureMode> {
    let wanted_pixels = u64::from(wanted.width) * u64::from(wanted.height);
    let format_rank = |format: CameraPixelFormat| match format {
        CameraPixelFormat::Mjpeg => 0,
        CameraPixelFormat::Nv12 => 1,
        CameraPixelFormat::Yuyv => 2,
    };
    modes
        .iter()
        .filter(|mode| mode.width >= 2 && mode.height >= 2)
        .min_by_key(|mode| {
            let pixels = u64::from(mode.width) * u64::from(mode.height);
            let reaches_rate = mode.fps >= wanted.fps;
            let (big_enough, size_distance) = if pixels >= wanted_pixels {
                (true, pixels - wanted_pixels)
            } else {
                (false, wanted_pixels - pixels)
            };
            (
                !reaches_rate,
                !big_enough,
                size_distance,
                format_rank(mode.format),
                u32::MAX - mode.fps,
            )
        })
        .copied()
}

/// The latest converted picture, shared between the capture thread and the puller.
#[derive(Default)]
struct Mailbox {
    latest: Mutex<Latest>,
    arrived: Condvar,
}

#[derive(Default)]
struct Latest {
    frame: Option<I420Frame>,
    sequence: u64,
    failure: Option<String>,
}

/// A running camera: pulls return the most recent picture (repeated when the camera is slower
/// than the encoder). Dropping it stops the capture thread.
pub struct CameraSource {
    mailbox: Arc<Mailbox>,
    stop: Arc<AtomicBool>,
    /// Disconnects when the capture thread has ended.
    finished: mpsc::Receiver<()>,
    device: CameraDevice,
    mode: CaptureMode,
    current: Option<I420Frame>,
    seen_sequence: u64,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("device", &self.device)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CameraSource {
    /// Opens `device` in the mode closest to `wanted` and starts capturing on its own thread.
    /// Blocks until the camera streams or fails (at most a few seconds): call it off the UI
    /// thread.
    pub fn open(device: &CameraDevice, wanted: CaptureMode) -> Result<Self, DeviceError> {
        let mailbox = Arc::new(Mailbox::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let (finished_tx, finished) = mpsc::channel::<()>();
        let thread = {
            let (mailbox, stop, index) = (Arc::clone(&mailbox), Arc::clone(&stop), device.index);
            std::thread::Builder::new()
                .name(format!("camera-{index}"))
                .spawn(move || {
                    capture_thread(index, wanted, &mailbox, &stop, opened_tx);
                    drop(finished_tx);
                })
                .map_err(|e| DeviceError::Thread(e.to_string()))?
        };
        let mode = match opened_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(mode)) => mode,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(error);
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                return Err(DeviceError::CameraOpen {
                    name: device.name.clone(),
                    reason: "the camera did not respond".into(),
                });
            }
        };
        Ok(Self {
            mailbox,
            stop,
            finished,
            device: device.clone(),
            mode,
            current: None,
            seen_sequence: 0,
        })
    }

    /// The camera this source captures from.
    pub fn device(&self) -> &CameraDevice {
        &self.device
    }

    /// The mode the camera streams in.
    pub fn mode(&self) -> CaptureMode {
        self.mode
    }
}

impl VideoSource for CameraSource {
    fn next_frame(&mut self, _frame_number: u64, out: &mut I420Frame) -> Result<bool, MediaError> {
        {
            let guard = self
                .mailbox
                .latest
                .lock()
                .map_err(|_| MediaError::Io(std::io::Error::other("camera thread panicked")))?;
            let (mut latest, _) = self
                .mailbox
                .arrived
                .wait_timeout_while(guard, FIRST_FRAME_TIMEOUT, |latest| {
                    self.current.is_none() && latest.frame.is_none() && latest.failure.is_none()
                })
                .map_err(|_| MediaError::Io(std::io::Error::other("camera thread panicked")))?;
            if let Some(failure) = &latest.failure {
                return Err(MediaError::Io(std::io::Error::other(failure.clone())));
            }
            if latest.sequence != self.seen_sequence
                && let Some(fresh) = latest.frame.take()
            {
                // Hand our previous buffer back to the capture thread for reuse.
                latest.frame = self.current.replace(fresh);
                self.seen_sequence = latest.sequence;
            }
        }
        match &self.current {
            Some(frame) => {
                out.reshape(frame.width(), frame.height())?;
                out.data_mut().copy_from_slice(frame.data());
            }
            // No picture yet: a black frame of the mode's size keeps the encoder going.
            None => {
                out.reshape(
                    self.mode.width as usize & !1,
                    self.mode.height as usize & !1,
                )?;
                let black = I420Frame::new(out.width(), out.height())?;
                out.data_mut().copy_from_slice(black.data());
            }
        }
        Ok(true)
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread notices the flag after at most one frame; wait that long so the device is
        // free to reopen, but never hang on a camera that stopped delivering frames.
        let _ = self.finished.recv_timeout(STOP_TIMEOUT);
    }
}

fn open_camera(index: u32, wanted: CaptureMode) -> Result<(Camera, CaptureMode), String> {
    let any = RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
    let mut camera = Camera::new(CameraIndex::Index(index), any).map_err(|e| e.to_string())?;
    let modes: Vec<CaptureMode> = camera
        .compatible_camera_formats()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|format| {
            Some(CaptureMode {
                width: format.width(),
                height: format.height(),
                fps: format.frame_rate(),
                format: pixel_format(format.format())?,
            })
        })
        .collect();
    let mode = choose_mode(&modes, wanted)
        .ok_or_else(|| "the camera offers no MJPEG, NV12 or YUYV mode".to_owned())?;
    let exact =
        CameraFormat::new_from(mode.width, mode.height, frame_format(mode.format), mode.fps);
    camera
        .set_camera_requset(RequestedFormat::new::<RgbFormat>(
            RequestedFormatType::Exact(exact),
        ))
        .map_err(|e| e.to_string())?;
    camera.open_stream().map_err(|e| e.to_string())?;
    Ok((camera, mode))
}

fn capture_thread(
    index: u32,
    wanted: CaptureMode,
    mailbox: &Mailbox,
    stop: &AtomicBool,
    opened: mpsc::SyncSender<Result<CaptureMode, DeviceError>>,
) {
    let (mut camera, mode) = match open_camera(index, wanted) {
        Ok(opened_camera) => opened_camera,
        Err(reason) => {
            let _ = opened.send(Err(DeviceError::CameraOpen {
                name: format!("camera {index}"),
                reason,
            }));
            return;
        }
    };
    let _ = opened.send(Ok(mode));
    let mut converter = Converter::default();
    let mut spare: Option<I420Frame> = None;
    let mut bad_frames = 0;
    while !stop.load(Ordering::Relaxed) {
        let failure = match camera.frame_raw() {
            Ok(raw) => {
                let mut frame = match spare.take() {
                    Some(frame) => frame,
                    None => match I420Frame::new(2, 2) {
                        Ok(frame) => frame,
                        Err(_) => break,
                    },
                };
                match converter.to_i420(
                    mode.format,
                    mode.width as usize,
                    mode.height as usize,
                    &raw,
                    &mut frame,
                ) {
                    Ok(()) => {
                        bad_frames = 0;
                        if let Ok(mut latest) = mailbox.latest.lock() {
                            spare = latest.frame.replace(frame);
                            latest.sequence += 1;
                        }
                        mailbox.arrived.notify_all();
                        None
                    }
                    Err(error) => {
                        spare = Some(frame);
                        bad_frames += 1;
                        (bad_frames >= MAX_BAD_FRAMES)
                            .then(|| format!("the camera sends unreadable pictures: {error}"))
                    }
                }
            }
            Err(error) => Some(format!("the camera stopped: {error}")),
        };
        if let Some(failure) = failure {
            if let Ok(mut latest) = mailbox.latest.lock() {
                latest.failure = Some(failure);
            }
            mailbox.arrived.notify_all();
            break;
        }
    }
    let _ = camera.stop_stream();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(width: u32, height: u32, fps: u32, format: CameraPixelFormat) -> CaptureMode {
        CaptureMode {
            width,
            height,
            fps,
            format,
        }
    }

    const WANTED: CaptureMode = CaptureMode {
        width: 1280,
        height: 720,
        fps: 30,
        format: CameraPixelFormat::Mjpeg,
    };

    #[test]
    fn prefers_720p30_mjpeg_over_slow_raw_modes() {
        let modes = [
            mode(1280, 720, 10, CameraPixelFormat::Yuyv),
            mode(640, 480, 30, CameraPixelFormat::Yuyv),
            mode(1280, 720, 30, CameraPixelFormat::Mjpeg),
            mode(1920, 1080, 30, CameraPixelFormat::Mjpeg),
        ];
        assert_eq!(choose_mode(&modes, WANTED), Some(modes[2]));
    }

    #[test]
    fn prefers_nv12_over_yuyv_at_equal_mode_and_rate_over_size() {
        let modes = [
            mode(1280, 720, 30, CameraPixelFormat::Yuyv),
            mode(1280, 720, 30, CameraPixelFormat::Nv12),
        ];
        assert_eq!(choose_mode(&modes, WANTED), Some(modes[1]));
        // 720p at 10 fps loses to 480p at 30 fps: a fluid picture matters more.
        let modes = [
            mode(1280, 720, 10, CameraPixelFormat::Mjpeg),
            mode(640, 480, 30, CameraPixelFormat::Yuyv),
        ];
        assert_eq!(choose_mode(&modes, WANTED), Some(modes[1]));
        assert_eq!(choose_mode(&[], WANTED), None);
    }

    /// The real no-camera path: this machine has no /dev/video*, so nothing is listed and
    /// opening fails with a typed error instead of hanging or panicking.
    #[test]
    fn no_camera_is_reported_not_crashed() {
        let cameras = list_cameras().unwrap_or_default();
        if !cameras.is_empty() {
            eprintln!("skipping: this machine has a camera");
            return;
        }
        let device = CameraDevice {
            name: "absent".into(),
            index: 0,
        };
        match CameraSource::open(&device, WANTED) {
            Err(DeviceError::CameraOpen { .. }) => {}
            other => panic!("expected CameraOpen error, got {other:?}"),
        }
    }
}
