"""What every training run shares: its data over the processes, the history, the end of an epoch.

A run (`MiniBatchRun` or `FullBatchRun`) starts from rank 0's parameters on every rank,
records each epoch's metrics in the history, asks the callbacks and early stopping whether
to stop (one agreement over the ranks), and at the end restores the best epoch's
parameters and says how it ended. One process is a group of one (`_distributed.Alone`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ._diagnostics import KEYS as DIAGNOSTICS
from ._diagnostics import EpochDiagnostics
from ._progress import Progress
from ._scaling import without_scaling
from ._stopping import History

if TYPE_CHECKING:
    from ._fit_data import FirstEpochChecksX
    from ._settings import FitSettings

__all__ = ["Run"]


class Run:
    """One call of `fit`: its settings, data and processes; the subclasses train.

    Parameters
    ----------
    net : Network
        The network to train.
    settings : FitSettings
        The run's settings, checked.
    data : tuple (X, Y, sample_weight or None)
        This rank's training data, checked and in the core's layout.
    validation : tuple (X_val, Y_val) or None
        The validation data, checked.
    group : Group or Alone
        The ranks of data-parallel training, or this process alone.
    inputs_unchecked : FirstEpochChecksX or None, default=None
        Until an epoch ends: X was not checked for NaN and infinity (see `fit`).

    Attributes
    ----------
    history : History
        Filled by `run`.
    optimizer : Optimizer or None
        The settings' (a resumed checkpoint's, when it has one); None for L-BFGS.
    batch_size, n_samples : int
        The global batch, and the rows of an epoch over every rank (known once the run
        starts).
    diagnostics : EpochDiagnostics or None
        With ``diagnostics=True``: what the core measures each epoch.
    """

    def __init__(
        self,
        net: Any,
        settings: FitSettings,
        data: tuple[np.ndarray, np.ndarray, np.ndarray | None],
        validation: tuple[np.ndarray, np.ndarray] | None,
        group: Any,
        inputs_unchecked: FirstEpochChecksX | None = None,
    ) -> None:
        self.net, self.settings, self.group = net, settings, group
        # The data is scaled already: the run's own evaluations of it must not scale again.
        self.on_scaled_inputs = without_scaling(net)
        self.data, self.validation = data, validation
        self.optimizer = settings.optimizer
        self.epochs, self.batch_size, self.n_samples = settings.epochs, settings.batch_size, 0
        self.rng = np.random.default_rng(settings.seed)
        self.progress = Progress(settings.verbose and group.rank == 0)
        self.inputs_unchecked = inputs_unchecked
        self.diagnostics = EpochDiagnostics(net, group) if settings.diagnostics else None
        self.history: dict[str, list[float]] = {}

    def history_keys(self, extra: bool = True) -> list[str]:
        """Return the metrics of the history, in order (see `fit`).

        Parameters
        ----------
        extra : bool, default=True
            Include those of the ``metrics`` argument.

        Returns
        -------
        list of str
        """
        keys = ["cost"]
        if self.settings.train_accuracy:
            keys.append("accuracy")
        if self.validation is not None:
            keys.append("val_cost")
            if self.net.output != "identity":
                keys.append("val_accuracy")
        if extra:
            keys.extend(self.settings.metrics)
        return [*keys, "lr", "time"]

    def recorded_keys(self) -> list[str]:
        """Return the keys of the history this run records: `history_keys`, the diagnostics.

        Early stopping watches one of `history_keys`; a diagnostic is a list per layer.

        Returns
        -------
        list of str
        """
        return self.history_keys() + self.diagnostic_keys()

    def diagnostic_keys(self) -> list[str]:
        """Return the diagnostics' keys this run records (none without ``diagnostics=True``).

        Returns
        -------
        list of str
        """
        return list(DIAGNOSTICS) if self.diagnostics else []

    def check_monitor(self) -> None:
        """Check that early stopping watches a metric this run records.

        Raises
        ------
        ValueError
            Early stopping monitors a metric this run does not record, or ``metrics``
            reuses the name of a built-in metric.
        """
        keys, stopping = self.history_keys(), self.settings.early_stopping
        if stopping is not None and stopping.monitor not in keys:
            raise ValueError(
                f"early_stopping: monitors {stopping.monitor!r}, which this run does not "
                f"record (it records {', '.join(keys)})"
            )
        built_in = {*self.history_keys(extra=False), *self.diagnostic_keys()}
        clashes = set(self.settings.metrics) & built_in
        if clashes:
            raise ValueError(f"metrics: {sorted(clashes)} are built-in metrics")

    def shared_arguments(self) -> dict[str, Any]:
        """Return what every rank of data-parallel training must agree on.

        Returns
        -------
        dict
            Whether there is validation data, `FitSettings.shared`, and the number of
            samples of replicated data.
        """
        shared = {"validation_data": self.validation is not None, **self.settings.shared()}
        if not self.settings.sharded:
            shared["n_samples"] = len(self.data[0])
        return shared

    def run(self) -> dict[str, list[float]]:
        """Train every epoch (or iteration), from rank 0's start on every rank.

        Returns
        -------
        History
            Also in the network's ``history``.
        """
        # The network's own history grows epoch by epoch, so that an interrupted fit
        # leaves the metrics of the epochs it completed in net.history.
        self.history = self.net.history = History((key, []) for key in self.recorded_keys())
        self.net.comm = self.group.comm
        with self.group.aborting_on_lone_errors(), self.group.catching_interrupts():
            self.start()
            return self.train()

    def train(self) -> dict[str, list[float]]:
        """Train, once started (see the subclasses).

        Returns
        -------
        History
        """
        raise NotImplementedError

    def start(self) -> None:
        """Rank 0's parameters and optimizer state to every rank; the rows of every rank.

        Replicated data: every rank evaluates metrics on its share of the rows, and the
        shares are summed. Sharded data: each rank's shard is its share. One process: its
        rows are all.
        """
        group, net = self.group, self.net
        group.broadcast([net.params])
        if self.optimizer is not None:  # L-BFGS has none
            self.optimizer.bind(net.params.size, net.dtype)
            group.broadcast(self.optimizer.state)
            self.optimizer.step = group.broadcast_value(self.optimizer.step)
        self._scale_sample_weight()
        self.n_samples = group.total_rows(len(self.data[0]))
        self.batch_size = min(self.batch_size or self.n_samples, self.n_samples)
        if self.validation is not None:
            self.validation = group.own_rows(self.validation)

    def _scale_sample_weight(self) -> None:
        """Scale the sample weights to at most 1 by their largest (over every rank).

        Only relative weights matter; scaled to at most 1, no sum of them overflows, and
        a uniform weight of any size trains as weights of 1.
        """
        weights = self.data[2]
        largest = self.group.largest(-1.0 if weights is None else float(weights.max(initial=0.0)))
        if largest == 0:
            raise self.group.raised_by_all(
                ValueError("sample_weight: all the weights are zero; expected a positive sum")
            )
        if weights is not None:
            weights /= largest

    # --------------------------------------------------------------- end of an epoch
    def metric(self, metric: Callable[..., float], X: np.ndarray, Y: np.ndarray) -> float:
        """Return a mean metric over rows (of every rank), NaN if its forward pass overflows.

        Parameters
        ----------
        metric : callable
            ``metric(X, Y)``, a per-sample mean.
        X, Y : ndarray
            This rank's rows.

        Returns
        -------
        float
        """
        return self.group.mean(lambda *rows: _nan_on_overflow(metric, *rows), X, Y)

    def record(self, cost: float, seconds: float) -> None:
        """Append an epoch's metrics to the history.

        Parameters
        ----------
        cost : float
            The epoch's training cost.
        seconds : float
            Its time.
        """
        net, settings = self.net, self.settings
        current: dict[str, Any] = {"cost": cost}
        if settings.train_accuracy:
            rows = self.group.own_rows(self.data)[:2]
            current["accuracy"] = self.metric(self.on_scaled_inputs.evaluate, *rows)
        if self.validation is not None:
            X_val, Y_val = self.validation
            current["val_cost"] = self.metric(self.on_scaled_inputs.cost, X_val, Y_val)
            if "val_accuracy" in self.history:
                current["val_accuracy"] = self.metric(self.on_scaled_inputs.evaluate, X_val, Y_val)
        if self.optimizer is not None:  # L-BFGS has no learning rate
            current["lr"] = self.optimizer.lr
        if self.diagnostics is not None:
            current.update(self.diagnostics.measures())
        current["time"] = seconds
        for name, metric in settings.metrics.items():  # each sees the epoch's metrics so far
            value = float(_nan_on_overflow(metric, net, dict(current)))
            # A metric may see rank-local data: every rank takes rank 0's, so that early
            # stopping stops, and restores, the same epoch everywhere.
            current[name] = self.group.broadcast_value(value)
        for key, values in self.history.items():
            values.append(current[key])

    def should_stop(self, epoch: int) -> bool:
        """Ask the callbacks and early stopping; agree with every rank.

        Parameters
        ----------
        epoch : int
            The epoch just recorded, from 0.

        Returns
        -------
        bool
            Whether some rank's callbacks or early stopping ask to stop.
        """
        stop, error = False, None
        try:
            stop = self._asked_to_stop(epoch)
        except Exception as raised:  # raised on every rank by check_stop
            error = raised
        return self.group.check_stop(stop, error)

    def _asked_to_stop(self, epoch: int) -> bool:
        metrics = {key: values[-1] for key, values in self.history.items()}
        stop = False
        for callback in self.settings.callbacks:
            stop = bool(callback(epoch, metrics)) or stop
        stopping = self.settings.early_stopping
        if stopping is not None:
            stop = stopping.should_stop(epoch, self.net.params, metrics) or stop
        return stop

    def end(self, stopped: bool) -> None:
        """Give the network its best epoch's parameters back; record and tell how it ended.

        Parameters
        ----------
        stopped : bool
            Whether early stopping or a callback ended the run.
        """
        history, stopping = self.history, self.settings.early_stopping
        epochs_done = len(history["cost"])
        if stopped and epochs_done < self.epochs:
            history.stopped_epoch = epochs_done - 1
        if stopping is not None and stopping.restore(self.net.params):
            history.restored_epoch = stopping.best_epoch
        self.progress.ending(history, stopping, self.epochs)


def _nan_on_overflow(metric: Callable[..., float], *args: Any) -> float:
    """Compute a metric of data checked already; NaN if its forward pass overflows.

    Its only possible ValueError is a forward pass that overflows (weights grown too large
    for these inputs). The epoch's metric is then NaN, which no early stopping counts as an
    improvement; training itself stops with a DivergenceError at the first batch whose
    forward pass overflows.
    """
    try:
        return metric(*args)
    except ValueError:
        return math.nan
