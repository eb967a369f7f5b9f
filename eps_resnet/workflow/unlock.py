"""Remove the lock a killed Snakemake left on a working folder, unless a Snakemake still runs there.

Snakemake locks its working folder while it runs (``.snakemake/locks``); one killed with
``kill -9`` (or by an out-of-memory killer, a closed laptop) leaves the lock, and the next run
stops with "Directory cannot be locked". ``snakemake --unlock`` removes it, but would also break
the lock of a Snakemake that is still running there. This looks for one first, by reading
``/proc``: a process whose command is Snakemake and whose working folder is this one.

    python -m eps_resnet.workflow.unlock [--directory DIR] [SNAKEMAKE ARGS...]

(`make demo` runs it before the demo; the extra arguments, e.g. ``--configfile``, are passed to
``snakemake --unlock``.)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _is_snakemake(argv: list[str]) -> bool:
    """``snakemake ...``, ``python .../bin/snakemake ...`` or ``python -m snakemake ...``."""
    names = [os.path.basename(a) for a in argv[:3]]
    return "snakemake" in names[:2] or names[1:3] == ["-m", "snakemake"]


def snakemake_running_in(folder: str) -> int | None:
    """The pid of a Snakemake whose working folder is ``folder`` (not this process), or None."""
    folder = os.path.realpath(folder)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.path.realpath(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if _is_snakemake(argv) and cwd == folder:
            return int(entry)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eps_resnet.workflow.unlock",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", default=".", help="Snakemake's working folder (default: .)")
    args, snakemake_args = parser.parse_known_args(argv)
    locks = os.path.join(args.directory, ".snakemake", "locks")
    if not os.path.isdir(locks) or not os.listdir(locks):
        return 0  # nothing to remove
    other = snakemake_running_in(args.directory)
    if other is not None:
        print(f"a Snakemake (process {other}) runs in {os.path.abspath(args.directory)}: its lock "
              "stays", file=sys.stderr)
        return 0
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    print(f"removing the lock a stopped Snakemake left in {os.path.abspath(args.directory)}",
          file=sys.stderr)
    return subprocess.run([snakemake, "--unlock", "--cores", "1", "--quiet",
                           "--directory", args.directory, *snakemake_args]).returncode


if __name__ == "__main__":
    sys.exit(main())
