"""CIFAR-10 and CIFAR-100 (the official python version).

The batches are Python pickles, and unpickling runs code: an archive is checksummed before
anything in it is read, and every batch is read with a restricted unpickler that can build
nothing but numpy arrays, plain containers and strings (the only defence for an already
extracted folder, which has no published checksum).
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

from .files import DataError, download, verify

URL = "https://www.cs.toronto.edu/~kriz/{}"
ARCHIVES = {
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
                ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
                ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
                 ["train"], ["test"], b"fine_labels"),
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_batch(data: bytes, label_key: bytes, name: str):
    """(images uint8 N x 32 x 32 x 3 RGB, labels) of one pickled batch."""
    try:
        d = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
        pixels = np.asarray(d[b"data"], dtype=np.uint8)
        raw = np.asarray(d[label_key])
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OverflowError) as e:
        raise DataError(f"{name} is not a CIFAR batch ({e})") from None
    # checked before the cast: int32 would wrap 2**32 + 3 to 3 and truncate 3.7 to 3 (the
    # classes' range is prepare's check, on every dataset)
    if raw.dtype.kind not in "iu" or (raw.size and not -2 ** 31 <= raw.min() <= raw.max() < 2 ** 31):
        shown = raw.ravel()[:3].tolist() if raw.size else []
        raise DataError(f"{name} has labels {shown} ({raw.dtype}); expected integers (class "
                        "indices)")
    labels = raw.astype(np.int32)
    if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(pixels) != len(labels):
        raise DataError(f"{name} is not a CIFAR batch (data {pixels.shape}, {len(labels)} labels)")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_members(get, folder: str, names, label_key, where):
    parts = [load_batch(get(f"{folder}/{n}"), label_key, f"{where}:{folder}/{n}") for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_archive(path: str, dataset: str):
    """Train and test splits of a verified archive, read without extracting it to disk."""
    _, _, folder, train, test, key = ARCHIVES[dataset]
    try:
        with tarfile.open(path, "r:gz") as tar:
            def get(member):
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    raise DataError(f"{path} lacks {member}; expected the official {dataset} "
                                    "python-version archive") from None
                return f.read()
            return (_read_members(get, folder, train, key, path),
                    _read_members(get, folder, test, key, path))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path} is not a readable tar.gz archive ({e}); the file may be truncated") from None


def read_folder(path: str, dataset: str):
    """Train and test splits of an extracted folder (the batches folder or its parent)."""
    _, _, folder, train, test, key = ARCHIVES[dataset]
    base = path if os.path.basename(os.path.normpath(path)) == folder else os.path.join(path, folder)

    def get(member):
        file = os.path.join(base, os.path.basename(member))
        if not os.path.isfile(file):
            raise DataError(f"{file} is missing; expected the extracted {folder}/ folder")
        with open(file, "rb") as f:
            return f.read()
    return _read_members(get, folder, train, key, base), _read_members(get, folder, test, key, base)


def prepare(dataset: str, out: str, source: str | None, md5: str | None,
            extra: bool = True) -> tuple[dict, dict]:
    """Read CIFAR from ``source`` (archive or folder) or the official URL (the dataset
    registry's reader; ``md5`` overrides the published sum, ``extra`` means nothing here).

    Returns ({split: (images, labels)}, provenance)."""
    archive, published_md5, *_ = ARCHIVES[dataset]
    expected = (md5 if isinstance(md5, str) else None) or published_md5
    if source and os.path.isdir(source):
        train, test = read_folder(source, dataset)
        prov = {"source": os.path.abspath(source),
                "checksum": "none (extracted folder; read with a restricted unpickler)"}
    else:
        if source:
            if not os.path.isfile(source):
                raise DataError(f"--source {source} does not exist; expected {archive} or its "
                                "extracted folder")
            path = source
            verify(path, expected, remove_bad=False)
        else:
            path = os.path.join(out, "downloads", archive)
            if os.path.exists(path):
                verify(path, expected, remove_bad=True)
            else:
                download(URL.format(archive), path, expected,
                         f"--source PATH (config key datasets.{dataset}.path)")
        train, test = read_archive(path, dataset)
        prov = {"source": os.path.abspath(path), "md5": expected}
    return {"train": train, "val": test}, prov
