"""The one place for the TensorFlow / tensorpack compatibility switches.

Import this module before anything imports TensorFlow (``eps_resnet/__init__.py`` does).

* TensorFlow >= 2.16 ships Keras 3, which dropped ``tf.compat.v1.layers``; tensorpack's
  Conv2D/BatchNorm/FullyConnected wrap those layers.  ``tf-keras`` (Keras 2) brings them back,
  but only if ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported.
* tensorpack 0.11 predates numpy 2; a few of its code paths use the removed aliases
  ``np.float`` / ``np.object``.  Restoring them here keeps those paths working.
* tensorpack 0.11 logs a failed training loop as ``logger.error("Training failed at
  global_step=", step)``, an argument without a placeholder, so Python's logging prints a
  "--- Logging error ---" traceback instead of that line; a filter on its logger adds the
  placeholder.
* CPU kernels: TensorFlow's results on a CPU depend on which kernels it runs and what they read
  of the CPU. *Portable* kernels give the same bits on every x86-64 CPU kind: oneDNN's kernels
  (TensorFlow's oneDNN rewrites on) held to AVX2, the widest instruction set every supported
  CPU has; no kernel that uses the CPU's approximate reciprocal square root (``vrsqrtps``, whose
  last bits differ between Intel and AMD: TensorFlow's own batch norm uses it, oneDNN's does
  not, and Grappler's remapper, off in portable sessions, would fuse a convolution with the
  batch norm after it into a kernel that uses it); and the cache sizes that Eigen and oneDNN
  block their work by pinned at TensorFlow's import (:mod:`eps_resnet.cpu_caches`).
  *Native* kernels are TensorFlow's own choice for the CPU (faster; the only way to bfloat16).
  A process starts with ``EPS_RESNET_CPU_KERNELS`` (default native) and may switch with
  ``use_cpu_kernels`` before TensorFlow starts; a process started by a portable one still gets
  the user's own values for native (``EPS_RESNET_USER_CPU_ENV`` carries them).
* TensorFlow's Linux wheel is built for CUDA: on a machine without an NVIDIA driver it prints
  ``cudart_stub`` notices and a ``failed call to cuInit`` error from C++ that no log level keeps
  back without hiding real errors too, and tensorpack warns about GPU options of a custom session
  config. Without a driver, those exact lines are dropped (see ``_TensorFlowImport``); every
  other line, and everything on a machine with a driver, is kept.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    # Too late to switch Keras: tensorpack's layers would fail later with a confusing error.
    raise ImportError(
        "eps_resnet must be imported before tensorflow (it sets TF_USE_LEGACY_KERAS=1); "
        "or export TF_USE_LEGACY_KERAS=1 yourself")

os.environ["TF_USE_LEGACY_KERAS"] = "1"

#: What "portable" sets; oneDNN reads both once, when TensorFlow first uses it.
PORTABLE_CPU_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CPU_KERNELS = ("portable", "native")
#: The user's own values of PORTABLE_CPU_ENV, as the first eps_resnet process found them.
USER_CPU_ENV_VAR = "EPS_RESNET_USER_CPU_ENV"
#: The default kind of every process and of ``--cpu-kernels`` when set (the test suite sets
#: portable, as anyone may who wants bits that other machines can check); native otherwise.
DEFAULT_KIND_VAR = "EPS_RESNET_CPU_KERNELS"


def default_cpu_kernels(strict: bool = False) -> str:
    """``EPS_RESNET_CPU_KERNELS`` when it names a kind, else native: TensorFlow's choice, faster
    than portable wherever AVX-512 is (README, "Across CPU kinds"). ``strict``: a value that
    names no kind raises ValueError (the process itself starts native then)."""
    kind = os.environ.get(DEFAULT_KIND_VAR, "").strip()
    if kind in CPU_KERNELS:
        return kind
    if kind and strict:
        raise ValueError(f"{DEFAULT_KIND_VAR}={kind!r} is unknown; expected one of "
                         f"{', '.join(CPU_KERNELS)}")
    return "native"


def _user_cpu_env() -> dict[str, str | None]:
    """The user's own values, which "native" puts back. A child process (a Snakemake job, a
    benchmark's or a test's subprocess) inherits the portable values its parent exported, not
    the user's: those travel beside them in USER_CPU_ENV_VAR. A value other than the portable
    one was set after that, on purpose, and is the user's own."""
    try:
        inherited = dict(json.loads(os.environ.get(USER_CPU_ENV_VAR) or "{}"))
    except (ValueError, TypeError):  # not ours to read: the current values are all there is
        inherited = {}
    mine = {}
    for key, portable in PORTABLE_CPU_ENV.items():
        now = os.environ.get(key)
        mine[key] = inherited[key] if now == portable and key in inherited else now
    return mine


