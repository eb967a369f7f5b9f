"""Batches from images held in memory (CIFAR, SVHN, digits, synthetic).

Small datasets fit in memory; batching them with numpy fancy indexing and augmenting whole
batches at once is far faster than tensorpack's per-image pipeline.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from tensorpack.dataflow import RNGDataFlow

BatchAugment = Callable[[np.ndarray, np.random.RandomState], np.ndarray]


class ArrayBatches(RNGDataFlow):
    """Yields ``[images NHWC, labels int32]`` batches from in-memory arrays (images float32 when
    a mean is subtracted, else in the arrays' own dtype).

    Training (``shuffle=True``): a new permutation each pass, full batches only, ``augment``
    applied to each batch. Validation: every image once in order, the last batch may be smaller.
    ``mean`` (the per-pixel training mean) is subtracted after augmentation.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool,
                 augment: BatchAugment | None = None, mean: np.ndarray | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if shuffle and len(images) < batch:
            raise ValueError(f"batch {batch} is larger than the {len(images)} training images")
        self.images, self.labels = images, labels.astype(np.int32)
        self.batch, self.shuffle, self.augment = int(batch), shuffle, augment
        self.mean = None if mean is None else mean.astype(np.float32)

    def __len__(self):
        n = len(self.images)
        return n // self.batch if self.shuffle else -(-n // self.batch)

    def __iter__(self):
        n = len(self.images)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch:(k + 1) * self.batch]
            if self.shuffle:
                idx = np.sort(idx)  # sequential reads from the (possibly memory-mapped) array
            x = self.images[idx]
            if self.augment is not None:
                x = self.augment(x, self.rng)
            if self.mean is not None:
                x = x.astype(np.float32) - self.mean
            yield [x, self.labels[idx]]
