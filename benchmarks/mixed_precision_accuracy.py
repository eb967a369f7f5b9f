#!/usr/bin/env python
"""Does mixed precision change the results? The demo's CIFAR-family runs (digits, ResNet-14,
standard and ε) over several seeds, trained in fp32 and with --precision mixed, compared on the
final validation error and on which blocks the ε runs discard.

    python benchmarks/mixed_precision_accuracy.py                   # seeds 1 2 3, ε 10
    python benchmarks/mixed_precision_accuracy.py --seeds 1 --epochs 4

Needs a CPU with bfloat16 units (avx512_bf16 or amx_bf16) or a GPU for the mixed runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import eps_resnet  # noqa: F401
from eps_resnet.models.gate import DISCARDED_AT
from eps_resnet.tables import markdown_table


def final(run: str) -> tuple[float, list[str]]:
    """(final val error in %, blocks discarded at the last epoch) of a run folder."""
    with open(os.path.join(run, "stats.json")) as f:
        last = [s for s in json.load(f) if "val_error" in s][-1]
    blocks = sorted(k.split("/")[0] for k, v in last.items()
                    if k.endswith("/is_discarded") and v >= DISCARDED_AT)
    return 100 * last["val_error"], blocks


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epsilon", type=float, default=10.0)
    p.add_argument("--epochs", type=int, default=12, help="the demo's")
    p.add_argument("--depth", type=int, default=14)
    p.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    args = p.parse_args()

    from eps_resnet.cli import main as cli

    root = args.out or tempfile.mkdtemp(prefix="mixed-accuracy-")
    data = os.path.join(root, "digits")
    cli(["prepare", "digits", "--out", data])
    results = {}
    for seed in args.seeds:
        for precision in ("fp32", "mixed"):
            for variant in ("standard", "epsilon"):
                name = f"{variant}-{precision}-s{seed}"
                flags = ["--variant", variant] + (["--epsilon", str(args.epsilon)]
                                                  if variant == "epsilon" else [])
                # native CPU kernels for both, so that only the precision differs; each run in
                # a process of its own (a process runs one kind of kernels)
                rc = subprocess.run([
                    sys.executable, "-m", "eps_resnet.cli", "train", "--dataset", "digits",
                    "--data-dir", data, "--depth", str(args.depth), "--batch", "64",
                    "--epochs", str(args.epochs), "--seed", str(seed), "--precision", precision,
                    "--cpu-kernels", "native", *flags,
                    "--out", os.path.join(root, name)]).returncode
                if rc:
                    sys.exit(rc)
                results[(variant, precision, seed)] = final(os.path.join(root, name))
                print(f"{name}: {results[(variant, precision, seed)]}", file=sys.stderr)

    print(f"\nDigits, CIFAR-family ResNet-{args.depth}, {args.epochs} epochs, batch 64; final "
          f"validation error (%) per seed; ε = {args.epsilon:g}")
    rows = []
    for variant in ("standard", "epsilon"):
        for precision in ("fp32", "mixed"):
            errs = [results[(variant, precision, s)][0] for s in args.seeds]
            rows.append([variant, precision, *(f"{e:.2f}" for e in errs),
                         f"{statistics.mean(errs):.2f}"])
    print(markdown_table(rows, ["variant", "precision", *(f"seed {s}" for s in args.seeds),
                                "mean"]))
    rows, same = [], 0
    for s in args.seeds:
        a, b = results[("epsilon", "fp32", s)][1], results[("epsilon", "mixed", s)][1]
        same += a == b
        rows.append([s, ", ".join(a) or "-", ", ".join(b) or "-", "yes" if a == b else "no"])
    print(markdown_table(rows, ["seed", "ε blocks discarded, fp32", "mixed", "same"]), end="")
    for variant in ("standard", "epsilon"):
        gap = statistics.mean(results[(variant, "mixed", s)][0] - results[(variant, "fp32", s)][0]
                              for s in args.seeds)
        print(f"\n{variant}: mean error, mixed minus fp32: {gap:+.2f} points")
    print(f"same blocks discarded in {same} of {len(args.seeds)} seeds; run folders in {root}")


if __name__ == "__main__":
    main()
