"""GPU slots for jobs that run side by side on one machine.

Snakemake's ``--resources gpu=K`` only counts: it never says *which* GPUs a job may use, and
TensorFlow takes every GPU it sees. :func:`hold` gives a job ``n`` GPU ids of its own for its
whole lifetime, through one lock file per GPU (``fcntl.flock``): the kernel drops a lock when its
holder exits, however it exits, so a crashed or killed job never leaves its GPUs taken. Under
SLURM the scheduler has already chosen the job's GPUs, so the slots step aside.

The lock files live in one folder under the system's temporary folder, shared by every user of
the machine (a GPU is the machine's, whoever runs on it): the folder is made sticky and
world-writable like /tmp itself, each lock file writable by all, and none is ever opened
through a symbolic link that another user planted in its place.
"""
from __future__ import annotations

import fcntl
import glob
import logging
import os
import subprocess
import tempfile
import time
from contextlib import contextmanager

from ..atomic import PlantedLinkError, open_lock_file
from ..errors import EpsResnetError
from ..logs import NOTE

LOG = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "eps-resnet-gpu-slots")


class SlotError(EpsResnetError):
    """An impossible request (more GPUs than the machine has), or a slot folder or lock file
    that is not what it must be."""


def slot_folder(lock_dir: str) -> str:
    """``lock_dir``, made if missing as a sticky folder every user may add lock files to; one
    that is a symbolic link is refused."""
    parent = os.path.dirname(os.path.abspath(lock_dir))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(lock_dir)
        os.chmod(lock_dir, 0o1777)  # (mkdir's mode passes through the umask)
    except FileExistsError:
        pass
    if os.path.islink(lock_dir) or not os.path.isdir(lock_dir):
        raise SlotError(f"{lock_dir} is not a folder (a symbolic link or a file in its place); "
                        "remove it, or set another GPU slot folder")
    return lock_dir


def machine_gpus() -> int:
    """Physical NVIDIA GPUs of this machine (without starting CUDA)."""
    if os.environ.get("EPS_RESNET_GPUS"):
        return int(os.environ["EPS_RESNET_GPUS"])
    found = glob.glob("/proc/driver/nvidia/gpus/*")
    if found:
        return len(found)
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        return 0


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def visible_pool() -> list[str] | None:
    """The GPU ids an existing CUDA_VISIBLE_DEVICES allows (None when it is not set)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [] if value.strip() in ("", "-1") else [v.strip() for v in value.split(",") if v.strip()]


@contextmanager
def hold(n: int, total: int | None = None, lock_dir: str = DEFAULT_LOCK_DIR,
         timeout: float | None = None, poll: float = 0.5, pool: list[str] | None = None):
    """Hold ``n`` distinct GPU ids until the block ends; yields them. The ids are taken from
    ``pool`` (e.g. the user's CUDA_VISIBLE_DEVICES) or else from 0..``total`` - 1 (default: the
    machine's GPUs). Waits while other holders have them (Snakemake's resource count normally
    makes the wait zero); raises SlotError if ``n`` can never be satisfied, TimeoutError after
    ``timeout`` seconds."""
    if pool is None:
        pool = [str(i) for i in range(machine_gpus() if total is None else total)]
    if n > len(pool):
        where = f"CUDA_VISIBLE_DEVICES={','.join(pool) or '(none)'}" if total is None and \
            visible_pool() is not None else f"this machine has {len(pool)}"
        raise SlotError(f"{n} GPU(s) asked for, but {where} "
                        "(set EPS_RESNET_GPUS to override the count)")
    if n <= 0:
        yield []
        return
    slot_folder(lock_dir)
    start = time.monotonic()
    while True:
        held = []
        for gpu in pool:  # one lock file per physical id, shared by every gpu-run of the machine
            try:
                f = open_lock_file(os.path.join(lock_dir, f"gpu{gpu}.lock"), shared=True)
            except PlantedLinkError as e:
                raise SlotError(e.strerror) from None
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            held.append((gpu, f))
            if len(held) == n:
                break
        if len(held) == n:
            break
        for _, f in held:  # not enough free: give back what we took, so nobody deadlocks
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no {n} free GPU slot(s) out of {len(pool)} within {timeout} s")
        time.sleep(poll)
    try:
        for gpu, f in held:
            if f.writable():  # (another user's lock file is locked read-only)
                f.seek(0)
                f.truncate()
                f.write(f"{os.getpid()}\n")
                f.flush()
        yield [gpu for gpu, _ in held]
    finally:
        for _, f in held:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def run_with_gpus(n: int, command: list[str], lock_dir: str = DEFAULT_LOCK_DIR) -> int:
    """Run ``command`` with CUDA_VISIBLE_DEVICES set to ``n`` GPUs of its own; returns its exit
    code. Under SLURM the allocation is used as is; with ``n = 0`` the command sees no GPU."""
    env = dict(os.environ)
    if under_slurm():
        LOG.log(NOTE, f"[gpu slots] under SLURM job {env['SLURM_JOB_ID']}: CUDA_VISIBLE_DEVICES="
                f"{env.get('CUDA_VISIBLE_DEVICES', '(unset)')} (the scheduler's)")
        return subprocess.call(command, env=env)
    with hold(n, lock_dir=lock_dir, pool=visible_pool()) as ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
        LOG.log(NOTE, f"[gpu slots] CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES'] or '(none)'}")
        proc = subprocess.Popen(command, env=env)
        try:
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
