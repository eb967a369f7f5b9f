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

