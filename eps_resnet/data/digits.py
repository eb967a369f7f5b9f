"""The embedded offline dataset: scikit-learn's 8x8 handwritten digits, upscaled to 16x16x3.

scikit-learn ships the 1,797 images inside its package, so the demo needs no network. The split
is deterministic and stratified: within each class, every fifth image goes to validation.
"""
from __future__ import annotations

import numpy as np

SIZE = 16
VAL_EVERY = 5


def load():
    """{"train": (images, labels), "val": (images, labels)} with uint8 16 x 16 x 3 images."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = (digits.images * (255.0 / 16.0)).astype(np.float32)  # 0..16 -> 0..255
    big = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for im in small])
    images = np.repeat(np.clip(np.rint(big), 0, 255).astype(np.uint8)[..., None], 3, axis=3)
    labels = digits.target.astype(np.int32)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    val = rank % VAL_EVERY == 0
    return {"train": (images[~val], labels[~val]), "val": (images[val], labels[val])}


def prepare(dataset: str, out: str, source: str | None, md5=None, extra: bool = True):
    """The dataset registry's reader: scikit-learn ships the images, so there is no source."""
    from .files import DataError

    if source:
        raise DataError("--source is not used for digits (scikit-learn ships the images)")
    return load(), {"source": "sklearn.datasets.load_digits (shipped with scikit-learn)"}
