//! The real drawing path: the `vcall` binary under a private Xvfb (eframe's glow on Mesa's
//! software GL), hosting a call with a demo peer, draws both pictures with its I420 shader;
//! its own `--screenshot` reads the window back from the GL. Each picture in the shot must be
//! the test pattern: its frame number readable, and luma and chroma close to the pattern
//! regenerated for that number (so a wrong colour conversion, swapped planes, a black or a
//! stale texture all fail). The test starts and stops Xvfb itself.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vcall_media::I420Frame;
use vcall_media::analysis::psnr_luma;
use vcall_media::test_pattern;

/// Debug build, RSA keys and a software GL on two shared cores.
const DEADLINE: Duration = Duration::from_secs(150);
/// Every picture is compared at this size (the pattern's layout scales with the picture).
const COMPARE_SIZE: [usize; 2] = [640, 360];

/// Kills and reaps a child process when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_xvfb() -> (Reaped, String) {
    let found = Command::new("Xvfb")
        .arg("-help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "Xvfb is missing: scripts/install-deps.sh installs it (apt-get install xvfb)"
    );
    let number = (120..400)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free X display number");
    let child = Command::new("Xvfb")
        .args([
            &format!(":{number}"),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb starts");
    let socket = format!("/tmp/.X11-unix/X{number}");
    let until = Instant::now() + Duration::from_secs(10);
    while !Path::new(&socket).exists() {
        assert!(Instant::now() < until, "Xvfb did not open {socket}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped(child), format!(":{number}"))
}

/// An RGB picture read from a binary PPM.
struct Rgb {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn read_ppm(path: &Path) -> Rgb {
    let bytes = std::fs::read(path).expect("the screenshot was written");
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    let (width, height) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let pixels = bytes[at + 1..].to_vec();
    assert_eq!(pixels.len(), width * height * 3);
    Rgb {
        width,
        height,
        pixels,
    }
}

/// The part of `shot` at `[x, y, w, h]`, resampled (nearest) to `size` and converted to I420
/// (BT.601, video range: the inverse of what the shader does).
fn crop_to_i420(shot: &Rgb, [x, y, w, h]: [usize; 4], size: [usize; 2]) -> I420Frame {
    let [width, height] = size;
    let rgb_at = |col: usize, row: usize| {
        let sx = (x + col * w / width).min(shot.width - 1);
        let sy = (y + row * h / height).min(shot.height - 1);
        let i = (sy * shot.width + sx) * 3;
        let p = &shot.pixels[i..i + 3];
        [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
    };
    let mut frame = I420Frame::new(width, height).unwrap();
    let (y_plane, u_plane, v_plane) = frame.planes_mut();
    for row in 0..height {
        for col in 0..width {
            let [r, g, b] = rgb_at(col, row);
            y_plane[row * width + col] =
                (16.0 + (65.738 * r + 129.057 * g + 25.064 * b) / 256.0).round() as u8;
        }
    }
    for row in 0..height / 2 {
        for col in 0..width / 2 {
            let mut sum = [0.0; 3];
            for (dc, dr) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = rgb_at(col * 2 + dc, row * 2 + dr);
                (0..3).for_each(|c| sum[c] += p[c] / 4.0);
            }
            let [r, g, b] = sum;
            let at = row * (width / 2) + col;
            u_plane[at] = (128.0 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256.0).round() as u8;
            v_plane[at] = (128.0 + (112.439 * r - 94.154 * g - 18.285 * b) / 256.0).round() as u8;
        }
    }
    frame
}

/// PSNR of one chroma plane pair.
fn psnr_plane(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

#[test]
fn the_app_draws_both_pictures_with_its_shader_as_the_test_pattern() {
    let (_xvfb, display) = start_xvfb();
    let scratch = tempfile::tempdir().unwrap();
    let shot = scratch.path().join("shot.ppm");
    let mut app = Reaped(
        Command::new(env!("CARGO_BIN_EXE_vcall"))
            .args(["--demo", "--demo-bots", "1", "--name", "Ada"])
            .args(["--camera", "testsrc", "--mic", "tone", "--speaker", "none"])
            .arg("--settings")
            .arg(scratch.path().join("settings.toml"))
            .arg("--screenshot")
            .arg(&shot)
            .args(["--screenshot-streams", "2"])
            .env("DISPLAY", &display)
            .env("XDG_CONFIG_HOME", scratch.path())
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path().join("vcall.log")).unwrap())
            .spawn()
            .expect("vcall starts"),
    );
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        let log = std::fs::read_to_string(scratch.path().join("vcall.log")).unwrap_or_default();
        assert!(
            Instant::now() < until,
            "no screenshot within {DEADLINE:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(scratch.path().join("vcall.log")).unwrap_or_default();
    assert!(status.success(), "vcall exited with {status}; log:\n{log}");
    assert!(
        !log.contains("cannot be drawn"),
        "the shader path failed: {log}"
    );

    let image = read_ppm(&shot);
    let listing = std::fs::read_to_string(format!("{}.pictures", shot.display())).unwrap();
    let pictures: Vec<(String, [usize; 4])> = listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let rect: Vec<usize> = fields[1..].iter().map(|v| v.parse().unwrap()).collect();
            (fields[0].to_owned(), [rect[0], rect[1], rect[2], rect[3]])
        })
        .collect();
    assert_eq!(
        pictures.len(),
        2,
        "the self view and the demo peer: {listing}"
    );
    assert!(pictures.iter().any(|(name, _)| name == "self"), "{listing}");

    for (name, rect) in pictures {
        assert!(
            rect[2] >= 200 && rect[3] >= 110,
            "{name}: a real tile, {rect:?}"
        );
        let drawn = crop_to_i420(&image, rect, COMPARE_SIZE);
        let number = test_pattern::read_frame_number(&drawn)
            .unwrap_or_else(|| panic!("{name}: no readable test pattern at {rect:?}"));
        let mut source = I420Frame::new(COMPARE_SIZE[0], COMPARE_SIZE[1]).unwrap();
        test_pattern::render(number, &mut source);
        let luma = psnr_luma(&source, &drawn).unwrap();
        let u = psnr_plane(source.u(), drawn.u());
        let v = psnr_plane(source.v(), drawn.v());
        eprintln!("{name}: frame {number}, PSNR Y {luma:.1} dB, U {u:.1} dB, V {v:.1} dB");
        assert!(luma >= 20.0, "{name}: luma {luma:.1} dB");
        assert!(
            u >= 25.0 && v >= 25.0,
            "{name}: chroma U {u:.1} / V {v:.1} dB"
        );
    }
}
