"""Training settings: the one record of a run, from the workflow's config or the command line to
training, with every default filled in from the recipe and every rule checked once.

Everything here is plain Python (no TensorFlow), so that bad input is refused in a fraction of a
second with a one-line message naming the flag and the allowed values. The workflow builds the
same record from config/experiments.yaml (:mod:`eps_resnet.workflow.config`) and hands it to
``eps-resnet train`` as flags (:meth:`TrainSettings.to_args`), which the command parses back into
an equal record.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from ..compat import CPU_KERNELS, default_cpu_kernels
from ..data import DATASETS, dataset_info
from ..errors import EpsResnetError
from ..models import DEFAULT_GATE, FAMILIES, VARIANTS, check_depth
from ..models.gate import GATES
from .recipe import LR_MODES, RECIPES, Recipe
from .schedules import epsilon_schedule

#: How the gates of an ε-ResNet decide at inference (validation, evaluate, export): "batch", per
#: batch from the batch's own max|F| as in training (the original's); "training", the verdict of
#: training's moving average (closed when is_discarded >= 0.5, the rule compression uses), so
#: that validation measures the network training pruned.
INFERENCE_GATES = ("batch", "training")

#: What a closed gate does in training: "reopen", every batch decides anew from its own max|F|
#: (the original's); "stay", once training's moving average of is_discarded says discarded
#: (>= 0.5) the gate stays closed for the rest of training. In the paper's 1000-epoch runs
#: weight decay shrinks a closed branch until it never reopens; a short run is far from that,
#: and a block near ε flickers, which leaves the later batch norms' moving statistics a mix of
#: two networks (README, "Gates at validation").
CLOSED_GATES = ("reopen", "stay")

#: The largest synthetic images and class counts a run takes (ImageNet's are 224 and 1,000).
MAX_IMAGE_SIZE, MAX_CLASSES = 1024, 100_000

#: fp32, or mixed: bfloat16 on CPUs that have it, float16 on NVIDIA GPUs (eps_resnet.training.devices)
PRECISIONS = ("fp32", "mixed")

#: Settings that may differ when a run folder is reused: where things are, how many devices and
#: threads run it, and how long it trains (raising --epochs extends a finished run).
#: (threads and CPU kernels change the last bits, not the configuration, as on another machine)
NOT_IDENTITY = ("out", "data_dir", "gpus", "towers", "data_workers", "threads", "epochs",
                "cpu_kernels")


class SettingsError(EpsResnetError):
    """Bad command-line or config input; the message is one line starting with the flag."""


@dataclass
class TrainSettings:
    """A training run. ``None`` means "the default": the recipe's (epochs, batch, learning-rate
    mode, ε start), the dataset's (family, image size, classes) or the machine's (GPUs, data
    workers); :meth:`resolved` fills them in."""
    dataset: str
    depth: int
    variant: str
    out: str
    epsilon: float | None = None
    epsilon_start_epoch: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch: int | None = None
    gpus: int | None = None
    towers: int | None = None  # CPU training only: model replicas (a test and debugging aid)
    data_dir: str | None = None
    svhn_extra: bool | None = None  # SVHN: train on train + extra (the default) or train alone
    seed: int = 0
    lr_schedule: str | None = None  # a mode of recipe.LR_MODES
    family: str | None = None  # only the families the dataset lists (synthetic, digits: either)
    image_size: int | None = None  # only for --dataset synthetic
    classes: int | None = None  # only for --dataset synthetic
    data_workers: int | None = None
    threads: int = 0  # TensorFlow intra/inter-op threads; 0 lets TensorFlow use every core
    precision: str = "fp32"
    deterministic: bool = True  # TensorFlow's deterministic ops (the data order always is)
    #: compat.CPU_KERNELS: portable (the same bits on every x86-64 CPU kind) or native
    #: (TensorFlow's choice for this CPU); default portable, native for --precision mixed
    cpu_kernels: str | None = None
    inference_gates: str = "batch"  # INFERENCE_GATES; ε runs only
    closed_gates: str = "reopen"  # CLOSED_GATES; ε runs only
    gate: str = DEFAULT_GATE  # models.gate.GATES; ε runs only

    def resolved(self) -> "TrainSettings":
        """A validated copy with every default filled in (except ``gpus`` and
        ``steps_per_epoch``, which need the machine and the data)."""
        s = dataclasses.replace(self)
        _check_choice(s, "dataset")
        _resolve_data(s)
        _check_choice(s, "variant")
        try:
            check_depth(s.family, int(s.depth))
        except ValueError as e:
            raise SettingsError(f"{e} (dataset {s.dataset}, {s.family} family)") from None
        _check_epsilon(s)
        _resolve_schedule(s)
        _resolve_machine(s)
        s.out = os.path.abspath(s.out)
        if s.data_dir is not None:
            s.data_dir = os.path.abspath(s.data_dir)
        return s

    # -- derived ----------------------------------------------------------------------------
    @property
    def info(self):
        return dataset_info(self.dataset)

    @property
    def recipe(self) -> Recipe:
        """The training recipe of this dataset and network family."""
        return RECIPES[self.info.recipes[self.family or self.info.family]]

    @property
    def epsilon_points(self):
        if self.variant != "epsilon":
            return None
        return epsilon_schedule(self.epsilon, self.epsilon_start_epoch or 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_args(self, exclude=()) -> list[str]:
        """The ``eps-resnet train`` flags that give these settings back (settings left at their
        default are not written)."""
        args = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in exclude or value is None or value == f.default:
                continue
            if isinstance(value, bool):
                args.append(flag_of(f.name) if value else "--no-" + flag_of(f.name)[2:])
            else:
                args += [flag_of(f.name), str(value)]
        return args

    def identity(self) -> dict:
        """The settings that define a run: two runs with different identities never share a folder."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}


