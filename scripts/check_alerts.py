#!/usr/bin/env python3
"""Checks a Sentio SQLite store (e.g. the demo's data/sentio.db) after detection: for every anomaly
kind the simulator injected, how many episodes an alert caught and how many of those alerts name
the episode's sensor as the top contributor. Standard library only.

Usage: check_alerts.py DB [--since RFC3339-or-ns] [--span-s 64]
Exits 1 when a kind that was injected has no alert naming its sensor."""
import json
import sqlite3
import sys
from collections import defaultdict
from datetime import datetime


def parse_since(text):
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def main():
    db = sys.argv[1]
    args = sys.argv[2:]
    since = parse_since(args[args.index("--since") + 1]) if "--since" in args else 0
    span = int(float(args[args.index("--span-s") + 1]) * 1e9) if "--span-s" in args else 64 * 10**9
    con = sqlite3.connect(db)
    episodes = []  # [device, kind, from, to]
    rows = con.execute(
        "SELECT device, injected, ts_ns FROM sensor_readings WHERE injected IS NOT NULL AND ts_ns >= ? "
        "ORDER BY device, injected, ts_ns", (since,))
    for device, kind, ts in rows:
        last = episodes[-1] if episodes else None
        if last and last[0] == device and last[1] == kind and ts - last[3] <= 2 * 10**9:
            last[3] = ts
        else:
            episodes.append([device, kind, ts, ts])
    alerts = [
        (device, start, end, json.loads(share))
        for device, start, end, share in con.execute(
            "SELECT device, window_start_ns, window_end_ns, sensor_share FROM anomalies "
            "WHERE window_end_ns >= ?", (since,))
    ]
    per_kind = defaultdict(lambda: [0, 0, 0])  # episodes, caught, named
    for device, kind, start, end in episodes:
        sensor = kind.split("_")[0]
        over = [a for a in alerts if a[0] == device and a[1] <= end + span and a[2] >= start]
        k = per_kind[kind]
        k[0] += 1
        k[1] += bool(over)
        k[2] += any(max(a[3], key=a[3].get) == sensor for a in over)
    print(f"{'kind':<18} {'episodes':>8} {'caught':>7} {'top sensor right':>17}")
    failed = False
    for kind in sorted(per_kind):
        n, caught, named = per_kind[kind]
        print(f"{kind:<18} {n:>8} {caught:>7} {named:>17}")
        failed |= named == 0
    print(f"{len(alerts)} alerts, {len(episodes)} injected episodes")
    sys.exit(1 if failed or not per_kind else 0)


if __name__ == "__main__":
    main()
