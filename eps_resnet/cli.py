"""The ``eps-resnet`` command line: one subcommand per stage of the pipeline."""
from __future__ import annotations

import argparse
import os
import sys

from . import compat  # noqa: F401  (before anything imports TensorFlow)
from .data import DATASETS
from .errors import EpsResnetError, first_line
from .models import VARIANTS
from .recipe import LR_MODES
from .settings import PRECISIONS, SettingsError, TrainSettings, default_of


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, naming the flag, as argparse does, but without the usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_train(sub):
    p = sub.add_parser("train", help="train a ResNet / ε-ResNet (resumes an existing run folder)",
                       description="Train a baseline ResNet or an ε-ResNet with tensorpack. Running "
                       "the same command on the same --out resumes from its newest checkpoint.")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--depth", required=True, type=int,
                   help="CIFAR family: 6n+2 (110 = ResNet-110); ImageNet: 18, 34, 50, 101, 152")
    p.add_argument("--variant", required=True, metavar="VARIANT", help=f"one of {', '.join(VARIANTS)}")
    p.add_argument("--epsilon", type=float, help="ε of the gate (required for --variant epsilon)")
    p.add_argument("--epsilon-start-epoch", type=int, metavar="K",
                   help="keep ε = 0 (gates open) until K epochs finished; default: the recipe's "
                   "(0: ε from the start)")
    p.add_argument("--epochs", type=int, help="default: the recipe's (CIFAR baselines 300, "
                   "ε-ResNet 1000; SVHN 200; ImageNet 110)")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training set "
                   "(SVHN: over train + extra, also with --no-svhn-extra)")
    p.add_argument("--batch", type=int, help="total batch, split across GPUs (default: the paper's)")
    p.add_argument("--gpus", type=int, help="GPUs to train on (default: all visible; 0: CPU)")
    p.add_argument("--towers", type=int, metavar="N",
                   help="with --gpus 0: N model replicas on the CPU, trained by the same replicated "
                   "trainer as several GPUs (a test and debugging aid for multi-GPU runs)")
    p.add_argument("--data-dir", help="folder written by `eps-resnet prepare`")
    p.add_argument("--svhn-extra", action=argparse.BooleanOptionalAction, default=None,
                   help="SVHN: train on train + extra as the original (default); --no-svhn-extra "
                   "trains on train alone, an epoch keeping the steps of train + extra")
    p.add_argument("--data-workers", type=int, help="dataflow processes (default: cores - 1)")
    p.add_argument("--seed", type=int, default=default_of("seed"),
                   help="seeds the data order, augmentation and initial weights (default %(default)s)")
    p.add_argument("--lr-schedule", metavar="MODE",
                   help=f"one of {', '.join(LR_MODES)} (default: adaptive for ε-ResNet on CIFAR/SVHN)")
    p.add_argument("--threads", type=int, default=default_of("threads"),
                   help="TensorFlow intra/inter-op threads (default 0: every core)")
    p.add_argument("--precision", default=default_of("precision"), metavar="P",
                   help=f"one of {', '.join(PRECISIONS)}; mixed: bfloat16 on CPUs with avx512_bf16 "
                   "or amx_bf16, float16 with loss scaling on NVIDIA GPUs (default fp32)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                   default=default_of("deterministic"),
                   help="TensorFlow's deterministic ops, so that the same seed gives the same numbers "
                   "on the same machine (default); --no-deterministic trades that for speed")
    p.add_argument("--family", help="synthetic data only: cifar or imagenet network layout")
    p.add_argument("--image-size", type=int, help="synthetic data only: image side in pixels")
    p.add_argument("--classes", type=int, help="synthetic data only: number of classes")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created or resumed)")
    p.set_defaults(func=_cmd_train)


def _train_settings(args) -> TrainSettings:
    return TrainSettings(**{k: v for k, v in vars(args).items() if k not in ("func", "command")})


