"""Plots of a training history: learning curves, and how each layer learns.

The history is the dict ``Network.fit`` returns; `learning_speed` and `saturation` draw
its diagnostics (``fit(..., diagnostics=True)``).

matplotlib is an optional extra (``pip install 'deltaprop[plot]'``): it is imported only when
a plot is drawn, so ``import deltaprop.plot`` works without it. Figures are built on the Agg
canvas directly, never through pyplot's global state, so plotting works headless and from
threads, and no figure stays registered (or open) after its last reference goes.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import write_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["learning_curves", "learning_speed", "saturation"]

_MISSING_MATPLOTLIB = "deltaprop.plot needs matplotlib: pip install 'deltaprop[plot]'"
# Every per-epoch key Network.fit may return; others in the history are ignored.
_KEYS = ("cost", "val_cost", "accuracy", "val_accuracy", "lr", "time")
# Up to this many epochs each value also gets a marker, so that a single epoch, or one
# epoch between NaN gaps, is still visible.
_MARKERS_UP_TO = 50
_TRAIN = {"color": "C0", "label": "training"}
_VAL = {"color": "C1", "label": "validation"}


def learning_curves(
    history: Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Plot cost and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : mapping of str to sequence of float
        The dict returned by `Network.fit`: one value per epoch under ``"cost"`` (training
        cost, required, at least one epoch) and optionally ``"val_cost"``, ``"accuracy"``
        (training), ``"val_accuracy"``, ``"lr"`` (learning rate) and ``"time"`` (seconds per
        epoch; checked but not drawn). Other keys are ignored. NaN (and infinite) values are
        drawn as gaps.
    path : str, os.PathLike or None, default=None
        Where to write the figure as a PNG (always PNG, whatever the suffix). The file is
        written atomically: to a temporary file in the same directory, flushed to disk, then
        renamed onto `path`, so readers see the old file or the complete new one, never part
        of one. A file that is replaced keeps its permission bits. None: no file.
    title : str or None, default=None
        Title above the panels; None: none.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``fig.axes[0]`` holds the cost: training first (``get_lines()[0]``), then validation.
        With any accuracy key, ``fig.axes[1]`` holds the accuracy in the same order. When the
        learning rate changes across epochs, one more axes, a twin of the cost axes sharing
        its x-axis, holds it as a dashed grey line labelled "learning rate" (a constant
        learning rate is not drawn). So ``len(fig.axes)`` is 1, 2 or 3.

    Raises
    ------
    ValueError
        If `history` is not a mapping, has no ``"cost"`` or an empty one, or a key listed
        above holds something other than a sequence of real numbers as long as ``"cost"``;
        the message names the key.
    ImportError
        If matplotlib is not installed.
    OSError
        If `path` cannot be written; an existing file there is left unchanged.

    Examples
    --------
    >>> history = net.fit(X, y, epochs=10, validation_data=(X_val, y_val))  # doctest: +SKIP
    >>> deltaprop.plot.learning_curves(history, "curves.png", title="digits")  # doctest: +SKIP
    """
    series = _check_history(history)
    Figure, FigureCanvasAgg, MaxNLocator = _matplotlib()

    n_epochs = len(series["cost"])
    epochs = np.arange(1, n_epochs + 1)
    style = {"marker": "o", "markersize": 3} if n_epochs <= _MARKERS_UP_TO else {}
    has_accuracy = "accuracy" in series or "val_accuracy" in series
    lr = series.get("lr")
    lr_varies = lr is not None and np.unique(lr[np.isfinite(lr)]).size > 1

    fig = Figure(figsize=(10.0 if has_accuracy else 5.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]

    ax_cost = axes[0]
    ax_cost.plot(epochs, series["cost"], **_TRAIN, **style)
    if "val_cost" in series:
        ax_cost.plot(epochs, series["val_cost"], **_VAL, **style)
    ax_cost.set_ylabel("cost")
    legend_on, handles = ax_cost, list(ax_cost.get_lines())
    if lr_varies:
        ax_lr = ax_cost.twinx()
        ax_lr.plot(epochs, lr, color="0.45", linestyle="--", label="learning rate")
        ax_lr.set_ylabel("learning rate", color="0.35")
        ax_lr.tick_params(axis="y", colors="0.35")
        # The twin is drawn over the cost axes: its legend would otherwise be hidden.
        legend_on, handles = ax_lr, handles + list(ax_lr.get_lines())
    legend_on.legend(handles=handles)

    if has_accuracy:
        ax_accuracy = axes[1]
        if "accuracy" in series:
            ax_accuracy.plot(epochs, series["accuracy"], **_TRAIN, **style)
        if "val_accuracy" in series:
            ax_accuracy.plot(epochs, series["val_accuracy"], **_VAL, **style)
        ax_accuracy.set_ylabel("accuracy")
        ax_accuracy.legend()

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if title is not None:
        fig.suptitle(title)

    if path is not None:
        write_atomically(path, lambda file: fig.savefig(file, format="png"))
    return fig


def learning_speed(history: Mapping[str, Any], ax: Axes | None = None) -> Axes:
    """Plot each layer's speed of learning, ||∂C/∂b^l||, per epoch on a log scale.

    Nielsen's figure of chapter 5 ("Why are deep neural networks hard to train?"): in a
    deep sigmoid network the first hidden layer's line lies far below the last one's,
    the vanishing gradient.

    Parameters
    ----------
    history : mapping
        The dict returned by ``Network.fit(..., diagnostics=True)``: its
        ``"learning_speed"``, one list of one value per layer for each epoch.
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; None: on a new figure (``ax.figure``, on the Agg canvas, to save).

    Returns
    -------
    matplotlib.axes.Axes
        One line per layer, in order ("hidden layer 1", ..., "output layer"), with a legend;
        the y axis logarithmic (a zero speed is a gap).

    Raises
    ------
    ValueError
        The history has no diagnostics, or they are malformed (the message names the key).
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> history = net.fit(X, y, epochs=30, diagnostics=True)  # doctest: +SKIP
    >>> ax = deltaprop.plot.learning_speed(history)  # doctest: +SKIP
    >>> ax.figure.savefig("learning-speed.png")  # doctest: +SKIP
    """
    speed = _per_layer(history, "learning_speed")
    ax = _axes(ax)
    epochs = np.arange(1, len(speed) + 1)
    for l, name in enumerate(_layer_names(speed.shape[1])):
        values = speed[:, l].copy()
        values[values <= 0] = math.nan  # no place on a log scale
        ax.plot(epochs, values, label=name, **_markers(len(epochs)))
    ax.set_yscale("log")
    ax.set_ylabel(r"speed of learning $\|\partial C / \partial b^l\|$")
    _finish(ax)
    return ax


def saturation(history: Mapping[str, Any], ax: Axes | None = None) -> Axes:
    """Plot the saturated fraction of each sigmoid or tanh layer, the dead of each ReLU layer.

    One value per epoch and layer.

    Parameters
    ----------
    history : mapping
        The dict returned by ``Network.fit(..., diagnostics=True)``: its ``"saturated"``
        (units whose sigma'(z) fell below 1% of its maximum, over the epoch's rows) and
        ``"dead"`` (units never active in the epoch), each one list per epoch of one value
        or None per layer.
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; None: on a new figure (``ax.figure``, on the Agg canvas, to save).

    Returns
    -------
    matplotlib.axes.Axes
        A solid line per sigmoid or tanh layer ("hidden layer 1 saturated", ...), then a
        dashed line per ReLU layer ("... dead"), with a legend; y from 0 to 1.

    Raises
    ------
    ValueError
        The history has no diagnostics, they are malformed, or the network has no sigmoid,
        tanh or ReLU layer (nothing to draw).
    ImportError
        If matplotlib is not installed.
    """
    curves = [
        (key, style, _per_layer(history, key))
        for key, style in (("saturated", "-"), ("dead", "--"))
    ]
    n_layers = curves[0][2].shape[1]
    if all(np.isnan(values).all() for _, _, values in curves):
        raise ValueError(
            "history['saturated'], history['dead']: no layer applies (no sigmoid, tanh or "
            "relu layer): nothing to draw"
        )
    ax = _axes(ax)
    epochs = np.arange(1, len(curves[0][2]) + 1)
    for key, linestyle, values in curves:
        for l, name in enumerate(_layer_names(n_layers)):
            if not np.isnan(values[:, l]).all():
                ax.plot(epochs, values[:, l], linestyle=linestyle, color=f"C{l}",
                        label=f"{name} {key}", **_markers(len(epochs)))  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction of units")
    _finish(ax)
    return ax


def _per_layer(history: Any, key: str) -> np.ndarray:
    """Return a diagnostic of the history as an (epochs, layers) array, NaN for None."""
    if not isinstance(history, Mapping):
        raise ValueError(
            f"history: expected the dict returned by Network.fit, got {type(history).__name__}"
        )
    if key not in history:
        raise ValueError(
            f"history[{key!r}]: missing; train with fit(..., diagnostics=True) to record it"
        )
    epochs = history[key]
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence) or not epochs:
        raise ValueError(f"history[{key!r}]: expected one list per epoch, at least one")
    lengths = {len(epoch) if isinstance(epoch, Sequence) else -1 for epoch in epochs}
    if len(lengths) != 1 or min(lengths) < 1:
        raise ValueError(f"history[{key!r}]: expected lists of one value per layer, all alike")
    values = np.full((len(epochs), lengths.pop()), math.nan)
    for i, epoch in enumerate(epochs):
        for l, value in enumerate(epoch):
            if value is None:
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"history[{key!r}][{i}][{l}]: expected a real number or None, got {value!r}"
                )
            values[i, l] = float(value) if math.isfinite(value) else math.nan
    return values


