"""The workflow's view of config/experiments.yaml: the table of training runs it describes.

The Snakefile stays thin: it asks this module which runs an experiment has, what each run's
folder is called, and the `eps-resnet train` flags of each. A run's settings are the very
:class:`~eps_resnet.training.settings.TrainSettings` that `eps-resnet train` parses from those flags
(tested for every run of the shipped configs), validated by the same
:meth:`~eps_resnet.training.settings.TrainSettings.resolved` when the workflow starts.
"""
from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass

import yaml

from ..atomic import YAMLLimitError, read_yaml
from ..data import DATASETS
from ..errors import EpsResnetError
from ..training.runfolder import run_path
from ..training.settings import SettingsError, TrainSettings, default_of

#: Experiment keys that are training settings, by the settings field they set (the others:
#: depths, variants, epsilons, seeds, epochs and gpus make the runs; see :meth:`RunTable._runs`).
SETTINGS_KEYS = {"dataset": "dataset", "family": "family", "lr_schedule": "lr_schedule",
                 "epsilon_start_epoch": "epsilon_start_epoch", "steps_per_epoch": "steps_per_epoch",
                 "batch": "batch", "precision": "precision", "inference_gates": "inference_gates",
                 "closed_gates": "closed_gates", "cpu_kernels": "cpu_kernels", "gate": "gate"}
#: Of those, the keys that only the ε runs of an experiment take.
EPSILON_ONLY = ("lr_schedule", "epsilon_start_epoch", "inference_gates", "closed_gates", "gate")
#: The config key to name when a settings field is refused.
KEY_OF_FIELD = {**{v: k for k, v in SETTINGS_KEYS.items()}, "depth": "depths", "seed": "seeds",
                "svhn_extra": "datasets.svhn.svhn_extra",
                "epsilon": "epsilons", "variant": "variants", "epochs": "epochs",
                "data_workers": "resources.train.data_workers"}


#: The group of an experiment without a ``group:`` key; `all` builds this group (and the summary).
DEFAULT_GROUP = "main"

#: The project's folder (the package is installed from it in editable mode).
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The workflow's config schema (types, ranges and the workflow-wide defaults).
SCHEMA = os.path.join(PROJECT, "workflow", "schemas", "config.schema.yaml")


class WorkflowConfigError(EpsResnetError):
    """A configuration that cannot work; the message names the file or key."""


def load_config(path: str) -> dict:
    """A config file; a YAML syntax error names the file, line and column, and a file too large
    or whose aliases expand too far (atomic.read_yaml's limits) names the file."""
    try:
        config = read_yaml(path)
        if config is None:
            raise FileNotFoundError(2, "No such file or directory")
    except YAMLLimitError as e:
        raise WorkflowConfigError(f"{path}: {e}; expected a workflow config") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        raise WorkflowConfigError(f"{where}: {e.problem or e.context}; expected YAML "
                                  "(see config/README.md)") from None
    except OSError as e:
        raise WorkflowConfigError(f"{path}: {e.strerror}") from None
    if not isinstance(config, dict):
        raise WorkflowConfigError(f"{path}: expected a mapping of config keys, got "
                                  f"{type(config).__name__}")
    return config


