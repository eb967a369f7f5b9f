"""Batches from images held in memory (CIFAR, SVHN, digits, synthetic).

Small datasets fit in memory; batching them with numpy fancy indexing and augmenting whole
batches at once is far faster than tensorpack's per-image pipeline.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .ordered import AUGMENTATION, pass_order, rng_for

BatchAugment = Callable[[np.ndarray, np.random.RandomState], np.ndarray]


class ArrayBatches:
    """A batch source (:mod:`.ordered`) of ``[images NHWC, labels int32]`` from in-memory arrays
    (images float32 when a mean is subtracted, else in the arrays' own dtype).

    Training (``shuffle=True``): a new permutation each pass, seeded by (seed, pass), full
    batches only, ``augment`` applied to each batch with an RNG seeded by (seed, batch index).
    Validation: every image once in order, the last batch may be smaller.
    ``mean`` (the per-pixel training mean) is subtracted after augmentation.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool,
                 augment: BatchAugment | None = None, mean: np.ndarray | None = None,
                 seed: int = 0):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if shuffle and len(images) < batch:
            raise ValueError(f"batch {batch} is larger than the {len(images)} training images")
        self.images, self.labels = images, labels.astype(np.int32)
        self.batch_size, self.shuffle, self.augment = int(batch), shuffle, augment
        self.mean = None if mean is None else mean.astype(np.float32)
        self.seed = seed

    def __len__(self):
        n = len(self.images)
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def batch(self, k: int) -> list:
        if self.shuffle:
            # sorted: sequential reads from the (possibly memory-mapped) array
            idx = np.sort(pass_order(self.seed, len(self.images), self.batch_size, k))
        else:
            j = k % len(self)
            idx = np.arange(j * self.batch_size, min((j + 1) * self.batch_size, len(self.images)))
        x = self.images[idx]
        if self.augment is not None:
            x = self.augment(x, rng_for(self.seed, AUGMENTATION, k))
        if self.mean is not None:
            x = x.astype(np.float32) - self.mean
        return [x, self.labels[idx]]
