#!/usr/bin/env python
"""What the portable CPU kernels cost: training throughput with ``--cpu-kernels portable`` (the
same numbers on every x86-64 CPU kind: oneDNN's kernels held to AVX2) against ``native``
(TensorFlow's choice for this CPU), measured in one run on this machine and printed with the
CPU's name; ``--with-eigen`` adds the portable path before oneDNN's (TensorFlow's Eigen
kernels, oneDNN's rewrites off, its matrix products held to AVX2), which computes other bits on
Intel than on AMD CPUs (README, "Across CPU kinds") and is measured only to weigh it.

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

#: name: (the kind a process asks for, the environment it adds to the user's)
KINDS = {"portable": ("portable", {}), "native": ("native", {}),
         "eigen": ("native", {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"})}


def measure(name: str, args) -> float:
    from eps_resnet.training.throughput import in_own_process

    kind, env = KINDS[name]
    try:
        return in_own_process(dict(variant=args.variant, depth=6 * args.units + 2,
                                   batch=args.batch, steps=args.steps, warmup=args.warmup,
                                   gpus=0, cpu_kernels=kind), env)
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
    p.add_argument("--with-eigen", action="store_true",
                   help="also the former portable path on TensorFlow's Eigen kernels")
    args = p.parse_args()

    names = ["portable", "native"] + (["eigen"] if args.with_eigen else [])
    best = {k: 0.0 for k in names}
    for r in range(args.rounds):
        for name in names:
            ips = measure(name, args)
            best[name] = max(best[name], ips)
            print(f"round {r + 1}: {name:<8s} {ips:8.1f} img/s", file=sys.stderr)

    from eps_resnet.tables import markdown_table
    from eps_resnet.training.provenance import cpu

    info = cpu()
    print(f"\nCPU kernels, ResNet-{6 * args.units + 2} {args.variant}, batch {args.batch}, synthetic "
          f"data, CPU ({os.cpu_count()} cores) {info['model']} [{' '.join(info['flags'])}]; "
          f"median step after {args.warmup} warm-up steps, best of {args.rounds} round(s)")
    headers = ["portable img/s", "native img/s", "portable / native"]
    row = [f"{best['portable']:.1f}", f"{best['native']:.1f}", f"{best['portable'] / best['native']:.3f}"]
    if args.with_eigen:
        headers += ["Eigen img/s", "Eigen / native"]
        row += [f"{best['eigen']:.1f}", f"{best['eigen'] / best['native']:.3f}"]
    print(markdown_table([row], headers), end="")


if __name__ == "__main__":
    main()
