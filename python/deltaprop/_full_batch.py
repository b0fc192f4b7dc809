"""The full-batch run: scipy's L-BFGS-B on the objective over every row (of every rank)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ._run import Run
from ._stopping import DivergenceError

__all__ = ["FullBatchRun"]


class FullBatchRun(Run):
    """fit(optimizer="lbfgs"): L-BFGS-B on `Network.objective`, one history entry per iteration.

    The network ends with the parameters of the best iteration (also after Ctrl-C, a
    stopping callback or a divergence). With ranks, each evaluation of the objective sums
    every rank's rows in one reduction, and every rank runs the same iterations.

    Parameters
    ----------
    *args
        As for `Run`.

    Raises
    ------
    ImportError
        scipy is not installed.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        try:
            from scipy.optimize import minimize
        except ImportError as error:
            raise ImportError(
                "optimizer='lbfgs' needs scipy: pip install 'deltaprop[scipy]'"
            ) from error
        self.minimize = minimize

    @staticmethod
    def input_check(net: Any, optimizer: Any, group: Any) -> None:
        """Return None: X is checked before L-BFGS's first evaluation, not during it.

        Parameters
        ----------
        net, optimizer, group : object
            Unused (see `MiniBatchRun.input_check`).
        """
        return None

    def recorded_keys(self) -> list[str]:
        """Return the keys of the history: L-BFGS has no learning rate.

        Returns
        -------
        list of str
        """
        return [key for key in self.history_keys() if key != "lr"]

    def train(self) -> dict[str, list[float]]:
        """Minimise the objective with scipy's L-BFGS-B.

        Returns
        -------
        History
        """
        net, settings = self.net, self.settings
        self.best = {"cost": math.inf, "params": net.params.copy()}
        self.started = time.perf_counter()
        try:
            if self.epochs > 0:
                self.minimize(
                    self._objective_at,
                    net.params.astype(np.float64),
                    jac=True,
                    method="L-BFGS-B",
                    callback=self._end_of_iteration,
                    # Only tol and the budgets end it: scipy's relative-decrease test
                    # (ftol) set as low as scikit-learn's LogisticRegression sets it.
                    options={
                        "maxiter": self.epochs,
                        "maxfun": settings.max_fun,
                        "gtol": settings.tol,
                        "ftol": 64 * np.finfo(np.float64).eps,
                    },
                )
        finally:
            net.params[...] = self.best["params"]
        return self.history

    def _objective_at(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the objective and its gradient (float64) at parameters ``x``."""
        self.net.params[...] = x
        iteration = len(self.history["cost"])
        try:
            rows = self.group.own_rows(self.data)
            settings = self.settings
            cost, gradient = self.group.objective(
                self.on_scaled_inputs, rows, settings.lmbda, settings.l1, self.n_samples
            )
        except ValueError as error:  # the cost or its gradient overflowed
            raise self.group.raised_by_all(
                DivergenceError(
                    f"L-BFGS diverged in iteration {iteration}: {error}; the network keeps "
                    "the parameters of its best iteration",
                    epoch=iteration,
                    batch=0,
                    history=self.history,
                )
            ) from error
        return cost, gradient.astype(np.float64)

    def _end_of_iteration(self, intermediate_result) -> None:
        """Record an iteration, keep the best parameters, and stop if asked (StopIteration)."""
        net = self.net
        net.params[...] = intermediate_result.x
        cost = float(intermediate_result.fun)
        if cost < self.best["cost"]:
            self.best["cost"], self.best["params"] = cost, net.params.copy()
        self.record(cost, time.perf_counter() - self.started)
        self.started = time.perf_counter()
        iteration = len(self.history["cost"]) - 1
        self.progress.epoch(iteration, self.epochs, self.history)
        if self.should_stop(iteration):
            raise StopIteration
