"""Network.gradient_check: the core's gradients against central differences in float64.

For every parameter p checked, the numerical derivative is (C(p + h) - C(p - h)) / 2h of
the objective (`Network.objective`: the mean cost plus the L2 and L1 terms) of a float64
copy of the network, with h = eps max(1, |p|) and eps = cbrt(float64's epsilon) ~ 6e-6 by
default: the step that balances the truncation error, O(h^2), against rounding, O(eps/h).
The analytic gradient is the network's own (its dtype and matmul precision). The relative
error of an entry is |analytic - numeric| / max(|analytic|, |numeric|, floor), the floor
1e-8 of the largest numerical derivative, so that entries whose derivative is zero compare
against the gradient's size rather than against themselves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _scaling

__all__ = ["GradientCheck", "gradient_check"]


class GradientCheck:
    """The result of `Network.gradient_check`.

    Attributes
    ----------
    weights, biases : list of float
        The largest relative error among the checked entries of W^l and b^l, l = 1..L
        (NaN for a layer none of whose entries was checked).
    worst : dict
        The entry of the largest error: ``layer`` (1..L), ``kind`` ("W" or "b"), ``index``
        (its row and column in W^l, or its row in b^l), ``analytic``, ``numeric`` and
        ``relative_error``.
    max_error : float
        The largest relative error over all checked entries.
    """

    def __init__(self, weights, biases, worst: dict[str, Any]) -> None:
        self.weights, self.biases, self.worst = weights, biases, worst
        self.max_error = float(worst["relative_error"])

    def __repr__(self) -> str:
        rows = [
            f"  layer {l}: W {w:.2e}, b {b:.2e}"
            for l, (w, b) in enumerate(zip(self.weights, self.biases), start=1)
        ]
        w = self.worst
        rows.append(
            f"  worst: {w['kind']}^{w['layer']}{list(w['index'])}: analytic {w['analytic']:.6g}, "
            f"numeric {w['numeric']:.6g}, relative error {w['relative_error']:.2e}"
        )
        return "GradientCheck(\n" + "\n".join(rows) + "\n)"


def gradient_check(net, X, Y, *, eps, lmbda, l1, sample_weight, entries, seed) -> GradientCheck:
    """See `Network.gradient_check` (arguments checked there)."""
    _, analytic = net.objective(X, Y, sample_weight=sample_weight, lmbda=lmbda, l1=l1)
    copy = type(net).from_params(
        net.weights,
        net.biases,
        activation=net.activation,
        output=net.output,
        cost=net.cost_name,
        dtype="float64",
        leaky_slope=net.leaky_slope,
    )
    X, Y = copy.validate(*_scaling.validate(net, X, Y))  # the copy has no input scaling
    checked = _entries(net.params.size, entries, seed)
    params = copy.params
    numeric = np.empty(checked.size)
    for k, i in enumerate(checked):
        p, h = params[i], eps * max(1.0, abs(float(params[i])))
        params[i] = p + h
        up = copy.objective(X, Y, sample_weight=sample_weight, lmbda=lmbda, l1=l1)[0]
        params[i] = p - h
        down = copy.objective(X, Y, sample_weight=sample_weight, lmbda=lmbda, l1=l1)[0]
        params[i] = p
        numeric[k] = (up - down) / (2 * h)
    found = analytic[checked].astype(np.float64)
    floor = 1e-8 * float(np.abs(numeric).max(initial=0.0)) + np.finfo(np.float64).tiny
    errors = np.abs(found - numeric) / np.maximum(np.maximum(np.abs(found), np.abs(numeric)), floor)
    return _result(net, checked, found, numeric, errors)


def _entries(n_params: int, entries: int | None, seed: int | None) -> np.ndarray:
    """All parameter indices, or ``entries`` of them drawn without replacement, sorted."""
    if entries is None or entries >= n_params:
        return np.arange(n_params)
    return np.sort(np.random.default_rng(seed).choice(n_params, size=entries, replace=False))


def _segments(net) -> list[tuple[int, str, tuple[int, ...], int]]:
    """(layer, "W" or "b", shape, first flat index) of W^1, b^1, W^2, ... in the parameters."""
    segments, start = [], 0
    for l, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        for kind, array in (("W", W), ("b", b)):
            segments.append((l, kind, array.shape, start))
            start += array.size
    return segments


def _result(net, checked, analytic, numeric, errors) -> GradientCheck:
    """Per layer and kind, the largest error; the worst entry named."""
    largest: dict[str, list[float]] = {"W": [], "b": []}
    k = int(np.argmax(errors))
    for l, kind, shape, start in _segments(net):
        inside = (checked >= start) & (checked < start + math.prod(shape))
        largest[kind].append(float(errors[inside].max()) if inside.any() else float("nan"))
        if inside[k]:
            worst = {
                "layer": l, "kind": kind,
                "index": tuple(int(i) for i in np.unravel_index(checked[k] - start, shape)),
                "analytic": float(analytic[k]), "numeric": float(numeric[k]),
                "relative_error": float(errors[k]),
            }  # fmt: skip
    return GradientCheck(largest["W"], largest["b"], worst)
