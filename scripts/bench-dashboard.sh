#!/usr/bin/env bash
# The dashboard with a day of 1-second data: simulates 24 h of 8 devices (2.76 M readings) into a
# scratch SQLite store, trains a small model and replays the day through it (so every frame has a
# score), serves it, and runs tests/browser/bench.mjs in chromium. Prints a table for
# docs/benchmarks.md. Needs what scripts/browser-test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
cargo build -p sentio --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/sentio"
work="$(mktemp -d)"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
export SENTIO__STORE__SQLITE__PATH="$work/sentio.db" SENTIO__TRACKING__LOCAL__ROOT="$work/tracking" \
    SENTIO__OBJECTS__LOCAL__ROOT="$work/objects" SENTIO__ARCHIVE__ENABLED=false \
    SENTIO__TRAIN__EPOCHS=3 SENTIO__TRAIN__MAX_TRAIN_WINDOWS=20000 RUST_LOG=warn
from=2026-11-01 to=2026-11-02
echo "bench-dashboard: simulating and storing $from..$to" >&2
"$bin" simulate --seed 1 --from "$from" --to "$to" --stdout --no-archive | "$bin" ingest --stdin >/dev/null
"$bin" train --from "$from" --to "$to" >/dev/null
echo "bench-dashboard: scoring the day" >&2
"$bin" detect --from "$from" --to "$to" >/dev/null
"$bin" serve --bind 127.0.0.1:18282 >/dev/null &
server=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18282/api/overview >/dev/null && break; sleep 0.2; done
(cd tests/browser && npm ci --no-audit --no-fund --silent)
BASE=http://127.0.0.1:18282 node tests/browser/bench.mjs
