"""Compression: an ε-ResNet -> the smaller network it found, checked equivalent and exported.

``compress`` reads which blocks were discarded (moving-average ``is_discarded`` in stats.json at
the chosen checkpoint), checks that their branches really are negligible (gate closed on the
validation data, branch weights decayed), builds the smaller layout (a discarded block whose
shortcut changes the shape keeps only that shortcut), copies the kept variables under their new
names into a new checkpoint, compares the two networks' predictions on the validation set,
exports a SavedModel, and writes ``compressed.yaml``. :mod:`eps_resnet.runs.evaluate` measures a full
run or a compressed model on the validation set.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from ..atomic import write_yaml
from ..errors import EpsResnetError
from ..models.gate import CLOSED_AT, DISCARDED_AT
from ..models.layouts import (Layout, compress_layout, count_flops, count_parameters, make_layout,
                              structure_of)
from ..training.runfolder import (CHECKPOINT_PREFIX, COMPRESSED_FILE, SAVED_MODEL, STATS_FILE,
                                  choose_checkpoint, lock, read_checkpoint, read_stats, reading,
                                  run_settings)
from .evaluate import (check_fits, describe, model_variables, predictor, run_kernels,
                       val_batches)
from .export import export_saved_model

LOG = logging.getLogger(__name__)

#: The agreement the compressed model must reach with the full one on validation images.
MIN_AGREEMENT = 0.999


class CompressError(EpsResnetError):
    """A run that cannot be compressed; the message names it and says why."""


def discard_values(run_dir: str, step: int) -> dict[str, float]:
    """Moving-average is_discarded of every gated block at ``step`` (the stats entry of that
    step, or the last one before it)."""
    path = os.path.join(run_dir, STATS_FILE)
    if not os.path.exists(path):
        raise CompressError(f"{path} is missing; the discard values are read from it")
    entries = [s for s in read_stats(run_dir) if s.get("global_step", -1) <= step
               and any(k.endswith("/is_discarded") for k in s)]
    if not entries:
        raise CompressError(f"{path} has no is_discarded values at or before step {step}")
    entry = entries[-1]
    return {k[: -len("/is_discarded")]: float(v) for k, v in entry.items() if k.endswith("/is_discarded")}


def remap_variables(checkpoint: dict, names: list[str], mapping: dict[str, str]) -> dict:
    """Values for the compressed graph's variables, taken from the full checkpoint's names."""
    values = {}
    for name in names:
        # the monitoring's moving averages (EMA/<block>/...) follow their block too: with
        # --inference-gates training they are the kept blocks' verdicts
        prefix = "EMA/" if name.startswith("EMA/") else ""
        block, _, rest = name[len(prefix):].partition("/")
        old = (f"{prefix}{mapping[block]}/{rest}" if block in mapping and rest else name)
        if old not in checkpoint:
            raise CompressError(f"the checkpoint has no variable {old} (needed for {name})")
        values[name] = checkpoint[old]
    return values


def branch_weight_norms(checkpoint: dict, layout: Layout) -> dict[str, float]:
    """L2 norm of each block's branch convolution kernels (its 'weight collapse' measure)."""
    out = {}
    for b in layout.blocks:
        sq = sum(float(np.sum(np.square(v))) for n, v in checkpoint.items()
                 if n.startswith(f"{b.name}/conv") and not n.startswith(f"{b.name}/convshortcut")
                 and n.endswith("/W"))
        out[b.name] = float(np.sqrt(sq))
    return out


#: Which blocks compression removes: those whose moving-average gate was closed at least half
#: of the time ("half", the figures' and summary's rule), or only fully closed ones ("closed",
#: the original implementation's compression script).
RULES = {"half": DISCARDED_AT, "closed": CLOSED_AT}


def compress(run_dir: str, out: str, step: int | None = None, limit: int | None = None,
             rule: str = "half") -> dict:
    """Compress the ε-ResNet of ``run_dir`` into ``out``; returns compressed.yaml's content."""
    if rule not in RULES:
        raise CompressError(f"--rule {rule!r} is unknown; expected one of {', '.join(RULES)}")
    settings = run_settings(run_dir).resolved()
    if settings.variant != "epsilon":
        raise CompressError(f"{run_dir} is a {settings.variant} run, not an ε-ResNet: it has no "
                            "gates, so nothing can be discarded")
    run_kernels(settings)
    with reading(run_dir, "eps-resnet compress"):
        path, step = choose_checkpoint(run_dir, step)
        values = discard_values(run_dir, step)
        with lock(out, "eps-resnet compress"):
            return _compress(settings, run_dir, out, path, step, values, limit, rule)


