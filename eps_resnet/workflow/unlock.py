"""Remove the lock a killed Snakemake left on a working folder, only when sure that no Snakemake
still runs there.

Snakemake locks its working folder while it runs (``.snakemake/locks``); one killed with
``kill -9`` (or by an out-of-memory killer, a closed laptop) leaves the lock, and the next run
stops with "Directory cannot be locked". ``snakemake --unlock`` removes it, but would also break
the lock of a Snakemake that is still running there. So this looks first, through psutil, at
every process of the machine: the lock is removed only when none is a Snakemake whose working
folder is this one. It is left alone, with one line that says why and how to unlock by hand,
when a Snakemake runs there, when a Snakemake's working folder cannot be read (another user's),
and when the folder is on a network file system, where a Snakemake of another machine cannot be
seen.

    python -m eps_resnet.workflow.unlock [--directory DIR] [SNAKEMAKE ARGS...]

(`make demo` runs it before the demo; the extra arguments, e.g. ``--configfile``, are passed to
``snakemake --unlock``.)
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Iterable

#: File system types shared between machines (a Snakemake elsewhere may hold the lock).
NETWORK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs",
                        "ceph", "fuse.sshfs", "fuse.glusterfs", "glusterfs", "9p", "afs", "fuse.s3fs")


def is_snakemake(argv: list[str]) -> bool:
    """``snakemake ...``, ``python .../bin/snakemake ...`` or ``python -m snakemake ...``."""
    names = [os.path.basename(a) for a in argv[:3]]
    return "snakemake" in names[:2] or names[1:3] == ["-m", "snakemake"]


def processes() -> Iterable[tuple[int, list[str], str | None]]:
    """(pid, command line, working folder or None where it cannot be read) of every process of
    the machine but this one."""
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid == os.getpid() or not p.info["cmdline"]:
            continue
        try:
            cwd = p.cwd()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            cwd = None
        yield p.pid, p.info["cmdline"], cwd


def file_system(folder: str) -> str:
    """The type of the file system that holds ``folder`` (psutil's mount table)."""
    import psutil

    path, best = os.path.realpath(folder), ("", "")
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip("/") or "/"
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best[0]):
            best = (mount, part.fstype)
    return best[1]


def why_not(folder: str, running: Iterable[tuple[int, list[str], str | None]], fstype: str) -> str | None:
    """Why the lock in ``folder`` may not be removed, or None when no Snakemake can hold it."""
    folder = os.path.realpath(folder)
    if fstype in NETWORK_FILE_SYSTEMS:
        return (f"{folder} is on a shared file system ({fstype}), where a Snakemake of another "
                "machine cannot be seen")
    for pid, argv, cwd in running:
        if not is_snakemake(argv):
            continue
        if cwd is None:
            return f"a Snakemake (process {pid}) runs whose working folder cannot be read"
        if os.path.realpath(cwd) == folder:
            return f"a Snakemake (process {pid}) runs in {folder}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eps_resnet.workflow.unlock",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", default=".", help="Snakemake's working folder (default: .)")
    args, snakemake_args = parser.parse_known_args(argv)
    locks = os.path.join(args.directory, ".snakemake", "locks")
    if not os.path.isdir(locks) or not os.listdir(locks):
        return 0  # nothing to remove
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    command = [snakemake, "--unlock", "--cores", "1", "--quiet", "--directory", args.directory,
               *snakemake_args]
    reason = why_not(args.directory, processes(), file_system(args.directory))
    if reason is not None:
        print(f"{reason}: its lock stays; if no Snakemake uses the folder, unlock it by hand: "
              f"{shlex.join(['snakemake', *command[1:]])}", file=sys.stderr)
        return 0
    print(f"removing the lock a stopped Snakemake left in {os.path.abspath(args.directory)}",
          file=sys.stderr)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
