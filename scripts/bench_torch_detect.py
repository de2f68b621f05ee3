#!/usr/bin/env python3
"""PyTorch's side of `sentio bench detect`: scores the same raw windows with the same weights as
Sentio's detection path (crates/sentio/src/commands/bench_detect.rs), so the windows/s compare.

    scripts/bench_torch_detect.py --weights W.safetensors --windows RAW.f64 --count N \\
        --mean m0,m1,m2,m3 --std s0,s1,s2,s3 [--threads N] [--steps S] [--scores-out OUT.f64]

RAW.f64 holds N windows of T frames of F raw sensor values, little-endian float64, row-major
[N, T, F], exactly the frames Sentio scores. The model is torch_reference.LstmAutoencoder (the
spec from --features/--hidden/--bottleneck, default the detector's F=4, H=64, Z=16), its weights
loaded from the safetensors file Sentio wrote (strict=True). Each scoring call takes a batch of
--batch windows (default 1024, detect.batch_windows) and does what Sentio's
`Scorer::score_windows` does with them: standardize with the card's scaler ((x - mean) / std in
float64, then float32), reconstruct under torch.no_grad(), and reduce the squared error to each
window's mean (the score) and each sensor's mean.

With --scores-out, first scores all N windows once and writes, per window, the score and the four
per-sensor errors as little-endian float64 [N, 1 + F] (the Rust side checks them against its own).
Then W untimed calls (--warmup) and S timed calls (--steps), cycling over the batches, and one
JSON line:

    {"windows_per_s": ..., "windows_per_cpu_s": ..., "threads": N, "steps": S, "batch": B,
     "torch_version": "..."}

windows_per_cpu_s divides by the process's CPU time over the same span. Run it with the venv of
scripts/torch-env.sh.
"""

import argparse
import json
import time

import numpy as np
import torch
from safetensors.torch import load_file

from torch_reference import LstmAutoencoder


def floats(text):
    return [float(v) for v in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--windows", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--mean", type=floats, required=True)
    p.add_argument("--std", type=floats, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--bottleneck", type=int, default=16)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--scores-out")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    model = LstmAutoencoder(args.features, args.hidden, args.bottleneck)
    model.load_state_dict(load_file(args.weights), strict=True)
    model.eval()

    raw = np.fromfile(args.windows, dtype="<f8")
    raw = torch.from_numpy(raw.reshape(args.count, args.window, args.features))
    mean = torch.tensor(args.mean, dtype=torch.float64)
    std = torch.tensor(args.std, dtype=torch.float64)
    batches = [raw[i:i + args.batch] for i in range(0, args.count, args.batch)]

    def score(frames):
        x = ((frames - mean) / std).to(torch.float32)
        sq = (model(x) - x) ** 2
        per_sensor = sq.mean(dim=1)  # [B, F]
        return per_sensor.mean(dim=1), per_sensor  # the window's score, each sensor's error

    with torch.no_grad():
        if args.scores_out:
            rows = []
            for b in batches:
                s, per_sensor = score(b)
                rows.append(torch.cat([s.unsqueeze(1), per_sensor], dim=1).to(torch.float64))
            torch.cat(rows).numpy().astype("<f8").tofile(args.scores_out)
        for i in range(args.warmup):
            score(batches[i % len(batches)])
        windows = 0
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(args.steps):
            b = batches[i % len(batches)]
            score(b)
            windows += b.shape[0]
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu

    print(json.dumps({
        "windows_per_s": windows / wall,
        "windows_per_cpu_s": windows / cpu if cpu > 0 else None,
        "threads": args.threads,
        "steps": args.steps,
        "batch": args.batch,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