_USER_CPU_ENV = _user_cpu_env()
os.environ[USER_CPU_ENV_VAR] = json.dumps(_USER_CPU_ENV)
_cpu_kernels = default_cpu_kernels()
#: The pinned cache sizes as run.yaml records them (eps_resnet.cpu_caches): set at TensorFlow's
#: import for portable kernels; "as detected" leaves each library its reading of this CPU
_cache_sizes: dict[str, str] | str = "as detected"
if _cpu_kernels == "portable":
    os.environ.update(PORTABLE_CPU_ENV)
# TensorFlow's C++ start-up chatter (cuInit on CPU-only hosts, oneDNN notices) drowns the logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



def _numpy_aliases() -> None:
    """numpy 2's removed aliases, for tensorpack; set when TensorFlow (which tensorpack imports
    first) is imported, so that a command's start-up imports no numpy before it can handle a
    signal."""
    import numpy as np

    for alias, type_ in (("float", float), ("int", int), ("object", object), ("bool", bool)):
        if alias not in np.__dict__:
            setattr(np, alias, type_)


class _PlaceholderForStrayArguments(logging.Filter):
    def filter(self, record):
        if record.args and isinstance(record.msg, str) and "%" not in record.msg:
            record.msg += " %s" * (len(record.args) if isinstance(record.args, tuple) else 1)
        return True


logging.getLogger("tensorpack").addFilter(_PlaceholderForStrayArguments())


def has_nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA driver loaded (without starting TensorFlow)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")


# What TensorFlow's CUDA build prints when there is no driver: before absl's logging starts (so
# TF_CPP_MIN_LOG_LEVEL does not apply), and the cuInit failure at its first device listing.
_NO_DRIVER_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit")
# What TensorFlow prints at its import when oneDNN's kernels are on, as portable kernels switch
# them on on purpose (run.yaml says so): "You may see slightly different numerical results".
_ONEDNN_NOTICE = r"port\.cc:\d+\] oneDNN custom operations are on"


