#!/usr/bin/env bash
# bench-relay.sh: the relay's capacity, measured with `vcall-load` against release relays on
# this machine (the load tool shares the machine's cores with the relay; figures are per relay
# core, from /proc). Scenarios:
#
#   tracks   ROOMS rooms × (2 publishers + SUBS subscribers), 500 kbit/s video per publisher:
#            subscriber-tracks delivered at ≥ 99.5 % per relay core
#   idle     IDLE_CONNS members, no media (QUIC keep-alives only): connections held and the
#            relay's RSS per connection
#   joins    JOINS members joining at 100/s: join → Welcome p50/p99
#   cluster  one nats-server, relays 1 and 2: the same load with publishers on relay 1 and
#            subscribers on relay 2, beside it the same load on relay 1 alone, in one run:
#            received datagrams/s ratio and the latency NATS adds
#
# Usage: scripts/bench-relay.sh
# Env:   SCENARIOS="tracks idle joins cluster"  SECONDS_MEASURED=10  ROOMS=40  SUBS=4
#        IDLE_CONNS=10000  JOINS=1000  KEEP=1 (keep reports)  NO_BUILD=1
# Needs nats-server for `cluster` (scripts/install-deps.sh installs it).
set -euo pipefail

SCENARIOS="${SCENARIOS:-tracks idle joins cluster}"
MEASURED="${SECONDS_MEASURED:-10}"
ROOMS="${ROOMS:-40}"
SUBS="${SUBS:-4}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
JOINS="${JOINS:-1000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p vcall-relay -p vcall-load --bin vcall-relay --bin vcall-load
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
RELAY_BIN="$TARGET_DIR/release/vcall-relay"
LOAD_BIN="$TARGET_DIR/release/vcall-load"

WORK="$(mktemp -d -t vcall-bench-relay.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$WORK"; else echo "kept: $WORK"; fi
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_relay NAME [extra flags...]: starts a relay, sets $RELAY_PID and $RELAY_LINK.
start_relay() {
    local name="$1"; shift
    local port; port="$(free_port)"
    "$RELAY_BIN" --listen "127.0.0.1:$port" --state-dir "$WORK/state" \
        --max-rooms 5000 --max-peers-per-room 64 \
        --max-connections-per-source 0 --handshakes-per-source-per-sec 0 \
        "$@" >"$WORK/$name.log" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    for _ in $(seq 100); do
        grep -q "vcall-relay ready" "$WORK/$name.log" 2>/dev/null && break
        sleep 0.1
    done
    local fp; fp="$(grep -o 'fingerprint=[0-9a-f]*' "$WORK/$name.log" | head -1 | cut -d= -f2)"
    RELAY_LINK="vcall://127.0.0.1:$port/load?fp=$fp"
}

stop_relay() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

field() { python3 -c "import json,sys; r=json.load(open('$1')); print(eval('r$2'))"; }

