"""Compression: an ε-ResNet -> the smaller network it found, checked equivalent and exported.

``compress`` reads which blocks were discarded (moving-average ``is_discarded`` in stats.json at
the chosen checkpoint), checks that their branches really are negligible (gate closed on the
validation data, branch weights decayed), builds the smaller layout (a discarded block whose
shortcut changes the shape keeps only that shortcut), copies the kept variables under their new
names into a new checkpoint, compares the two networks' predictions on the validation set,
exports a SavedModel, and writes ``compressed.yaml``. ``evaluate`` measures a full run or a
compressed model on the validation set.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time

import numpy as np
import yaml

from .atomic import write_text
from .data.files import DataError
from .models.layouts import Block, Layout, compress_layout, count_flops, count_parameters, make_layout
from .parse import DISCARDED_AT
from .settings import TrainSettings, load_run_file
from .train import latest_checkpoint, write_yaml_atomic

COMPRESSED_FILE = "compressed.yaml"
CHECKPOINT_NAME = "model"
SAVED_MODEL = "saved_model"
#: The agreement the compressed model must reach with the full one on validation images.
MIN_AGREEMENT = 0.999


class CompressError(DataError):
    """A run that cannot be compressed; the message names it and says why."""


def run_settings(run_dir: str) -> TrainSettings:
    run = load_run_file(run_dir)
    if run is None or "settings" not in run:
        raise CompressError(f"{run_dir} has no run.yaml; expected a run folder of `eps-resnet train`")
    return TrainSettings(**run["settings"])


def checkpoints(run_dir: str) -> dict[int, str]:
    """{global step: checkpoint path} of every complete checkpoint in a run folder."""
    out = {}
    for name in os.listdir(run_dir):
        m = re.fullmatch(r"model-(\d+)\.index", name)
        if m:
            out[int(m.group(1))] = os.path.join(run_dir, f"model-{m.group(1)}")
    return out


def choose_checkpoint(run_dir: str, step: int | None) -> tuple[str, int]:
    found = checkpoints(run_dir)
    if not found:
        raise CompressError(f"{run_dir} has no checkpoint (model-<step>.index); train it first")
    if step is None:
        latest = latest_checkpoint(run_dir)
        return latest if latest else (found[max(found)], max(found))
    if step not in found:
        raise CompressError(f"--step {step} has no checkpoint in {run_dir}; available steps: "
                            f"{', '.join(map(str, sorted(found)))}")
    return found[step], step


def discard_values(run_dir: str, step: int) -> dict[str, float]:
    """Moving-average is_discarded of every gated block at ``step`` (the stats entry of that
    step, or the last one before it)."""
    path = os.path.join(run_dir, "stats.json")
    if not os.path.exists(path):
        raise CompressError(f"{path} is missing; the discard values are read from it")
    with open(path) as f:
        stats = json.load(f)
    entries = [s for s in stats if s.get("global_step", -1) <= step
               and any(k.endswith("/is_discarded") for k in s)]
    if not entries:
        raise CompressError(f"{path} has no is_discarded values at or before step {step}")
    entry = entries[-1]
    return {k[: -len("/is_discarded")]: float(v) for k, v in entry.items() if k.endswith("/is_discarded")}


def _model(settings: TrainSettings, layout: Layout, variant: str | None = None):
    from .models.resnet import ModelSpec, ResNetModel
    from .train import WEIGHT_DECAY, input_format

    return ResNetModel(ModelSpec(layout=layout, variant=variant or settings.variant,
                                 num_classes=settings.classes, image_size=settings.image_size,
                                 weight_decay=WEIGHT_DECAY[settings.family],
                                 epsilon=settings.epsilon or 0.0, input_format=input_format(settings)))


def _predictor(model, session_init, outputs):
    """A tensorpack OfflinePredictor (inference mode, own graph) fed with (images, labels)."""
    from tensorpack import OfflinePredictor, PredictConfig
    from tensorpack.tfutils.sesscreate import NewSessionCreator

    from .compat import import_tf
    from .train import session_config

    tf = import_tf()
    with tf.Graph().as_default():
        return OfflinePredictor(PredictConfig(
            model=model, session_init=session_init, input_names=["input", "label"],
            output_names=outputs, session_creator=NewSessionCreator(config=session_config(0))))


def _variable_names(model) -> list[str]:
    from tensorpack.tfutils.tower import TowerContext

    from .compat import import_tf

    tf = import_tf()
    with tf.Graph().as_default() as g:
        inputs = [tf.placeholder(s.dtype, s.shape, s.name) for s in model.inputs()]
        with TowerContext("", is_training=False):
            model.build_graph(*inputs)
        return [v.op.name for v in g.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)]


def remap_variables(checkpoint: dict, names: list[str], mapping: dict[str, str]) -> dict:
    """Values for the compressed graph's variables, taken from the full checkpoint's names."""
    values = {}
    for name in names:
        block, _, rest = name.partition("/")
        old = f"{mapping[block]}/{rest}" if block in mapping and rest else name
        if old not in checkpoint:
            raise CompressError(f"the checkpoint has no variable {old} (needed for {name})")
        values[name] = checkpoint[old]
    return values


def read_checkpoint(path: str) -> dict:
    """Every variable of a checkpoint, {name: value}; read once, so that damage shows here and
    the restores and checks below need no second read."""
    from .compat import import_tf

    tf = import_tf()
    try:
        reader = tf.train.load_checkpoint(path)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except Exception as e:  # noqa: BLE001 (TensorFlow raises many types for a damaged file)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompressError(f"checkpoint {path} cannot be read ({first}); it may be corrupted") from None


def branch_weight_norms(checkpoint: dict, layout: Layout) -> dict[str, float]:
    """L2 norm of each block's branch convolution kernels (its 'weight collapse' measure)."""
    out = {}
    for b in layout.blocks:
        sq = sum(float(np.sum(np.square(v))) for n, v in checkpoint.items()
                 if n.startswith(f"{b.name}/conv") and not n.startswith(f"{b.name}/convshortcut")
                 and n.endswith("/W"))
        out[b.name] = float(np.sqrt(sq))
    return out


