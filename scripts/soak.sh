#!/usr/bin/env bash
# soak.sh: one release relay for MINUTES (default 10) under waves of `vcall-load` runs: every
# wave opens rooms that join (paced), stream media at real rates, and vanish without a Leave
# (the load tool closes its connections), while garbage UDP hits the relay's port. Every
# SAMPLE seconds it samples the relay's RSS, open file descriptors and threads (/proc) and its
# rooms and peers (/metrics), and at the end prints the table and the verdict: RSS at the end
# within 5 % of its value after the warm-up (the first WARMUP_WAVES waves: allocator pools and
# quinn's buffers reach their working size there), no growth in fds or threads,
# every room empty, the relay still alive.
#
# Usage: scripts/soak.sh [MINUTES]
# Env:   ROOMS=20 PUBLISHERS=2 SUBSCRIBERS=3 WAVE_SECONDS=20 SAMPLE=5 WARMUP_WAVES=2 KEEP=1
#        NO_BUILD=1
set -euo pipefail

MINUTES="${1:-10}"
ROOMS="${ROOMS:-20}"
PUBLISHERS="${PUBLISHERS:-2}"
SUBSCRIBERS="${SUBSCRIBERS:-3}"
WAVE="${WAVE_SECONDS:-20}"
SAMPLE="${SAMPLE:-5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p vcall-relay -p vcall-load --bin vcall-relay --bin vcall-load
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
WORK="$(mktemp -d -t vcall-soak.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$WORK"; else echo "kept: $WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
"$TARGET_DIR/release/vcall-relay" --listen "127.0.0.1:$PORT" --state-dir "$WORK/state" \
    --metrics "127.0.0.1:$METRICS_PORT" --max-peers-per-room 64 \
    --max-connections-per-source 0 --handshakes-per-source-per-sec 0 >"$WORK/relay.log" 2>&1 &
RELAY=$!
PIDS+=("$RELAY")
for _ in $(seq 100); do grep -q "vcall-relay ready" "$WORK/relay.log" && break; sleep 0.1; done
FP="$(grep -o 'fingerprint=[0-9a-f]*' "$WORK/relay.log" | head -1 | cut -d= -f2)"
LINK="vcall://127.0.0.1:$PORT/soak?fp=$FP"

# Garbage: a few hundred random datagrams a second at the relay's port, for the whole run.
python3 - "$PORT" "$((MINUTES * 60))" <<'EOF' &
import os, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + seconds
while time.time() < end:
    for _ in range(30):
        s.sendto(os.urandom(1 + os.urandom(1)[0] * 4), ("127.0.0.1", port))
    time.sleep(0.1)
EOF
PIDS+=("$!")

sample() {
    local t="$1" rss fds threads rooms peers
    rss="$(awk '/VmRSS/ {print $2}' "/proc/$RELAY/status")"
    fds="$(ls "/proc/$RELAY/fd" | wc -l)"
    threads="$(ls "/proc/$RELAY/task" | wc -l)"
    read -r rooms peers < <(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" \
        | awk '/^vcall_relay_rooms / {r=$2} /^vcall_relay_peers / {p=$2} END {print r, p}')
    echo "$t $rss $fds $threads $rooms $peers" >>"$WORK/samples.txt"
}

END=$((SECONDS + MINUTES * 60))
wave=0
: >"$WORK/samples.txt"
while ((SECONDS + WAVE + 5 < END)); do
    wave=$((wave + 1))
    "$TARGET_DIR/release/vcall-load" --link "$LINK" --rooms "$ROOMS" --publishers "$PUBLISHERS" \
        --subscribers "$SUBSCRIBERS" --video-kbps 500 --audio --duration "$WAVE" --warmup 1 \
        --join-rate 50 --report "$WORK/wave-$wave.json" >"$WORK/wave-$wave.log" 2>&1 &
    LOAD=$!
    while kill -0 "$LOAD" 2>/dev/null; do sample "$SECONDS"; sleep "$SAMPLE"; done
    wait "$LOAD" || echo "wave $wave: vcall-load failed (see $WORK/wave-$wave.log)"
    sleep 3 # the relay notices the vanished members (their connections closed)
    sample "$SECONDS"
    echo "after-wave $wave $(tail -1 "$WORK/samples.txt")" >>"$WORK/after.txt"
done
sleep 2
sample "$SECONDS"
ALIVE=yes
kill -0 "$RELAY" 2>/dev/null || ALIVE=no

python3 - "$WORK" "$ALIVE" "${WARMUP_WAVES:-2}" <<'EOF'
import json, glob, os, sys
w, alive, warmup_waves = sys.argv[1], sys.argv[2], int(sys.argv[3])
after = [l.split()[2:] for l in open(os.path.join(w, "after.txt"))]
final = open(os.path.join(w, "samples.txt")).read().split("\n")[-2].split()
samples = [l.split() for l in open(os.path.join(w, "samples.txt")) if l.strip()]
print(f"{'t (s)':>6} {'RSS KiB':>9} {'fds':>5} {'threads':>7} {'rooms':>6} {'peers':>6}")
for s in samples[:: max(1, len(samples) // 20)] + [samples[-1]]:
    print(f"{s[0]:>6} {s[1]:>9} {s[2]:>5} {s[3]:>7} {s[4]:>6} {s[5]:>6}")
waves = sorted(glob.glob(os.path.join(w, "wave-*.json")))
delivered = [json.load(open(p))["delivered"] for p in waves]
warm = after[min(warmup_waves, len(after)) - 1]
first = after[0]
rss_warm, rss_end = int(warm[1]), int(final[1])
growth = (rss_end - rss_warm) / rss_warm * 100
ok = (abs(growth) <= 5 and int(final[2]) <= int(warm[2]) and int(final[3]) <= int(warm[3])
      and final[4] == "0" and final[5] == "0" and alive == "yes")
print(f"waves {len(waves)}, delivered per wave {min(delivered)*100:.2f}–{max(delivered)*100:.2f} %")
print(f"RSS after the first wave {first[1]} KiB, after warm-up ({warmup_waves} waves) {rss_warm} KiB, at the end {rss_end} KiB ({growth:+.1f} %, goal within 5 %); "
      f"fds {warm[2]} → {final[2]}; threads {warm[3]} → {final[3]}; rooms/peers at the end {final[4]}/{final[5]}; "
      f"relay alive: {alive}")
print("soak: OK" if ok else "soak: NOT OK")
sys.exit(0 if ok else 1)
EOF
