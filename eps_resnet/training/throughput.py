"""Training throughput of the real training path (tensorpack trainer, input queue, the session
settings of a real run) on synthetic data: shared by `eps-resnet selfcheck` and
benchmarks/train_throughput.py."""
from __future__ import annotations

import os
import statistics
import tempfile
import time


def images_per_second(variant: str, depth: int, batch: int, steps: int, warmup: int,
                      gpus: int | None = None, family: str = "cifar", precision: str = "fp32",
                      deterministic: bool = True, image_size: int | None = None) -> float:
    """The median training throughput over ``steps`` steps after ``warmup`` steps."""
    from tensorpack.callbacks import Callback
    from tensorpack.utils import logger

    from .settings import TrainSettings
    from .train import train

    class StepTimer(Callback):
        def __init__(self):
            self.times = []

        def _trigger_step(self):
            self.times.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        settings = TrainSettings(
            dataset="synthetic", depth=depth, variant=variant, family=family,
            image_size=image_size, epsilon=2.5 if variant == "epsilon" else None, epochs=1,
            steps_per_epoch=warmup + steps, batch=batch, gpus=gpus, precision=precision,
            deterministic=deterministic, out=os.path.join(out, "run"))
        level = logger._logger.level
        logger.setLevel(max(level, 30))  # warnings and worse (the self-check quietens more)
        try:
            train(settings, log=lambda *a: None, extra_callbacks=[timer])
        finally:
            logger.setLevel(level)
    gaps = [b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:])]
    return batch / statistics.median(gaps)
