#!/usr/bin/env bash
# bench-app.sh: what the desktop app costs in a call, thread by thread (issue 20). Runs the
# release `vcall` under a private Xvfb (eframe's glow on Mesa llvmpipe, the software GL of every
# machine without a GPU driver), joined by link to a local relay with `vcall-bot`s (test
# pattern + tone, 1280x720 @ 30 fps, 1500 kbit/s), once per scenario:
#
#   two    the app sends its test pattern, one bot sends video (self view + 1 remote)
#   self   the app sends video, the bot sends none (only our camera)
#   none   no video either way (app camera off, bot --video none)
#   four   the app sends video, three bots send video (self view + 3 remotes); these bots
#          replay a recorded loop of the pattern (`--video testsrc-replay`) and decode no
#          video (`--no-video-decode`): three live 720p encoders and decoders would take the
#          two cores of this machine from the app
#   floor  no app, no call: `examples/gl_floor` (an eframe window of the app's size that draws
#          only its clear colour) repainting 30 times a second: the software GL's own floor
#   floor-half  the same at 640x400 (a quarter of the pixels): how the floor scales
#
# After WARMUP seconds it reads /proc/PID/task/*/stat (utime + stime) over BENCH_SECONDS and
# prints ONE table: per scenario the app's CPU (cores) in total, in software GL (`llvmpipe-*`
# threads) and in its own threads (the busiest named), beside the first bot's CPU for the same
# call, the ratio of the app's own threads to that bot, the app's repaints per second (its
# `--print-ui-stats` line) and the X server's CPU (what presenting the frames costs Xvfb).
#
# Usage: scripts/bench-app.sh
# Env:   BENCH_SECONDS=15  WARMUP=10  SCENARIOS="two self none four floor floor-half"
#        NO_BUILD=1  KEEP=1
#
# Needs Xvfb (apt-get install xvfb; scripts/install-deps.sh installs it). Every process it
# starts is stopped by its own PID at exit.
set -euo pipefail

MEASURE="${BENCH_SECONDS:-15}"
WARMUP="${WARMUP:-10}"
SCENARIOS="${SCENARIOS:-two self none four floor floor-half}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

command -v Xvfb >/dev/null || { echo "bench-app.sh: Xvfb is missing (apt-get install xvfb)" >&2; exit 1; }
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p vcall-relay -p vcall-engine -p vcall-desktop \
        --bin vcall-relay --bin vcall-bot --bin vcall
    cargo build --release -p vcall-desktop --example gl_floor
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
RELAY_BIN="$TARGET_DIR/release/vcall-relay"
BOT_BIN="$TARGET_DIR/release/vcall-bot"
APP_BIN="$TARGET_DIR/release/vcall"
FLOOR_BIN="$TARGET_DIR/release/examples/gl_floor"

WORK="$(mktemp -d -t vcall-bench-app.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP:-}" ]]; then
        echo "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# A private display: the first free number from 90.
DISPLAY_NUM=90
while [[ -e "/tmp/.X11-unix/X$DISPLAY_NUM" || -e "/tmp/.X$DISPLAY_NUM-lock" ]]; do
    DISPLAY_NUM=$((DISPLAY_NUM + 1))
done
Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
PIDS+=("$XVFB_PID")
for _ in $(seq 50); do
    [[ -e "/tmp/.X11-unix/X$DISPLAY_NUM" ]] && break
    sleep 0.1
done

ready_line() {
    for _ in $(seq 100); do
        if grep -q "$2" "$1" 2>/dev/null; then
            grep -m1 "$2" "$1"
            return
        fi
        sleep 0.1
    done
}

"$RELAY_BIN" --listen 127.0.0.1:0 --state-dir "$WORK/relay" >"$WORK/relay.out" 2>"$WORK/relay.err" &
PIDS+=("$!")
READY="$(ready_line "$WORK/relay.out" 'vcall-relay ready')"
[[ -n "$READY" ]] || { echo "the relay did not start:" >&2; cat "$WORK/relay.err" >&2; exit 1; }
LISTEN="$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$READY")"
FP="$(sed -E 's/.*fingerprint=([0-9a-fA-F]+).*/\1/' <<<"$READY")"

# Bots in scenario $1, and what they send.
scenario_bots() { [[ "$1" == four ]] && echo 3 || echo 1; }
bot_video() {
    case "$1" in
        two) echo testsrc ;;
        four) echo testsrc-replay ;;
        *) echo none ;;
    esac
}
app_camera() { [[ "$1" == none ]] && echo none || echo testsrc; }
bot_decode() { [[ "$1" == four ]] && echo --no-video-decode || true; }

