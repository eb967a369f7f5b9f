"""Learning-rate and ε schedules: pure rules, and the tensorpack callbacks that apply them.

A schedule is a list of ``(epoch, value)`` points: the value takes effect after ``epoch`` epochs
have finished (``epoch = 0``: before the first epoch), as in tensorpack's
``ScheduledHyperParamSetter``.

The adaptive rule of ε-ResNet (:class:`AdaptiveRestart`) restarts a faster schedule whenever the
number of discarded blocks rises. It is a pure state machine fed with the per-epoch history of
``discarded_cnt``, so that the tests can replay hand-made histories and a resumed run can rebuild
its state from the run's stats.json.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

Points = Sequence[tuple[int, float]]

#: The paper's learning-rate schedules per dataset kind: the standard one, and the faster one the
#: adaptive rule restarts (CIFAR: 82/123/300 -> 41/61/150; SVHN: 20/28/50 -> 10/14/25).
LR_SCHEDULES: dict[str, dict[str, list[tuple[int, float]]]] = {
    "cifar": {
        "standard": [(0, 0.1), (82, 0.01), (123, 0.001), (300, 0.0002)],
        "adaptive": [(0, 0.1), (41, 0.01), (61, 0.001), (150, 0.0002)],
    },
    "svhn": {
        "standard": [(1, 0.1), (20, 0.01), (28, 0.001), (50, 0.0001)],
        "adaptive": [(1, 0.1), (10, 0.01), (14, 0.001), (25, 0.0001)],
    },
    "imagenet": {
        "standard": [(0, 0.1), (30, 1e-2), (60, 1e-3), (85, 1e-4), (95, 1e-5)],
    },
    # The offline demo on scikit-learn's digits: the CIFAR shape compressed to ~15 epochs.
    "digits": {
        "standard": [(0, 0.1), (8, 0.01), (12, 0.001)],
        "adaptive": [(0, 0.1), (4, 0.01), (6, 0.001)],
    },
}
INITIAL_LR = 0.1
#: The original's restart test: k = 1 epoch of look-back, a rise of at least 1 discarded block.
ADAPTIVE_LAST_K = 1
ADAPTIVE_THRESHOLD = 1.0


def _sorted(points: Points) -> list[tuple[int, float]]:
    return sorted(((int(e), float(v)) for e, v in points), key=lambda p: p[0])


def value_at(points: Points, epoch: int) -> float | None:
    """The value in force after ``epoch`` finished epochs (None before the first point)."""
    value = None
    for e, v in _sorted(points):
        if e <= epoch:
            value = v
    return value


def epsilon_schedule(epsilon: float, start_epoch: int = 0) -> list[tuple[int, float]]:
    """ε from the start, or 0 (gate always open) until ``start_epoch`` epochs finished."""
    if start_epoch <= 0:
        return [(0, float(epsilon))]
    return [(0, 0.0), (int(start_epoch), float(epsilon))]


class AdaptiveRestart:
    """The adaptive learning-rate rule of the original ε-ResNet implementation.

    After each epoch: if at least ``last_k + 1`` values of ``discarded_cnt`` are known, at least
    ``last_k`` epochs passed since the last restart, and the maximum of the last ``last_k + 1``
    values is at least ``threshold`` above the first of them, the ``fast`` schedule restarts,
    shifted to the current epoch (so its first value applies from the next epoch). Otherwise the
    current schedule (the base one until the first restart) goes on.
    """

    def __init__(self, base: Points, fast: Points | None = None,
                 threshold: float = ADAPTIVE_THRESHOLD, last_k: int = ADAPTIVE_LAST_K):
        self.schedule = _sorted(base)
        self.fast = _sorted(fast) if fast else None
        self.threshold = float(threshold)
        self.last_k = int(last_k)
        self.last_restart = 0
        self.restarts: list[int] = []

    @property
    def adaptive(self) -> bool:
        return self.fast is not None

    def after_epoch(self, epoch: int, history: Sequence[float]) -> float | None:
        """The value to set after ``epoch`` finished epochs, given ``discarded_cnt`` after each
        of them (``history[-1]`` is the newest); None keeps the current value."""
        if self.adaptive and self._rose(epoch, history):
            self.last_restart = epoch
            self.restarts.append(epoch)
            self.schedule = [(e + epoch, v) for e, v in self.fast]
            return self.schedule[0][1]
        return next((v for e, v in self.schedule if e == epoch), None)

    def _rose(self, epoch: int, history: Sequence[float]) -> bool:
        if len(history) < self.last_k + 1 or epoch - self.last_restart < self.last_k:
            return False
        window = list(history)[-self.last_k - 1:]
        return max(window) >= window[0] + self.threshold


def replay(rule: AdaptiveRestart, history: Sequence[float], epochs: int,
           initial: float = INITIAL_LR) -> list[float]:
    """The learning rate used during each epoch 1..``epochs`` when ``history[i]`` is
    ``discarded_cnt`` after epoch ``i + 1``. Advances ``rule``'s state."""
    lr = rule.after_epoch(0, [])
    lr = initial if lr is None else lr
    used = []
    for epoch in range(1, epochs + 1):
        used.append(lr)
        new = rule.after_epoch(epoch, history[:epoch])
        lr = lr if new is None else new
    return used


def stat_history(stats_file: str, name: str, before_epoch: int) -> list[float]:
    """Per-epoch values of ``name`` in a tensorpack stats.json, for epochs < ``before_epoch``."""
    if not os.path.exists(stats_file):
        return []
    with open(stats_file) as f:
        stats = json.load(f)
    return [float(s[name]) for s in stats
            if name in s and "epoch_num" in s and s["epoch_num"] < before_epoch]
