#!/usr/bin/env bash
# SKAB valve1 through the shipped pipeline, SKAB's per-run protocol: `sentio import` every file
# as a device of an 8-channel `skab` profile, then per file `sentio train` on its first 400 rows
# and `sentio evaluate --from --to` on the rest; prints each file's point metrics and the pooled
# ones (docs/quality.md, "SKAB through the shipped pipeline"). The data is read in place from
# ../shared/data/skab-dev (GPL-3.0 evaluation data, never copied into the project).
# Usage: scripts/skab-pipeline.sh [WORKDIR] (default: a new temporary directory). Settings from
# the environment: WINDOW (10), BOTTLENECK (4), THRESHOLD (percentile), PERCENTILE (99), and any
# SENTIO__SECTION__KEY.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
SKAB="${SKAB:-$REPO/../shared/data/skab-dev/valve1}"
[[ -d "$SKAB" ]] || { echo "skab-pipeline: no SKAB valve1 folder at $SKAB (set SKAB=...)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
cargo build --release --locked -p sentio
S="$CARGO_TARGET_DIR/release/sentio"
W="${1:-$(mktemp -d -t sentio-skab.XXXXXX)}"
mkdir -p "$W"; cd "$W"
# A fresh store and registry each run (the import refuses to store the same rows twice).
rm -rf data eval-*.json eval-*.err train-*.log
echo "skab-pipeline: work directory $W" >&2
cat > skab.toml <<TOML
[profiles.skab]
devices = ["skab-*"]
channels = [
  { name = "accelerometer1rms", unit = "" }, { name = "accelerometer2rms", unit = "" },
  { name = "current", unit = "" }, { name = "pressure", unit = "" },
  { name = "temperature", unit = "" }, { name = "thermocouple", unit = "" },
  { name = "voltage", unit = "" }, { name = "volume_flow_raterms", unit = "" },
]
[train]
window = ${WINDOW:-10}
stride = 1
hidden = 16
bottleneck = ${BOTTLENECK:-4}
epochs = 30
patience = 30
batch_size = 32
learning_rate = 0.005
cadence = "1s"
threshold = "${THRESHOLD:-percentile}"
percentile = ${PERCENTILE:-99}
[detect]
open_after = "0s"
cooldown = "0s"
TOML
export SENTIO_CONFIG=$PWD/skab.toml RUST_LOG=error
$S import --csv "$SKAB"/*.csv --device-prefix skab- --label-column anomaly > import.log 2>&1 || { cat import.log >&2; exit 1; }
for i in $(seq 0 15); do
  f="$SKAB/$i.csv"
  read t0 t400 tend < <(python3 - "$f" <<'PY'
import sys, datetime
rows=[l.split(';')[0] for l in open(sys.argv[1]).read().splitlines()[1:] if l.strip()]
fmt=lambda s: datetime.datetime.strptime(s,'%Y-%m-%d %H:%M:%S').strftime('%Y-%m-%dT%H:%M:%SZ')
end=datetime.datetime.strptime(rows[-1],'%Y-%m-%d %H:%M:%S')+datetime.timedelta(seconds=1)
print(fmt(rows[0]), fmt(rows[400]), end.strftime('%Y-%m-%dT%H:%M:%SZ'))
PY
)
  SENTIO__TRAIN__DEVICES="[\"skab-$i\"]" $S train --profile skab --from "$t0" --to "$t400" --promote > train-$i.log 2>&1 || { echo "train $i failed"; tail -3 train-$i.log; continue; }
  $S evaluate --from "$t400" --to "$tend" --device "skab-$i" --json > eval-$i.json 2> eval-$i.err || { echo "eval $i failed"; tail -3 eval-$i.err; continue; }
  python3 - "$i" eval-$i.json <<'PY'
import json,sys
p=json.load(open(sys.argv[2]))["points"]
print(sys.argv[1], {k:p[k] for k in ("f1","precision","recall","far_pct","mar_pct")}, {k:v for k,v in p.items() if k in ("tp","fp","tn","fn")})
PY
done
python3 - <<'PY'
import json, os
def pooled(name, files):
    t = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for i in files:
        if not os.path.exists(f"eval-{i}.json"):
            continue
        p = json.load(open(f"eval-{i}.json"))["points"]
        for k in t:
            t[k] += p.get(k, 0)
    tp, fp, tn, fn = t["tp"], t["fp"], t["tn"], t["fn"]
    prec = tp / max(tp + fp, 1); rec = tp / max(tp + fn, 1); f1 = 2 * prec * rec / max(prec + rec, 1e-12)
    print(f"pooled {name}: F1 {f1:.3f} precision {prec:.3f} recall {rec:.3f} "
          f"FAR {100 * fp / max(fp + tn, 1):.1f} % MAR {100 * fn / max(fn + tp, 1):.1f} % {t}")
pooled("all 16", range(16)); pooled("files 0-7", range(8)); pooled("files 8-15", range(8, 16))
PY
