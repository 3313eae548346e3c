//! One room across two relays joined through a real `nats-server` (started on a free port and
//! stopped by the test): the seed call with Alice and Casey on relay 1 and Bob on relay 2,
//! keys both ways and decoded media across relays; a crashed relay's member removed from the
//! others within the presence timeout; a NATS restart mid-call that the call survives.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{decoded_from, small_call, wait_for};

use vcall_crypto::InviteLink;
use vcall_engine::{CallHandle, CallPhase, CallState, fresh_invite_link};
use vcall_media::tone::frequency_for_name;
use vcall_relay::{CertificateSource, ClusterConfig, NodeId, Relay, RelayConfig, RelayHandle};

/// A private nats-server (core NATS, no JetStream) on a free loopback port.
struct Nats {
    port: u16,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Self { port, child: None };
        nats.restart();
        nats
    }

    fn restart(&mut self) {
        let binary = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|b| Process::new(b).arg("--version").output().is_ok())
        .expect("nats-server is installed (scripts/install-deps.sh installs it)");
        let child = Process::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A relay of the cluster in a runtime of its own, so that it can be killed without a goodbye.
struct ClusterRelay {
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<RelayHandle>,
}

impl ClusterRelay {
    fn start(nats: &Nats, node: u16, state_dir: &std::path::Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config = RelayConfig {
            // Both relays share one certificate, so one pinned link fits both.
            certificate: CertificateSource::SelfSigned {
                state_dir: state_dir.to_owned(),
            },
            cluster: Some(ClusterConfig::new(nats.url(), NodeId::new(node).unwrap())),
            ..RelayConfig::loopback()
        };
        let handle = runtime.block_on(Relay::bind(config)).unwrap();
        Self {
            runtime: Some(runtime),
            handle: Some(handle),
        }
    }

    fn handle(&self) -> &RelayHandle {
        self.handle.as_ref().unwrap()
    }

    /// The same invite as `link`, pointing at this relay.
    fn link_like(&self, link: &str) -> String {
        let mut invite = InviteLink::parse(link).unwrap();
        invite.port = self.handle().local_addr().port();
        invite.to_secret_string().to_string()
    }

    /// Ends the process's part of this relay at once: no member list, no goodbye to anyone.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        std::mem::forget(self.handle.take());
    }
}

impl Drop for ClusterRelay {
    fn drop(&mut self) {
        if let (Some(runtime), Some(handle)) = (self.runtime.take(), self.handle.take()) {
            runtime.block_on(handle.shutdown());
        }
    }
}

fn sees(s: &CallState, name: &str) -> bool {
    s.peers.iter().any(|p| p.name.as_deref() == Some(name))
}

#[test]
fn a_room_spans_two_relays_through_nats_and_survives_nats_restarting() {
    let mut nats = Nats::start();
    let state_dir = tempfile::tempdir().unwrap();
    let one = ClusterRelay::start(&nats, 1, state_dir.path());
    let mut two = ClusterRelay::start(&nats, 2, state_dir.path());
    wait_for("both relays on NATS", Duration::from_secs(10), || {
        [&one, &two]
            .iter()
            .all(|r| r.handle().metrics().cluster_link_up() == Some(true))
    });
    let h1 = one.handle();
    let link1 = fresh_invite_link(
        "127.0.0.1",
        h1.local_addr().port(),
        Some(h1.fingerprint()),
        "cluster",
    )
    .unwrap();
    let link2 = two.link_like(&link1);

    let names = ["Alice", "Bob", "Casey"];
    let calls: Vec<CallHandle> = names
        .iter()
        .map(|name| {
            let link = if *name == "Bob" { &link2 } else { &link1 };
            let call = CallHandle::start(small_call(link, name), None);
            std::thread::sleep(Duration::from_millis(300));
            call
        })
        .collect();
    const FRAMES: u64 = 60;
    wait_for(
        "everyone decoding video and hearing audio from both others",
        Duration::from_secs(90),
        || {
            calls.iter().zip(names).all(|(c, me)| {
                let s = c.state();
                names.iter().filter(|n| **n != me).all(|other| {
                    decoded_from(&s, other) >= FRAMES
                        && s.peers
                            .iter()
                            .find(|p| p.name.as_deref() == Some(*other))
                            .is_some_and(|p| p.stats.audio_peak_hz.is_some())
                })
            })
        },
    );
    let states: Vec<Arc<CallState>> = calls.iter().map(|c| c.state()).collect();
    for (s, me) in states.iter().zip(names) {
        assert_eq!(s.peers.len(), 2, "{me} sees {:?}", s.peers);
        for other in names.iter().filter(|n| **n != me) {
            let p = s
                .peers
                .iter()
                .find(|p| p.name.as_deref() == Some(*other))
                .unwrap();
            assert!(p.verified, "{me} must see {other} verified");
            assert!(p.key_received && p.key_sent, "{me}<->{other} keys: {p:?}");
            assert_eq!(p.stats.decrypt_failures, 0, "{me} from {other}");
            let hz = p.stats.audio_peak_hz.unwrap();
            assert!(
                (hz - frequency_for_name(other)).abs() <= 5.0,
                "{me} hears {other} at {hz:.1} Hz"
            );
        }
    }
    assert!(
        states
            .iter()
            .all(|s| s.security.room_security_code == states[0].security.room_security_code),
        "one room security code across relays"
    );
    // Peer ids are unique across the cluster: each carries its relay's node id.
    let node_of = |s: &CallState| s.my_peer_id.unwrap().0 >> 20;
    assert_eq!(
        states.iter().map(|s| node_of(s)).collect::<Vec<_>>(),
        [1, 2, 1]
    );
    let m1 = one.handle().metrics();
    assert!(m1.cluster_messages_out() > 100 && m1.cluster_messages_in() > 100);
    assert_eq!(m1.remote_members(), 1, "Bob is relay 1's one remote member");

    // NATS restarts mid-call: the relays reconnect and media crosses again.
    let before = decoded_from(&calls[0].state(), "Bob");
    nats.stop();
    wait_for(
        "relay 1 to notice NATS is gone",
        Duration::from_secs(10),
        || one.handle().metrics().cluster_link_up() == Some(false),
    );
    std::thread::sleep(Duration::from_millis(500));
    nats.restart();
    wait_for(
        "Alice decoding Bob again after NATS restarted",
        Duration::from_secs(30),
        || {
            let s = calls[0].state();
            sees(&s, "Bob") && decoded_from(&s, "Bob") >= before + FRAMES
        },
    );
    assert!(
        [&calls[0], &calls[2]]
            .iter()
            .all(|c| !matches!(c.state().phase, CallPhase::Ended(_))),
        "local members stay in the call"
    );

    // Relay 2 dies without a word: Bob is gone from the others' rosters within 5 s.
    two.kill();
    let killed = Instant::now();
    wait_for(
        "Alice and Casey to see Bob leave",
        Duration::from_secs(5),
        || {
            [&calls[0], &calls[2]]
                .iter()
                .all(|c| !sees(&c.state(), "Bob"))
        },
    );
    let removal = killed.elapsed();
    assert!(removal <= Duration::from_secs(5), "{removal:?}");
    assert!(sees(&calls[0].state(), "Casey"), "the local pair stays");
    for c in calls {
        c.leave();
    }
    drop(one);
}
