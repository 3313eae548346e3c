//! The tokio shell around [`CallCore`]: moves bytes between the QUIC connection, the codec
//! threads' channels and the core, and sleeps until the core's next timeout. It owns nothing
//! of the protocol: every decision is the core's.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::Sender as StdSender;
use std::time::Instant;

use tokio::sync::mpsc::{Receiver, UnboundedReceiver};
use tokio::sync::watch;
use vcall_proto::control::ControlDecoder;

use crate::audio::AudioControl;
use crate::core::{
    AudioToPlay, CallCore, Change, CoreCommand, LocalMedia, MediaEvent, Output, VideoToDecode,
};
use crate::handle::{Command, Wake, Waker};
use crate::state::{CallState, EndReason};
use crate::video_recv::DecoderControl;
use crate::video_send::VideoControl;

/// The codec threads' ends of the channels: control channels are unbounded (never dropped
/// from), data channels bounded (a full queue drops media, as a lossy network would).
pub(crate) struct Pipes {
    pub media: Receiver<LocalMedia>,
    pub events: UnboundedReceiver<MediaEvent>,
    pub video_control: StdSender<VideoControl>,
    pub decoder_control: crossbeam_channel::Sender<DecoderControl>,
    pub decode: crossbeam_channel::Sender<VideoToDecode>,
    pub audio_control: StdSender<AudioControl>,
    pub audio: std::sync::mpsc::SyncSender<AudioToPlay>,
}

/// A joined call's connection and core.
pub(crate) struct Driver {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub decoder: ControlDecoder,
    pub core: CallCore,
    pub pipes: Pipes,
    pub publish: watch::Sender<Arc<CallState>>,
    pub waker: Option<Waker>,
}