def train_settings(argv: list[str]) -> TrainSettings:
    """The settings that ``eps-resnet train ARGV`` trains with (before defaults are resolved)."""
    return _train_settings(build_parser().parse_args(["train", *argv]))


def _cmd_train(args) -> int:
    from .train import train

    train(_train_settings(args))
    return 0


def _add_prepare(sub):
    from .data.prepare import PREPARABLE

    p = sub.add_parser("prepare", help="download or take, verify and convert a dataset",
                       description="Prepare a dataset for `eps-resnet train --data-dir`. Archives are "
                       "checked against their published MD5 before anything in them is read; a "
                       "finished prepare rerun does nothing.")
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(PREPARABLE)}")
    p.add_argument("--out", required=True, metavar="DIR", help="where the prepared dataset goes")
    p.add_argument("--source", metavar="PATH",
                   help="local copy instead of downloading: the CIFAR archive or its extracted "
                   "folder, the folder of the SVHN .mat files, or the ILSVRC-2012 folder")
    p.add_argument("--md5", action="append", metavar="[SPLIT=]HASH",
                   help="expected MD5 instead of the published one (SVHN: train=..., test=...)")
    p.add_argument("--svhn-extra", action=argparse.BooleanOptionalAction, default=True,
                   help="SVHN: also prepare the 531k extra images, which training uses by default "
                   "(default; --no-svhn-extra leaves them out)")
    p.add_argument("--lmdb", action="store_true",
                   help="ImageNet: also pack the images into LMDB files for sequential reads")
    p.add_argument("--val-labels", metavar="FILE",
                   help="ImageNet: labels of a flat val/ folder ('<file> <wnid or index>' lines)")
    p.add_argument("--decode-check", action="store_true",
                   help="ImageNet: decode every image (slow) instead of checking file signatures")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from .data.prepare import prepare

    md5 = None
    if args.md5:
        pairs = [m.split("=", 1) for m in args.md5]
        md5 = {k: v for k, v in pairs} if all(len(p) == 2 for p in pairs) else args.md5[-1]
    prepare(args.dataset, args.out, args.source, md5, svhn_extra=args.svhn_extra, lmdb=args.lmdb,
            val_labels=args.val_labels, decode_check=args.decode_check)
    return 0


def _add_results(sub):
    from .plots import GRID_KINDS, KINDS

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


def _read_csvs(paths, what: str):
    import os

    import pandas as pd

    from .data.files import DataError
    from .parse import COLUMNS

    frames = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"{path} does not exist; expected a CSV written by `eps-resnet parse`")
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
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    if df.empty:
        raise DataError(f"{', '.join(paths)} hold(s) no results; nothing to {what} (parse runs "
                        "that finished at least one epoch first)")
    return df


def _cmd_parse(args) -> int:
    import warnings

    from .parse import parse_runs, write_csv

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = parse_runs(args.runs, args.experiment)
    for w in caught:
        print(f"eps-resnet parse: warning: {w.message}", file=sys.stderr)
    write_csv(df, args.out)
    print(f"{args.out}: {len(df)} rows from {df['run'].nunique()} run(s)")
    if args.settings_html:
        from .atomic import write_text
        from .parse import html_page, settings_table

        title = f"Runs of {args.experiment}" if args.experiment else "Runs"
        write_text(args.settings_html, html_page(title, [("Settings", settings_table(args.runs))]))
    return 0


def _cmd_plot(args) -> int:
    from .plots import GRID_KINDS, KINDS, plot, save

    if args.kind not in KINDS + GRID_KINDS:
        raise SettingsError(f"plot kind {args.kind!r} is unknown; expected one of "
                            f"{', '.join(KINDS + GRID_KINDS)}")
    fig = plot(args.kind, _read_csvs(args.inputs, "plot"), args.title, args.expect)
    print(", ".join(save(fig, args.out, args.pdf)))
    return 0


