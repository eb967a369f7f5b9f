"""Batches in a fixed order: batch ``k`` of a run is a pure function of (seed, k).

A *batch source* knows how many batches make one pass over its data (``len``) and computes the
``k``-th batch of the run (``batch(k)``, ``k`` counted from 0 over the whole run): which images
(a permutation per pass, seeded by (seed, pass)) and how they are augmented (an RNG seeded by
(seed, k)). :class:`OrderedBatches` feeds such a source to tensorpack: worker processes compute
batches ahead, the main process delivers them strictly in order. So a run's data does not depend
on the number of workers, on timing, or on where it was interrupted: a run resumed at step ``s``
continues with batch ``s`` exactly as an uninterrupted run would.
"""
from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import pickle
import signal
import weakref
from multiprocessing.connection import Connection, wait
from typing import Protocol

import numpy as np
from tensorpack.dataflow import DataFlow, DataFlowTerminated

from ..errors import STOP_SIGNALS, EpsResnetError

#: Seconds between checks that the data workers are alive while a batch is awaited.
WORKER_CHECK_SECONDS = 2.0


class WorkerDied(EpsResnetError):
    """A data worker process ended while the run still needed its batches."""


#: Purposes of the per-batch seeds, so that the permutation and the augmentation draw from
#: independent streams.
PERMUTATION, AUGMENTATION = 0, 1


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def batch(self, k: int) -> list: ...


def rng_for(seed: int, purpose: int, *index: int) -> np.random.RandomState:
    """A RandomState determined by (seed, purpose, index...) alone."""
    return np.random.RandomState([int(seed) & 0xFFFFFFFF, purpose, *index])


def pass_order(seed: int, n: int, batch: int, k: int) -> np.ndarray:
    """The item indices of training batch ``k``: pass ``k // (n // batch)`` visits the items in a
    permutation seeded by (seed, pass); only full batches are used."""
    per_pass = n // batch
    p, j = divmod(k, per_pass)
    order = rng_for(seed, PERMUTATION, p).permutation(n)
    return order[j * batch:(j + 1) * batch]


# Sources for the worker processes, inherited when they are forked (a source holds memory-mapped
# arrays or file lists that must not be pickled for every batch).
_SOURCES: dict[int, BatchSource] = {}
_token = itertools.count()
#: What stops a trainer (eps_resnet.errors.stop_on_signals): the workers leave them to it.
_STOPS = {signal.Signals[name] for name in STOP_SIGNALS}
#: Dataflows with live workers, ended at the process's exit before multiprocessing's own
#: clean-up, which would SIGTERM them (ignored, see _serve) and wait forever.
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _end_workers() -> None:
    for flow in list(_LIVE):
        flow.abandon()


def _serve(conn: Connection, token: int, parent: int) -> None:
    """A data worker: computes the batches asked for on ``conn``, in the order asked, and sends
    each back as ``(True, batch)`` or ``(False, exception)``; ends when the trainer closes its end
    or sends None. Quiet on every way out: the trainer names a worker that ended."""
    from ..compat import die_with_parent

    # Ctrl-C, a scheduler's SIGTERM and a closed terminal's SIGHUP reach the whole process
    # group: the trainer stops on them and ends its workers, which must not die first (the
    # trainer would report a lost worker instead of the stop). A dead trainer kills them.
    for signum in _STOPS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # blocked by the trainer until now
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # the trainer died before the line above
        os._exit(1)
    source = _SOURCES[token]
    try:
        while (k := conn.recv()) is not None:
            try:
                reply = (True, source.batch(k))
            except Exception as e:
                reply = (False, e)
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError):
                conn.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
    except (EOFError, OSError):
        pass  # the trainer closed its end, or died


class _Worker:
    """One worker process and the pipe to it; the batches it owes, in the order asked."""

    def __init__(self, token: int, index: int):
        context = multiprocessing.get_context("fork")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, token, os.getpid()),
                                       name=f"eps-resnet data worker {index}", daemon=True)
        # the child starts with the stop signals blocked, until it ignores them; here they
        # wait the few microseconds of the fork
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()

    def ask(self, k: int) -> None:
        self.conn.send(k)

    def receive(self, timeout: float):
        """(True, batch) or (False, exception); None if nothing came within ``timeout``
        seconds; raises EOFError if the process ended first."""
        ready = wait([self.conn, self.process.sentinel], timeout)
        if self.conn in ready:
            return self.conn.recv()  # EOFError when the worker died mid-send
        if ready:
            raise EOFError
        return None

    def end(self) -> None:
        """The process ends now (it holds nothing worth a clean exit) and is reaped."""
        self.conn.close()
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join(timeout=10)


