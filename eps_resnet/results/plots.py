"""The paper's figures from the tidy table of :mod:`eps_resnet.results.parse`, one function per kind.

One style for all: the Okabe-Ito colour-blind-safe palette, one colour per run (standard, side,
each ε), labelled axes with units, a legend, and a note naming the runs that are still missing.
Every function returns the matplotlib Figure; :func:`save` writes PNG (and PDF if asked).
"""
from __future__ import annotations

import os

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from . import GRID_KINDS, KINDS  # noqa: E402,F401  (the kinds drawn here)
from ..models.gate import DISCARDED_AT  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 11, "axes.titlesize": 12,
    "axes.labelsize": 11, "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
}


def run_label(meta: pd.Series, several_depths: bool, with_seed: bool = False) -> str:
    variant = meta["variant"]
    label = f"ε = {meta['epsilon']:g}" if variant == "epsilon" and pd.notna(meta["epsilon"]) else str(variant)
    if several_depths and pd.notna(meta["depth"]):
        label = f"{int(meta['depth'])} layers, {label}"
    if with_seed and pd.notna(meta.get("seed")):
        label += f", seed {int(meta['seed'])}"
    return label


def network_name(depth, family=None) -> str:
    """"ResNet-14 (CIFAR family)": a depth alone does not say which network it is."""
    if pd.isna(depth):
        return "unknown depth"
    name = f"ResNet-{int(depth)}"
    if isinstance(family, str) and family:
        name += f" ({'CIFAR' if family == 'cifar' else 'ImageNet'} family)"
    return name


def _family_of(d: pd.DataFrame):
    return d["family"].dropna().iloc[0] if "family" in d and d["family"].notna().any() else None


