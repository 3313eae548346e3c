//! UI frame-time measurement: a synthetic call whose peers publish pre-rendered 720p I420
//! pictures at 30 fps (as the engine's decoders would), shown by the real app. `vcall
//! --ui-bench SECONDS` runs it in a window and prints the figures; a test runs it headless.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vcall_proto::PeerId;

use vcall_engine::{
    CallHandle, CallPhase, CallState, DetachedCall, PeerState, PeerStats, SecurityState, Stream,
    VideoPicture, Wake, Waker,
};
use vcall_media::I420Frame;
use vcall_media::test_pattern;

use super::app::VcallApp;
use super::launch::LaunchOptions;

/// Distinct pictures pre-rendered per peer (cycled).
const PICTURES_PER_PEER: u32 = 8;

/// Publishes pictures for the synthetic peers until dropped.
pub struct SyntheticFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The engine's side of the handle (keeps the state published).
    _call: DetachedCall,
}

impl Drop for SyntheticFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A handcrafted in-call state with `peers` verified peers.
pub fn synthetic_state(peers: usize, width: u32, height: u32, fps: f64) -> CallState {
    CallState {
        phase: CallPhase::InCall,
        relay: "127.0.0.1:4433".into(),
        room: "bench".into(),
        my_name: "You".into(),
        security: SecurityState {
            room_secret: true,
            my_fingerprint: "1111 2222 3333 4444".into(),
            room_security_code: "12345 67890 12345".into(),
            member_count: peers + 1,
        },
        peers: (1..=peers)
            .map(|n| PeerState {
                peer_id: PeerId(n as u32),
                name: Some(format!("Peer {n}")),
                fingerprint: Some(format!("{n}{n}{n}{n} aaaa bbbb")),
                verified: true,
                key_received: true,
                key_sent: true,
                member: true,
                stats: PeerStats {
                    width,
                    height,
                    fps,
                    ..PeerStats::default()
                },
                ..PeerState::default()
            })
            .collect(),
        ..CallState::default()
    }
}

/// A call handle fed by a thread publishing `width`x`height` pictures for `peers` peers (and
/// the self view) at `fps`.
pub fn synthetic_call(
    peers: usize,
    width: u32,
    height: u32,
    fps: u32,
    waker: Option<Waker>,
) -> (CallHandle, SyntheticFeed) {
    let (handle, call) =
        CallHandle::detached(synthetic_state(peers, width, height, f64::from(fps)));
    let frames = Arc::clone(call.frames());
    // Pre-built pictures, cycled: publishing costs an `Arc` clone, like a decoder handing over
    // a finished picture, so the feed does not eat the CPU the UI is measured on.
    let pictures: Vec<Vec<Arc<VideoPicture>>> = (0..=peers)
        .map(|peer| {
            render_pictures(width as usize, height as usize)
                .into_iter()
                .enumerate()
                .map(|(index, planes)| {
                    Arc::new(VideoPicture {
                        planes,
                        sequence: (peer * 1000 + index + 1) as u64,
                    })
                })
                .collect()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("synthetic-peers".into())
            .spawn(move || {
                let interval = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
                let mut next = Instant::now();
                let mut tick = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick += 1;
                    for (peer, frames_of_peer) in pictures.iter().enumerate() {
                        let frame = &frames_of_peer[tick % frames_of_peer.len()];
                        let stream = match peer {
                            0 => Stream::Local,
                            n => Stream::Remote(PeerId(n as u32)),
                        };
                        frames.publish(stream, Arc::clone(frame));
                    }
                    if let Some(waker) = &waker {
                        for peer in 0..pictures.len() {
                            waker(Wake::Picture(match peer {
                                0 => Stream::Local,
                                n => Stream::Remote(PeerId(n as u32)),
                            }));
                        }
                    }
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
            .ok()
    };
    (
        handle,
        SyntheticFeed {
            stop,
            thread,
            _call: call,
        },
    )
}

fn render_pictures(width: usize, height: usize) -> Vec<I420Frame> {
    let Ok(mut frame) = I420Frame::new((width & !1).max(2), (height & !1).max(2)) else {
        return vec![I420Frame::new(2, 2).expect("2x2 is valid")];
    };
    (0..PICTURES_PER_PEER)
        .map(|number| {
            test_pattern::render(number * 7, &mut frame);
            frame.clone()
        })
        .collect()
}

/// The app showing a synthetic 3-peer 720p call for `duration`, then printing frame times.
pub struct BenchApp {
    app: VcallApp,
    _feed: SyntheticFeed,
    started: Instant,
    duration: Duration,
    reported: bool,
}

impl BenchApp {
    /// Builds the bench around a hermetic app.
    pub fn new(app: VcallApp, duration: Duration) -> Self {
        let mut app = app;
        let (handle, feed) = synthetic_call(3, 1280, 720, 30, Some(Arc::clone(app.waker())));
        app.show_synthetic_call(handle);
        app.panels.stats = true;
        Self {
            app,
            _feed: feed,
            started: Instant::now(),
            duration,
            reported: false,
        }
    }

    /// A human summary of what was measured.
    pub fn report(&self) -> String {
        format!(
            "UI bench, 3 peers + self at 1280x720 30 fps:\n  our ui() incl. picture uploads: {}\n  whole frame (eframe cpu_usage): {}\n  textures: {} uploads into {} allocations",
            self.app.frame_timer.ui_summary(),
            self.app.frame_timer.total_summary(),
            self.app.textures.uploads(),
            self.app.textures.allocations()
        )
    }
}

impl eframe::App for BenchApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        eframe::App::ui(&mut self.app, ui, frame);
        if !self.reported && self.started.elapsed() >= self.duration {
            self.reported = true;
            println!("{}", self.report());
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

/// Runs the bench in a native window (`vcall --ui-bench SECONDS`).
pub fn run(duration: Duration) -> eframe::Result {
    eframe::run_native(
        "vcall-ui-bench",
        super::native_options("vcall UI bench"),
        Box::new(move |cc| {
            let app = VcallApp::for_window(cc, LaunchOptions::hermetic());
            Ok(Box::new(BenchApp::new(app, duration)))
        }),
    )
}
