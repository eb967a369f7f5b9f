"""The ordered dataflow's worker processes, in this process: batches independent of the worker
count, exact resume, a dead worker named, a failing batch reported, a stop from another thread."""
import os
import signal
import threading
import time

import numpy as np
import pytest
from tensorpack.dataflow import DataFlowTerminated

from eps_resnet.data.ordered import AUGMENTATION, OrderedBatches, WorkerDied, rng_for


class Source:
    """Batch k: a draw seeded by k alone, and the pid that computed it; batch ``bad`` fails
    and batch ``slow`` takes a while."""

    def __init__(self, n=7, bad=None, slow=None):
        self.n, self.bad, self.slow = n, bad, slow

    def __len__(self):
        return self.n

    def batch(self, k):
        if k == self.bad:
            raise ValueError(f"batch {k} cannot be read")
        if k == self.slow:
            time.sleep(60)
        return [rng_for(3, AUGMENTATION, k).rand(4, 2).astype(np.float32),
                np.int32(k), os.getpid()]


def take(flow, count):
    out, it = [], iter(flow)
    while len(out) < count:
        try:
            out.append(next(it))
        except StopIteration:
            it = iter(flow)  # the next pass goes on counting
    return out


def same(a, b):
    return all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_do_not_depend_on_the_workers_and_resume_exactly(workers):
    alone = take(OrderedBatches(Source()), 17)
    flow = OrderedBatches(Source(), workers)
    flow.reset_state()
    try:
        ahead = take(flow, 17)
    finally:
        flow.close()
    assert same(alone, ahead)
    assert {b[2] for b in ahead} - {os.getpid()} and os.getpid() not in {b[2] for b in ahead}

    resumed = OrderedBatches(Source(), workers)
    resumed.start_at(9)
    resumed.reset_state()
    try:
        assert same(alone[9:], take(resumed, 8))
    finally:
        resumed.close()


def test_a_dead_worker_is_named_and_the_others_end():
    flow = OrderedBatches(Source(), 2)
    flow.reset_state()
    it = iter(flow)
    next(it)
    victim, other = (w.process for w in flow._workers)  # noqa: SLF001 (the test's own view)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    with pytest.raises(DataFlowTerminated):
        for _ in range(20):
            next(it)
    assert isinstance(flow.failure, WorkerDied)
    assert str(flow.failure).startswith(f"data worker process {victim.pid} ended (killed by "
                                        "SIGKILL, as the system's out-of-memory killer does)")
    other.join(timeout=10)
    assert other.exitcode is not None, "the other worker outlived the stopped dataflow"


def test_a_batch_that_fails_in_a_worker_is_the_failure():
    flow = OrderedBatches(Source(bad=4), 2)
    flow.reset_state()
    with pytest.raises(DataFlowTerminated):
        take(flow, 10)
    assert isinstance(flow.failure, ValueError) and str(flow.failure) == "batch 4 cannot be read"


def test_signals_to_the_process_group_leave_the_workers_to_the_trainer():
    flow = OrderedBatches(Source(), 2)
    flow.reset_state()
    try:
        for w in flow._workers:  # noqa: SLF001
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                os.kill(w.process.pid, signum)
        assert same(take(flow, 9), take(OrderedBatches(Source()), 9))
    finally:
        flow.close()


def test_abandon_from_another_thread_ends_a_waiting_iteration_at_once():
    flow = OrderedBatches(Source(slow=1), 2)
    flow.reset_state()
    it = iter(flow)
    next(it)
    threading.Timer(0.5, flow.abandon).start()
    started = time.time()
    with pytest.raises(DataFlowTerminated):
        next(it)
    assert time.time() - started < 5
    assert flow.failure is None
