#!/usr/bin/env python
"""Seconds to check a prepared CIFAR-sized folder against its prepared.yaml before training.

Writes 50,000 training and 10,000 validation images (uint8 32 x 32 x 3, random), their labels
and the per-pixel mean as `eps-resnet prepare` does, then times what train, evaluate and
compress do before their first step: the first check (sizes and MD5 of the five files a run
reads) and a later one, in a new process, that finds the files unchanged since (size and
modification time recorded in the folder's .verified.yaml). Names the CPU.

    python benchmarks/verify_prepared.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from eps_resnet.data.files import save_arrays, write_marker
from eps_resnet.tables import markdown_table
from eps_resnet.training.provenance import cpu

CHECK = """
import sys, time
from eps_resnet.data.dataflows import verified_data
from eps_resnet.training.settings import TrainSettings
s = TrainSettings(dataset="cifar10", data_dir=sys.argv[1], depth=110, variant="standard",
                  out=sys.argv[1] + "/run").resolved()
start = time.perf_counter()
files = verified_data(s)
print(f"{time.perf_counter() - start:.3f} {len(files)}")
"""


def check(folder: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", CHECK, folder], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as folder:
        for split, n in (("train", 50_000), ("val", 10_000)):
            save_arrays(folder, split, rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8),
                        rng.randint(0, 10, n))
        np.save(os.path.join(folder, "mean.npy"), np.zeros((32, 32, 3), np.float32))
        write_marker(folder, {"dataset": "cifar10", "images": {"train": 50_000, "val": 10_000}})
        megabytes = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)) / 1e6
        first, files = check(folder)
        later, _ = check(folder)
        time.sleep(0.01)
    print(f"CPU: {cpu()['model']}")
    print(f"CIFAR-sized prepared folder: {files} files read by a run, {megabytes:.0f} MB")
    print(markdown_table([["first (size + MD5 of every file)", f"{first:.2f}"],
                          ["later, files unchanged (size + mtime)", f"{later:.3f}"]],
                         ["check", "seconds"]), end="")


if __name__ == "__main__":
    main()
