#!/usr/bin/env bash
# SKAB valve1 through the shipped pipeline, SKAB's per-run protocol: `sentio import` every file
# as a device of an 8-channel `skab` profile, then per file `sentio train` on its first 400 rows
# and `sentio evaluate --from --to` on the rest; prints each file's point metrics and the pooled
# ones (docs/quality.md, "SKAB through the shipped pipeline"). The data is read in place from
# ../shared/data/skab-dev (GPL-3.0 evaluation data, never copied into the project).
# Usage: scripts/skab-pipeline.sh [WORKDIR] (default: a new temporary directory). The settings are
# examples/skab.toml's; override any with SENTIO__SECTION__KEY (e.g. SENTIO__TRAIN__SMOOTH=20).
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
rm -rf data eval-*.json eval-*.err train-*.log detect-*.log
echo "skab-pipeline: work directory $W" >&2
cp "$REPO/examples/skab.toml" skab.toml
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
  # The detector's replay of the rest (alerts and scores into the store, for the dashboard)...
  $S detect --from "$t400" --to "$tend" --device "skab-$i" > detect-$i.log 2>&1 || { echo "detect $i failed"; tail -3 detect-$i.log; continue; }
  # ...and its quality against the imported labels.
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
# The same files through `sentio evaluate --csv` (import, train and replay on a scratch stack):
# the same numbers, file by file, since it is the same code.
$S evaluate --profile skab --json --csv "$SKAB" > eval-csv.json 2> eval-csv.err || { tail -5 eval-csv.err; exit 1; }
python3 - <<'PY'
import json, os
csv = json.load(open("eval-csv.json"))
keys = ("tp", "fp", "tn", "fn")
by_device = {f["device"]: f for f in csv["files"]}
same = True
for i in range(16):
    if not os.path.exists(f"eval-{i}.json"):
        continue
    mine = json.load(open(f"eval-{i}.json"))
    theirs = by_device[f"skab-{i}"]
    a = [mine["points"][k] for k in keys]; b = [theirs["scores"][k] for k in keys]
    if a != b or mine["threshold"] != theirs["threshold"]:
        same = False
        print(f"skab-{i}: by hand {a} threshold {mine['threshold']}, evaluate --csv {b} threshold {theirs['threshold']}")
p = csv["pooled"]
print(f"evaluate --csv pooled: F1 {p['f1']:.3f} precision {p['precision']:.3f} recall {p['recall']:.3f} "
      f"FAR {p['far_pct']:.1f} % MAR {p['mar_pct']:.1f} %")
print("evaluate --csv matches the steps by hand: " + ("yes, every file" if same else "NO"))
raise SystemExit(0 if same else 1)
PY