#: line styles that tell a setting's seeds apart (the setting gives the colour)
SEED_STYLES = ["-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2))]


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row of metadata per run, in a stable, readable order (standard, side, ε ascending,
    then seeds); ``setting`` names the runs that differ only in their seed."""
    order = {"standard": 0, "side": 1, "epsilon": 2}
    cols = ["run", "dataset", "depth", "variant", "epsilon"] + (["seed"] if "seed" in df else [])
    runs = df.drop_duplicates("run")[cols].copy()
    if "seed" not in runs:
        runs["seed"] = np.nan
    runs["_o"] = runs["variant"].map(order).fillna(3)
    runs = runs.sort_values(["depth", "_o", "epsilon", "seed", "run"], na_position="first")
    several = runs["depth"].nunique() > 1
    runs["label"] = [run_label(m, several) for _, m in runs.iterrows()]

    def setting(r):
        # seeds of one setting: same label, each with its own known seed (runs of unknown seed,
        # e.g. the original implementation's logs, stand alone)
        same = runs[runs["label"] == r["label"]]
        seeds = same["seed"]
        return r["label"] if seeds.notna().all() and seeds.is_unique else r["run"]

    runs["setting"] = runs.apply(setting, axis=1)
    runs["seeds"] = runs.groupby("setting")["run"].transform("count")
    return runs.drop(columns="_o")


def _colours(runs: pd.DataFrame) -> dict:
    """One colour per setting (a run's seeds share it), the same in every figure."""
    settings = list(dict.fromkeys(runs["setting"]))
    return {r.run: OKABE_ITO[settings.index(r.setting) % len(OKABE_ITO)] for r in runs.itertuples()}


def _missing_note(fig, missing):
    if missing:
        fig.text(0.01, 0.005, "missing (not trained yet): " + ", ".join(missing), fontsize=8,
                 color="#D55E00", ha="left", va="bottom")


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, missing):
    """Axis labels, title, legend (when something is drawn) and the missing-runs note."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_lines():
        ax.legend(frameon=False)
    _missing_note(fig, missing)
    fig.tight_layout()


def _metric(df, name):
    return df[df["metric"] == name]


def _imagenet_family(df: pd.DataFrame) -> bool:
    """ImageNet-family networks are plotted against epochs (CIFAR-family against steps)."""
    if "family" in df and df["family"].notna().any():
        return (df["family"] == "imagenet").any()
    return (df["dataset"] == "imagenet").any()


def _informative_range(ax, inset, finals, curves_all, drawn) -> None:
    """The error axis on the informative range, the curves that leave it marked, the whole run
    in the inset (removed when nothing was drawn)."""
    if finals:
        # the informative range, as in the paper's figures: up to three times the typical
        # final error (a run that ends far above it leaves the axis; its final value is in
        # the legend and its whole curve in the inset)
        typical = float(np.median(finals))
        low = 0.0 if min(finals) < 10 else 0.8 * min(finals)
        top = min(100.0, 3 * typical + 2)
        ax.set_ylim(low, top)
        for mean, colour, line in drawn:  # a curve that ends above the axis: marked at its
            end = mean.dropna()              # end and in the legend
            if end.iloc[-1] > top:
                ax.plot([end.index[-1]], [top], marker="^", ms=8, color=colour,
                        clip_on=False, zorder=5, gid="off-axis")
                line.set_label(line.get_label().replace(":", " (▲ above the axis):", 1))
        inset.set_title("whole run", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.set_ylim(0, min(100, max(c.max() for c in curves_all) * 1.05))
    else:
        inset.remove()


def val_error(df: pd.DataFrame, title: str | None = None, missing=()):
    """Validation error vs training step (CIFAR family) or epoch (ImageNet family, top-1 solid
    and top-5 dashed), one colour per setting (the mean and a band over seeds), each run's final
    value in the legend, the paper's number as a thin dashed line where the paper reports the
    setting, the axis on the informative range and the whole curve in an inset."""
    from .summary import paper_reference, paper_row

    ref = paper_reference()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        inset = ax.inset_axes([0.62, 0.56, 0.36, 0.4])
        runs = _runs(df)
        colours = _colours(runs)
        by_epoch = _imagenet_family(df)
        x = "epoch" if by_epoch else "step"
        top5 = _metric(df, "val_error_top5")
        finals, curves_all, drawn = [], [], []
        for _, group in runs.groupby("setting", sort=False):
            meta = group.iloc[0]
            colour = colours[meta["run"]]
            seeds = f", mean of {len(group)} seeds" if len(group) > 1 else ""  # band: min–max
            for metric, style, name in (("val_error", "-", "top-1" if by_epoch and len(top5) else ""),
                                        ("val_error_top5", "--", "top-5")):
                if metric == "val_error_top5" and not by_epoch:
                    continue
                d = _metric(df, metric)
                d = d[d["run"].isin(group["run"])]
                if d.empty:
                    continue
                # runs of one setting are logged at the same steps; the band spans their seeds
                curves = 100 * d.pivot_table(index=x, columns="run", values="value", aggfunc="last")
                mean = curves.mean(axis=1)
                final = mean.dropna().iloc[-1]
                finals.append(final)
                curves_all.append(mean)
                label = f"{meta['label']}{f' {name}' if name else ''}: {final:.2f}%{seeds}"
                (line,) = ax.plot(mean.index, mean.values, color=colour, lw=1.6, ls=style, label=label)
                drawn.append((mean, colour, line))
                inset.plot(mean.index, mean.values, color=colour, lw=1.0, ls=style)
                if len(group) > 1:
                    ax.fill_between(curves.index, curves.min(axis=1), curves.max(axis=1),
                                    color=colour, alpha=0.2, lw=0)
                paper = paper_row(meta["dataset"], meta["depth"], meta["variant"], meta["epsilon"], ref)
                column = "error_top1" if metric == "val_error" else "error_top5"
                if paper is not None and pd.notna(paper[column]):
                    ax.axhline(paper[column], color=colour, lw=1.0, ls=(0, (6, 3)), alpha=0.8,
                               label=f"paper{f' {name}' if name else ''}: {paper[column]:.2f}%")
        _informative_range(ax, inset, finals, curves_all, drawn)
        _finish(fig, ax, "epoch" if by_epoch else "training step (iterations)",
                "validation error (%)", title or "Validation error", missing)
        if ax.get_legend():
            ax.legend(frameon=False, loc="upper left", fontsize=8)
    return fig


def learning_rate(df: pd.DataFrame, title: str | None = None, missing=()):
    """Learning rate vs training step, one colour per run (the ε-ResNet restarts are steps up)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        runs = _runs(df)
        colours = _colours(runs)
        several = runs["depth"].nunique() > 1
        lr = _metric(df, "learning_rate")
        n = len(runs)
        seed_index = runs.groupby("setting").cumcount()
        for i, (_, meta) in enumerate(runs.iterrows()):
            d = lr[lr["run"] == meta["run"]].sort_values("step")
            # identical schedules lie on top of each other: earlier runs are drawn wider, so
            # every colour stays visible where the curves coincide, and a setting's seeds
            # differ in their line style
            ax.step(d["step"], d["value"], where="post", color=colours[meta["run"]],
                    lw=1.2 + 2.6 * (n - 1 - i) / max(1, n - 1), alpha=0.9, zorder=2 + i,
                    ls=SEED_STYLES[seed_index[meta.name] % len(SEED_STYLES)],
                    label=run_label(meta, several, with_seed=meta["seeds"] > 1))
        ax.set_yscale("log")
        if len(lr):  # a decade of room around the values: a flat schedule is not an edge
            low, high = lr["value"].min(), lr["value"].max()
            ax.set_ylim(low / 3, high * 3)
        _finish(fig, ax, "training step (iterations)", "learning rate", title or "Learning rate",
                missing)
        if n > 4:  # many runs: the legend beside the axes, never over the curves
            ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      ncol=1 if n <= 14 else 2)
            fig.tight_layout()
    return fig


