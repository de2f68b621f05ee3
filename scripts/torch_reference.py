#!/usr/bin/env python3
"""PyTorch reference for sentio-model's LSTM autoencoder.

Builds the reference module (the contract in docs/model.md), runs it on seeded inputs and writes
JSON with, per case: the spec, the weights (state_dict names, flattened row-major), the input
[B, T, F], the output, the MSE loss, every parameter's gradient, each window's mean squared error
(overall and per feature), and the losses and weights of a few Adam steps on the same batch.

    scripts/torch_reference.py --out crates/sentio-model/tests/fixtures/torch_reference.json
        regenerates the stored fixture (seed 0, the default sizes);
    scripts/torch_reference.py --seed 123 --out /tmp/ref.json --load w.safetensors
        starts from weights saved by Rust (loaded with strict=True) instead of torch's init;
    --save-dir DIR
        also writes each case's initial weights to DIR/case{i}.safetensors with safetensors.torch.

Run it with the venv of scripts/torch-env.sh.
"""

import argparse
import json

import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file, save_file


class LstmAutoencoder(nn.Module):
    def __init__(self, features, hidden, bottleneck):  # bottleneck 0 = none
        super().__init__()
        self.encoder = nn.LSTM(features, hidden, batch_first=True)
        self.bottleneck = nn.Linear(hidden, bottleneck) if bottleneck else None
        self.decoder = nn.LSTM(bottleneck or hidden, hidden, batch_first=True)
        self.output = nn.Linear(hidden, features)

    def forward(self, x):  # x: [B, T, F]
        _, (h, _) = self.encoder(x)  # zero initial state
        code = h[-1]  # [B, H]
        if self.bottleneck is not None:
            code = self.bottleneck(code)  # linear, no activation
        rep = code.unsqueeze(1).expand(-1, x.shape[1], -1)  # repeat over T steps
        y, _ = self.decoder(rep)  # zero initial state
        return self.output(y)  # [B, T, F]


def flat(t):
    """Row-major floats, each printed as the shortest decimal that round-trips as f32."""
    return [float(str(v)) for v in t.detach().to(torch.float32).contiguous().view(-1).numpy()]


def state(model):
    return {name: flat(p) for name, p in model.state_dict().items()}


def run_case(index, args, features, hidden, bottleneck, window, batch, max_grad_norm, load, save_dir):
    torch.manual_seed(args.seed * 1000 + index)
    model = LstmAutoencoder(features, hidden, bottleneck)
    if load:
        model.load_state_dict(load_file(load), strict=True)
    if save_dir:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{save_dir}/case{index}.safetensors")
    x = torch.randn(batch, window, features)
    initial = state(model)

    y = model(x)
    sq = (y - x) ** 2
    loss = sq.mean()
    model.zero_grad()
    loss.backward()
    grads = {name: flat(p.grad) for name, p in model.named_parameters()}

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=args.eps)
    adam_losses = []
    for _ in range(args.adam_steps):
        opt.zero_grad()
        step_loss = ((model(x) - x) ** 2).mean()
        step_loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        adam_losses.append(float(step_loss.detach()))

    return {
        "spec": {"features": features, "hidden": hidden, "bottleneck": bottleneck, "window": window},
        "batch": batch,
        "lr": args.lr,
        "eps": args.eps,
        "max_grad_norm": max_grad_norm,
        "params": initial,
        "input": flat(x),
        "output": flat(y),
        "loss": float(loss.detach()),
        "grads": grads,
        "per_window": flat(sq.mean(dim=(1, 2))),
        "per_feature": flat(sq.mean(dim=1)),
        "adam_losses": adam_losses,
        "params_after_adam": state(model),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--hidden", type=int, default=8)
    p.add_argument("--bottleneck", type=int, default=3, help="the first case's bottleneck; the second has none")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--adam-steps", type=int, default=3)
    p.add_argument("--eps", type=float, default=1e-8, help="Adam's eps (torch's default)")
    p.add_argument("--clip", type=float, default=0.05, help="max grad norm of the second case")
    p.add_argument("--only-bottleneck", action="store_true", help="run the first case only")
    p.add_argument("--load", help="safetensors weights for the first case (strict)")
    p.add_argument("--save-dir", help="write each case's initial weights here")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    torch.set_num_threads(1)
    cases = [(args.bottleneck, None, args.load)]
    if not args.only_bottleneck:
        cases.append((0, args.clip, None))
    result = {
        "torch_version": torch.__version__,
        "seed": args.seed,
        "cases": [
            run_case(i, args, args.features, args.hidden, z, args.window, args.batch, clip, load, args.save_dir)
            for i, (z, clip, load) in enumerate(cases)
        ],
    }
    with open(args.out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
