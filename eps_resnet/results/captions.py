"""What each figure shows, in words: one text per figure kind, used by Snakemake's report (its
caption files render these) and by the page that shows an experiment's figures with their
captions beside them (``eps-resnet figures-page``)."""
from __future__ import annotations

import base64
import html
import os

_FIGURES = {
    "val-error": (
        "Validation error of {experiment} over training (steps for the CIFAR family, epochs for "
        "the ImageNet family; top-1 solid, top-5 dashed). The axis shows the informative range (up "
        "to three times the typical final error); a run that ends above it is marked by a triangle "
        "at the top edge, and the inset shows each whole run. Each legend entry ends with the run's "
        "final error; runs differing only in their seed are drawn as their mean with a min-max "
        "band. A thin dashed line in a run's colour is the paper's number for the same setting "
        "(the paper's CIFAR-10 ResNet-110: standard 6.05%, ε = 2.5 5.24%)."),
    "lr": (
        "Learning rate of every run of {experiment} (log scale). ε-ResNets follow the adaptive "
        "schedule: each time the number of discarded blocks rises, the rate jumps back to its "
        "start and decays twice as fast (the paper's square waves). Seeds of a setting share a "
        "colour and differ in line style; where schedules coincide, earlier runs are drawn wider "
        "so that every run stays visible."),
    "compression-ratio": (
        "Discarded ratio (discarded / gated blocks) of the ε runs of {experiment} during training "
        "(left) and at the end against ε (right: every seed's point and a line through their "
        "mean). The paper reports 0.22 for CIFAR-10 ResNet-110 at ε = 2.5 and 0.20 / 0.26 for "
        "ImageNet ResNet-101 at ε = 2.0 / 2.1."),
    "blocks": (
        "Kept and discarded residual blocks per group at the end of each ε run of {experiment} "
        "(a block counts as discarded when its moving-average gate is closed at least half of the "
        "time). The paper finds more discarded blocks near the output."),
}

_GRIDS = {
    "depth": (
        "Final values of every experiment on {dataset} against the network's depth: left the "
        "validation error (top-1) of each setting, right the discarded ratio of the ε runs, "
        "counted as the paper does (of 3n + 2 blocks in the CIFAR family, of the gated blocks in "
        "the ImageNet family). Filled circles are ours (the mean over seeds, bars from the lowest "
        "to the highest seed); hollow squares on dashed lines are the paper's numbers for the "
        "same settings."),
    "epsilon": (
        "The ε runs on {dataset} against ε, one colour per depth: left the final discarded ratio "
        "(the paper's definition), right the final validation error, with the same depth's "
        "standard run as a dotted line. Filled circles are ours (mean over seeds, min-max bars); "
        "hollow squares are the paper's numbers where it reports the setting."),
}


def figure_caption(kind: str, experiment: str) -> str:
    """The caption of an experiment's figure of this kind (val-error, lr, ...)."""
    return _FIGURES[kind].format(experiment=experiment)


def grid_caption(kind: str, dataset: str) -> str:
    """The caption of a dataset's figure across experiments (against depth or ε)."""
    return _GRIDS[kind].format(dataset=dataset)


def figures_page(title: str, figures: list[tuple[str, str]]) -> str:
    """A self-contained HTML page: each PNG (embedded) with its caption beside it, the caption
    moving under the figure when the pane is narrow."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;margin:1em}"
             "figure{display:flex;flex-wrap:wrap;align-items:center;gap:1.5em;margin:0 0 2em 0}"
             "figure img{flex:1 1 38em;max-width:100%;min-width:0;height:auto}"
             "figcaption{flex:1 1 16em;max-width:30em;font-size:14px;line-height:1.45}"
             "figcaption b{display:block;margin-bottom:.3em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for png, caption in figures:
        with open(png, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        name = os.path.basename(png)
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(name)}'>"
                     f"<figcaption><b>{html.escape(name)}</b>{html.escape(caption)}</figcaption>"
                     "</figure>")
    return "\n".join(parts + ["</body></html>"])
