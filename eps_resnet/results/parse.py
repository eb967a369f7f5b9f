"""Run folders -> one tidy long table (pandas): a row per (run, epoch, step, metric[, block]).

Reads this project's runs (stats.json + run.yaml, with log.log as fallback) and the log.log of
runs of the original tensorpack implementation (the log's format: :mod:`eps_resnet.training.runlog`).
Per-block discard values
(``res2.3/is_discarded``; the original ImageNet script's ``group1/block3/...`` too) become rows
of metric ``is_discarded`` with the block's name and group as columns.
"""
from __future__ import annotations

import json
import logging
import os
import re

import pandas as pd

from ..atomic import atomic_path
from ..errors import EpsResnetError
from ..training.runfolder import STATS_FILE, load_run_file
from ..training.runlog import Anomalies, epoch_spans, log_files, read_log

LOG = logging.getLogger(__name__)

COLUMNS = ["run", "experiment", "dataset", "family", "depth", "variant", "epsilon", "seed",
           "epoch", "step", "metric", "block", "group", "value"]

#: per-block metrics: training's moving average and validation's mean of the gate's verdict and
#: of the branch's max|F| (what the gate compares with ε)
BLOCK_METRICS = ("is_discarded", "val_is_discarded", "gate/peak", "gate/val_peak")
#: Metrics this project and the original write; anything else is kept but counted as unknown.
KNOWN = {
    "train_error", "train_error_top5", "val_error", "val_error_top5", "cost",
    "cross_entropy_loss", "wd_cost", "learning_rate", "epsilon", "discarded_cnt",
    "discarded_ratio", "discarded_ratio_original", "val_cross_entropy_loss", "side_output/val_error",
    "side_output/val_error_top5", "side_output/train_error", "side_output/train_error_top5",
    "side_output/cross_entropy_loss", "QueueInput/queue_size", *BLOCK_METRICS,
    # the original's names
    "train-error-top1", "train-error-top5", "val-error-top1", "val-error-top5", "xentropy-loss",
    "l2_regularize_loss", "response_abs_max", "response_mean_max",
}
#: The original's spellings mapped to this project's.
ALIASES = {"val-error-top1": "val_error", "val-error-top5": "val_error_top5",
           "train-error-top1": "train_error", "train-error-top5": "train_error_top5",
           "xentropy-loss": "cross_entropy_loss", "l2_regularize_loss": "wd_cost"}
BLOCK = re.compile(r"^(?:.*/)?(res(\d+)\.(\d+))/(" + "|".join(BLOCK_METRICS) + r")$")
ORIGINAL_IMAGENET_BLOCK = re.compile(r"^group(\d+)/block(\d+)/(is_discarded)$")
SIDE = re.compile(r"^(?:group\d+/)?side_output/[^/]*?/?(val_error|train_error)$")
RUN_NAME = re.compile(r"(?P<dataset>cifar100|cifar10|svhn|imagenet).*?e_(?P<eps>\d+(?:\.\d+)?)"
                      r"(?:.*?(?:n_(?P<n>\d+)|d_(?P<d>\d+)))?")


#: The original's training scripts by name (github.com/yuxwind/epsilon-resnet, scripts/): the
#: dataset (None: its --cifar10 / --cifar100 flag says), the family, and the depth and ε a run
#: got when its command line left -n / -d and -e out (the scripts' defaults and constants).
ORIGINAL_SCRIPTS = {
    "cifarEpsilonResnet.py": (None, "cifar", 6 * 18 + 2, 2.5),
    "svhnEpsilonResnet.py": ("svhn", "cifar", 6 * 18 + 2, 1.5),
    "imagenetEpsilonResnet.py": ("imagenet", "imagenet", 18, 2.0),
}
ARGV_LINE = re.compile(r"\]\s+Argv:\s+(.*?)\s*$")


class ParseError(EpsResnetError):
    """A run folder that cannot be read at all; the message names it."""


def _canonical(name: str):
    """(metric, block, group) of a stats name."""
    m = BLOCK.match(name)
    if m:
        return m.group(4), m.group(1), int(m.group(2))
    m = ORIGINAL_IMAGENET_BLOCK.match(name)
    if m:  # the original ImageNet script counted groups from 0
        g, i = int(m.group(1)) + 1, int(m.group(2))
        return m.group(3), f"res{g}.{i}", g
    m = SIDE.match(name)
    if m and name not in KNOWN:
        return f"side_output/{m.group(1)}", None, None
    return ALIASES.get(name, name), None, None


def _rows_from_records(records, anomalies: Anomalies):
    """records: iterable of (epoch, step, name, value)."""
    rows = []
    for epoch, step, name, value in records:
        metric, block, group = _canonical(name)
        if metric not in KNOWN:
            anomalies.add("unknown metric(s)")
        try:
            value = float(value)
        except (TypeError, ValueError):
            anomalies.add("unreadable value(s)")
            continue
        rows.append({"epoch": epoch, "step": step, "metric": metric, "block": block,
                     "group": group, "value": value})
    return rows


