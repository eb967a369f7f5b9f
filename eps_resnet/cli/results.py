"""``eps-resnet parse``, ``plot``, ``figures-page``, ``summarize`` and ``estimate``: their arguments
and handlers."""
from __future__ import annotations

import logging
import os

from ..errors import first_line
from ..training.settings import SettingsError

LOG = logging.getLogger(__name__)


def add_parse(sub) -> None:
    p = sub.add_parser("parse", help="run folders -> one tidy CSV",
                       description="Read run folders (this project's, or the original "
                       "implementation's tensorpack logs) into one long-format CSV.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run folders of `eps-resnet train`, or the original's train_log.* folders")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the tidy CSV to write")
    p.add_argument("--settings-html", metavar="FILE.html",
                   help="also write each run's settings (from its run.yaml) as an HTML table")
    p.add_argument("--experiment", help="experiment name to record for these runs")
    p.set_defaults(func=_cmd_parse)


def add_plot(sub) -> None:
    from ..results import GRID_KINDS, KINDS

    p = sub.add_parser("plot", help="draw one of the paper's figures from parsed CSVs",
                       description="Draw a figure from tidy CSVs of `eps-resnet parse`: validation "
                       "error (mean and band over seeds, the paper's number, the final values), "
                       "learning rate, discarded ratio, or kept and discarded blocks per group; "
                       "or, from several experiments of one dataset, the final error and discarded "
                       "ratio against depth or against ε beside the paper's.")
    p.add_argument("kind", metavar="KIND", help=f"one experiment: {', '.join(KINDS)}; a dataset's "
                   f"grid: {', '.join(GRID_KINDS)}")
    p.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="CSV",
                   help="CSV(s) written by `eps-resnet parse`")
    p.add_argument("--out", required=True, metavar="PNG", help="the figure to write")
    p.add_argument("--pdf", action="store_true", help="also write a PDF next to the PNG")
    p.add_argument("--title", help="the figure's title (default: the kind's name)")
    p.add_argument("--expect", nargs="*", default=[], metavar="RUN",
                   help="runs the figure should show; absent ones are named as missing")
    p.set_defaults(func=_cmd_plot)


def add_figures_page(sub) -> None:
    from ..results import KINDS

    p = sub.add_parser("figures-page", help="an experiment's figures with their captions, as HTML",
                       description="One self-contained HTML page with each figure of an "
                       "experiment and, beside it, the caption saying what it shows (the "
                       "report's first result per experiment).")
    p.add_argument("figures", nargs="+", metavar="PNG",
                   help=f"figures of `eps-resnet plot`, named <experiment>-<kind>.png with kind one "
                   f"of {', '.join(KINDS)}")
    p.add_argument("--experiment", required=True, help="the experiment the figures show")
    p.add_argument("--title", help="the page's heading (default: the experiment's name)")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    p.set_defaults(func=_cmd_figures_page)


def _cmd_figures_page(args) -> int:
    from ..atomic import write_text
    from ..data.files import DataError
    from ..results.captions import figure_caption, figures_page
    from ..results import KINDS

    figures = []
    for png in args.figures:
        name = os.path.basename(png)
        kind = next((k for k in KINDS if name == f"{args.experiment}-{k}.png"), None)
        if kind is None:
            raise SettingsError(f"{png}: expected a figure named {args.experiment}-<kind>.png "
                                f"with kind one of {', '.join(KINDS)}")
        if not os.path.isfile(png):
            raise DataError(f"{png} does not exist; expected a figure of `eps-resnet plot`")
        figures.append((png, figure_caption(kind, args.experiment)))
    write_text(args.out, figures_page(args.title or args.experiment, figures))
    print(f"{args.out}: {len(figures)} figure(s) with captions")
    return 0


def add_summarize(sub) -> None:
    p = sub.add_parser("summarize", help="the reproduction table against the paper's numbers",
                       description="A row per run (final and best errors, discarded blocks, "
                       "parameters) and a row per setting (mean and standard deviation over seeds), "
                       "beside the paper's numbers, as CSV and Markdown.")
    p.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="CSV",
                   help="CSV(s) written by `eps-resnet parse`")
    p.add_argument("--out", default="results/summary.csv", metavar="CSV",
                   help="the per-run table (default %(default)s; the per-setting table goes beside "
                   "it as <name>-settings.csv)")
    p.add_argument("--md", metavar="MD", help="Markdown copy (default: --out with .md)")
    p.add_argument("--html", metavar="HTML", help="also an HTML page of both tables (the report's)")
    p.add_argument("--compressed", nargs="*", default=[], metavar="EVAL_JSON",
                   help="eval.json of compressed models (next to their compressed.yaml): adds "
                   "their error, parameters, FLOP ratio and agreement beside the full runs")
    p.set_defaults(func=_cmd_summarize)


def _check_whole_lines(path: str) -> None:
    """A CSV cut short (its last line has no end: `eps-resnet parse` ends every line) would be
    read as a shorter run."""
    from ..data.files import DataError

    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.seek(0)
            lines = f.read().count(b"\n") + 1
            raise DataError(f"{path}, line {lines}: the file ends mid-line (cut short); expected "
                            "a CSV written by `eps-resnet parse`: run it again")


