#!/usr/bin/env bash
# bench-network.sh: how much of a call survives a bad network. A local relay and bots that
# each join through their own `vcall-netem` proxy in front of it (640x360 @ 30 fps,
# 600 kbit/s, test pattern + tone, unless said), once per scenario. Every scenario has 20 ms
# delay each way ±5 ms jitter (40 ms RTT) on top of its impairment; loss applies to each
# direction of each bot's path, so media from one bot to another crosses two lossy hops (up
# to the relay, down from it).
#
#   none     no loss
#   loss5    5 % random loss each way
#   burst5   5 % average loss each way in Gilbert–Elliott bursts (mean burst 3 packets)
#   loss20   20 % random loss each way
#   restart  no loss; the relay is killed (SIGKILL) 10 s into the call and started again 1 s
#            later on the same port with the same state directory (so the same certificate)
#   rebind   no loss; 10 s in, each bot's proxy moves it to a new source port (NAT
#            rebinding): the relay sees the connection migrate
#   cap      bot1 sends 1280x720 @ 1500 kbit/s of the busy test pattern (noise that takes
#            every bit the encoder is given); its path up to the relay is capped at
#            800 kbit/s (50 000-byte queue, tail drop): rate control must adapt
#   three    three bots; bot3's path down from the relay is capped at 300 kbit/s (20 000-byte
#            queue): the relay sheds upper layers for it, the other two must not suffer
#
# Prints ONE table: per scenario, video frames decoded / expected and audio frames played from
# real or Opus-FEC data / expected over every receiver (from the bots' JSON reports,
# docs/BOT-REPORT.md: video expected = peers[].video_frames_expected, from the first keyframe;
# audio expected = peers[].audio_frames_expected, from the first frame that arrived, as RTP
# counts), video freezes (their total as a share of the call time, and the
# longest), the recovery work (NACKs sent, fragments resent, frames rebuilt by FEC, frames
# given up on), and the loss the proxies actually applied (their --json reports); then one
# note per scenario with its own goal's figures.
#
# Usage: scripts/bench-network.sh
# Env:   BENCH_SECONDS=30 (per scenario)
#        SCENARIOS="none loss5 burst5 loss20 restart rebind cap three"  SEED=1
#        KEEP=1 (keep reports and logs in the printed directory)  NO_BUILD=1
#
# Builds release `vcall-relay`, `vcall-bot` and `vcall-netem` first (one cargo command).
# Every process it starts is stopped by its own PID at exit. The proxies' decisions are
# seeded, but which packets they hit depends on timing, so figures vary a little per run.
set -euo pipefail

DURATION="${BENCH_SECONDS:-30}"
SCENARIOS="${SCENARIOS:-none loss5 burst5 loss20 restart rebind cap three}"
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

# The relay on an ephemeral loopback port; its ready line gives the port and fingerprint. Its
# metrics (datagrams it dropped, by reason) on a free port, read before and after each scenario.
METRICS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
relay_metrics() {
    python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' \
        "http://127.0.0.1:$METRICS_PORT/metrics" >"$1" 2>/dev/null || true
}
"$RELAY_BIN" --listen 127.0.0.1:0 --state-dir "$WORK/relay" --metrics "127.0.0.1:$METRICS_PORT" \
    >"$WORK/relay.out" 2>"$WORK/relay.err" &
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
# The proxy flags of bot $2's path in scenario $1.
scenario_flags() {
    case "$1" in
        none | restart) echo "" ;;
        loss5) echo "--loss 5" ;;
        burst5) echo "--burst-loss 5 --burst-len 3" ;;
        loss20) echo "--loss 20" ;;
        rebind) echo "--rebind-at 10" ;;
        cap) [[ "$2" == 1 ]] && echo "--up-rate 800 --up-queue 50000" || echo "" ;;
        three) [[ "$2" == 3 ]] && echo "--down-rate 300 --down-queue 20000" || echo "" ;;
        *) echo "unknown scenario $1 (none loss5 burst5 loss20 restart rebind cap three)" >&2; exit 2 ;;
    esac
}
scenario_bots() { [[ "$1" == three ]] && echo 3 || echo 2; }
# What bot $2 sends in scenario $1.
bot_media() {
    if [[ "$1" == cap && "$2" == 1 ]]; then
        echo "--video testsrc-busy --resolution 1280x720 --bitrate-kbps 1500"
    else
        echo "--video testsrc --resolution 640x360 --bitrate-kbps 600"
    fi
}

