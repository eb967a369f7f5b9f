"""Datasets: what each one is (this file, importable without TensorFlow), preparing them on disk
(prepare, files, one module per source) and the ordered dataflows that feed training (dataflows).

May import only the base modules (compat, errors, atomic). The table below is what argument
checking and the workflow need to know about a dataset before anything heavy is imported: which
network family trains on it, how many classes and what image size it has, and which training
recipe (:mod:`eps_resnet.training.recipe`) applies to it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from . import digits as _digits
from . import svhn as _svhn

#: How a dataset is kept on disk and fed: "arrays", uint8 image arrays in memory (prepared by
#: its reader); "files", an index of the source's JPEG files (ImageNet); "generated", no files
#: (synthetic images made on the fly).
STORAGES = ("arrays", "files", "generated")


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: what argument checking, preparing, the dataflows and the estimates know of it."""
    name: str
    num_classes: int
    image_size: int
    #: network family -> recipe (:data:`eps_resnet.training.recipe.RECIPES`); the first family is the
    #: dataset's own, and only the families listed here train on it.
    recipes: dict[str, str] = field(hash=False)
    description: str = ""
    #: images of one training epoch and of the validation set, as published (the estimates'
    #: counts; the prepared files say what a given copy holds)
    train_images: int = 0
    val_images: int = 0
    storage: str = "arrays"
    #: "module:function" that reads the source of an "arrays" dataset:
    #: ``function(name, out, source, md5, extra) -> ({split: (images, labels)}, provenance)``,
    #: with splits "train" and "val", images N x H x W x 3 uint8, labels integers from 0
    reader: str | None = None

    @property
    def family(self) -> str:
        return next(iter(self.recipes))

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.recipes)

    def read(self, out: str, source: str | None, md5, extra: bool = True):
        """The splits and provenance of an "arrays" dataset, by its reader."""
        module, _, function = self.reader.partition(":")
        return getattr(importlib.import_module(module), function)(self.name, out, source, md5, extra)


#: Every dataset, by name: one entry here and, for a dataset with files, its reader.
DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to :data:`DATASETS` (a recipe for each of its families must exist)."""
    if info.storage not in STORAGES:
        raise ValueError(f"dataset {info.name}: storage {info.storage!r}; expected one of "
                         f"{', '.join(STORAGES)}")
    if (info.storage == "arrays") != (info.reader is not None):
        raise ValueError(f"dataset {info.name}: a reader is for, and only for, storage 'arrays'")
    DATASETS[info.name] = info
    return info


for _info in (
    DatasetInfo("cifar10", 10, 32, {"cifar": "cifar"}, "CIFAR-10", 50_000, 10_000,
                reader="eps_resnet.data.cifar:prepare"),
    DatasetInfo("cifar100", 100, 32, {"cifar": "cifar"}, "CIFAR-100", 50_000, 10_000,
                reader="eps_resnet.data.cifar:prepare"),
    # train + extra: also the epoch of a run on train alone (data.svhn)
    DatasetInfo("svhn", 10, 32, {"cifar": "svhn"}, "SVHN cropped digits",
                _svhn.PUBLISHED["train"] + _svhn.PUBLISHED["extra"], _svhn.PUBLISHED["test"],
                reader="eps_resnet.data.svhn:prepare"),
    DatasetInfo("imagenet", 1000, 224, {"imagenet": "imagenet"}, "ILSVRC-2012", 1_281_167,
                50_000, storage="files"),
    DatasetInfo("digits", 10, _digits.SIZE, {"cifar": "digits", "imagenet": "digits_imagenet"},
                f"scikit-learn's 8x8 handwritten digits upscaled to {_digits.SIZE}x"
                f"{_digits.SIZE} (offline demo)", 1_433, 364, reader="eps_resnet.data.digits:prepare"),
    DatasetInfo("synthetic", 10, 32, {"cifar": "synthetic", "imagenet": "synthetic_imagenet"},
                "procedurally generated images, no files (tests and benchmarks)", 2_048, 512,
                storage="generated"),
):
    register_dataset(_info)


def preparable() -> tuple[str, ...]:
    """The datasets `eps-resnet prepare` and the workflow know (generated data needs no files)."""
    return tuple(name for name, info in DATASETS.items() if info.storage != "generated")



def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name, or a ValueError naming the allowed ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None
