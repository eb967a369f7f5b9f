"""Training: resolved settings -> tensorpack TrainConfig -> launch, with resume and run.yaml.

Running the same command on the same run folder (:mod:`eps_resnet.training.runfolder`) resumes from the
newest checkpoint; on a finished run it does nothing.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..compat import cpu_kernels, session_config
from ..data.dataflows import epoch_steps, get_dataflow, verified_data
from ..errors import EpsResnetError, first_line, stop_on_signals
from .devices import DevicePlan, decide
from .provenance import cpu, environment
from .runfolder import (check_same_run, load_run_file, lock, resume_point, truncate_stats,
                        write_run_file)
from .runlog import repair_stats
from .settings import SettingsError, TrainSettings, check_gpu_split

LOG = logging.getLogger(__name__)

CHECKPOINTS_KEPT = 10


@dataclass
class Plan:
    """What a training command will do, decided before TensorFlow builds anything."""
    settings: TrainSettings
    devices: DevicePlan
    steps_per_epoch: int
    start_epoch: int  # first epoch to train (1 for a new run)
    checkpoint: str | None  # to resume from
    train_flow: object  # the training dataflow (built once: its length gives the epoch size)
    unsupported_ops: list = field(default_factory=list)  # ops with no deterministic GPU kernel
    epoch_note: str | None = None  # why an epoch is not one pass over the training images
    #: what run.yaml records of the machine and the code, read once (it runs git and checks
    #: the data): a stop by a signal must not start subprocesses while data workers die
    environment: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.start_epoch > self.settings.epochs


def visible_gpu_count() -> int:
    from ..compat import visible_gpus

    return len(visible_gpus())


def plan(settings: TrainSettings) -> Plan:
    """Validate everything that can be checked without building a graph or writing a file.
    Raises SettingsError (or DataError) with a one-line message; where the run starts is
    decided by :func:`resume` once the run folder is held."""
    s = settings.resolved()
    check_out(s.out)
    check_same_run(s)
    try:
        devices = decide(s, visible_gpu_count(), cpu()["flags"])
    except SettingsError as e:
        raise SettingsError(f"{e} (CUDA_VISIBLE_DEVICES="
                            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})") from None
    s.gpus = devices.gpus
    check_gpu_split(s.batch, devices.towers, "--gpus" if devices.gpus else "--towers")
    choose_cpu_kernels(s.cpu_kernels, devices.mixed_kind)
    verified_data(s)  # every prepared file the run reads, before any is read
    # whole batches, split across the towers inside the graph (OrderedQueueInput)
    train_flow = get_dataflow(s, "train", s.batch)
    steps, note = epoch_steps(s, train_flow)
    return Plan(s, devices, steps, 1, None, train_flow, epoch_note=note)


def choose_cpu_kernels(kind: str, mixed_kind: str | None = None) -> None:
    """This process's CPU kernels (compat.use_cpu_kernels), as a one-line settings error when
    TensorFlow already runs the other kind, or when the user's environment switches off the
    oneDNN rewrite that bfloat16 training is (it would silently train in float32)."""
    from ..compat import use_cpu_kernels

    try:
        use_cpu_kernels(kind)
    except RuntimeError as e:
        raise SettingsError(f"--cpu-kernels {kind}: {e}") from None
    opts = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")
    if mixed_kind == "onednn_bfloat16" and opts.strip().lower() in ("0", "false"):
        raise SettingsError(f"--precision mixed on a CPU is TensorFlow's oneDNN bfloat16 rewrite, "
                            f"which TF_ENABLE_ONEDNN_OPTS={opts} switches off (training would run "
                            "in fp32): unset it, or use --precision fp32")


@contextmanager
def seeded(seed: int, deterministic: bool):
    """Seed Python's, numpy's and the default graph's random numbers, and switch TensorFlow's
    deterministic ops on or off for the block (the switch is process-wide: it is put back
    after). The data needs none of this: its batches are functions of (seed, batch index),
    see eps_resnet.data.ordered."""
    import random

    import numpy as np
    from tensorflow.python.framework import config

    from ..compat import import_tf

    random.seed(seed)
    np.random.seed(seed)
    import_tf().set_random_seed(seed)
    before = config.is_op_determinism_enabled()
    (config.enable_op_determinism if deterministic else config.disable_op_determinism)()
    try:
        yield
    finally:
        (config.enable_op_determinism if before else config.disable_op_determinism)()


def check_out(out: str) -> None:
    """A run folder can be made (or is one) at ``out``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SettingsError(f"--out {out} is a file; expected a folder (new, or a run to resume)")
    parent = out
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise SettingsError(f"--out {out} is inside {parent}, which is a file; expected a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SettingsError(f"--out {out}: {parent} is not writable by this user")


def resume(p: Plan) -> Plan:
    """Where the held run folder resumes: its newest checkpoint that restores (damaged newer
    ones are set aside, a damaged index is rebuilt; see runfolder.resume_point); stats.json
    is rebuilt from the log if unreadable, missing or short of the checkpoint's epochs."""
    found = resume_point(p.settings.out)
    if found is not None:
        p.checkpoint, step = found
        p.start_epoch = step // p.steps_per_epoch + 1
    repair_stats(p.settings.out, p.start_epoch - 1)
    return p


def inferencers(model):
    from tensorpack.callbacks import ClassificationError, ScalarStats

    from .callbacks import GatesAtValidation

    infs = [ScalarStats("cross_entropy_loss", prefix="val"),
            ClassificationError("incorrect_vector", "val_error")]
    if model.top5:
        infs.append(ClassificationError("incorrect_vector_top5", "val_error_top5"))
    if model.has_side_output:
        infs.append(ClassificationError("side_output/incorrect_vector", "side_output/val_error"))
        if model.top5:
            infs.append(ClassificationError("side_output/incorrect_vector_top5",
                                            "side_output/val_error_top5"))
    if model.gated:
        infs.append(GatesAtValidation([b.name for b in model.spec.layout.blocks
                                       if not b.shortcut_only]))
    return infs


def _run_record(p: Plan, status: str, started: str) -> dict:
    from ..models import make_layout

    s, d = p.settings, p.devices
    layout = make_layout(s.family, s.depth)
    return {
        "settings": s.to_dict(),
        "resolved": {
            "steps_per_epoch": p.steps_per_epoch, "epoch_note": p.epoch_note,
            "data_format": d.data_format,
            "devices": d.to_dict(), "batch_per_tower": s.batch // d.towers,
            "recipe": s.recipe.name,
            "weight_decay": s.recipe.weight_decay,
            "weight_decay_decay": (list(s.recipe.weight_decay_decay)
                                   if s.recipe.weight_decay_decay else None),
            "nesterov": s.recipe.nesterov,
            "lr_schedule_points": [list(x) for x in s.recipe.lr_points("standard", s.variant)],
            "lr_adaptive_points": ([list(x) for x in s.recipe.lr_points("adaptive")]
                                   if s.lr_schedule == "adaptive" else None),
            "epsilon_schedule_points": ([list(x) for x in s.epsilon_points]
                                        if s.epsilon_points else None),
            "blocks": [b.name for b in layout.blocks],
            "gated_blocks": len(layout.blocks) if s.variant == "epsilon" else 0,
            "side_output_after": layout.side_after if s.variant != "standard" else None,
        },
        "determinism": {
            "seed": s.seed, "op_determinism": s.deterministic,
            "cpu_kernels": cpu_kernels(), "threads": s.threads,
            "data": "batch k of the run is a function of (seed, k), delivered in order",
            "unsupported_gpu_ops": p.unsupported_ops,
        },
        "environment": p.environment,
        "status": status,
        "started": started,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def train(settings: TrainSettings, extra_callbacks=()) -> Plan:
    """Train (or resume, or recognise as finished) the run described by ``settings``.

    ``extra_callbacks`` (tensorpack callbacks) are added to the run's, e.g. by benchmarks."""
    p = plan(settings)
    with lock(p.settings.out, "eps-resnet train"), stop_on_signals():
        return _train(resume(p), extra_callbacks)


def _record_end(p: Plan, record: dict) -> None:
    """Write the run.yaml of a run that stopped. On a full disk the usual write (a temporary
    file, then a rename) may find no room; the file is then rewritten in place, which needs no
    more room than it had, and only if that fails too is the stop left unrecorded (said so)."""
    try:
        write_run_file(p.settings.out, record)
        return
    except OSError:
        pass
    import yaml

    from .runfolder import RUN_FILE

    try:
        with open(os.path.join(p.settings.out, RUN_FILE), "r+") as f:
            f.write(yaml.safe_dump(record, sort_keys=False))
            f.truncate()
    except OSError as e:
        LOG.warning(f"run.yaml could not record the stop ({e.strerror or e}); it still says running")


def _warn_gate_disagreements(out: str) -> None:
    """The end-of-training warning when the last epoch's gates closed at validation differently
    from training (the evaluated network is then not the one training pruned)."""
    from ..models.gate import gate_disagreements
    from .runfolder import read_stats

    rows = read_stats(out)
    for which, blocks in gate_disagreements(rows[-1] if rows else {}).items():
        if blocks:
            LOG.warning(f"gates closed {which.replace('_', ' ')} in the last epoch: {', '.join(blocks)}; "
                  "with each batch's own gates at validation (--inference-gates batch), validation "
                  "errors measure another network than training pruned")


def _train(p: Plan, extra_callbacks) -> Plan:
    s = p.settings
    previous = load_run_file(s.out) or {}
    started = previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if p.finished:
        if previous.get("status") != "finished":  # stopped after its last checkpoint
            write_run_file(s.out, _run_record(p, "finished", started))
        LOG.info(f"{s.out}: already finished ({s.epochs} epochs, checkpoint {p.checkpoint}); nothing to do")
        return p
    truncate_stats(s.out, p.start_epoch)
    p.environment = environment(s)
    write_run_file(s.out, _run_record(p, "running", started))
    try:
        _launch(p, started, extra_callbacks)
        if p.train_flow.failure:
            # tensorpack ends training quietly when its input stops
            raise p.train_flow.failure
        write_run_file(s.out, _run_record(p, "finished", started))
    except BaseException as e:
        # run.yaml must not keep saying "running" after the process is gone, whatever ended it
        # and wherever (a signal may come while the graph is built); first the data workers go
        p.train_flow.abandon()
        _record_end(p, _end_record(p, started, e))
        if isinstance(e, KeyboardInterrupt) or not p.train_flow.failure:
            raise
        raise p.train_flow.failure from None  # not the closed input queue it led to
    LOG.info(f"{s.out}: finished {s.epochs} epochs")
    _warn_gate_disagreements(s.out)
    return p


def _end_record(p: Plan, started: str, e: BaseException) -> dict:
    """run.yaml of a run that ``e`` stopped: interrupted (a signal), or failed and why."""
    if isinstance(e, KeyboardInterrupt):
        return {**_run_record(p, "interrupted", started),
                "error": f"{type(e).__name__}: {first_line(e)}"}
    error = p.train_flow.failure or e
    return {**_run_record(p, "failed", started),
            "error": str(error) if isinstance(error, EpsResnetError)
            else f"{type(error).__name__}: {first_line(error)}"}


def _launch(p: Plan, started: str, extra_callbacks) -> None:
    """Build the graph, the callbacks and the trainer, and train to the last epoch."""
    from ..compat import import_tf

    tf = import_tf()
    from tensorpack import (SimpleTrainer, SyncMultiGPUTrainerReplicated,
                            launch_train_with_config)
    from tensorpack.utils import logger

    s = p.settings
    logger.set_logger_dir(s.out, action="k")  # 'k': keep the folder, never ask on stdin
    if p.checkpoint:
        logger.info(f"Resuming from {p.checkpoint} at epoch {p.start_epoch} of {s.epochs}")
    # a fresh graph: train() may run several times in a process
    with tf.Graph().as_default(), seeded(s.seed, s.deterministic):
        towers = p.devices.towers
        # one batch per step: a resumed run continues with the batch an uninterrupted run would
        # take next
        p.train_flow.start_at((p.start_epoch - 1) * p.steps_per_epoch)
        config = _train_config(p, started, extra_callbacks)
        trainer = (SyncMultiGPUTrainerReplicated(towers, mode=p.devices.all_reduce)
                   if towers > 1 else SimpleTrainer())
        try:
            launch_train_with_config(config, trainer)
        except tf.errors.UnimplementedError as e:
            if not s.deterministic or "determinis" not in str(e):
                raise
            raise SettingsError(f"--deterministic: {first_line(e)[:200]}; run with "
                                "--no-deterministic to train with TensorFlow's faster "
                                "kernels") from None


def _train_config(p: Plan, started: str, extra_callbacks):
    """tensorpack's TrainConfig of the run: the model, its input, callbacks and monitors."""
    from tensorpack import (EstimatedTimeLeft, InferenceRunner, TFEventWriter, TrainConfig)
    from tensorpack.tfutils.sesscreate import NewSessionCreator
    from tensorpack.tfutils.sessinit import SaverRestore

    from .callbacks import (CheckpointAfterStats, DeterminismCheck, DiscardedBlocksPrinter,
                            EpochScheduleSetter, FullPrecisionPrinter, LearningRateSetter,
                            OrderedQueueInput, SmallMapKernels, StatsWriter)
    from .kernels import onednn_rewrites_on
    from ..models import make_layout
    from ..models.gate import DISCARDED_AT
    from ..models.resnet import build_model

    s, towers = p.settings, p.devices.towers
    model = build_model(s, data_format=p.devices.data_format, mixed_kind=p.devices.mixed_kind)
    callbacks = [
        InferenceRunner(get_dataflow(s, "val", s.batch // towers), inferencers(model)),
        LearningRateSetter(s.recipe.lr_points("standard", s.variant),
                           s.recipe.lr_points("adaptive") if s.lr_schedule == "adaptive" else None),
        EstimatedTimeLeft(),
        *extra_callbacks,
    ]
    if s.deterministic and p.devices.device == "gpu":
        def found(ops):
            p.unsupported_ops = ops
            write_run_file(s.out, _run_record(p, "running", started))

        callbacks.append(DeterminismCheck(found))
    if p.devices.device == "cpu" and not onednn_rewrites_on():
        callbacks.append(SmallMapKernels())
    if s.epsilon_points:
        callbacks.append(EpochScheduleSetter("epsilon", s.epsilon_points))
        callbacks.append(DiscardedBlocksPrinter(
            [b.name for b in make_layout(s.family, s.depth).blocks], DISCARDED_AT))
    return TrainConfig(
        model=model,
        data=OrderedQueueInput(p.train_flow, towers),
        callbacks=callbacks,
        # stats.json and TensorBoard keep every metric; the log prints the per-block values
        # on one line (DiscardedBlocksPrinter) instead of one line per block
        monitors=[TFEventWriter(), StatsWriter(),
                  FullPrecisionPrinter(blacklist=[r".*/is_discarded$"]),
                  CheckpointAfterStats(max_to_keep=CHECKPOINTS_KEPT, checkpoint_dir=s.out)],
        steps_per_epoch=p.steps_per_epoch,
        max_epoch=s.epochs,
        starting_epoch=p.start_epoch,
        session_init=SaverRestore(p.checkpoint) if p.checkpoint else None,
        session_creator=NewSessionCreator(config=session_config(s.threads, p.devices.mixed_kind)),
    )
