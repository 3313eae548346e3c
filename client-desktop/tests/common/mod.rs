//! A headless call participant for the integration tests: the engine in-process, run the way
//! the `vcall-bot` binary runs it (stay for a while, take the statistics, leave and wait for
//! every engine thread), reporting the same `vcall_engine::bot::Report`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vcall_engine::bot::Report;
use vcall_engine::{CallConfig, CallHandle, CallPhase, EndReason};

/// A bot in a call on its own thread; it leaves after its duration, or when dropped.
pub struct Bot {
    stop: Arc<AtomicBool>,
    report: mpsc::Receiver<Report>,
}

impl Bot {
    /// Joins with `config` and stays `duration` (or until the call ends).
    pub fn start(config: CallConfig, duration: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (report_tx, report) = mpsc::channel();
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("bot-{}", config.display_name))
            .spawn(move || {
                let handle = CallHandle::start(config, None);
                let started = Instant::now();
                let deadline = started + duration;
                while Instant::now() < deadline
                    && !handle.ended()
                    && !stopped.load(Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let in_call = started.elapsed().as_secs_f64();
                // The statistics from inside the call; the phase from how it ended.
                let mut state = (*handle.state()).clone();
                let left = handle.leave();
                if left.state.phase != CallPhase::Ended(EndReason::Left) {
                    state.phase = left.state.phase.clone();
                }
                let _ = report_tx.send(Report::from_state(&state, in_call, None));
            })
            .expect("bot thread starts");
        Self { stop, report }
    }

    /// Waits (up to `deadline`) for the bot to finish its call; its report.
    pub fn finish(&self, deadline: Duration) -> Option<Report> {
        self.report.recv_timeout(deadline).ok()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
