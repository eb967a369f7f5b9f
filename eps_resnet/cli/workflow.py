"""``eps-resnet gpu-run``, ``check-config`` and ``selfcheck``: their arguments and handlers."""
from __future__ import annotations

import argparse

from ..training.settings import SettingsError


def add_gpu_run(sub) -> None:
    p = sub.add_parser("gpu-run", help="run a command on GPUs of its own (local GPU slots)",
                       description="Run COMMAND with CUDA_VISIBLE_DEVICES set to N GPUs that no other "
                       "gpu-run holds, for the command's whole lifetime (released on exit, crash "
                       "included). Under SLURM the scheduler's allocation is used as is.")
    p.add_argument("--gpus", type=int, required=True, metavar="N", help="GPUs the command needs (0: none)")
    p.add_argument("--lock-dir", help="where the slot lock files live (default: a folder in the "
                   "system's temporary directory, shared by every job of this machine)")
    # (not "command": that is the subcommand's name, which messages are prefixed with)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="command",
                   help="-- COMMAND [ARGS...]")
    p.set_defaults(func=_cmd_gpu_run)


def _cmd_gpu_run(args) -> int:
    from ..workflow.gpus import DEFAULT_LOCK_DIR, SlotError, run_with_gpus

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        raise SettingsError("gpu-run needs a command after --")
    try:
        return run_with_gpus(args.gpus, command, args.lock_dir or DEFAULT_LOCK_DIR)
    except SlotError as e:
        raise SettingsError(f"--gpus {args.gpus}: {e}") from None


def add_check_config(sub) -> None:
    p = sub.add_parser("check-config", help="check a workflow config file (syntax, schema, runs)",
                       description="Check a workflow config file as the workflow will: YAML syntax "
                       "(with the line of an error, which Snakemake's own message lacks), the "
                       "schema, and that every run can train. Prints its experiments and runs.")
    p.add_argument("config", nargs="+", metavar="FILE", help="config file(s), e.g. config/demo.yaml")
    p.set_defaults(func=_cmd_check_config)


def _cmd_check_config(args) -> int:
    from ..workflow.config import RunTable, load_config, validate_config

    for path in args.config:
        table = RunTable(validate_config(load_config(path)))
        runs = [r for runs in table.runs.values() for r in runs]
        print(f"{path}: {len(table.runs)} experiment(s), {len(runs)} training run(s): "
              + ", ".join(f"{e} ({len(r)})" for e, r in table.runs.items()))
    return 0


def add_selfcheck(sub) -> None:
    p = sub.add_parser("selfcheck", help="check this machine before training on it (a one-page report)",
                       description="Check what TensorFlow sees (GPUs, compute capability, memory; "
                       "the CPU's features), that NHWC and NCHW compute the same network, that the "
                       "gate decides right, that this CPU computes the portable kernels' reference "
                       "bits (a fixed set of single ops), how fast the real training path runs on one and on all "
                       "devices (fp32, and mixed where supported), and the device-hours of the "
                       "paper's headline figures. Exit code 1 if a check fails.")
    p.add_argument("--quick", action="store_true",
                   help="fewer steps and smaller batches (a rough figure in about a minute)")
    p.add_argument("--out", metavar="FILE.md", help="also write the report to this file")
    p.set_defaults(func=_cmd_selfcheck)


def _cmd_selfcheck(args) -> int:
    from ..atomic import write_text
    from ..workflow.selfcheck import report, selfcheck

    checks = selfcheck(args.quick)
    text = report(checks)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0 if all(c.ok for c in checks) else 1
