//! `vcall-bot`: a headless call participant (test pattern or Y4M video, tone or WAV audio)
//! that records what it receives and writes a JSON report; also vcall's load tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vcall_engine::bot::{Report, process_cpu_seconds};
use vcall_engine::{
    AudioInput, CallConfig, CallHandle, CallPhase, VideoInput, VideoSettings, redact_link,
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A headless vcall participant that reports what it saw"
)]
struct Args {
    /// Invite link: vcall://HOST:PORT/ROOM?fp=HEX#k=KEY
    #[arg(long, env = "VCALL_LINK")]
    link: String,
    /// Display name (also picks the tone's frequency).
    #[arg(long, default_value = "bot")]
    name: String,
    /// Seconds to stay in the call.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// testsrc, testsrc-busy (the pattern under noise: takes every bit it is given),
    /// testsrc-replay (the pattern's first 60 frames encoded once, then sent again and again:
    /// a sender for load tests that costs almost no CPU), none, or a .y4m file.
    #[arg(long, default_value = "testsrc")]
    video: String,
    /// tone, none, or a 48 kHz mono .wav file.
    #[arg(long, default_value = "tone")]
    audio: String,
    /// Video size WxH (even numbers).
    #[arg(long, default_value = "1280x720", value_parser = parse_resolution)]
    resolution: (u32, u32),
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 1500)]
    bitrate_kbps: u32,
    /// Write what is received per peer (Y4M, WAV) here.
    #[arg(long)]
    record_dir: Option<PathBuf>,
    /// Write the JSON report here at exit.
    #[arg(long)]
    report: Option<PathBuf>,
    /// RSA key size of this session (2048 or 3072).
    #[arg(long, default_value_t = 2048)]
    rsa_bits: usize,
    /// Receive video without decoding it (a load generator that only sends: its report then
    /// counts no decoded video).
    #[arg(long)]
    no_video_decode: bool,
}

fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WxH, got {s:?}"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 || w > 3840 || h > 2160 {
        return Err(format!("{s}: width and height must be even, 2..=3840x2160"));
    }
    Ok((w, h))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = CallConfig::new(args.link.clone(), args.name.clone());
    config.video = VideoSettings {
        width: args.resolution.0,
        height: args.resolution.1,
        fps: args.fps.clamp(1, 60),
        bitrate_kbps: args.bitrate_kbps.max(50),
    };
    config.camera = match args.video.as_str() {
        "testsrc" => VideoInput::TestPattern,
        "testsrc-busy" => VideoInput::BusyPattern,
        "testsrc-replay" => VideoInput::ReplayPattern,
        "none" => VideoInput::Off,
        path => VideoInput::Y4m(PathBuf::from(path)),
    };
    config.mic = match args.audio.as_str() {
        "tone" => AudioInput::Tone,
        "none" => AudioInput::Off,
        path => AudioInput::Wav(PathBuf::from(path)),
    };
    config.rsa_bits = args.rsa_bits;
    config.record_dir = args.record_dir.clone();
    config.decode_video = !args.no_video_decode;
    eprintln!(
        "vcall-bot {}: joining {}",
        args.name,
        redact_link(&args.link)
    );

    let cpu_start = process_cpu_seconds();
    let handle = CallHandle::start(config, None);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration.max(0.0));
    while Instant::now() < deadline && !handle.ended() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_call = started.elapsed().as_secs_f64();
    // Take the statistics while still in the call, then leave (waits for every thread).
    let mut state = (*handle.state()).clone();
    let left = handle.leave();
    if left.state.phase != CallPhase::Ended(vcall_engine::EndReason::Left) {
        state.phase = left.state.phase.clone();
    }
    state.handshake_log = left.state.handshake_log.clone();
    let cpu = cpu_start
        .zip(process_cpu_seconds())
        .map(|(a, b)| (b - a) / in_call.max(1e-3));
    let report = Report::from_state(&state, in_call, cpu);
    let json = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into());
    match &args.report {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &json) {
                eprintln!("vcall-bot: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        None => println!("{json}"),
    }
    if report.failed {
        for e in &report.errors {
            eprintln!("vcall-bot {}: {e}", args.name);
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
