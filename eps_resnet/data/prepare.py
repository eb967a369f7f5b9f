"""``eps-resnet prepare``: turn each dataset's published files into the project's on-disk form.

CIFAR, SVHN and digits become ``{train,val}_images.npy`` (uint8 N x 32 x 32 x 3; digits 16 x
16), ``{train,val}_labels.npy`` and ``mean.npy`` (the per-pixel training mean); ImageNet is indexed
where it lies (see :mod:`.imagenet`). ``prepared.yaml`` is written last: it marks a finished
prepare, and a rerun that finds it does nothing. Outputs are written in a staging folder and
moved in place only when everything succeeded, so an interrupted prepare leaves nothing half-used.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from ..logs import NOTE
from . import DATASETS, preparable
from .files import (MARKER, DataError, clean_leftovers, read_marker, save_arrays, staging_dir,
                    verify_prepared, write_marker)

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1


def prepare(dataset: str, out: str, source: str | None = None, md5=None, svhn_extra: bool = True,
            lmdb: bool = False, val_labels: str | None = None, decode_check: bool = False) -> dict:
    """Prepare ``dataset`` into ``out``; returns the marker's content. SVHN includes the extra
    images unless ``svhn_extra`` is False; a folder prepared without them is prepared again when
    they are asked for (one prepared with them serves runs without them too)."""
    if dataset not in preparable():
        raise DataError(f"cannot prepare {dataset!r}; expected one of {', '.join(preparable())}")
    if source is not None and not os.path.exists(source):
        raise DataError(f"--source {source} does not exist")
    out = os.path.abspath(out)
    try:
        done = read_marker(out)
    except DataError as e:
        LOG.info(f"{str(e).split('; delete')[0]}; preparing again")
        done = None
        os.remove(os.path.join(out, MARKER))
    if done is not None:
        if done.get("dataset") != dataset:
            raise DataError(f"--out {out} holds the prepared dataset {done.get('dataset')!r}, "
                            f"not {dataset}; expected an empty folder or one prepared for {dataset}")
        if dataset == "svhn" and svhn_extra and "extra" not in (done.get("parts") or {}):
            LOG.info(f"{dataset} in {out} was prepared without extra; preparing it again with extra")
        else:
            try:
                verify_prepared(out, dataset, done, list(done.get("checksums") or {}))
                LOG.info(f"{dataset} is already prepared in {out} ({_counts(done)}); nothing to do")
                return done
            except DataError as e:  # a damaged file: the folder is prepared anew
                LOG.info(f"{str(e).split('; run')[0]}; preparing again")
        os.remove(os.path.join(out, MARKER))  # unfinished until the new marker is in place
    clean_leftovers(out)
    existed = os.path.isdir(out)
    try:
        return _prepare(dataset, out, source, md5, svhn_extra, lmdb, val_labels, decode_check)
    except BaseException:
        if not existed:  # leave nothing behind but what a rerun can reuse (a verified download)
            _remove_empty_tree(out)
        raise


def _remove_empty_tree(path: str) -> None:
    for folder, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _prepare(dataset, out, source, md5, svhn_extra, lmdb, val_labels, decode_check):
    started = time.time()
    if DATASETS[dataset].storage == "files":
        info = _prepare_imagenet(out, source, lmdb, val_labels, decode_check)
    else:
        splits, provenance = DATASETS[dataset].read(out, source, md5, svhn_extra)
        classes = DATASETS[dataset].num_classes
        for split, (_, labels) in splits.items():
            bad = np.unique(labels[(labels < 0) | (labels >= classes)])
            if bad.size:
                raise DataError(f"{dataset} {split} labels {', '.join(map(str, bad[:5]))} are "
                                f"outside 0-{classes - 1} ({dataset} has {classes} classes) in "
                                f"{source or 'the downloaded files'}; expected the published files")
        with staging_dir(out) as tmp:
            for split, (images, labels) in splits.items():
                save_arrays(tmp, split, images, labels)
            train = splits["train"][0]
            np.save(os.path.join(tmp, "mean.npy"), per_pixel_mean(train))
            parts = provenance.get("parts") or {}
            if "extra" in parts:  # SVHN: runs on train alone subtract the train file's own mean
                from .svhn import MEAN_WITHOUT_EXTRA

                np.save(os.path.join(tmp, MEAN_WITHOUT_EXTRA), per_pixel_mean(train[:parts["train"]]))
            info = _marker(dataset, provenance, {s: len(v[1]) for s, v in splits.items()},
                           DATASETS[dataset].num_classes, list(splits["train"][0].shape[1:]))
            write_marker(tmp, info)
    LOG.info(f"prepared {dataset} in {out} ({_counts(info)}) in {time.time() - started:.1f} s")
    return info


def _prepare_imagenet(out, source, lmdb, val_labels, decode_check):
    from . import imagenet

    if not source:
        raise DataError("ImageNet cannot be downloaded; pass the extracted ILSVRC-2012 folder "
                        "with --source DIR (config key datasets.imagenet.path)")
    root = os.path.abspath(source)
    classes, splits, notes = imagenet.index_tree(root, val_labels, decode_check)
    for note in notes:
        LOG.log(NOTE, f"note: {note}")
    with staging_dir(out) as tmp:
        for split, items in splits.items():
            imagenet.write_index(tmp, split, items)
            if lmdb:
                LOG.info(f"packing {split} into {split}.lmdb ...")
                imagenet.write_lmdb(root, items, os.path.join(tmp, f"{split}.lmdb"))
        with open(os.path.join(tmp, "classes.txt"), "w") as f:
            f.write("\n".join(classes) + "\n")
        info = _marker("imagenet", {"source": root}, {s: len(v) for s, v in splits.items()},
                       len(classes), None)
        info.update({"lmdb": bool(lmdb), "notes": notes})
        write_marker(tmp, info)
    return info


def _marker(dataset, provenance, counts, classes, shape):
    return {"dataset": dataset, "format": FORMAT_VERSION, "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **provenance, "images": counts, "classes": classes, "image_shape": shape}


def _counts(info: dict) -> str:
    images = info.get("images") or {}
    return ", ".join(f"{n} {s}" for s, n in images.items()) + f" images, {info.get('classes')} classes"


def open_prepared(data_dir: str | None, dataset: str) -> dict:
    """The marker of a prepared dataset, or a DataError pointing at ``eps-resnet prepare``."""
    hint = f"run: eps-resnet prepare {dataset} --out {data_dir or 'DIR'}"
    if data_dir is None:
        raise DataError(f"--data-dir is required for --dataset {dataset}; {hint}, then pass --data-dir")
    info = read_marker(data_dir)
    if info is None:
        raise DataError(f"{dataset} is not prepared in {data_dir} (no prepared.yaml); {hint}")
    if info.get("dataset") != dataset:
        raise DataError(f"{data_dir} holds {info.get('dataset')!r}, not {dataset}; {hint}")
    return info


def per_pixel_mean(images: np.ndarray) -> np.ndarray:
    return images.mean(axis=0, dtype=np.float64).astype(np.float32)


def memory_source(data_dir: str, split: str, batch: int, augmentation: str = "none", seed: int = 0,
                  train_rows: int | None = None, mean_file: str = "mean.npy",
                  subtract_mean: bool = True):
    """An in-memory dataset's batch source (:mod:`.ordered`); training batches go through
    ``augmentation`` (a name of :data:`eps_resnet.training.recipe.AUGMENTATIONS`, from the run's recipe).
    ``train_rows``: train on the first rows of the stored training images only (SVHN without
    extra), with the per-pixel mean of ``mean_file`` subtracted from both splits (unless not
    ``subtract_mean``: the stored uint8 pixels, whose mean the network subtracts)."""
    from . import augment
    from .arrays import ArrayBatches

    images = np.load(os.path.join(data_dir, f"{split}_images.npy"), mmap_mode="r")
    labels = np.load(os.path.join(data_dir, f"{split}_labels.npy"))
    mean = np.load(os.path.join(data_dir, mean_file)) if subtract_mean else None
    train = split == "train"
    if train and train_rows is not None:
        images, labels = images[:train_rows], labels[:train_rows]
    aug = augment.PIPELINES[augmentation] if train else None
    return ArrayBatches(images, labels, batch, shuffle=train, augment=aug, mean=mean, seed=seed)


def memory_dataflow(data_dir: str, split: str, batch: int, augmentation: str = "none",
                    seed: int = 0, workers: int = 0):
    """:func:`memory_source` as a tensorpack DataFlow delivering batches in order."""
    from .ordered import OrderedBatches

    return OrderedBatches(memory_source(data_dir, split, batch, augmentation, seed), workers)
