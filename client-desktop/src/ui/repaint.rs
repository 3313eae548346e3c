//! Repaint pacing: every wake-up of the UI (engine state, pictures, the lobby preview,
//! background jobs) goes through one [`RepaintPacer`], so that pictures arriving together
//! cause one repaint, repaints never come closer than the display's rate (new pictures: a
//! little less than a 30 fps frame, so streams out of step share repaints), the self view rides
//! along with remote pictures (while there are any) instead of adding repaints of its own,
//! and state changes are shown within a tenth of a second. Statistics refreshed on their own
//! (several times a second) wake the UI only while it shows them: otherwise its once-a-second
//! clock picks them up. No wake-up asks egui for an *immediate* repaint: egui answers each of
//! those with two passes (one to "settle"), which doubled every picture's cost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vcall_engine::{Stream, Wake, Waker};

/// The closest two repaints come (a 60 Hz display).
pub const MIN_INTERVAL: Duration = Duration::from_micros(16_667);
/// The closest two repaints for new pictures come: a little less than a frame at 30 fps, so
/// every picture of a stream of up to 30 fps is still drawn before its next one replaces it,
/// while several streams out of step share repaints (three remote 30 fps streams caused 49
/// repaints a second at `MIN_INTERVAL`; each costs a software GL the whole window).
pub const PICTURE_INTERVAL: Duration = Duration::from_millis(30);
/// How long a new self-view picture waits for a repaint that a remote picture causes anyway:
/// a little less than a frame at 30 fps, so that it is shown before the camera's next picture
/// replaces it (at 33 ms, every other one was never drawn: 15 fps), yet catches a 30 fps remote
/// stream's repaint nine times in ten.
pub const SELF_VIEW_DELAY: Duration = Duration::from_millis(28);
/// The self view waits for remote pictures only while some came this recently: alone on
/// screen it is shown at once (waiting, on a busy machine, let the camera's next picture
/// replace it before it was drawn: a 20 fps self view).
pub const REMOTE_VIDEO_RECENT: Duration = Duration::from_millis(150);
/// How long a state change (roster, mute, speaking, shown stats) waits to be shown.
pub const STATE_DELAY: Duration = Duration::from_millis(100);
/// The shortest delay asked of egui (never zero: see the module doc).
const SOONEST: Duration = Duration::from_millis(1);

/// When the next repaint is due, given what woke the UI: a pure schedule, no clock, no egui.
#[derive(Debug, Default, Clone)]
pub struct RepaintSchedule {
    last_paint: Option<Instant>,
    due: Option<Instant>,
    /// The last pass drew statistics (the stats overlay is open).
    stats_shown: bool,
    /// When the last remote picture woke the UI.
    last_remote_picture: Option<Instant>,
}

impl RepaintSchedule {
    /// The delay from `now` to ask a repaint for, or `None` when a repaint already asked for
    /// comes soon enough to show this too.
    pub fn on_wake(&mut self, wake: Wake, now: Instant) -> Option<Duration> {
        let after_last = |interval: Duration| {
            self.last_paint
                .map_or(now, |painted: Instant| (painted + interval).max(now))
        };
        let earliest = after_last(MIN_INTERVAL);
        let due = match wake {
            Wake::Picture(Stream::Remote(_)) => {
                self.last_remote_picture = Some(now);
                after_last(PICTURE_INTERVAL)
            }
            Wake::Picture(Stream::Local) => {
                let remote_video = self
                    .last_remote_picture
                    .is_some_and(|at| now.saturating_duration_since(at) < REMOTE_VIDEO_RECENT);
                if remote_video {
                    after_last(PICTURE_INTERVAL).max(now + SELF_VIEW_DELAY)
                } else {
                    after_last(PICTURE_INTERVAL)
                }
            }
            Wake::State => earliest.max(now + STATE_DELAY),
            Wake::Stats if self.stats_shown => earliest.max(now + STATE_DELAY),
            Wake::Stats => return None,
        };
        if self.due.is_some_and(|asked| asked <= due) {
            return None;
        }
        self.due = Some(due);
        Some(due.saturating_duration_since(now).max(SOONEST))
    }

