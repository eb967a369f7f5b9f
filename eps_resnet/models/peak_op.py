"""The gate's CPU kernel for max|F| (``peak_op.cc``): compiled on first use, then loaded.

TensorFlow's ops read a branch twice for max|F| (max F and min F); ``PeakMagnitude`` reads it
once, in half the time of a copy of the branch: in fp32 on an AMX Xeon's 2 cores that took the
ε-ResNet-32 from 0.956-0.962 to 0.968-0.970 of the standard network's speed
(``benchmarks/step_profile.py``, README "Performance"). It gives the value of
``max(max F, -min F)`` by TensorFlow's CPU reductions for every branch (NaN if one is NaN;
subnormals count as 0, as TensorFlow's threads flush them; only the sign of a zero peak can
differ), so the gate decides as before.

The kernel is built with the C++ compiler (``$CXX``, else ``g++``) against the installed
TensorFlow's headers, into a cache folder (``$EPS_RESNET_CACHE``, else
``$XDG_CACHE_HOME/eps-resnet``, else ``~/.cache/eps-resnet``, else one in the temporary
directory), in about 7 seconds, once per TensorFlow version and source. Where that is not
possible (no compiler, another TensorFlow ABI) or ``EPS_RESNET_PEAK_OP=off``, the gate keeps
TensorFlow's two reductions and says why once: the decisions, the values and the golden files
are the same either way. On machines with GPUs the gate uses TensorFlow's ops (the kernel is
CPU-only), and so do exported SavedModels (:func:`tensorflow_ops_only`), which must load in a
plain TensorFlow; the graph files tensorpack writes beside the checkpoints name the op.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..atomic import atomic_path
from ..logs import NOTE

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("peak_op.cc")
#: ``EPS_RESNET_PEAK_OP=off`` keeps TensorFlow's reductions (to compare, or to rule the kernel out)
SWITCH = "EPS_RESNET_PEAK_OP"


class BuildError(RuntimeError):
    """The kernel could not be compiled or loaded here (the message says why, in one line)."""


class NoCompiler(BuildError):
    """No C++ compiler here: the usual case on a machine without build tools, not a fault."""


def cache_dir() -> Path:
    """Where compiled kernels are kept: the user's cache folder, or a folder of their own in
    the temporary directory where that cannot be written (a read-only home on a cluster)."""
    if os.environ.get("EPS_RESNET_CACHE"):
        return Path(os.environ["EPS_RESNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (Path(base) / "eps-resnet",
                   Path(tempfile.gettempdir()) / f"eps-resnet-{os.getuid()}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return Path(base) / "eps-resnet"  # build() says why it cannot write there


def _command(tf, compiler: str, output: str) -> list[str]:
    return [compiler, "-shared", "-fPIC", "-O3", "-Wno-deprecated-declarations",
            *tf.sysconfig.get_compile_flags(), str(SOURCE), "-o", output,
            *tf.sysconfig.get_link_flags()]


def build(folder: Path | None = None) -> Path:
    """The compiled library for this TensorFlow (compiling it if the cache lacks it); raises
    :class:`BuildError`."""
    import tensorflow as tf

    compiler = shutil.which(os.environ.get("CXX") or "g++")
    if compiler is None:
        raise NoCompiler(f"no C++ compiler ({os.environ.get('CXX') or 'g++'}) on PATH")
    key = hashlib.sha256("\0".join([SOURCE.read_text(), tf.__version__, platform.machine(),
                                    *_command(tf, compiler, "")]).encode()).hexdigest()[:16]
    library = (folder or cache_dir()) / f"peak_op-{key}.so"
    if library.exists():
        return library
    started = time.perf_counter()
    try:
        with atomic_path(str(library)) as tmp:
            done = subprocess.run(_command(tf, compiler, tmp), capture_output=True, text=True,
                                  timeout=600)
            if done.returncode:
                errors = [ln for ln in done.stderr.splitlines() if "error" in ln] or \
                    done.stderr.splitlines()[-1:] or [f"exit status {done.returncode}"]
                raise BuildError(f"{compiler} failed: {errors[0].strip()}")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"cannot build in {library.parent}: {e}") from None
    log.log(NOTE, f"built the gate's CPU kernel for max|F| in "
                  f"{time.perf_counter() - started:.1f} s: {library}")
    return library


@functools.cache
def _loaded():
    """The loaded op library, or None (with the reason logged once)."""
    if os.environ.get(SWITCH, "").lower() in ("0", "off", "no", "false"):
        log.log(NOTE, f"{SWITCH}={os.environ[SWITCH]}: the gate's max|F| by TensorFlow's "
                      "reductions")
        return None
    import tensorflow as tf

    try:
        return _load(str(build()))
    except (BuildError, tf.errors.NotFoundError) as e:
        log.log(NOTE if isinstance(e, NoCompiler) else logging.WARNING,
                f"the gate's max|F| by TensorFlow's reductions (slower on CPUs): {e}")
        return None


@functools.cache
def _load(path: str):
    import tensorflow as tf

    library = tf.load_op_library(path)
    tf.no_gradient("PeakMagnitude")  # it reads stop_gradient(F): T has no gradient
    return library


_tensorflow_only = False


@contextlib.contextmanager
def tensorflow_ops_only():
    """Gates built inside take max|F| by TensorFlow's own ops: for graphs that leave the
    package (SavedModels), which other programs load without this kernel."""
    global _tensorflow_only
    before, _tensorflow_only = _tensorflow_only, True
    try:
        yield
    finally:
        _tensorflow_only = before


def peak_magnitude_op():
    """``PeakMagnitude`` (float32 tensor -> its max|x|, a float32 scalar), or None where it
    cannot be built, a GPU is visible or inside :func:`tensorflow_ops_only` (the gate then
    uses TensorFlow's reductions)."""
    from ..compat import visible_gpus

    if _tensorflow_only or visible_gpus():
        return None
    library = _loaded()
    return None if library is None else library.peak_magnitude
