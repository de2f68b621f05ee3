#!/usr/bin/env python3
"""Loads a registered Sentio model the way a Python user would, through MLflow's python_function
flavour (which runs the ONNX graph in onnxruntime), and checks its reconstructions against the
ones Sentio's Rust engine computed for the same windows.

Usage: pyfunc_check.py MODEL_URI CASES.json [--tolerance 1e-4]

MODEL_URI is e.g. models:/sentio-lstm-ae@champion; the tracking server comes from
MLFLOW_TRACKING_URI. CASES.json holds {"windows": [B][T][F], "reconstruction": [B][T][F]}, both
in standardized units. Prints the largest absolute difference; exits non-zero when it reaches the
tolerance or when the model's signature does not take [-1, T, F] windows.
"""

import argparse
import json
import sys

import mlflow
import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_uri")
    parser.add_argument("cases")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    windows = np.asarray(cases["windows"], dtype=np.float32)
    expected = np.asarray(cases["reconstruction"], dtype=np.float64)

    model = mlflow.pyfunc.load_model(args.model_uri)
    inputs = model.metadata.get_input_schema().inputs
    shape = tuple(inputs[0].shape)
    if len(inputs) != 1 or shape != (-1,) + windows.shape[1:]:
        print(f"signature {inputs} does not take windows of shape {windows.shape}", file=sys.stderr)
        return 1
    flavors = sorted(model.metadata.flavors)
    out = model.predict(windows)
    got = np.asarray(out["reconstruction"] if isinstance(out, dict) else out, dtype=np.float64)
    if got.shape != expected.shape:
        print(f"reconstruction shape {got.shape}, expected {expected.shape}", file=sys.stderr)
        return 1
    diff = float(np.max(np.abs(got - expected)))
    print(f"{args.model_uri} (flavors {', '.join(flavors)}): {windows.shape[0]} windows, "
          f"largest difference from Rust {diff:.2e} (tolerance {args.tolerance:.0e})")
    return 0 if diff < args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
