#!/usr/bin/env python
"""Seconds to parse a large tensorpack log.log (an ImageNet run's size, 100 MB by default).

The log is generated in the original implementation's format: per epoch a header and the
metric lines of a ResNet-101 ε-ResNet (33 gated blocks), padded with the other lines a real log
carries (saver, hyper-parameter setter, inference), until the size is reached.

    python benchmarks/parse_log.py [--mb 100]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

from eps_resnet.results.parse import parse_run


def write_log(path: str, megabytes: float) -> int:
    blocks = [f"res{g}.{i}" for g, n in zip((1, 2, 3, 4), (3, 4, 23, 3)) for i in range(n)]
    target, epoch, size = megabytes * 1e6, 0, 0
    with open(path, "w") as f:
        while size < target:
            epoch += 1
            lines = [f"[0329 15:31:10 @base.py:173] Start Epoch {epoch} ...",
                     f"[0329 15:32:20 @base.py:183] Epoch {epoch} (global_step {5000 * epoch}) finished, "
                     "time:2870.15 sec.",
                     f"[0329 15:32:20 @saver.py:84] Model saved to train_log/model-{5000 * epoch}."]
            lines += [f"[0329 15:32:22 @inference_runner.py:97] InferenceRunner took {i} sec."
                      for i in range(200)]
            metrics = {"cost": 1.5, "discarded_cnt": 7.0, "discarded_ratio": 0.21, "epsilon": 2.0,
                       "learning_rate": 0.1, "train-error-top1": 0.31, "train-error-top5": 0.11,
                       "val-error-top1": 0.24, "val-error-top5": 0.07, "xentropy-loss": 1.2,
                       "l2_regularize_loss": 0.3}
            metrics.update({f"{b}/is_discarded": 0.0 for b in blocks})
            metrics.update({f"{b}/response_abs_max": 3.1 for b in blocks})
            lines += [f"[0329 15:32:22 @monitor.py:363] {k}: {v}" for k, v in metrics.items()]
            text = "\n".join(lines) + "\n"
            f.write(text)
            size += len(text)
    return epoch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "train_log.imagenet-e_2.0-d_101")
        os.makedirs(run)
        epochs = write_log(os.path.join(run, "log.log"), args.mb)
        mb = os.path.getsize(os.path.join(run, "log.log")) / 1e6
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = parse_run(run)
        took = time.perf_counter() - start
    print(f"parsed a {mb:.0f} MB log.log ({epochs} epochs, {len(df)} rows) in {took:.2f} s "
          f"({mb / took:.0f} MB/s); target: 100 MB in under 10 s")


if __name__ == "__main__":
    main()
