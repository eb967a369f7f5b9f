"""Evaluation: the validation error of a run folder's checkpoint or of a compressed model, and the
inference pieces compression and export share with it (the fit of a checkpoint to its network, a
predictor, validation batches).
"""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from ..atomic import read_yaml, write_text
from ..errors import EpsResnetError, first_line
from ..logs import progress
from ..models.layouts import Layout, layout_from_structure, make_layout
from ..training.runfolder import (CHECKPOINT_PREFIX, COMPRESSED_FILE, EVAL_FILE, choose_checkpoint,
                                  lock, read_checkpoint, read_record, reading, run_settings,
                                  settings_of)
from ..training.settings import TrainSettings

LOG = logging.getLogger(__name__)


class EvaluateError(EpsResnetError):
    """A model folder or checkpoint that cannot be evaluated; the message names it."""


def model_variables(model) -> dict[str, tuple]:
    """{name: shape} of every variable the model's inference graph restores."""
    from tensorpack.tfutils.tower import TowerContext

    from ..compat import import_tf

    tf = import_tf()
    with tf.Graph().as_default() as g:
        inputs = [tf.placeholder(s.dtype, s.shape, s.name) for s in model.inputs()]
        with TowerContext("", is_training=False):
            model.build_graph(*inputs)
        return {v.op.name: tuple(v.shape.as_list())
                for v in g.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}


