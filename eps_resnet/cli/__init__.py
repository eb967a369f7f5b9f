"""The ``eps-resnet`` command line: one subcommand per stage of the pipeline.

Each stage's subcommands (arguments next to their handler) live in the module of that stage's
name: data (prepare), training (train), runs (compress, evaluate, export, compare), results
(parse, plot, figures-page, summarize, estimate) and workflow (gpu-run, check-config, selfcheck). A handler
imports its stage's code when it runs, so ``--help`` starts no TensorFlow; this module imports
only the standard library at its top, so that a signal at any moment after the interpreter's own
start-up is the one-line stop of :func:`main`.
"""
from __future__ import annotations

import argparse
import sys

from typing import TYPE_CHECKING

from .. import compat  # noqa: F401  (before anything imports TensorFlow)
from ..errors import EpsResnetError, stop_on_signals
from ..logs import to_console

if TYPE_CHECKING:
    from ..training.settings import TrainSettings

#: What ``eps-resnet --help`` says first.
DESCRIPTION = "The ``eps-resnet`` command line: one subcommand per stage of the pipeline."


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, naming the flag, as argparse does, but without the usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import data, results, runs, training, workflow

    parser = _Parser(prog="eps-resnet", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"eps-resnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # the order of `eps-resnet --help`
    for add in (training.add_train, data.add_prepare, results.add_parse, results.add_plot,
                results.add_figures_page, results.add_summarize, runs.add_compress,
                runs.add_evaluate, runs.add_gates, workflow.add_gpu_run, workflow.add_check_config,
                runs.add_compare, workflow.add_selfcheck, runs.add_export, results.add_estimate):
        add(sub)
    return parser


def train_settings(argv: list[str]) -> TrainSettings:
    """The settings that ``eps-resnet train ARGV`` trains with (before defaults are resolved)."""
    from . import training

    return training.settings_of(build_parser().parse_args(["train", *argv]))


def _check_utf8(words: list[str]) -> None:
    """Refuse an argument with a byte that is not UTF-8 (a file name of another encoding):
    TensorFlow, which writes checkpoints, and the YAML records take names as UTF-8 only, and
    would fail half-way instead."""
    import os

    for word in words:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            raise EpsResnetError(f"{os.fsencode(word)!r} holds a byte that is not UTF-8; expected "
                                 "UTF-8 file and folder names (TensorFlow and the run records "
                                 "take no other): rename it") from None


def main(argv: list[str] | None = None) -> int:
    import signal

    words = sys.argv[1:] if argv is None else argv
    # named before the parser runs, for a stop while it imports the stages
    prog = f"eps-resnet {words[0]}" if words and not words[0].startswith("-") else "eps-resnet"
    try:
        if argv is None:
            import logging

            # a log line that cannot be written (a full disk) is dropped, not printed with a
            # traceback: the write that matters (run.yaml, a checkpoint) fails in one line
            logging.raiseExceptions = False
        with stop_on_signals(command=argv is None):
            _check_utf8(words)
            args = build_parser().parse_args(argv)
            prog = f"eps-resnet {args.command}"
            to_console(prog)
            return args.func(args)
    except KeyboardInterrupt as e:
        # Ctrl-C (or SIGTERM / SIGHUP during training) at any point, imports included: one line,
        # and the shell's exit status for that signal
        signum = getattr(e, "signum", signal.SIGINT)
        resume = " (run the same command again to resume)" if prog.endswith(" train") else ""
        print(f"{prog}: stopped by {signal.Signals(signum).name}{resume}", file=sys.stderr)
        return 128 + signum
    except EpsResnetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the file system said no (permissions, a full disk, a file where a folder should be):
        # the user's to fix, so one line naming the path rather than a traceback
        print(f"{prog}: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
              file=sys.stderr)
        return 2
