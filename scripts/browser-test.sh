#!/usr/bin/env bash
# The dashboard's end-to-end test in a real browser: starts `sentio demo` in a scratch directory
# and drives Debian's chromium with playwright-core (from the npm registry) through every page
# (tests/browser/dashboard.mjs). Installs chromium, Node.js and the npm package when missing.
# Screenshots land in tests/browser/screenshots/ (the README's come from there).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"

need_apt=()
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "browser-test: installing ${need_apt[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

(cd tests/browser && npm ci --no-audit --no-fund --silent)
cargo build -p sentio --locked --quiet
SENTIO_BIN="$CARGO_TARGET_DIR/debug/sentio" node tests/browser/dashboard.mjs
