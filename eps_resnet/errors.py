"""The one base class of the errors a user can fix.

Every module raises its own subclass (bad flags, a damaged dataset, a run folder that cannot be
compressed, ...); ``eps-resnet`` prints any of them as one line naming the input and exits 2,
and the workflow turns them into Snakemake errors. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class EpsResnetError(Exception):
    """Bad input or state that the user can fix; the message is one line naming the input."""


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (SIGTERM from a scheduler's time limit or scancel, SIGHUP
    from a closed terminal), handled as Ctrl-C is: the run is left resumable."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ("" if it has none): what a one-line error or
    run.yaml's ``error`` quotes of a library's multi-line message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
