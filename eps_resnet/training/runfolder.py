"""The run folder: what `eps-resnet train` writes, and how the other commands find it again.

A run folder holds ``log.log`` (plus ``log.log.<time>`` from earlier attempts), ``stats.json``
(tensorpack's per-epoch metrics), TensorBoard events, checkpoints ``model-<step>`` with their
``checkpoint`` index, and ``run.yaml`` (settings, resolved values, environment, status). The
workflow adds ``train.done`` when training finished, ``eval.json`` (validation of the full
network) and, for ε-ResNets, ``compressed/`` (``compressed.yaml``, ``model``, ``saved_model/``,
``eval.json``). Importing this module starts no TensorFlow (reading a checkpoint back does); the
log's format is read in :mod:`.runlog`.
"""
from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import re
import time
import typing
from contextlib import contextmanager

from ..atomic import (PlantedLinkError, open_lock_file, read_json, read_yaml, write_text,
                      write_yaml)
from ..errors import EpsResnetError, first_line
from ..logs import NOTE
from .settings import NOT_IDENTITY, SettingsError, TrainSettings, default_of

LOG = logging.getLogger(__name__)

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
LOCK_FILE = ".lock"


class RunFolderError(EpsResnetError):
    """A run folder that lacks what a command needs; the message names it."""


def run_path(results_dir: str, experiment: str, run: str, *parts: str) -> str:
    """Where the workflow keeps a run (``{experiment}`` / ``{run}`` give Snakemake's pattern)."""
    return os.path.join(results_dir, "runs", experiment, run, *parts)


# -- run.yaml ----------------------------------------------------------------------------------
def read_record(path: str, writer: str) -> dict | None:
    """One of the run folder's YAML records (run.yaml, compressed.yaml) as a mapping; None when
    it does not exist; a one-line RunFolderError naming it when it is not what ``writer``
    writes."""
    import yaml

    try:
        record = read_yaml(path)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        problem = f"is not readable YAML ({first_line(e)[:100]})"
    else:
        if record is None or (isinstance(record, dict) and isinstance(record.get("settings", {}), dict)):
            return record
        problem = "does not hold the mapping it should"
    raise RunFolderError(f"{path} {problem}; expected the record `{writer}` writes (move it "
                         "away, or the folder, to start over)")


def load_run_file(out: str) -> dict | None:
    return read_record(os.path.join(out, RUN_FILE), "eps-resnet train")


def write_run_file(out: str, record: dict) -> None:
    write_yaml(os.path.join(out, RUN_FILE), record)


def settings_of(record: dict, path: str) -> TrainSettings:
    """The TrainSettings a record (run.yaml, compressed.yaml) holds under ``settings``, each
    value of its field's type."""
    try:
        settings = TrainSettings(**record["settings"])
    except (KeyError, TypeError) as e:
        raise RunFolderError(f"{path} has no valid settings ({first_line(e)[:100]}); "
                             f"{_SETTINGS_EXPECTED}") from None
    check_setting_types(vars(settings), path)
    return settings


def check_setting_types(values: dict, path: str) -> None:
    """Each of ``values`` (settings by name) of its TrainSettings field's type; RunFolderError
    naming the file, the key and the type otherwise."""
    for name, value in values.items():
        kind = _SETTING_TYPES.get(name)
        if kind is None:
            continue
        allowed = typing.get_args(kind) or (kind,)
        if float in allowed:
            allowed += (int,)  # YAML writes 2.0 as 2.0, a hand edit as 2
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise RunFolderError(f"{path}: settings.{name} is {value!r}; {_SETTINGS_EXPECTED} "
                                 f"(of type {names})")


#: What a record's settings must be, as the errors say it.
_SETTINGS_EXPECTED = "expected the settings `eps-resnet train` records"
#: The type of each of TrainSettings' fields (int, str, float | None, ...).
_SETTING_TYPES = typing.get_type_hints(TrainSettings)