def read_stats_json(path: str, anomalies: Anomalies):
    """Records of a tensorpack stats.json; a file cut short while being written is tolerated."""
    with open(path) as f:
        text = f.read()
    try:
        stats = json.loads(text)
    except json.JSONDecodeError:
        anomalies.add("truncated stats.json")
        stats = _salvage_json_list(text)
    records = []
    for entry in stats:
        if not isinstance(entry, dict) or "epoch_num" not in entry:
            anomalies.add("malformed stats entries")
            continue
        epoch, step = int(entry["epoch_num"]), int(entry.get("global_step", -1))
        records += [(epoch, step, k, v) for k, v in entry.items() if k not in ("epoch_num", "global_step")]
    return records


def _salvage_json_list(text: str) -> list:
    """The complete objects at the start of a truncated JSON list."""
    decoder, out, i = json.JSONDecoder(), [], text.find("[") + 1
    while i > 0:
        while i < len(text) and text[i] in " \n\r\t,":
            i += 1
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            break
        out.append(obj)
    return out


def original_command(run_dir: str) -> str | None:
    """The command line an original run folder's log starts with (tensorpack's ``Argv:`` line),
    from the oldest log that has one."""
    for path in log_files(run_dir):
        with open(path, errors="replace") as f:
            for _, line in zip(range(5), f):
                m = ARGV_LINE.search(line)
                if m:
                    return m.group(1)
    return None


def metadata_from_command(command: str) -> dict:
    """Dataset, family, depth, variant and ε of an original run from its command line, as its
    script read them (``cifarEpsilonResnet.py --gpu 1 -n 18 -e 2.5 -o ... --cifar100``;
    ``svhnEpsilonResnet.py ... -n 18 -e 1.5``; ``imagenetEpsilonResnet.py ... -d 101 -e 2.1``);
    {} for a script this project does not know."""
    import argparse
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    script = os.path.basename(words[0]) if words else ""
    if script not in ORIGINAL_SCRIPTS:
        return {}
    dataset, family, depth, epsilon = ORIGINAL_SCRIPTS[script]
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("-n", "--num_units", type=int)
    parser.add_argument("-d", "--depth", type=int)
    parser.add_argument("-e", "--epsilon", type=float)
    parser.add_argument("--cifar10", dest="dataset", action="store_const", const="cifar10")
    parser.add_argument("--cifar100", dest="dataset", action="store_const", const="cifar100")
    try:
        args, _ = parser.parse_known_args(words[1:])
    except (argparse.ArgumentError, SystemExit):
        return {}
    if args.num_units is not None and family == "cifar":
        depth = 6 * args.num_units + 2
    if args.depth is not None and family == "imagenet":
        depth = args.depth
    return {"dataset": dataset or args.dataset, "family": family, "depth": depth,
            "variant": "epsilon", "epsilon": epsilon if args.epsilon is None else args.epsilon}


def run_metadata(run_dir: str) -> dict:
    """Experiment, dataset, depth, variant, ε and seed from run.yaml; for a run folder of the
    original implementation, from the command line its log starts with (:func:`original_command`),
    else guessed from the folder's name (``train_log.cifar10-e_2.5-n_18``) with a warning naming
    what stays unknown."""
    meta = {"run": os.path.basename(os.path.normpath(run_dir)), "experiment": None, "dataset": None,
            "family": None, "depth": None, "variant": None, "epsilon": None, "seed": None}
    run = load_run_file(run_dir)
    if run is not None:
        s = run.get("settings") or {}
        meta.update({k: s.get(k) for k in ("dataset", "family", "depth", "variant", "epsilon", "seed")})
        meta["experiment"] = run.get("experiment")
        if run.get("status") == "finished" and isinstance(s.get("epochs"), int):
            meta["finished_epochs"] = s["epochs"]
        return meta
    command = original_command(run_dir)
    found = metadata_from_command(command) if command else {}
    if found:
        meta.update(found, command=command)
        return meta
    m = RUN_NAME.search(meta["run"])
    if m:
        meta["dataset"], meta["epsilon"], meta["variant"] = m["dataset"], float(m["eps"]), "epsilon"
        meta["family"] = "imagenet" if m["dataset"] == "imagenet" else "cifar"
        if m["n"]:
            meta["depth"] = 6 * int(m["n"]) + 2
        elif m["d"]:
            meta["depth"] = int(m["d"])
    missing = [k for k in ("dataset", "depth", "epsilon") if meta[k] is None]
    source = (f"its command line ({command[:60]}) is not one of the original's "
              f"{', '.join(ORIGINAL_SCRIPTS)}" if command else
              "its log has no Argv: line, the original's first line")
    LOG.warning(f"{meta['run']}: {source}; "
                + (f"unknown: {', '.join(missing)}" if missing else "taken from the folder's name")
                + ("" if meta["depth"] else " (the paper's discarded ratio needs the depth)"))
    return meta


