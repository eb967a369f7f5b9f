"""tensorpack callbacks that apply :mod:`eps_resnet.training.schedules` to graph variables.

Both rebuild their state when a run resumes: the value in force is recomputed from the schedule
(and, for the adaptive rule, from the ``discarded_cnt`` history in the run's stats.json), so a
resumed run follows exactly the schedule an uninterrupted one would have.
"""
from __future__ import annotations

import glob
import json
import os
import shutil

from tensorpack.callbacks import Callback, ModelSaver
from tensorpack.callbacks.monitor import JSONWriter, MonitorBase, ScalarPrinter
from tensorpack.callbacks.inference import Inferencer
from tensorpack.callbacks.param import GraphVarParam
from tensorpack.input_source import QueueInput
from tensorpack.utils import logger

from ..errors import EpsResnetError, first_line
from ..models.gate import gate_disagreements
from .runfolder import CHECKPOINT_INDEX, CHECKPOINT_PREFIX, STATS_FILE, stat_history
from .schedules import AdaptiveRestart, Points, replay, value_at


class SaveError(EpsResnetError):
    """A file of the run's state (a checkpoint, the graph, stats.json) could not be written:
    training stops rather than go on with state it cannot keep."""


#: Causes worth naming as they are; anything else is quoted from the error's first line.
_CAUSES = ("No space left on device", "Disk quota exceeded", "Read-only file system",
           "Permission denied", "File too large")
RESUME_HINT = "earlier checkpoints are intact; make room and run the same command to resume"


def _cause(e: BaseException) -> str:
    text = f"{getattr(e, 'strerror', None) or ''} {getattr(e, 'message', None) or ''} {e}"
    return next((c for c in _CAUSES if c in text), first_line(e)[:160] or type(e).__name__)


def _remove(paths) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


class _VariableSetter(Callback):
    _chief_only = False

    def __init__(self, var_name: str):
        self.param = GraphVarParam(var_name)
        self.var_name = var_name

    def _setup_graph(self):
        self.param.setup_graph()

    def _set(self, value: float | None, why: str = ""):
        if value is None:
            return
        old = self.param.get_value()
        if old != value:
            logger.info(f"[{self.var_name}] after epoch {self.epoch_num}: {old:g} -> {value:g}{why}")
            self.param.set_value(value)


class EpochScheduleSetter(_VariableSetter):
    """Sets a scalar variable from ``(epoch, value)`` points (e.g. the ε schedule)."""

    def __init__(self, var_name: str, points: Points):
        super().__init__(var_name)
        self.points = list(points)

    def _before_train(self):
        self._set(value_at(self.points, self.epoch_num))

    def _trigger_epoch(self):
        self._set(value_at(self.points, self.epoch_num))


class LearningRateSetter(_VariableSetter):
    """The learning rate from a base schedule, restarted faster when ``stat`` rises
    (:class:`~eps_resnet.training.schedules.AdaptiveRestart`; without ``fast`` a plain schedule)."""

    def __init__(self, base: Points, fast: Points | None = None, stat: str = "discarded_cnt",
                 var_name: str = "learning_rate"):
        super().__init__(var_name)
        self.base, self.fast, self.stat = base, fast, stat

    def _before_train(self):
        self.rule = AdaptiveRestart(self.base, self.fast)
        done = self.epoch_num  # epochs already trained (> 0 when resuming)
        stats_file = os.path.join(logger.get_logger_dir() or ".", STATS_FILE)
        self.history = stat_history(stats_file, self.stat, done + 1) if self.rule.adaptive else []
        replay(self.rule, self.history, done)  # the state an uninterrupted run has now
        if done and self.rule.restarts:
            logger.info(f"[learning_rate] resumed after epoch {done}; adaptive restarts at epochs "
                        f"{self.rule.restarts}")
        self._set(self.rule.value)

    def _trigger_epoch(self):
        if self.rule.adaptive:
            self.history.append(float(self.trainer.monitors.get_latest(self.stat)))
        restarts = len(self.rule.restarts)
        value = self.rule.after_epoch(self.epoch_num, self.history)
        why = ""
        if len(self.rule.restarts) > restarts:
            why = (f" (adaptive restart: {self.stat} "
                   f"{self.history[-self.rule.last_k - 1]:.2f} -> {self.history[-1]:.2f})")
        self._set(value, why)