def run_settings(run_dir: str) -> TrainSettings:
    """The settings a run folder was trained with (as recorded in its run.yaml)."""
    run = load_run_file(run_dir)
    if run is None or "settings" not in run:
        raise RunFolderError(f"{run_dir} has no {RUN_FILE}; expected a run folder of `eps-resnet train`")
    return settings_of(run, os.path.join(run_dir, RUN_FILE))


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
    if isinstance(existing.get("settings"), dict):
        check_setting_types(existing["settings"], os.path.join(settings.out, RUN_FILE))
    old = {k: v for k, v in (existing.get("settings") or {}).items() if k not in NOT_IDENTITY}
    new = settings.identity()
    # a setting added since the record was written: the record's run had its default
    old.update({k: default_of(k) for k in new if k not in old and default_of(k) is not None})
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diff)
        raise SettingsError(f"--out {settings.out} belongs to a different configuration ({detail}); "
                            "expected a new folder or the same settings to resume")


# -- one process per folder ------------------------------------------------------------------
#: The folders this process holds.
_HELD: set[str] = set()


@contextmanager
def lock(folder: str, command: str):
    """Hold ``folder`` for this process (created if needed) while the block runs.

    A POSIX record lock on ``folder/.lock``: the OS releases it when the process ends, however
    it ends, so a killed run never leaves a stale lock, and unlike flock it is not shared with
    the data workers the process forks (a worker still alive after training would otherwise
    keep the folder locked). A second holder, in another process or this one, is refused at
    once with a message naming the process that has it."""
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    key = os.path.realpath(folder)
    try:
        f = open_lock_file(path)
    except PlantedLinkError as e:
        raise RunFolderError(e.strerror) from None
    ok = held = False
    try:
        try:
            if key in _HELD:  # (POSIX locks do not exclude the process that holds them)
                raise BlockingIOError
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            f.seek(0)
            raise RunFolderError(f"{folder} is in use by {_holder(f.read())}; wait for it to "
                                 "finish or stop it (one process writes into a folder at a "
                                 "time)") from None
        _HELD.add(key)
        held = True
        try:
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()} ({command}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            f.flush()
        except OSError as e:  # a full disk: said with the file's name (a write error has none)
            raise RunFolderError(f"{path} could not be written ({e.strerror or e}); make room "
                                 "and run the same command again") from None
        yield
        ok = True
    finally:
        if not ok and created and os.listdir(folder) == [LOCK_FILE]:
            os.unlink(path)  # a command that failed leaves no folder it made behind
            os.rmdir(folder)
        if held:
            _HELD.discard(key)
        f.close()  # releases the lock


def _holder(text: str) -> str:
    """Who holds a lock, from its file: the writer that wrote it if that process still runs;
    otherwise readers, who write nothing."""
    m = re.match(r"process (\d+) ", text)
    if m:
        try:
            os.kill(int(m.group(1)), 0)
            return text.strip()
        except ProcessLookupError:
            pass
        except PermissionError:  # another user's live process
            return text.strip()
    return "another process (reading it)"


@contextmanager
def reading(folder: str, command: str):
    """Read a run folder while the block runs (choose its checkpoint, read it): a shared POSIX
    lock on ``folder/.lock``, which readers hold together and training excludes, so a reader
    never takes a checkpoint that training is about to replace or delete. Refused at once,
    naming the process, while training holds the folder. A folder without a lock file (nothing
    ever trained there) or whose lock file this user cannot read is read as it is."""
    path = os.path.join(folder, LOCK_FILE)
    if os.path.realpath(folder) in _HELD:  # this process writes it: nothing to exclude
        yield
        return
    try:
        f = open_lock_file(path, readonly=True)
    except PlantedLinkError as e:
        raise RunFolderError(e.strerror) from None
    except OSError:  # none (nothing trained there) or unreadable (another user's folder)
        yield
        return
    with f:
        try:
            fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            raise RunFolderError(f"{folder} is in use by {_holder(f.read())}; wait for it to "
                                 f"finish or stop it ({command} reads a run only while nothing "
                                 "writes it)") from None
        yield  # closing the file releases the lock


# -- checkpoints -------------------------------------------------------------------------------
def _index_path(out: str) -> str | None:
    """The checkpoint the folder's index names, or None when the index is missing or damaged."""
    index = os.path.join(out, CHECKPOINT_INDEX)
    try:
        with open(index, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r'^model_checkpoint_path:\s*"(.+)"', text, re.M)
    return (m.group(1) if os.path.isabs(m.group(1)) else os.path.join(out, m.group(1))) if m else None


def latest_checkpoint(out: str) -> tuple[str, int] | None:
    """(path, global step) of the newest checkpoint named by the folder's index."""
    path = _index_path(out)
    step = re.search(r"-(\d+)$", path) if path else None
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
    """(path, step) of the checkpoint at ``step``, or else of the newest one that reads back
    (whatever the ``checkpoint`` index says: a stale index must not make a command report an
    older model's numbers). Which one is noted, and when the index names another."""
    found = checkpoints(run_dir)
    if not found:
        raise RunFolderError(f"{run_dir} has no checkpoint ({CHECKPOINT_PREFIX}-<step>.index); "
                             "train it first")
    if step is not None:
        if step not in found:
            raise RunFolderError(f"--step {step} has no checkpoint in {run_dir}; available "
                                 f"steps: {', '.join(map(str, sorted(found)))}")
        return found[step], step
    problems = []
    for step in sorted(found, reverse=True):
        problem = checkpoint_problem(found[step])
        if problem is None:
            break
        problems.append(f"{CHECKPOINT_PREFIX}-{step}: {problem}")
    else:
        raise RunFolderError(f"{run_dir}: no checkpoint reads back ({'; '.join(problems)})")
    named = latest_checkpoint(run_dir)
    skipped = f" ({'; '.join(problems)})" if problems else ""
    if named is not None and named[1] != step:
        LOG.log(NOTE, f"{run_dir}: the checkpoint index names {CHECKPOINT_PREFIX}-{named[1]}; "
                f"using {CHECKPOINT_PREFIX}-{step}, the newest that reads back{skipped}")
    else:
        LOG.log(NOTE, f"{run_dir}: using checkpoint {CHECKPOINT_PREFIX}-{step}{skipped}")
    return found[step], step


def read_checkpoint(path: str) -> dict:
    """Every variable of a checkpoint, {name: value}; read once, so that damage shows here and
    the restores and checks that follow need no second read."""
    from ..compat import import_tf

    tf = import_tf()
    try:
        reader = tf.train.load_checkpoint(path)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except Exception as e:  # noqa: BLE001 (TensorFlow raises many types for a damaged file)
        raise RunFolderError(f"checkpoint {path} cannot be read ({first_line(e) or type(e).__name__}); "
                             "it may be corrupted") from None


def checkpoint_problem(path: str) -> str | None:
    """Why the checkpoint at ``path`` (``.../model-<step>``) cannot be restored, or None when
    every tensor in it reads back (TensorFlow checks each one's size and checksum)."""
    if not os.path.exists(path + ".index"):
        return "its .index file is missing"
    if not glob.glob(glob.escape(path) + ".data-*"):
        return "its .data file is missing"
    try:
        read_checkpoint(path)
    except RunFolderError as e:
        return f"it does not read back ({str(e).split('(', 1)[-1].rsplit(')', 1)[0][:160]})"
    return None


def _checkpoint_steps(out: str) -> dict[int, list[str]]:
    """{step: [file names]} of every ``model-<step>.*`` file in the folder, complete or not."""
    found: dict[int, list[str]] = {}
    for name in os.listdir(out):
        m = re.fullmatch(rf"{CHECKPOINT_PREFIX}-(\d+)\.(index|data-\d+-of-\d+|meta)", name)
        if m:
            found.setdefault(int(m.group(1)), []).append(name)
    return found


def resume_point(out: str) -> tuple[str, int] | None:
    """The newest checkpoint of a run folder that restores, as (path, step), repairing the
    folder on the way: newer checkpoints that lack a file or do not read back are set aside
    (renamed ``*.damaged-<time>``, never deleted), and a missing or damaged ``checkpoint``
    index is rewritten from the model files present. None for a folder without checkpoint
    files; a folder whose checkpoint files all fail is refused (nothing is renamed then)."""
    if not os.path.isdir(out):
        return None
    steps = _checkpoint_steps(out)
    named = _index_path(out)
    index_exists = os.path.exists(os.path.join(out, CHECKPOINT_INDEX))
    if not steps:
        if index_exists:
            raise RunFolderError(f"{out} has a {CHECKPOINT_INDEX} index but no {CHECKPOINT_PREFIX}-"
                                 "<step> files; expected the run's checkpoints, or a new --out")
        return None
    problems = {}
    for step in sorted(steps, reverse=True):
        path = os.path.join(out, f"{CHECKPOINT_PREFIX}-{step}")
        problem = checkpoint_problem(path)
        if problem is None:
            break
        problems[step] = problem
    else:
        detail = "; ".join(f"{CHECKPOINT_PREFIX}-{s}: {p}" for s, p in problems.items())
        raise RunFolderError(f"{out} holds checkpoint files but none restores ({detail}); move "
                             "them away to start over, or use a new --out")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for bad, problem in problems.items():
        for name in steps[bad]:
            os.replace(os.path.join(out, name), os.path.join(out, f"{name}.damaged-{stamp}"))
        LOG.warning(f"{out}: set aside {CHECKPOINT_PREFIX}-{bad} ({problem}); resuming from "
             f"{CHECKPOINT_PREFIX}-{step}")
    if named != path:
        if index_exists and not problems:
            LOG.warning(f"{out}: the {CHECKPOINT_INDEX} index is damaged or out of date; rebuilt from "
                 f"the model files ({CHECKPOINT_PREFIX}-{step})")
        elif not index_exists:
            LOG.warning(f"{out}: the {CHECKPOINT_INDEX} index is missing; rebuilt from the model files "
                 f"({CHECKPOINT_PREFIX}-{step})")
        write_index(out, [s for s in sorted(steps) if s not in problems])
    return path, step


def write_index(out: str, steps: list[int]) -> None:
    """The ``checkpoint`` index TensorFlow's Saver keeps, naming ``steps`` (newest last)."""
    names = [f"{CHECKPOINT_PREFIX}-{s}" for s in steps]
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
    write_text(os.path.join(out, CHECKPOINT_INDEX), "\n".join(lines) + "\n")


# -- stats.json --------------------------------------------------------------------------------
def read_stats(run_dir: str) -> list[dict]:
    """tensorpack's per-epoch metrics of a run folder ([] before the first epoch ends)."""
    return load_stats(os.path.join(run_dir, STATS_FILE))


def load_stats(path: str) -> list[dict]:
    """A tensorpack stats.json ([] when it does not exist); one-line error when unreadable."""
    if not os.path.exists(path):
        return []
    stats = read_json(path, "tensorpack's list of per-epoch metrics", RunFolderError)
    if not isinstance(stats, list):
        raise RunFolderError(f"{path} holds a {type(stats).__name__}; expected tensorpack's list of "
                             "per-epoch metrics")
    return stats


def stat_history(stats_file: str, name: str, before_epoch: int) -> list[float]:
    """Per-epoch values of ``name`` in a tensorpack stats.json, for epochs < ``before_epoch``."""
    stats = load_stats(stats_file)
    return [float(s[name]) for s in stats
            if name in s and "epoch_num" in s and s["epoch_num"] < before_epoch]


def truncate_stats(out: str, start_epoch: int) -> None:
    """Drop stats.json entries of epochs that will be trained again (after a crash between the
    stats and the checkpoint of an epoch), so the history has each epoch once."""
    stats = read_stats(out)
    kept = [s for s in stats if s.get("epoch_num", 0) < start_epoch]
    if len(kept) != len(stats):
        write_text(os.path.join(out, STATS_FILE), json.dumps(kept))
