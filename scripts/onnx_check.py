#!/usr/bin/env python3
"""Checks an exported ONNX autoencoder against a NumPy reference built from the same weights.

Usage: onnx_check.py MODEL.onnx WEIGHTS.safetensors [--batch N ...] [--tolerance TOL] [--seed S]

WEIGHTS.safetensors holds the PyTorch state_dict names and layouts (encoder.weight_ih_l0,
..., bottleneck.weight and bottleneck.bias when the model has a bottleneck, output.bias). The
sizes F, H and Z come from the tensor shapes and T from the model's input. The script

- runs onnx.checker.check_model (with full shape inference) and checks the input `window` and
  the output `reconstruction` are float[batch, T, F] with a symbolic batch;
- for each batch size, runs onnxruntime on random input and compares it with a float64 NumPy
  forward of the PyTorch module (no PyTorch needed), failing when the largest absolute
  difference reaches the tolerance (1e-5 by default).

Prints one line per batch size with the difference; exits non-zero with a message on failure.
"""

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

INPUT_NAME = "window"
OUTPUT_NAME = "reconstruction"


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm(x, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's nn.LSTM (one layer, batch_first, zero initial state) on x: [B, T, in].

    Gate rows are PyTorch's i, f, g, o. Returns (y: [B, T, H], h_last: [B, H]).
    """
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    ys = []
    for t in range(steps):
        gates = x[:, t, :] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), h


def reference(weights, x):
    """The LstmAutoencoder forward in float64."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    _, code = lstm(x, w["encoder.weight_ih_l0"], w["encoder.weight_hh_l0"],
                   w["encoder.bias_ih_l0"], w["encoder.bias_hh_l0"])
    if "bottleneck.weight" in w:
        code = code @ w["bottleneck.weight"].T + w["bottleneck.bias"]
    repeated = np.repeat(code[:, None, :], x.shape[1], axis=1)
    y, _ = lstm(repeated, w["decoder.weight_ih_l0"], w["decoder.weight_hh_l0"],
                w["decoder.bias_ih_l0"], w["decoder.bias_hh_l0"])
    return y @ w["output.weight"].T + w["output.bias"]


def dims(value_info):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


def check_signature(model, features):
    """Returns T after checking the input and output are float[batch, T, F]."""
    graph = model.graph
    if [i.name for i in graph.input] != [INPUT_NAME]:
        sys.exit(f"graph inputs are {[i.name for i in graph.input]}, want [{INPUT_NAME!r}]")
    if [o.name for o in graph.output] != [OUTPUT_NAME]:
        sys.exit(f"graph outputs are {[o.name for o in graph.output]}, want [{OUTPUT_NAME!r}]")
    shape = dims(graph.input[0])
    if len(shape) != 3 or not isinstance(shape[0], str) or shape[2] != features:
        sys.exit(f"input shape is {shape}, want [batch, T, {features}]")
    for info in (graph.input[0], graph.output[0]):
        if info.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            sys.exit(f"{info.name} is not float32")
    if dims(graph.output[0]) != shape:
        sys.exit(f"output shape is {dims(graph.output[0])}, want {shape}")
    return shape[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("weights")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    weights = load_file(args.weights)
    features = weights["encoder.weight_ih_l0"].shape[1]
    steps = check_signature(model, features)

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    for batch in args.batch:
        x = rng.standard_normal((batch, steps, features)).astype(np.float32)
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        want = reference(weights, x.astype(np.float64))
        if got.shape != want.shape:
            sys.exit(f"batch {batch}: onnxruntime gave shape {got.shape}, want {want.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want)))
        print(f"batch {batch}: max abs diff {diff:.3e}")
        if not diff < args.tolerance:
            sys.exit(f"batch {batch}: max abs diff {diff:.3e} is not below {args.tolerance:g}")
        worst = max(worst, diff)
    print(f"ok: {args.model} matches the NumPy reference (T={steps}, F={features}), "
          f"max abs diff {worst:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
