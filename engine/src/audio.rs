//! The audio thread: every 20 ms it captures, cancels echo, encodes and hands one Opus frame
//! to the driver, then plays out every peer's jitter buffer through the mixer.
//! Capture and playout share the thread so the echo canceller sees the exact far-end signal.
//! Its control channel is never dropped from and is drained before its bounded packet queue.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{Sender, UnboundedSender};
use vcall_proto::PeerId;
use vcall_proto::media::AudioMeta;

use crate::config::{AudioInput, AudioOutput, SourceError};
use crate::core::{AudioToPlay, LocalMedia, MediaEvent};
use crate::wall_clock_us;
use vcall_media::analysis::dominant_frequency;
use vcall_media::audio_codec::{OpusEncoder, OpusEncoderConfig};
use vcall_media::echo::{EchoCanceller, PassThroughEchoCanceller};
use vcall_media::jitter::JitterBufferConfig;
use vcall_media::mixer::Mixer;
use vcall_media::peer_audio::{PeerAudioPlayout, PlayoutSource};
use vcall_media::source::{AudioSink, AudioSource, ToneSource, WavFileSource};
use vcall_media::wav::{WavSampleFormat, WavWriter};
use vcall_media::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, MediaError};

const FRAME: Duration = Duration::from_millis(20);
/// Decoded audio kept per peer for the dominant-frequency estimate (1 s).
const ANALYSIS_WINDOW: usize = AUDIO_SAMPLE_RATE as usize;
/// Level (dBFS) above which the local user counts as speaking.
const SPEAKING_DBFS: f32 = -40.0;

/// Control for the audio thread (lossless, drained before packets).
pub(crate) enum AudioControl {
    PeerLeft(PeerId),
    SetInput(AudioInput),
    SetOutput(AudioOutput),
    SetMuted(bool),
    /// Tune Opus in-band FEC for this much packet loss (percent).
    SetExpectedLoss(u8),
}

fn open_input(
    input: AudioInput,
    name: &str,
) -> Result<Option<Box<dyn AudioSource + Send>>, SourceError> {
    Ok(match input {
        AudioInput::Off => None,
        AudioInput::Tone => Some(Box::new(ToneSource::for_name(name))),
        AudioInput::Wav(path) => {
            let source = WavFileSource::open(&path, true)
                .map_err(|source| SourceError::File { path, source })?;
            Some(Box::new(source))
        }
        AudioInput::Source(s) => Some(s),
    })
}

struct PeerAudio {
    playout: PeerAudioPlayout,
    pcm: Vec<f32>,
    /// Ring of the last second of decoded (not concealed) audio.
    window: Vec<f32>,
    window_next: usize,
}

/// The devices the audio thread gives back when it ends.
pub(crate) type AudioDevices = (
    Option<Box<dyn AudioSource + Send>>,
    Option<Box<dyn AudioSink + Send>>,
);

/// Everything the audio thread needs.
pub(crate) struct AudioEngine {
    pub name: String,
    pub input: AudioInput,
    pub output: AudioOutput,
    pub muted: bool,
    pub control: Receiver<AudioControl>,
    /// Decrypted packets (bounded).
    pub packets: Receiver<AudioToPlay>,
    /// Encoded frames (bounded: dropped when the driver is behind).
    pub media: Sender<LocalMedia>,
    pub events: UnboundedSender<MediaEvent>,
    pub record_dir: Option<PathBuf>,
}