def _as_schema_type(value, schema: dict):
    """A value given on Snakemake's command line as the schema wants it: `--config
    'resources={evaluate: {gpus: 0}}'` arrives with the nested 0 as the string "0"."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_as_schema_type(v, schema["items"]) for v in value]
    if not isinstance(value, str) or "string" in kinds:
        return value
    text = value.strip()
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind, parse in (("integer", int), ("number", float)):
        if kind in kinds:
            try:
                return parse(text)
            except ValueError:
                pass
    return value


#: Config paths that reach Snakemake's file patterns, where { and } are wildcards.
PATH_KEYS = ("data_dir", "results_dir", "figures_dir")


def _check_paths(config: dict) -> None:
    paths = {key: config.get(key) for key in PATH_KEYS}
    paths.update({f"datasets.{name}.path": (d or {}).get("path")
                  for name, d in (config.get("datasets") or {}).items()})
    for key, value in paths.items():
        if isinstance(value, str) and ("{" in value or "}" in value):
            raise WorkflowConfigError(f"{key}: {value!r} holds {{ or }}, which Snakemake reads as "
                                      "a wildcard in file names; expected a path without braces")


def validate_config(config: dict, schema_path: str = SCHEMA) -> dict:
    """Check ``config`` against the schema with ``snakemake.utils.validate`` and fill in the
    schema's defaults (in place), with strings from Snakemake's command line first turned into
    the numbers and booleans the schema wants. A problem becomes one line naming the key
    (``experiments.cifar10.depths: ...``), not Snakemake's message, which prints the schema."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    _as_schema_types(config, read_yaml(schema_path))
    try:
        validate(config, schema_path, set_default=True)
    except WorkflowError as e:
        # Snakemake raises its WorkflowError while handling jsonschema's error, which it
        # formats into its message: the error itself is the WorkflowError's context
        error = e.__context__
        if not isinstance(error, jsonschema.ValidationError):
            raise
        key = ".".join(str(p) for p in error.absolute_path) or "config"
        raise WorkflowConfigError(f"{key}: {error.message}") from None
    _check_paths(config)
    return config


def _as_schema_types(instance, schema: dict) -> None:
    """:func:`_as_schema_type` on every value of a config mapping, following the schema's
    ``properties``, ``patternProperties`` and ``additionalProperties`` down (in place)."""
    if not isinstance(instance, dict):
        return
    for key, value in instance.items():
        sub = (schema.get("properties") or {}).get(key)
        if sub is None:
            sub = next((s for pattern, s in (schema.get("patternProperties") or {}).items()
                        if re.search(pattern, str(key))), None)
        if sub is None and isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
        if isinstance(sub, dict):
            instance[key] = _as_schema_type(value, sub)
            _as_schema_types(instance[key], sub)


@dataclass(frozen=True)
class Run:
    experiment: str
    settings: TrainSettings  # what `eps-resnet train` gets, except --threads (Snakemake's)
    gpus: int  # GPUs the job asks the scheduler for; training uses the ones it is given

    @property
    def name(self) -> str:
        return run_name(self.settings)

    @property
    def dataset(self) -> str:
        return self.settings.dataset

    @property
    def variant(self) -> str:
        return self.settings.variant

    def train_args(self) -> str:
        """The `eps-resnet train` flags of this run, shell-quoted (without --threads: the rule
        passes the threads Snakemake gives the job). No --gpus: the job trains on the GPUs it
        was given (CUDA_VISIBLE_DEVICES from `eps-resnet gpu-run` or from SLURM), so the batch
        is split over exactly those."""
        return " ".join(shlex.quote(a) for a in self.settings.to_args(exclude=("threads",)))


def run_name(s: TrainSettings) -> str:
    """A run folder's name: dataset, family (if not the dataset's own), depth, variant, ε, seed
    (if not 0). Distinct settings that matter give distinct folders."""
    parts = [s.dataset]
    if s.family and s.family != DATASETS[s.dataset].family:
        parts.append(s.family)
    parts += [f"d{s.depth}", s.variant]
    if s.variant == "epsilon":
        parts.append(f"e{s.epsilon:g}")
    if s.seed:
        parts.append(f"s{s.seed}")
    return "-".join(parts)


