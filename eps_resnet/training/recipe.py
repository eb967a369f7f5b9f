"""The paper's training recipe, per dataset kind: one table of plain data that settings, training,
the dataflows and the README read (``tests/test_structure.py`` checks the README's table
against it).

Sources: the paper (Yu, Yu & Ramalingam, CVPR 2018, Sec. 4) and the original implementation's
scripts (github.com/yuxwind/epsilon-resnet). A schedule is a list of ``(epoch, value)`` points:
the value takes effect after ``epoch`` epochs have finished, as in tensorpack's
``ScheduledHyperParamSetter``; every schedule starts from ``initial_lr`` and lists only its decays.
The adaptive schedule is the faster one that ε-ResNet restarts whenever the number of discarded
blocks rises (:class:`eps_resnet.training.schedules.AdaptiveRestart`).

Kept elsewhere because they are structure, not recipe: the block layouts and the side output's
position (:mod:`eps_resnet.models.layouts`: CIFAR group 2 block n/2, ImageNet the block at half of
all blocks) and the gate's constants (:mod:`eps_resnet.models.gate`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import tables

Points = tuple[tuple[int, float], ...]

#: Learning-rate modes: the standard schedule, or the adaptive restarts of ε-ResNet.
LR_MODES = ("standard", "adaptive")
#: Augmentation pipelines of :mod:`eps_resnet.data` ("none": images as they are).
AUGMENTATIONS = ("cifar", "svhn", "imagenet", "none")
#: What the dataflow delivers and the model normalises: "centered" float32 pixels minus the
#: per-pixel training mean, or "rgb8" uint8 RGB in [0, 255] (normalised inside the graph).
INPUT_FORMATS = ("centered", "rgb8")


@dataclass(frozen=True)
class Recipe:
    name: str
    batch: int  # total over all GPUs
    epochs_baseline: int  # standard and side variants
    epochs_epsilon: int
    initial_lr: float
    lr_decays: Points  # the standard schedule after its start
    adaptive_decays: Points | None  # None: no adaptive schedule for this kind
    baseline_warmup: float | None  # lr of the baselines' first epoch (None: initial_lr from the start)
    weight_decay: float  # on conv and fully connected weights
    weight_decay_decay: tuple[int, float] | None  # (every N steps, factor), staircase; None: constant
    nesterov: bool
    momentum: float
    augmentation: str
    input_format: str
    side_loss_weight: float
    epsilon: float | None  # the paper's ε for this kind (documentation and configs; no default)
    epsilon_start_epoch: int  # epochs with ε = 0 (gates open) before ε applies

    def lr_points(self, mode: str, variant: str = "epsilon") -> list[tuple[int, float]]:
        """The schedule of ``mode`` ("standard" or "adaptive") for ``variant``, start included
        (the baselines' warm-up epoch where the recipe has one)."""
        decays = self.lr_decays if mode == "standard" else self.adaptive_decays
        if decays is None:
            raise KeyError(f"the {self.name} recipe has no {mode} learning-rate schedule")
        if variant != "epsilon" and self.baseline_warmup is not None:
            return [(0, self.baseline_warmup), (1, self.initial_lr), *decays]
        return [(0, self.initial_lr), *decays]

    @property
    def lr_modes(self) -> tuple[str, ...]:
        return LR_MODES if self.adaptive_decays is not None else LR_MODES[:1]

    def epochs(self, variant: str) -> int:
        return self.epochs_epsilon if variant == "epsilon" else self.epochs_baseline


# The baselines came from tensorpack's CIFAR ResNet example (0.01 for the first epoch, then 0.1;
# 300 epochs: 117k steps in the seed's figure), the ε-ResNets from the original's own scripts.
# Both decay the weight decay x0.2 every 480k steps: it never acts on CIFAR (1000 epochs are
# 390k steps) but does on SVHN with extra (4,721 steps per epoch: from epoch 102 on).
_CIFAR = Recipe(
    name="cifar", batch=128, epochs_baseline=300, epochs_epsilon=1000, initial_lr=0.1,
    lr_decays=((82, 0.01), (123, 0.001), (300, 0.0002)),
    adaptive_decays=((41, 0.01), (61, 0.001), (150, 0.0002)), baseline_warmup=0.01,
    weight_decay=2e-4, weight_decay_decay=(480_000, 0.2), nesterov=False, momentum=0.9,
    augmentation="cifar",
    input_format="centered", side_loss_weight=0.1, epsilon=2.5, epsilon_start_epoch=0)

_IMAGENET = Recipe(
    name="imagenet", batch=256, epochs_baseline=110, epochs_epsilon=110, initial_lr=0.1,
    lr_decays=((30, 1e-2), (60, 1e-3), (85, 1e-4), (95, 1e-5)), adaptive_decays=None,
    baseline_warmup=None,
    weight_decay=1e-4, weight_decay_decay=None, nesterov=True, momentum=0.9, augmentation="imagenet",
    input_format="rgb8", side_loss_weight=0.1, epsilon=2.0, epsilon_start_epoch=0)

# The offline demo on scikit-learn's digits: the CIFAR shape compressed to ~15 epochs. Digits are
# not shifted: with pad-and-crop the training responses were about twice the validation ones, and
# the ε gates then decided differently on the two.
_DIGITS = replace(
    _CIFAR, name="digits", batch=64, epochs_baseline=15, epochs_epsilon=15,
    lr_decays=((8, 0.01), (12, 0.001)), adaptive_decays=((4, 0.01), (6, 0.001)),
    baseline_warmup=None, augmentation="none", epsilon=None)

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    _CIFAR,
    replace(_CIFAR, name="svhn", epochs_baseline=200, epochs_epsilon=200, baseline_warmup=None,
            lr_decays=((20, 0.01), (28, 0.001), (50, 0.0001)),
            adaptive_decays=((10, 0.01), (14, 0.001), (25, 0.0001)),
            augmentation="svhn", epsilon=1.5),
    _IMAGENET,
    _DIGITS,
    # ImageNet-family networks on the demo's digits: the demo's schedule, the family's optimiser.
    replace(_DIGITS, name="digits_imagenet", weight_decay=_IMAGENET.weight_decay,
            weight_decay_decay=_IMAGENET.weight_decay_decay, nesterov=_IMAGENET.nesterov),
    # Generated images (tests, benchmarks): nothing to augment, no paper ε.
    replace(_CIFAR, name="synthetic", augmentation="none", epsilon=None, baseline_warmup=None),
    replace(_IMAGENET, name="synthetic_imagenet", batch=128, augmentation="none", epsilon=None),
)}


def _points(points) -> str:
    return ", ".join(f"{e}: {v:g}" for e, v in points) if points else "(none)"


def _weight_decay(r: Recipe) -> str:
    if r.weight_decay_decay is None:
        return f"{r.weight_decay:g}"
    every, factor = r.weight_decay_decay
    return f"{r.weight_decay:g}, x{factor:g} every {every // 1000}k steps"


def markdown_table() -> str:
    """The recipe table as the README shows it (a test keeps the two equal)."""
    headers = ["recipe", "batch", "epochs (baseline / ε)", "initial lr", "baselines' epoch 1",
               "standard: epoch: lr", "adaptive: epoch: lr", "weight decay", "Nesterov",
               "augmentation", "paper ε"]
    rows = [[r.name, r.batch, f"{r.epochs_baseline} / {r.epochs_epsilon}", f"{r.initial_lr:g}",
             "" if r.baseline_warmup is None else f"{r.baseline_warmup:g}", _points(r.lr_decays),
             _points(r.adaptive_decays), _weight_decay(r), "yes" if r.nesterov else "no",
             r.augmentation, "" if r.epsilon is None else f"{r.epsilon:g}"]
            for r in RECIPES.values()]
    return tables.markdown_table(rows, headers).rstrip("\n")
