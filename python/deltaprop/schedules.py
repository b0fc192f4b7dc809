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
    """Base class; the constant schedule.

    A subclass overrides `__call__`, and `state` and `set_state` when it keeps state
    between epochs.
    """

    def __call__(self, epoch: int, lr: float, history: dict[str, list[float]]) -> float:
        """Return the learning rate of an epoch.

        Parameters
        ----------
        epoch : int
            The epoch about to start, from 0.
        lr : float
            The rate of the previous epoch (the optimizer's own rate before the first).
        history : dict of str to list of float
            The metrics of the epochs done (see `deltaprop.Network.fit`).

        Returns
        -------
        float
            The rate of the epoch; here ``lr`` unchanged.
        """
        return lr

    def state(self) -> dict[str, Any]:
        """Return what a training checkpoint must keep of the schedule.

        Returns
        -------
        dict
            JSON-able; empty for a schedule without state.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """Return the schedule's kind and settings (JSON-able), to tell schedules apart.

        Returns
        -------
        dict
            ``name`` (the class) and the public numeric or text settings.
        """
        settings = {
            key: value
            for key, value in vars(self).items()
            if not key.startswith("_") and isinstance(value, (bool, int, float, str))
        }
        return {"name": type(self).__name__, **settings}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned, on resuming from a checkpoint.

        Parameters
        ----------
        state : dict
            What `state` returned.
        """


class Constant(Schedule):
    """The same rate every epoch."""


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (torch's StepLR).

    Parameters
    ----------
    step_size : int, default=10
        Epochs between two decays, >= 1.
    gamma : float, default=0.5
        The factor, in (0, 1).

    Raises
    ------
    TypeError, ValueError
        An invalid ``step_size`` or ``gamma``.
    """

    def __init__(self, step_size: int = 10, gamma: float = 0.5) -> None:
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def __call__(self, epoch, lr, history):
        """Return ``lr * gamma`` at epochs step_size, 2 step_size, ..., else ``lr``.

        Parameters
        ----------
        epoch : int
            The epoch about to start, from 0.
        lr : float
            The rate of the previous epoch.
        history : dict of str to list of float
            Not used.

        Returns
        -------
        float
            The rate of the epoch.
        """
        return lr * self.gamma if epoch > 0 and epoch % self.step_size == 0 else lr


class Adaptive(Schedule):
    """Divide the rate by 5 when the monitored cost stops improving.

    As scikit-learn's ``learning_rate="adaptive"``: each time ``patience`` consecutive
    epochs fail to lower it by more than ``tol``. It monitors ``"val_cost"`` when present,
    else ``"cost"``.

    Parameters
    ----------
    factor : float, default=0.2
        The rate is multiplied by it, in (0, 1).
    patience : int, default=2
        Epochs without improvement before each decay, >= 1.
    tol : float, default=1e-4
        Smallest fall of the cost that counts as an improvement, >= 0.

    Raises
    ------
    TypeError, ValueError
        An invalid ``factor``, ``patience`` or ``tol``.
    """

    def __init__(self, factor: float = 0.2, patience: int = 2, tol: float = 1e-4) -> None:
        self.factor = check_real(factor, "factor", 0.0, 1.0, low_open=True)
        self.patience = check_int(patience, "patience", 1)
        self.tol = check_real(tol, "tol", 0.0)
        self._best, self._stalled = np.inf, 0

    def state(self):
        """Return the best cost so far and the epochs since it, for a checkpoint.

        Returns
        -------
        dict
            JSON-able: ``best`` (None while infinite) and ``stalled``.
        """
        return {"best": None if np.isinf(self._best) else self._best, "stalled": self._stalled}

    def set_state(self, state):
        """Restore what `state` returned, on resuming from a checkpoint.

        Parameters
        ----------
        state : dict
            What `state` returned.
        """
        self._best = np.inf if state["best"] is None else float(state["best"])
        self._stalled = int(state["stalled"])

    def __call__(self, epoch, lr, history):
        """Return the rate of an epoch, divided when the cost has stalled long enough.

        Epoch 0 starts afresh, forgetting the best cost of an earlier run.

        Parameters
        ----------
        epoch : int
            The epoch about to start, from 0.
        lr : float
            The rate of the previous epoch.
        history : dict of str to list of float
            The metrics of the epochs done: ``"val_cost"`` or ``"cost"``.

        Returns
        -------
        float
            The rate of the epoch.
        """
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
    """Return the schedule a name, a Schedule or a function of the epoch stands for.

    Parameters
    ----------
    schedule : {"constant", "step", "adaptive"}, Schedule or callable
        ``"constant"`` (`Constant`), ``"step"`` (``StepDecay()``), ``"adaptive"``
        (``Adaptive()``), a `Schedule` (returned as it is) or a function
        ``f(epoch) -> lr`` of the epoch (from 0).

    Returns
    -------
    Schedule
        A new schedule for a name or a function, else ``schedule`` itself.

    Raises
    ------
    ValueError
        An unknown name.
    TypeError
        Neither a name, a Schedule nor a callable.
    """
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
