#!/usr/bin/env bash
# Opens the vcall desktop app straight into a new end-to-end encrypted call on an embedded
# local relay, with a demo bot peer. Uses the test pattern and tone when no camera or
# microphone exists. Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vcall-target}"
cargo build --release --locked -p vcall-desktop --bin vcall
exec "$CARGO_TARGET_DIR/release/vcall" --demo "$@"
