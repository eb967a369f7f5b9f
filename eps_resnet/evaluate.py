"""Evaluation: the validation error of a run folder's checkpoint or of a compressed model, and the
inference pieces compression shares with it (reading a checkpoint, a predictor, validation
batches).
"""
from __future__ import annotations

import json
import os

import numpy as np

from .atomic import read_yaml, write_text
from .errors import EpsResnetError
from .models.layouts import Layout, layout_from_structure, make_layout
from .runfolder import (CHECKPOINT_PREFIX, COMPRESSED_FILE, EVAL_FILE, choose_checkpoint,
                        run_settings)
from .settings import TrainSettings


class EvaluateError(EpsResnetError):
    """A model folder or checkpoint that cannot be evaluated; the message names it."""


def read_checkpoint(path: str) -> dict:
    """Every variable of a checkpoint, {name: value}; read once, so that damage shows here and
    the restores and checks that follow need no second read."""
    from .compat import import_tf

    tf = import_tf()
    try:
        reader = tf.train.load_checkpoint(path)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except Exception as e:  # noqa: BLE001 (TensorFlow raises many types for a damaged file)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvaluateError(f"checkpoint {path} cannot be read ({first}); it may be corrupted") from None


def predictor(model, session_init, outputs):
    """A tensorpack OfflinePredictor (inference mode, own graph) fed with (images, labels)."""
    from tensorpack import OfflinePredictor, PredictConfig
    from tensorpack.tfutils.sesscreate import NewSessionCreator

    from .compat import import_tf, session_config

    tf = import_tf()
    with tf.Graph().as_default():
        return OfflinePredictor(PredictConfig(
            model=model, session_init=session_init, input_names=["input", "label"],
            output_names=outputs, session_creator=NewSessionCreator(config=session_config(0))))


def val_batches(settings: TrainSettings, limit: int | None):
    """(images, labels) batches of the validation set, at most ``limit`` images."""
    from .data import get_dataflow

    df = get_dataflow(settings, "val", min(settings.batch, 128))
    df.reset_state()
    n = 0
    for x, y in df:
        yield x, y
        n += len(y)
        if limit and n >= limit:
            return


def model_folder(model_dir: str) -> tuple[TrainSettings, Layout, str, str]:
    """(settings, layout, checkpoint, kind) of a run folder ("full": its newest checkpoint) or of
    a compressed model folder ("compressed")."""
    info = read_yaml(os.path.join(model_dir, COMPRESSED_FILE))
    if info is not None:
        settings = TrainSettings(**info["settings"])
        layout = layout_from_structure(settings.family, settings.depth, info["structure"])
        ckpt = os.path.join(model_dir, CHECKPOINT_PREFIX)
        if not os.path.exists(ckpt + ".index"):
            raise EvaluateError(f"{model_dir} lacks its checkpoint {CHECKPOINT_PREFIX}")
        return settings, layout, ckpt, "compressed"
    settings = run_settings(model_dir)
    ckpt, _ = choose_checkpoint(model_dir, None)
    return settings, make_layout(settings.resolved().family, settings.depth), ckpt, "full"


def evaluate(model_dir: str, data_dir: str | None = None, dataset: str | None = None,
             out: str | None = None, limit: int | None = None, log=print) -> dict:
    """Top-1 (and top-5 with more than 10 classes) validation error of a run folder's newest
    checkpoint or of a compressed model folder; written to ``out`` (default MODEL_DIR/eval.json)."""
    from tensorpack.tfutils.sessinit import DictRestore

    from .models.resnet import build_model

    settings, layout, ckpt, kind = model_folder(model_dir)
    if dataset and dataset != settings.dataset:
        raise EvaluateError(f"--dataset {dataset} differs from the model's dataset {settings.dataset}")
    if data_dir:
        settings.data_dir = data_dir
    settings = settings.resolved()
    pred = predictor(build_model(settings, layout), DictRestore(read_checkpoint(ckpt)), ["logits"])
    top1 = top5 = n = 0
    for x, y in val_batches(settings, limit):
        logits = pred(x, y)[0]
        order = np.argsort(-logits, axis=1)
        top1 += int(np.sum(order[:, 0] != y))
        top5 += int(np.sum(~(order[:, :5] == y[:, None]).any(axis=1)))
        n += len(y)
    result = {"model": os.path.abspath(model_dir), "kind": kind, "checkpoint": ckpt,
              "dataset": settings.dataset, "images": n, "val_error": top1 / n if n else None}
    if settings.classes > 10:
        result["val_error_top5"] = top5 / n if n else None
    out = out or os.path.join(model_dir, EVAL_FILE)
    write_text(out, json.dumps(result, indent=1))
    log(f"{model_dir} ({kind}): val_error {result['val_error']:.4f} on {n} images -> {out}")
    return result