run_scenario() {
    local name="$1"
    local dir="$WORK/$name"
    mkdir -p "$dir"
    local key
    key="$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')"
    local bots netem_pids=() bot_pids=()
    bots="$(scenario_bots "$name")"
    echo "== $name: ${BASE[*]}, ${DURATION}s"
    relay_metrics "$dir/relay-metrics.before"
    for i in $(seq "$bots"); do
        local flags
        flags="$(scenario_flags "$name" "$i")"
        # shellcheck disable=SC2086  # the scenario's flags are words on purpose
        "$NETEM_BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$RELAY_PORT" --seed "$((SEED + i))" \
            "${BASE[@]}" $flags --json >"$dir/netem$i.out" 2>"$dir/netem$i.err" &
        netem_pids+=("$!")
        PIDS+=("$!")
        local ready
        ready="$(ready_line "$dir/netem$i.out" 'vcall-netem ready')"
        if [[ -z "$ready" ]]; then
            echo "vcall-netem did not start:" >&2
            cat "$dir/netem$i.err" >&2
            exit 1
        fi
        local proxy="${ready#*listen=}"
        proxy="${proxy%% *}"
        local media
        media="$(bot_media "$name" "$i")"
        echo "   bot$i via $proxy: $media ${flags:-(no extra impairment)}"
        # shellcheck disable=SC2086
        VCALL_LINK="vcall://$proxy/net-$name?fp=$FP#k=$key" "$BOT_BIN" --name "bot$i" \
            --duration "$DURATION" --audio tone $media --fps 30 \
            --report "$dir/bot$i.json" 2>"$dir/bot$i.err" &
        bot_pids+=("$!")
        PIDS+=("$!")
    done
    if [[ "$name" == restart ]]; then
        sleep 10
        kill -KILL "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null || true
        sleep 1
        "$RELAY_BIN" --listen "127.0.0.1:$RELAY_PORT" --state-dir "$WORK/relay" \
            --metrics "127.0.0.1:$METRICS_PORT" >"$dir/relay2.out" 2>"$dir/relay2.err" &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        echo "   relay killed at 10 s and restarted at 11 s: $(ready_line "$dir/relay2.out" 'vcall-relay ready')"
    fi
    local failed=0
    for pid in "${bot_pids[@]}"; do
        wait "$pid" || failed=1
    done
    relay_metrics "$dir/relay-metrics.after"
    if [[ "$failed" != 0 ]]; then
        echo "   (a bot reported failure: see its errors in the table notes)"
    fi
    # SIGTERM: each proxy prints its report (last stdout line: JSON) and exits.
    for pid in "${netem_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" || true
    done
}

for s in $SCENARIOS; do
    scenario_flags "$s" 1 >/dev/null
done
for s in $SCENARIOS; do
    run_scenario "$s"
done

python3 - "$WORK" $SCENARIOS <<'PY'
import glob, json, os, sys

work, scenarios = sys.argv[1], sys.argv[2:]

def pct(a, b):
    return f"{a}/{b} ({100.0 * a / b:.1f}%)" if b else f"{a}/{b} (-)"

def peer(report, name):
    """The entry of sender `name` in a receiver's report that saw the most of it."""
    entries = [p for p in report.get("peers", []) if p.get("name") == name]
    return max(entries, key=lambda p: p.get("video_frames_expected", 0), default=None)

def seconds(p, first=0, last=None):
    """A peer's timeline from second `first` on, without the call's last (partial) second."""
    tl = p.get("timeline", []) if p else []
    tl = [s for s in tl if s["t_s"] >= first]
    return tl[:-1] if last is None else [s for s in tl if s["t_s"] <= last]