def _layer_names(n_layers: int) -> list[str]:
    return [f"hidden layer {l}" for l in range(1, n_layers)] + ["output layer"]


def _markers(n_epochs: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if n_epochs <= _MARKERS_UP_TO else {}


def _axes(ax: Axes | None) -> Axes:
    """Return ``ax``, or the axes of a new figure on the Agg canvas."""
    Figure, FigureCanvasAgg, _ = _matplotlib()
    if ax is not None:
        return ax
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig.subplots()


def _finish(ax: Axes) -> None:
    _, _, MaxNLocator = _matplotlib()
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(_MISSING_MATPLOTLIB) from error
    return Figure, FigureCanvasAgg, MaxNLocator


def _check_history(history: Any) -> dict[str, np.ndarray]:
    """Return the known keys of `history` as float64 arrays of equal length, NaN for inf."""
    if not isinstance(history, Mapping):
        raise ValueError(
            f"history: expected the dict returned by Network.fit, got {type(history).__name__}"
        )
    if "cost" not in history:
        raise ValueError("history['cost']: missing; expected the training cost per epoch")
    series = {key: _as_series(history[key], key) for key in _KEYS if key in history}
    n_epochs = len(series["cost"])
    if n_epochs == 0:
        raise ValueError("history['cost']: empty; expected the training cost of at least one epoch")
    for key, values in series.items():
        if len(values) != n_epochs:
            raise ValueError(
                f"history[{key!r}]: expected one value per epoch ({n_epochs}, as in 'cost'), "
                f"got {len(values)}"
            )
    return series


def _as_series(values: Any, key: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise ValueError(f"history[{key!r}]: expected a 1-d sequence, got shape {values.shape}")
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(
            f"history[{key!r}]: expected a list of numbers, got {type(values).__name__}"
        )
    for i, value in enumerate(values):
        # bool is an int, but True as a cost is a bug upstream, not a value to plot.
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(f"history[{key!r}][{i}]: expected a real number, got {value!r}")
    out = np.array([float(value) for value in values], dtype=np.float64)
    out[~np.isfinite(out)] = math.nan  # inf would stretch or break the axis; draw a gap
    return out
