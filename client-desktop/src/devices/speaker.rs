//! Playback with cpal: the engine's 48 kHz mono mix is resampled to the device rate and queued
//! in a lock-free ring; the device callback plays it on every channel, starting only once a
//! little audio is buffered so jitter does not turn into clicks ([`SpeakerSink`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::DeviceError;
use super::audio_thread::{StreamThread, buffer_size, device_name, find_output};
use super::resample::LinearResampler;
use vcall_media::AUDIO_SAMPLE_RATE;
use vcall_media::source::AudioSink;

/// Ring capacity: half a second at the device rate.
const RING_MILLIS: u32 = 500;
/// Audio buffered before playback (re)starts.
const PREFILL_MILLIS: u32 = 60;
/// More queued audio than this and new frames are dropped (clock drift), bounding the delay.
const MAX_QUEUED_MILLIS: u32 = 200;

/// Counters about playback health.
#[derive(Debug, Default)]
pub struct PlaybackCounters {
    /// Device callbacks that found the ring empty.
    pub underruns: AtomicU64,
    /// Samples dropped because too much was queued.
    pub dropped_samples: AtomicU64,
}

/// A running speaker. Dropping it closes the device.
pub struct SpeakerSink {
    producer: rtrb::Producer<f32>,
    resampler: LinearResampler,
    resampled: Vec<f32>,
    max_queued: usize,
    counters: Arc<PlaybackCounters>,
    failure: Arc<Mutex<Option<String>>>,
    name: String,
    _stream: StreamThread,
}

impl std::fmt::Debug for SpeakerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerSink")
            .field("name", &self.name)
            .field("device_rate", &self.resampler.to_rate())
            .finish_non_exhaustive()
    }
}

impl SpeakerSink {
    /// Opens the speaker called `name` (or the default one). Blocks until the stream runs or
    /// fails: call it off the UI thread.
    pub fn open(name: Option<&str>) -> Result<Self, DeviceError> {
        let failure = Arc::new(Mutex::new(None));
        let counters = Arc::new(PlaybackCounters::default());
        let (stream_failure, stream_counters) = (Arc::clone(&failure), Arc::clone(&counters));
        let wanted = name.map(str::to_owned);
        let (stream, (producer, rate, name)) = StreamThread::spawn("speaker", move || {
            let device = find_output(wanted.as_deref())?;
            let name = device_name(&device);
            let supported = device
                .default_output_config()
                .map_err(|_| DeviceError::NoSpeaker)?;
            let rate = supported.sample_rate();
            let config = cpal::StreamConfig {
                channels: supported.channels(),
                sample_rate: rate,
                buffer_size: buffer_size(supported.buffer_size(), rate, 20),
            };
            let shared = (&stream_failure, &stream_counters);
            let (stream, producer) = match supported.sample_format() {
                cpal::SampleFormat::F32 => build::<f32>(&device, &config, shared),
                cpal::SampleFormat::I16 => build::<i16>(&device, &config, shared),
                cpal::SampleFormat::I32 => build::<i32>(&device, &config, shared),
                cpal::SampleFormat::U16 => build::<u16>(&device, &config, shared),
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
            Ok((stream, (producer, rate, name)))
        })?;
        Ok(Self {
            producer,
            resampler: LinearResampler::new(AUDIO_SAMPLE_RATE, rate),
            resampled: Vec::new(),
            max_queued: (rate * MAX_QUEUED_MILLIS / 1000) as usize,
            counters,
            failure,
            name,
            _stream: stream,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Underrun and drop counters.
    pub fn counters(&self) -> &Arc<PlaybackCounters> {
        &self.counters
    }

    /// Why the device stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|failure| failure.clone())
    }
}

impl AudioSink for SpeakerSink {
    fn play(&mut self, frame: &[f32]) {
        self.resampled.clear();
        self.resampler.process(frame, &mut self.resampled);
        let queued = self.producer.buffer().capacity() - self.producer.slots();
        if queued + self.resampled.len() > self.max_queued {
            self.counters
                .dropped_samples
                .fetch_add(self.resampled.len() as u64, Ordering::Relaxed);
            return;
        }
        for &sample in &self.resampled {
            if self.producer.push(sample).is_err() {
                self.counters
                    .dropped_samples
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Builds the output stream for sample type `T` with a new ring; retries with the driver's
/// buffer size when it refuses ours.
fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    (failure, counters): (&Arc<Mutex<Option<String>>>, &Arc<PlaybackCounters>),
) -> Result<(cpal::Stream, rtrb::Producer<f32>), String>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let ring_size = (config.sample_rate * RING_MILLIS / 1000) as usize;
    let prefill = (config.sample_rate * PREFILL_MILLIS / 1000) as usize;
    let attempt = |config: cpal::StreamConfig| {
        let (producer, mut consumer) = rtrb::RingBuffer::<f32>::new(ring_size);
        let (failure, counters) = (Arc::clone(failure), Arc::clone(counters));
        let mut playing = false;
        device
            .build_output_stream::<T, _, _>(
                config,
                move |data: &mut [T], _| {
                    if !playing && consumer.slots() >= prefill {
                        playing = true;
                    }
                    for frame in data.chunks_exact_mut(channels) {
                        let sample = if playing { consumer.pop().ok() } else { None };
                        if playing && sample.is_none() {
                            playing = false;
                            counters.underruns.fetch_add(1, Ordering::Relaxed);
                        }
                        let value = T::from_sample(sample.unwrap_or(0.0));
                        frame.fill(value);
                    }
                },
                move |error| {
                    if let Ok(mut failure) = failure.lock() {
                        *failure = Some(format!("the speaker stopped: {error}"));
                    }
                },
                None,
            )
            .map(|stream| (stream, producer))
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
