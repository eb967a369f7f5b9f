"""Training throughput of the real training path (tensorpack trainer, input queue, the session
settings of a real run) on synthetic data: shared by `eps-resnet selfcheck` and
benchmarks/train_throughput.py."""
from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time


def median_step(settings, warmup: int) -> float:
    """Seconds of the median step after ``warmup`` steps of a one-epoch run of ``settings`` (its
    ``out`` replaced by a temporary folder), trained by the real training path."""
    import dataclasses

    from tensorpack.callbacks import Callback
    from tensorpack.utils import logger

    from .train import train

    class StepTimer(Callback):
        def __init__(self):
            self.times = []

        def _trigger_step(self):
            self.times.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        level = logging.getLogger("tensorpack").level  # tensorpack logs there
        ours = logging.getLogger(train.__module__)  # "finished 1 epochs" is not the figure
        logger.setLevel(max(level, 30))  # warnings and worse (the self-check quietens more)
        ours.setLevel(logging.WARNING)
        try:
            train(dataclasses.replace(settings, out=os.path.join(out, "run")),
                  extra_callbacks=[timer])
        finally:
            logger.setLevel(level)
            ours.setLevel(logging.NOTSET)
    return statistics.median(b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:]))


def images_per_second(variant: str, depth: int, batch: int, steps: int, warmup: int,
                      gpus: int | None = None, family: str = "cifar", precision: str = "fp32",
                      deterministic: bool = True, image_size: int | None = None,
                      cpu_kernels: str | None = None) -> float:
    """The median training throughput over ``steps`` steps after ``warmup`` steps.

    ``cpu_kernels`` as training's (default compat.default_cpu_kernels(); native for mixed
    precision). A process
    runs one kind (compat.use_cpu_kernels): a measurement of the other kind after TensorFlow
    started runs in a process of its own."""
    import sys

    from .settings import TrainSettings

    from ..compat import cpu_kernels as current
    from ..compat import default_cpu_kernels, use_cpu_kernels

    kind = cpu_kernels or ("native" if precision == "mixed" else default_cpu_kernels())

    if kind != current()["kind"]:
        if "tensorflow" in sys.modules:
            return in_own_process(dict(
                variant=variant, depth=depth, batch=batch, steps=steps, warmup=warmup, gpus=gpus,
                family=family, precision=precision, deterministic=deterministic,
                image_size=image_size, cpu_kernels=kind))
        use_cpu_kernels(kind)  # TensorFlow has not started: this process can still switch
    settings = TrainSettings(
        dataset="synthetic", depth=depth, variant=variant, family=family,
        image_size=image_size, epsilon=2.5 if variant == "epsilon" else None, epochs=1,
        steps_per_epoch=warmup + steps, batch=batch, gpus=gpus, precision=precision,
        deterministic=deterministic, cpu_kernels=kind, out="unused")
    return batch / median_step(settings, warmup)


def in_own_process(kwargs: dict, env: dict | None = None) -> float:
    """:func:`images_per_second` of ``kwargs`` in a fresh Python process that runs the CPU
    kernels ``kwargs["cpu_kernels"]`` (a process decides them before TensorFlow starts), with
    ``env`` added to its environment (a benchmark's variant of a kind)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from eps_resnet.compat import use_cpu_kernels\n"
            "args = json.loads(sys.argv[1])\n"
            "use_cpu_kernels(args['cpu_kernels'])\n"
            "from eps_resnet.training.throughput import images_per_second\n"
            "print(images_per_second(**args))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"the {kwargs['cpu_kernels']} measurement failed: "
                           f"{lines[-1] if lines else done.returncode}")
    return float(done.stdout.strip().splitlines()[-1])
