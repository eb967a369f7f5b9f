"""Datasets: what each one is (this file, importable without TensorFlow) and its dataflows.

The table below is what argument checking and the workflow need to know about a dataset before
anything heavy is imported: which network family trains on it, how many classes and what image
size it has, and which learning-rate schedules the paper uses for it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    family: str  # "cifar" or "imagenet": the network layout that trains on it
    num_classes: int
    image_size: int
    schedule: str  # key into eps_resnet.schedules.LR_SCHEDULES
    batch: int  # the paper's total batch size
    description: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", "cifar", 10, 32, "cifar", 128, "CIFAR-10"),
        DatasetInfo("cifar100", "cifar", 100, 32, "cifar", 128, "CIFAR-100"),
        DatasetInfo("svhn", "cifar", 10, 32, "svhn", 128, "SVHN cropped digits"),
        DatasetInfo("imagenet", "imagenet", 1000, 224, "imagenet", 256, "ILSVRC-2012"),
        DatasetInfo("digits", "cifar", 10, 32, "digits", 64,
                    "scikit-learn's 8x8 handwritten digits upscaled to 32x32 (offline demo)"),
        DatasetInfo("synthetic", "cifar", 10, 32, "cifar", 128,
                    "procedurally generated images, no files (tests and benchmarks)"),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name, or a ValueError naming the allowed ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None


def get_dataflow(settings, split: str, batch: int):
    """The dataflow of ``split`` ("train" or "val") in batches of ``batch`` for resolved
    TrainSettings (with several GPUs, ``batch`` is one GPU's share)."""
    if settings.dataset == "synthetic":
        from .synthetic import dataflow

        return dataflow(split, batch, settings.image_size, settings.classes, settings.seed,
                        uint8=settings.family == "imagenet")
    from .prepare import memory_dataflow, open_prepared

    meta = open_prepared(settings.data_dir, settings.dataset)
    if settings.dataset == "imagenet":
        from .imagenet import dataflow

        return dataflow(settings.data_dir, meta, split, batch, settings.data_workers,
                        settings.image_size)
    df = memory_dataflow(settings.data_dir, settings.dataset, split, batch)
    if split == "train":
        # Augment in other processes, so that TensorFlow's feed never waits for numpy.
        from tensorpack.dataflow import MultiProcessRunnerZMQ

        df = MultiProcessRunnerZMQ(df, settings.data_workers)
    return df
