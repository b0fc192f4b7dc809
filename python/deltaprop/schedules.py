"""Learning-rate schedules, applied between epochs.

A schedule is called before each epoch as ``schedule(epoch, lr, history) -> lr``: ``epoch``
counts from 0, ``lr`` is the rate of the previous epoch (the optimizer's own rate before the
first) and ``history`` holds the metrics of the epochs done. A plain function of the epoch,
``f(epoch) -> lr``, can be given too (see `get`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._checks import check_int, check_real

__all__ = ["Adaptive", "Constant", "Schedule", "StepDecay", "get"]


class Schedule:
    """Base class; the constant schedule."""

    def __call__(self, epoch: int, lr: float, history: dict[str, list[float]]) -> float:
        return lr

    def state(self) -> dict[str, Any]:
        """What a training checkpoint must keep of the schedule (JSON-able)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The schedule's kind and settings (JSON-able), to tell schedules apart."""
        settings = {
            key: value
            for key, value in vars(self).items()
            if not key.startswith("_") and isinstance(value, (bool, int, float, str))
        }
        return {"name": type(self).__name__, **settings}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `state` on resuming."""


class Constant(Schedule):
    """The same rate every epoch."""


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (torch's StepLR)."""

    def __init__(self, step_size: int = 10, gamma: float = 0.5) -> None:
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def __call__(self, epoch, lr, history):
        return lr * self.gamma if epoch > 0 and epoch % self.step_size == 0 else lr


class Adaptive(Schedule):
    """Divide the rate by 5 when the monitored cost stops improving (scikit-learn's
    ``learning_rate="adaptive"``): each time ``patience`` consecutive epochs fail to lower
    it by at least ``tol``. It monitors ``"val_cost"`` when present, else ``"cost"``."""

    def __init__(self, factor: float = 0.2, patience: int = 2, tol: float = 1e-4) -> None:
        self.factor = check_real(factor, "factor", 0.0, 1.0, low_open=True)
        self.patience = check_int(patience, "patience", 1)
        self.tol = check_real(tol, "tol", 0.0)
        self._best, self._stalled = np.inf, 0

    def state(self):
        return {"best": None if np.isinf(self._best) else self._best, "stalled": self._stalled}

    def set_state(self, state):
        self._best = np.inf if state["best"] is None else float(state["best"])
        self._stalled = int(state["stalled"])

    def __call__(self, epoch, lr, history):
        if epoch == 0:
            self._best, self._stalled = np.inf, 0
            return lr
        monitored = history["val_cost"] if history.get("val_cost") else history["cost"]
        latest = monitored[-1]
        if latest < self._best - self.tol:
            self._best, self._stalled = latest, 0
            return lr
        self._stalled += 1
        if self._stalled >= self.patience:
            self._stalled = 0
            return lr * self.factor
        return lr


class _FunctionOfEpoch(Schedule):
    def __init__(self, function: Callable[[int], float]) -> None:
        self.function = function

    def __call__(self, epoch, lr, history):
        return self.function(epoch)


def get(schedule: str | Schedule | Callable[[int], float]) -> Schedule:
    """``"constant"``, ``"step"`` (StepDecay()), ``"adaptive"`` (Adaptive()), a Schedule,
    or a function ``f(epoch) -> lr``."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        by_name = {"constant": Constant, "step": StepDecay, "adaptive": Adaptive}
        if schedule not in by_name:
            raise ValueError(
                f"schedule: expected 'constant', 'step', 'adaptive', a Schedule or a function "
                f"of the epoch, got {schedule!r}"
            )
        return by_name[schedule]()
    if callable(schedule):
        return _FunctionOfEpoch(schedule)
    raise TypeError(f"schedule: expected a name, a Schedule or a callable, got {schedule!r}")
