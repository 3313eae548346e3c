#!/usr/bin/env bash
# bench-network.sh: how much of a call survives a bad network. A local relay, `vcall-netem`
# in front of it, and two bots joining through the proxy (640x360 @ 30 fps, 600 kbit/s, test
# pattern + tone), once per scenario. Every scenario has 20 ms delay each way ±5 ms jitter
# (40 ms RTT) on top of its loss; the loss applies to each direction of each bot's path, so
# media from one bot to the other crosses two lossy hops (up to the relay, down from it).
#
#   none     no loss
#   loss5    5 % random loss each way
#   burst5   5 % average loss each way in Gilbert–Elliott bursts (mean burst 3 packets)
#   loss20   20 % random loss each way
#   restart  no loss; the relay is killed (SIGKILL) 10 s into the call and started again 1 s
#            later on the same port with the same state directory (so the same certificate)
#
# Prints ONE table: per scenario, video frames decoded / expected and audio frames played from
# real or Opus-FEC data / expected over both receivers (from the bots' JSON reports, docs/BOT-REPORT.md: video
# expected = peers[].video_frames_expected; audio expected = the sender's sent.audio_frames),
# video freezes (their total as a share of the call time, and the longest), the recovery
# work (NACKs sent, fragments resent, frames rebuilt by FEC, frames given up on), and the
# loss the proxy actually applied (its --json report).
#
# Usage: scripts/bench-network.sh
# Env:   BENCH_SECONDS=30 (per scenario)  SCENARIOS="none loss5 burst5 loss20 restart"  SEED=1
#        KEEP=1 (keep reports and logs in the printed directory)  NO_BUILD=1
#
# Builds release `vcall-relay`, `vcall-bot` and `vcall-netem` first (one cargo command).
# Every process it starts is stopped by its own PID at exit. The proxy's decisions are
# seeded, but which packets they hit depends on timing, so figures vary a little per run.
set -euo pipefail

DURATION="${BENCH_SECONDS:-30}"
SCENARIOS="${SCENARIOS:-none loss5 burst5 loss20 restart}"
SEED="${SEED:-1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p vcall-relay -p vcall-engine -p vcall-netem \
        --bin vcall-relay --bin vcall-bot --bin vcall-netem
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
RELAY_BIN="$TARGET_DIR/release/vcall-relay"
BOT_BIN="$TARGET_DIR/release/vcall-bot"
NETEM_BIN="$TARGET_DIR/release/vcall-netem"

WORK="$(mktemp -d -t vcall-bench-network.XXXXXX)"
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

# Waits up to 10 s for a line starting with $2 in file $1 and prints it.
ready_line() {
    for _ in $(seq 100); do
        grep -q "^$2" "$1" 2>/dev/null && break
        sleep 0.1
    done
    grep -m1 "^$2" "$1" || true
}

# The relay on an ephemeral loopback port; its ready line gives the port and fingerprint.
"$RELAY_BIN" --listen 127.0.0.1:0 --state-dir "$WORK/relay" >"$WORK/relay.out" 2>"$WORK/relay.err" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
READY="$(ready_line "$WORK/relay.out" 'vcall-relay ready')"
if [[ -z "$READY" ]]; then
    echo "relay did not start:" >&2
    cat "$WORK/relay.err" >&2
    exit 1
fi
LISTEN="$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$READY")"
FP="$(sed -E 's/.*fingerprint=([0-9a-fA-F]+).*/\1/' <<<"$READY")"
RELAY_PORT="${LISTEN##*:}"
echo "relay: $READY"

BASE=(--delay 20 --jitter 5)
scenario_flags() {
    case "$1" in
        none) echo "" ;;
        loss5) echo "--loss 5" ;;
        burst5) echo "--burst-loss 5 --burst-len 3" ;;
        loss20) echo "--loss 20" ;;
        restart) echo "" ;;
        *) echo "unknown scenario $1 (none loss5 burst5 loss20 restart)" >&2; exit 2 ;;
    esac
}