    /// A pass began at `now`: it shows everything that woke the UI so far, and statistics if
    /// `stats_shown`.
    pub fn on_paint(&mut self, now: Instant, stats_shown: bool) {
        self.last_paint = Some(now);
        self.due = None;
        self.stats_shown = stats_shown;
    }
}

/// The shared pacer: wakers from any thread, [`Self::painted`] from the UI thread.
#[derive(Clone)]
pub struct RepaintPacer {
    ctx: egui::Context,
    schedule: Arc<Mutex<RepaintSchedule>>,
}

impl RepaintPacer {
    pub fn new(ctx: &egui::Context) -> Self {
        Self {
            ctx: ctx.clone(),
            schedule: Arc::default(),
        }
    }

    /// Asks for the repaint `wake` needs, unless one already asked for covers it.
    pub fn wake(&self, wake: Wake) {
        let delay = match self.schedule.lock() {
            Ok(mut schedule) => schedule.on_wake(wake, Instant::now()),
            Err(_) => Some(SOONEST),
        };
        if let Some(delay) = delay {
            self.ctx.request_repaint_after(delay);
        }
    }

    /// Called at the start of every pass, saying whether it draws statistics.
    pub fn painted(&self, stats_shown: bool) {
        if let Ok(mut schedule) = self.schedule.lock() {
            schedule.on_paint(Instant::now(), stats_shown);
        }
    }