@contextlib.contextmanager
def _stderr_without(lines: re.Pattern):
    """Run the body with file descriptor 2 (C++ writes there, not to sys.stderr) caught in a file,
    then write back every line that ``lines`` does not match. A file, not a pipe, so that a long
    message cannot block the writer."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True)
                    if not lines.search(line.decode(errors="replace"))]
            if kept:
                os.write(2, b"".join(kept))


class _TensorFlowLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with the no-driver lines dropped where there is no driver (the
    device listing at the end makes TensorFlow try cuInit now, inside the filter, and not at some
    later first use) and oneDNN's notice dropped for portable kernels; then, for portable
    kernels, the cache sizes pinned before any kernel."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _numpy_aliases()
        no_driver = not has_nvidia_driver()
        dropped = ([_NO_DRIVER_LINES.pattern] if no_driver else []) + \
            ([_ONEDNN_NOTICE] if _cpu_kernels == "portable" else [])
        if not dropped:
            self._loader.exec_module(module)
        else:
            with _stderr_without(re.compile("|".join(dropped))):
                self._loader.exec_module(module)
                if no_driver:
                    module.config.list_physical_devices("GPU")
        _pin_cache_sizes(module)

    def __getattr__(self, name):  # resources and source lookups go to the real loader
        return getattr(self._loader, name)


class _TensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, as the normal finders do, and hands it the loader above."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _TensorFlowLoader(spec.loader)
        return spec


class _NoGpuOptionsWarning(logging.Filter):
    """tensorpack warns that GPU options of a custom session config may not apply; without a GPU
    there are none."""

    def filter(self, record):
        return not (record.pathname.endswith("sesscreate.py") and record.levelno == logging.WARNING)


def _pin_cache_sizes(tensorflow) -> None:
    global _cache_sizes
    if _cpu_kernels == "portable":
        from . import cpu_caches

        _cache_sizes = cpu_caches.pin(os.path.dirname(tensorflow.__file__))


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _TensorFlowImport())
    if not has_nvidia_driver():
        logging.getLogger("tensorpack").addFilter(_NoGpuOptionsWarning())
else:  # imported before us (with TF_USE_LEGACY_KERAS=1): pinned now, before our first kernel
    _numpy_aliases()
    _pin_cache_sizes(sys.modules["tensorflow"])


def use_cpu_kernels(kind: str) -> None:
    """Run this process's CPU kernels ``portable`` (the same bits on every x86-64 CPU kind) or
    ``native`` (TensorFlow's choice for this CPU: faster on AVX-512 and AMX, and the only way to
    its bfloat16 kernels). Must be decided before TensorFlow starts: raises RuntimeError after."""
    global _cpu_kernels
    if kind not in CPU_KERNELS:
        raise ValueError(f"cpu kernels {kind!r}: expected one of {', '.join(CPU_KERNELS)}")
    if kind == _cpu_kernels:
        return
    if "tensorflow" in sys.modules:
        raise RuntimeError(f"TensorFlow already runs {_cpu_kernels} CPU kernels in this process; "
                           f"{kind} ones need a process of their own")
    for key, value in PORTABLE_CPU_ENV.items():
        mine = value if kind == "portable" else _USER_CPU_ENV[key]
        if mine is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = mine
    _cpu_kernels = kind


def cpu_kernels() -> dict:
    """The CPU kernels of this process, for run.yaml: the kind and the variables that make it."""
    return {"kind": _cpu_kernels, **{k: os.environ.get(k) for k in PORTABLE_CPU_ENV},
            "remapper": "off" if _cpu_kernels == "portable" else "on",
            "cache_sizes": _cache_sizes}


def import_tf():
    """Import TensorFlow in v1 graph mode and return ``tf.compat.v1``."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tfv1 = tf.compat.v1
    tfv1.disable_eager_execution()
    return tfv1


def visible_gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use in this process (respects CUDA_VISIBLE_DEVICES)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or not has_nvidia_driver():
        # No NVIDIA driver: answer without starting TensorFlow (and its cuInit error message).
        return []
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def session_config(threads: int = 0, mixed_kind: str | None = None):
    """tensorpack's session options, but with TensorFlow's own thread pools: tensorpack pins
    intra-op threads to 1, which costs 20-30% on CPUs. ``threads`` 0 lets TensorFlow use every
    core. ``mixed_kind`` "onednn_bfloat16" switches on TensorFlow's oneDNN bfloat16 rewrite
    (the GPU's float16 rewrite comes with its optimizer, see models.resnet). Portable CPU
    kernels switch Grappler's remapper off: at inference it fuses a convolution with the batch
    norm after it into a kernel that computes 1/sqrt(variance + epsilon) with the CPU's
    approximate reciprocal square root, whose last bits differ between Intel and AMD (training
    is as fast without its fusions)."""
    from tensorflow.core.protobuf import rewriter_config_pb2
    from tensorpack.tfutils.common import get_default_sess_config

    config = get_default_sess_config()
    config.intra_op_parallelism_threads = threads
    config.inter_op_parallelism_threads = threads
    if _cpu_kernels == "portable":
        config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    if mixed_kind == "onednn_bfloat16":
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def die_with_parent(signum: int) -> None:
    """Linux's PR_SET_PDEATHSIG through libc: the calling process (a data worker) gets
    ``signum`` when its parent dies, however it dies. tensorpack does the same only when the
    python-prctl package is installed (it needs libcap headers to build), else its workers
    outlive a killed trainer."""
    import ctypes

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signum))  # 1 = PR_SET_PDEATHSIG

