"""Batch-wise augmentation of in-memory images (CIFAR, SVHN, digits), vectorised with numpy.

Each function takes a uint8 or float32 batch N x H x W x C and a RandomState and returns the
augmented batch; the per-pixel mean is subtracted afterwards, as in the paper (pad with zeros,
crop, flip, then subtract the mean): by the dataflow, or, for batches that stay uint8, by the
network (:func:`eps_resnet.data.dataflows.delivers_uint8`).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad(x: np.ndarray, pad: int = 4) -> np.ndarray:
    """Zero-pad each side of every image by ``pad`` pixels."""
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def crop_offsets(rng: np.random.RandomState, slack: int, n: int) -> np.ndarray:
    """``n`` offsets of a ``size`` window in an image ``size + slack`` pixels long, drawn as the
    original's tensorpack RandomCrop drew them: ``randint(slack)``, so 0 .. slack - 1 (a 32 crop of
    a 40 canvas shifts the image by +4 .. -3 pixels, never by -4), and 0 when there is no slack."""
    return rng.randint(0, slack, n) if slack > 0 else np.zeros(n, np.intp)


def random_crop(x: np.ndarray, rng: np.random.RandomState, size: int) -> np.ndarray:
    """A random ``size`` x ``size`` window of each image (offsets: :func:`crop_offsets`)."""
    n, h, w, _ = x.shape
    windows = sliding_window_view(x, (size, size), axis=(1, 2))  # n, h-s+1, w-s+1, c, s, s
    dy = crop_offsets(rng, h - size, n)
    dx = crop_offsets(rng, w - size, n)
    return windows[np.arange(n), dy, dx].transpose(0, 2, 3, 1)


def pad_crop(x: np.ndarray, rng: np.random.RandomState, pad_by: int = 4) -> np.ndarray:
    """Zero-pad each side by ``pad_by`` and take a random crop of the original size per image."""
    return random_crop(pad(x, pad_by), rng, x.shape[1])


def flip(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Mirror a random half of the images horizontally."""
    mask = rng.rand(len(x)) < 0.5
    x = np.array(x, copy=True)
    x[mask] = x[mask, :, ::-1]
    return x


def cifar_train(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """CIFAR: pad to 40, random 32 crop, horizontal flip."""
    return flip(pad_crop(x, rng), rng)


#: The original's SVHN deformation: four anchors (relative y, x), their Gaussian width (in
#: squared relative distance) and the largest shift of an anchor in pixels.
DEFORM_ANCHORS = ((0.2, 0.2), (0.2, 0.8), (0.8, 0.8), (0.8, 0.2))
DEFORM_SIGMA = 0.2
DEFORM_SHIFT = 3.0


def gaussian_deform(x: np.ndarray, rng: np.random.RandomState, anchors=DEFORM_ANCHORS,
                    sigma: float = DEFORM_SIGMA, max_shift: float = DEFORM_SHIFT) -> np.ndarray:
    """A smooth random warp per image, the deformation of the original's SVHN augmentation
    (tensorpack's GaussianDeform, written here for whole batches): each anchor moves by an
    offset drawn uniformly from [-max_shift, max_shift] pixels in y and x, and every pixel reads
    the image (bilinearly, clamped at the border) at its own position plus the anchors' offsets,
    each weighted by exp(-d^2 / sigma), d the pixel's distance to the anchor in image-relative
    units. Returns float32."""
    n, h, w, _ = x.shape
    a = np.asarray(anchors, np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    weight = np.exp(-((yy[..., None] / h - a[:, 0]) ** 2 + (xx[..., None] / w - a[:, 1]) ** 2)
                    / sigma)  # h, w, anchors
    offsets = (rng.rand(n, len(a), 2).astype(np.float32) - 0.5) * (2 * max_shift)
    shift = np.matmul(weight.reshape(h * w, len(a)), offsets).reshape(n, h, w, 2)
    cy = np.clip(yy + shift[..., 0], 0, h - 1)
    cx = np.clip(xx + shift[..., 1], 0, w - 1)
    y0, x0 = np.floor(cy).astype(np.intp), np.floor(cx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = (cy - y0).astype(np.float32)[..., None]
    fx = (cx - x0).astype(np.float32)[..., None]
    # gathers on the flattened batch: much faster than indexing with three index arrays
    flat = x.astype(np.float32, copy=False).reshape(n * h * w, -1)
    base = (np.arange(n) * (h * w))[:, None, None]

    def at(yi, xi):
        return np.take(flat, base + yi * w + xi, axis=0)

    return ((at(y0, x0) * (1 - fx) + at(y0, x1) * fx) * (1 - fy)
            + (at(y1, x0) * (1 - fx) + at(y1, x1) * fx) * fy)


def svhn_train(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """SVHN, in the original's order: paste on a 40 x 40 black canvas; per image a brightness
    shift in [-10, 10] and a contrast factor in [0.8, 1.2] about each channel's mean (both on the
    whole canvas, each clipped to [0, 255]); the Gaussian deformation; a random 32 x 32 crop.
    No flip: digits are not symmetric."""
    x = pad(x).astype(np.float32)
    n = len(x)
    x = np.clip(x + rng.uniform(-10, 10, (n, 1, 1, 1)).astype(np.float32), 0, 255)
    mean = x.mean(axis=(1, 2), keepdims=True)
    x = np.clip((x - mean) * rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32) + mean, 0, 255)
    return random_crop(gaussian_deform(x, rng), rng, 32)


#: The in-memory pipelines by the recipe's name (ImageNet's runs in :mod:`.imagenet`).
PIPELINES = {"cifar": cifar_train, "svhn": svhn_train, "none": None}