rows, notes = [], []
for name in scenarios:
    d = os.path.join(work, name)
    reports = {}
    for path in sorted(glob.glob(os.path.join(d, "bot*.json"))):
        try:
            with open(path) as f:
                r = json.load(f)
            reports[r.get("name")] = r
        except (OSError, ValueError) as e:
            notes.append(f"{name}: {os.path.basename(path)} unreadable ({e})")
    bots = len(glob.glob(os.path.join(d, "bot*.err")))
    for i in range(1, bots + 1):
        if f"bot{i}" not in reports:
            notes.append(f"{name}: bot{i} wrote no report")
    v_dec = v_exp = a_dec = a_exp = 0
    freeze_ms = call_ms = max_freeze = nacks = resent = fec = given_up = 0
    for r in reports.values():
        for e in r.get("errors", []):
            notes.append(f"{name}: {r.get('name')}: {e}")
        for p in r.get("peers", []):
            v_dec += p.get("video_frames_decoded", 0)
            v_exp += p.get("video_frames_expected", 0)
            a_dec += p.get("audio_frames_decoded", 0) + p.get("audio_frames_fec", 0)
            a_exp += p.get("audio_frames_expected", 0)
            freeze_ms += p.get("video_freeze_ms_total", 0)
            max_freeze = max(max_freeze, p.get("video_max_freeze_ms", 0))
            call_ms += 1000.0 * r.get("duration_s", 0)
            nacks += p.get("nacks_sent", 0)
            resent += p.get("retransmissions", 0)
            fec += p.get("fec_recovered", 0)
            given_up += p.get("video_frames_given_up", 0)
    freezes = f"{100.0 * freeze_ms / call_ms:.1f}% (max {max_freeze} ms)" if call_ms else "-"
    if name == "restart":
        reconnects = [r.get("reconnects", 0) for r in reports.values()]
        gap = max([r.get("reconnect_video_gap_ms", 0) for r in reports.values()] or [0])
        notes.append(f"restart: reconnects per bot {reconnects}; longest video gap across the "
                     f"restart {gap} ms, of which the relay was down 1000 ms: media back "
                     f"{gap - 1000} ms after the relay was up (goal ≤ 2000: noticing the loss, by "
                     f"the restarted relay's stateless reset or 2 s of silence, reconnecting, "
                     f"rekeying, the first keyframe)")
    if name == "rebind":
        gaps = [max((s["max_gap_ms"] for s in seconds(p)), default=None)
                for r in reports.values() for p in r.get("peers", [])]
        reconnects = [r.get("reconnects", 0) for r in reports.values()]
        notes.append(f"rebind: longest gap between two decoded frames per receiver {gaps} ms "
                     f"(goal ≤ 500); reconnects per bot {reconnects} (0: the connection migrated)")
    if name == "cap" and "bot1" in reports and "bot2" in reports:
        sender = reports["bot1"]["sent"]
        under = [s["t_s"] for s in sender.get("timeline", []) if s["target_kbps"] <= 800]
        adapted = under[0] + 1 if under else None
        p = peer(reports["bot2"], "bot1")
        after = seconds(p, adapted or 0)
        if adapted is not None and after:
            gap = max(s["max_gap_ms"] for s in after)
            lat = sorted(s["latency_p95_ms"] for s in after if s["latency_p95_ms"] is not None)
            fps = [s["frames"] for s in after]
            notes.append(
                f"cap: bot1's target under the 800 kbit/s cap {adapted} s into the call (goal ≤ 5), "
                f"{sender.get('rate_decreases')} decreases, {sender.get('target_kbps')} kbit/s at the end; "
                f"afterwards at bot2: longest gap {gap} ms (goal ≤ 500), per-second p95 latency "
                f"median {lat[len(lat) // 2] if lat else '-'} / worst {lat[-1] if lat else '-'} ms "
                f"(goal ≤ 300), {sum(fps) / len(fps):.1f} fps (min {min(fps)}; goal ≥ 20), "
                f"{p.get('width')}x{p.get('height')}")
        else:
            notes.append(f"cap: bot1's target never went under the cap "
                         f"(end {sender.get('target_kbps')} kbit/s)")
    if name == "three" and all(f"bot{i}" in reports for i in (1, 2, 3)):
        fast = [peer(reports["bot2"], "bot1"), peer(reports["bot1"], "bot2")]
        dec = sum(p.get("video_frames_decoded", 0) for p in fast if p)
        exp = sum(p.get("video_frames_expected", 0) for p in fast if p)
        fps = [sum(s["frames"] for s in seconds(p, 3)) / max(1, len(seconds(p, 3)))
               for p in fast if p]
        slow = [peer(reports["bot3"], n) for n in ("bot1", "bot2")]
        slow_fps = [sum(s["frames"] for s in seconds(p, 3)) / max(1, len(seconds(p, 3)))
                    for p in slow if p]
        targets = [reports[n]["sent"].get("target_kbps") for n in ("bot1", "bot2")]
        notes.append(
            f"three: between the two uncapped bots {pct(dec, exp)} of frames decoded (goal ≥ 98%), "
            f"{', '.join(f'{f:.1f}' for f in fps)} fps, senders' targets {targets} kbit/s; the capped "
            f"bot3 receives {', '.join(f'{f:.1f}' for f in slow_fps)} fps")
    drops = {}
    # After a restart the relay's counters start again from zero.
    for when, sign in (("after", 1),) + ((("before", -1),) if name != "restart" else ()):
        try:
            with open(os.path.join(d, f"relay-metrics.{when}")) as f:
                for line in f:
                    if line.startswith("vcall_relay_datagrams_dropped_total{reason="):
                        reason = line.split('"')[1]
                        drops[reason] = drops.get(reason, 0) + sign * int(float(line.split()[-1]))
        except OSError:
            pass
    drops = {k: v for k, v in drops.items() if v > 0}
    if drops:
        notes.append(f"{name}: the relay dropped datagrams (or copies): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
    recovery = f"{nacks}/{resent}/{fec}/{given_up}"
    totals = {"up": [0, 0], "down": [0, 0]}
    for path in sorted(glob.glob(os.path.join(d, "netem*.out"))):
        try:
            with open(path) as f:
                net = json.loads(f.read().strip().splitlines()[-1])
            for k in ("up", "down"):
                x = net[k]
                totals[k][0] += (x["dropped_loss"] + x["dropped_burst"] + x["dropped_queue"]
                                 + x["dropped_blackout"])
                totals[k][1] += x["packets_in"]
        except (OSError, ValueError, KeyError, IndexError) as e:
            notes.append(f"{name}: no report from {os.path.basename(path)} ({e})")
    link = " / ".join(f"{100.0 * a / b:.1f}%" if b else "-" for a, b in totals.values())
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