def final_values(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The last epoch's value of ``metric`` per run (with the run's metadata)."""
    d = _metric(df, metric).sort_values(["run", "epoch"])
    return d.groupby("run", as_index=False).last()


def compression_ratio(df: pd.DataFrame, title: str | None = None, missing=()):
    """Left: discarded ratio vs epoch for each ε run. Right: the final ratio vs ε, one line per
    depth (the ratio vs depth shows as the spread between lines)."""
    with plt.rc_context(STYLE):
        eps = df[df["variant"] == "epsilon"]
        runs = _runs(eps)
        legend_rows = -(-len(runs) // 3) if len(runs) > 4 else 0  # a legend under the left panel
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4 + 0.2 * legend_rows),
                                      gridspec_kw={"width_ratios": [3, 2]})
        colours = _colours(_runs(df))  # the same colour per run as in the other figures
        several = runs["depth"].nunique() > 1
        ratio = _metric(eps, "discarded_ratio")
        seed_index = runs.groupby("setting").cumcount()
        for _, meta in runs.iterrows():
            d = ratio[ratio["run"] == meta["run"]].sort_values("epoch")
            ax.plot(d["epoch"], d["value"], color=colours[meta["run"]], lw=1.6,
                    ls=SEED_STYLES[seed_index[meta.name] % len(SEED_STYLES)],
                    label=run_label(meta, several, with_seed=meta["seeds"] > 1))
        ax.set_xlabel("epoch")
        ax.set_ylabel("discarded blocks / gated blocks")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("Discarded ratio during training")
        final = final_values(eps, "discarded_ratio")
        if "family" in eps and "family" not in final:
            final = final.merge(eps.drop_duplicates("run")[["run", "family"]], on="run", how="left")
        for i, (depth, d) in enumerate(final.groupby("depth", dropna=False)):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            # every seed's point, and a line through the mean per ε
            ax2.scatter(d["epsilon"], d["value"], color=colour, s=22, zorder=3)
            mean = d.groupby("epsilon")["value"].mean()
            ax2.plot(mean.index, mean.values, color=colour, lw=1.6, marker="o", ms=4,
                     label=network_name(depth, _family_of(d)))
        if final["epsilon"].nunique() == 1:  # one ε: a readable range around it
            e = float(final["epsilon"].iloc[0])
            ax2.set_xlim(e - max(1.0, 0.5 * e), e + max(1.0, 0.5 * e))
        ax2.set_xlabel("ε")
        ax2.set_ylabel("final discarded ratio")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_title("Final ratio vs ε")
        if legend_rows:  # many runs: the legend under the panel, never over the curves
            ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      ncol=3)
        elif ax.get_lines():
            ax.legend(frameon=False)
        if ax2.get_lines():
            ax2.legend(frameon=False)
        if title:
            fig.suptitle(title)
        _missing_note(fig, missing)
        fig.tight_layout()
    return fig


def block_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per ε run and group: kept and discarded blocks at the last epoch."""
    d = _metric(df[df["variant"] == "epsilon"], "is_discarded")
    if d.empty:
        return pd.DataFrame(columns=["run", "group", "kept", "discarded"])
    last = d[d["epoch"] == d.groupby("run")["epoch"].transform("max")]
    last = last.assign(discarded=last["value"] >= DISCARDED_AT)
    table = last.groupby(["run", "group"])["discarded"].agg(discarded="sum", total="count").reset_index()
    table["kept"] = table["total"] - table["discarded"]
    return table[["run", "group", "kept", "discarded"]]


