#!/usr/bin/env python
"""What the portable CPU kernels cost: training throughput with ``--cpu-kernels portable`` (the
default: the same numbers on every x86-64 CPU kind) against ``native`` (TensorFlow's choice for
this CPU), measured in one run on this machine and printed with the CPU's name.

Each kind runs in a process of its own (a process decides its kernels before TensorFlow starts),
through the real training path (eps_resnet.training.throughput); the kinds alternate over the
rounds and the best round of each counts.

    python benchmarks/cpu_kernels.py                    # ResNet-32 (n = 5), batch 128
    python benchmarks/cpu_kernels.py --units 3 --batch 32 --steps 10 --rounds 1
"""
from __future__ import annotations

import argparse
import os
import sys

KINDS = ("portable", "native")


def measure(kind: str, args) -> float:
    from eps_resnet.training.throughput import in_own_process

    try:
        return in_own_process(dict(variant=args.variant, depth=6 * args.units + 2,
                                   batch=args.batch, steps=args.steps, warmup=args.warmup,
                                   gpus=0, cpu_kernels=kind))
    except RuntimeError as e:
        sys.exit(f"cpu_kernels.py: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=5, help="n (depth 6n+2), default %(default)s")
    p.add_argument("--variant", default="epsilon", choices=["standard", "side", "epsilon"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per kind and round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    best = {k: 0.0 for k in KINDS}
    for r in range(args.rounds):
        for kind in KINDS:
            ips = measure(kind, args)
            best[kind] = max(best[kind], ips)
            print(f"round {r + 1}: {kind:<8s} {ips:8.1f} img/s", file=sys.stderr)

    from eps_resnet.training.provenance import cpu

    info = cpu()
    print(f"\nCPU kernels, ResNet-{6 * args.units + 2} {args.variant}, batch {args.batch}, synthetic "
          f"data, CPU ({os.cpu_count()} cores) {info['model']} [{' '.join(info['flags'])}]; "
          f"median step after {args.warmup} warm-up steps, best of {args.rounds} round(s)")
    print("| portable img/s | native img/s | portable / native |\n|---|---|---|")
    print(f"| {best['portable']:.1f} | {best['native']:.1f} | "
          f"{best['portable'] / best['native']:.3f} |")


if __name__ == "__main__":
    main()
