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
* CPU kernels: TensorFlow's results on a CPU depend on which oneDNN code it runs, and oneDNN
  picks that by the CPU's instruction set (and TensorFlow switches its oneDNN graph rewrites on by
  default only on some CPUs). Every process starts *portable*: the rewrites off and oneDNN held
  to AVX2, the widest instruction set every supported x86-64 CPU has, so that the same command
  gives the same numbers on AVX2-only, AVX-512 and AMX machines. ``use_cpu_kernels("native")``
  (``--cpu-kernels native``) restores TensorFlow's own choice before TensorFlow starts.
"""
from __future__ import annotations

import logging
import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    # Too late to switch Keras: tensorpack's layers would fail later with a confusing error.
    raise ImportError(
        "eps_resnet must be imported before tensorflow (it sets TF_USE_LEGACY_KERAS=1); "
        "or export TF_USE_LEGACY_KERAS=1 yourself")

os.environ["TF_USE_LEGACY_KERAS"] = "1"

#: What "portable" sets; oneDNN reads both once, when TensorFlow first uses it.
PORTABLE_CPU_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CPU_KERNELS = ("portable", "native")
# the user's own values, which "native" puts back
_USER_CPU_ENV = {k: os.environ.get(k) for k in PORTABLE_CPU_ENV}
_cpu_kernels = "portable"
os.environ.update(PORTABLE_CPU_ENV)
# TensorFlow's C++ start-up chatter (cuInit on CPU-only hosts, oneDNN notices) drowns the logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

for _alias, _type in (("float", float), ("int", int), ("object", object), ("bool", bool)):
    if _alias not in np.__dict__:
        setattr(np, _alias, _type)


class _PlaceholderForStrayArguments(logging.Filter):
    def filter(self, record):
        if record.args and isinstance(record.msg, str) and "%" not in record.msg:
            record.msg += " %s" * (len(record.args) if isinstance(record.args, tuple) else 1)
        return True


logging.getLogger("tensorpack").addFilter(_PlaceholderForStrayArguments())


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
    return {"kind": _cpu_kernels, **{k: os.environ.get(k) for k in PORTABLE_CPU_ENV}}


def import_tf():
    """Import TensorFlow in v1 graph mode and return ``tf.compat.v1``."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tfv1 = tf.compat.v1
    tfv1.disable_eager_execution()
    return tfv1


def visible_gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use in this process (respects CUDA_VISIBLE_DEVICES)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or not (
            os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")):
        # No NVIDIA driver: answer without starting TensorFlow (and its cuInit error message).
        return []
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def session_config(threads: int = 0, mixed_kind: str | None = None):
    """tensorpack's session options, but with TensorFlow's own thread pools: tensorpack pins
    intra-op threads to 1, which costs 20-30% on CPUs. ``threads`` 0 lets TensorFlow use every
    core. ``mixed_kind`` "onednn_bfloat16" switches on TensorFlow's oneDNN bfloat16 rewrite
    (the GPU's float16 rewrite comes with its optimizer, see models.resnet)."""
    from tensorflow.core.protobuf import rewriter_config_pb2
    from tensorpack.tfutils.common import get_default_sess_config

    config = get_default_sess_config()
    config.intra_op_parallelism_threads = threads
    config.inter_op_parallelism_threads = threads
    if mixed_kind == "onednn_bfloat16":
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG through libc: the calling process (a data worker) gets SIGHUP
    when its parent dies, however it dies. tensorpack does the same only when the python-prctl
    package is installed (it needs libcap headers to build), else its workers outlive a killed
    trainer."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGHUP)  # 1 = PR_SET_PDEATHSIG