def blocks(df: pd.DataFrame, title: str | None = None, missing=()):
    """Kept and discarded blocks per group for each ε run (stacked bars)."""
    with plt.rc_context(STYLE):
        table = block_table(df)
        runs = _runs(df[df["variant"] == "epsilon"])
        n = max(1, len(runs))
        cols = min(n, 6)  # rows of at most six panels
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1, 3.0 * rows + 0.8),
                                 squeeze=False, sharey=True)
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        several = runs["depth"].nunique() > 1
        for ax, (_, meta) in zip(axes.flat, runs.iterrows()):
            t = table[table["run"] == meta["run"]].sort_values("group")
            groups = [f"group {int(g)}" for g in t["group"]]
            ax.bar(groups, t["kept"], color=OKABE_ITO[0], label="kept")
            ax.bar(groups, t["discarded"], bottom=t["kept"], color=OKABE_ITO[5], label="discarded")
            ax.set_title(run_label(meta, several, with_seed=meta["seeds"] > 1))
            ax.set_xlabel("residual group (input → output)")
        for row in axes:
            row[0].set_ylabel("residual blocks")
        axes[0][0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        _missing_note(fig, missing)
        # the title on the first line, the legend on its own line under it, then the panels
        height = fig.get_figheight()  # the title and the legend keep ~0.9 inch at the top
        top = 1 - (0.95 if title else 0.55) / height
        fig.tight_layout(rect=(0, 0, 1, top))
        if len(runs):
            handles, labels = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, labels, frameon=False, loc="upper right", ncol=2,
                       bbox_to_anchor=(1.0, 1 - (0.4 if title else 0.0) / height))
        if title:
            fig.suptitle(title, x=0.02, y=1 - 0.05 / height, ha="left", va="top")
    return fig


# -- the grid: final values across experiments of one dataset ---------------------------------
def _setting_label(variant, epsilon) -> str:
    return f"ε = {epsilon:g}" if variant == "epsilon" and pd.notna(epsilon) else str(variant)


def _spread(d: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Mean, min and max over seeds of ``column`` per value of ``by``."""
    return d.groupby(by)[column].agg(["mean", "min", "max"]).dropna().sort_index()


def _draw(ax, g: pd.DataFrame, colour: str, label: str) -> None:
    """Our points: the mean over seeds, bars from the lowest to the highest seed."""
    ax.plot(g.index, g["mean"], color=colour, marker="o", ms=5, lw=1.6, label=label)
    if (g["max"] > g["min"]).any():
        ax.errorbar(g.index, g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]],
                    fmt="none", ecolor=colour, lw=1.2, capsize=3)


def _draw_paper(ax, paper: pd.DataFrame, x: str, y: str, colour: str, label: str) -> None:
    """The paper's points (rows of paper.csv that report ``y``) as hollow squares, dashed."""
    paper = paper.dropna(subset=[y]).sort_values(x)
    if len(paper):
        ax.plot(paper[x], paper[y], color=colour, marker="s", ms=6, mfc="none", ls=(0, (5, 3)),
                lw=1.0, label=label)


def _grid_table(df: pd.DataFrame):
    """Per run the final values (:func:`eps_resnet.results.summary.summarize`), with ``ratio`` in the
    paper's definition, and the paper's numbers of the datasets present."""
    from .summary import paper_reference, summarize

    table = summarize(df)
    table["ratio"] = table["discarded_ratio_original"].fillna(table["discarded_ratio"])
    ref = paper_reference()
    return table, ref[ref["dataset"].isin(table["dataset"].unique())]


RATIO_LABEL = "discarded ratio (the paper's definition)"
ERROR_LABEL = "final validation error (%)"


def _finish_grid(fig, panels, title: str | None, missing) -> None:
    """Labels of each (axes, x label, y label, panel title), legends below the axes (never over
    a point), the figure's title and the missing-runs note."""
    for ax, xlabel, ylabel, name in panels:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        if ylabel == RATIO_LABEL:
            ax.set_ylim(-0.02, 1.02)
        if ax.get_lines():
            ax.legend(frameon=False, fontsize=8, loc="upper center", ncol=2,
                      bbox_to_anchor=(0.5, -0.16))
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    _missing_note(fig, missing)
    fig.tight_layout()


def _same_setting(frame: pd.DataFrame, variant: str, epsilon) -> pd.Series:
    same_eps = np.isclose(frame["epsilon"], epsilon) if pd.notna(epsilon) else frame["epsilon"].isna()
    return (frame["variant"] == variant) & same_eps


def vs_depth(df: pd.DataFrame, title: str | None = None, missing=()):
    """The grid of one dataset against depth: left the final validation error (top-1) of each
    setting (standard, side, each ε), right the final discarded ratio of the ε runs (of 3n + 2
    blocks in the CIFAR family, as the paper counts); ours as the mean over seeds with min-max
    bars, the paper's as hollow squares on dashed lines."""
    with plt.rc_context(STYLE):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 5.2))
        table, ref = _grid_table(df)
        order = {"standard": 0, "side": 1, "epsilon": 2}
        settings = table[["variant", "epsilon"]].drop_duplicates()
        settings = settings.assign(_o=settings["variant"].map(order)).sort_values(["_o", "epsilon"])
        for i, (variant, eps) in enumerate(zip(settings["variant"], settings["epsilon"])):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            label = _setting_label(variant, eps)
            d, p = table[_same_setting(table, variant, eps)], ref[_same_setting(ref, variant, eps)]
            _draw(ax, _spread(d, "depth", "final_val_error"), colour, label)
            _draw_paper(ax, p, "depth", "error_top1", colour, f"{label}, paper")
            if variant == "epsilon":
                _draw(ax2, _spread(d, "depth", "ratio"), colour, label)
                _draw_paper(ax2, p, "depth", "discarded_ratio", colour, f"{label}, paper")
        for a in (ax, ax2):  # a tick at every depth drawn, ours and the paper's
            a.set_xticks(sorted({float(x) for line in a.get_lines() for x in line.get_xdata()}))
            a.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        _finish_grid(fig, [(ax, "depth (layers)", ERROR_LABEL, "Error vs depth"),
                           (ax2, "depth (layers)", RATIO_LABEL, "Discarded ratio vs depth")],
                     title, missing)
    return fig


