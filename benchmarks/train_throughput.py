#!/usr/bin/env python
"""Training throughput (images/second) of `standard` and `epsilon` ResNets on synthetic data.

Runs the real training path (`eps_resnet.training.train.train`: tensorpack trainer, QueueInput, the
session settings of a real run) for a few steps per configuration, in one process, alternating
the configurations over several rounds, and prints the median step throughput after warm-up and
the ratio epsilon / standard measured in the same run.

    python benchmarks/train_throughput.py                 # n = 5 and 18, batch 128
    python benchmarks/train_throughput.py --units 5 --steps 20 --rounds 1
    python benchmarks/train_throughput.py --determinism on off   # what TF's deterministic ops cost
    python benchmarks/train_throughput.py --precision fp32 mixed # bfloat16 (CPU) / float16 (GPU)
"""
from __future__ import annotations

import argparse
import os
import sys

import eps_resnet  # noqa: F401


def measure(variant: str, n: int, batch: int, steps: int, warmup: int, gpus: int | None,
            deterministic: bool = True, precision: str = "fp32") -> float:
    from eps_resnet.training.throughput import images_per_second

    return images_per_second(variant, 6 * n + 2, batch, steps, warmup, gpus,
                             precision=precision, deterministic=deterministic)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, nargs="+", default=[5, 18], help="n (depth 6n+2)")
    p.add_argument("--variants", nargs="+", default=["standard", "epsilon"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration and round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="alternating repetitions")
    p.add_argument("--gpus", type=int, default=None, help="default: all visible (0: CPU)")
    p.add_argument("--determinism", nargs="+", choices=["on", "off"], default=["on"],
                   help="TensorFlow's deterministic ops (training's default: on); both: the cost")
    p.add_argument("--precision", nargs="+", choices=["fp32", "mixed"], default=["fp32"],
                   help="arithmetic (mixed: bfloat16 on CPUs that have it, float16 on GPUs)")
    args = p.parse_args()
    if "mixed" in args.precision:
        # before the first measurement: mixed needs bfloat16 units on a CPU, or GPUs
        from eps_resnet.compat import visible_gpus
        from eps_resnet.training.devices import BF16_CPU_FLAGS, has_bfloat16
        from eps_resnet.training.provenance import cpu

        on_gpus = args.gpus != 0 and visible_gpus()
        if not on_gpus and not has_bfloat16(cpu()["flags"]):
            sys.exit(f"train_throughput.py: --precision mixed needs a CPU with "
                     f"{' or '.join(BF16_CPU_FLAGS)} or GPUs; this {cpu()['model']} has neither "
                     "(measure --precision fp32 here)")

    results: dict[tuple, list[float]] = {}
    configs = [(det, prec) for det in args.determinism for prec in args.precision]
    for r in range(args.rounds):
        for n in args.units:
            for det, prec in configs:
                for variant in args.variants:
                    ips = measure(variant, n, args.batch, args.steps, args.warmup, args.gpus,
                                  det == "on", prec)
                    results.setdefault((n, variant, det, prec), []).append(ips)
                    print(f"round {r + 1}: n={n:<3d} {variant:<9s} determinism {det:<3s} {prec:<5s} "
                          f"{ips:8.1f} img/s", file=sys.stderr)

    from eps_resnet.compat import visible_gpus

    device = f"{len(visible_gpus())} GPU(s), NCHW" if args.gpus != 0 and visible_gpus() else \
        f"CPU ({os.cpu_count()} cores), NHWC"
    from eps_resnet.tables import markdown_table
    from eps_resnet.training.provenance import cpu

    print(f"\nTraining throughput, batch {args.batch}, synthetic data, {device}, "
          f"{cpu()['model']}; median step after {args.warmup} warm-up steps, best of "
          f"{args.rounds} round(s)")
    both = {"standard", "epsilon"} <= set(args.variants)
    best = {k: max(v) for k, v in results.items()}
    rows = []
    for n in args.units:
        for det, prec in configs:
            rows.append([f"{6 * n + 2} ({n})", det, prec,
                         *(f"{best[(n, v, det, prec)]:.1f}" for v in args.variants)]
                        + ([f"{best[(n, 'epsilon', det, prec)] / best[(n, 'standard', det, prec)]:.3f}"]
                           if both else []))
    print(markdown_table(rows, ["depth (n)", "determinism", "precision",
                                *(f"{v} img/s" for v in args.variants)]
                         + (["epsilon / standard"] if both else [])), end="")
    for axis, (a, b), pick in (("determinism on / off", ("on", "off"), lambda x, p: (x, p)),
                               ("mixed / fp32", ("mixed", "fp32"), lambda x, d: (d, x))):
        values = args.determinism if axis.startswith("determinism") else args.precision
        other = args.precision if axis.startswith("determinism") else args.determinism
        if {a, b} <= set(values):
            rows = [[f"{6 * n + 2} ({n})", v,
                     f"{best[(n, v, *pick(a, o))] / best[(n, v, *pick(b, o))]:.3f}"]
                    for n in args.units for v in args.variants for o in other]
            print()
            print(markdown_table(rows, ["depth (n)", "variant", axis]), end="")


if __name__ == "__main__":
    main()
