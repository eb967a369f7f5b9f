"""Training settings: defaults per dataset, validation before anything heavy starts, run.yaml.

Everything here is plain Python (no TensorFlow), so that bad input is refused in a fraction of a
second with a one-line message naming the flag and the allowed values.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import yaml

from .data import DATASETS, dataset_info
from .models.layouts import FAMILIES, check_depth
from .schedules import LR_SCHEDULES, epsilon_schedule

VARIANTS = ("standard", "side", "epsilon")
LR_MODES = ("standard", "adaptive")
PRECISIONS = ("fp32",)
RUN_FILE = "run.yaml"

#: Epochs when --epochs is not given: (baselines, ε-ResNet), per schedule kind (paper.md; the
#: digits demo is sized for minutes on a laptop).
DEFAULT_EPOCHS = {"cifar": (200, 1000), "svhn": (200, 200), "imagenet": (110, 110),
                  "digits": (15, 15)}
#: Datasets small enough to train either network family (the demo shows both on digits).
FREE_FAMILY = ("synthetic", "digits")

#: Settings that may differ when a run folder is reused: where things are, how many devices and
#: threads run it, and how long it trains (raising --epochs extends a finished run).
NOT_IDENTITY = ("out", "data_dir", "gpus", "data_workers", "threads", "epochs")


class SettingsError(ValueError):
    """Bad command-line or config input; the message is one line naming the input."""


@dataclass
class TrainSettings:
    dataset: str
    depth: int
    variant: str
    out: str
    epsilon: float | None = None
    epsilon_start_epoch: int = 0
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch: int | None = None
    gpus: int | None = None
    data_dir: str | None = None
    seed: int = 0
    lr_schedule: str | None = None  # "standard" or "adaptive"
    family: str | None = None  # only for --dataset synthetic: "cifar" or "imagenet"
    image_size: int | None = None  # only for --dataset synthetic
    classes: int | None = None  # only for --dataset synthetic
    data_workers: int | None = None
    threads: int = 0  # TensorFlow intra/inter-op threads; 0 lets TensorFlow use every core
    precision: str = "fp32"

    # -- derived ----------------------------------------------------------------------------
    @property
    def info(self):
        return dataset_info(self.dataset)

    def resolved(self) -> "TrainSettings":
        """A validated copy with every default filled in (except ``gpus`` and
        ``steps_per_epoch``, which need the machine and the data)."""
        s = dataclasses.replace(self)
        if s.dataset not in DATASETS:
            raise SettingsError(f"--dataset {s.dataset!r} is unknown; expected one of "
                                f"{', '.join(DATASETS)}")
        info = s.info
        synthetic = s.dataset == "synthetic"
        for flag, value, fixed in (("--image-size", s.image_size, info.image_size),
                                   ("--classes", s.classes, info.num_classes)):
            if value is not None and not synthetic and value != fixed:
                raise SettingsError(f"{flag} is only for --dataset synthetic; {s.dataset} fixes it "
                                    f"at {fixed}")
        if s.family is not None and s.family != info.family and s.dataset not in FREE_FAMILY:
            raise SettingsError(f"--family {s.family} does not train on {s.dataset}; only "
                                f"{', '.join(FREE_FAMILY)} take either family")
        s.family = s.family or info.family
        if s.family not in FAMILIES:
            raise SettingsError(f"--family {s.family!r} is unknown; expected one of {', '.join(FAMILIES)}")
        imagenet_like = s.family == "imagenet"
        s.image_size = s.image_size or (224 if synthetic and imagenet_like else info.image_size)
        s.classes = s.classes or (1000 if synthetic and imagenet_like else info.num_classes)
        if s.image_size < 32:
            raise SettingsError(f"--image-size {s.image_size} is too small; expected at least 32")
        if s.classes < 2:
            raise SettingsError(f"--classes {s.classes} is too small; expected at least 2")
        if s.variant not in VARIANTS:
            raise SettingsError(f"--variant {s.variant!r} is unknown; expected one of {', '.join(VARIANTS)}")
        try:
            check_depth(s.family, int(s.depth))
        except ValueError as e:
            raise SettingsError(f"{e} (dataset {s.dataset}, {s.family} family)") from None
        if s.variant == "epsilon":
            if s.epsilon is None:
                raise SettingsError("--epsilon is required for --variant epsilon; expected a number >= 0")
            if s.epsilon < 0:
                raise SettingsError(f"--epsilon {s.epsilon} is negative; expected a number >= 0")
        elif s.epsilon is not None:
            raise SettingsError(f"--epsilon is only for --variant epsilon, not {s.variant}")
        if s.epsilon_start_epoch < 0:
            raise SettingsError(f"--epsilon-start-epoch {s.epsilon_start_epoch} is negative; expected >= 0")
        kind = s.schedule_kind
        if s.lr_schedule is None:
            adaptive_ok = "adaptive" in LR_SCHEDULES[kind]
            s.lr_schedule = "adaptive" if (s.variant == "epsilon" and adaptive_ok) else "standard"
        if s.lr_schedule not in LR_MODES:
            raise SettingsError(f"--lr-schedule {s.lr_schedule!r} is unknown; expected one of {', '.join(LR_MODES)}")
        if s.lr_schedule not in LR_SCHEDULES[kind]:
            raise SettingsError(f"--lr-schedule {s.lr_schedule} does not exist for {s.dataset}; "
                                f"expected one of {', '.join(LR_SCHEDULES[kind])}")
        if s.lr_schedule == "adaptive" and s.variant != "epsilon":
            raise SettingsError("--lr-schedule adaptive needs --variant epsilon (it follows discarded blocks)")
        if s.epochs is None:
            s.epochs = DEFAULT_EPOCHS[kind][s.variant == "epsilon"]
        s.batch = s.batch if s.batch is not None else info.batch
        for flag, value, low in (("--epochs", s.epochs, 1), ("--batch", s.batch, 1),
                                 ("--steps-per-epoch", s.steps_per_epoch, 1),
                                 ("--gpus", s.gpus, 0), ("--data-workers", s.data_workers, 1),
                                 ("--threads", s.threads, 0)):
            if value is not None and value < low:
                raise SettingsError(f"{flag} {value} is out of range; expected an integer >= {low}")
        if s.precision not in PRECISIONS:
            raise SettingsError(f"--precision {s.precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
        if s.gpus:
            check_gpu_split(s.batch, s.gpus)
        if s.data_workers is None:
            s.data_workers = default_data_workers()
        s.out = os.path.abspath(s.out)
        if s.data_dir is not None:
            s.data_dir = os.path.abspath(s.data_dir)
        return s

    @property
    def schedule_kind(self) -> str:
        """Key of LR_SCHEDULES and DEFAULT_EPOCHS for these settings."""
        if self.family == "imagenet" and self.info.schedule != "digits":
            return "imagenet"
        return self.info.schedule

    @property
    def lr_points(self):
        return LR_SCHEDULES[self.schedule_kind]

    @property
    def epsilon_points(self):
        if self.variant != "epsilon":
            return None
        return epsilon_schedule(self.epsilon, self.epsilon_start_epoch)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The settings that define a run: two runs with different identities never share a folder."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}


def check_gpu_split(batch: int, gpus: int) -> None:
    if batch % gpus:
        raise SettingsError(f"--batch {batch} is not divisible by --gpus {gpus}; expected a multiple "
                            f"of {gpus} so that every GPU gets the same share")


def default_data_workers() -> int:
    """Dataflow worker processes: every core the process may use but one for TensorFlow's feed."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def load_run_file(out: str) -> dict | None:
    path = os.path.join(out, RUN_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return yaml.safe_load(f) or {}


def check_same_run(settings: TrainSettings) -> None:
    """Refuse an output folder that holds a run of another configuration."""
    existing = load_run_file(settings.out)
    if existing is None:
        if os.path.isdir(settings.out) and any(
                n.startswith(("model-", "checkpoint", "stats.json")) for n in os.listdir(settings.out)):
            raise SettingsError(f"--out {settings.out} holds training files but no {RUN_FILE}; "
                                "expected an empty or new folder, or one of this project's runs")
        return
    old = {k: v for k, v in (existing.get("settings") or {}).items() if k not in NOT_IDENTITY}
    new = settings.identity()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diff)
        raise SettingsError(f"--out {settings.out} belongs to a different configuration ({detail}); "
                            "expected a new folder or the same settings to resume")
