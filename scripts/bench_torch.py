#!/usr/bin/env python3
"""PyTorch's side of `sentio bench train`: the same model, data shape and step counts as
sentio_model::bench (crates/sentio-model/src/bench.rs).

    scripts/bench_torch.py [--threads N] [--steps S] [--warmup W] [--bottleneck Z]

Trains S Adam steps (lr 1e-3) on a batch of 64 windows of T=64 steps and F=4 features (H=64),
then reconstructs S batches of 256 windows under torch.no_grad(); W untimed iterations of each
come first. Prints one JSON line:

    {"train_windows_per_s": ..., "infer_windows_per_s": ..., "train_windows_per_cpu_s": ...,
     "infer_windows_per_cpu_s": ..., "threads": N, "steps": S, "torch_version": "...",
     "last_loss": ...}

*_per_s are wall-clock rates; *_per_cpu_s divide by the process's CPU time over the same span
(steadier on a busy machine, and the fair 1-thread comparison).

Run it with the venv of scripts/torch-env.sh.
"""

import argparse
import json
import math
import time

import torch

from torch_reference import LstmAutoencoder


def synthetic_windows(windows, window, features, gen):
    """Sines with random frequency and phase per window and feature, plus noise in ±0.05."""
    omega = 0.05 + 0.3 * torch.rand(windows, 1, features, generator=gen)
    phi = 2 * math.pi * torch.rand(windows, 1, features, generator=gen)
    t = torch.arange(window, dtype=torch.float32).view(1, window, 1)
    return torch.sin(omega * t + phi) + 0.1 * (torch.rand(windows, window, features, generator=gen) - 0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--bottleneck", type=int, default=0)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--infer-batch", type=int, default=256)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    model = LstmAutoencoder(args.features, args.hidden, args.bottleneck)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = synthetic_windows(args.batch, args.window, args.features, gen)
    infer = synthetic_windows(args.infer_batch, args.window, args.features, gen)

    def step():
        opt.zero_grad()
        loss = ((model(train) - train) ** 2).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        last_loss = step()
    train_s = time.perf_counter() - start
    train_cpu = time.process_time() - cpu

    with torch.no_grad():
        for _ in range(args.warmup):
            model(infer)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            model(infer)
        infer_s = time.perf_counter() - start
        infer_cpu = time.process_time() - cpu

    print(json.dumps({
        "train_windows_per_s": args.steps * args.batch / train_s,
        "infer_windows_per_s": args.steps * args.infer_batch / infer_s,
        "train_windows_per_cpu_s": args.steps * args.batch / train_cpu,
        "infer_windows_per_cpu_s": args.steps * args.infer_batch / infer_cpu,
        "threads": args.threads,
        "steps": args.steps,
        "torch_version": torch.__version__,
        "last_loss": last_loss,
    }))


if __name__ == "__main__":
    main()
