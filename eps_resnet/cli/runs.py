"""``eps-resnet compress``, ``evaluate``, ``export`` and ``compare``: their arguments and handlers."""
from __future__ import annotations

import math
import os

from ..training.settings import SettingsError


def add_compress(sub) -> None:
    p = sub.add_parser("compress", help="turn a trained ε-ResNet into the smaller network it found",
                       description="Remove the discarded blocks of an ε-ResNet run, check the smaller "
                       "network against the full one on the validation set, export a SavedModel.")
    p.add_argument("run", metavar="RUN_DIR", help="the run folder of an ε-ResNet")
    p.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where the compressed model goes (compressed.yaml, model, saved_model/)")
    p.add_argument("--limit", type=int, help="check on at most this many validation images")
    p.add_argument("--rule", choices=["half", "closed"], default="half",
                   help="remove blocks whose gate was closed at least half of the time (half, the "
                   "default) or only fully closed ones (closed, the original's compression)")
    p.add_argument("--evaluate", action="store_true",
                   help="then evaluate the full run and the saved compressed model in this process, "
                   "as `eps-resnet evaluate` does (RUN_DIR/eval.json, DIR/eval.json): one "
                   "TensorFlow start instead of three, as the workflow runs it")
    p.set_defaults(func=_cmd_compress)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="validation error of a run or a compressed model",
                       description="Top-1 (and top-5 with more than 10 classes) validation error of "
                       "a run folder's newest checkpoint or of a compressed model folder, written "
                       "as JSON.")
    p.add_argument("model", metavar="MODEL_DIR", help="a run folder or a compressed model folder")
    p.add_argument("--dataset", help="must match the model's (default: the model's)")
    p.add_argument("--data-dir", metavar="DIR", help="prepared dataset (default: the run's)")
    p.add_argument("--out", metavar="JSON", help="default: MODEL_DIR/eval.json")
    p.add_argument("--limit", type=int, help="at most this many validation images")
    p.set_defaults(func=_cmd_evaluate)


def add_gates(sub) -> None:
    p = sub.add_parser("gates", help="why gates decide differently at validation than in training",
                       description="Per gated block of an ε-ResNet run's newest checkpoint: the "
                       "branch's max|F| and how often its gate closes on the validation images, with "
                       "the batch norms' moving statistics (as validation) and with each batch's own "
                       "(as training), beside training's record, and how far the moving statistics "
                       "are from the batches'.")
    p.add_argument("run", metavar="RUN_DIR", help="the run folder of an ε-ResNet")
    p.add_argument("--limit", type=int, help="at most this many validation images")
    p.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    p.set_defaults(func=_cmd_gates)


def _cmd_gates(args) -> int:
    import json

    from ..atomic import write_text
    from ..runs.gates import gate_responses, table

    result = gate_responses(args.run, args.limit)
    print(table(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=1))
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="a trained run as a SavedModel (raw uint8 images in)",
                       description="Export any trained run (baselines included) as a TensorFlow "
                       "SavedModel: signature serving_default takes uint8 RGB images (N x H x W x 3, "
                       "0-255) as `input` and returns `prob` and `logits`; the normalisation is "
                       "inside, so plain TensorFlow can use it.")
    p.add_argument("run", metavar="RUN", help="a run folder of `eps-resnet train`")
    p.add_argument("--out", required=True, metavar="DIR", help="where the SavedModel goes")
    p.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="the prepared dataset (its training mean goes into the model; default: "
                   "the run's)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from ..runs.export import export

    export(args.run, args.out, args.step, args.data_dir)
    return 0


def _cmd_compress(args) -> int:
    from ..runs.compress import compress

    compress(args.run, args.out, args.step, args.limit, rule=args.rule)
    if args.evaluate:
        from ..runs.evaluate import evaluate

        evaluate(args.out, limit=args.limit)
        evaluate(args.run, limit=args.limit)
    return 0


def _cmd_evaluate(args) -> int:
    from ..runs.evaluate import evaluate

    evaluate(args.model, args.data_dir, args.dataset, args.out, args.limit)
    return 0


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="whether two runs are identical (a reproduction check)",
                       description="Compare every metric of every epoch of two run folders' "
                       "stats.json. Exit code 0 if they are identical (within --tolerance), 1 "
                       "if not; the report names the first difference and the largest one.")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder")
    p.add_argument("run_b", metavar="RUN_B", help="the run folder to compare it with")
    p.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                   help="largest absolute difference still counted as equal (default 0: bit for bit)")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from ..runs.compare import compare_runs
    from ..training.runfolder import RunFolderError

    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise SettingsError(f"--tolerance {args.tolerance} is not a number >= 0")
    for run in (args.run_a, args.run_b):
        if not os.path.isfile(os.path.join(run, "stats.json")):
            raise RunFolderError(f"{run} has no stats.json; expected a run folder of `eps-resnet train`")
    result = compare_runs(args.run_a, args.run_b, args.tolerance)
    print(result.report(args.tolerance))
    return 0 if result.identical else 1
