"""Batch-wise augmentation of in-memory images (CIFAR, SVHN, digits), vectorised with numpy.

Each function takes a uint8 or float32 batch N x H x W x C and a RandomState and returns the
augmented batch; the per-pixel mean is subtracted afterwards by the dataflow, as in the paper
(pad with zeros, crop, flip, then subtract the mean).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad_crop(x: np.ndarray, rng: np.random.RandomState, pad: int = 4) -> np.ndarray:
    """Zero-pad each side by ``pad`` and take a random crop of the original size per image."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))  # n, 2p+1, 2p+1, c, h, w
    dy = rng.randint(0, 2 * pad + 1, n)
    dx = rng.randint(0, 2 * pad + 1, n)
    return windows[np.arange(n), dy, dx].transpose(0, 2, 3, 1)


def flip(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Mirror a random half of the images horizontally."""
    mask = rng.rand(len(x)) < 0.5
    x = np.array(x, copy=True)
    x[mask] = x[mask, :, ::-1]
    return x


def cifar_train(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """CIFAR: pad to 40, random 32 crop, horizontal flip."""
    return flip(pad_crop(x, rng), rng)


def svhn_train(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """SVHN: random offsets (pad 4 + crop, no flip: digits are not symmetric), then per image a
    brightness shift in [-10, 10] and a contrast factor in [0.8, 1.2], clipped to [0, 255]."""
    x = pad_crop(x, rng).astype(np.float32)
    n = len(x)
    x += rng.uniform(-10, 10, (n, 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32) + mean
    return np.clip(x, 0, 255)


#: The in-memory pipelines by the recipe's name (ImageNet's runs in :mod:`.imagenet`).
PIPELINES = {"cifar": cifar_train, "svhn": svhn_train, "none": None}
