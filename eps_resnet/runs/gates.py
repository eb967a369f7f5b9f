"""Why a gate decides differently at validation than in training: per gated block, the branch's
max|F| (what the gate compares with ε) and the gate's verdict on the same validation images with
the batch norms in both of their modes, beside training's own record.

Training normalises every batch norm with the batch's statistics, validation with the moving
averages; the gate's decision is one threshold on the maximum response over a whole batch, so a
block whose max|F| sits near ε can close in one mode and not in the other. Three measurements
separate the causes:

* validation images, moving statistics: what validation (and the summary) sees;
* validation images, batch statistics: the same images as training would normalise them, so the
  difference to the first row is the batch norms' mode alone;
* training's moving average of max|F| on the training images (stats.json): the difference to the
  second row is the images (training's are fitted better and respond more strongly).

And for the two batch norms inside each branch (the pre-activation's and the first
convolution's), how far the moving statistics are from the validation batches' own: the mean
over channels of |batch mean - moving mean| / moving std, and of batch variance / moving variance.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import EpsResnetError
from ..models.layouts import make_layout
from ..training.runfolder import choose_checkpoint, read_stats, run_settings
from .evaluate import run_kernels, val_batches

#: the batch norms inside a branch that shape its response (the stem's block has no preact)
BRANCH_NORMS = ("preact", "conv1")


class GatesError(EpsResnetError):
    """A run whose gates cannot be measured; the message names it and says why."""


def _measure(settings, path: str, blocks: list[str], training_mode: bool, limit: int | None):
    """Per block: per-batch max|F| and is_discarded on the validation images, and the batch
    norms' input statistics per batch (mean and variance per channel)."""
    from tensorpack.tfutils.sessinit import SmartInit
    from tensorpack.tfutils.tower import TowerContext

    from ..compat import import_tf, session_config
    from ..models.resnet import build_model

    tf = import_tf()
    model = build_model(settings)
    found = {b: {"peak": [], "closed": [], "norms": {n: [] for n in BRANCH_NORMS}} for b in blocks}
    with tf.Graph().as_default() as g:
        placeholders = [tf.placeholder(spec.dtype, spec.shape, spec.name) for spec in model.inputs()]
        with TowerContext("", is_training=training_mode):
            model.build_graph(*placeholders)
        fetches = {}
        for b in blocks:
            fetches[b, "peak"] = g.get_tensor_by_name(f"{b}/gate/peak:0")
            fetches[b, "closed"] = g.get_tensor_by_name(f"{b}/is_discarded:0")
            for n in BRANCH_NORMS:
                try:
                    op = g.get_operation_by_name(f"{b}/{n}/bn/FusedBatchNormV3")
                except KeyError:
                    continue
                x = op.inputs[0]
                axes = [0, 2, 3] if model.spec.data_format == "NCHW" else [0, 1, 2]
                fetches[b, n] = tf.nn.moments(tf.cast(x, tf.float32), axes)
        variables = {v.op.name: v for v in tf.global_variables()}
        moving = {}
        with tf.Session(config=session_config(settings.threads)) as sess:
            SmartInit(path).init(sess)
            for x, y in val_batches(settings, limit, "gates"):
                values = sess.run(fetches, {placeholders[0]: x, placeholders[1]: y})
                for (b, what), v in values.items():
                    if what in BRANCH_NORMS:
                        found[b]["norms"][what].append(v)
                    else:
                        found[b][what].append(float(v))
            for b in blocks:
                for n in BRANCH_NORMS:
                    scope = f"{b}/{n}/bn"
                    if f"{scope}/mean/EMA" in variables:
                        moving[b, n] = sess.run([variables[f"{scope}/mean/EMA"],
                                                 variables[f"{scope}/variance/EMA"]])
    return found, moving


def _shift(batches, moving) -> dict:
    """How far the moving statistics are from the batches' own, averaged over batches and
    channels."""
    mean, var = (np.asarray(v, np.float64) for v in moving)
    std = np.sqrt(var + 1e-5)
    offsets = [np.mean(np.abs(bm - mean) / std) for bm, _ in batches]
    ratios = [np.mean(bv / np.maximum(var, 1e-12)) for _, bv in batches]
    return {"mean_offset_in_std": float(np.mean(offsets)), "variance_ratio": float(np.mean(ratios))}


def gate_responses(run_dir: str, limit: int | None = None) -> dict:
    """The measurements of the module docstring for the newest checkpoint of an ε-ResNet run."""
    # each batch's own gates: what the measurements are about
    settings = dataclasses.replace(run_settings(run_dir).resolved(), inference_gates="batch")
    if settings.variant != "epsilon":
        raise GatesError(f"{run_dir} is a {settings.variant} run, not an ε-ResNet: it has no gates")
    run_kernels(settings)
    path, step = choose_checkpoint(run_dir, None)
    layout = make_layout(settings.family, settings.depth)
    blocks = [b.name for b in layout.blocks if not b.shortcut_only]
    rows = [r for r in read_stats(run_dir) if r.get("global_step", -1) <= step and "epsilon" in r]
    record = rows[-1] if rows else {}
    moving_mode, moving = _measure(settings, path, blocks, False, limit)
    batch_mode, _ = _measure(settings, path, blocks, True, limit)
    result = {"run": run_dir, "step": step, "epsilon": record.get("epsilon"), "blocks": {}}
    for b in blocks:
        entry = {
            "training": {"max_abs_F": record.get(f"{b}/gate/peak"),
                         "closed": record.get(f"{b}/is_discarded")},
            "validation_batch_stats": {"max_abs_F": float(np.mean(batch_mode[b]["peak"])),
                                       "closed": float(np.mean(batch_mode[b]["closed"]))},
            "validation_moving_stats": {"max_abs_F": float(np.mean(moving_mode[b]["peak"])),
                                        "min_over_batches": float(np.min(moving_mode[b]["peak"])),
                                        "closed": float(np.mean(moving_mode[b]["closed"]))},
            "norms": {n: _shift(batch_mode[b]["norms"][n], moving[b, n])
                      for n in BRANCH_NORMS if (b, n) in moving and batch_mode[b]["norms"][n]},
        }
        result["blocks"][b] = entry
    return result


def table(result: dict) -> str:
    """The measurements as a plain-text table, a line per block."""
    def f(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [f"{result['run']} at step {result['step']}, ε = {f(result['epsilon'])}",
             "block    | train max|F| closed | val batch-stats max|F| closed | "
             "val moving-stats max|F| (min) closed | BN offset/std, var ratio"]
    for b, e in result["blocks"].items():
        t, vb, vm = e["training"], e["validation_batch_stats"], e["validation_moving_stats"]
        norms = ", ".join(f"{n} {f(s['mean_offset_in_std'])}/{f(s['variance_ratio'])}"
                          for n, s in e["norms"].items())
        lines.append(f"{b:8} | {f(t['max_abs_F']):>8} {f(t['closed']):>6} | "
                     f"{f(vb['max_abs_F']):>8} {f(vb['closed']):>6} | "
                     f"{f(vm['max_abs_F']):>8} ({f(vm['min_over_batches'])}) {f(vm['closed']):>6} | "
                     f"{norms}")
    return "\n".join(lines)
