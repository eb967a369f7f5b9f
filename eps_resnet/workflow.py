"""The workflow's view of config/experiments.yaml: the table of training runs it describes.

The Snakefile stays thin: it asks this module which runs an experiment has, what each run's
folder is called and which `eps-resnet train` flags it needs, and whether a dataset can be had.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from .data import DATASETS
from .models.layouts import check_depth


class WorkflowConfigError(ValueError):
    """A configuration that the schema accepts but that cannot work; names the key."""


@dataclass(frozen=True)
class Run:
    experiment: str
    dataset: str
    family: str
    depth: int
    variant: str  # standard, side or epsilon
    epsilon: float | None
    epochs: int | None
    lr_schedule: str | None
    epsilon_start_epoch: int
    steps_per_epoch: int | None
    batch: int | None
    gpus: int
    seed: int
    data_workers: int | None

    @property
    def name(self) -> str:
        """The run folder's name: dataset, family (if not the dataset's own), depth, variant, ε,
        seed (if not 0). Distinct settings that matter give distinct folders."""
        parts = [self.dataset]
        if self.family != DATASETS[self.dataset].family:
            parts.append(self.family)
        parts += [f"d{self.depth}", self.variant]
        if self.variant == "epsilon":
            parts.append(f"e{self.epsilon:g}")
        if self.seed:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    def train_args(self, data_dir: str) -> str:
        """The `eps-resnet train` flags of this run (without --out and --threads). No --gpus: the
        job trains on the GPUs it was given (CUDA_VISIBLE_DEVICES from `eps-resnet gpu-run` or
        from SLURM), so the batch is split over exactly those."""
        args = ["--dataset", self.dataset, "--depth", self.depth, "--variant", self.variant,
                "--data-dir", f"{data_dir}/{self.dataset}", "--seed", self.seed]
        if self.family != DATASETS[self.dataset].family:
            args += ["--family", self.family]
        if self.variant == "epsilon":
            args += ["--epsilon", self.epsilon, "--epsilon-start-epoch", self.epsilon_start_epoch]
            if self.lr_schedule:
                args += ["--lr-schedule", self.lr_schedule]
        for flag, value in (("--epochs", self.epochs), ("--steps-per-epoch", self.steps_per_epoch),
                            ("--batch", self.batch), ("--data-workers", self.data_workers)):
            if value is not None:
                args += [flag, value]
        return " ".join(shlex.quote(str(a)) for a in args)


class RunTable:
    """Every run of every experiment of a (schema-validated) config."""

    def __init__(self, config: dict):
        self.config = config
        self.datasets = config.get("datasets") or {}
        workers = ((config.get("resources") or {}).get("train") or {}).get("data_workers")
        self.runs: dict[str, list[Run]] = {}
        for name, exp in config["experiments"].items():
            dataset = exp["dataset"]
            family = exp.get("family") or DATASETS[dataset].family
            if family != DATASETS[dataset].family and dataset not in ("digits",):
                raise WorkflowConfigError(
                    f"experiments.{name}.family: {family} does not train on {dataset}")
            epochs = exp.get("epochs") or {}
            runs = []
            for depth in exp["depths"]:
                try:
                    check_depth(family, depth)
                except ValueError as e:
                    raise WorkflowConfigError(f"experiments.{name}.depths: {e}") from None
                common = dict(experiment=name, dataset=dataset, family=family, depth=depth,
                              steps_per_epoch=exp.get("steps_per_epoch"), batch=exp.get("batch"),
                              gpus=exp.get("gpus", 1), seed=exp.get("seed", 0), data_workers=workers,
                              epsilon_start_epoch=exp.get("epsilon_start_epoch", 0))
                for variant in exp.get("variants", ["standard"]):
                    runs.append(Run(variant=variant, epsilon=None, epochs=epochs.get("baseline"),
                                    lr_schedule=None, **common))
                for eps in exp.get("epsilons", []):
                    runs.append(Run(variant="epsilon", epsilon=float(eps), epochs=epochs.get("epsilon"),
                                    lr_schedule=exp.get("lr_schedule"), **common))
            names = [r.name for r in runs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise WorkflowConfigError(f"experiments.{name}: runs listed twice: {', '.join(duplicates)}")
            self.runs[name] = runs

    def experiment(self, name: str) -> list[Run]:
        if name not in self.runs:
            raise WorkflowConfigError(f"experiment {name!r} is not in the config's experiments "
                                      f"({', '.join(self.runs)})")
        return self.runs[name]

    def get(self, experiment: str, run: str) -> Run:
        for r in self.experiment(experiment):
            if r.name == run:
                return r
        raise WorkflowConfigError(f"experiments.{experiment} has no run {run!r}")

    def dataset_available(self, dataset: str) -> bool:
        """ImageNet needs a configured path; the others download or are shipped."""
        return dataset != "imagenet" or bool((self.datasets.get(dataset) or {}).get("path"))

    def require_dataset(self, dataset: str) -> str:
        if not self.dataset_available(dataset):
            raise WorkflowConfigError(
                f"{dataset} has no path configured: set datasets.{dataset}.path in the config "
                "(config/experiments.yaml) to the extracted ILSVRC-2012 folder")
        return dataset

    def available_experiments(self) -> list[str]:
        return [name for name, runs in self.runs.items() if self.dataset_available(runs[0].dataset)]

    def prepare_flags(self, dataset: str) -> str:
        self.require_dataset(dataset)
        d = self.datasets.get(dataset) or {}
        flags = []
        if d.get("path"):
            flags += ["--source", d["path"]]
        if d.get("svhn_extra"):
            flags.append("--svhn-extra")
        if d.get("lmdb"):
            flags.append("--lmdb")
        return " ".join(shlex.quote(str(f)) for f in flags)