for scenario in $SCENARIOS; do
    echo
    echo "==> $scenario"
    case "$scenario" in
    tracks)
        start_relay relay-tracks
        "$LOAD_BIN" --link "$RELAY_LINK" --rooms "$ROOMS" --publishers 2 --subscribers "$SUBS" \
            --video-kbps 500 --duration "$MEASURED" --relay-pid "$RELAY_PID" \
            --report "$WORK/tracks.json"
        stop_relay "$RELAY_PID"
        ;;
    idle)
        start_relay relay-idle
        "$LOAD_BIN" --link "$RELAY_LINK" --rooms $((IDLE_CONNS / 10)) --publishers 0 \
            --subscribers 10 --video-kbps 0 --join-rate 500 --duration "$MEASURED" \
            --endpoints 32 --relay-pid "$RELAY_PID" --report "$WORK/idle.json"
        stop_relay "$RELAY_PID"
        ;;
    joins)
        start_relay relay-joins
        "$LOAD_BIN" --link "$RELAY_LINK" --rooms $((JOINS / 10)) --publishers 1 \
            --subscribers 9 --video-kbps 0 --audio --join-rate 100 --duration 2 \
            --relay-pid "$RELAY_PID" --report "$WORK/joins.json"
        stop_relay "$RELAY_PID"
        ;;
    cluster)
        NATS_PORT="$(free_port)"
        nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
        PIDS+=("$!")
        sleep 0.5
        start_relay relay-1 --nats "nats://127.0.0.1:$NATS_PORT" --node-id 1
        PID1="$RELAY_PID"; LINK1="$RELAY_LINK"
        start_relay relay-2 --nats "nats://127.0.0.1:$NATS_PORT" --node-id 2
        PID2="$RELAY_PID"; LINK2="$RELAY_LINK"
        sleep 1
        echo "-- one relay: publishers and subscribers on relay 1"
        "$LOAD_BIN" --link "$LINK1" --rooms "$ROOMS" --publishers 2 --subscribers "$SUBS" \
            --video-kbps 500 --duration "$MEASURED" --relay-pid "$PID1" \
            --report "$WORK/single.json"
        echo "-- across relays: publishers on relay 1, subscribers on relay 2"
        "$LOAD_BIN" --link "$LINK1" --subscriber-link "$LINK2" --rooms "$ROOMS" \
            --publishers 2 --subscribers "$SUBS" --video-kbps 500 --duration "$MEASURED" \
            --relay-pid "$PID2" --report "$WORK/cross.json"
        stop_relay "$PID1"; stop_relay "$PID2"
        ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
done

echo
echo "== summary (this machine, $(nproc) cores; the load tool runs beside the relay)"
python3 - "$WORK" <<'EOF'
import json, os, sys
w = sys.argv[1]
def load(name):
    p = os.path.join(w, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
t = load("tracks")
if t:
    print(f"tracks   {t['subscriber_tracks']} tracks at 500 kbit/s, {t['delivered']*100:.2f} % delivered "
          f"(worst {t['worst_track_delivered']*100:.2f} %), relay {t['relay']['cores']:.3f} cores: "
          f"{t['subscriber_tracks_per_core'] or 0:.0f} subscriber-tracks per relay core (goal ≥ 2000); "
          f"latency p50 {t['latency_ms']['p50']:.2f} ms p99 {t['latency_ms']['p99']:.2f} ms")
i = load("idle")
if i:
    print(f"idle     {i['connections'] - i['connection_failures']} of {i['connections']} connections held "
          f"(goal ≥ 10000), relay RSS {i['relay']['rss_mib_before']:.1f} → {i['relay']['rss_mib_after']:.1f} MiB, "
          f"{i['relay']['rss_kib_per_connection']:.1f} KiB per connection, {i['relay']['cores']:.3f} cores idle")
j = load("joins")
if j:
    print(f"joins    {j['connections']} joins at 100/s: join → Welcome p50 {j['join_ms']['p50']:.2f} ms, "
          f"p99 {j['join_ms']['p99']:.2f} ms (goal ≤ 50 ms), {j['connection_failures']} failed")
s, c = load("single"), load("cross")
if s and c:
    ratio = c['received_datagrams_per_sec'] / max(s['received_datagrams_per_sec'], 1e-9)
    print(f"cluster  received datagrams/s across relays {c['received_datagrams_per_sec']:.0f} vs one relay "
          f"{s['received_datagrams_per_sec']:.0f}: {ratio:.2f}× (goal ≥ 0.7×); delivered {c['delivered']*100:.2f} % "
          f"vs {s['delivered']*100:.2f} %; latency added through NATS p50 "
          f"{c['latency_ms']['p50'] - s['latency_ms']['p50']:+.2f} ms, p99 "
          f"{c['latency_ms']['p99'] - s['latency_ms']['p99']:+.2f} ms (goal ≤ 1 ms / ≤ 5 ms)")
EOF
