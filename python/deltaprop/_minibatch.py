"""The mini-batch run: the epoch loop around the core, each epoch in a few core calls."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _core
from ._checkpoints import Checkpoints
from ._fit_data import FirstEpochChecksX
from ._run import Run
from ._settings import l2_coefficient
from ._sparse import is_sparse
from ._stopping import DivergenceError

__all__ = ["MiniBatchRun"]

# With a progress bar an epoch runs in about this many core calls, so the bar can move.
_PROGRESS_STEPS = 50
# Without one, an epoch runs in calls of about this many rows: Python sees Ctrl-C (and
# KeyboardInterrupt leaves the weights of the last batch done) between calls.
_ROWS_PER_CALL = 4096
# A call on sparse X in one process transposes the first layer's weights (and optimizer
# state) at its start and back at its end (cpp/sparse_training.hpp), a few passes over
# them: it trains at least this many rows, over which those passes weigh little.
_SPARSE_ROWS_PER_CALL = 32768


class MiniBatchRun(Run):
    """Mini-batch gradient descent: schedules, checkpoints, and each epoch in the core.

    Parameters
    ----------
    *args
        As for `Run`.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.checkpoints = Checkpoints(self)

    @staticmethod
    def input_check(net: Any, optimizer: Any, group: Any) -> FirstEpochChecksX | None:
        """Return what lets the first epoch check X, when the processes allow it.

        Parameters
        ----------
        net : Network
            The network, as fit found it.
        optimizer : Optimizer
            The run's optimizer, before it is bound.
        group : Group or Alone
            The processes of the run.

        Returns
        -------
        FirstEpochChecksX or None
        """
        return group.defer_input_check(lambda: FirstEpochChecksX(net, optimizer))

    def train(self) -> dict[str, list[float]]:
        """Train every epoch, from the checkpoint when resuming.

        Returns
        -------
        History
        """
        self.net.optimizer = self.optimizer
        start, stopped = self.checkpoints.resume_point()
        for epoch in range(start, self.epochs):
            if stopped:
                break
            lr = self.settings.schedule(epoch, self.optimizer.lr, self.history)
            self.optimizer.lr = float(lr)
            started = time.perf_counter()
            cost = self._train_epoch(epoch)
            self.inputs_unchecked = None  # every row went through a forward pass
            self.record(cost, time.perf_counter() - started)
            self.progress.epoch(epoch, self.epochs, self.history)
            stopped = self.should_stop(epoch)
            self.checkpoints.after_epoch(epoch, stopped)
        if self.inputs_unchecked is not None:  # no epoch was trained
            self.inputs_unchecked.raise_if_not_finite(self.data[0])
        self.end(stopped)
        return self.history

    def _train_epoch(self, epoch: int) -> float:
        """Train one epoch in core calls; return its mean cost."""
        n, settings = self.n_samples, self.settings
        bar = self.progress.bar(epoch, self.epochs, n)
        calls = self.group.epoch_calls(
            self.data, n, self.batch_size, self._rows_per_call(n, bar), self.rng, settings.shuffle
        )
        options = self._call_options(n)
        diagnostics = None
        if self.diagnostics is not None:
            self.diagnostics.start()
            diagnostics = self.diagnostics.accumulator
        total_cost = total_weight = 0.0
        try:
            for rows, arguments in calls:
                cost, weight, diverged = train_rows(
                    self.net, **arguments, **options, diagnostics=diagnostics
                )
                if diverged is not None:
                    self._diverged(epoch, diverged)
                self.group.raise_if_interrupted(self.group.stop_seen)
                total_cost, total_weight = total_cost + cost * weight, total_weight + weight
                if bar is not None:
                    bar.update(rows)
                    running = total_cost / total_weight if total_weight else 0.0
                    bar.set_postfix(cost=f"{running:.4f}", refresh=False)
            if bar is not None:
                bar.refresh()  # tqdm skips redraws within 0.1 s: show the epoch's end
        finally:
            if bar is not None:
                bar.close()
        return total_cost / total_weight if total_weight else 0.0

    def _call_options(self, n: int) -> dict[str, Any]:
        """Return what each core call of an epoch takes beside its rows (`train_rows`).

        The regularisation of the optimizer's rule, then the fields of
        ``_core.TrainSettings`` the run sets, in one place: a new training option is one
        line here (after its field in cpp/settings.hpp and its line in cpp/bindings.cpp).
        The dropout masks' seed is drawn from the run's generator, one per epoch.
        """
        settings = self.settings
        return dict(
            l2=l2_coefficient("lmbda", settings.lmbda, n_samples=n),
            l1=settings.l1 / n,  # Nielsen's form, as for L2
            batch_size=self.batch_size,
            dropout=settings.dropout,
            seed=int(self.rng.integers(2**63)),
        )

    def _diverged(self, epoch: int, batch: int) -> None:
        """Raise the ValueError of a non-finite X (one process), or a DivergenceError."""
        if self.inputs_unchecked is not None:
            self.inputs_unchecked.raise_if_not_finite(self.data[0])
        raise self.group.raised_by_all(
            DivergenceError(
                f"training diverged in epoch {epoch}, batch {batch}: a non-finite cost, "
                "gradient or parameter; the network keeps the weights it had before that batch",
                epoch=epoch,
                batch=batch,
                history=self.history,
            )
        )

    def _rows_per_call(self, n: int, bar: Any) -> int:
        """Return the rows per core call, in whole batches.

        About _ROWS_PER_CALL rows, or 1/50 of the epoch when a progress bar shows; at
        least _SPARSE_ROWS_PER_CALL on sparse X in one process (the processes of
        data-parallel training keep W^1 as it is: their shards may be dense or sparse).
        """
        n_batches = -(-n // self.batch_size)
        if bar is not None:
            batches = max(1, n_batches // _PROGRESS_STEPS)
        else:
            batches = max(1, _ROWS_PER_CALL // self.batch_size)
        if self.group.size == 1 and is_sparse(self.data[0]):
            batches = max(batches, -(-_SPARSE_ROWS_PER_CALL // self.batch_size))
        return batches * self.batch_size


def train_rows(
    net: Any,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    l2: float = 0.0,
    l1: float = 0.0,
    shares: np.ndarray | None = None,
    reduction: Any = None,
    diagnostics: np.ndarray | None = None,
    **settings: Any,
) -> tuple[float, float, int | None]:
    """Train ``net`` on rows of (X, Y) in mini-batches, in one core call (`Network.train_rows`).

    ``settings`` are the fields of ``_core.TrainSettings`` beside the optimizer's rule
    (batch_size, dropout, seed, first_batch), which refuses an unknown or missing one.
    ``diagnostics``: a float64 accumulator each batch adds its measures to (see
    `_diagnostics.EpochDiagnostics`), or None.
    """
    if net.optimizer is None:
        raise ValueError("optimizer: the network has none; set one (or call fit)")
    core_settings = _core.TrainSettings(rule=net.optimizer.rule(l2, l1), **settings)
    parallel = {"shares": shares, "reduction": reduction} if reduction is not None else {}
    cost, weight, diverged, _ = net._train_in_core(
        X, Y, sample_weight, rows, core_settings, diagnostics=diagnostics, **parallel
    )
    mean_cost = cost / weight if weight > 0 else 0.0
    first_batch = core_settings.first_batch
    return mean_cost, weight, None if diverged < 0 else first_batch + diverged