def _compress(settings, run_dir, out, path, step, values, limit, rule) -> dict:
    checkpoint = read_checkpoint(path)
    full = make_layout(settings.family, settings.depth)
    discarded = [b.name for b in full.blocks if values.get(b.name, 0.0) >= RULES[rule]]
    small, mapping = compress_layout(full, discarded)
    if not discarded:
        LOG.info(f"{run_dir}: no block is discarded at step {step}; the compressed model equals "
                 "the full one")
    full_pred, small_pred = _predictors(settings, run_dir, path, checkpoint, full, small, mapping)
    seen = _compare_on_validation(settings, full, discarded, full_pred, small_pred, limit)
    _save(settings, small, small_pred, out)
    info = _record(settings, run_dir, path, step, rule, values, checkpoint, full, small, mapping,
                   discarded, seen)
    write_yaml(os.path.join(out, COMPRESSED_FILE), info)
    LOG.info(f"{out}: {len(discarded)} of {len(full.blocks)} blocks discarded; parameters "
             f"{info['params']['full']:,} -> {info['params']['compressed']:,}; agreement with the "
             f"full model {seen.agree}/{seen.total}, max logit difference {seen.max_diff:.2e}; the "
             f"full model gated {seen.gated_differently} of {seen.batches} validation batches "
             "differently")
    if not info["checks"]["equivalent"]:
        LOG.warning(f"{out} is NOT equivalent to the full model: agreement {seen.agree}/"
                    f"{seen.total} is below {MIN_AGREEMENT:.1%} (compressed.yaml and the summary "
                    "mark it; the full model's gates decide differently at validation)")
    return info


def _predictors(settings, run_dir, path, checkpoint, full, small, mapping):
    """The full network (logits and every gate) and the compressed one (logits), restored."""
    from tensorpack.tfutils.sessinit import DictRestore

    from ..models.resnet import build_model

    gated = [f"{b.name}/is_discarded" for b in full.blocks]
    full_model = build_model(settings, full)
    check_fits(full_model, checkpoint, path, f"{run_dir} ({describe(settings)})")
    full_pred = predictor(full_model, DictRestore(checkpoint), ["logits"] + gated)
    small_model = build_model(settings, small)
    small_values = remap_variables(checkpoint, list(model_variables(small_model)), mapping)
    return full_pred, predictor(small_model, DictRestore(small_values), ["logits"])


@dataclass
class Comparison:
    """What the full and the compressed network did on the same validation batches."""
    closed: dict  # discarded block -> its gate's value on each batch
    agree: int = 0
    total: int = 0
    max_diff: float = 0.0
    correct_full: int = 0
    correct_small: int = 0
    batches: int = 0
    gated_differently: int = 0


def _compare_on_validation(settings, full, discarded, full_pred, small_pred, limit) -> Comparison:
    seen = Comparison(closed={b: [] for b in discarded})
    for x, y in val_batches(settings, limit, "compress"):
        out_full = full_pred(x, y)
        logits_small = small_pred(x, y)[0]
        differs = False
        for b, v in zip(full.blocks, out_full[1:]):
            if b.name in seen.closed:
                seen.closed[b.name].append(float(v))
            # the compressed network has cut exactly the discarded blocks: the full one gates
            # differently on a batch where one of those is open or a kept one is closed
            differs |= (float(v) < 1.0) if b.name in seen.closed else (float(v) >= 1.0)
        seen.batches += 1
        seen.gated_differently += int(differs)
        logits = out_full[0]
        seen.agree += int(np.sum(logits.argmax(1) == logits_small.argmax(1)))
        seen.total += len(y)
        seen.max_diff = max(seen.max_diff, float(np.max(np.abs(logits - logits_small))))
        seen.correct_full += int(np.sum(logits.argmax(1) == y))
        seen.correct_small += int(np.sum(logits_small.argmax(1) == y))
    return seen


def _save(settings, small, small_pred, out) -> None:
    """The compressed network's checkpoint and SavedModel."""
    os.makedirs(out, exist_ok=True)
    with small_pred.graph.as_default():
        from ..compat import import_tf

        import_tf().train.Saver().save(small_pred.sess, os.path.join(out, CHECKPOINT_PREFIX),
                                       write_meta_graph=False)
    export_saved_model(settings, small, os.path.join(out, CHECKPOINT_PREFIX),
                       os.path.join(out, SAVED_MODEL))


def _record(settings, run_dir, path, step, rule, values, checkpoint, full, small, mapping,
            discarded, seen: Comparison) -> dict:
    """compressed.yaml's content."""
    norms = branch_weight_norms(checkpoint, full)
    kept_norms = [norms[b.name] for b in full.blocks if b.name not in discarded]
    classes, size, total = settings.classes, settings.image_size, seen.total
    return {
        "run": os.path.abspath(run_dir), "step": step, "checkpoint": path,
        "settings": settings.to_dict(),
        "rule": rule, "discarded_at": RULES[rule], "discarded": discarded,
        "nothing_discarded": not discarded,
        "structure": structure_of(small, mapping),
        "params": {"full": count_parameters(full, classes),
                   "compressed": count_parameters(small, classes)},
        "flops": {"full": count_flops(full, size, classes),
                  "compressed": count_flops(small, size, classes)},
        "checks": {
            "validation_images": total,
            "agreement": seen.agree / total if total else None,
            "max_logit_difference": seen.max_diff,
            "min_agreement": MIN_AGREEMENT,
            "equivalent": bool(total and seen.agree / total >= MIN_AGREEMENT),
            "validation_batches": seen.batches,
            "batches_gated_differently": seen.gated_differently,
            "val_error": {"full": 1 - seen.correct_full / total if total else None,
                          "compressed": 1 - seen.correct_small / total if total else None},
            "discarded_blocks": {b: {
                "moving_average_is_discarded": values.get(b),
                "gate_closed_on_validation": (float(np.mean(seen.closed[b])) if seen.closed[b]
                                              else None),
                "branch_weight_norm": norms[b],
                "median_kept_branch_weight_norm": float(np.median(kept_norms)) if kept_norms else None,
            } for b in discarded},
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