class RunTable:
    """Every run of every experiment of a (schema-validated) config."""

    def __init__(self, config: dict):
        self.config = config
        self.datasets = config.get("datasets") or {}
        self.results_dir = config.get("results_dir", "results")
        self.data_dir = config.get("data_dir", "data")
        self.runs: dict[str, list[Run]] = {}
        for name, exp in config["experiments"].items():
            runs = self._runs(name, exp)
            names = [r.name for r in runs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise WorkflowConfigError(f"experiments.{name}: runs listed twice: {', '.join(duplicates)}")
            self.runs[name] = runs

    def _runs(self, name: str, exp: dict) -> list[Run]:
        workers = ((self.config.get("resources") or {}).get("train") or {}).get("data_workers")
        common = {field: exp[key] for key, field in SETTINGS_KEYS.items() if exp.get(key) is not None}
        if exp["dataset"] == "svhn":
            common["svhn_extra"] = bool((self.datasets.get("svhn") or {}).get("svhn_extra", True))
        epochs = exp.get("epochs") or {}
        variants = [(v, None) for v in exp.get("variants", ["standard"])]
        variants += [("epsilon", float(e)) for e in exp.get("epsilons", [])]
        runs = []
        # one run per depth, variant or ε, and seed
        for depth, (variant, eps), seed in itertools.product(
                exp["depths"], variants, exp.get("seeds", [default_of("seed")])):
            own = {k: v for k, v in common.items() if variant == "epsilon" or k not in EPSILON_ONLY}
            settings = TrainSettings(
                **own, depth=depth, variant=variant, epsilon=eps, seed=seed, data_workers=workers,
                epochs=epochs.get("epsilon" if variant == "epsilon" else "baseline"),
                data_dir=f"{self.data_dir}/{exp['dataset']}", out="")
            settings.out = run_path(self.results_dir, name, run_name(settings))
            _check(name, settings)
            runs.append(Run(experiment=name, settings=settings, gpus=exp.get("gpus", 1)))
        return runs

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

    def available_experiments(self, group: str | None = None) -> list[str]:
        """Experiments whose dataset can be had (of one group, if given)."""
        return [name for name, runs in self.runs.items() if self.dataset_available(runs[0].dataset)
                and (group is None or self.group_of(name) == group)]

    def all_experiments(self) -> list[str]:
        """What `all` builds: the group main, or every experiment of a config that puts none
        in it (whether their data can be had or not)."""
        return self.groups().get(DEFAULT_GROUP) or list(self.runs)

    def group_of(self, experiment: str) -> str:
        return self.config["experiments"][experiment].get("group") or DEFAULT_GROUP

    def groups(self) -> dict[str, list[str]]:
        """Every group and its experiments, in the config's order."""
        groups: dict[str, list[str]] = {}
        for name in self.runs:
            groups.setdefault(self.group_of(name), []).append(name)
        return groups

    def grid_figures(self, experiments) -> list[tuple[str, str, list[str]]]:
        """The grid figures (:data:`eps_resnet.results.GRID_KINDS`) over ``experiments``: (dataset,
        kind, its experiments) for each dataset whose runs span two depths of one network family
        ("depth") or, at one depth, two ε ("epsilon")."""
        by_dataset: dict[str, list[str]] = {}
        for e in experiments:
            by_dataset.setdefault(self.runs[e][0].dataset, []).append(e)
        figures = []
        for dataset, exps in by_dataset.items():
            runs = [r.settings for e in exps for r in self.runs[e]]
            depths: dict[str, set] = {}  # per network family: depths compare within one
            for s in runs:
                depths.setdefault(s.family or DATASETS[dataset].family, set()).add(s.depth)
            if any(len(v) > 1 for v in depths.values()):
                figures.append((dataset, "depth", exps))
            epsilons: dict[int, set] = {}
            for s in runs:
                if s.variant == "epsilon":
                    epsilons.setdefault(s.depth, set()).add(s.epsilon)
            if any(len(v) > 1 for v in epsilons.values()):
                figures.append((dataset, "epsilon", exps))
        return figures

    def prepare_flags(self, dataset: str) -> str:
        self.require_dataset(dataset)
        d = self.datasets.get(dataset) or {}
        flags = []
        if d.get("path"):
            flags += ["--source", d["path"]]
        if dataset == "svhn" and d.get("svhn_extra") is False:
            flags.append("--no-svhn-extra")
        if d.get("lmdb"):
            flags.append("--lmdb")
        return " ".join(shlex.quote(str(f)) for f in flags)


def _check(experiment: str, settings: TrainSettings) -> None:
    """Validate a run as `eps-resnet train` will, naming the config key that is wrong."""
    try:
        settings.resolved()
    except SettingsError as e:
        flag = re.match(r"--([a-z-]+)", str(e))
        field = flag.group(1).replace("-", "_") if flag else None
        key = KEY_OF_FIELD.get(field)
        where = (key if key and key.startswith(("resources.", "datasets."))
                 else f"experiments.{experiment}" + (f".{key}" if key else ""))
        raise WorkflowConfigError(f"{where}: {e}") from None