#: The settings whose value is one of a fixed set, and that set.
CHOICES = {"dataset": DATASETS, "family": FAMILIES, "variant": VARIANTS,
           "inference_gates": INFERENCE_GATES, "closed_gates": CLOSED_GATES,
           "lr_schedule": LR_MODES, "precision": PRECISIONS, "cpu_kernels": CPU_KERNELS,
           "gate": GATES}

#: The ε-only settings and their value in every other variant (their default).
EPSILON_ONLY = ("inference_gates", "closed_gates", "gate")

#: The integer settings with a lower bound, and that bound (None: the default, not checked).
LOWER_BOUNDS = {"epochs": 1, "batch": 1, "steps_per_epoch": 1, "gpus": 0, "towers": 1,
                "data_workers": 1, "threads": 0}


def _check_choice(s: TrainSettings, field: str) -> None:
    value, allowed = getattr(s, field), CHOICES[field]
    if value not in allowed:
        raise SettingsError(f"{flag_of(field)} {value!r} is unknown; expected one of "
                            f"{', '.join(allowed)}")


def _resolve_data(s: TrainSettings) -> None:
    """The dataset's settings: family, image size, classes, SVHN's extra images."""
    info = s.info
    synthetic = s.dataset == "synthetic"
    for flag, value, fixed in (("--image-size", s.image_size, info.image_size),
                               ("--classes", s.classes, info.num_classes)):
        if value is not None and not synthetic and value != fixed:
            raise SettingsError(f"{flag} is only for --dataset synthetic; {s.dataset} fixes it "
                                f"at {fixed}")
    if s.dataset == "svhn":
        s.svhn_extra = True if s.svhn_extra is None else s.svhn_extra
    elif s.svhn_extra is not None:
        raise SettingsError(f"--svhn-extra is only for --dataset svhn, not {s.dataset}")
    s.family = s.family or info.family
    _check_choice(s, "family")
    if s.family not in info.families:
        raise SettingsError(f"--family {s.family} does not train on {s.dataset}; expected "
                            f"{' or '.join(info.families)}")
    imagenet_like = s.family == "imagenet"
    if s.image_size is None:
        s.image_size = 224 if synthetic and imagenet_like else info.image_size
    if s.classes is None:
        s.classes = 1000 if synthetic and imagenet_like else info.num_classes
    # before anything is allocated: the demo's digits are the smallest images trained on,
    # and a batch of synthetic images beyond MAX_IMAGE_SIZE would not fit in memory
    if not 16 <= s.image_size <= MAX_IMAGE_SIZE:
        raise SettingsError(f"--image-size {s.image_size} is out of range; expected 16 to "
                            f"{MAX_IMAGE_SIZE}")
    if not 2 <= s.classes <= MAX_CLASSES:
        raise SettingsError(f"--classes {s.classes} is out of range; expected 2 to {MAX_CLASSES:,}")


