//! One client's outgoing control stream: a bounded queue of encoded frames and the task that
//! writes it to the stream. A client that stops reading fills its queue and is disconnected
//! with `SlowConsumer`, so it never stalls the peers who send to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, SendStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;
use vcall_proto::ErrorCode;

use crate::link::close_with_code;
use crate::metrics::{Metrics, RejectReason};

/// The sending side of one client's control queue; cloned into the rooms for its peers.
#[derive(Clone)]
pub(crate) struct ControlQueue {
    frames: mpsc::Sender<Bytes>,
    /// Set once the client has been disconnected for not reading (evicted only once).
    evicted: Arc<AtomicBool>,
}

impl ControlQueue {
    /// Queues an encoded control frame; a full queue disconnects the client (slow consumer).
    /// Returns whether the frame was queued.
    pub(crate) fn deliver(&self, frame: Bytes, connection: &Connection, metrics: &Metrics) -> bool {
        match self.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.evicted.swap(true, Ordering::AcqRel) {
                    metrics.rejected(RejectReason::SlowConsumer);
                    warn!(
                        remote = %connection.remote_address(),
                        "disconnecting slow consumer: control queue full"
                    );
                    close_with_code(connection, ErrorCode::SlowConsumer, "control queue full");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame if there is room and drops it otherwise, never evicting: for best-effort
    /// notices and for the last frame before the relay closes the connection itself.
    pub(crate) fn offer(&self, frame: Bytes) {
        let _ = self.frames.try_send(frame);
    }
}

/// Owns the task that drains one client's control queue into its send stream.
pub(crate) struct ControlWriter {
    queue: ControlQueue,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ControlWriter {
    /// Starts writing to `send` from a new queue of at most `capacity` frames.
    pub(crate) fn spawn(send: SendStream, capacity: usize) -> Self {
        let (frames, queued) = mpsc::channel(capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_frames(send, queued, stopped));
        let queue = ControlQueue {
            frames,
            evicted: Arc::new(AtomicBool::new(false)),
        };
        Self { queue, stop, task }
    }

    /// The queue this writer drains.
    pub(crate) fn queue(&self) -> &ControlQueue {
        &self.queue
    }

    /// Writes what is queued, finishes the stream and waits (up to `patience`) until the
    /// client has acknowledged it.
    pub(crate) async fn finish(self, patience: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(patience, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Writes queued frames until told to stop (or every queue handle is gone), then writes what is
/// still queued, finishes the stream and waits for the client to acknowledge it.
async fn write_frames(
    mut send: SendStream,
    mut frames: mpsc::Receiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if send.write_chunk(frame).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    while let Ok(frame) = frames.try_recv() {
        if send.write_chunk(frame).await.is_err() {
            return;
        }
    }
    if send.finish().is_ok() {
        let _ = send.stopped().await;
    }
}
