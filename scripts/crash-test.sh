#!/usr/bin/env bash
# The full exactly-once crash loop of issue 3: 1,000,000 seeded readings through the real broker
# into PostgreSQL while `sentio ingest` is killed with SIGKILL at random points 20 times (and
# restarted each time); at the end the stored rows must equal the produced readings by count and
# checksum, with no duplicate (device, sensor, seq). CI runs the same test in a short form
# (100,000 readings, 3 kills). Override with SENTIO_CRASH_READINGS / SENTIO_CRASH_KILLS.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
scripts/services.sh up
set -a
source "$HOME/.cache/sentio/services.env"
set +a
export SENTIO_CRASH_READINGS="${SENTIO_CRASH_READINGS:-1000000}"
export SENTIO_CRASH_KILLS="${SENTIO_CRASH_KILLS:-20}"
exec cargo test --locked -p sentio --test real_stack ingest_killed_at_random_points -- --nocapture
