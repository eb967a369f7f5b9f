"""How the package speaks: every module logs through :mod:`logging` under ``eps_resnet``
(``logging.getLogger(__name__)``), and long loops over a dataset show a tqdm progress bar.

A library stays silent until a program says where its records go. ``eps-resnet`` does, for the
command it runs (:func:`to_console`): what a command made (INFO) goes to stdout, so that it can be
piped; notes on how it goes (which checkpoint is read, progress) and warnings go to stderr,
prefixed with the command's name. tensorpack keeps its own logger, ``tensorpack``.

A base module: it imports nothing of the package, and neither tqdm nor anything heavy at import.
"""
from __future__ import annotations

import logging
import sys

ROOT = "eps_resnet"

#: Between INFO and WARNING: a note on stderr (what a command reads, what it repairs quietly),
#: not a result and not a warning.
NOTE = logging.INFO + 5
logging.addLevelName(NOTE, "NOTE")

logging.getLogger(ROOT).addHandler(logging.NullHandler())


class _Console(logging.Handler):
    """Results to stdout, notes and warnings to stderr, each in one write (a signal cannot cut a
    line in two). The streams are looked up per record, so redirections made after the set-up
    (pytest's capture, contextlib.redirect_stdout) are followed."""

    def __init__(self, prog: str):
        super().__init__(logging.INFO)
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"{self.prog}: {record.levelname.lower()}: {text}"
            elif record.levelno >= NOTE:
                text = f"{self.prog}: {text}"
            stream = sys.stdout if record.levelno < NOTE else sys.stderr
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def to_console(prog: str) -> None:
    """Send the package's records to the terminal as described above, named ``prog``."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, _Console)]:
        logger.removeHandler(handler)
    logger.addHandler(_Console(prog))
    logger.setLevel(logging.INFO)


def progress(iterable=None, total: int | None = None, what: str = "", unit: str = "img",
             **options):
    """A tqdm bar on stderr over ``iterable`` (or updated by the caller): live on a terminal,
    a line a minute in a log file, as tensorpack's bars. ``options`` go to tqdm."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=what, unit=unit, file=sys.stderr, dynamic_ncols=tty,
                mininterval=0.5 if tty else 60, smoothing=0.1, **options)
