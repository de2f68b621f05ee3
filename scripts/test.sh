#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, clippy (unwrap/expect denied outside tests),
# the unit, property, contract and pipeline tests, and the pandas check of the .pickle archive.
# The build cache lives in ~/.cache/sentio/target (override with CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== python venv for the pandas check" >&2
SENTIO_PYTHON="$(scripts/python-env.sh | tail -n 1)"
export SENTIO_PYTHON

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test" >&2
cargo test --workspace --locked
