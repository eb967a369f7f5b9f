"""SVHN cropped digits (format 2: train_32x32.mat, test_32x32.mat, extra_32x32.mat).

As in the original implementation, training uses train + extra (604,388 images) by default:
``prepare`` stores the training images as train followed by extra and records both counts
(``parts`` in prepared.yaml), so that a run can also train on train alone from the same folder
(``--no-svhn-extra``; config ``datasets.svhn.svhn_extra: false``). Such a run keeps the
original's epoch of train + extra in steps (:func:`epoch_steps`), so the schedule, given in
epochs, decays at the same steps.
"""
from __future__ import annotations

import os

import numpy as np

from .files import DataError, download, verify

URL = "http://ufldl.stanford.edu/housenumbers/{}"
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
#: Images in the published files.
PUBLISHED = {"train": 73_257, "test": 26_032, "extra": 531_131}
#: The per-pixel means: of all stored training images, and of the train file's alone (written
#: beside the first when extra is stored too).
MEAN, MEAN_WITHOUT_EXTRA = "mean.npy", "mean_without_extra.npy"


def read_mat(path: str):
    """(images uint8 N x 32 x 32 x 3, labels 0-9) of a verified SVHN .mat file."""
    from scipy.io import loadmat

    try:
        m = loadmat(path)
        x, y = m["X"], m["y"]
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise DataError(f"{path} is not an SVHN .mat file ({e}); the file may be truncated") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.size:
        raise DataError(f"{path} is not an SVHN .mat file (X {x.shape}, y {y.shape})")
    # SVHN labels the digit 0 as 10.
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8), (y.ravel() % 10).astype(np.int32)


def _get(split: str, out: str, source: str | None, md5: dict) -> str:
    name, published = FILES[split]
    expected = md5.get(split) or published
    if source:
        path = os.path.join(source, name) if os.path.isdir(source) else source
        if not os.path.isfile(path):
            hint = " (or prepare with --no-svhn-extra)" if split == "extra" else ""
            raise DataError(f"{path} is missing; --source must be a folder holding {name}{hint}")
        verify(path, expected, remove_bad=False)
        return path
    path = os.path.join(out, "downloads", name)
    if os.path.exists(path):
        verify(path, expected, remove_bad=True)
        return path
    return download(URL.format(name), path, expected, "--source DIR (config key datasets.svhn.path)")


def prepare(dataset: str, out: str, source: str | None, md5: dict | None, extra: bool = True):
    """Train (followed by extra, unless ``extra`` is False) and test splits (the dataset
    registry's reader); ``md5`` may override the published sums. The provenance records
    ``parts``: the images of each file in the stored training array, in order."""
    md5 = md5 if isinstance(md5, dict) else {}
    splits = ["train", "test"] + (["extra"] if extra else [])
    paths = {s: _get(s, out, source, md5) for s in splits}  # every file verified before reading
    data = {s: read_mat(p) for s, p in paths.items()}
    train = data["train"]
    parts = {"train": len(train[1])}
    if extra:
        train = (np.concatenate([train[0], data["extra"][0]]), np.concatenate([train[1], data["extra"][1]]))
        parts["extra"] = len(data["extra"][1])
    prov = {"source": {s: os.path.abspath(p) for s, p in paths.items()},
            "md5": {s: md5.get(s) or FILES[s][1] for s in splits}, "parts": parts}
    return {"train": train, "val": data["test"]}, prov


def training_part(meta: dict, extra: bool, data_dir: str) -> tuple[int | None, str]:
    """Which stored training images a run uses and the per-pixel mean file that goes with them:
    (None, "mean.npy") for all of them, or (the train file's count, :data:`MEAN_WITHOUT_EXTRA`)
    for train alone out of a folder that also holds extra; a DataError if extra is wanted but
    was not prepared."""
    parts = meta.get("parts") or {"train": meta["images"]["train"]}
    if extra and "extra" not in parts:
        raise DataError(f"svhn in {data_dir} was prepared without extra ({parts['train']} training "
                        f"images); run `eps-resnet prepare svhn --out {data_dir}` again (extra is "
                        "included by default), or train on train alone with --no-svhn-extra "
                        "(config datasets.svhn.svhn_extra: false)")
    if extra or "extra" not in parts:
        return None, MEAN
    return parts["train"], MEAN_WITHOUT_EXTRA


def epoch_steps(meta: dict, batch: int) -> int:
    """Steps of one epoch of the original's training set, train + extra (the prepared counts
    when extra was prepared, else the published ones), at ``batch``: what a run on train alone
    calls an epoch, so that its schedule decays at the original's steps."""
    parts = meta.get("parts") or {}
    n = sum(parts.values()) if "extra" in parts else PUBLISHED["train"] + PUBLISHED["extra"]
    return n // batch
