"""Learning-rate and ε schedules: pure rules (the callbacks that apply them are in
:mod:`eps_resnet.training.callbacks`; the schedules' values are in :mod:`eps_resnet.training.recipe`).

A schedule is a list of ``(epoch, value)`` points: the value takes effect after ``epoch`` epochs
have finished (``epoch = 0``: before the first epoch), as in tensorpack's
``ScheduledHyperParamSetter``.

The adaptive rule of ε-ResNet (:class:`AdaptiveRestart`) restarts a faster schedule whenever the
number of discarded blocks rises. It is a pure state machine fed with the per-epoch history of
``discarded_cnt``; :func:`replay` runs it over a history, which is what the tests check on
hand-made histories and what a resumed run does with its stats.json.
"""
from __future__ import annotations

from typing import Sequence

Points = Sequence[tuple[int, float]]

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
        #: the value in force for the next epoch (None until a point has been reached)
        self.value: float | None = None

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
            new = self.schedule[0][1]
        else:
            new = next((v for e, v in self.schedule if e == epoch), None)
        if new is not None:
            self.value = new
        return new

    def _rose(self, epoch: int, history: Sequence[float]) -> bool:
        if len(history) < self.last_k + 1 or epoch - self.last_restart < self.last_k:
            return False
        window = list(history)[-self.last_k - 1:]
        return max(window) >= window[0] + self.threshold


def replay(rule: AdaptiveRestart, history: Sequence[float], epochs: int) -> list[float]:
    """The value used during each epoch 1..``epochs`` when ``history[i]`` is ``discarded_cnt``
    after epoch ``i + 1``. Advances ``rule`` through the end of epoch ``epochs``, so that
    ``rule.value`` is then the value of epoch ``epochs + 1`` (what a run resumed after
    ``epochs`` epochs sets)."""
    rule.after_epoch(0, [])
    used = []
    for epoch in range(1, epochs + 1):
        used.append(rule.value)
        rule.after_epoch(epoch, history[:epoch])
    return used
