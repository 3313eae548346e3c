//! Keeps the relay's revocation list in step with its file: checks the file's size and
//! modification time every [`POLL_INTERVAL`] (and at once on SIGHUP), reloads it when they
//! change, and bumps a generation that every joined connection watches, so that members
//! holding a revoked token are cut within a second (docs/RELAY.md "Access control").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::access::{Access, RevocationList};

/// How often the revocation file is checked.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What identifies a version of the file without reading it.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Loads the file now (a missing file is an empty list); true when the list changed.
fn reload(path: &PathBuf, access: &Access) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            // Keep the list we have rather than forget revocations.
            warn!(file = %path.display(), %error, "cannot read the revocation file; keeping the previous list");
            return false;
        }
    };
    let (list, bad_lines) = RevocationList::parse(&text);
    if !bad_lines.is_empty() {
        warn!(file = %path.display(), lines = ?bad_lines, "revocation file: lines that are not a token id were ignored");
    }
    let count = list.len();
    let changed = access.set_revoked(list);
    if changed {
        info!(file = %path.display(), revoked = count, "revocation list loaded");
    }
    changed
}

/// Loads the list once, then spawns the watcher; the returned receiver's value changes
/// whenever the list does.
pub(crate) fn start(
    path: PathBuf,
    access: Arc<Access>,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<u64> {
    reload(&path, &access);
    let (generation_tx, generation_rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut last = stamp(&path);
        let mut hangup = hangup_signal();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            let forced = tokio::select! {
                _ = crate::server::stopping(&mut shutdown) => break,
                _ = tick.tick() => false,
                _ = next_hangup(&mut hangup) => true,
            };
            let now = stamp(&path);
            if (forced || now != last) && reload(&path, &access) {
                generation_tx.send_modify(|g| *g += 1);
            }
            last = now;
        }
    });
    generation_rx
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
