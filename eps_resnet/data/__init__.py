"""Datasets: what each one is (this file, importable without TensorFlow), preparing them on disk
(prepare, files, one module per source) and the ordered dataflows that feed training (dataflows).

May import only the base modules (compat, errors, atomic). The table below is what argument
checking and the workflow need to know about a dataset before anything heavy is imported: which
network family trains on it, how many classes and what image size it has, and which training
recipe (:mod:`eps_resnet.training.recipe`) applies to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import digits as _digits


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_size: int
    #: network family -> recipe (:data:`eps_resnet.training.recipe.RECIPES`); the first family is the
    #: dataset's own, and only the families listed here train on it.
    recipes: dict[str, str] = field(hash=False)
    description: str = ""

    @property
    def family(self) -> str:
        return next(iter(self.recipes))

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.recipes)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", 10, 32, {"cifar": "cifar"}, "CIFAR-10"),
        DatasetInfo("cifar100", 100, 32, {"cifar": "cifar"}, "CIFAR-100"),
        DatasetInfo("svhn", 10, 32, {"cifar": "svhn"}, "SVHN cropped digits"),
        DatasetInfo("imagenet", 1000, 224, {"imagenet": "imagenet"}, "ILSVRC-2012"),
        DatasetInfo("digits", 10, _digits.SIZE, {"cifar": "digits", "imagenet": "digits_imagenet"},
                    f"scikit-learn's 8x8 handwritten digits upscaled to {_digits.SIZE}x"
                    f"{_digits.SIZE} (offline demo)"),
        DatasetInfo("synthetic", 10, 32, {"cifar": "synthetic", "imagenet": "synthetic_imagenet"},
                    "procedurally generated images, no files (tests and benchmarks)"),
    )
}
#: The datasets `eps-resnet prepare` and the workflow know (synthetic data needs no files).
PREPARABLE = tuple(name for name in DATASETS if name != "synthetic")


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name, or a ValueError naming the allowed ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None
