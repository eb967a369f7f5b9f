"""The run's log: what tensorpack's logger prints during training, read back.

Every epoch ends with a header ``Epoch 3 (global_step 1170) finished`` followed by one line per
metric (``[0326 12:00:00 @monitor.py:363] val_error: 0.0524``) and, in this project's logs, one
line with every gated block's ``is_discarded`` (:class:`.callbacks.DiscardedBlocksPrinter`).
The original implementation's logs have the same form. ``eps-resnet parse`` reads them into
tables; training rebuilds a damaged stats.json from them.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from ..atomic import write_text
from .runfolder import LOG_FILE, STATS_FILE, RunFolderError, read_stats

LOG = logging.getLogger(__name__)

EPOCH_HEADER = re.compile(r"Epoch (\d+) \(global_step (\d+)\) finished")
#: This project's one line of per-block values (callbacks.DiscardedBlocksPrinter).
BLOCKS_LINE = re.compile(r"\]\s+is_discarded per block \(.*?\):((?:\s+res\d+\.\d+=\S+)+)\s*$")
BLOCK_VALUE = re.compile(r"(res\d+\.\d+)=(\S+)")
METRIC_LINE = re.compile(r"^\[[^\]]*\]\s+([A-Za-z_][\w./\-]*):\s+([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))\s*$")


@dataclass
class Anomalies:
    """What a reader skipped or salvaged in a run folder, counted by kind and warned once."""

    counts: Counter = field(default_factory=Counter)

    def add(self, kind: str, n: int = 1):
        self.counts[kind] += n

    def warn(self, run: str):
        if self.counts:
            detail = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
            LOG.warning(f"{run}: kept the readable data; {detail}")


def read_log(paths, anomalies: Anomalies):
    """Records of tensorpack log files (this project's log.log or the original's), in order."""
    records, epoch, step = [], None, None
    for path in paths:
        with open(path, errors="replace") as f:
            lines = f.read().split("\n")
        last = len(lines) - 1
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            header = EPOCH_HEADER.search(line)
            if header:
                epoch, step = int(header.group(1)), int(header.group(2))
                continue
            blocks = BLOCKS_LINE.search(line)
            if blocks and epoch is not None:
                records += [(epoch, step, f"{b}/is_discarded", v)
                            for b, v in BLOCK_VALUE.findall(blocks.group(1))]
                continue
            m = METRIC_LINE.match(line)
            if m is None:
                if n == last and epoch is not None and ":" in line and "@monitor" in line:
                    anomalies.add("truncated last line")
                continue
            if epoch is None:
                continue  # metrics printed before the first epoch (e.g. at start-up)
            records.append((epoch, step, m.group(1), m.group(2)))
    return records


def log_files(run_dir: str) -> list[str]:
    """log.log and the logs of earlier attempts (log.log.<time>), oldest first."""
    older = sorted(glob.glob(os.path.join(run_dir, f"{LOG_FILE}.*")))
    current = os.path.join(run_dir, LOG_FILE)
    return older + ([current] if os.path.exists(current) else [])


def repair_stats(out: str, done: int = 0) -> None:
    """Make stats.json hold epochs 1..``done`` (those of the checkpoint the run resumes from):
    an unreadable one is set aside (renamed, never deleted), and a missing or incomplete one is
    rebuilt from the run's log files, which print every epoch's metrics too. When the logs lack
    some of those epochs as well, the history is lost: RunFolderError, rather than a resume
    that keeps only the epochs after it."""
    path = os.path.join(out, STATS_FILE)
    try:
        have = {s.get("epoch_num") for s in read_stats(out) if isinstance(s, dict)}
        problem = None
    except RunFolderError as e:
        have, problem = set(), str(e).split(";")[0]
    wanted = set(range(1, done + 1))
    if problem is None and wanted <= have:
        return
    entries: dict[tuple[int, int], dict] = {}
    for epoch, step, name, value in read_log(log_files(out), Anomalies()):
        if epoch <= done:
            entry = entries.setdefault((epoch, step), {"epoch_num": epoch, "global_step": step})
            entry[name] = float(value)
    lost = sorted(wanted - {epoch for epoch, _ in entries})
    what = problem or (f"{path} is missing" if not os.path.exists(path) else
                       f"{path} lacks epoch(s) {epoch_spans(sorted(wanted - have))}")
    if lost:
        raise RunFolderError(f"{what} and the log has no metrics of epoch(s) {epoch_spans(lost)} "
                             "either: the run's history is lost; train it again into a new --out")
    if os.path.exists(path):
        aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, aside)
        what += f": set aside as {os.path.basename(aside)}"
    write_text(path, json.dumps(list(entries.values())))
    LOG.warning(f"{what}; rebuilt {len(entries)} epoch(s) from the log")


def epoch_spans(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(f"{start}-{n}" if n > start else f"{n}")
            start = None
    return ", ".join(out)
