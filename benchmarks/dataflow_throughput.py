#!/usr/bin/env python
"""Images/second of the training dataflows: CIFAR and SVHN (augmentation, batching, multi-process
prefetch, exactly as `eps-resnet train` builds it; SVHN with the original's Gaussian
deformation) and ImageNet (JPEG decoding, crop, colour and lighting noise, flip, batching, in
worker processes).

The data are generated in the real on-disk formats: prepared datasets of CIFAR-10's size
(50,000 training images) and JPEGs of typical ImageNet size (500 x 375).

    python benchmarks/dataflow_throughput.py [--workers N] [--seconds S]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import eps_resnet  # noqa: F401
from eps_resnet.data.dataflows import get_dataflow
from eps_resnet.data.files import save_arrays, write_marker
from eps_resnet.training.settings import TrainSettings, default_data_workers


def rate(df, batch: int, seconds: float, warmup: int = 5) -> float:
    df.reset_state()

    def forever():  # as tensorpack's QueueInput does: start a new pass when one ends
        while True:
            yield from df
    it = forever()
    for _ in range(warmup):
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch
    return n / (time.perf_counter() - start)


def memory_like(folder: str, dataset: str) -> None:
    """A prepared in-memory dataset of 50,000 training images (SVHN's as train + extra)."""
    rng = np.random.RandomState(0)
    for split, n in (("train", 50000), ("val", 10000)):
        save_arrays(folder, split, rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8),
                    rng.randint(0, 10, n))
    np.save(os.path.join(folder, "mean.npy"), np.full((32, 32, 3), 120, np.float32))
    parts = {"parts": {"train": 10000, "extra": 40000}} if dataset == "svhn" else {}
    write_marker(folder, {"dataset": dataset, "images": {"train": 50000, "val": 10000}, **parts})


def imagenet_like(folder: str, n: int = 256) -> None:
    import cv2

    rng = np.random.RandomState(0)
    root = os.path.join(folder, "ilsvrc")
    items = []
    for i in range(n):
        wnid = f"n{i % 4:08d}"
        os.makedirs(os.path.join(root, "train", wnid), exist_ok=True)
        # smooth noise compresses like a photo (~100 KB), unlike white noise
        small = rng.randint(0, 256, (48, 64, 3)).astype(np.uint8)
        img = cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.randint(-20, 20, img.shape), 0, 255).astype(np.uint8)
        rel = f"train/{wnid}/{wnid}_{i}.JPEG"
        cv2.imwrite(os.path.join(root, rel), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        items.append(f"{rel} {i % 4}\n")
    with open(os.path.join(folder, "train.txt"), "w") as f:
        f.writelines(items)
    write_marker(folder, {"dataset": "imagenet", "source": root, "lmdb": False,
                          "images": {"train": n}})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=default_data_workers(),
                   help="dataflow processes (default: as `eps-resnet train`)")
    p.add_argument("--seconds", type=float, default=20)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        small = {}
        for dataset in ("cifar10", "svhn"):
            os.makedirs(os.path.join(tmp, dataset))
            memory_like(os.path.join(tmp, dataset), dataset)
            s = TrainSettings(dataset=dataset, depth=110, variant="standard", out=tmp,
                              data_dir=os.path.join(tmp, dataset),
                              data_workers=args.workers).resolved()
            small[dataset] = rate(get_dataflow(s, "train", 128), 128, args.seconds)
        cifar, svhn = small["cifar10"], small["svhn"]
        os.makedirs(os.path.join(tmp, "imagenet"))
        imagenet_like(os.path.join(tmp, "imagenet"))
        s = TrainSettings(dataset="imagenet", depth=50, variant="standard", out=tmp,
                          data_dir=os.path.join(tmp, "imagenet"), data_workers=args.workers).resolved()
        imnet = rate(get_dataflow(s, "train", 64), 64, args.seconds)
    print(f"\nDataflow throughput on {cores} cores, {args.workers} worker process(es)")
    print("| pipeline | img/s | img/s per worker |")
    print("|---|---|---|")
    print(f"| CIFAR train (pad-crop-flip, mean, batch 128) | {cifar:.0f} | {cifar / args.workers:.0f} |")
    print(f"| SVHN train (pad, brightness, contrast, Gaussian deformation, crop, mean, batch 128) | "
          f"{svhn:.0f} | {svhn / args.workers:.0f} |")
    print(f"| ImageNet train (decode 500x375 JPEG, crop 224, colour, lighting, flip, batch 64) | "
          f"{imnet:.0f} | {imnet / args.workers:.0f} |")


if __name__ == "__main__":
    main()
