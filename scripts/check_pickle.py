#!/usr/bin/env python3
"""Checks that a raw archive pickle loads in pandas exactly as Sentio wrote it.

Usage: check_pickle.py FILE.pickle EXPECTED.json

EXPECTED.json holds the same columns as JSON lists ({"device": [...], "ts_ns": [...], ...}).
The pickle must load with `pandas.DataFrame(pickle.load(f))`, have the documented dtypes, give
UTC datetimes with `pandas.to_datetime(df.ts_ns, unit="ns", utc=True)`, and hold every expected
value exactly (floats bit for bit). Exits non-zero with a message naming each difference.
"""

import json
import math
import pickle
import struct
import sys

import pandas as pd

# Column -> the pandas dtype it must load as.
DTYPES = {
    "device": "object",
    "sensor": "object",
    "ts_ns": "int64",
    "value": "float64",
    "seq": "int64",
    "injected": "object",
    "unit": "object",
}
MAX_REPORTED = 20


def same_float(a, b):
    # Bit-for-bit: tells 0.0 from -0.0 and catches any rounding.
    return struct.pack("<d", a) == struct.pack("<d", b)


def same_value(column, got, want):
    if want is None:
        return got is None
    if column == "value":
        return isinstance(got, float) and same_float(got, float(want))
    if isinstance(want, int):
        return not isinstance(got, (bool, float, str)) and int(got) == want
    return isinstance(got, str) and got == want


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} FILE.pickle EXPECTED.json", file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as f:
        expected = json.load(f)
    with open(argv[1], "rb") as f:
        raw = pickle.load(f)
    if not isinstance(raw, dict):
        return fail([f"the pickle holds a {type(raw).__name__}, not a dict of columns"])
    df = pd.DataFrame(raw)

    errors = []
    if sorted(df.columns) != sorted(expected):
        errors.append(f"columns {sorted(df.columns)} != expected {sorted(expected)}")
    rows = len(expected["device"])
    if len(df) != rows:
        errors.append(f"{len(df)} rows, expected {rows}")
    for column, dtype in DTYPES.items():
        if column in df.columns and str(df[column].dtype) != dtype:
            errors.append(f"column {column} has dtype {df[column].dtype}, expected {dtype}")
    if errors:
        return fail(errors)

    ts = pd.to_datetime(df.ts_ns, unit="ns", utc=True)
    if str(ts.dt.tz) != "UTC":
        errors.append(f"to_datetime gave time zone {ts.dt.tz}, expected UTC")
    back = ts.dt.tz_localize(None).to_numpy().astype("int64")
    for row, (got, want) in enumerate(zip(back, expected["ts_ns"])):
        if int(got) != want:
            errors.append(f"row {row}: to_datetime(ts_ns) is {ts.iloc[row]} = {got} ns, expected {want}")

    for column, values in expected.items():
        for row, want in enumerate(values):
            got = df[column].iloc[row]
            if isinstance(got, float) and math.isnan(got) and want is None:
                errors.append(f"row {row} column {column}: None became NaN")
            elif not same_value(column, got, want):
                errors.append(f"row {row} column {column}: got {got!r} ({type(got).__name__}), expected {want!r}")
    if errors:
        return fail(errors)
    print(f"ok: {rows} rows, {len(df.columns)} columns match (pandas {pd.__version__})")
    return 0


def fail(errors):
    print(f"check_pickle: {len(errors)} problem(s):", file=sys.stderr)
    for e in errors[:MAX_REPORTED]:
        print(f"  {e}", file=sys.stderr)
    if len(errors) > MAX_REPORTED:
        print(f"  ... and {len(errors) - MAX_REPORTED} more", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
