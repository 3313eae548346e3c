//! A thread that owns a cpal stream (streams are not `Send` on every platform) until its guard
//! is dropped, plus device lookup helpers shared by the microphone and the speaker.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait};

use super::DeviceError;

/// How long opening a sound device may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a stream's thread alive; dropping it stops the stream and joins the thread.
pub struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Runs `build` on a new thread; it returns the stream (kept alive there) and a value
    /// handed back to the caller once the stream plays.
    pub fn spawn<T, S, F>(name: &str, build: F) -> Result<(Self, T), DeviceError>
    where
        T: Send + 'static,
        S: 'static,
        F: FnOnce() -> Result<(S, T), DeviceError> + Send + 'static,
    {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || match build() {
                Ok((stream, value)) => {
                    let _ = ready_tx.send(Ok(value));
                    // Blocks until the guard is dropped (the sender disappears).
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|e| DeviceError::Thread(e.to_string()))?;
        let guard = Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(value)) => Ok((guard, value)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(DeviceError::AudioOpen {
                name: name.to_owned(),
                reason: "the sound device did not respond".into(),
            }),
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A device's human name (its description, or its identifier).
pub fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|description| description.name().to_owned())
        .unwrap_or_else(|_| device.to_string())
}

/// ALSA's `null` device is never a real choice (its capture is not even paced).
fn is_useful(name: &str) -> bool {
    name != "null" && !name.starts_with("Discard all samples")
}

/// Names of the capture devices that can actually be opened.
pub fn list_inputs() -> Vec<String> {
    let host = cpal::default_host();
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    devices
        .filter(|device| device.default_input_config().is_ok())
        .map(|device| device_name(&device))
        .filter(|name| is_useful(name))
        .collect()
}

/// Names of the playback devices that can actually be opened.
pub fn list_outputs() -> Vec<String> {
    let host = cpal::default_host();
    let Ok(devices) = host.output_devices() else {
        return Vec::new();
    };
    devices
        .filter(|device| device.default_output_config().is_ok())
        .map(|device| device_name(&device))
        .filter(|name| is_useful(name))
        .collect()
}

/// The input device called `name`, or the default one.
pub fn find_input(name: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    match name {
        None => host.default_input_device().ok_or(DeviceError::NoMicrophone),
        Some(name) => host
            .input_devices()
            .map_err(|e| DeviceError::AudioOpen {
                name: name.to_owned(),
                reason: e.to_string(),
            })?
            .find(|device| device_name(device) == name || device.to_string() == name)
            .ok_or_else(|| DeviceError::NotConnected(name.to_owned())),
    }
}

/// The output device called `name`, or the default one.
pub fn find_output(name: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    match name {
        None => host.default_output_device().ok_or(DeviceError::NoSpeaker),
        Some(name) => host
            .output_devices()
            .map_err(|e| DeviceError::AudioOpen {
                name: name.to_owned(),
                reason: e.to_string(),
            })?
            .find(|device| device_name(device) == name || device.to_string() == name)
            .ok_or_else(|| DeviceError::NotConnected(name.to_owned())),
    }
}

/// A fixed buffer of about `millis` ms when the device allows it (fewer underruns than
/// whatever the driver picks, without adding much latency).
pub fn buffer_size(
    supported: &cpal::SupportedBufferSize,
    rate: u32,
    millis: u32,
) -> cpal::BufferSize {
    let wanted = rate * millis / 1000;
    match supported {
        cpal::SupportedBufferSize::Range { min, max } => {
            cpal::BufferSize::Fixed(wanted.clamp(*min, *max))
        }
        cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Default,
    }
}
