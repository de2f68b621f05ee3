#!/usr/bin/env bash
# The dashboard's chart library, uPlot (MIT), comes from the npm registry at the version pinned in
# crates/sentio-web/ui/package-lock.json (with its integrity hash). Its built files are committed
# under crates/sentio-web/assets/vendor/ so that `cargo build` needs no npm and the binary serves
# them itself (the browser never fetches anything from the internet).
#
#   scripts/ui-vendor.sh          refresh the vendored files from the registry
#   scripts/ui-vendor.sh --check  fail if the vendored files differ from the pinned package
set -euo pipefail
cd "$(dirname "$0")/.."
ui=crates/sentio-web/ui
vendor=crates/sentio-web/assets/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$ui/package.json" "$ui/package-lock.json" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --silent)
dist="$work/node_modules/uplot"
files=("dist/uPlot.iife.min.js:uPlot.iife.min.js" "dist/uPlot.min.css:uPlot.min.css" "LICENSE:uPlot.LICENSE")
if [[ "${1:-}" == "--check" ]]; then
    for f in "${files[@]}"; do
        if ! cmp -s "$dist/${f%%:*}" "$vendor/${f##*:}"; then
            echo "ui-vendor: $vendor/${f##*:} differs from uplot@$(node -p "require('$dist/package.json').version") on npm; run scripts/ui-vendor.sh" >&2
            exit 1
        fi
    done
    echo "ui-vendor: vendored uPlot matches the pinned npm package" >&2
else
    for f in "${files[@]}"; do cp "$dist/${f%%:*}" "$vendor/${f##*:}"; done
    echo "ui-vendor: copied uplot@$(node -p "require('$dist/package.json').version") into $vendor" >&2
fi