run_scenario() {
    local name="$1"
    local dir="$WORK/$name"
    mkdir -p "$dir"
    local flags
    flags="$(scenario_flags "$name")"
    # shellcheck disable=SC2086  # the scenario's flags are words on purpose
    "$NETEM_BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$RELAY_PORT" --seed "$SEED" \
        "${BASE[@]}" $flags --json >"$dir/netem.out" 2>"$dir/netem.err" &
    local netem_pid=$!
    PIDS+=("$netem_pid")
    local ready
    ready="$(ready_line "$dir/netem.out" 'vcall-netem ready')"
    if [[ -z "$ready" ]]; then
        echo "vcall-netem did not start:" >&2
        cat "$dir/netem.err" >&2
        exit 1
    fi
    local proxy="${ready#*listen=}"
    proxy="${proxy%% *}"
    local key
    key="$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')"
    local link="vcall://$proxy/net-$name?fp=$FP#k=$key"
    echo "== $name: ${BASE[*]} $flags, ${DURATION}s (proxy $proxy)"
    local bot_pids=()
    for i in 1 2; do
        VCALL_LINK="$link" "$BOT_BIN" --name "bot$i" --duration "$DURATION" \
            --video testsrc --audio tone --resolution 640x360 --fps 30 \
            --bitrate-kbps 600 --report "$dir/bot$i.json" 2>"$dir/bot$i.err" &
        bot_pids+=("$!")
        PIDS+=("$!")
    done
    if [[ "$name" == restart ]]; then
        sleep 10
        kill -KILL "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null || true
        sleep 1
        "$RELAY_BIN" --listen "127.0.0.1:$RELAY_PORT" --state-dir "$WORK/relay" \
            >"$dir/relay2.out" 2>"$dir/relay2.err" &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        echo "   relay killed at 10 s and restarted at 11 s: $(ready_line "$dir/relay2.out" 'vcall-relay ready')"
    fi
    local failed=0
    for pid in "${bot_pids[@]}"; do
        wait "$pid" || failed=1
    done
    if [[ "$failed" != 0 ]]; then
        echo "   (a bot reported failure: see its errors in the table notes)"
    fi
    # SIGTERM: the proxy prints its report (last stdout line: JSON) and exits.
    kill -TERM "$netem_pid" 2>/dev/null || true
    wait "$netem_pid" || true
}

for s in $SCENARIOS; do
    scenario_flags "$s" >/dev/null
    run_scenario "$s"
done

python3 - "$WORK" $SCENARIOS <<'PY'
import json, os, sys

work, scenarios = sys.argv[1], sys.argv[2:]

def pct(a, b):
    return f"{a}/{b} ({100.0 * a / b:.1f}%)" if b else f"{a}/{b} (-)"

rows, notes = [], []
for name in scenarios:
    d = os.path.join(work, name)
    reports = []
    for i in (1, 2):
        try:
            with open(os.path.join(d, f"bot{i}.json")) as f:
                reports.append(json.load(f))
        except (OSError, ValueError) as e:
            notes.append(f"{name}: bot{i} wrote no report ({e})")
    # By name: after a reconnect a bot has a new peer id, and its old entry stays listed.
    sent_audio = {r.get("name"): r.get("sent", {}).get("audio_frames", 0) for r in reports}
    v_dec = v_exp = a_dec = a_exp = 0
    freeze_ms = call_ms = max_freeze = nacks = resent = fec = given_up = 0
    for r in reports:
        for e in r.get("errors", []):
            notes.append(f"{name}: {r.get('name')}: {e}")
        for sender in {p.get("name") for p in r.get("peers", [])}:
            a_exp += sent_audio.get(sender, 0)
        for p in r.get("peers", []):
            v_dec += p.get("video_frames_decoded", 0)
            v_exp += p.get("video_frames_expected", 0)
            a_dec += p.get("audio_frames_decoded", 0) + p.get("audio_frames_fec", 0)
            freeze_ms += p.get("video_freeze_ms_total", 0)
            max_freeze = max(max_freeze, p.get("video_max_freeze_ms", 0))
            call_ms += 1000.0 * r.get("duration_s", 0)
            nacks += p.get("nacks_sent", 0)
            resent += p.get("retransmissions", 0)
            fec += p.get("fec_recovered", 0)
            given_up += p.get("video_frames_given_up", 0)
    freezes = f"{100.0 * freeze_ms / call_ms:.1f}% (max {max_freeze} ms)" if call_ms else "-"
    if name == "restart":
        reconnects = [r.get("reconnects", 0) for r in reports]
        gap = max([r.get("reconnect_video_gap_ms", 0) for r in reports] or [0])
        notes.append(f"restart: reconnects per bot {reconnects}; longest video gap across the "
                     f"restart {gap} ms, of which the relay was down 1000 ms: media back "
                     f"{gap - 1000} ms after the relay was up (noticing the silence, "
                     f"reconnecting, rekeying, the first keyframe)")
    recovery = f"{nacks}/{resent}/{fec}/{given_up}"
    link = "-"
    try:
        with open(os.path.join(d, "netem.out")) as f:
            net = json.loads(f.read().strip().splitlines()[-1])
        parts = []
        for k in ("up", "down"):
            x = net[k]
            dropped = x["dropped_loss"] + x["dropped_burst"] + x["dropped_queue"] + x["dropped_blackout"]
            parts.append(f"{100.0 * dropped / x['packets_in']:.1f}%" if x["packets_in"] else "-")
        link = " / ".join(parts)
    except (OSError, ValueError, KeyError, IndexError) as e:
        notes.append(f"{name}: no proxy report ({e})")
    rows.append((name, pct(v_dec, v_exp), freezes, pct(a_dec, a_exp), recovery, link))

head = ("scenario", "video decoded/expected", "video frozen", "audio real+FEC/expected",
        "NACKs/resent/FEC/given up", "proxy drop up/down")
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
print()
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
for n in notes:
    print(f"note: {n}")
PY