def _check_epsilon(s: TrainSettings) -> None:
    """ε itself, and the settings only an ε-ResNet has."""
    if s.variant == "epsilon":
        if s.epsilon is None:
            raise SettingsError("--epsilon is required for --variant epsilon; expected a number >= 0")
        if not math.isfinite(s.epsilon):
            raise SettingsError(f"--epsilon {s.epsilon} is not a finite number; expected a number >= 0")
        if s.epsilon < 0:
            raise SettingsError(f"--epsilon {s.epsilon} is negative; expected a number >= 0")
    elif s.epsilon is not None:
        raise SettingsError(f"--epsilon is only for --variant epsilon, not {s.variant}")
    for field in EPSILON_ONLY:
        _check_choice(s, field)
        value = getattr(s, field)
        if value != default_of(field) and s.variant != "epsilon":
            raise SettingsError(f"{flag_of(field)} {value} is only for --variant epsilon, "
                                f"not {s.variant}")


def _resolve_schedule(s: TrainSettings) -> None:
    """The recipe's defaults: ε's start, the learning-rate mode, epochs and batch."""
    recipe = s.recipe
    if s.epsilon_start_epoch is None:
        s.epsilon_start_epoch = recipe.epsilon_start_epoch
    if s.epsilon_start_epoch < 0:
        raise SettingsError(f"--epsilon-start-epoch {s.epsilon_start_epoch} is negative; expected >= 0")
    if s.lr_schedule is None:
        adaptive = s.variant == "epsilon" and "adaptive" in recipe.lr_modes
        s.lr_schedule = "adaptive" if adaptive else "standard"
    _check_choice(s, "lr_schedule")
    if s.lr_schedule not in recipe.lr_modes:
        raise SettingsError(f"--lr-schedule {s.lr_schedule} does not exist for {s.dataset}; "
                            f"expected one of {', '.join(recipe.lr_modes)}")
    if s.lr_schedule == "adaptive" and s.variant != "epsilon":
        raise SettingsError("--lr-schedule adaptive needs --variant epsilon (it follows discarded blocks)")
    if s.epochs is None:
        s.epochs = recipe.epochs(s.variant)
    s.batch = s.batch if s.batch is not None else recipe.batch
    for field, low in LOWER_BOUNDS.items():
        value = getattr(s, field)
        if value is not None and value < low:
            raise SettingsError(f"{flag_of(field)} {value} is out of range; expected an integer "
                                f">= {low}")
    if not 0 <= s.seed < 2 ** 32:
        # (numpy's seeds are 32-bit: a larger or negative one fails deep in the data)
        raise SettingsError(f"--seed {s.seed} is out of range; expected an integer from 0 "
                            f"to {2 ** 32 - 1}")


def _resolve_machine(s: TrainSettings) -> None:
    """Precision, CPU kernels, towers and data workers."""
    _check_choice(s, "precision")
    try:
        default = default_cpu_kernels(strict=True)
    except ValueError as e:
        raise SettingsError(f"{e} (the default of --cpu-kernels)") from None
    if s.cpu_kernels is None:
        s.cpu_kernels = "native" if s.precision == "mixed" else default
    _check_choice(s, "cpu_kernels")
    if s.precision == "mixed" and s.cpu_kernels == "portable":
        raise SettingsError("--cpu-kernels portable cannot run --precision mixed (the bfloat16 "
                            "kernels are oneDNN's native ones); expected --cpu-kernels native")
    if s.towers is not None and s.gpus != 0:
        raise SettingsError(f"--towers {s.towers} is for training on the CPU (with --gpus 0); "
                            "on GPUs every GPU is one tower")
    if s.gpus:
        check_gpu_split(s.batch, s.gpus)
    if s.towers:
        check_gpu_split(s.batch, s.towers, "--towers")
    if s.data_workers is None:
        s.data_workers = default_data_workers()


def flag_of(field: str) -> str:
    """The command-line flag of a settings field (``epsilon_start_epoch`` -> ``--epsilon-start-epoch``)."""
    return "--" + field.replace("_", "-")


def default_of(field: str):
    """The default of a settings field (what an absent flag means)."""
    f = TrainSettings.__dataclass_fields__[field]
    return None if f.default is dataclasses.MISSING else f.default


def check_gpu_split(batch: int, towers: int, flag: str = "--gpus") -> None:
    """Every tower (GPU, or CPU replica) gets the same share of the batch."""
    if batch % towers:
        raise SettingsError(f"--batch {batch} is not divisible by {flag} {towers}; expected a "
                            f"multiple of {towers} so that every tower gets the same share")


def default_data_workers() -> int:
    """Dataflow worker processes: every core the process may use but one for TensorFlow's feed."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
