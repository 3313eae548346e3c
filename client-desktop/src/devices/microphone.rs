//! Microphone capture with cpal: the device's own rate and channel count in the callback
//! (downmixed to mono into a lock-free ring), resampled to 48 kHz when the engine pulls
//! ([`MicrophoneSource`] implements `AudioSource`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::DeviceError;
use super::audio_thread::{StreamThread, buffer_size, device_name, find_input};
use super::resample::LinearResampler;
use vcall_media::source::AudioSource;
use vcall_media::{AUDIO_SAMPLE_RATE, MediaError};

/// Capture ring: one second at the device rate.
const RING_SECONDS: u32 = 1;
/// A pull waits at most this long for the device before padding with silence.
const PULL_WAIT: Duration = Duration::from_millis(30);
/// More buffered audio than this (at 48 kHz) is dropped, to keep the delay low.
const MAX_BACKLOG_SAMPLES: usize = AUDIO_SAMPLE_RATE as usize / 5;

/// A running microphone at 48 kHz mono. Dropping it closes the device.
pub struct MicrophoneSource {
    consumer: rtrb::Consumer<f32>,
    resampler: LinearResampler,
    device_samples: Vec<f32>,
    pending: Vec<f32>,
    failure: Arc<Mutex<Option<String>>>,
    name: String,
    _stream: StreamThread,
}

impl std::fmt::Debug for MicrophoneSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrophoneSource")
            .field("name", &self.name)
            .field("device_rate", &self.resampler.from_rate())
            .finish_non_exhaustive()
    }
}

impl MicrophoneSource {
    /// Opens the microphone called `name` (or the default one) at its preferred rate. Blocks
    /// until the stream runs or fails: call it off the UI thread.
    pub fn open(name: Option<&str>) -> Result<Self, DeviceError> {
        let failure = Arc::new(Mutex::new(None));
        let stream_failure = Arc::clone(&failure);
        let wanted = name.map(str::to_owned);
        let (stream, (consumer, rate, name)) = StreamThread::spawn("microphone", move || {
            let device = find_input(wanted.as_deref())?;
            let name = device_name(&device);
            let supported = device
                .default_input_config()
                .map_err(|_| DeviceError::NoMicrophone)?;
            let rate = supported.sample_rate();
            let config = cpal::StreamConfig {
                channels: supported.channels(),
                sample_rate: rate,
                buffer_size: buffer_size(supported.buffer_size(), rate, 10),
            };
            let (stream, consumer) = match supported.sample_format() {
                cpal::SampleFormat::F32 => build::<f32>(&device, &config, &stream_failure),
                cpal::SampleFormat::I16 => build::<i16>(&device, &config, &stream_failure),
                cpal::SampleFormat::I32 => build::<i32>(&device, &config, &stream_failure),
                cpal::SampleFormat::U16 => build::<u16>(&device, &config, &stream_failure),
                other => Err(format!("unsupported sample format {other}")),
            }
            .map_err(|reason| DeviceError::AudioOpen {
                name: name.clone(),
                reason,
            })?;
            stream.play().map_err(|e| DeviceError::AudioOpen {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            Ok((stream, (consumer, rate, name)))
        })?;
        Ok(Self {
            consumer,
            resampler: LinearResampler::new(rate, AUDIO_SAMPLE_RATE),
            device_samples: Vec::new(),
            pending: Vec::new(),
            failure,
            name,
            _stream: stream,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's native sample rate (Hz).
    pub fn device_rate(&self) -> u32 {
        self.resampler.from_rate()
    }

    fn drain_ring(&mut self) {
        let available = self.consumer.slots();
        if available == 0 {
            return;
        }
        self.device_samples.clear();
        if let Ok(chunk) = self.consumer.read_chunk(available) {
            let (first, second) = chunk.as_slices();
            self.device_samples.extend_from_slice(first);
            self.device_samples.extend_from_slice(second);
            chunk.commit_all();
        }
        self.resampler
            .process(&self.device_samples, &mut self.pending);
    }
}

/// Builds the input stream for sample type `T`, downmixing to mono into a new ring; retries
/// with the driver's buffer size when it refuses ours.
fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    failure: &Arc<Mutex<Option<String>>>,
) -> Result<(cpal::Stream, rtrb::Consumer<f32>), String>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let ring_size = (config.sample_rate * RING_SECONDS) as usize;
    let attempt = |config: cpal::StreamConfig| {
        let (mut producer, consumer) = rtrb::RingBuffer::new(ring_size);
        let failure = Arc::clone(failure);
        device
            .build_input_stream::<T, _, _>(
                config,
                move |data: &[T], _| {
                    for frame in data.chunks_exact(channels) {
                        let sum: f32 = frame.iter().map(|sample| sample.to_sample::<f32>()).sum();
                        // A full ring means nobody pulls: dropping is right.
                        let _ = producer.push(sum / channels as f32);
                    }
                },
                move |error| {
                    if let Ok(mut failure) = failure.lock() {
                        *failure = Some(format!("the microphone stopped: {error}"));
                    }
                },
                None,
            )
            .map(|stream| (stream, consumer))
    };
    attempt(*config)
        .or_else(|_| {
            attempt(cpal::StreamConfig {
                buffer_size: cpal::BufferSize::Default,
                ..*config
            })
        })
        .map_err(|error| error.to_string())
}

impl AudioSource for MicrophoneSource {
    fn fill(&mut self, out: &mut [f32]) -> Result<bool, MediaError> {
        if let Ok(failure) = self.failure.lock()
            && let Some(failure) = failure.as_ref()
        {
            return Err(MediaError::Io(std::io::Error::other(failure.clone())));
        }
        let deadline = Instant::now() + PULL_WAIT;
        loop {
            self.drain_ring();
            if self.pending.len() >= out.len() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.pending.len() > MAX_BACKLOG_SAMPLES + out.len() {
            let excess = self.pending.len() - MAX_BACKLOG_SAMPLES - out.len();
            self.pending.drain(..excess);
        }
        let available = self.pending.len().min(out.len());
        out[..available].copy_from_slice(&self.pending[..available]);
        out[available..].fill(0.0);
        self.pending.drain(..available);
        Ok(true)
    }
}