def _batches(settings: TrainSettings, limit: int | None):
    from .data import get_dataflow

    df = get_dataflow(settings, "val", min(settings.batch, 128))
    df.reset_state()
    n = 0
    for x, y in df:
        yield x, y
        n += len(y)
        if limit and n >= limit:
            return


def compress(run_dir: str, out: str, step: int | None = None, limit: int | None = None,
             log=print) -> dict:
    """Compress the ε-ResNet of ``run_dir`` into ``out``; returns compressed.yaml's content."""
    settings = run_settings(run_dir).resolved()
    if settings.variant != "epsilon":
        raise CompressError(f"{run_dir} is a {settings.variant} run, not an ε-ResNet: it has no "
                            "gates, so nothing can be discarded")
    path, step = choose_checkpoint(run_dir, step)
    values = discard_values(run_dir, step)
    checkpoint = read_checkpoint(path)
    full = make_layout(settings.family, settings.depth)
    discarded = [b.name for b in full.blocks if values.get(b.name, 0.0) >= DISCARDED_AT]
    small, mapping = compress_layout(full, discarded)
    if not discarded:
        log(f"{run_dir}: no block is discarded at step {step}; the compressed model equals the full one")

    from tensorpack.tfutils.sessinit import DictRestore

    full_model = _model(settings, full)
    gated = [f"{b.name}/is_discarded" for b in full.blocks]
    full_pred = _predictor(full_model, DictRestore(checkpoint), ["logits"] + gated)
    small_model = _model(settings, small)
    small_values = remap_variables(checkpoint, _variable_names(small_model), mapping)
    small_pred = _predictor(small_model, DictRestore(small_values), ["logits"])

    closed = {b: [] for b in discarded}
    agree, total, max_diff, correct = 0, 0, 0.0, [0, 0]
    for x, y in _batches(settings, limit):
        out_full = full_pred(x, y)
        logits_small = small_pred(x, y)[0]
        for b, v in zip(full.blocks, out_full[1:]):
            if b.name in closed:
                closed[b.name].append(float(v))
        logits = out_full[0]
        agree += int(np.sum(logits.argmax(1) == logits_small.argmax(1)))
        total += len(y)
        max_diff = max(max_diff, float(np.max(np.abs(logits - logits_small))))
        correct[0] += int(np.sum(logits.argmax(1) == y))
        correct[1] += int(np.sum(logits_small.argmax(1) == y))
    norms = branch_weight_norms(checkpoint, full)
    kept_norms = [norms[b.name] for b in full.blocks if b.name not in discarded]

    os.makedirs(out, exist_ok=True)
    with small_pred.graph.as_default():
        from .compat import import_tf

        import_tf().train.Saver().save(small_pred.sess, os.path.join(out, CHECKPOINT_NAME),
                                       write_meta_graph=False)
    export_saved_model(settings, small, os.path.join(out, CHECKPOINT_NAME), os.path.join(out, SAVED_MODEL))
    classes, size = settings.classes, settings.image_size
    info = {
        "run": os.path.abspath(run_dir), "step": step, "checkpoint": path,
        "settings": settings.to_dict(),
        "discarded_at": DISCARDED_AT, "discarded": discarded,
        "nothing_discarded": not discarded,
        "structure": [[dict(name=b.name, from_block=mapping[b.name], channels=b.channels,
                            stride=b.stride, preactivated=b.preactivated,
                            shortcut_only=b.shortcut_only) for b in g] for g in small.groups],
        "params": {"full": count_parameters(full, classes),
                   "compressed": count_parameters(small, classes)},
        "flops": {"full": count_flops(full, size, classes),
                  "compressed": count_flops(small, size, classes)},
        "checks": {
            "validation_images": total,
            "agreement": agree / total if total else None,
            "max_logit_difference": max_diff,
            "val_error": {"full": 1 - correct[0] / total if total else None,
                          "compressed": 1 - correct[1] / total if total else None},
            "discarded_blocks": {b: {
                "moving_average_is_discarded": values.get(b),
                "gate_closed_on_validation": float(np.mean(closed[b])) if closed[b] else None,
                "branch_weight_norm": norms[b],
                "median_kept_branch_weight_norm": float(np.median(kept_norms)) if kept_norms else None,
            } for b in discarded},
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_yaml_atomic(os.path.join(out, COMPRESSED_FILE), info)
    ok = total and agree / total >= MIN_AGREEMENT
    log(f"{out}: {len(discarded)} of {len(full.blocks)} blocks discarded; parameters "
        f"{info['params']['full']:,} -> {info['params']['compressed']:,}; agreement with the full "
        f"model {agree}/{total}, max logit difference {max_diff:.2e}"
        + ("" if ok else f" (below the required {MIN_AGREEMENT:.1%})"))
    return info


def export_saved_model(settings: TrainSettings, layout: Layout, checkpoint: str, path: str) -> None:
    """A TensorFlow SavedModel that plain TensorFlow loads without this package: signature
    'serving_default' maps ``input`` (N x H x W x 3 images, as the dataflows give them) to
    ``prob`` and ``logits``."""
    from tensorpack.tfutils.tower import TowerContext

    from .compat import import_tf

    tf = import_tf()
    if os.path.exists(path):
        shutil.rmtree(path)
    model = _model(settings, layout)
    with tf.Graph().as_default():
        inputs = [tf.placeholder(s.dtype, s.shape, s.name) for s in model.inputs()]
        with TowerContext("", is_training=False):
            model.build_graph(*inputs)
        g = tf.get_default_graph()
        outputs = {k: g.get_tensor_by_name(f"{k}:0") for k in ("prob", "logits")}
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, checkpoint)
            builder = tf.saved_model.Builder(path)
            signature = tf.saved_model.predict_signature_def(inputs={"input": inputs[0]},
                                                             outputs=outputs)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()


def load_compressed_layout(info: dict) -> Layout:
    s = info["settings"]
    full = make_layout(s["family"], s["depth"])
    blocks = tuple(Block(name=b["name"], group=int(b["name"][3:].split(".")[0]),
                         index=int(b["name"].split(".")[1]), channels=b["channels"], stride=b["stride"],
                         preactivated=b["preactivated"], shortcut_only=b["shortcut_only"])
                   for g in info["structure"] for b in g)
    return Layout(full.family, full.depth, full.block_type, blocks, None)


def evaluate(model_dir: str, data_dir: str | None = None, dataset: str | None = None,
             out: str | None = None, limit: int | None = None, log=print) -> dict:
    """Top-1 (and top-5 with more than 10 classes) validation error of a run folder's newest
    checkpoint or of a compressed model folder; written to ``out`` (default MODEL_DIR/eval.json)."""
    from tensorpack.tfutils.sessinit import DictRestore

    comp_file = os.path.join(model_dir, COMPRESSED_FILE)
    if os.path.exists(comp_file):
        with open(comp_file) as f:
            info = yaml.safe_load(f)
        settings = TrainSettings(**info["settings"])
        layout, ckpt, kind = load_compressed_layout(info), os.path.join(model_dir, CHECKPOINT_NAME), "compressed"
        if not os.path.exists(ckpt + ".index"):
            raise CompressError(f"{model_dir} lacks its checkpoint {CHECKPOINT_NAME}")
    else:
        settings = run_settings(model_dir)
        ckpt, _ = choose_checkpoint(model_dir, None)
        layout, kind = make_layout(settings.resolved().family, settings.depth), "full"
    if dataset and dataset != settings.dataset:
        raise CompressError(f"--dataset {dataset} differs from the model's dataset {settings.dataset}")
    if data_dir:
        settings.data_dir = data_dir
    settings = settings.resolved()
    pred = _predictor(_model(settings, layout), DictRestore(read_checkpoint(ckpt)), ["logits"])
    top1 = top5 = n = 0
    for x, y in _batches(settings, limit):
        logits = pred(x, y)[0]
        order = np.argsort(-logits, axis=1)
        top1 += int(np.sum(order[:, 0] != y))
        top5 += int(np.sum(~(order[:, :5] == y[:, None]).any(axis=1)))
        n += len(y)
    result = {"model": os.path.abspath(model_dir), "kind": kind, "checkpoint": ckpt,
              "dataset": settings.dataset, "images": n, "val_error": top1 / n if n else None}
    if settings.classes > 10:
        result["val_error_top5"] = top5 / n if n else None
    out = out or os.path.join(model_dir, "eval.json")
    write_text(out, json.dumps(result, indent=1))
    log(f"{model_dir} ({kind}): val_error {result['val_error']:.4f} on {n} images -> {out}")
    return result
