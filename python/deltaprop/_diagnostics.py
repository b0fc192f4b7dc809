"""fit(diagnostics=True): what each epoch tells of how every layer learns.

The core adds its measures batch after batch into a float64 accumulator (the layout of
cpp/diagnostics.hpp, read here); at the end of each epoch `EpochDiagnostics.measures`
turns it, with the weights of the epoch's start and end, into the history's four
per-layer lists (index l - 1 for layers l = 1..L, None where a measure does not apply):

- ``learning_speed``: ||∂C/∂b^l|| (BP3), the mean over the epoch's batches: Nielsen's
  "speed of learning" of layer l (chapter 5);
- ``update_ratio``: ||W^l_end - W^l_start|| / ||W^l_start|| (Frobenius norms) over the
  epoch;
- ``saturated``: of the (row, unit) pairs of the epoch, the fraction whose sigma'(z) fell below
  1% of its maximum: sigmoid and tanh layers, the output layer included;
- ``dead``: the fraction of a ReLU layer's units whose z was never > 0 in the epoch.

Data-parallel training sums ∂C/∂b over the ranks for each batch in the core (every rank
then holds the same norms), and the rows, saturated pairs and active units over the
ranks here, once per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["KEYS", "EpochDiagnostics"]

KEYS = ("learning_speed", "update_ratio", "saturated", "dead")
# Activations whose sigma' vanishes for large |z|, and those whose units can die.
_SATURATING = ("sigmoid", "tanh")
_DYING = ("relu",)


class EpochDiagnostics:
    """The diagnostics of one run's epochs: the core's accumulator and the epoch's weights.

    Parameters
    ----------
    net : Network
        The network trained.
    group : Group or Alone
        The processes of the run.

    Attributes
    ----------
    accumulator : ndarray of float64
        What the core adds each batch's measures to (`_minibatch.train_rows`'s
        ``diagnostics``); zeroed by `start`.
    """

    def __init__(self, net: Any, group: Any) -> None:
        self.net, self.group = net, group
        self.activations = (*net.activations, net.output)
        self.units = net.sizes[1:]
        self.accumulator = np.zeros(net._core.diagnostics_size)
        self._weights_at_start: list[np.ndarray] = []

    def start(self) -> None:
        """Begin an epoch: no measure yet, and the weights it starts from."""
        self.accumulator[...] = 0.0
        self._weights_at_start = [W.copy() for W in self.net.weights]

    def measures(self) -> dict[str, list[float | None]]:
        """Return the epoch's measures, per layer (see the module's description).

        Returns
        -------
        dict of str to list of (float or None)
            One list per key of `KEYS`, one entry per layer l = 1..L.
        """
        L = len(self.units)
        batches = self.accumulator[0]  # the same on every rank, as the norms
        speed = self.accumulator[2 : 2 + L] / max(batches, 1.0)
        # Rows, saturated pairs and the units' activity: this rank's, summed over the ranks.
        counts = self.group.sum(np.concatenate([self.accumulator[1:2], self.accumulator[2 + L :]]))
        rows, saturated, active = counts[0], counts[1 : 1 + L], counts[1 + L :]
        measures: dict[str, list[float | None]] = {key: [] for key in KEYS}
        for l, (n, f) in enumerate(zip(self.units, self.activations)):
            measures["learning_speed"].append(float(speed[l]))
            measures["update_ratio"].append(self._update_ratio(l))
            measures["saturated"].append(
                float(saturated[l] / (rows * n)) if f in _SATURATING and rows > 0 else None
            )
            if f in _DYING:
                measures["dead"].append(float(np.mean(active[:n] == 0)))
                active = active[n:]
            else:
                measures["dead"].append(None)
        return measures

    def _update_ratio(self, l: int) -> float:
        """||ΔW^l|| / ||W^l|| over the epoch; NaN when W^l started at zero."""
        start = self._weights_at_start[l].astype(np.float64)
        change = self.net.weights[l] - start
        norm = float(np.linalg.norm(start))
        return float(np.linalg.norm(change)) / norm if norm > 0 else math.nan