def parse_run(run_dir: str, experiment: str | None = None) -> pd.DataFrame:
    """The tidy table of one run folder. Raises ParseError if nothing in it can be read."""
    if not os.path.isdir(run_dir):
        raise ParseError(f"{run_dir} is not a folder; expected a run folder with stats.json or log.log")
    anomalies = Anomalies()
    stats_path = os.path.join(run_dir, STATS_FILE)
    logs = log_files(run_dir)
    records = []
    try:
        if os.path.exists(stats_path):
            records = read_stats_json(stats_path, anomalies)
        if logs:
            # The log goes further than stats.json when the last epochs' stats were not written.
            last = max((r[0] for r in records), default=0)
            extra = [r for r in read_log(logs, anomalies) if r[0] > last]
            if extra and records:  # (the original's folders have no stats.json to fall short)
                anomalies.add("epoch(s) taken from log.log", len({r[0] for r in extra}))
            records += extra
    except OSError as e:
        raise ParseError(f"{run_dir} is unreadable ({e})") from None
    if not records:
        raise ParseError(f"{run_dir} holds no metrics; expected stats.json or log.log of a "
                         "tensorpack run")
    meta = run_metadata(run_dir)
    if experiment:
        meta["experiment"] = experiment
    df = pd.DataFrame(_rows_from_records(records, anomalies))
    _check_finished(df, meta, run_dir)
    epochs = df.groupby("epoch")["metric"].nunique()
    partial = int((epochs < epochs.max()).sum())
    if partial:
        anomalies.add("epoch(s) with missing metrics", partial)
    anomalies.warn(meta["run"])
    if meta.get("command"):
        _check_logged_epsilon(df, meta)
    for k in ("run", "experiment", "dataset", "family", "depth", "variant", "epsilon", "seed"):
        df[k] = meta[k]
    if df["variant"].isna().all():
        df["variant"] = "epsilon" if (df["metric"] == "is_discarded").any() else "standard"
    df = _with_original_ratio(df, meta)
    return df[COLUMNS].sort_values(["epoch", "metric", "block"], na_position="first",
                                   kind="stable").reset_index(drop=True)


def _check_logged_epsilon(df: pd.DataFrame, meta: dict) -> None:
    """Warn when an original run's log shows another ε than its command line gave: the original's
    ImageNet script gates with its constant EPSILON whatever -e says. (An ε of 0 is the CIFAR
    script's delay before ε applies, not a difference.)"""
    logged = df[df["metric"] == "epsilon"].sort_values("epoch")["value"]
    if logged.empty or not logged.iat[-1] or meta["epsilon"] is None:
        return
    if abs(float(logged.iat[-1]) - float(meta["epsilon"])) > 1e-6:
        LOG.warning(f"{meta['run']}: its log's epsilon is {logged.iat[-1]:g} where its command "
                    f"line says -e {meta['epsilon']:g}; kept ε = {meta['epsilon']:g}, the run's "
                    "label (the original's ImageNet script gates with its constant EPSILON "
                    "whatever -e says)")


