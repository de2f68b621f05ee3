#!/usr/bin/env bash
# Detection quality on simulated data the model never saw, as docs/quality.md reports it:
#   1. simulate TRAIN_HOURS of history with seed TRAIN_SEED (8 devices, default anomaly mix) into a
#      fresh SQLite store, and train the default model on it (`sentio train`, promoted);
#   2. simulate the following EVAL_HOURS with seed EVAL_SEED (other machines, other faults) into
#      the same store, and replay them through the champion: `sentio evaluate --from --to`.
# Usage: scripts/quality.sh [WORKDIR] (default: a new temporary directory; kept, its path printed).
# Settings come from the environment: TRAIN_SEED (1), EVAL_SEED (2), TRAIN_HOURS (24),
# EVAL_HOURS (24), RATE (anomaly episodes per device-hour, 1), and any SENTIO__SECTION__KEY.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
cargo build --release --locked -p sentio
SENTIO="$CARGO_TARGET_DIR/release/sentio"

WORK="${1:-$(mktemp -d -t sentio-quality.XXXXXX)}"
mkdir -p "$WORK"
cd "$WORK"
TRAIN_SEED="${TRAIN_SEED:-1}" EVAL_SEED="${EVAL_SEED:-2}"
TRAIN_HOURS="${TRAIN_HOURS:-24}" EVAL_HOURS="${EVAL_HOURS:-24}"
export SENTIO__SIMULATOR__ANOMALIES__RATE_PER_HOUR="${RATE:-1}"
START="2026-11-01T00:00:00Z"
SPLIT="$(date -u -d "$START + $TRAIN_HOURS hours" +%Y-%m-%dT%H:%M:%SZ)"
END="$(date -u -d "$SPLIT + $EVAL_HOURS hours" +%Y-%m-%dT%H:%M:%SZ)"
echo "quality: work directory $WORK; train $START .. $SPLIT (seed $TRAIN_SEED), evaluate $SPLIT .. $END (seed $EVAL_SEED)" >&2

# Steps already done in WORKDIR are skipped: delete data/tracking to train again on the same data.
if [[ ! -f data/.simulated ]]; then
    rm -rf data
    "$SENTIO" migrate
    "$SENTIO" simulate --stdout --no-archive --seed "$TRAIN_SEED" --from "$START" --to "$SPLIT" |
        "$SENTIO" ingest --stdin
    touch data/.simulated
fi
if [[ ! -d data/tracking ]]; then
    "$SENTIO" train --from "$START" --to "$SPLIT" --promote
fi
# Each evaluation seed gets a store of its own over the same range; the model stays in data/.
EVAL_DB="data/eval-seed-$EVAL_SEED.db"
if [[ ! -f "$EVAL_DB.done" ]]; then
    rm -f "$EVAL_DB"
    SENTIO__STORE__SQLITE__PATH="$EVAL_DB" "$SENTIO" migrate
    "$SENTIO" simulate --stdout --no-archive --seed "$EVAL_SEED" --from "$SPLIT" --to "$END" |
        SENTIO__STORE__SQLITE__PATH="$EVAL_DB" "$SENTIO" ingest --stdin
    touch "$EVAL_DB.done"
fi
SENTIO__STORE__SQLITE__PATH="$EVAL_DB" "$SENTIO" evaluate --from "$SPLIT" --to "$END" "${@:2}"