class OrderedBatches(DataFlow):
    """A tensorpack DataFlow over a batch source: each iteration is one pass (``len(source)``
    batches), continuing the batch count where the previous one stopped; ``start_at(k)`` sets
    the first batch (a resumed run's global step). ``workers`` > 0 computes up to ``prefetch``
    batches ahead in that many processes: batch ``k`` is asked of worker ``k % workers``, each
    over a pipe of its own, so one worker's death cannot wedge the others and is seen at once."""

    def __init__(self, source: BatchSource, workers: int = 0, prefetch: int | None = None):
        self.source = source
        self.workers = int(workers)
        self.prefetch = prefetch or max(2, 2 * self.workers)
        self._next = 0
        self._workers: list[_Worker] = []
        self._stopped = False
        #: the error that stopped this dataflow (a WorkerDied, or a batch that could not be
        #: computed), if one did: training reports it, not the closed input queue it leads to
        self.failure: Exception | None = None

    def __len__(self):
        return len(self.source)

    def start_at(self, k: int) -> None:
        if self._workers:
            raise RuntimeError("start_at() must come before reset_state()")
        self._next = int(k)

    def reset_state(self):
        if self.workers > 0 and not self._workers:
            self._token = next(_token)
            _SOURCES[self._token] = self.source
            self._workers = [_Worker(self._token, i) for i in range(self.workers)]
            _LIVE.add(self)
            self._submitted = self._next
            self._stopped = False

    def _take(self):
        if not self._workers:
            if self._stopped:
                raise DataFlowTerminated()
            k, self._next = self._next, self._next + 1
            return self.source.batch(k)
        while self._submitted < self._next + self.prefetch:
            worker = self._worker_of(self._submitted)
            try:
                worker.ask(self._submitted)
            except OSError:
                self._lost(worker, self._next)
            self._submitted += 1
        k, self._next = self._next, self._next + 1
        ok, value = self._await(k)
        if not ok:
            raise value
        return value

    def _worker_of(self, k: int) -> _Worker:
        return self._workers[k % len(self._workers)]

    def _await(self, k: int):
        worker = self._worker_of(k)
        try:
            while (reply := worker.receive(WORKER_CHECK_SECONDS)) is None:
                self._check_workers(k)
            return reply
        except (EOFError, OSError):
            self._lost(worker, k)

    def _lost(self, worker: _Worker, k: int):
        """The pipe to ``worker`` broke: stopped on purpose, or the worker died."""
        if self._stopped:  # ended by close() or abandon(), from another thread
            raise DataFlowTerminated() from None
        self._check_workers(k, worker)

    def _check_workers(self, k: int, silent: _Worker | None = None) -> None:
        """Raise WorkerDied if a worker process has ended (or, ``silent``, closed its pipe):
        the run cannot go on without its batches."""
        dead = [w.process for w in self._workers if w.process.exitcode is not None]
        if silent is not None and not dead:
            silent.process.join(timeout=WORKER_CHECK_SECONDS)  # it closed its pipe: it is ending
            dead = [silent.process]
        if not dead:
            return
        code = dead[0].exitcode
        how = ("its pipe closed" if code is None else
               f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        if code == -signal.SIGKILL:
            how += ", as the system's out-of-memory killer does"
        raise WorkerDied(
            f"data worker process {dead[0].pid} ended ({how}) while batch {k} was awaited; "
            "its batches are lost, so the run stopped (run it again to resume from its last "
            "checkpoint; fewer --data-workers need less memory)")

    def __iter__(self):
        for _ in range(len(self)):
            try:
                batch = self._take()
            except Exception as e:
                # kept for training to report: tensorpack's input thread would print a traceback
                # and then end training as if it were done; DataFlowTerminated ends it quietly
                self.failure = self.failure or e
                self.abandon()
                raise DataFlowTerminated() from e
            yield batch

    def close(self):
        """End the worker processes (a batch they were computing is dropped)."""
        self.abandon()

    def abandon(self):
        """End the worker processes at once: safe from any thread and at any moment (each
        worker has its own pipe and holds no lock another process waits for)."""
        workers, self._workers = self._workers, []
        if workers:
            self._stopped = True
            for worker in workers:
                worker.end()
            _SOURCES.pop(self._token, None)

    def __del__(self):
        self.close()
