"""The one base class of the errors a user can fix.

Every module raises its own subclass (bad flags, a damaged dataset, a run folder that cannot be
compressed, ...); ``eps-resnet`` prints any of them as one line naming the input and exits 2,
and the workflow turns them into Snakemake errors. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from contextlib import contextmanager


class EpsResnetError(Exception):
    """Bad input or state that the user can fix; the message is one line naming the input."""


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (SIGTERM from a scheduler's time limit or scancel, SIGHUP
    from a closed terminal), handled as Ctrl-C is: the run is left resumable."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


#: The signals that stop a command: Ctrl-C, a scheduler's time limit or scancel, a closed terminal.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
#: Seconds before a stop asked during an import is looked at again.
IMPORT_RETRY_SECONDS = 0.02


def _importing(frame) -> bool:
    """Whether the main thread is inside an import (Python's import machinery is on its stack):
    an exception there may fail a C extension's initialisation, which leaves the interpreter
    unable to shut down cleanly."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def stop_on_signals(command: bool = False):
    """Ctrl-C, SIGTERM (what Slurm sends at a time limit or on scancel) and SIGHUP (a closed
    terminal) stop a command alike, by raising :class:`Interrupted`: training leaves run.yaml
    ``interrupted`` and resumes to the same numbers, prepare removes its staging folder. (Python's
    default for the last two is to die at once, leaving run.yaml at ``running``.) A stop asked
    during an import is taken when the import is done; later signals are ignored, so the
    clean-up the first one started runs to its end. Only the main thread can install handlers;
    elsewhere this does nothing. For a ``command`` (the process is the command), a signal after
    the block, while the interpreter shuts down, ends the process at once with the shell's
    status for it, 128 + N, as one during the block does."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked, raised = [], []

    def stop(signum, frame):
        if raised:
            return
        asked.append(signum)
        if _importing(frame):
            again = threading.Timer(IMPORT_RETRY_SECONDS, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        raised.append(signum)
        raise Interrupted(signum)

    signums = [signal.Signals[name] for name in STOP_SIGNALS]
    previous = {s: signal.signal(s, stop) for s in signums}
    try:
        yield
        if asked and not raised:  # asked during an import the block ended with
            raised.append(asked[0])
            raise Interrupted(asked[0])
    finally:
        for s, handler in previous.items():
            signal.signal(s, _exit_now if command else handler)


def _exit_now(signum, frame):
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream closed or mid-write: its last bytes are lost, not the exit
            pass
    os._exit(128 + signum)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ("" if it has none): what a one-line error or
    run.yaml's ``error`` quotes of a library's multi-line message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