def _cmd_summarize(args) -> int:
    import os

    from .summary import summarize, with_compressed, write

    table = with_compressed(summarize(_read_csvs(args.inputs, "summarise")), args.compressed)
    md = args.md or os.path.splitext(args.out)[0] + ".md"
    write(table, args.out, md, args.html)
    print(f"{args.out}, {md}: {len(table)} run(s)")
    return 0


def _add_compress(sub):
    p = sub.add_parser("compress", help="turn a trained ε-ResNet into the smaller network it found",
                       description="Remove the discarded blocks of an ε-ResNet run, check the smaller "
                       "network against the full one on the validation set, export a SavedModel.")
    p.add_argument("run", metavar="RUN_DIR", help="the run folder of an ε-ResNet")
    p.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where the compressed model goes (compressed.yaml, model, saved_model/)")
    p.add_argument("--limit", type=int, help="check on at most this many validation images")
    p.add_argument("--rule", choices=["half", "closed"], default="half",
                   help="remove blocks whose gate was closed at least half of the time (half, the "
                   "default) or only fully closed ones (closed, the original's compression)")
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("evaluate", help="validation error of a run or a compressed model",
                       description="Top-1 (and top-5 with more than 10 classes) validation error of "
                       "a run folder's newest checkpoint or of a compressed model folder, written "
                       "as JSON.")
    p.add_argument("model", metavar="MODEL_DIR", help="a run folder or a compressed model folder")
    p.add_argument("--dataset", help="must match the model's (default: the model's)")
    p.add_argument("--data-dir", metavar="DIR", help="prepared dataset (default: the run's)")
    p.add_argument("--out", metavar="JSON", help="default: MODEL_DIR/eval.json")
    p.add_argument("--limit", type=int, help="at most this many validation images")
    p.set_defaults(func=_cmd_evaluate)


def _add_export(sub):
    p = sub.add_parser("export", help="a trained run as a SavedModel (raw uint8 images in)",
                       description="Export any trained run (baselines included) as a TensorFlow "
                       "SavedModel: signature serving_default takes uint8 RGB images (N x H x W x 3, "
                       "0-255) as `input` and returns `prob` and `logits`; the normalisation is "
                       "inside, so plain TensorFlow can use it.")
    p.add_argument("run", metavar="RUN", help="a run folder of `eps-resnet train`")
    p.add_argument("--out", required=True, metavar="DIR", help="where the SavedModel goes")
    p.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="the prepared dataset (its training mean goes into the model; default: "
                   "the run's)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from .export import export

    export(args.run, args.out, args.step, args.data_dir)
    return 0


def _cmd_compress(args) -> int:
    from .compress import compress

    compress(args.run, args.out, args.step, args.limit, rule=args.rule)
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    evaluate(args.model, args.data_dir, args.dataset, args.out, args.limit)
    return 0


def _add_compare(sub):
    p = sub.add_parser("compare", help="whether two runs are identical (a reproduction check)",
                       description="Compare every metric of every epoch of two run folders' "
                       "stats.json. Exit code 0 if they are identical (within --tolerance), 1 "
                       "if not; the report names the first difference and the largest one.")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder")
    p.add_argument("run_b", metavar="RUN_B", help="the run folder to compare it with")
    p.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                   help="largest absolute difference still counted as equal (default 0: bit for bit)")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    import math

    from .compare import compare_runs
    from .runfolder import RunFolderError

    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise SettingsError(f"--tolerance {args.tolerance} is not a number >= 0")
    for run in (args.run_a, args.run_b):
        if not os.path.isfile(os.path.join(run, "stats.json")):
            raise RunFolderError(f"{run} has no stats.json; expected a run folder of `eps-resnet train`")
    result = compare_runs(args.run_a, args.run_b, args.tolerance)
    print(result.report(args.tolerance))
    return 0 if result.identical else 1