    /// A [`Waker`] for the engine, the preview and jobs.
    pub fn waker(&self) -> Waker {
        let pacer = self.clone();
        Arc::new(move |wake| pacer.wake(wake))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcall_proto::PeerId;

    const A: Wake = Wake::Picture(Stream::Remote(PeerId(1)));
    const B: Wake = Wake::Picture(Stream::Remote(PeerId(2)));

    #[test]
    fn pictures_arriving_together_share_one_repaint() {
        let t0 = Instant::now();
        let mut schedule = RepaintSchedule::default();
        assert_eq!(schedule.on_wake(A, t0), Some(SOONEST));
        assert_eq!(schedule.on_wake(B, t0 + Duration::from_millis(2)), None);
        assert_eq!(
            schedule.on_wake(Wake::State, t0 + Duration::from_millis(3)),
            None
        );
        let self_view = Wake::Picture(Stream::Local);
        assert_eq!(
            schedule.on_wake(self_view, t0 + Duration::from_millis(4)),
            None
        );
    }

    #[test]
    fn repaints_keep_the_display_interval_and_the_self_view_waits_for_remote_pictures() {
        let t0 = Instant::now();
        let mut schedule = RepaintSchedule::default();
        schedule.on_paint(t0, false);
        // A remote picture 5 ms after a paint waits for the picture interval.
        let delay = schedule.on_wake(A, t0 + Duration::from_millis(5)).unwrap();
        assert_eq!(delay, PICTURE_INTERVAL - Duration::from_millis(5));
        schedule.on_paint(t0 + PICTURE_INTERVAL, false);

        // The self view alone waits a frame; a remote picture meanwhile brings it forward.
        let t1 = t0 + Duration::from_millis(100);
        let self_view = Wake::Picture(Stream::Local);
        assert_eq!(schedule.on_wake(self_view, t1), Some(SELF_VIEW_DELAY));
        let sooner = schedule.on_wake(A, t1 + Duration::from_millis(10));
        assert_eq!(sooner, Some(SOONEST));
        schedule.on_paint(t1 + Duration::from_millis(10), false);

        // State changes are shown within STATE_DELAY, sooner if a picture comes.
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!(schedule.on_wake(Wake::State, t2), Some(STATE_DELAY));
        assert_eq!(
            schedule.on_wake(Wake::State, t2 + Duration::from_millis(1)),
            None
        );
        assert!(
            schedule
                .on_wake(B, t2 + Duration::from_millis(50))
                .is_some()
        );
    }

    #[test]
    fn three_streams_out_of_step_share_repaints_and_every_picture_is_drawn() {
        // Three remote 30 fps streams, 11 ms apart, and the self view, for two seconds; every
        // repaint runs when it was asked for.
        let t0 = Instant::now();
        let period = Duration::from_micros(33_333);
        let streams = [
            (A, Duration::ZERO),
            (B, Duration::from_millis(11)),
            (
                Wake::Picture(Stream::Remote(PeerId(3))),
                Duration::from_millis(22),
            ),
            (Wake::Picture(Stream::Local), Duration::from_millis(5)),
        ];
        let mut arrivals: Vec<(Duration, usize)> = (0..60)
            .flat_map(|n| {
                streams
                    .iter()
                    .enumerate()
                    .map(move |(i, (_, offset))| (*offset + period * n, i))
            })
            .collect();
        arrivals.sort();
        let mut schedule = RepaintSchedule::default();
        let mut due: Option<Duration> = None;
        let mut waiting = [false; 4];
        let (mut passes, mut replaced_undrawn) = (0, 0);
        for (at, stream) in arrivals {
            // Passes due before this arrival run first.
            if let Some(paint_at) = due.filter(|d| *d <= at) {
                schedule.on_paint(t0 + paint_at, false);
                passes += 1;
                waiting = [false; 4];
                due = None;
            }
            if std::mem::replace(&mut waiting[stream], true) {
                replaced_undrawn += 1;
            }
            if let Some(delay) = schedule.on_wake(streams[stream].0, t0 + at) {
                due = Some(at + delay);
            }
        }
        assert_eq!(
            replaced_undrawn, 0,
            "a picture was replaced before it was drawn"
        );
        // Two seconds at 30 fps: about 60 passes draw every picture once.
        assert!((55..=70).contains(&passes), "{passes} passes in 2 s");
    }

    #[test]
    fn the_self_view_alone_is_shown_without_waiting() {
        let t0 = Instant::now();
        let mut schedule = RepaintSchedule::default();
        schedule.on_paint(t0, false);
        let self_view = Wake::Picture(Stream::Local);
        let t1 = t0 + Duration::from_millis(40);
        assert_eq!(schedule.on_wake(self_view, t1), Some(SOONEST));
        schedule.on_paint(t1, false);
        // Once remote video flows, it waits to ride along; when that stops, it no longer does.
        let t2 = t1 + Duration::from_millis(40);
        assert_eq!(schedule.on_wake(A, t2), Some(SOONEST));
        schedule.on_paint(t2, false);
        let t3 = t2 + Duration::from_millis(20);
        assert_eq!(schedule.on_wake(self_view, t3), Some(SELF_VIEW_DELAY));
        schedule.on_paint(t3 + SELF_VIEW_DELAY, false);
        let t4 = t2 + REMOTE_VIDEO_RECENT + Duration::from_millis(1);
        assert_eq!(schedule.on_wake(self_view, t4), Some(SOONEST));
    }

    #[test]
    fn refreshed_statistics_wake_the_ui_only_while_it_shows_them() {
        let t0 = Instant::now();
        let mut schedule = RepaintSchedule::default();
        schedule.on_paint(t0, false);
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(schedule.on_wake(Wake::Stats, t1), None);
        // Anything people see still wakes it.
        assert_eq!(schedule.on_wake(Wake::State, t1), Some(STATE_DELAY));
        schedule.on_paint(t1 + STATE_DELAY, true);
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!(schedule.on_wake(Wake::Stats, t2), Some(STATE_DELAY));
    }

    #[test]
    fn the_pacer_never_asks_egui_for_an_immediate_repaint() {
        let ctx = egui::Context::default();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        ctx.set_repaint_observer(move |info| log.lock().unwrap().push(info.delay));
        let pacer = RepaintPacer::new(&ctx);
        let waker = pacer.waker();
        waker(A);
        waker(B);
        waker(Wake::State);
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(asked[0] > Duration::ZERO && asked[0] <= SOONEST);
    }
}
