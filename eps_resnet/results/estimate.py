"""The cost of a target before it runs: the training runs still to do, their epochs, steps and
images, and the device-hours they need at a given training throughput.

Finished runs count as done; a partial run counts what remains after its last epoch in
stats.json. Throughput is given per depth (img/s, e.g. what benchmarks/train_throughput.py or
`eps-resnet selfcheck` measured); a depth that was not measured is scaled from the nearest
measured one of its family by their FLOPs per image.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..data import DATASETS
from ..errors import EpsResnetError
from ..models.layouts import count_flops, make_layout
from ..tables import markdown_table
from ..training.runfolder import read_stats

class EstimateError(EpsResnetError):
    """A target or throughput that cannot be estimated; the message names it."""


@dataclass
class Cost:
    experiment: str
    run: str
    depth: int
    family: str
    devices: int  # the run's GPUs (1 for a CPU run)
    epochs_left: int
    steps: int  # steps left
    images: int  # images left
    img_per_s: float | None  # of one device
    hours: float | None  # device-hours: images / img_per_s, whatever the number of devices

    @property
    def wall_hours(self) -> float | None:
        """Hours on the run's own devices, if they scale linearly."""
        return None if self.hours is None else self.hours / self.devices


def steps_per_epoch(settings) -> int:
    # (SVHN: train + extra, also for a run on train alone, whose epoch keeps that many steps)
    images = DATASETS[settings.dataset].train_images
    return settings.steps_per_epoch or max(1, images // settings.batch)


def epochs_done(run_dir: str) -> int:
    try:
        return max((int(s["epoch_num"]) for s in read_stats(run_dir) if "epoch_num" in s), default=0)
    except EpsResnetError:
        return 0


def flops(family: str, depth: int, size: int) -> int:
    """FLOPs of one image through a network of ``family`` and ``depth`` at ``size`` pixels: what
    throughput is scaled by between depths and image sizes."""
    return count_flops(make_layout(family, depth), size, 10)


def throughput_for(family: str, depth: int, size: int, measured: dict[int, float]) -> float | None:
    """img/s at ``depth``: measured, or the nearest measured depth of the family scaled by FLOPs."""
    if depth in measured:
        return measured[depth]
    same = {d: v for d, v in measured.items() if _valid(family, d)}
    if not same:
        return None
    ref = min(same, key=lambda d: abs(d - depth))
    return same[ref] * flops(family, ref, size) / flops(family, depth, size)


def _valid(family: str, depth: int) -> bool:
    from ..models.layouts import check_depth

    try:
        check_depth(family, depth)
        return True
    except ValueError:
        return False


def estimate(runs, measured: dict[int, float]) -> list[Cost]:
    """The cost of each workflow Run (eps_resnet.workflow.config.Run) that is not finished."""
    costs = []
    for run in runs:
        s = run.settings.resolved()
        done = epochs_done(s.out)
        if os.path.exists(os.path.join(s.out, "train.done")):
            done = s.epochs
        left = max(0, s.epochs - done)
        if not left:
            continue
        steps = left * steps_per_epoch(s)
        rate = throughput_for(s.family, s.depth, s.image_size, measured)
        costs.append(Cost(run.experiment, run.name, s.depth, s.family, max(1, run.gpus), left,
                          steps, steps * s.batch, rate,
                          steps * s.batch / rate / 3600 if rate else None))
    return costs


def parse_throughput(values) -> dict[int, float]:
    """``["110=1500", "101=800"]`` -> {110: 1500.0, 101: 800.0} (img/s per depth)."""
    out = {}
    for v in values or []:
        depth, _, rate = v.partition("=")
        try:
            out[int(depth)] = float(rate)
        except ValueError:
            raise EstimateError(f"--throughput {v!r}: expected DEPTH=IMG_PER_S, e.g. 110=1500") from None
        if not (math.isfinite(out[int(depth)]) and out[int(depth)] > 0):
            raise EstimateError(f"--throughput {v!r}: img/s must be a positive number")
    return out


def markdown(costs: list[Cost], what: str, device: str = "GPU") -> str:
    """The table of :func:`estimate`'s costs: per run its devices, what remains, the img/s of one
    device, the device-hours and the hours on the run's own devices."""
    headers = ["experiment", "run", f"{device}s", "epochs left", "steps", "images",
               f"img/s per {device}", f"{device}-hours", f"hours on its {device}s"]
    rows = [[c.experiment, c.run, c.devices, c.epochs_left, f"{c.steps:,}", f"{c.images:,}",
             "" if c.img_per_s is None else f"{c.img_per_s:,.0f}",
             "" if c.hours is None else f"{c.hours:,.1f}",
             "" if c.wall_hours is None else f"{c.wall_hours:,.1f}"] for c in costs]
    lines = [f"# Estimate: {what}", "", markdown_table(rows, headers).rstrip("\n")]
    known = [c.hours for c in costs if c.hours is not None]
    total = (f"{len(costs)} run(s) to train, {sum(c.steps for c in costs) / 1e6:.2f} M steps, "
             f"{sum(c.images for c in costs) / 1e6:,.1f} M images")
    if known:
        total += f", ~{sum(known):,.1f} {device}-hours"
        if len(known) < len(costs):
            total += f" for the {len(known)} run(s) with a throughput"
    lines += ["", total + "."]
    return "\n".join(lines) + "\n"


def runs_of(table, targets) -> list:
    """The training runs behind Snakemake targets: `all` (the group main's experiments whose
    data can be had), `paper` (every experiment), a group's name, an experiment's name, or one
    of the figures of an experiment or of the grid (figures/paper/<dataset>-<kind>.png)."""
    groups = table.groups()
    grid = {f"{d}-{k}.png": exps for d, k, exps in table.grid_figures(list(table.runs))}
    runs = []
    for target in targets or ["all"]:
        name = os.path.basename(target)
        if target == "all":
            names = [e for e in table.all_experiments() if e in table.available_experiments()]
        elif target == "paper":
            names = list(table.runs)
        elif target in groups:
            names = groups[target]
        elif name in table.runs:
            names = [name]
        elif os.path.basename(os.path.dirname(target)) == "paper" and name in grid:
            names = grid[name]
        else:
            names = [e for e in table.runs if name.startswith(f"{e}-") and name.endswith(".png")]
            if not names:
                raise EstimateError(f"{target}: expected all, paper, a group ({', '.join(groups)}), "
                                    f"an experiment ({', '.join(table.runs)}) or one of its figures")
        runs += [r for e in names for r in table.experiment(e) if r not in runs]
    return runs