impl AudioEngine {
    /// Runs until the control channel closes; gives back the microphone and speaker.
    pub fn run(self) -> AudioDevices {
        let AudioEngine {
            name,
            input,
            output,
            mut muted,
            control,
            packets,
            media,
            events,
            record_dir,
        } = self;
        let report = |e: String| {
            let _ = events.send(MediaEvent::Warning(e));
        };
        let mut source = open_input(input, &name).unwrap_or_else(|e| {
            report(e.to_string());
            None
        });
        let mut sink = match output {
            AudioOutput::Discard => None,
            AudioOutput::Sink(s) => Some(s),
        };
        let mut encoder = match OpusEncoder::new(OpusEncoderConfig::default()) {
            Ok(e) => Some(e),
            Err(e) => {
                report(format!("audio encoder: {e}; microphone disabled"));
                None
            }
        };
        let mut echo: Box<dyn EchoCanceller> = Box::new(PassThroughEchoCanceller);
        let mut mixer = Mixer::new(AUDIO_FRAME_SAMPLES);
        let mut near = vec![0.0f32; AUDIO_FRAME_SAMPLES];
        let mut encoded = Vec::new();
        let mut sequence: u32 = 0;
        let mut peers: HashMap<PeerId, PeerAudio> = HashMap::new();
        let mut recordings: HashMap<PeerId, WavWriter<BufWriter<File>>> = HashMap::new();
        let start = Instant::now();
        let mut next_tick = start;
        let mut tick: u64 = 0;
        'run: loop {
            // 1. Control changes first, then packets into the jitter buffers.
            let now_ms = start.elapsed().as_millis() as u64;
            loop {
                match control.try_recv() {
                    Ok(AudioControl::PeerLeft(peer)) => {
                        // The recording stays open: packets still queued from this peer (they
                        // travel apart from this message), or the same peer back after a
                        // reconnect, go on in the same file. It is complete as it stands.
                        peers.remove(&peer);
                        if let Some(r) = recordings.get_mut(&peer) {
                            let _ = r.sync();
                        }
                    }
                    Ok(AudioControl::SetInput(input)) => {
                        source = open_input(input, &name).unwrap_or_else(|e| {
                            report(e.to_string());
                            None
                        });
                    }
                    Ok(AudioControl::SetOutput(output)) => {
                        sink = match output {
                            AudioOutput::Discard => None,
                            AudioOutput::Sink(s) => Some(s),
                        };
                    }
                    Ok(AudioControl::SetMuted(m)) => muted = m,
                    Ok(AudioControl::SetExpectedLoss(percent)) => {
                        if let Some(e) = encoder.as_mut()
                            && let Err(e) = e.set_expected_packet_loss(percent)
                        {
                            report(format!("audio encoder: {e}"));
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'run,
                }
            }
            while let Ok(AudioToPlay { peer, meta, opus }) = packets.try_recv() {
                let entry = match peers.entry(peer) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let Ok(playout) = PeerAudioPlayout::new(JitterBufferConfig {
                            // Audio arrives released in batches of up to 5 packets once its
                            // sender's batch signature vouches for it (vcall_crypto::sender_auth):
                            // start 80 ms later than the default so a batch's wait is no underrun.
                            initial_delay_ms: 120,
                            max_delay_ms: 280,
                            ..JitterBufferConfig::default()
                        }) else {
                            continue;
                        };
                        if let Some(dir) = record_dir.as_ref()
                            && !recordings.contains_key(&peer)
                        {
                            let path = dir.join(format!("peer-{}.wav", peer.0));
                            let writer =
                                File::create(&path).map_err(MediaError::from).and_then(|f| {
                                    WavWriter::new(BufWriter::new(f), WavSampleFormat::Int16)
                                });
                            match writer {
                                Ok(w) => {
                                    recordings.insert(peer, w);
                                }
                                Err(e) => report(format!("recording {}: {e}", path.display())),
                            }
                        }
                        v.insert(PeerAudio {
                            playout,
                            pcm: vec![0.0; AUDIO_FRAME_SAMPLES],
                            window: Vec::with_capacity(ANALYSIS_WINDOW),
                            window_next: 0,
                        })
                    }
                };
                entry
                    .playout
                    .push(meta.sequence, meta.capture_time_us / 1000, &opus, now_ms);
            }

            // 2. Capture → echo cancellation → encode → network.
            let mut level_dbfs = -120.0f32;
            if let Some(src) = source.as_mut() {
                match src.fill(&mut near) {
                    Ok(_) => {}
                    Err(e) => {
                        report(format!("microphone error: {e}; microphone disabled"));
                        source = None;
                    }
                }
                echo.process(&mut near, mixer.far_reference());
                level_dbfs = rms_dbfs(&near);
                if !muted
                    && source.is_some()
                    && let Some(enc) = encoder.as_mut()
                    && enc.encode(&near, &mut encoded).is_ok()
                    && !encoded.is_empty()
                {
                    let meta = AudioMeta {
                        capture_time_us: wall_clock_us(),
                        sequence,
                    };
                    sequence = sequence.wrapping_add(1);
                    if media.try_send(LocalMedia::audio(meta, &encoded)).is_err()
                        && media.is_closed()
                    {
                        break 'run;
                    }
                }
            }
            if tick.is_multiple_of(5) {
                let speaking = !muted && level_dbfs > SPEAKING_DBFS;
                let level = (((level_dbfs + 60.0) / 60.0).clamp(0.0, 1.0) * 255.0) as u8;
                let _ = events.send(MediaEvent::LocalLevel {
                    speaking,
                    level: if muted { 0 } else { level },
                });
            }

            // 3. Playout: every peer's next frame into the mixer.
            mixer.begin();
            for (peer, p) in peers.iter_mut() {
                let real = match p.playout.next_frame(now_ms, &mut p.pcm) {
                    PlayoutSource::Silence => continue,
                    PlayoutSource::Decoded { .. } => true,
                    source @ (PlayoutSource::FecRecovered | PlayoutSource::Concealed) => {
                        let _ = events.send(MediaEvent::AudioRepaired {
                            peer: *peer,
                            fec: source == PlayoutSource::FecRecovered,
                        });
                        false
                    }
                };
                let frame = &p.pcm[..];
                mixer.add(frame);
                if let Some(r) = recordings.get_mut(peer) {
                    let _ = r.write_samples(frame);
                }
                if real {
                    let _ = events.send(MediaEvent::AudioPlayed { peer: *peer });
                    for &s in frame {
                        if p.window.len() < ANALYSIS_WINDOW {
                            p.window.push(s);
                        } else {
                            p.window[p.window_next] = s;
                            p.window_next = (p.window_next + 1) % ANALYSIS_WINDOW;
                        }
                    }
                }
            }
            let mix = mixer.finish();
            if let Some(s) = sink.as_mut() {
                s.play(mix);
            }

            // 4. Once a second, the dominant frequency of each peer's last second of audio.
            if tick % 50 == 49 {
                for (peer, p) in peers.iter() {
                    if p.window.len() == ANALYSIS_WINDOW {
                        let hz = dominant_frequency(&p.window, AUDIO_SAMPLE_RATE);
                        let _ = events.send(MediaEvent::AudioPeak {
                            peer: *peer,
                            hz: (hz > 0.0).then_some(hz),
                        });
                    }
                }
            }

            tick += 1;
            next_tick += FRAME;
            let now = Instant::now();
            if next_tick > now {
                std::thread::sleep(next_tick - now);
            } else if now - next_tick > FRAME * 10 {
                next_tick = now;
            }
        }
        // However the call ended, recordings get their final WAV header.
        for (_, r) in recordings {
            let _ = r.finish();
        }
        (source, sink)
    }
}

/// RMS level of a frame in dBFS.
fn rms_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let mean_square = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    10.0 * mean_square.max(1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_level_of_full_scale_sine_is_minus_three_dbfs() {
        let sine: Vec<f32> = (0..960)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 48_000.0).sin())
            .collect();
        assert!((rms_dbfs(&sine) + 3.01).abs() < 0.1, "{}", rms_dbfs(&sine));
        assert!(rms_dbfs(&[0.0; 960]) < -100.0);
    }
}
