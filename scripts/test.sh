#!/usr/bin/env bash
# Runs vcall's whole test suite on a fresh Debian/Ubuntu machine with only Rust installed:
# installs missing system packages, then format check, clippy (warnings are errors), every
# test of the workspace, a compile of the benchmarks, and a few seconds of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
# A fixed build folder outside the clone, so repeated runs reuse build output.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vcall-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

step() { echo; echo "==> $*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "the relay links no E2EE or key-handling crate"
if forbidden=$(cargo tree -p vcall-relay -e normal,build --prefix none --locked \
    | grep -E '^(vcall-crypto|rsa|aes-gcm|aes|chacha20poly1305|argon2|x25519-dalek) ' | sort -u) \
    && [ -n "$forbidden" ]; then
  echo "vcall-relay depends on: $forbidden" >&2
  exit 1
fi
step "cargo test"
cargo test --workspace --locked
step "benchmarks compile (never timed in CI)"
cargo bench -p vcall-benches --locked --no-run
step "fuzz targets build and run briefly (scripts/fuzz.sh 3; long runs: scripts/fuzz.sh 600)"
./scripts/fuzz.sh 3
echo; echo "vcall: all checks passed"