def _add_selfcheck(sub):
    p = sub.add_parser("selfcheck", help="check this machine before training on it (a one-page report)",
                       description="Check what TensorFlow sees (GPUs, compute capability, memory; "
                       "the CPU's features), that NHWC and NCHW compute the same network, that the "
                       "gate decides right, how fast the real training path runs on one and on all "
                       "devices (fp32, and mixed where supported), and the device-hours of the "
                       "paper's headline figures. Exit code 1 if a check fails.")
    p.add_argument("--quick", action="store_true",
                   help="fewer steps and smaller batches (a rough figure in about a minute)")
    p.add_argument("--out", metavar="FILE.md", help="also write the report to this file")
    p.set_defaults(func=_cmd_selfcheck)


def _cmd_selfcheck(args) -> int:
    from .atomic import write_text
    from .selfcheck import report, selfcheck

    checks = selfcheck(args.quick, log=lambda m: print(m, file=sys.stderr))
    text = report(checks)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0 if all(c.ok for c in checks) else 1


def _add_estimate(sub):
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
    from .atomic import write_text
    from .estimate import estimate, markdown, parse_throughput, runs_of
    from .workflow import RunTable, load_config, validate_config

    config = validate_config(load_config(args.config))
    table = RunTable(config)
    rates = args.throughput if args.throughput is not None else config.get("throughput")
    costs = estimate(runs_of(table, args.targets), parse_throughput(rates))
    text = markdown(costs, " ".join(args.targets) or "all")
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


def _add_check_config(sub):
    p = sub.add_parser("check-config", help="check a workflow config file (syntax, schema, runs)",
                       description="Check a workflow config file as the workflow will: YAML syntax "
                       "(with the line of an error, which Snakemake's own message lacks), the "
                       "schema, and that every run can train. Prints its experiments and runs.")
    p.add_argument("config", nargs="+", metavar="FILE", help="config file(s), e.g. config/demo.yaml")
    p.set_defaults(func=_cmd_check_config)


def _cmd_check_config(args) -> int:
    from .workflow import RunTable, load_config, validate_config

    for path in args.config:
        table = RunTable(validate_config(load_config(path)))
        runs = [r for runs in table.runs.values() for r in runs]
        print(f"{path}: {len(table.runs)} experiment(s), {len(runs)} training run(s): "
              + ", ".join(f"{e} ({len(r)})" for e, r in table.runs.items()))
    return 0


def _add_gpu_run(sub):
    p = sub.add_parser("gpu-run", help="run a command on GPUs of its own (local GPU slots)",
                       description="Run COMMAND with CUDA_VISIBLE_DEVICES set to N GPUs that no other "
                       "gpu-run holds, for the command's whole lifetime (released on exit, crash "
                       "included). Under SLURM the scheduler's allocation is used as is.")
    p.add_argument("--gpus", type=int, required=True, metavar="N", help="GPUs the command needs (0: none)")
    p.add_argument("--lock-dir", help="where the slot lock files live (default: a folder in the "
                   "system's temporary directory, shared by every job of this machine)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=_cmd_gpu_run)


def _cmd_gpu_run(args) -> int:
    from .gpus import DEFAULT_LOCK_DIR, SlotError, run_with_gpus

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SettingsError("gpu-run needs a command after --")
    try:
        return run_with_gpus(args.gpus, command, args.lock_dir or DEFAULT_LOCK_DIR)
    except SlotError as e:
        raise SettingsError(f"--gpus {args.gpus}: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="eps-resnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"eps-resnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_prepare(sub)
    _add_results(sub)
    _add_compress(sub)
    _add_gpu_run(sub)
    _add_check_config(sub)
    _add_compare(sub)
    _add_selfcheck(sub)
    _add_export(sub)
    _add_estimate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EpsResnetError as e:
        print(f"eps-resnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the file system said no (permissions, a full disk, a file where a folder should be):
        # the user's to fix, so one line naming the path rather than a traceback
        print(f"eps-resnet {args.command}: error: {e.strerror or e}"
              + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
