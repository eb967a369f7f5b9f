"""Procedurally generated images: no files, any size and number of classes.

Each class has a fixed random prototype image; a sample is its prototype plus noise, so the task
is learnable (training error falls) and tests and benchmarks need no dataset on disk.
"""
from __future__ import annotations

import numpy as np

from . import DATASETS
from .arrays import ArrayBatches

TRAIN_IMAGES = DATASETS["synthetic"].train_images
VAL_IMAGES = DATASETS["synthetic"].val_images
MAX_FLOATS = 2 ** 26  # 256 MB per split: at 224 px the pool holds ~400 images


def make_images(n: int, image_size: int, classes: int, seed: int):
    """``n`` float32 images in roughly [-128, 128] and their int32 labels."""
    protos = np.random.RandomState(1234).uniform(
        -80, 80, (classes, image_size, image_size, 3)).astype(np.float32)
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, classes, n).astype(np.int32)
    noise = rng.normal(0, 40, (n, image_size, image_size, 3)).astype(np.float32)
    return protos[labels] + noise, labels


def source(split: str, batch: int, image_size: int, classes: int, seed: int = 0,
           uint8: bool = False) -> ArrayBatches:
    """Batches of generated images; ``uint8``: RGB in [0, 255] as ImageNet-family models take."""
    train = split == "train"
    n = min(TRAIN_IMAGES if train else VAL_IMAGES, MAX_FLOATS // (3 * image_size ** 2))
    images, labels = make_images(max(n, batch), image_size, classes, seed + (0 if train else 1))
    if uint8:
        images = np.clip(images + 128, 0, 255).astype(np.uint8)
    return ArrayBatches(images, labels, batch, shuffle=train, seed=seed)