def _finite_values(frame, path: str):
    """The rows whose value is a finite number; the others (empty, nan or inf: a diverged loss,
    a hand edit) are left out, said in one warning naming the first."""
    import numpy as np

    bad = ~np.isfinite(frame["value"].astype(float))
    if bad.any():
        row = int(bad.idxmax())
        LOG.warning(f"{path}: {int(bad.sum())} value(s) empty, nan or inf are left out (first: "
                    f"line {row + 2}, {frame['metric'][row]} of run {frame['run'][row]})")
    return frame[~bad]


def _read_csvs(paths, what: str):
    import pandas as pd

    from ..data.files import DataError
    from ..results.parse import COLUMNS

    frames = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"{path} does not exist; expected a CSV written by `eps-resnet parse`")
        _check_whole_lines(path)
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue  # a parse of runs that have not written anything yet
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"{path} is not a CSV ({first_line(e)[:120]}); expected one "
                            "written by `eps-resnet parse`") from None
        lacking = [c for c in ("run", "metric", "value") if c not in frame.columns]
        if lacking:
            raise DataError(f"{path} lacks the column(s) {', '.join(lacking)}; expected a CSV "
                            "written by `eps-resnet parse`")
        for column in ("epoch", "step", "depth", "epsilon", "seed", "group", "value"):
            if column in frame.columns:
                numbers = pd.to_numeric(frame[column], errors="coerce")
                bad = frame[column].notna() & numbers.isna()
                if bad.any():
                    row = int(bad.idxmax())
                    raise DataError(f"{path}, line {row + 2}: {column} {frame[column][row]!r} is "
                                    "not a number; expected a CSV written by `eps-resnet parse`")
                frame[column] = numbers
        frames.append(_finite_values(frame, path))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    if df.empty:
        raise DataError(f"{', '.join(paths)} hold(s) no results; nothing to {what} (parse runs "
                        "that finished at least one epoch first)")
    return df


def _cmd_parse(args) -> int:
    from ..results.parse import parse_runs, write_csv

    df = parse_runs(args.runs, args.experiment)
    write_csv(df, args.out)
    print(f"{args.out}: {len(df)} rows from {df['run'].nunique()} run(s)")
    if args.settings_html:
        from ..atomic import write_text
        from ..results.parse import html_page, settings_page_tables, settings_table

        title = f"Runs of {args.experiment}" if args.experiment else "Runs"
        write_text(args.settings_html,
                   html_page(title, settings_page_tables(settings_table(args.runs))))
    return 0


def _cmd_plot(args) -> int:
    from ..results import GRID_KINDS, KINDS
    from ..results.plots import plot, save

    if args.kind not in KINDS + GRID_KINDS:
        raise SettingsError(f"plot kind {args.kind!r} is unknown; expected one of "
                            f"{', '.join(KINDS + GRID_KINDS)}")
    fig = plot(args.kind, _read_csvs(args.inputs, "plot"), args.title, args.expect)
    print(", ".join(save(fig, args.out, args.pdf)))
    return 0


def _cmd_summarize(args) -> int:
    from ..results.summary import summarize, with_compressed, write

    table = with_compressed(summarize(_read_csvs(args.inputs, "summarise")), args.compressed)
    md = args.md or os.path.splitext(args.out)[0] + ".md"
    write(table, args.out, md, args.html)
    print(f"{args.out}, {md}: {len(table)} run(s)")
    return 0


def add_estimate(sub) -> None:
    p = sub.add_parser("estimate", help="the training still to do for a target, and its device-hours",
                       description="For Snakemake targets of a workflow config: the training runs "
                       "still to do (finished runs count as done, partial ones what remains), their "
                       "epochs, steps and images, and the device-hours at the given throughput.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="all (default), paper, an experiment, or a figure such as "
                   "figures/cifar10-val-error.png")
    p.add_argument("--config", default="config/experiments.yaml", metavar="FILE",
                   help="the workflow config (default %(default)s)")
    p.add_argument("--throughput", nargs="*", metavar="DEPTH=IMG_PER_S",
                   help="training img/s per depth (benchmarks/train_throughput.py, eps-resnet "
                   "selfcheck); other depths of a family are scaled by FLOPs (default: the "
                   "config's throughput list)")
    p.add_argument("--out", metavar="FILE.md", help="also write the table to this file")
    p.set_defaults(func=_cmd_estimate)


def _cmd_estimate(args) -> int:
    from ..atomic import write_text
    from ..results.estimate import estimate, markdown, parse_throughput, runs_of
    from ..workflow.config import RunTable, load_config, validate_config

    config = validate_config(load_config(args.config))
    table = RunTable(config)
    rates = args.throughput if args.throughput is not None else config.get("throughput")
    costs = estimate(runs_of(table, args.targets), parse_throughput(rates))
    text = markdown(costs, " ".join(args.targets) or "all")
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0
