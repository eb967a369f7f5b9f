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

import os
import time

import numpy as np

from ..atomic import write_yaml
from ..errors import EpsResnetError
from ..models.gate import CLOSED_AT, DISCARDED_AT
from ..models.layouts import (Layout, compress_layout, count_flops, count_parameters, make_layout,
                              structure_of)
from ..training.runfolder import (CHECKPOINT_PREFIX, COMPRESSED_FILE, SAVED_MODEL, STATS_FILE,
                                  choose_checkpoint, lock, read_checkpoint, read_stats, reading,
                                  run_settings)
from .evaluate import (check_fits, describe, model_variables, notes, predictor, run_kernels,
                       val_batches)
from .export import export_saved_model

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
             log=print, rule: str = "half") -> dict:
    """Compress the ε-ResNet of ``run_dir`` into ``out``; returns compressed.yaml's content."""
    if rule not in RULES:
        raise CompressError(f"--rule {rule!r} is unknown; expected one of {', '.join(RULES)}")
    settings = run_settings(run_dir).resolved()
    if settings.variant != "epsilon":
        raise CompressError(f"{run_dir} is a {settings.variant} run, not an ε-ResNet: it has no "
                            "gates, so nothing can be discarded")
    run_kernels(settings)
    with reading(run_dir, "eps-resnet compress"):
        path, step = choose_checkpoint(run_dir, step, say=notes("compress"))
        values = discard_values(run_dir, step)
        with lock(out, "eps-resnet compress"):
            return _compress(settings, run_dir, out, path, step, values, limit, log, rule)


def _compress(settings, run_dir, out, path, step, values, limit, log, rule) -> dict:
    from ..models.resnet import build_model

    checkpoint = read_checkpoint(path)
    full = make_layout(settings.family, settings.depth)
    discarded = [b.name for b in full.blocks if values.get(b.name, 0.0) >= RULES[rule]]
    small, mapping = compress_layout(full, discarded)
    if not discarded:
        log(f"{run_dir}: no block is discarded at step {step}; the compressed model equals the full one")

    from tensorpack.tfutils.sessinit import DictRestore

    gated = [f"{b.name}/is_discarded" for b in full.blocks]
    full_model = build_model(settings, full)
    check_fits(full_model, checkpoint, path, f"{run_dir} ({describe(settings)})")
    full_pred = predictor(full_model, DictRestore(checkpoint), ["logits"] + gated)
    small_model = build_model(settings, small)
    small_values = remap_variables(checkpoint, list(model_variables(small_model)), mapping)
    small_pred = predictor(small_model, DictRestore(small_values), ["logits"])

    closed = {b: [] for b in discarded}
    agree, total, max_diff, correct = 0, 0, 0.0, [0, 0]
    batches, gated_differently = 0, 0
    for x, y in val_batches(settings, limit):
        out_full = full_pred(x, y)
        logits_small = small_pred(x, y)[0]
        differs = False
        for b, v in zip(full.blocks, out_full[1:]):
            if b.name in closed:
                closed[b.name].append(float(v))
            # the compressed network has cut exactly the discarded blocks: the full one gates
            # differently on a batch where one of those is open or a kept one is closed
            differs |= (float(v) < 1.0) if b.name in closed else (float(v) >= 1.0)
        batches += 1
        gated_differently += int(differs)
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
        from ..compat import import_tf

        import_tf().train.Saver().save(small_pred.sess, os.path.join(out, CHECKPOINT_PREFIX),
                                       write_meta_graph=False)
    export_saved_model(settings, small, os.path.join(out, CHECKPOINT_PREFIX),
                       os.path.join(out, SAVED_MODEL))
    classes, size = settings.classes, settings.image_size
    info = {
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
            "agreement": agree / total if total else None,
            "max_logit_difference": max_diff,
            "min_agreement": MIN_AGREEMENT,
            "equivalent": bool(total and agree / total >= MIN_AGREEMENT),
            "validation_batches": batches,
            "batches_gated_differently": gated_differently,
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
    write_yaml(os.path.join(out, COMPRESSED_FILE), info)
    log(f"{out}: {len(discarded)} of {len(full.blocks)} blocks discarded; parameters "
        f"{info['params']['full']:,} -> {info['params']['compressed']:,}; agreement with the full "
        f"model {agree}/{total}, max logit difference {max_diff:.2e}; the full model gated "
        f"{gated_differently} of {batches} validation batches differently")
    if not info["checks"]["equivalent"]:
        notes("compress")(f"warning: {out} is NOT equivalent to the full model: agreement "
                          f"{agree}/{total} is below {MIN_AGREEMENT:.1%} (compressed.yaml and the "
                          "summary mark it; the full model's gates decide differently at validation)")
    return info
