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

import itertools
import multiprocessing
import signal
from collections import deque
from typing import Protocol

import numpy as np
from tensorpack.dataflow import DataFlow

from ..errors import EpsResnetError

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


def _compute(token: int, k: int):
    return _SOURCES[token].batch(k)


def _worker_init():
    import signal

    from ..compat import die_with_parent

    # a worker ends quietly on the signals the trainer turns into a clean stop (it inherited
    # the trainer's handlers when it was forked)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    die_with_parent()


class OrderedBatches(DataFlow):
    """A tensorpack DataFlow over a batch source: each iteration is one pass (``len(source)``
    batches), continuing the batch count where the previous one stopped; ``start_at(k)`` sets
    the first batch (a resumed run's global step). ``workers`` > 0 computes up to ``prefetch``
    batches ahead in that many processes."""

    def __init__(self, source: BatchSource, workers: int = 0, prefetch: int | None = None):
        self.source = source
        self.workers = int(workers)
        self.prefetch = prefetch or max(2, 2 * self.workers)
        self._next = 0
        self._pool = None
        self._pending: deque = deque()
        #: the WorkerDied that stopped this dataflow, if one did (training reports it, not the
        #: closed input queue it leads to)
        self.failure: WorkerDied | None = None

    def __len__(self):
        return len(self.source)

    def start_at(self, k: int) -> None:
        if self._pool is not None:
            raise RuntimeError("start_at() must come before reset_state()")
        self._next = int(k)

    def reset_state(self):
        if self.workers > 0 and self._pool is None:
            self._token = next(_token)
            _SOURCES[self._token] = self.source
            self._pool = multiprocessing.get_context("fork").Pool(self.workers,
                                                                  initializer=_worker_init)
            # (multiprocessing.Pool's internals: the processes it started; it replaces one that
            # dies without a word, and the batch that one was computing never arrives)
            self._workers = list(self._pool._pool)
            self._submitted = self._next

    def _take(self):
        if self._pool is None:
            k, self._next = self._next, self._next + 1
            return self.source.batch(k)
        while len(self._pending) < self.prefetch:
            self._pending.append(self._pool.apply_async(_compute, (self._token, self._submitted)))
            self._submitted += 1
        k, self._next = self._next, self._next + 1
        result = self._pending.popleft()
        self._check_workers(k)
        while not result.ready():
            result.wait(WORKER_CHECK_SECONDS)
            self._check_workers(k)
        return result.get()

    def _check_workers(self, k: int) -> None:
        """Raise WorkerDied if a worker process has ended. The batch it was computing would be
        awaited forever, and one killed while it held the pool's task lock wedges the whole
        pool; one that died idle would be replaced unnoticed, but the run fails all the same,
        at the next batch, whatever the dead worker was doing."""
        dead = [p for p in self._workers if p.exitcode is not None]
        if not dead:
            return
        code = dead[0].exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        if code == -signal.SIGKILL:
            how += ", as the system's out-of-memory killer does"
        self.abandon()
        self.failure = WorkerDied(
            f"data worker process {dead[0].pid} ended ({how}) while batch {k} was awaited; "
            "its batches are lost, so the run stopped (run it again to resume from its last "
            "checkpoint; fewer --data-workers need less memory)")
        raise self.failure

    def __iter__(self):
        for _ in range(len(self)):
            yield self._take()

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
            _SOURCES.pop(self._token, None)

    def abandon(self):
        """End the worker processes at once, skipping the pool's own clean-up: a worker that a
        signal killed (Ctrl-C and a scheduler's SIGTERM reach the whole process group) may have
        died holding the pool's task lock, and the clean-up, which multiprocessing also runs at
        the process's exit, would wait for that lock forever."""
        if self._pool is None:
            return
        from multiprocessing import pool as mp_pool

        # (multiprocessing.Pool's internals: its worker handler would replace killed workers,
        # and the process's exit waits for every live child)
        pool, self._pool = self._pool, None
        pool._worker_handler._state = mp_pool.TERMINATE
        pool._change_notifier.put(None)
        pool._worker_handler.join(timeout=10)
        for process in pool._pool:
            process.kill()
        for process in pool._pool:
            process.join(timeout=10)
        pool._terminate.cancel()  # its clean-up, a multiprocessing.util.Finalize
        _SOURCES.pop(self._token, None)

    def __del__(self):
        self.close()