# CPU of process $1 by thread name, of process $2 (a bot; 0: none) and of Xvfb, as JSON.
measure_cpu() {
    python3 - "$MEASURE" "$1" "$2" "$XVFB_PID" <<'PY'
import json, os, sys, time

measure, app, bot, xvfb = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
tick = os.sysconf("SC_CLK_TCK")

def threads(pid):
    """{tid: (name, cpu seconds)} of a process's threads now."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out

pids = [p for p in (app, bot, xvfb) if p != "0"]
before = {p: threads(p) for p in pids}
start = time.monotonic()
time.sleep(measure)
after = {p: threads(p) for p in pids}
elapsed = time.monotonic() - start
groups = {}
for tid, (name, cpu) in after[app].items():
    used = cpu - before[app].get(tid, (name, 0.0))[1]
    groups[name] = groups.get(name, 0.0) + used / elapsed
def process_cpu(pid):
    if pid not in after:
        return 0.0
    return sum(cpu - before[pid].get(t, ("", 0.0))[1] for t, (_, cpu) in after[pid].items()) / elapsed
print(json.dumps({"groups": groups, "bot": process_cpu(bot), "xvfb": process_cpu(xvfb)}))
PY
}

run_scenario() {
    local name="$1" dir="$WORK/$1"
    mkdir -p "$dir/config"
    local key
    key="$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')"
    local link="vcall://$LISTEN/app-$name?fp=$FP#k=$key"
    local bot_pids=()
    if [[ "$name" == floor* ]]; then
        local size=1280x800
        [[ "$name" == floor-half ]] && size=640x400
        DISPLAY=":$DISPLAY_NUM" "$FLOOR_BIN" "$((WARMUP + MEASURE + 5))" "$size" 30 \
            >"$dir/app.out" 2>"$dir/app.err" &
        local app=$!
        PIDS+=("$app")
        sleep "$WARMUP"
        measure_cpu "$app" 0 >"$dir/cpu.json"
        kill "$app" 2>/dev/null || true
        wait "$app" 2>/dev/null || true
        return
    fi
    for i in $(seq "$(scenario_bots "$name")"); do
        VCALL_LINK="$link" "$BOT_BIN" --name "bot$i" --duration "$((WARMUP + MEASURE + 15))" \
            --video "$(bot_video "$name")" --audio tone --resolution 1280x720 --fps 30 \
            --bitrate-kbps 1500 $(bot_decode "$name") >"$dir/bot$i.out" 2>"$dir/bot$i.err" &
        bot_pids+=("$!")
        PIDS+=("$!")
    done
    DISPLAY=":$DISPLAY_NUM" XDG_CONFIG_HOME="$dir/config" "$APP_BIN" "$link" --name App \
        --camera "$(app_camera "$name")" --mic tone --speaker none \
        --settings "$dir/settings.toml" --print-ui-stats 5 >"$dir/app.out" 2>"$dir/app.err" &
    local app=$!
    PIDS+=("$app")
    sleep "$WARMUP"
    if ! kill -0 "$app" 2>/dev/null; then
        echo "bench-app.sh: vcall exited early in $name:" >&2
        cat "$dir/app.err" >&2
        exit 1
    fi
    measure_cpu "$app" "${bot_pids[0]}" >"$dir/cpu.json"
    kill "$app" 2>/dev/null || true
    wait "$app" 2>/dev/null || true
    for pid in "${bot_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

for s in $SCENARIOS; do
    if [[ "$s" == floor* ]]; then
        echo "== $s: gl_floor only (no call), 30 repaints/s; ${WARMUP}s warm-up, ${MEASURE}s measured"
        run_scenario "$s"
        continue
    fi
    echo "== $s: app camera $(app_camera "$s"), $(scenario_bots "$s") bot(s) sending video $(bot_video "$s"); ${WARMUP}s warm-up, ${MEASURE}s measured"
    run_scenario "$s"
done

python3 - "$WORK" $SCENARIOS <<'PY'
import json, os, sys

work, scenarios = sys.argv[1], sys.argv[2:]
rows = []
for name in scenarios:
    with open(os.path.join(work, name, "cpu.json")) as f:
        r = json.load(f)
    groups = r["groups"]
    gl = sum(v for k, v in groups.items() if k.startswith("llvmpipe"))
    own = {k: v for k, v in groups.items() if not k.startswith("llvmpipe")}
    total = gl + sum(own.values())
    top = ", ".join(f"{k} {v:.3f}" for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:6]
                    if v >= 0.005)
    ratio = f"{sum(own.values()) / r['bot']:.2f}x" if r["bot"] > 0.001 else "-"
    repaints, slowest, latency = "-", "-", "-"
    with open(os.path.join(work, name, "app.err"), errors="replace") as f:
        stats = [line.strip() for line in f
                 if line.startswith("vcall ui:") or line.startswith("gl_floor:")]
    if stats:
        last = stats[-1]
        repaints = last.split(":", 1)[1].split(",")[0].replace("repaints/s", "").strip()
        fields = dict(part.strip().split(":", 1) for part in last.split(";")[1:] if ":" in part)
        remote = [float(v.split("=")[1]) for v in fields.get("shown fps", "").split()
                  if not v.startswith("self=")]
        if remote:
            slowest = f"{min(remote):.1f}"
        p95 = [float(v.split("=")[1]) for v in fields.get("latency p95 ms", "").split()]
        if p95:
            latency = f"{max(p95):.0f}"
    rows.append((name, f"{total:.3f}", f"{gl:.3f}", f"{sum(own.values()):.3f} ({top})",
                 f"{r['bot']:.3f}", ratio, repaints, slowest, latency, f"{r['xvfb']:.3f}"))
head = ("call", "app total (cores)", "software GL", "app threads (busiest)", "bot",
        "app threads / bot", "repaints/s", "slowest remote fps drawn", "latency p95 ms",
        "Xvfb")
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
print()
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
PY
