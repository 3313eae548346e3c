#!/usr/bin/env bash
# bench-call.sh: the end-to-end benchmark of issue 7: a 3-bot loopback call through a local
# relay, once at 1280x720 (1.5 Mbit/s) and once at 640x360 (600 kbit/s), 30 fps, test pattern
# video and tone audio. Prints capture→decoded latency p50/p95/max per receiving bot and
# sender, and the CPU seconds each bot used per second of call (all its threads).
#
# Usage: scripts/bench-call.sh [SECONDS]   (default 20 s per resolution)
# Env:   BOTS=3  KEEP=1 (keep the reports in the printed directory)  NO_BUILD=1
#
# Builds release `vcall-relay` and `vcall-bot` first (one cargo command). Every process it
# starts is stopped by its own PID at exit. Latency is meaningful because all bots share one
# clock; on a shared 2-core machine the bots, the relay and anything else running compete for
# CPU, which shows up as latency: compare runs on the same machine, not across machines.
set -euo pipefail

DURATION="${1:-20}"
BOTS="${BOTS:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p vcall-relay -p vcall-engine --bin vcall-relay --bin vcall-bot
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
RELAY_BIN="$TARGET_DIR/release/vcall-relay"
BOT_BIN="$TARGET_DIR/release/vcall-bot"

WORK="$(mktemp -d -t vcall-bench-call.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$WORK"; else echo "reports kept in $WORK"; fi
}
trap cleanup EXIT

# The relay on an ephemeral loopback port; its ready line gives the port and fingerprint.
"$RELAY_BIN" --listen 127.0.0.1:0 --state-dir "$WORK/relay" >"$WORK/relay.out" 2>"$WORK/relay.err" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
for _ in $(seq 100); do
    grep -q '^vcall-relay ready' "$WORK/relay.out" 2>/dev/null && break
    sleep 0.1
done
READY="$(grep '^vcall-relay ready' "$WORK/relay.out" || true)"
if [[ -z "$READY" ]]; then
    echo "relay did not start:" >&2
    cat "$WORK/relay.err" >&2
    exit 1
fi
LISTEN="$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$READY")"
FP="$(sed -E 's/.*fingerprint=([0-9a-fA-F]+).*/\1/' <<<"$READY")"
PORT="${LISTEN##*:}"
echo "relay: $READY"

run_call() {
    local label="$1" resolution="$2" kbps="$3"
    local dir="$WORK/$label"
    mkdir -p "$dir"
    # A fresh room with a random 32-byte room key (#k=, base64url without padding).
    local key
    key="$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')"
    local link="vcall://127.0.0.1:$PORT/bench-$label?fp=$FP#k=$key"
    echo "== $label: $BOTS bots, $resolution, $kbps kbit/s, ${DURATION}s"
    local bot_pids=()
    for i in $(seq 1 "$BOTS"); do
        VCALL_LINK="$link" "$BOT_BIN" --name "bot$i" --duration "$DURATION" \
            --video testsrc --audio tone --resolution "$resolution" --fps 30 \
            --bitrate-kbps "$kbps" --report "$dir/bot$i.json" 2>"$dir/bot$i.err" &
        bot_pids+=("$!")
        PIDS+=("$!")
    done
    local failed=0
    for pid in "${bot_pids[@]}"; do
        wait "$pid" || failed=1
    done
    if [[ "$failed" != 0 ]]; then
        echo "   (a bot reported failure; see its errors below)"
    fi
    python3 - "$label" "$dir" <<'PY'
import glob, json, os, sys

label, directory = sys.argv[1], sys.argv[2]
reports = []
for path in sorted(glob.glob(os.path.join(directory, "bot*.json"))):
    with open(path) as f:
        reports.append(json.load(f))
names = {r.get("peer_id"): r.get("name") for r in reports}
print(f"{'receiver':<8} {'sender':<8} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
      f"{'decoded':>8} {'expected':>8} {'psnr dB':>8}")
worst_p95 = 0.0
for r in reports:
    for p in r.get("peers", []):
        lat = p.get("latency_ms") or {}
        sender = p.get("name") or names.get(p.get("peer_id"), "?")
        p95 = lat.get("p95")
        if p95 is not None:
            worst_p95 = max(worst_p95, p95)
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        print(f"{r['name']:<8} {str(sender):<8} {fmt(lat.get('p50')):>7} {fmt(p95):>7} "
              f"{fmt(lat.get('max')):>7} {p.get('video_frames_decoded', 0):>8} "
              f"{p.get('video_frames_expected', 0):>8} {fmt(p.get('video_psnr_db')):>8}")
print(f"{'bot':<8} {'CPU s/s':>8} {'in call s':>10} {'failed':>7}")
for r in reports:
    cpu = r.get("cpu_per_second")
    print(f"{r['name']:<8} {'-' if cpu is None else f'{cpu:.3f}':>8} "
          f"{r.get('duration_s', 0):>10.1f} {str(r.get('failed')):>7}")
    for e in r.get("errors", []):
        print(f"   {r['name']} error: {e}")
print(f"SUMMARY {label}: worst p95 {worst_p95:.1f} ms"
      + (" (goal <= 50 ms at 720p: " + ("met" if worst_p95 <= 50 else "MISSED") + ")"
         if label == "720p" else ""))
PY
}

run_call 720p 1280x720 1500
run_call 360p 640x360 600
