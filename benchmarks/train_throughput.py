#!/usr/bin/env python
"""Training throughput (images/second) of `standard` and `epsilon` ResNets on synthetic data.

Runs the real training path (`eps_resnet.train.train`: tensorpack trainer, QueueInput, the
session settings of a real run) for a few steps per configuration, in one process, alternating
the configurations over several rounds, and prints the median step throughput after warm-up and
the ratio epsilon / standard measured in the same run.

    python benchmarks/train_throughput.py                 # n = 5 and 18, batch 128
    python benchmarks/train_throughput.py --units 5 --steps 20 --rounds 1
    python benchmarks/train_throughput.py --determinism on off   # what TF's deterministic ops cost
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import eps_resnet  # noqa: F401


def measure(variant: str, n: int, batch: int, steps: int, warmup: int, gpus: int | None,
            deterministic: bool = True) -> float:
    from tensorpack.callbacks import Callback
    from tensorpack.utils import logger

    from eps_resnet.settings import TrainSettings
    from eps_resnet.train import train

    class StepTimer(Callback):
        def __init__(self):
            self.times = []

        def _trigger_step(self):
            self.times.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        settings = TrainSettings(
            dataset="synthetic", depth=6 * n + 2, variant=variant,
            epsilon=2.5 if variant == "epsilon" else None, epochs=1,
            steps_per_epoch=warmup + steps, batch=batch, gpus=gpus, out=os.path.join(out, "run"),
            deterministic=deterministic)
        logger.setLevel("WARNING")
        train(settings, log=lambda *a: None, extra_callbacks=[timer])
    gaps = [b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:])]
    return batch / statistics.median(gaps)


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
    args = p.parse_args()

    results: dict[tuple, list[float]] = {}
    for r in range(args.rounds):
        for n in args.units:
            for det in args.determinism:
                for variant in args.variants:
                    ips = measure(variant, n, args.batch, args.steps, args.warmup, args.gpus,
                                  det == "on")
                    results.setdefault((n, variant, det), []).append(ips)
                    print(f"round {r + 1}: n={n:<3d} {variant:<9s} determinism {det:<3s} "
                          f"{ips:8.1f} img/s", file=sys.stderr)

    from eps_resnet.compat import visible_gpus

    device = f"{len(visible_gpus())} GPU(s), NCHW" if args.gpus != 0 and visible_gpus() else \
        f"CPU ({os.cpu_count()} cores), NHWC"
    from eps_resnet.provenance import cpu

    print(f"\nTraining throughput, batch {args.batch}, synthetic data, {device}, "
          f"{cpu()['model']}; median step after {args.warmup} warm-up steps, best of "
          f"{args.rounds} round(s)")
    both = {"standard", "epsilon"} <= set(args.variants)
    print("| depth (n) | determinism | " + " | ".join(f"{v} img/s" for v in args.variants) +
          (" | epsilon / standard |" if both else " |"))
    print("|---" * (len(args.variants) + 2 + both) + "|")
    for n in args.units:
        for det in args.determinism:
            best = {v: max(results[(n, v, det)]) for v in args.variants}
            row = f"| {6 * n + 2} ({n}) | {det} | " + " | ".join(f"{best[v]:.1f}" for v in args.variants)
            if both:
                row += f" | {best['epsilon'] / best['standard']:.3f}"
            print(row + " |")
    if set(args.determinism) == {"on", "off"}:
        print("\n| depth (n) | variant | determinism on / off |\n|---|---|---|")
        for n in args.units:
            for v in args.variants:
                ratio = max(results[(n, v, "on")]) / max(results[(n, v, "off")])
                print(f"| {6 * n + 2} ({n}) | {v} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
