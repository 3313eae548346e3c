#!/usr/bin/env bash
# fuzz.sh: runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60),
# starting from its committed seeds (fuzz/seeds/TARGET) plus the corpus earlier runs grew
# (fuzz/corpus/TARGET, not committed), and prints per target: executions, executions/s,
# coverage (libFuzzer's edge count) and crashes. A crash stops the run with its input saved
# under fuzz/artifacts/TARGET and a non-zero exit: turn it into a regression test.
#
# Usage: scripts/fuzz.sh [SECONDS]      Env: TARGETS="control datagram ..."  JOBS=1
# Installs what it needs (the nightly toolchain and cargo-fuzz) when missing.
set -euo pipefail

SECONDS_EACH="${1:-60}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/fuzz"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vcall-target}/fuzz"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

TARGETS="${TARGETS:-$(cargo +nightly fuzz list)}"
cargo +nightly fuzz build --release

printf '%-18s %14s %10s %8s %s\n' target executions exec/s cov result
status=0
for target in $TARGETS; do
    mkdir -p "corpus/$target" "seeds/$target"
    log="$(mktemp)"
    set +e
    cargo +nightly fuzz run --release "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -jobs="${JOBS:-1}" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    speed="$(grep -o 'exec/s: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    cov="$(grep -o 'cov: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    if [[ $rc -eq 0 ]]; then result=ok; else result="FAILED (see fuzz/artifacts/$target)"; status=1; tail -30 "$log"; fi
    printf '%-18s %14s %10s %8s %s\n' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$result"
    rm -f "$log"
done
exit $status