class CheckpointAfterStats(ModelSaver, MonitorBase):
    """tensorpack's ModelSaver, run after the epoch's stats.json is written, and stopping
    training when a save fails.

    tensorpack triggers callbacks before monitors, so a plain ModelSaver writes the checkpoint of
    an epoch before JSONWriter writes its metrics; a job killed in between would resume after an
    epoch whose metrics (and discarded_cnt, which the adaptive schedule replays) are lost. Passed
    last in ``monitors``, this saver runs after them: a checkpoint always has its stats, and
    stats without a checkpoint are dropped and retrained on resume.

    tensorpack's saver logs a failed save (a full disk, a quota) and trains on: the run would
    end "finished" with an older checkpoint as its newest. Here a failed save removes what it
    left half-written and raises :class:`SaveError`; the checkpoints before it stay intact.
    """

    def _before_train(self):
        from ..compat import import_tf

        try:
            super()._before_train()  # the graph's definition, graph-<time>.meta
        except (OSError, import_tf().errors.OpError) as e:
            _remove(glob.glob(os.path.join(glob.escape(self.checkpoint_dir), "graph-*.meta.tmp*")))
            raise SaveError(f"the graph file graph-<time>.meta in {self.checkpoint_dir} could not "
                            f"be written ({_cause(e)}); make room and run the same command "
                            "again") from None

    def _trigger(self):
        from ..compat import import_tf

        tf = import_tf()
        step = self.global_step
        path = f"{self.path}-{step}"
        try:
            self.saver.save(tf.get_default_session(), self.path,
                            global_step=tf.train.get_global_step(), write_meta_graph=False)
        except (OSError, tf.errors.OpError) as e:
            folder = glob.escape(self.checkpoint_dir)
            _remove(glob.glob(os.path.join(folder, f"{CHECKPOINT_PREFIX}-{step}.*"))
                    + glob.glob(os.path.join(folder, f"{CHECKPOINT_PREFIX}-{step}_temp*"))
                    + glob.glob(os.path.join(folder, f"{CHECKPOINT_INDEX}.tmp*")))
            raise SaveError(f"checkpoint {path} could not be written ({_cause(e)}); "
                            f"{RESUME_HINT}") from None
        logger.info(f"Model saved to {path}.")


class StatsWriter(JSONWriter):
    """tensorpack's JSONWriter (stats.json, every epoch's metrics), stopping training when the
    file cannot be written instead of logging the error and going on."""

    def _write_stat(self):
        tmp = self._fname + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self._stats, f)
            os.replace(tmp, self._fname)
        except OSError as e:
            _remove([tmp])
            raise SaveError(f"{self._fname} could not be written ({_cause(e)}); "
                            f"{RESUME_HINT}") from None


class FullPrecisionPrinter(ScalarPrinter):
    """tensorpack's ScalarPrinter, printing each value exactly (Python's shortest repr of the
    float stats.json holds, not 5 digits), so that a stats.json rebuilt from the log is the same
    file's numbers (:func:`eps_resnet.training.runlog.repair_stats`)."""

    def _trigger(self):
        for name, value in sorted(self._dic.items()):
            if (self._whitelist is None or any(r.search(name) for r in self._whitelist)) \
                    and not any(r.search(name) for r in self._blacklist):
                logger.info(f"{name}: {float(value)!r}")
        self._dic = {}


class OrderedQueueInput(QueueInput):
    """tensorpack's QueueInput, deterministic: one dequeue per step of the whole batch, split
    across the towers in order (with a dequeue per tower, which tower gets which batch would be
    a race), and no queue-size summary (the queue's fill level depends on timing, and stats.json
    holds only what a seed determines)."""

    def __init__(self, ds, towers: int = 1):
        super().__init__(ds)
        self.towers = towers
        self._parts, self._calls = None, 0

    def _get_input_tensors(self):
        if self.towers == 1:
            return super()._get_input_tensors()
        if self._parts is None:
            import tensorflow as tf

            with tf.device("/cpu:0"):
                whole = super()._get_input_tensors()
                self._parts = list(zip(*[tf.split(t, self.towers) for t in whole]))
        part = self._parts[self._calls % self.towers]  # tensorpack asks once per tower, in order
        self._calls += 1
        return list(part)

    def _get_callbacks(self):
        from tensorpack.callbacks.concurrency import StartProcOrThread
        from tensorpack.input_source.input_source import _get_reset_callback

        return [StartProcOrThread(self.thread), _get_reset_callback(self._inf_ds)]


