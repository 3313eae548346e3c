//! The `vcall-netem` binary itself: the ready line, forwarding, stopping after `--duration`
//! or on SIGTERM with the per-direction report (human and JSON), and clear errors for bad
//! flags.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vcall-netem");

/// Waits for `child` to exit (killing it after 30 s).
fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vcall-netem did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Starts the binary with `flags` and reads its ready line; returns it and the listen address.
fn start(flags: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert!(
        ready.starts_with("vcall-netem ready listen=127.0.0.1:"),
        "{ready:?}"
    );
    let listen = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .to_string();
    (child, stdout, listen)
}

fn echo() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    (socket, addr)
}

#[test]
fn the_binary_forwards_stops_after_its_duration_and_reports_json() {
    let (echo, upstream) = echo();
    let (child, mut stdout, listen) = start(&[
        "--upstream",
        &upstream,
        "--duration",
        "1.5",
        "--json",
        "--down-loss",
        "100",
        "--seed",
        "3",
    ]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10u8 {
        client.send_to(&[i], &listen).unwrap();
    }
    // Echo what arrives (the replies are then lost on the way down).
    echo.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let mut echoed = 0;
    while let Ok((n, from)) = echo.recv_from(&mut buf) {
        echo.send_to(&buf[..n], from).unwrap();
        echoed += 1;
        if echoed == 10 {
            break;
        }
    }
    assert_eq!(echoed, 10);
    let started = Instant::now();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = wait(child);
    assert!(out.status.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let lines: Vec<&str> = rest.lines().collect();
    assert!(lines[0].starts_with("vcall-netem up (client->upstream): in=10 out=10 dropped=0"));
    assert!(lines[1].starts_with("vcall-netem down (upstream->client): in=10 out=0 dropped=10"));
    let json: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(json["seed"], 3);
    assert_eq!(json["clients"], 1);
    assert_eq!(json["up"]["packets_in"], 10);
    assert_eq!(json["up"]["packets_out"], 10);
    assert_eq!(json["down"]["packets_in"], 10);
    assert_eq!(json["down"]["dropped_loss"], 10);
    assert_eq!(json["down"]["packets_out"], 0);
    assert!(json["duration_s"].as_f64().unwrap() >= 1.5);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_binary_with_its_report() {
    let (_echo, upstream) = echo();
    let (child, mut stdout, _listen) = start(&["--upstream", &upstream]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = wait(child);
    assert!(out.status.success(), "{out:?}");
    assert!(
        rest.contains("vcall-netem up (client->upstream): in=0 out=0"),
        "{rest}"
    );
}

#[test]
fn bad_flags_exit_with_a_clear_error() {
    for (flags, needle) in [
        (
            &["--upstream", "127.0.0.1:9", "--loss", "150"][..],
            "at most 100",
        ),
        (
            &["--upstream", "127.0.0.1:9", "--blackout", "soon"],
            "FROM+LEN",
        ),
        (
            &[
                "--upstream",
                "127.0.0.1:9",
                "--delay",
                "10",
                "--jitter",
                "30",
            ],
            "--jitter 30 ms is more than --delay 10 ms",
        ),
        (&["--upstream", "nowhere"], "HOST:PORT"),
        (&[], "--upstream"),
    ] {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
}
