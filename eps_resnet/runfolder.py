"""The run folder: what `eps-resnet train` writes, and how the other commands find it again.

A run folder holds ``log.log`` (plus ``log.log.<time>`` from earlier attempts), ``stats.json``
(tensorpack's per-epoch metrics), TensorBoard events, checkpoints ``model-<step>`` with their
``checkpoint`` index, and ``run.yaml`` (settings, resolved values, environment, status). The
workflow adds ``train.done`` when training finished, ``eval.json`` (validation of the full
network) and, for ε-ResNets, ``compressed/`` (``compressed.yaml``, ``model``, ``saved_model/``,
``eval.json``). Everything here is plain Python: no TensorFlow.
"""
from __future__ import annotations

import json
import os
import re

from .atomic import read_yaml, write_text, write_yaml
from .errors import EpsResnetError
from .settings import NOT_IDENTITY, SettingsError, TrainSettings

RUN_FILE = "run.yaml"
STATS_FILE = "stats.json"
LOG_FILE = "log.log"
CHECKPOINT_INDEX = "checkpoint"
CHECKPOINT_PREFIX = "model"
DONE_FILE = "train.done"
EVAL_FILE = "eval.json"
COMPRESSED_DIR = "compressed"
COMPRESSED_FILE = "compressed.yaml"
SAVED_MODEL = "saved_model"


class RunFolderError(EpsResnetError):
    """A run folder that lacks what a command needs; the message names it."""


def run_path(results_dir: str, experiment: str, run: str, *parts: str) -> str:
    """Where the workflow keeps a run (``{experiment}`` / ``{run}`` give Snakemake's pattern)."""
    return os.path.join(results_dir, "runs", experiment, run, *parts)


# -- run.yaml ----------------------------------------------------------------------------------
def load_run_file(out: str) -> dict | None:
    return read_yaml(os.path.join(out, RUN_FILE))


def write_run_file(out: str, record: dict) -> None:
    write_yaml(os.path.join(out, RUN_FILE), record)


def run_settings(run_dir: str) -> TrainSettings:
    """The settings a run folder was trained with (as recorded in its run.yaml)."""
    run = load_run_file(run_dir)
    if run is None or "settings" not in run:
        raise RunFolderError(f"{run_dir} has no {RUN_FILE}; expected a run folder of `eps-resnet train`")
    return TrainSettings(**run["settings"])


def check_same_run(settings: TrainSettings) -> None:
    """Refuse an output folder that holds a run of another configuration."""
    existing = load_run_file(settings.out)
    if existing is None:
        if os.path.isdir(settings.out) and any(
                n.startswith((f"{CHECKPOINT_PREFIX}-", CHECKPOINT_INDEX, STATS_FILE))
                for n in os.listdir(settings.out)):
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


# -- checkpoints -------------------------------------------------------------------------------
def latest_checkpoint(out: str) -> tuple[str, int] | None:
    """(path, global step) of the newest checkpoint named by the folder's index."""
    index = os.path.join(out, CHECKPOINT_INDEX)
    if not os.path.exists(index):
        return None
    with open(index) as f:
        m = re.search(r'^model_checkpoint_path:\s*"(.+)"', f.read(), re.M)
    if not m:
        return None
    path = m.group(1) if os.path.isabs(m.group(1)) else os.path.join(out, m.group(1))
    step = re.search(r"-(\d+)$", path)
    if not step or not os.path.exists(path + ".index"):
        return None
    return path, int(step.group(1))


def checkpoints(run_dir: str) -> dict[int, str]:
    """{global step: checkpoint path} of every checkpoint in a run folder."""
    out = {}
    for name in os.listdir(run_dir):
        m = re.fullmatch(rf"{CHECKPOINT_PREFIX}-(\d+)\.index", name)
        if m:
            out[int(m.group(1))] = os.path.join(run_dir, f"{CHECKPOINT_PREFIX}-{m.group(1)}")
    return out


def choose_checkpoint(run_dir: str, step: int | None) -> tuple[str, int]:
    """(path, step) of the checkpoint at ``step``, or of the newest one."""
    found = checkpoints(run_dir)
    if not found:
        raise RunFolderError(f"{run_dir} has no checkpoint ({CHECKPOINT_PREFIX}-<step>.index); "
                             "train it first")
    if step is None:
        latest = latest_checkpoint(run_dir)
        return latest if latest else (found[max(found)], max(found))
    if step not in found:
        raise RunFolderError(f"--step {step} has no checkpoint in {run_dir}; available steps: "
                             f"{', '.join(map(str, sorted(found)))}")
    return found[step], step


# -- stats.json --------------------------------------------------------------------------------
def read_stats(run_dir: str) -> list[dict]:
    """tensorpack's per-epoch metrics of a run folder ([] before the first epoch ends)."""
    path = os.path.join(run_dir, STATS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def stat_history(stats_file: str, name: str, before_epoch: int) -> list[float]:
    """Per-epoch values of ``name`` in a tensorpack stats.json, for epochs < ``before_epoch``."""
    if not os.path.exists(stats_file):
        return []
    with open(stats_file) as f:
        stats = json.load(f)
    return [float(s[name]) for s in stats
            if name in s and "epoch_num" in s and s["epoch_num"] < before_epoch]


def truncate_stats(out: str, start_epoch: int) -> None:
    """Drop stats.json entries of epochs that will be trained again (after a crash between the
    stats and the checkpoint of an epoch), so the history has each epoch once."""
    stats = read_stats(out)
    kept = [s for s in stats if s.get("epoch_num", 0) < start_epoch]
    if len(kept) != len(stats):
        write_text(os.path.join(out, STATS_FILE), json.dumps(kept))