def vs_epsilon(df: pd.DataFrame, title: str | None = None, missing=()):
    """The ε runs of one dataset against ε, one colour per depth: left the final discarded ratio
    (the paper's definition), right the final validation error with the same depth's standard
    run as a dotted line; ours as the mean over seeds with min-max bars, the paper's as hollow
    squares."""
    with plt.rc_context(STYLE):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 5.2))
        table, ref = _grid_table(df)
        eps = table[table["variant"] == "epsilon"]
        for i, depth in enumerate(sorted(eps["depth"].dropna().unique())):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            d = eps[eps["depth"] == depth]
            label = network_name(depth, _family_of(d))
            p = ref[(ref["variant"] == "epsilon") & (ref["depth"] == depth)]
            _draw(ax, _spread(d, "epsilon", "ratio"), colour, label)
            _draw_paper(ax, p, "epsilon", "discarded_ratio", colour, f"{label}, paper")
            _draw(ax2, _spread(d, "epsilon", "final_val_error"), colour, label)
            _draw_paper(ax2, p, "epsilon", "error_top1", colour, f"{label}, paper")
            base = table[(table["variant"] == "standard") & (table["depth"] == depth)]
            if len(base):
                ax2.axhline(base["final_val_error"].mean(), color=colour, ls=":", lw=1.2,
                            label=f"{label}, standard")
        _finish_grid(fig, [(ax, "ε", RATIO_LABEL, "Discarded ratio vs ε"),
                           (ax2, "ε", ERROR_LABEL, "Error vs ε")], title, missing)
    return fig


PLOTTERS = {"val-error": val_error, "lr": learning_rate, "compression-ratio": compression_ratio,
            "blocks": blocks, "depth": vs_depth, "epsilon": vs_epsilon}


def plot(kind: str, df: pd.DataFrame, title: str | None = None, expected=()):
    """The figure of ``kind``; ``expected`` run names absent from ``df`` are noted as missing."""
    if kind not in PLOTTERS:
        raise ValueError(f"unknown plot kind {kind!r}; expected one of {', '.join(KINDS + GRID_KINDS)}")
    present = set(df["run"].unique()) if len(df) else set()
    missing = [r for r in expected if r not in present]
    return PLOTTERS[kind](df, title=title, missing=missing)


def save(fig, path: str, pdf: bool = False) -> list[str]:
    """Write the figure as PNG (and PDF) through temporary names; returns the paths."""
    paths = [path] + ([os.path.splitext(path)[0] + ".pdf"] if pdf else [])
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return paths