def check_fits(model, checkpoint: dict, path: str, what: str) -> None:
    """Refuse a checkpoint that does not hold exactly the model's network: every variable of the
    model present with its shape, and no residual block of the checkpoint left unused. (A
    partial restore would run a partly random network and report a wrong error.)"""
    wanted = model_variables(model)
    missing = [n for n in wanted if n not in checkpoint]
    shapes = [f"{n} {tuple(checkpoint[n].shape)} vs {wanted[n]}" for n in wanted
              if n in checkpoint and tuple(checkpoint[n].shape) != wanted[n]]
    blocks = {b for b in (re.match(r"(res\d+\.\d+)/", n) for n in wanted) if b}
    blocks = {b.group(1) for b in blocks}
    unused = sorted({m.group(1) for m in (re.match(r"(res\d+\.\d+)/", n) for n in checkpoint)
                     if m and m.group(1) not in blocks})
    problems = []
    if missing:
        problems.append(f"{len(missing)} variable(s) missing (e.g. {missing[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    if unused:
        problems.append(f"blocks {', '.join(unused[:4])}{' ...' if len(unused) > 4 else ''} unused")
    if problems:
        raise EvaluateError(f"checkpoint {path} does not fit the network of {what}: "
                            f"{'; '.join(problems)}; expected the checkpoint that run trained")


def predictor(model, session_init, outputs):
    """A tensorpack OfflinePredictor (inference mode, own graph) fed with (images, labels)."""
    from tensorpack import OfflinePredictor, PredictConfig
    from tensorpack.tfutils.sesscreate import NewSessionCreator

    from ..compat import import_tf, session_config

    tf = import_tf()
    with tf.Graph().as_default():
        return OfflinePredictor(PredictConfig(
            model=model, session_init=session_init, input_names=["input", "label"],
            output_names=outputs, session_creator=NewSessionCreator(config=session_config(0))))


def val_batches(settings: TrainSettings, limit: int | None, what: str):
    """(images, labels) batches of the validation set, at most ``limit`` images, with a
    progress bar named ``what``."""
    from ..data.dataflows import get_dataflow

    batch = min(settings.batch, 128)
    df = get_dataflow(settings, "val", batch)
    df.reset_state()
    batches = min(len(df), -(-limit // batch)) if limit else len(df)
    with progress(total=batches, what=what, unit="batch") as bar:
        n = 0
        for x, y in df:
            yield x, y
            n += len(y)
            bar.update()
            if limit and n >= limit:
                return


def run_kernels(settings: TrainSettings) -> None:
    """This process's CPU kernels as the run was trained with (run.yaml's --cpu-kernels), before
    TensorFlow starts: a portable run is evaluated, compressed and exported with portable
    kernels, so its numbers are the same on every CPU kind."""
    from ..training.train import choose_cpu_kernels

    choose_cpu_kernels(settings.cpu_kernels)


def model_folder(model_dir: str) -> tuple[TrainSettings, Layout, str, str]:
    """(settings, layout, checkpoint, kind) of a run folder ("full": its newest checkpoint) or of
    a compressed model folder ("compressed")."""
    path = os.path.join(model_dir, COMPRESSED_FILE)
    info = read_record(path, "eps-resnet compress")
    if info is not None:
        settings = settings_of(info, path)
        try:
            layout = layout_from_structure(settings.family, settings.depth, info["structure"])
        except (KeyError, TypeError, ValueError) as e:
            raise EvaluateError(f"{path} has no valid structure ({first_line(e)[:100]}); "
                                "expected the record `eps-resnet compress` writes") from None
        ckpt = os.path.join(model_dir, CHECKPOINT_PREFIX)
        if not os.path.exists(ckpt + ".index"):
            raise EvaluateError(f"{model_dir} lacks its checkpoint {CHECKPOINT_PREFIX}")
        return settings, layout, ckpt, "compressed"
    settings = run_settings(model_dir)
    ckpt, _ = choose_checkpoint(model_dir, None)
    return settings, make_layout(settings.resolved().family, settings.depth), ckpt, "full"


def evaluate(model_dir: str, data_dir: str | None = None, dataset: str | None = None,
             out: str | None = None, limit: int | None = None) -> dict:
    """Top-1 (and top-5 with more than 10 classes) validation error of a run folder's newest
    checkpoint or of a compressed model folder; written to ``out`` (default MODEL_DIR/eval.json).
    The folder is held for reading throughout (training cannot replace the checkpoint)."""
    with reading(model_dir, "eps-resnet evaluate"):
        return _evaluate_held(model_dir, data_dir, dataset, out, limit)


def _evaluate_held(model_dir, data_dir, dataset, out, limit) -> dict:
    settings, layout, ckpt, kind = model_folder(model_dir)
    if dataset and dataset != settings.dataset:
        raise EvaluateError(f"--dataset {dataset} differs from the model's dataset {settings.dataset}")
    if data_dir:
        settings.data_dir = data_dir
    settings = settings.resolved()
    run_kernels(settings)
    out = out or os.path.join(model_dir, EVAL_FILE)
    with lock(os.path.dirname(os.path.abspath(out)), "eps-resnet evaluate"):
        return _evaluate(model_dir, settings, layout, ckpt, kind, out, limit)


def _evaluate(model_dir, settings, layout, ckpt, kind, out, limit) -> dict:
    from tensorpack.tfutils.sessinit import DictRestore

    from ..models.resnet import build_model

    model, values = build_model(settings, layout), read_checkpoint(ckpt)
    check_fits(model, values, ckpt, f"{model_dir} ({describe(settings)})")
    pred = predictor(model, DictRestore(values), ["logits"])
    top1 = top5 = n = 0
    for x, y in val_batches(settings, limit, "evaluate"):
        logits = pred(x, y)[0]
        order = np.argsort(-logits, axis=1)
        top1 += int(np.sum(order[:, 0] != y))
        top5 += int(np.sum(~(order[:, :5] == y[:, None]).any(axis=1)))
        n += len(y)
    result = {"model": os.path.abspath(model_dir), "kind": kind, "checkpoint": ckpt,
              "dataset": settings.dataset, "images": n, "val_error": top1 / n if n else None}
    if settings.classes > 10:
        result["val_error_top5"] = top5 / n if n else None
    write_text(out, json.dumps(result, indent=1))
    LOG.info(f"{model_dir} ({kind}): val_error {result['val_error']:.4f} on {n} images -> {out}")
    if kind == "compressed":
        _say_gating(model_dir)
    return result


def _say_gating(model_dir: str) -> None:
    """How the full model's gates compared with the compressed network (compress measured it)."""
    checks = (read_yaml(os.path.join(model_dir, COMPRESSED_FILE)) or {}).get("checks") or {}
    if checks.get("validation_batches") is None:
        return
    LOG.info(f"{model_dir}: the full model gated {checks['batches_gated_differently']} of "
        f"{checks['validation_batches']} validation batches differently from this compressed one"
        + ("" if checks.get("equivalent", True) else
           f"; NOT equivalent (agreement {checks['agreement']:.4f} < {checks['min_agreement']})"))


def describe(s: TrainSettings) -> str:
    return f"{s.family} family, depth {s.depth}, {s.variant}, {s.classes} classes, from its settings"