#: Ops for which TensorFlow's op determinism has no deterministic GPU kernel and raises
#: UnimplementedError when they run (TensorFlow's determinism RFC and release notes; none of
#: them is in this project's networks, but a modified model may bring one in).
GPU_OPS_WITHOUT_DETERMINISM = frozenset({
    "SparseTensorDenseMatMul", "Bincount", "DenseBincount", "SparseBincount", "RaggedBincount",
    "CropAndResizeGradImage", "CropAndResizeGradBoxes", "UnsortedSegmentProd", "SegmentProd",
})


class DeterminismCheck(Callback):
    """Before the first step, names the graph's ops that have no deterministic GPU kernel (in
    the log, and through ``found`` in run.yaml), so that a run does not fail hours in when such
    an op first runs at its first validation."""

    def __init__(self, found):
        self.found = found

    def _setup_graph(self):
        ops = sorted({op.type for op in self.graph.get_operations()} & GPU_OPS_WITHOUT_DETERMINISM)
        if ops:
            logger.warn(f"--deterministic: no deterministic GPU kernel for {', '.join(ops)}; "
                        "TensorFlow will stop when they run (use --no-deterministic)")
            self.found(ops)


class SmallMapKernels(Callback):
    """Eigen's CPU kernel for the input gradients of convolutions on small maps
    (:mod:`eps_resnet.training.kernels`), set on the training graph once the trainer has built
    it; only for CPU training with oneDNN's rewrites off."""

    def _setup_graph(self):
        from .kernels import use_eigen_on_small_maps

        n = use_eigen_on_small_maps(self.graph)
        if n:
            logger.info(f"{n} convolution input gradients on maps of at most 2x2 pixels use "
                        "Eigen's CPU kernel")


class GatesAtValidation(Inferencer):
    """Per gated block, over the validation batches: the fraction in which the gate was closed
    (the mean of ``is_discarded``, as ``<block>/val_is_discarded``) and the mean of the branch's
    max|F| (``<block>/gate/val_peak``). Training's moving averages of the same two tensors sit
    beside them in stats.json: a block closed at training but open at validation (or the other
    way round) is the network the evaluation measures differing from the one training pruned."""

    def __init__(self, blocks):
        self.blocks = list(blocks)

    def _get_fetches(self):
        return [f"{b}/is_discarded" for b in self.blocks] + [f"{b}/gate/peak" for b in self.blocks]

    def _before_inference(self):
        self.sums, self.batches = None, 0

    def _on_fetches(self, values):
        import numpy as np

        values = np.asarray(values, np.float64)
        self.sums = values if self.sums is None else self.sums + values
        self.batches += 1

    def _after_inference(self):
        n = len(self.blocks)
        means = self.sums / max(1, self.batches)
        return {**{f"{b}/val_is_discarded": float(means[i]) for i, b in enumerate(self.blocks)},
                **{f"{b}/gate/val_peak": float(means[n + i]) for i, b in enumerate(self.blocks)}}


class DiscardedBlocksPrinter(Callback):
    """After each epoch, one log line for all gated blocks instead of one per block (54 for
    ResNet-110): which are discarded, and every block's moving-average is_discarded in a form
    the log parser reads back (eps_resnet.results.parse)."""

    def __init__(self, blocks, discarded_at: float):
        self.blocks, self.discarded_at = list(blocks), discarded_at

    def _trigger_epoch(self):
        values = {b: float(self.trainer.monitors.get_latest(f"{b}/is_discarded")) for b in self.blocks}
        gone = [b for b, v in values.items() if v >= self.discarded_at]
        logger.info(f"is_discarded per block ({len(gone)} of {len(values)} at >= {self.discarded_at}"
                    f"{': ' + ', '.join(gone) if gone else ''}): "
                    + " ".join(f"{b}={v!r}" for b, v in values.items()))
        row = {f"{b}/is_discarded": v for b, v in values.items()}
        for b in self.blocks:
            try:
                row[f"{b}/val_is_discarded"] = float(
                    self.trainer.monitors.get_latest(f"{b}/val_is_discarded"))
            except KeyError:
                pass
        for which, blocks in gate_disagreements(row).items():
            if blocks:
                logger.warn(f"closed {which.replace('_', ' ')}: {', '.join(blocks)} (validation "
                            "uses the batch norms' moving averages, training the batch's statistics)")
