#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, clippy (unwrap/expect denied outside tests),
# the unit, property, contract and pipeline tests, the pandas check of the .pickle archive, and the
# integration tests against real servers (a Kafka-protocol broker, PostgreSQL, an S3 server), which
# scripts/services.sh installs (once) and starts. The long crash loop runs here in its short form;
# scripts/crash-test.sh runs it in full. Last, the dashboard is driven through every page in
# chromium (scripts/browser-test.sh). The build cache lives in ~/.cache/sentio/target (override
# with CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== python venv for the pandas check" >&2
SENTIO_PYTHON="$(scripts/python-env.sh | tail -n 1)"
export SENTIO_PYTHON

echo "== test servers" >&2
scripts/services.sh up
set -a
# shellcheck source=/dev/null
source "$HOME/.cache/sentio/services.env"
set +a

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test" >&2
cargo test --workspace --locked

echo "== vendored front-end library matches npm" >&2
scripts/ui-vendor.sh --check

echo "== dashboard in a real browser" >&2
scripts/browser-test.sh
