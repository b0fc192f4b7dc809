"""How training ends: the divergence error, the history a run returns, early stopping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import check_int, check_real
from ._fields import ComparedByFields

__all__ = ["DivergenceError", "EarlyStopping", "History"]


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost, gradient or parameter.

    The network keeps the parameters (and optimizer state) it had before the batch to blame;
    ``epoch`` and ``batch`` (both from 0) name that batch, and ``history`` holds the metrics
    of the epochs completed before it.

    Parameters
    ----------
    message : str
        The error message.
    epoch : int or None, default=None
        Epoch of the batch to blame; None outside an epoch (`Network.sgd_step`).
    batch : int
        Index of the batch to blame within its epoch.
    history : dict of str to list of float, or None, default=None
        The training history up to the epoch before; None outside `fit`.

    Attributes
    ----------
    epoch, batch, history
        As given.
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int | None = None,
        batch: int,
        history: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


class History(dict):
    """What `fit` returns: the per-epoch lists of metrics, and how training ended.

    A dict of str to list of float (see `fit`), with two attributes.

    Attributes
    ----------
    stopped_epoch : int or None
        The epoch (from 0) after which early stopping or a callback ended training before
        its ``epochs``; None when it ran them all.
    restored_epoch : int or None
        The epoch (from 0) whose parameters early stopping gave back to the network at the
        end (``restore_best_weights``); None when the network has those of its last epoch.
    """

    stopped_epoch: int | None = None
    restored_epoch: int | None = None


class EarlyStopping(ComparedByFields):
    """Stop when a metric of the history has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int or math.inf, default=5
        Epochs without improvement after which training stops.
    min_delta : float, default=0.0
        How much the metric must improve to count.
    restore_best : bool, default=True
        Give the network back the parameters of the best epoch when training ends.
    monitor : str, default="val_cost"
        The history's key to watch.
    mode : {"min", "max"}, default="min"
        Whether lower or higher values are better.
    running_best : bool, default=False
        False (Keras's rule): the best value moves only on an improvement by more than
        ``min_delta``. True (scikit-learn MLP's rule): the best value is the best seen so
        far, and an improvement by at least ``min_delta`` (ties included) counts.
    best_cost : float, default=inf
        State: the best value so far, negated for mode "max" (see `best`).
    best_params : ndarray or None, default=None
        State: a copy of the parameters of the best epoch, kept with ``restore_best``.
    epochs_without_improvement : int, default=0
        State: epochs since the last improvement.
    stopped_epoch : int or None, default=None
        State: the epoch (from 0) after which it stopped training; None if it has not.
    best_epoch : int or None, default=None
        State: the epoch (from 0) of the best value; None before any.

    Raises
    ------
    TypeError, ValueError
        An invalid ``patience``, ``min_delta`` or ``mode``.

    Notes
    -----
    Compared (``==``) and shown (``repr``) by its fields, as a dataclass would be
    (`ComparedByFields`), without loading `dataclasses`.
    """

    _FIELDS = (
        "patience",
        "min_delta",
        "restore_best",
        "monitor",
        "mode",
        "running_best",
        "best_cost",
        "best_params",
        "epochs_without_improvement",
        "stopped_epoch",
        "best_epoch",
    )

    def __init__(
        self,
        patience: float = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
        monitor: str = "val_cost",
        mode: str = "min",
        running_best: bool = False,
        best_cost: float = math.inf,  # the best value, negated for mode "max"
        best_params: np.ndarray | None = None,
        epochs_without_improvement: int = 0,
        stopped_epoch: int | None = None,
        best_epoch: int | None = None,
    ) -> None:
        self.patience = patience if patience == math.inf else check_int(patience, "patience", 1)
        self.min_delta = check_real(min_delta, "min_delta", 0.0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.restore_best, self.monitor, self.mode = restore_best, monitor, mode
        self.running_best, self.best_cost, self.best_params = running_best, best_cost, best_params
        self.epochs_without_improvement = epochs_without_improvement
        self.stopped_epoch, self.best_epoch = stopped_epoch, best_epoch

    @property
    def best(self) -> float:
        """The best value of the monitored metric so far (inf or -inf before any)."""
        return self.best_cost if self.mode == "min" else -self.best_cost

    def should_stop(self, epoch: int, params: np.ndarray, metrics: dict[str, float]) -> bool:
        """Take an epoch's metrics and tell whether training should stop.

        Parameters
        ----------
        epoch : int
            The epoch, from 0.
        params : ndarray
            The network's parameters after the epoch; copied when they are the best and
            ``restore_best`` is set.
        metrics : dict of str to float
            The epoch's metrics; ``monitor`` must be among them.

        Returns
        -------
        bool
            True once ``patience`` epochs in a row have not improved the metric.

        Raises
        ------
        KeyError
            ``metrics`` has no ``monitor``.
        """
        value = metrics[self.monitor] if self.mode == "min" else -metrics[self.monitor]
        if self.running_best:
            improved = value <= self.best_cost - self.min_delta  # False for NaN
            better = value < self.best_cost
        else:
            improved = better = value < self.best_cost - self.min_delta
        if better:
            self.best_cost, self.best_epoch = value, epoch
            if self.restore_best:
                self.best_params = params.copy()
        self.epochs_without_improvement = 0 if improved else self.epochs_without_improvement + 1
        if self.epochs_without_improvement >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, params: np.ndarray) -> bool:
        """Put the best epoch's parameters back, if kept.

        Parameters
        ----------
        params : ndarray
            The network's parameters, overwritten in place.

        Returns
        -------
        bool
            Whether they were put back (``best_epoch`` says whose they are).
        """
        if self.restore_best and self.best_params is not None:
            params[...] = self.best_params
            return True
        return False

    def state(self) -> dict[str, Any]:
        """Return what a checkpoint keeps of the state (the best parameters go beside it).

        Returns
        -------
        dict
            JSON-able: ``best_cost`` (None while infinite), ``best_epoch`` and
            ``epochs_without_improvement``.
        """
        best = None if math.isinf(self.best_cost) else self.best_cost
        return {
            "best_cost": best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def set_state(self, state: dict[str, Any], best_params: np.ndarray | None) -> None:
        """Continue from a checkpoint's `state`.

        Parameters
        ----------
        state : dict
            What `state` returned.
        best_params : ndarray or None
            The best parameters saved beside it.

        Raises
        ------
        KeyError, TypeError, ValueError
            ``state`` is malformed.
        """
        self.best_cost = math.inf if state["best_cost"] is None else float(state["best_cost"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        best_epoch = state.get("best_epoch")  # absent from checkpoints of version 0.1.0
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        self.best_params = best_params