impl Driver {
    /// Runs the call on the current connection until it ends or the connection is lost;
    /// returns why.
    pub async fn run(&mut self, commands: &mut UnboundedReceiver<Command>) -> EndReason {
        let mut read_buf = vec![0u8; 16 * 1024];
        self.update_path();
        let end = loop {
            if let Err(end) = self.perform_outputs().await {
                break end;
            }
            if let Some(end) = self.core.take_end() {
                break end;
            }
            let deadline = tokio::time::Instant::from_std(self.core.poll_timeout());
            tokio::select! {
                read = self.recv.read(&mut read_buf) => match read {
                    Ok(Some(n)) => {
                        self.decoder.push(&read_buf[..n]);
                        if let ControlFlow::Break(end) = self.on_control_bytes() {
                            break end;
                        }
                    }
                    Ok(None) => break EndReason::ConnectionLost("the relay closed the control stream".into()),
                    Err(e) => break EndReason::ConnectionLost(e.to_string()),
                },
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(d) => self.core.handle_datagram(Instant::now(), d),
                    Err(e) => break EndReason::ConnectionLost(e.to_string()),
                },
                command = commands.recv() => {
                    let command = command.unwrap_or(Command::Leave);
                    if let ControlFlow::Break(end) = self.on_command(command) {
                        break end;
                    }
                }
                Some(media) = self.pipes.media.recv() => {
                    self.core.handle_local_media(Instant::now(), media);
                }
                Some(event) = self.pipes.events.recv() => {
                    self.core.handle_media_event(Instant::now(), event);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.update_path();
                    self.core.handle_timeout(Instant::now());
                }
            }
        };
        // The Leave frame and the final state.
        if !end.is_reconnectable() {
            let _ = self.perform_outputs().await;
        }
        if end == EndReason::Left {
            let _ = self.send.finish();
        }
        end
    }

    /// Takes the new connection after a reconnect.
    pub fn replace_connection(
        &mut self,
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        decoder: ControlDecoder,
    ) {
        self.conn = conn;
        self.send = send;
        self.recv = recv;
        self.decoder = decoder;
    }

    /// While there is no connection: waits `delay`, still obeying commands (a leave ends the
    /// wait with `Break`), feeding codec events to the core, discarding our encoded media,
    /// and performing the core's local outputs (the network ones are dropped).
    pub async fn wait_offline(
        &mut self,
        delay: std::time::Duration,
        commands: &mut UnboundedReceiver<Command>,
    ) -> ControlFlow<EndReason> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            self.perform_local_outputs();
            tokio::select! {
                _ = &mut sleep => return ControlFlow::Continue(()),
                command = commands.recv() => {
                    self.on_command(command.unwrap_or(Command::Leave))?;
                }
                Some(_) = self.pipes.media.recv() => {}
                Some(event) = self.pipes.events.recv() => {
                    self.core.handle_media_event(Instant::now(), event);
                }
            }
        }
    }

    /// Performs the core's outputs that need no connection; drops datagrams and frames.
    pub fn perform_local_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Datagram(_) | Output::Control(_) => {}
                other => self.perform_local(other),
            }
        }
    }

    fn update_path(&mut self) {
        let queued = crate::connect::DATAGRAM_SEND_BUFFER
            .saturating_sub(self.conn.datagram_send_buffer_space());
        self.core.set_path(
            Instant::now(),
            self.conn.max_datagram_size(),
            self.conn.rtt(),
            queued,
        );
    }

    fn on_control_bytes(&mut self) -> ControlFlow<EndReason> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => self.core.handle_control(Instant::now(), frame)?,
                Ok(None) => return ControlFlow::Continue(()),
                Err(e) => {
                    return ControlFlow::Break(EndReason::Protocol(format!(
                        "invalid control frame ({e})"
                    )));
                }
            }
        }
    }

    /// Device switches go to the codec threads; mute, camera and leave to both.
    fn on_command(&mut self, command: Command) -> ControlFlow<EndReason> {
        let now = Instant::now();
        match command {
            Command::SetMicMuted(muted) => {
                let _ = self.pipes.audio_control.send(AudioControl::SetMuted(muted));
                self.core
                    .handle_command(now, CoreCommand::SetMicMuted(muted))
            }
            Command::SetCameraOff(off) => {
                let _ = self
                    .pipes
                    .video_control
                    .send(VideoControl::SetCameraOff(off));
                self.core
                    .handle_command(now, CoreCommand::SetCameraOff(off))
            }
            Command::SetCamera(input) => {
                let _ = self.pipes.video_control.send(VideoControl::SetInput(input));
                ControlFlow::Continue(())
            }
            Command::SetMic(input) => {
                let _ = self.pipes.audio_control.send(AudioControl::SetInput(input));
                ControlFlow::Continue(())
            }
            Command::SetSpeaker(output) => {
                let _ = self
                    .pipes
                    .audio_control
                    .send(AudioControl::SetOutput(output));
                ControlFlow::Continue(())
            }
            Command::Leave => self.core.handle_command(now, CoreCommand::Leave),
        }
    }

    /// Does what the core asked; fails only when the control stream is gone.
    async fn perform_outputs(&mut self) -> Result<(), EndReason> {
        while let Some(output) = self.core.poll_output() {
            match output {
                // Dropped by quinn when congested: the right behaviour for media.
                Output::Datagram(d) => {
                    let _ = self.conn.send_datagram(d);
                }
                Output::Control(frame) => {
                    self.send
                        .write_all(&frame.to_bytes())
                        .await
                        .map_err(|e| EndReason::ConnectionLost(e.to_string()))?;
                }
                other => self.perform_local(other),
            }
        }
        Ok(())
    }

    /// Performs one output that stays on this machine (codec threads, the UI).
    fn perform_local(&mut self, output: Output) {
        match output {
            Output::Datagram(_) | Output::Control(_) => {}
            // Full queues drop media (the decoder then asks for a keyframe).
            Output::Decode(frame) => {
                let _ = self.pipes.decode.try_send(frame);
            }
            Output::Play(frame) => {
                let _ = self.pipes.audio.try_send(frame);
            }
            Output::ExpectedAudioLoss(percent) => {
                let _ = self
                    .pipes
                    .audio_control
                    .send(AudioControl::SetExpectedLoss(percent));
            }
            Output::ForceKeyframe => {
                let _ = self.pipes.video_control.send(VideoControl::ForceKeyframe);
            }
            Output::VideoTarget(target) => {
                let _ = self
                    .pipes
                    .video_control
                    .send(VideoControl::SetTarget(target));
            }
            Output::PeerLeft(peer) => {
                let _ = self
                    .pipes
                    .decoder_control
                    .send(DecoderControl::PeerLeft(peer));
                let _ = self.pipes.audio_control.send(AudioControl::PeerLeft(peer));
            }
            Output::Publish(state, change) => {
                self.publish.send_replace(state);
                if let Some(w) = &self.waker {
                    w(match change {
                        Change::State => Wake::State,
                        Change::StatsOnly => Wake::Stats,
                    });
                }
            }
        }
    }
}