def _with_original_ratio(df: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """Add ``discarded_ratio_original``: discarded_cnt over the original's denominator (3n + 2
    in the CIFAR family), the definition of the paper's numbers."""
    from ..models.layouts import check_depth, make_layout, original_ratio_denominator

    cnt = df[df["metric"] == "discarded_cnt"]
    if cnt.empty or not meta.get("family") or meta.get("depth") is None:
        return df
    try:
        check_depth(meta["family"], int(meta["depth"]))
    except ValueError:
        return df
    denominator = original_ratio_denominator(make_layout(meta["family"], int(meta["depth"])))
    extra = cnt.assign(metric="discarded_ratio_original", value=cnt["value"].astype(float) / denominator)
    return pd.concat([df, extra], ignore_index=True)


def _check_finished(df: pd.DataFrame, meta: dict, run_dir: str) -> None:
    """A run that run.yaml says finished must show every epoch's validation error: a stats.json
    or log cut short is refused, never read as a shorter run."""
    epochs = meta.get("finished_epochs")
    whole = set(df.loc[df["metric"] == "val_error", "epoch"]) if epochs else set()
    lacking = sorted(set(range(1, (epochs or 0) + 1)) - whole)
    if lacking:
        raise ParseError(f"{run_dir}: run.yaml says {epochs} epochs finished, but its stats.json "
                         f"and log lack the validation error of epoch(s) {epoch_spans(lacking)} "
                         "(cut short or deleted); run "
                         "`eps-resnet train` on it again to rebuild stats.json from the log")


def parse_runs(run_dirs, experiment: str | None = None) -> pd.DataFrame:
    frames = [parse_run(d, experiment) for d in run_dirs]
    names = [f["run"].iat[0] for f in frames]
    for frame, d, name in zip(frames, run_dirs, names):
        if names.count(name) > 1:  # two folders of the same name: tell them apart by path
            frame["run"] = os.path.normpath(d)
    return pd.concat(frames, ignore_index=True)


def write_csv(df: pd.DataFrame, path: str) -> None:
    """Write through a temporary name so a reader never sees half a table."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


#: Settings and resolved values of a run that a reader of the report wants beside its figures.
SETTINGS_SHOWN = ("dataset", "family", "depth", "variant", "epsilon", "epsilon_start_epoch", "seed",
                  "epochs", "batch", "lr_schedule", "inference_gates", "closed_gates", "precision",
                  "deterministic")


def device_name(record: dict) -> str | None:
    """What a run.yaml says the run trained on, by name: the GPUs' names, or the CPU's model."""
    devices = (record.get("resolved") or {}).get("devices") or {}
    env = record.get("environment") or {}
    if devices.get("device") == "gpu":
        names = (env.get("gpus") or {}).get("names") or []
        return ", ".join(names) or "GPU"
    model = (env.get("cpu") or {}).get("model")
    return f"CPU: {model}" if model else devices.get("device")


def settings_table(run_dirs) -> pd.DataFrame:
    """One row per run folder of this project: its settings as run.yaml records them, the
    device it ran on and its status."""
    rows = []
    for run in run_dirs:
        record = load_run_file(run)
        if not record:
            continue
        s, resolved = record.get("settings") or {}, record.get("resolved") or {}
        devices = resolved.get("devices") or {}
        rows.append({"run": os.path.basename(os.path.normpath(run)),
                     **{k: s.get(k) for k in SETTINGS_SHOWN},
                     "steps_per_epoch": resolved.get("steps_per_epoch"),
                     "device": device_name(record), "towers": devices.get("towers"),
                     "status": record.get("status"), "commit": (record.get("environment") or {}).get("git_commit")})
    return pd.DataFrame(rows)


#: The settings page's two tables (what was trained; how and where), each narrow enough for
#: the report's pane, under names a reader types or reads in the paper.
SETTINGS_PAGE = (
    ("What was trained", {"run": "run", "dataset": "dataset", "family": "family", "depth": "depth",
                          "variant": "variant", "epsilon": "ε", "epsilon_start_epoch": "ε from epoch",
                          "seed": "seed", "epochs": "epochs", "steps_per_epoch": "steps per epoch",
                          "batch": "batch"}),
    ("How it ran", {"run": "run", "lr_schedule": "learning-rate schedule",
                    "inference_gates": "gates at validation", "closed_gates": "closed gates",
                    "precision": "precision",
                    "deterministic": "deterministic", "device": "device", "towers": "towers",
                    "status": "status", "commit": "commit"}),
)


def settings_page_tables(settings: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """:func:`settings_table` as the report shows it: two narrower tables with readable column
    names, the ε-only options blank for other variants, the commit shortened to 7 characters
    (a "-dirty" suffix kept)."""
    shown = settings.copy()
    if "variant" in shown:  # options of ε runs only: blank elsewhere, where they do nothing
        epsilon = shown["variant"] == "epsilon"
        for col in ("epsilon_start_epoch", "inference_gates", "closed_gates"):
            if col in shown:
                shown[col] = shown[col].astype(object).where(epsilon, float("nan"))
    if "commit" in shown:
        shown["commit"] = [c[:7] + ("-dirty" if c.endswith("-dirty") else "")
                           if isinstance(c, str) else c for c in shown["commit"]]
    return [(heading, shown[[c for c in names if c in shown]].rename(columns=names))
            for heading, names in SETTINGS_PAGE]


def html_page(title: str, tables: list[tuple[str, pd.DataFrame]], note: str = "",
              warning: str = "") -> str:
    """A small self-contained HTML page of tables (for Snakemake's report and for browsers):
    narrow tables that wrap their headers, the first column (the run's name) kept on one line,
    a warning above the tables and the note under them."""
    import html

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;margin:1em;max-width:70em}"
             "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "th{background:#eee;max-width:7em;white-space:normal}"
             "td:first-child,th:first-child{text-align:left;white-space:nowrap}"
             ".warning{color:#a00;font-weight:bold}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if warning:
        parts.append(f"<p class='warning'>{html.escape(warning)}</p>")
    for heading, table in tables:
        parts += [f"<h2>{html.escape(heading)}</h2>",
                  table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")]
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    return "\n".join(parts + ["</body></html>"])
