"""What a run needs to be repeated: software versions, the machine (CPU features decide which
oneDNN kernels run, so results are bit-identical only on the same kind of CPU), GPUs, the data's
checksums and the code's commit. run.yaml records it."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

#: CPU features that change which kernels run (and so the last bits of the results).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> dict:
    """Model name and the vector extensions of this machine's CPU (Linux; empty elsewhere)."""
    info = {"model": platform.processor() or None, "cores": os.cpu_count(), "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not info.get("model_name"):
            info["model"] = value.strip()
        if key.strip() == "flags":
            flags = set(value.split())
            info["flags"] = [f for f in CPU_FLAGS if f in flags]
            break
    info.pop("model_name", None)
    return info


def versions() -> dict:
    import numpy
    import tensorflow
    import tensorpack

    from .. import __version__

    out = {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
           "tensorpack": tensorpack.__version__, "numpy": numpy.__version__,
           "eps_resnet": __version__}
    try:
        out["snakemake"] = metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        out["snakemake"] = None
    return out


def gpus() -> dict | None:
    """GPU names and the CUDA/cuDNN TensorFlow was built with; None without GPUs."""
    from ..compat import visible_gpus

    if not visible_gpus():
        return None
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    names = [tf.config.experimental.get_device_details(d).get("device_name", d.name)
             for d in tf.config.list_physical_devices("GPU")]
    return {"names": names, "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version")}


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def dataset(settings) -> dict:
    """The prepared dataset a run reads: its marker's identity, and the checksums of the files
    the run reads, each checked against the marker (so: of the bytes it read)."""
    if settings.info.storage == "generated":
        return {"name": settings.dataset, "generated_from_seed": settings.seed}
    from ..data.dataflows import verified_data
    from ..data.files import read_marker

    marker = read_marker(settings.data_dir) or {}
    keep = ("dataset", "prepared", "source", "md5", "images", "classes")
    return {"name": settings.dataset, "folder": settings.data_dir,
            **{k: marker[k] for k in keep if k in marker},
            "checksums": verified_data(settings)}


def lock() -> dict | None:
    """The package lock of this Python version the project installs from (`make`), with its
    SHA-256: the exact files of every package, when the environment was made from it. None when
    the project is not a checkout that has one."""
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    name = f"lock-py{sys.version_info[0]}.{sys.version_info[1]}.txt"
    path = os.path.join(root, "requirements", name)
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    return {"file": f"requirements/{name}", "sha256": digest}


def environment(settings) -> dict:
    return {**versions(), "git_commit": git_commit(), "lock": lock(), "host": platform.node(), "cpu": cpu(),
            "gpus": gpus(), "dataset": dataset(settings), "command": " ".join(sys.argv)}
