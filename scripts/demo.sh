#!/usr/bin/env bash
# One command from a fresh clone to a running demo: installs what is missing, builds the release
# binary, and runs `sentio demo` on the embedded backends (no servers). Extra arguments go to
# `sentio demo`, e.g. `scripts/demo.sh --backfill 2h`. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
cargo build --release --locked -p sentio
exec "$CARGO_TARGET_DIR/release/sentio" demo "$@"
