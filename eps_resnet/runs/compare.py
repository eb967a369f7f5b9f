"""Whether two runs are the same run: their stats.json compared epoch by epoch, metric by metric.

Used to check a reproduction (the same command on another machine, or a resumed run against an
uninterrupted one). Only what a seed determines is in stats.json, so two runs of one command on
one machine compare identical.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..training.runfolder import load_run_file, read_stats


@dataclass
class Comparison:
    run_a: str
    run_b: str
    epochs: int = 0  # epochs compared
    values: int = 0  # values compared
    first: tuple | None = None  # (epoch, metric, a, b) of the first difference beyond tolerance
    largest: tuple | None = None  # (epoch, metric, |a - b|) of the largest difference
    only_in: dict = field(default_factory=dict)  # {run: [what only that run has]}
    #: how the two runs were run differently (run.yaml): what can explain differing last bits
    conditions: list = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.first is None and not any(self.only_in.values())

    def report(self, tolerance: float) -> str:
        head = f"{self.run_a} vs {self.run_b}: {self.epochs} epoch(s), {self.values} value(s) compared"
        lines = [head]
        for run, extra in self.only_in.items():
            if extra:
                lines.append(f"only in {run}: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        if self.first:
            e, m, a, b = self.first
            lines.append(f"first difference: epoch {e}, {m}: {a!r} vs {b!r}")
        if self.largest and self.largest[2] > 0:
            lines.append(f"largest difference: epoch {self.largest[0]}, {self.largest[1]}: "
                         f"{self.largest[2]:.6g}")
        if self.conditions:
            lines.append("run differently: " + "; ".join(self.conditions))
        verdict = ("identical" if tolerance == 0 else f"identical within {tolerance:g}")
        lines.append(verdict if self.identical else "different")
        return "\n".join(lines)


def _by_epoch(run_dir: str) -> dict[int, dict]:
    return {int(s["epoch_num"]): s for s in read_stats(run_dir) if "epoch_num" in s}


def _differ(a, b, tolerance: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return not (math.isnan(a) and math.isnan(b))
        return abs(a - b) > tolerance
    return a != b


#: What run.yaml records of how a run was run that changes its last bits (label, path).
CONDITIONS = (("CPU kernels", ("determinism", "cpu_kernels", "kind")),
              ("oneDNN instruction set", ("determinism", "cpu_kernels", "ONEDNN_MAX_CPU_ISA")),
              ("pinned cache sizes", ("determinism", "cpu_kernels", "cache_sizes")),
              ("TensorFlow's deterministic ops", ("determinism", "op_determinism")),
              ("threads", ("determinism", "threads")),
              ("precision", ("settings", "precision")),
              ("CPU", ("environment", "cpu", "model")),
              ("TensorFlow", ("environment", "tensorflow")))


def _lookup(record: dict, path: tuple):
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _shown(value) -> str:
    """A recorded condition in one line: a mapping as ``key value, key value``."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def differing_conditions(run_a: str, run_b: str) -> list[str]:
    """What the two runs' run.yaml say they ran with differently, e.g. "CPU kernels: portable
    vs native" (nothing for runs without a run.yaml)."""
    ra, rb = load_run_file(run_a), load_run_file(run_b)
    if not ra or not rb:
        return []
    return [f"{label}: {_shown(_lookup(ra, path))} vs {_shown(_lookup(rb, path))}"
            for label, path in CONDITIONS
            if _lookup(ra, path) != _lookup(rb, path)]


def compare_runs(run_a: str, run_b: str, tolerance: float = 0.0) -> Comparison:
    """Compare every metric of every epoch of two run folders."""
    a, b = _by_epoch(run_a), _by_epoch(run_b)
    c = Comparison(run_a, run_b, conditions=differing_conditions(run_a, run_b))
    c.only_in = {run_a: [f"epoch {e}" for e in sorted(set(a) - set(b))],
                 run_b: [f"epoch {e}" for e in sorted(set(b) - set(a))]}
    for epoch in sorted(set(a) & set(b)):
        c.epochs += 1
        sa, sb = a[epoch], b[epoch]
        for side, mine, other in ((run_a, sa, sb), (run_b, sb, sa)):
            c.only_in[side] += [f"epoch {epoch} {m}" for m in sorted(set(mine) - set(other))]
        for metric in sorted(set(sa) & set(sb)):
            va, vb = sa[metric], sb[metric]
            c.values += 1
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
                gap = abs(va - vb) if not (math.isnan(va) or math.isnan(vb)) else math.inf
                if math.isnan(va) and math.isnan(vb):
                    gap = 0.0
                if c.largest is None or gap > c.largest[2]:
                    c.largest = (epoch, metric, gap)
            if c.first is None and _differ(va, vb, tolerance):
                c.first = (epoch, metric, va, vb)
    return c
