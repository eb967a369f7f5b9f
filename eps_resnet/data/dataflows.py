"""The dataflows of a run: which batches a split delivers, in which order, and how many steps make
an epoch. Batch ``k`` is a function of (seed, k) alone (:mod:`.ordered`).
"""
from __future__ import annotations


def training_part(settings, meta: dict) -> tuple[int | None, str]:
    """Which of a prepared in-memory dataset's training images a run uses (None: all; else the
    first so many) and the file of their per-pixel mean, which the dataflows and exported models
    subtract: only SVHN on train alone differs from (None, "mean.npy")."""
    if settings.dataset == "svhn":
        from .svhn import training_part as svhn_part

        return svhn_part(meta, settings.svhn_extra, settings.data_dir)
    return None, "mean.npy"


#: Training augmentations whose output keeps the stored uint8 pixels (crops, flips, nothing).
UINT8_AUGMENTATIONS = ("cifar", "none")


def delivers_uint8(settings) -> bool:
    """Whether a run's batches travel as uint8 pixels: ImageNet's, and the in-memory
    CIFAR-family datasets whose augmentation keeps the stored pixels, whose per-pixel mean the
    network then subtracts itself (:func:`in_graph_mean`). A quarter of float32's bytes
    through the workers' pipes and into the graph: one worker feeds a fast GPU. SVHN's
    deformation makes float32 pixels; synthetic data is generated centred."""
    recipe = settings.recipe
    if recipe.input_format == "rgb8":
        return True
    return settings.info.storage != "generated" and recipe.augmentation in UINT8_AUGMENTATIONS


def training_mean(settings) -> "np.ndarray":
    """The per-pixel mean (float32) of a CIFAR-family run's training images, from its prepared
    data (SVHN on train alone: of train only, :func:`training_part`); a DataError naming the
    file when it is missing."""
    import os

    import numpy as np

    from ..errors import first_line
    from .files import DataError, read_marker, verify_prepared

    data_dir = settings.data_dir or ""
    meta = read_marker(data_dir) if os.path.isdir(data_dir) else None
    name = training_part(settings, meta)[1] if meta else "mean.npy"
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
        raise DataError(f"{path} is missing: the network's input is centred by the training mean "
                        f"of {settings.dataset}; pass --data-dir DIR of `eps-resnet prepare`")
    if meta:
        verify_prepared(data_dir, settings.dataset, meta, [name])  # before it is read
    expected = (f"expected the {settings.image_size}x{settings.image_size}x3 float mean image "
                f"`eps-resnet prepare {settings.dataset}` writes")
    try:
        mean = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a numpy array file ({first_line(e)[:80]}); "
                        f"{expected}") from None
    if mean.shape != (settings.image_size, settings.image_size, 3) or \
            not np.issubdtype(mean.dtype, np.floating) or not np.isfinite(mean).all():
        raise DataError(f"{path} holds a {mean.dtype} array of shape {mean.shape} (or non-finite "
                        f"values); {expected}")
    return mean.astype(np.float32)


def in_graph_mean(settings) -> "np.ndarray | None":
    """The per-pixel training mean that the network subtracts from uint8 pixels, for runs
    whose dataflow delivers CIFAR-family pixels as uint8 (:func:`delivers_uint8`); None where
    the dataflow delivers the network's input (centred float32, or ImageNet's uint8, which the
    network normalises by channel). The same float32 subtraction as the dataflow's, so the
    network sees the same bits either way."""
    if settings.recipe.input_format == "rgb8" or not delivers_uint8(settings):
        return None
    return training_mean(settings)


def files_read(settings, meta: dict, splits=("train", "val")) -> list[str]:
    """The prepared files a run's dataflows of ``splits`` read (ImageNet: its index files; the
    images stay where they are and are checked by their decoder)."""
    if settings.info.storage == "files":
        return [f"{split}.txt" for split in splits]
    _, mean_file = training_part(settings, meta)
    return [f"{split}_{kind}.npy" for split in splits for kind in ("images", "labels")] + [mean_file]


def verified_data(settings, splits=("train", "val")) -> dict[str, str]:
    """Check the prepared files a run reads against prepared.yaml (size and MD5, see
    :func:`.files.verify_prepared`) before any of them is read; {file: MD5} ({} for synthetic
    data). A damaged file is a DataError naming it and the `eps-resnet prepare` that rebuilds it."""
    if settings.info.storage == "generated":
        return {}
    from .files import verify_prepared
    from .prepare import open_prepared

    meta = open_prepared(settings.data_dir, settings.dataset)
    return verify_prepared(settings.data_dir, settings.dataset, meta,
                           files_read(settings, meta, splits))


def get_dataflow(settings, split: str, batch: int):
    """The dataflow of ``split`` ("train" or "val") in batches of ``batch`` for resolved
    TrainSettings (with several GPUs, ``batch`` is one GPU's share): batch ``k`` is a function of
    (seed, k) alone, delivered in order (:mod:`.ordered`); training batches are computed ahead
    by ``settings.data_workers`` processes, validation batches in this one."""
    from .ordered import OrderedBatches

    recipe, seed = settings.recipe, settings.seed
    if settings.info.storage == "generated":
        from .synthetic import source

        src = source(split, batch, settings.image_size, settings.classes, seed,
                     uint8=recipe.input_format == "rgb8")
    else:
        from .prepare import memory_source, open_prepared

        meta = open_prepared(settings.data_dir, settings.dataset)
        verified_data(settings, (split,))
        if settings.info.storage == "files":
            from .imagenet import dataflow

            return dataflow(settings.data_dir, meta, split, batch, settings.data_workers,
                            settings.image_size, seed)
        else:
            rows, mean_file = training_part(settings, meta)
            src = memory_source(settings.data_dir, split, batch, recipe.augmentation, seed, rows,
                                mean_file, subtract_mean=not delivers_uint8(settings))
    # Synthetic batches are ready-made arrays: worker processes would only add copies.
    generated = settings.info.storage == "generated"
    workers = settings.data_workers if split == "train" and not generated else 0
    return OrderedBatches(src, workers)


def epoch_steps(settings, train_flow) -> tuple[int, str | None]:
    """Steps per epoch of a run and, where an epoch is not one pass over its training images,
    why (recorded in run.yaml): ``--steps-per-epoch``, else one pass, except SVHN on train
    alone, whose epoch keeps the steps of the original's train + extra so that the recipe's
    schedule (in epochs) decays at the same steps."""
    if settings.steps_per_epoch:
        return settings.steps_per_epoch, None
    if settings.dataset == "svhn" and not settings.svhn_extra:
        from .prepare import open_prepared
        from .svhn import epoch_steps as svhn_epoch

        steps = svhn_epoch(open_prepared(settings.data_dir, "svhn"), settings.batch)
        passes = steps / len(train_flow)
        return steps, (f"svhn_extra off: an epoch is {steps} steps, as one pass over train + extra "
                       f"in the original, i.e. {passes:.2f} passes over the train images; the "
                       "schedule's epochs decay at the original's steps")
    return len(train_flow), None
